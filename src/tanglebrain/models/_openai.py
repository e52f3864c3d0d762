"""The native transport: the OpenAI chat-completions API, spoken directly.

Most backends speak it (OpenAI, Ollama's ``/v1``, llama.cpp's server, vLLM, LM Studio and
the hosted OpenAI-compatible services); for them there is nothing to translate, so no
litellm: a request is one JSON POST over ``_http``, a stream is server-sent events.
Which backends use it is decided in ``transport_for`` (``models/__init__``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from tanglebrain._version import __version__
from tanglebrain.errors import BackendError
from tanglebrain.models import _http
from tanglebrain.models._types import (
    Chunk,
    Completion,
    Outgoing,
    ToolCallRequest,
    ToolDelta,
    TransportName,
    Usage,
    count,
)
from tanglebrain.roster import OPENAI_COMPATIBLE, Backend

# Servers whose API root is the host (Ollama's is ``/v1`` below it).
_V1_BELOW = frozenset({"ollama", "ollama_chat"})

# One encoder and decoder for every body and event: json.dumps/loads build or dispatch
# to them per call (a stream decodes one event per delta).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_decode = json.JSONDecoder().decode


def endpoint(backend: Backend, env: Mapping[str, str]) -> str | None:
    """The chat-completions URL of ``backend``, or None when it has none to speak to.

    ``api_base`` is the API root, as the OpenAI SDK reads it (``…/v1``); for Ollama the
    server's address is accepted too (``http://localhost:11434`` gets ``/v1``). OpenAI
    without an ``api_base`` honours ``OPENAI_BASE_URL``/``OPENAI_API_BASE`` as litellm does.
    """
    provider = backend.provider
    base = backend.api_base
    if base is None and provider == "openai":
        base = env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE")
    if base is None:
        base = OPENAI_COMPATIBLE.get(provider)
        if base is None:
            return None
    base = base.rstrip("/")
    if provider in _V1_BELOW and not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


def wire_model(backend: Backend) -> str:
    """The model name the server knows: the roster's model without its provider prefix."""
    return backend.model.split("/", 1)[1] if "/" in backend.model else backend.model


def _is_openai(url: str) -> bool:
    return (urlsplit(url).hostname or "").endswith("api.openai.com")


# After "[DONE]" the body's last bytes normally came in the same packet; a server that
# keeps the response open longer loses its connection instead of delaying the answer.
_DONE_GRACE_S = 0.1


class OpenAITransport:
    """Calls an OpenAI-compatible ``/chat/completions`` endpoint directly."""

    name: TransportName = "openai"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _request(self, out: Outgoing, *, stream: bool) -> tuple[str, bytes, list[tuple[str, str]]]:
        url = endpoint(out.backend, self._env)
        if url is None:
            raise BackendError(
                out.backend.id, "no api_base: set one for this provider, or transport = "
                '"litellm"', kind="client",
            )  # fmt: skip
        body: dict[str, Any] = {"model": wire_model(out.backend), "messages": list(out.messages)}
        if out.tools:
            body["tools"] = list(out.tools)
            if out.tool_choice:
                body["tool_choice"] = out.tool_choice
        if out.max_tokens:
            # OpenAI's newer models refuse max_tokens; compatible servers know only it.
            body["max_completion_tokens" if _is_openai(url) else "max_tokens"] = out.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = [
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream" if stream else "application/json"),
            ("User-Agent", f"tanglebrain/{__version__}"),
        ]
        if out.api_key:
            headers.append(("Authorization", f"Bearer {out.api_key}"))
        data = _encode(body)
        return url, data.encode(), headers

    async def complete(self, out: Outgoing) -> Completion:
        """Send ``out`` and return the whole reply."""
        url, body, headers = self._request(out, stream=False)
        # As for a stream: the timeout bounds each wait (for the first byte, then for more).
        async with _http.pool().post(url, body, headers, out.timeout, out.connect_timeout) as resp:
            await _raise_for_status(resp)
            raw = await resp.aread()
        return _completion(out.backend.id, json.loads(raw))

    @asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Open a streamed reply; leaving the context closes it (and stops generation)."""
        url, body, headers = self._request(out, stream=True)
        async with AsyncExitStack() as stack:
            # Each wait (connecting, the headers, every chunk) is bounded by the timeout.
            post = _http.pool().post(url, body, headers, out.timeout, out.connect_timeout)
            resp = await stack.enter_async_context(post)
            await _raise_for_status(resp)
            if resp.headers.get("content-type", "").startswith("application/json"):
                yield _whole(out, resp)  # a server that ignored "stream": one completion
            else:
                yield _events(out, resp)


async def _raise_for_status(resp: _http.Response) -> None:
    if resp.status >= 400:
        body = b""
        try:
            async for part in resp.aiter():
                body += part
                if len(body) >= _http.MAX_ERROR_BODY:
                    break
        except OSError:
            pass  # the status says enough
        raise _http.HTTPStatusError(resp.status, resp.headers, body[: _http.MAX_ERROR_BODY])


async def _whole(out: Outgoing, resp: _http.Response) -> AsyncIterator[Chunk]:
    raw = await resp.aread()  # each wait bounded by the response's timeout
    done = _completion(out.backend.id, json.loads(raw))
    calls = tuple(ToolDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(done.tool_calls))
    yield Chunk(done.text, calls, done.finish_reason or "stop", done.usage)


async def _events(out: Outgoing, resp: _http.Response) -> AsyncIterator[Chunk]:
    """The chunks of a server-sent-events body; each wait is bounded by the timeout."""
    pieces = resp.aiter()
    buffer = b""
    data: list[bytes] = []
    while True:
        try:
            part = await anext(pieces)
        except StopAsyncIteration:
            return
        buffer += part
        payloads: list[bytes] = []
        # The common case: one whole event of one data line arrived alone.
        alone = not data and buffer.startswith(b"data: ") and buffer.endswith(b"\n\n")
        if alone and buffer.count(b"\n") == 2:
            payloads, buffer = [buffer[6:-2]], b""
        else:
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif not line and data:  # a blank line ends an event
                    payloads.append(b"\n".join(data))
                    data = []
        for payload in payloads:
            if payload.strip() == b"[DONE]":
                await resp.discard_rest(_DONE_GRACE_S)  # keeps the connection reusable
                return
            yield _chunk(out.backend.id, _decode(payload.decode("utf-8", "surrogatepass")))


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def _usage(raw: Any) -> Usage | None:
    """The ``usage`` object of a completion or of a stream's last chunk.

    Cached prompt tokens are part of ``prompt_tokens`` in OpenAI's shape:
    ``prompt_tokens_details.cached_tokens`` (OpenAI, and the compatible servers that
    copy it), ``prompt_cache_hit_tokens`` (DeepSeek); ``cache_write_tokens`` is where
    gateways such as OpenRouter report writes.
    """
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    return Usage(
        count(raw.get("prompt_tokens")),
        count(raw.get("completion_tokens")),
        count(details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens")),
        count(details.get("cache_write_tokens")),
    )


def _not_a_completion(backend_id: str) -> BackendError:
    return BackendError(
        backend_id, "malformed response: the reply is not a completion", kind="malformed"
    )


def _completion(backend_id: str, data: Any) -> Completion:
    choices = data.get("choices") if isinstance(data, dict) else None
    if choices == []:
        raise BackendError(backend_id, "empty response: no choices", kind="empty")
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise _not_a_completion(backend_id)
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _not_a_completion(backend_id)
    calls = tuple(
        ToolCallRequest(
            id=str(tc.get("id") or f"call_{i}"),
            name=str((tc.get("function") or {}).get("name") or ""),
            arguments=_arguments((tc.get("function") or {}).get("arguments")),
        )
        for i, tc in enumerate(message.get("tool_calls") or [])
        if isinstance(tc, dict)
    )
    finish = choices[0].get("finish_reason")
    return Completion(
        _text(message.get("content")), calls, _usage(data.get("usage")),
        str(finish) if finish else None,
    )  # fmt: skip


def _chunk(backend_id: str, data: Any) -> Chunk:
    if not isinstance(data, dict):
        raise _not_a_completion(backend_id)
    if "error" in data:  # a server that fails mid-stream says so in an event
        message = _http.error_message(json.dumps(data).encode())
        raise BackendError(backend_id, f"server error: {message[:160]}", kind="server")
    raw_usage = data.get("usage")
    usage = None if raw_usage is None else _usage(raw_usage)
    choices = data.get("choices") or []
    if not choices:
        return Chunk(usage=usage)
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    # Most events carry text only: no tool calls to build.
    calls = _tool_deltas(tcs) if (tcs := delta.get("tool_calls")) else ()
    content = delta.get("content")
    text = content if type(content) is str else _text(content)
    finish = choice.get("finish_reason")
    return Chunk(text, calls, str(finish) if finish else None, usage)


def _tool_deltas(raw: Any) -> tuple[ToolDelta, ...]:
    return tuple(
        ToolDelta(
            index=int(tc.get("index") or 0),
            id=tc.get("id") or None,
            name=str((tc.get("function") or {}).get("name") or ""),
            arguments=_arguments((tc.get("function") or {}).get("arguments")),
        )
        for tc in raw
        if isinstance(tc, dict)
    )
