"""Talking to models: one call seam, two transports, prices and token counts.

::

    complete(backend, messages, …)         retries, attempts, stream judgement  (_call)
      ├── OpenAITransport   OpenAI-compatible backends, spoken directly    (_openai, _http)
      └── LitellmTransport  providers that need translation; litellm
                            is imported on first use                        (_litellm)
    price_per_token, prices, cost_of (prompt-cache aware), context_window,
    count_tokens                           without litellm                  (_prices)
    cacheable_prefix: whether a call marks its prompt prefix for the
    provider's cache (Claude models: cache_control)                         (_cache)
    errors of either transport → BackendError with a kind                   (_errors)

Which transport a backend uses: the roster's ``transport`` ("openai" or "litellm"), else
native for ``openai/``, ``ollama/``, ``ollama_chat/``, ``lm_studio/`` and
``hosted_vllm/`` models and litellm for every other provider (``transport_name``).
"""

from __future__ import annotations

from tanglebrain.models._cache import cacheable_prefix
from tanglebrain.models._call import NATIVE_BY_DEFAULT, RetryPolicy, complete, transport_name
from tanglebrain.models._prices import (
    Prices,
    context_window,
    cost_of,
    count_tokens,
    estimate_tokens,
    price_per_token,
    prices,
)
from tanglebrain.models._repeat import REPEATED, looping
from tanglebrain.models._reply import Reply, SinkError
from tanglebrain.models._types import Message, ToolCallRequest, TransportName

__all__ = [
    "NATIVE_BY_DEFAULT",
    "REPEATED",
    "Message",
    "Prices",
    "Reply",
    "RetryPolicy",
    "SinkError",
    "ToolCallRequest",
    "TransportName",
    "cacheable_prefix",
    "complete",
    "context_window",
    "cost_of",
    "count_tokens",
    "estimate_tokens",
    "load_litellm",
    "looping",
    "preload_litellm",
    "price_per_token",
    "prices",
    "transport_name",
]


def load_litellm() -> None:
    """Import litellm now (a server does it before its first request)."""
    from tanglebrain.models._litellm import litellm

    litellm()


def preload_litellm() -> None:
    """Start importing litellm in the background (see ``_litellm.preload``)."""
    from tanglebrain.models._litellm import preload

    preload()
