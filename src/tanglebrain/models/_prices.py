"""Prices, context windows and token counts of a backend, without importing litellm.

The roster's ``price`` and ``context_window`` come first; then litellm's bundled model map
(read as a file, see ``_model_map``); unknown stays unknown, never a silent $0.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
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


def cost_of(backend: Backend, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for this usage, or None when the price is unknown."""
    price = price_per_token(backend)
    if price is None:
        return None
    return prompt_tokens * price[0] + completion_tokens * price[1]


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
