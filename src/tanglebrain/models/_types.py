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


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a backend reported for one reply."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


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
    """What one attempt sends: the backend, its messages and the call's parameters."""

    backend: Backend
    messages: Sequence[Message]
    api_key: str | None
    timeout: float
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | None = None
    max_tokens: int | None = None


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
