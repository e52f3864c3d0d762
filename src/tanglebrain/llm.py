"""The one module that talks to litellm: call, stream, usage, cost, error mapping.

litellm is imported lazily (it costs seconds and ~170 MB), with the hygiene it needs
to stay quiet: no price-map download, no banner on stdout, no log lines. Retries are
ours (litellm and the OpenAI SDK are told not to retry) so that every attempt is
counted, ``Retry-After`` is honoured and backoff is explicit.
"""

from __future__ import annotations

import functools
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

from tanglebrain.errors import BackendError
from tanglebrain.llm_errors import scrub, to_backend_error
from tanglebrain.roster import Backend
from tanglebrain.trace import Attempt, Call

Message = dict[str, Any]
_litellm: ModuleType | None = None


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

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.max_attempts:
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


@functools.lru_cache(maxsize=256)
def _model_info(model: str) -> dict[str, Any]:
    """Return litellm's model info, or {} for a model it does not know (looked up once)."""
    try:
        return dict(litellm().get_model_info(model))
    except Exception:
        return {}


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

    Returns:
        The reply of the first successful attempt.

    Raises:
        BackendError: when every attempt failed, or a non-retryable error occurred.
        MissingKeyError: when the backend's key variable is unset.
    """
    kwargs = _request_kwargs(backend, env, timeout, tools, max_tokens)
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
            with anyio.fail_after(timeout + 5):  # a safety net around litellm's own timeout
                if on_text is None:
                    reply = await _once(backend, messages, kwargs)
                else:
                    reply = await _stream(backend, messages, kwargs, on_text, streamed)
        except SinkError as exc:
            call.attempts.remove(attempt)  # we stopped it; the backend did not fail
            raise exc.error from None
        except BaseException as exc:
            err = scrub(to_backend_error(backend.id, exc, timeout), kwargs.get("api_key"))
            attempt.latency_ms = (time.perf_counter() - t0) * 1000
            attempt.status, attempt.error, attempt.http_status = "error", err.reason, err.status
            if on_attempt:
                on_attempt()
            if not isinstance(exc, Exception):
                raise  # cancellation and interrupts are not backend failures
            if streamed:  # text already reached the user: retrying would repeat it
                raise BackendError(
                    backend.id,
                    f"stream cut after {len(''.join(streamed))} chars: {err.reason}",
                    status=err.status,
                ) from None
            wait = retry.delay(attempt_no, err.retry_after) if err.retryable else None
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
    usage = getattr(resp, "usage", None)
    return _reply(backend, messages, text, calls, usage, choices[0].finish_reason)


async def _stream(
    backend: Backend,
    messages: Sequence[Message],
    kwargs: dict[str, Any],
    on_text: Callable[[str], None],
    streamed: list[str],
) -> Reply:
    stream = await litellm().acompletion(
        messages=list(messages), stream=True, stream_options={"include_usage": True}, **kwargs
    )
    usage: Any = None
    finish: str | None = None
    calls: dict[int, list[str]] = {}
    try:
        async for chunk in stream:
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
    if not text and not calls:
        raise BackendError(backend.id, "empty response: stream carried no content")
    tool_calls = tuple(
        ToolCallRequest(id=c[0] or f"call_{i}", name=c[1], arguments=c[2])
        for i, c in sorted(calls.items())
    )
    return _reply(backend, messages, text, tool_calls, usage, finish)


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
