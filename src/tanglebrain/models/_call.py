"""One backend call: the transport, retries and failover timing, attempts on the trace.

Transport-agnostic: the request goes out through the backend's transport (``_openai``
or ``_litellm``, chosen by ``transport_for``) and comes back as the values of
``_types``, judged into a ``Reply`` by ``_reply``. Retries are ours, so that every
attempt is counted, ``Retry-After`` is honoured and backoff is explicit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio

from tanglebrain.backoff import backoff
from tanglebrain.errors import BackendError
from tanglebrain.models._errors import (
    to_backend_error,
)
from tanglebrain.models._reply import (
    Received,
    Reply,
    SinkError,
    counts_of_unfinished,
    safety_net,
    stream,
    whole,
)
from tanglebrain.models._types import (
    CONNECT_TIMEOUT_S,
    Message,
    Outgoing,
    Transport,
    TransportName,
)
from tanglebrain.roster import Backend
from tanglebrain.surrogates import mended
from tanglebrain.trace import Attempt, Call

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
    connect_timeout: float = CONNECT_TIMEOUT_S,
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
        connect_timeout: seconds a connection may take, when shorter than ``timeout``
            (litellm honours it for its OpenAI, Azure and Bedrock providers only).

    Returns:
        The reply of the first successful attempt.

    Raises:
        BackendError: when every attempt failed, or a non-retryable error occurred.
        MissingKeyError: when the backend's key variable is unset.
    """
    out = Outgoing(
        backend, messages, backend.api_key(env), timeout, tools or None,
        tool_choice if tools else None, max_tokens, cache_prefix, connect_timeout,
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
    try:
        bytes_in = _size(out.messages)
    except UnicodeEncodeError:
        # A lone surrogate (see ``surrogates``) has no UTF-8 form: no transport could
        # send it, so the text is mended before any tries.
        out = replace(out, messages=mended(out.messages))
        bytes_in = _size(out.messages)
    attempt_no = 0
    while True:
        attempt_no += 1
        attempt = Attempt(backend=backend.id, model=backend.model, started=time.time())
        attempt.bytes_in, attempt.transport = bytes_in, transport.name
        call.attempts.append(attempt)
        t0 = time.perf_counter()
        got = Received()
        try:
            if on_text is None:
                with safety_net(transport, out.timeout):
                    reply = whole(backend, out.messages, await transport.complete(out))
            else:
                reply = await stream(transport, out, on_text, got)
        except BaseException as exc:
            attempt.latency_ms = (time.perf_counter() - t0) * 1000
            _unfinished(attempt, out, got)
            # Cancelled, interrupted, or stopped by us (the reader left, the disk is full):
            # not the backend's failure, but a call it answered, kept on the run's record.
            if isinstance(exc, SinkError) or not isinstance(exc, Exception):
                attempt.status = "cancelled"
                if on_attempt:
                    on_attempt()
                if isinstance(exc, SinkError):
                    raise exc.error from None
                raise
            err = _failed(attempt, out, exc, got.text)
            if on_attempt:
                on_attempt()
            wait = _retry_delay(retry, attempt_no, err, bool(got.text), failover)
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


def _size(messages: Sequence[Message]) -> int:
    """The messages as UTF-8 JSON: what goes over the wire, give or take."""
    return len(json.dumps(messages, default=str, ensure_ascii=False).encode())


def _succeeded(attempt: Attempt, reply: Reply, latency_ms: float) -> None:
    """Record a successful attempt: its time, usage, cost and reply size."""
    attempt.latency_ms = latency_ms
    attempt.estimated = reply.estimated
    attempt.prompt_tokens = reply.prompt_tokens
    attempt.completion_tokens = reply.completion_tokens
    attempt.cache_read_tokens = reply.cache_read_tokens
    attempt.cache_write_tokens = reply.cache_write_tokens
    attempt.cost_usd = reply.cost_usd
    attempt.bytes_out = len(reply.text.encode()) + sum(
        len(t.arguments.encode()) for t in reply.tool_calls
    )


def _unfinished(attempt: Attempt, out: Outgoing, got: Received) -> None:
    """Record what a stream that ended early generated: its usage, or our counts of it."""
    n = counts_of_unfinished(out.backend, out.messages, got)
    if n is not None:
        attempt.prompt_tokens, attempt.completion_tokens = n.prompt, n.completion
        attempt.cache_read_tokens, attempt.cache_write_tokens = n.cache_read, n.cache_write
        attempt.cost_usd, attempt.estimated = n.cost, n.estimated
        text = "".join(got.text).encode("utf-8", "surrogatepass")
        attempt.bytes_out = len(text) + got.call_chars


def _failed(attempt: Attempt, out: Outgoing, exc: Exception, streamed: list[str]) -> BackendError:
    """Record a failed attempt and return its error (a cut one when text had arrived)."""
    backend = out.backend
    err = to_backend_error(
        backend.id, exc, out.timeout, secrets=[out.api_key], connect_timeout=out.connect_timeout
    )
    if streamed:  # text already reached the user: retrying would repeat it
        err = BackendError(
            backend.id, f"stream cut after {len(''.join(streamed))} chars: {err.reason}",
            kind="cut", status=err.status,
        )  # fmt: skip
    attempt.status, attempt.error, attempt.http_status = "error", err.reason, err.status
    attempt.error_kind = err.kind
    return err
