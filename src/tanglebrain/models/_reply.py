"""What came back from one attempt: a whole reply, or a stream judged into a ``Reply``.

A stream's end is judged by what arrived, not by how a library words it: nothing at all
is an empty response, content without a finish reason is a cut stream, and a reply
caught in a loop is stopped (``_repeat``). Token counts and cost are filled in where the
server reported none, and text UTF-8 cannot carry is mended (``surrogates``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass, field

import anyio

from tanglebrain.errors import BackendError
from tanglebrain.models._errors import (
    causes,
    connection_problem,
    from_the_wire,
    no_connection_in_time,
    not_connected,
    to_backend_error,
)
from tanglebrain.models._prices import cost_of, count_tokens
from tanglebrain.models._repeat import REPEATED, RepetitionGuard
from tanglebrain.models._types import (
    Completion,
    Message,
    Outgoing,
    ToolCallRequest,
    Transport,
    Usage,
)
from tanglebrain.roster import Backend
from tanglebrain.surrogates import mend

# Our own deadline sits this far behind litellm's, so that its timeout (which knows the
# phase: connect, first byte, next chunk) normally fires first; ours is the safety net.
_GRACE_S = 5.0


class SinkError(Exception):
    """Wraps an exception raised by an ``on_text`` callback (e.g. a closed stdout)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class Reply:
    """What one successful ``complete`` returned."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    finish_reason: str | None = None  # "length": cut at max_tokens
    # Parts of prompt_tokens read from / written to the provider's prompt cache.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # The server reported no usage (or only part of it): the tokens were counted here.
    estimated: bool = False


@dataclass(slots=True)
class Received:
    """What a stream delivered so far: its text (which reached the reader), tool calls, usage.

    Kept by the caller, so that a stream that ends early still tells what was generated
    (and billed) before it did.
    """

    text: list[str] = field(default_factory=list)
    call_chars: int = 0  # characters of tool-call names and arguments
    usage: Usage | None = None  # what the server reported, if it did before the end


@dataclass(frozen=True, slots=True)
class Counts:
    """One reply's tokens and cost: the server's figures, ours where it gave none."""

    prompt: int
    completion: int
    cache_read: int
    cache_write: int
    cost: float | None
    estimated: bool  # some figure was counted here, not reported


def counts(
    backend: Backend, messages: Sequence[Message], usage: Usage | None, chars: int
) -> Counts:
    """The reply's ``Counts``: ``usage`` where it has them, else counted here.

    Prompt tokens: litellm's tokenizer when it is loaded, else 4 characters a token, and
    never fewer than the cache reads and writes they include. Completion tokens: the
    reply's ``chars`` (text, tool-call names and arguments) at 4 characters a token.
    """
    usage = usage or Usage()
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    estimated = False
    if not prompt:  # a server that reports no usage: count it ourselves
        prompt, estimated = max(count_tokens(backend, messages), read + write), True
    if not completion and chars:  # (none reported for nothing written is exact)
        completion, estimated = math.ceil(chars / 4), True
    cost = cost_of(backend, prompt, completion, read, write)
    return Counts(prompt, completion, read, write, cost, estimated)


def counts_of_unfinished(
    backend: Backend, messages: Sequence[Message], got: Received
) -> Counts | None:
    """The ``Counts`` of a stream that ended before its finish: what it was billed for.

    The provider bills what it generated whether or not the stream finished: once any of
    it arrived, the prompt was read and at least that much was written. The usage the
    server sent before the end wins over our counts. None when nothing arrived (a
    failure before the first token is not billed as a rule).
    """
    chars = sum(map(len, got.text)) + got.call_chars
    if not chars and got.usage is None:
        return None
    return counts(backend, messages, got.usage, chars)


def safety_net(transport: Transport, timeout: float) -> AbstractContextManager[object]:
    """Our own deadline behind litellm's (the native transport keeps its own exactly)."""
    return anyio.fail_after(timeout + _GRACE_S) if _netted(transport) else nullcontext()


def _netted(transport: Transport) -> bool:
    """Whether ``transport``'s waits get ``safety_net`` (the native one times each itself)."""
    return transport.name == "litellm"


def whole(backend: Backend, messages: Sequence[Message], done: Completion) -> Reply:
    """The ``Reply`` of a whole (not streamed) completion; an empty one is an error."""
    if not done.text.strip() and not done.tool_calls:
        raise BackendError(backend.id, "empty response: the reply has no content", kind="empty")
    return _reply(backend, messages, done.text, done.tool_calls, done.usage, done.finish_reason)


async def stream(
    transport: Transport,
    out: Outgoing,
    on_text: Callable[[str], None],
    got: Received,
) -> Reply:
    """Stream one reply; the timeout bounds the wait for the first byte and each gap after it.

    What arrives is also added to ``got``, which outlives a stream that fails. A healthy
    stream may run as long as the model writes: only silence is a timeout. Once
    the stream is open (the backend answered 200), how it ended is judged by what arrived,
    not by how a library words it: nothing at all is an empty response, content without a
    finish reason is a cut stream. A reply caught in a loop (see ``looping``) is stopped
    there and returned with the finish reason ``REPEATED``: like a cut at ``max_tokens``,
    what arrived is kept and marked incomplete.
    """
    backend_id, timeout = out.backend.id, out.timeout
    streamed = got.text
    finish: str | None = None
    calls: dict[int, list[str]] = {}
    guard = RepetitionGuard()
    async with AsyncExitStack() as stack:
        with safety_net(transport, timeout):
            chunks = aiter(await stack.enter_async_context(transport.stream(out)))
        close = getattr(chunks, "aclose", None)
        if close is not None:
            stack.push_async_callback(close)  # before the stream itself is closed
        netted = _netted(transport)  # decided once: a stream waits once per chunk
        while finish != REPEATED:
            try:
                if netted:
                    with safety_net(transport, timeout):
                        chunk = await anext(chunks)
                else:
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except BackendError:
                raise
            except Exception as exc:
                if finish is not None and (streamed or calls):
                    break  # the reply was whole: only the stream's end (or [DONE]) was lost
                raise _ended_early(backend_id, streamed, calls, exc, out) from exc
            got.usage = chunk.usage or got.usage
            finish = chunk.finish_reason or finish
            if chunk.text:
                streamed.append(chunk.text)
                try:
                    on_text(chunk.text)
                except Exception as exc:  # the reader's failure, not the backend's
                    raise SinkError(exc) from exc
                if guard.feed(chunk.text):
                    finish = REPEATED  # closing the stream below stops the generation
            for tc in chunk.tool_calls:
                got.call_chars += len(tc.name) + len(tc.arguments)
                slot = calls.setdefault(tc.index, ["", "", ""])
                slot[0] = tc.id or slot[0]
                slot[1] += tc.name
                slot[2] += tc.arguments
    text = "".join(streamed)
    if finish is None or (not text.strip() and not calls):
        raise _ended_early(backend_id, streamed, calls)
    tool_calls = tuple(
        ToolCallRequest(id=c[0] or f"call_{i}", name=c[1], arguments=c[2])
        for i, c in sorted(calls.items())
    )
    return _reply(out.backend, out.messages, text, tool_calls, got.usage, finish)


def _ended_early(
    backend_id: str,
    streamed: list[str],
    calls: dict[int, list[str]],
    exc: BaseException | None = None,
    out: Outgoing | None = None,
) -> BackendError:
    """The error for a stream that ended before its finish reason.

    Judged by what arrived and by the kinds of exception in the chain (litellm wraps them
    differently from one release to the next; their types survive, their wording does not).
    A stream that litellm opens only when its first chunk is read (Gemini's) fails there
    with the server's HTTP error: that error, with its status, is what is reported.
    """
    chain = causes(exc)
    nothing = not "".join(streamed).strip() and not calls
    timeout = out.timeout if out is not None else 0.0
    if nothing and exc is not None and out is not None and from_the_wire(chain):
        return to_backend_error(
            backend_id, exc, timeout, secrets=[out.api_key], connect_timeout=out.connect_timeout
        )
    if nothing and out is not None and no_connection_in_time(chain):
        return not_connected(backend_id, min(timeout, out.connect_timeout))
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return BackendError(backend_id, f"timed out after {timeout:g}s", kind="timeout")
    if any(isinstance(e, json.JSONDecodeError | UnicodeDecodeError) for e in chain):
        return BackendError(
            backend_id, "malformed response: a stream chunk is not valid JSON", kind="malformed"
        )
    if nothing:
        if any(isinstance(e, OSError) or type(e).__name__ == "APIConnectionError" for e in chain):
            reason = f"connection failed: {connection_problem(chain)}"
            return BackendError(backend_id, reason, kind="connect", retryable=True)
        return BackendError(
            backend_id, "empty response: the stream carried no content", kind="empty"
        )
    # Retrying is safe only while nothing reached the reader; ``complete`` checks that.
    return BackendError(
        backend_id, "the stream ended without a finish reason", kind="cut", retryable=True
    )


def _reply(
    backend: Backend,
    messages: Sequence[Message],
    text: str,
    calls: tuple[ToolCallRequest, ...],
    usage: Usage | None,
    finish_reason: str | None,
) -> Reply:
    text, calls = _encodable(text, calls)
    chars = len(text) + sum(len(c.name) + len(c.arguments) for c in calls)
    n = counts(backend, messages, usage, chars)
    return Reply(
        text, calls, n.prompt, n.completion, n.cost, finish_reason, n.cache_read, n.cache_write,
        n.estimated,
    )  # fmt: skip


def _encodable(
    text: str, calls: tuple[ToolCallRequest, ...]
) -> tuple[str, tuple[ToolCallRequest, ...]]:
    """The reply with a stray half of a character mended (see ``surrogates``).

    A reply cut mid-emoji ends in one; every later step (sizes, the ledger, the next
    request) encodes the text as UTF-8. Its streamed deltas went out as they came.
    """
    try:
        text.encode()
        for c in calls:
            (c.id + c.name + c.arguments).encode()
    except UnicodeEncodeError:
        text = mend(text)
        calls = tuple(
            ToolCallRequest(id=mend(c.id), name=mend(c.name), arguments=mend(c.arguments))
            for c in calls
        )
    return text, calls
