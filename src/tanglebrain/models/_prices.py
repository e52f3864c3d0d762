"""Prices, context windows and token counts of a backend, without importing litellm.

The roster's ``price`` and ``context_window`` come first; then litellm's bundled model map
(read as a file, see ``_model_map``); unknown stays unknown, never a silent $0.

Prompt caching has prices of its own (see ``prices``): a prompt token read from the
provider's cache is billed at the cache-read price, one written to it at the cache-write
price, every other prompt token at the input price.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tanglebrain.models import _model_map
from tanglebrain.roster import Backend

Message = dict[str, Any]


def price_per_token(backend: Backend) -> tuple[float, float] | None:
    """(input, output) USD per token, or None when unknown.

    The roster's ``price`` wins; ``cost = 0`` means free; otherwise litellm's bundled
    map. A model litellm does not know, or prices at zero while the roster says it
    costs something, is unknown: never silently $0.
    """
    if backend.price is not None:
        return backend.price.input / 1e6, backend.price.output / 1e6
    if backend.cost == 0:
        return 0.0, 0.0
    info = _model_map.info(backend.model)
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not inp and not out:
        return None
    return float(inp or 0.0), float(out or 0.0)


def context_window(backend: Backend) -> int | None:
    """The roster's ``context_window``, else litellm's map, else None (unknown)."""
    if backend.context_window is not None:
        return backend.context_window
    info = _model_map.info(backend.model)
    size = info.get("max_input_tokens") or info.get("max_tokens")
    return int(size) if size else None


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token of one backend: input, output, and prompt-cache reads and writes."""

    input: float
    output: float
    cache_read: float
    cache_write: float


def prices(backend: Backend) -> Prices | None:
    """Every per-token price of ``backend``, or None when its input/output price is unknown.

    Input and output as ``price_per_token``. The cache prices: the roster's
    ``price.cached_input`` and ``price.cache_write`` when set; else the input price
    scaled by the discount (or surcharge) litellm's map gives the model
    (``cache_read_input_token_cost`` / ``cache_creation_input_token_cost`` over
    ``input_cost_per_token``), which is the map's own price when the roster has none or
    agrees with it; else the input price. An unknown discount is no discount: a missing or
    zero price in the map is not taken for a free cache, and a cache read is never
    priced above an uncached token.
    """
    base = price_per_token(backend)
    if base is None:
        return None
    inp, out = base
    info = _model_map.info(backend.model)
    read = _cache_price(inp, info, "cache_read_input_token_cost")
    write = _cache_price(inp, info, "cache_creation_input_token_cost")
    if backend.price is not None:
        if backend.price.cached_input is not None:
            read = backend.price.cached_input / 1e6
        if backend.price.cache_write is not None:
            write = backend.price.cache_write / 1e6
    return Prices(inp, out, read, write)


def _cache_price(inp: float, info: Mapping[str, Any], key: str) -> float:
    """``inp`` times the map's ratio of ``key`` to its input price, else ``inp``."""
    cache, base = info.get(key), info.get("input_cost_per_token")
    if not isinstance(cache, int | float) or not isinstance(base, int | float):
        return inp
    if cache <= 0 or base <= 0:
        return inp
    ratio = float(cache) / float(base)
    return inp * (min(ratio, 1.0) if key.startswith("cache_read") else ratio)


def cost_of(
    backend: Backend,
    prompt_tokens: int,
    completion_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """USD for this usage, or None when the price is unknown.

    Args:
        backend: whose prices apply.
        prompt_tokens: every prompt token, the cached ones included.
        completion_tokens: the reply's tokens.
        cache_read_tokens: the part of ``prompt_tokens`` read from the prompt cache.
        cache_write_tokens: the part of ``prompt_tokens`` written to the prompt cache.
    """
    price = prices(backend)
    if price is None:
        return None
    read = min(max(cache_read_tokens, 0), prompt_tokens)
    write = min(max(cache_write_tokens, 0), prompt_tokens - read)
    fresh = prompt_tokens - read - write
    return (
        fresh * price.input
        + read * price.cache_read
        + write * price.cache_write
        + completion_tokens * price.output
    )


def estimate_tokens(text: str) -> int:
    """A cheap, model-agnostic token estimate: 4 characters a token."""
    return math.ceil(len(text) / 4)


def count_tokens(backend: Backend, messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of ``messages`` for ``backend``'s model.

    litellm's tokenizer-aware counter when litellm is already loaded (a translated backend
    is in use); otherwise the estimate: importing litellm only to count would cost seconds,
    and the budget corrects its estimates with the counts backends report.
    """
    lib = sys.modules.get("litellm")
    if lib is not None:
        try:
            return int(lib.token_counter(model=backend.model, messages=list(messages)))
        except Exception:  # an unknown model or odd content: estimate instead
            pass
    return estimate_tokens("".join(str(m.get("content") or "") for m in messages))
