"""The one module that talks to litellm: call, stream, usage, cost, error mapping.

litellm is imported lazily (it costs seconds and ~170 MB), with the hygiene it needs
to stay quiet: no price-map download, no banner on stdout, no log lines. Retries are
ours (litellm and the OpenAI SDK are told not to retry) so that every attempt is
counted, ``Retry-After`` is honoured and backoff is explicit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio

from tanglebrain import model_map
from tanglebrain.errors import BackendError
from tanglebrain.llm_errors import causes, to_backend_error
from tanglebrain.roster import Backend
from tanglebrain.trace import Attempt, Call

Message = dict[str, Any]
_litellm: ModuleType | None = None
# Our own deadline sits this far behind litellm's, so that its timeout (which knows the
# phase: connect, first byte, next chunk) normally fires first; ours is the safety net.
_GRACE_S = 5.0


def litellm() -> ModuleType:
    """Import litellm once, configured to stay off stdout and off the network."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm as lib

        lib.suppress_debug_info = True
        lib.telemetry = False
        lib.drop_params = True
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        _litellm = lib
    return _litellm


class SinkError(Exception):
    """Wraps an exception raised by an ``on_text`` callback (e.g. a closed stdout)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What one successful ``complete`` returned."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    finish_reason: str | None = None  # "length": cut at max_tokens


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
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)  # jitter spreads synchronized retries


# --- prices -------------------------------------------------------------------------


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
    info = _model_info(backend.model)
    inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not inp and not out:
        return None
    return float(inp or 0.0), float(out or 0.0)


def _model_info(model: str) -> dict[str, Any]:
    """Litellm's model info, read from its map without importing it; {} when unknown."""
    return model_map.info(model)


def context_window(backend: Backend) -> int | None:
    """The roster's ``context_window``, else litellm's, else None (unknown)."""
    if backend.context_window is not None:
        return backend.context_window
    info = _model_info(backend.model)
    size = info.get("max_input_tokens") or info.get("max_tokens")
    return int(size) if size else None


def count_tokens(backend: Backend, messages: Sequence[Message]) -> int:
    """Prompt tokens of ``messages`` for ``backend``'s model (litellm's counter)."""
    try:
        return int(litellm().token_counter(model=backend.model, messages=list(messages)))
    except Exception:
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        return math.ceil(chars / 4)


def cost_of(backend: Backend, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for this usage, or None when the price is unknown."""
    price = price_per_token(backend)
    if price is None:
        return None
    return prompt_tokens * price[0] + completion_tokens * price[1]


# --- the call -----------------------------------------------------------------------


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
) -> Reply:
    """Send ``messages`` to ``backend``, retrying transient failures.

    Args:
        backend: the roster entry to call.
        messages: OpenAI-style chat messages.
        call: the trace node; one ``Attempt`` is appended per HTTP request.
        env: where API keys are looked up (by the roster's variable name).
        timeout: seconds per attempt.
        retry: the retry policy.
        tools: OpenAI function-tool schemas, if any.
        on_text: when given, the reply is streamed and each text delta passed here.
        max_tokens: completion cap, when set.
        on_attempt: called after every attempt is recorded (for live views).
        failover: another backend can take the call, so a failure moves on to it
            rather than waiting to retry here (see ``RetryPolicy.delay``).
        tool_choice: sent with ``tools`` (``"none"``: offered, but the model must answer).

    Returns:
        The reply of the first successful attempt.

    Raises:
        BackendError: when every attempt failed, or a non-retryable error occurred.
        MissingKeyError: when the backend's key variable is unset.
    """
    kwargs = _request_kwargs(backend, env, timeout, tools, max_tokens)
    if tools and tool_choice:
        kwargs["tool_choice"] = tool_choice
    attempt_no = 0
    while True:
        attempt_no += 1
        attempt = Attempt(backend=backend.id, model=backend.model, started=time.time())
        # The request body's messages as UTF-8 JSON: what goes over the wire, give or take.
        attempt.bytes_in = len(json.dumps(messages, default=str, ensure_ascii=False).encode())
        call.attempts.append(attempt)
        t0 = time.perf_counter()
        streamed: list[str] = []
        try:
            if on_text is None:
                with anyio.fail_after(timeout + _GRACE_S):
                    reply = await _once(backend, messages, kwargs)
            else:
                reply = await _stream(backend, messages, kwargs, on_text, streamed, timeout)
        except SinkError as exc:
            call.attempts.remove(attempt)  # we stopped it; the backend did not fail
            raise exc.error from None
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled or interrupted: not the backend
                attempt.latency_ms = (time.perf_counter() - t0) * 1000
                attempt.status = "cancelled"
                if on_attempt:
                    on_attempt()
                raise
            err = to_backend_error(backend.id, exc, timeout, secrets=[kwargs.get("api_key")])
            attempt.latency_ms = (time.perf_counter() - t0) * 1000
            attempt.status, attempt.error, attempt.http_status = "error", err.reason, err.status
            if on_attempt:
                on_attempt()
            if streamed:  # text already reached the user: retrying would repeat it
                raise BackendError(
                    backend.id,
                    f"stream cut after {len(''.join(streamed))} chars: {err.reason}",
                    status=err.status,
                ) from None
            wait = (
                retry.delay(attempt_no, err.retry_after, failover=failover)
                if err.retryable
                else None
            )
            if wait is None:
                raise err from None
            await anyio.sleep(wait)
            continue
        attempt.latency_ms = (time.perf_counter() - t0) * 1000
        attempt.prompt_tokens = reply.prompt_tokens
        attempt.completion_tokens = reply.completion_tokens
        attempt.cost_usd = reply.cost_usd
        attempt.bytes_out = len(reply.text.encode()) + sum(
            len(t.arguments.encode()) for t in reply.tool_calls
        )
        if on_attempt:
            on_attempt()
        return reply


def _request_kwargs(
    backend: Backend,
    env: Mapping[str, str],
    timeout: float,
    tools: Sequence[Mapping[str, Any]] | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": backend.model,
        "timeout": timeout,
        "num_retries": 0,  # our loop retries; litellm's would be invisible
        "max_retries": 0,  # and the OpenAI SDK would silently retry twice
    }
    key = backend.api_key(env)
    if key is not None:
        kwargs["api_key"] = key
    elif backend.api_base and backend.provider == "openai":
        # OpenAI-compatible local servers need no key, but the SDK insists on one.
        kwargs["api_key"] = "no-key-needed"
    if backend.api_base:
        kwargs["api_base"] = backend.api_base
    if tools:
        kwargs["tools"] = list(tools)
        # Our tools are plain functions, never litellm's MCP gateway. Without this flag
        # litellm imports that gateway (~0.4 s of CPU) inside a worker thread on the first
        # call with tools, and a timeout raised meanwhile on another call crashes in the
        # OpenAI SDK on the half-imported `httpx2` module.
        kwargs["_skip_mcp_handler"] = True
    if max_tokens:
        kwargs["max_tokens"] = max_tokens
    return kwargs


async def _once(backend: Backend, messages: Sequence[Message], kwargs: dict[str, Any]) -> Reply:
    resp = await litellm().acompletion(messages=list(messages), **kwargs)
    choices = getattr(resp, "choices", None)
    if not choices:
        raise BackendError(backend.id, "empty response: no choices")
    msg = choices[0].message
    calls = tuple(
        ToolCallRequest(
            id=str(tc.id or f"call_{i}"),
            name=str(tc.function.name or ""),
            arguments=str(tc.function.arguments or ""),
        )
        for i, tc in enumerate(getattr(msg, "tool_calls", None) or [])
    )
    text = str(msg.content or "")
    if not text.strip() and not calls:
        raise BackendError(backend.id, "empty response: the reply has no content")
    usage = getattr(resp, "usage", None)
    return _reply(backend, messages, text, calls, usage, choices[0].finish_reason)


# --- the repetition guard of streamed replies ---------------------------------------

REPEATED = "repetition"
"""The finish reason of a streamed reply stopped by the repetition guard (see ``looping``)."""
REPEAT_MAX_BLOCK = 500
REPEAT_MIN_COPIES = 10
REPEAT_MIN_CHARS = 2000
_REPEAT_CHECK_EVERY = 256  # characters of new text between two checks
_REPEAT_WINDOW = 8192  # characters of the reply's tail kept for checking
_REPEAT_KEY = 16


def looping(text: str) -> bool:
    """Whether ``text`` ends in a loop: one block of text written over and over.

    The rule: the text ends in ``REPEAT_MIN_COPIES`` (10) or more back-to-back copies of
    one block of at most ``REPEAT_MAX_BLOCK`` (500) characters, and those copies cover at
    least ``REPEAT_MIN_CHARS`` (2,000) characters. A 60-character sentence must come 34
    times in a row, a 400-character paragraph 10 times, a single character 2,000 times.
    Only the text counts, not how a provider splits it into stream chunks.
    """
    if len(text) < REPEAT_MIN_CHARS:
        return False
    pos = len(text) - _REPEAT_KEY  # where the last characters, the key, start
    key = text[pos:]
    lo = max(0, pos - REPEAT_MAX_BLOCK)
    # Each earlier occurrence of the key, nearest first, gives a candidate block length.
    found = text.rfind(key, lo, pos - 1 + _REPEAT_KEY)
    while found != -1:
        block = pos - found
        need = max(REPEAT_MIN_COPIES * block, REPEAT_MIN_CHARS)
        if need > len(text):
            return False  # longer blocks need even more text
        tail = text[-need:]
        if tail[block:] == tail[:-block]:  # periodic with this block length
            return True
        found = text.rfind(key, lo, found - 1 + _REPEAT_KEY)
    return False


class _RepetitionGuard:
    """Feeds a stream's text to ``looping`` every ``_REPEAT_CHECK_EVERY`` characters."""

    def __init__(self) -> None:
        self._tail = ""
        self._unchecked = 0

    def feed(self, text: str) -> bool:
        """Add a delta; True when the reply is looping."""
        self._tail = (self._tail + text)[-_REPEAT_WINDOW:]
        self._unchecked += len(text)
        if self._unchecked < _REPEAT_CHECK_EVERY:
            return False
        self._unchecked = 0
        return looping(self._tail)


async def _stream(
    backend: Backend,
    messages: Sequence[Message],
    kwargs: dict[str, Any],
    on_text: Callable[[str], None],
    streamed: list[str],
    timeout: float,
) -> Reply:
    """Stream one reply; ``timeout`` bounds the wait for the first byte and each gap after it.

    A healthy stream may run as long as the model writes: only silence is a timeout. Once
    the stream is open (the backend answered 200), how it ended is judged by what arrived,
    not by how a library words it: nothing at all is an empty response, content without a
    finish reason is a cut stream. A reply caught in a loop (see ``looping``) is stopped
    there and returned with the finish reason ``REPEATED``: like a cut at ``max_tokens``,
    what arrived is kept and marked incomplete.
    """
    with anyio.fail_after(timeout + _GRACE_S):
        stream = await litellm().acompletion(
            messages=list(messages), stream=True, stream_options={"include_usage": True}, **kwargs
        )
    usage: Any = None
    finish: str | None = None
    calls: dict[int, list[str]] = {}
    chunks = aiter(stream)
    guard = _RepetitionGuard()
    try:
        while finish != REPEATED:
            try:
                with anyio.fail_after(timeout + _GRACE_S):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise _ended_early(backend.id, streamed, calls, exc, timeout) from exc
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                finish = getattr(choice, "finish_reason", None) or finish
                delta = choice.delta
                if delta.content:
                    streamed.append(delta.content)
                    try:
                        on_text(delta.content)
                    except Exception as exc:  # the reader's failure, not the backend's
                        raise SinkError(exc) from exc
                    if guard.feed(delta.content):
                        finish = REPEATED  # closing the stream below stops the generation
                        break
                for tc in getattr(delta, "tool_calls", None) or []:
                    slot = calls.setdefault(tc.index or 0, ["", "", ""])
                    slot[0] = tc.id or slot[0]
                    slot[1] += (tc.function.name or "") if tc.function else ""
                    slot[2] += (tc.function.arguments or "") if tc.function else ""
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    text = "".join(streamed)
    if finish is None or (not text.strip() and not calls):
        raise _ended_early(backend.id, streamed, calls)
    tool_calls = tuple(
        ToolCallRequest(id=c[0] or f"call_{i}", name=c[1], arguments=c[2])
        for i, c in sorted(calls.items())
    )
    return _reply(backend, messages, text, tool_calls, usage, finish)


def _ended_early(
    backend_id: str,
    streamed: list[str],
    calls: dict[int, list[str]],
    exc: BaseException | None = None,
    timeout: float = 0.0,
) -> BackendError:
    """The error for a stream that ended before its finish reason.

    Judged by what arrived and by the kinds of exception in the chain (litellm wraps them
    differently from one release to the next; their types survive, their wording does not).
    """
    chain = causes(exc)
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return BackendError(backend_id, f"timed out after {timeout:g}s")
    if any(isinstance(e, json.JSONDecodeError | UnicodeDecodeError) for e in chain):
        return BackendError(backend_id, "malformed response: a stream chunk is not valid JSON")
    if not "".join(streamed).strip() and not calls:
        if any(isinstance(e, OSError) or type(e).__name__ == "APIConnectionError" for e in chain):
            return BackendError(backend_id, "connection failed: no reply arrived", retryable=True)
        return BackendError(backend_id, "empty response: the stream carried no content")
    # Retrying is safe only while nothing reached the reader; ``complete`` checks that.
    return BackendError(backend_id, "the stream ended without a finish reason", retryable=True)




def _reply(
    backend: Backend,
    messages: Sequence[Message],
    text: str,
    calls: tuple[ToolCallRequest, ...],
    usage: Any,
    finish_reason: Any,
) -> Reply:
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    if not prompt:  # a server that reports no usage: count it ourselves
        prompt = count_tokens(backend, messages)
    if not completion:
        completion = math.ceil((len(text) + sum(len(c.arguments) for c in calls)) / 4)
    cost = cost_of(backend, prompt, completion)
    finish = str(finish_reason) if finish_reason else None
    return Reply(text, calls, prompt, completion, cost, finish)
