"""The values that cross the transport seam: one request out, a completion or chunks back.

Both transports (native OpenAI-compatible, litellm) speak these, so everything above
them (retries, attempts, stream judgement, prices) is written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tanglebrain.roster import Backend

Message = dict[str, Any]
TransportName = Literal["openai", "litellm"]

# How long a transport waits for a connection (TLS and proxy tunnel included) before it
# counts as failed, when the call's own timeout is longer: a host that drops packets
# (down, firewalled, a wrong address) is moved on from in seconds, not after the whole
# timeout meant for a model that is slow to answer. The roster's ``connect_timeout_s``.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a backend reported for one reply.

    ``prompt_tokens`` counts every prompt token, those read from or written to the
    provider's prompt cache included (OpenAI and Gemini report them so; litellm adds
    Anthropic's back). ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of
    it billed at their own prices; they are clamped so that the parts never exceed the
    whole, whatever a server reports, and no token is billed twice.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        read = min(max(self.cache_read_tokens, 0), max(self.prompt_tokens, 0))
        write = min(max(self.cache_write_tokens, 0), max(self.prompt_tokens, 0) - read)
        object.__setattr__(self, "cache_read_tokens", read)
        object.__setattr__(self, "cache_write_tokens", write)


def count(value: Any) -> int:
    """A token count from a usage report: a non-negative int, 0 for anything else."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):  # a server's odd value is no count
        return 0


@dataclass(frozen=True, slots=True)
class Completion:
    """One whole (non-streamed) reply."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    usage: Usage | None
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class ToolDelta:
    """A piece of a streamed tool call; pieces with the same ``index`` are concatenated."""

    index: int
    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed event: a text delta, tool-call pieces, a finish reason, usage."""

    text: str = ""
    tool_calls: tuple[ToolDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What one attempt sends: the backend, its messages and the call's parameters.

    ``timeout`` bounds each wait for the reply; ``connect_timeout`` the wait for a
    connection, when shorter. ``cache_prefix``: mark the prompt's stable prefix (the system
    prompt and the tool schemas) for the provider's prompt cache, where the provider needs
    a marker to cache at all (Anthropic's ``cache_control``; see ``_cache``). Providers
    that cache on their own (OpenAI, Gemini) and the native transport ignore it.
    """

    backend: Backend
    messages: Sequence[Message]
    api_key: str | None
    timeout: float
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | None = None
    max_tokens: int | None = None
    cache_prefix: bool = False
    connect_timeout: float = CONNECT_TIMEOUT_S


class Transport(Protocol):
    """How a request reaches a backend and its reply comes back.

    Errors: either a ``BackendError`` or the exception the transport's client raised
    (``_errors.to_backend_error`` maps it); a stream that breaks raises from its iterator.
    """

    name: TransportName

    async def complete(self, out: Outgoing) -> Completion:
        """Send ``out`` and return the whole reply."""
        ...

    def stream(self, out: Outgoing) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        """Open a streamed reply; leaving the context closes it (and stops generation)."""
        ...
