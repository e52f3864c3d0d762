"""One backend call: retries, attempts on the trace, and how a stream's end is judged.

Transport-agnostic: the request goes out through the backend's transport (``_openai``
or ``_litellm``, chosen by ``transport_for``) and comes back as the values of
``_types``. Retries are ours, so that every attempt is counted, ``Retry-After`` is
honoured and backoff is explicit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import anyio

from tanglebrain.backoff import backoff
from tanglebrain.errors import BackendError
from tanglebrain.models._errors import (
    causes,
    connection_problem,
    from_the_wire,
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
    TransportName,
    Usage,
)
from tanglebrain.roster import Backend
from tanglebrain.surrogates import mend, mended
from tanglebrain.trace import Attempt, Call

# Our own deadline sits this far behind litellm's, so that its timeout (which knows the
# phase: connect, first byte, next chunk) normally fires first; ours is the safety net.
_GRACE_S = 5.0
# Providers that go native when the roster leaves ``transport`` to us: the OpenAI API
# itself and the local servers that speak it. Hosted compatible services (Groq, …) go
# native with ``transport = "openai"``.
NATIVE_BY_DEFAULT = frozenset({"openai", "ollama", "ollama_chat", "lm_studio", "hosted_vllm"})


def transport_name(backend: Backend) -> TransportName:
    """Which transport ``backend``'s calls use: the roster's choice, else by provider."""
    if backend.transport != "auto":
        return backend.transport
    native = "/" in backend.model and backend.provider in NATIVE_BY_DEFAULT
    return "openai" if native else "litellm"


def transport_for(backend: Backend, env: Mapping[str, str]) -> Transport:
    """The transport object for ``backend`` (litellm's is imported only when returned)."""
    if transport_name(backend) == "openai":
        from tanglebrain.models._openai import OpenAITransport

        return OpenAITransport(env)
    from tanglebrain.models._litellm import LitellmTransport

    return LitellmTransport()


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry one backend."""

    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def delay(
        self, attempt: int, retry_after: float | None, *, failover: bool = False
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        With ``failover`` (another backend can take the call) only a server that said
        when to come back (``Retry-After``) is retried; anything else moves on at once.
        """
        if attempt >= self.max_attempts or (failover and retry_after is None):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return backoff(attempt, self.base_delay, self.max_delay)


async def complete(
    backend: Backend,
    messages: Sequence[Message],
    *,
    call: Call,
    env: Mapping[str, str],
    timeout: float,
    retry: RetryPolicy,
    tools: Sequence[Mapping[str, Any]] | None = None,
    on_text: Callable[[str], None] | None = None,
    max_tokens: int | None = None,
    on_attempt: Callable[[], None] | None = None,
    failover: bool = False,
    tool_choice: str | None = None,
    cache_prefix: bool = False,
) -> Reply:
    """Send ``messages`` to ``backend``, retrying transient failures.

    Args:
        backend: the roster entry to call.
        messages: OpenAI-style chat messages.
        call: the trace node; one ``Attempt`` is appended per HTTP request.
        env: where API keys are looked up (by the roster's variable name).
        timeout: seconds each wait of an attempt may last: connecting, the first byte,
            each silence after it (litellm: the whole attempt, plus a grace).
        retry: the retry policy.
        tools: OpenAI function-tool schemas, if any.
        on_text: when given, the reply is streamed and each text delta passed here.
        max_tokens: completion cap, when set.
        on_attempt: called after every attempt is recorded (for live views).
        failover: another backend can take the call, so a failure moves on to it
            rather than waiting to retry here (see ``RetryPolicy.delay``).
        tool_choice: sent with ``tools`` (``"none"``: offered, but the model must answer).
        cache_prefix: mark the system prompt and tools for the provider's prompt cache
            where it needs a marker (see ``cacheable_prefix``); others ignore it.

    Returns:
        The reply of the first successful attempt.

    Raises:
        BackendError: when every attempt failed, or a non-retryable error occurred.
        MissingKeyError: when the backend's key variable is unset.
    """
    out = Outgoing(
        backend, messages, backend.api_key(env), timeout, tools or None,
        tool_choice if tools else None, max_tokens, cache_prefix,
    )  # fmt: skip
    return await _call_with_retries(
        transport_for(backend, env), out, call, retry, on_text, on_attempt, failover
    )


async def _call_with_retries(
    transport: Transport,
    out: Outgoing,
    call: Call,
    retry: RetryPolicy,
    on_text: Callable[[str], None] | None,
    on_attempt: Callable[[], None] | None,
    failover: bool,
) -> Reply:
    """Send ``out`` until an attempt succeeds or ``_retry_delay`` gives up (see ``complete``)."""
    backend = out.backend
    # The request body's messages as UTF-8 JSON: what goes over the wire, give or take.
    try:
        bytes_in = len(json.dumps(out.messages, default=str, ensure_ascii=False).encode())
    except UnicodeEncodeError:
        # A lone surrogate (see ``surrogates``) has no UTF-8 form: no transport could
        # send it, so the text is mended before any tries.
        out = replace(out, messages=mended(out.messages))
        bytes_in = len(json.dumps(out.messages, default=str, ensure_ascii=False).encode())
    attempt_no = 0
    while True:
        attempt_no += 1
        attempt = Attempt(backend=backend.id, model=backend.model, started=time.time())
        attempt.bytes_in, attempt.transport = bytes_in, transport.name
        call.attempts.append(attempt)
        t0 = time.perf_counter()
        streamed: list[str] = []
        try:
            if on_text is None:
                with _safety_net(transport, out.timeout):
                    reply = _whole(backend, out.messages, await transport.complete(out))
            else:
                reply = await _stream(transport, out, on_text, streamed)
        except SinkError as exc:
            call.attempts.remove(attempt)  # we stopped it; the backend did not fail
            raise exc.error from None
        except BaseException as exc:
            attempt.latency_ms = (time.perf_counter() - t0) * 1000
            if not isinstance(exc, Exception):  # cancelled or interrupted: not the backend
                attempt.status = "cancelled"
                if on_attempt:
                    on_attempt()
                raise
            err = _failed(attempt, backend, exc, out.timeout, out.api_key, streamed)
            if on_attempt:
                on_attempt()
            wait = _retry_delay(retry, attempt_no, err, bool(streamed), failover)
            if wait is None:
                raise err from None
            await anyio.sleep(wait)
            continue
        _succeeded(attempt, reply, (time.perf_counter() - t0) * 1000)
        if on_attempt:
            on_attempt()
        return reply


def _retry_delay(
    retry: RetryPolicy, attempt_no: int, err: BackendError, streamed: bool, failover: bool
) -> float | None:
    """Seconds to wait before retrying after ``err``, or None to raise it."""
    if not err.retryable or streamed:  # text reached the user: no repeat
        return None
    return retry.delay(attempt_no, err.retry_after, failover=failover)


def _succeeded(attempt: Attempt, reply: Reply, latency_ms: float) -> None:
    """Record a successful attempt: its time, usage, cost and reply size."""
    attempt.latency_ms = latency_ms
    attempt.prompt_tokens = reply.prompt_tokens
    attempt.completion_tokens = reply.completion_tokens
    attempt.cache_read_tokens = reply.cache_read_tokens
    attempt.cache_write_tokens = reply.cache_write_tokens
    attempt.cost_usd = reply.cost_usd
    attempt.bytes_out = len(reply.text.encode()) + sum(
        len(t.arguments.encode()) for t in reply.tool_calls
    )


def _safety_net(transport: Transport, timeout: float) -> AbstractContextManager[object]:
    """Our own deadline behind litellm's (the native transport keeps its own exactly)."""
    if transport.name == "litellm":
        return anyio.fail_after(timeout + _GRACE_S)
    return _NO_NET  # shared: a stream enters it once per chunk


_NO_NET = nullcontext()


def _failed(
    attempt: Attempt,
    backend: Backend,
    exc: Exception,
    timeout: float,
    key: str | None,
    streamed: list[str],
) -> BackendError:
    """Record a failed attempt and return its error (a cut one when text had arrived)."""
    err = to_backend_error(backend.id, exc, timeout, secrets=[key])
    if streamed:  # text already reached the user: retrying would repeat it
        err = BackendError(
            backend.id, f"stream cut after {len(''.join(streamed))} chars: {err.reason}",
            kind="cut", status=err.status,
        )  # fmt: skip
    attempt.status, attempt.error, attempt.http_status = "error", err.reason, err.status
    attempt.error_kind = err.kind
    return err


def _whole(backend: Backend, messages: Sequence[Message], done: Completion) -> Reply:
    if not done.text.strip() and not done.tool_calls:
        raise BackendError(backend.id, "empty response: the reply has no content", kind="empty")
    return _reply(backend, messages, done.text, done.tool_calls, done.usage, done.finish_reason)


async def _stream(
    transport: Transport,
    out: Outgoing,
    on_text: Callable[[str], None],
    streamed: list[str],
) -> Reply:
    """Stream one reply; the timeout bounds the wait for the first byte and each gap after it.

    A healthy stream may run as long as the model writes: only silence is a timeout. Once
    the stream is open (the backend answered 200), how it ended is judged by what arrived,
    not by how a library words it: nothing at all is an empty response, content without a
    finish reason is a cut stream. A reply caught in a loop (see ``looping``) is stopped
    there and returned with the finish reason ``REPEATED``: like a cut at ``max_tokens``,
    what arrived is kept and marked incomplete.
    """
    backend_id, timeout = out.backend.id, out.timeout
    usage: Usage | None = None
    finish: str | None = None
    calls: dict[int, list[str]] = {}
    guard = RepetitionGuard()
    async with AsyncExitStack() as stack:
        with _safety_net(transport, timeout):
            chunks = aiter(await stack.enter_async_context(transport.stream(out)))
        close = getattr(chunks, "aclose", None)
        if close is not None:
            stack.push_async_callback(close)  # before the stream itself is closed
        while finish != REPEATED:
            try:
                with _safety_net(transport, timeout):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except BackendError:
                raise
            except Exception as exc:
                raise _ended_early(backend_id, streamed, calls, exc, timeout, out.api_key) from exc
            usage = chunk.usage or usage
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
    return _reply(out.backend, out.messages, text, tool_calls, usage, finish)


def _ended_early(
    backend_id: str,
    streamed: list[str],
    calls: dict[int, list[str]],
    exc: BaseException | None = None,
    timeout: float = 0.0,
    key: str | None = None,
) -> BackendError:
    """The error for a stream that ended before its finish reason.

    Judged by what arrived and by the kinds of exception in the chain (litellm wraps them
    differently from one release to the next; their types survive, their wording does not).
    A stream that litellm opens only when its first chunk is read (Gemini's) fails there
    with the server's HTTP error: that error, with its status, is what is reported.
    """
    chain = causes(exc)
    nothing = not "".join(streamed).strip() and not calls
    if nothing and exc is not None and from_the_wire(chain):
        return to_backend_error(backend_id, exc, timeout, secrets=[key])
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
    usage = usage or Usage()
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if not prompt:  # a server that reports no usage: count it ourselves
        prompt = count_tokens(backend, messages)
    if not completion:
        completion = math.ceil((len(text) + sum(len(c.arguments) for c in calls)) / 4)
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    cost = cost_of(backend, prompt, completion, read, write)
    return Reply(text, calls, prompt, completion, cost, finish_reason, read, write)


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
