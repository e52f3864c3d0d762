"""The litellm transport: providers whose wire format needs translation (Anthropic, Gemini, …).

This is the only module that imports litellm, lazily: it costs seconds and ~170 MB, so a
run whose backends all speak the OpenAI API never loads it. The import comes with the
hygiene litellm needs to stay quiet: no price-map download, no banner on stdout, no log
lines. Retries are ours (litellm and the OpenAI SDK are told not to retry).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from tanglebrain.errors import BackendError
from tanglebrain.models import _cache
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

_litellm: ModuleType | None = None
_lock = threading.Lock()


def litellm() -> ModuleType:
    """Import litellm once, configured to stay off stdout and off the network."""
    global _litellm
    with _lock:  # the import may have been started in the background (``preload``)
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


def preload() -> None:
    """Start importing litellm in a background thread, so that it overlaps other start-up work.

    ``litellm()`` waits for it when a call needs it; an import that fails here fails again,
    with its error, where it is needed.
    """

    def load() -> None:
        try:
            litellm()
        except Exception:  # reported by the call that needs it
            return

    threading.Thread(target=load, name="litellm-import", daemon=True).start()


def _kwargs(out: Outgoing) -> dict[str, Any]:
    backend = out.backend
    messages, tools = list(out.messages), list(out.tools) if out.tools else None
    if out.cache_prefix and _cache.needs_marker(backend):
        messages, tools = _cache.marked(messages, tools)
    kwargs: dict[str, Any] = {
        "model": backend.model,
        "messages": messages,
        # As the native transport: a connection not made in out.connect_timeout has failed.
        "timeout": _timeout(out),
        "num_retries": 0,  # our loop retries; litellm's would be invisible
        "max_retries": 0,  # and the OpenAI SDK would silently retry twice
    }
    if out.api_key is not None:
        kwargs["api_key"] = out.api_key
    elif backend.api_base and backend.provider == "openai":
        # OpenAI-compatible local servers need no key, but the SDK insists on one.
        kwargs["api_key"] = "no-key-needed"
    if backend.api_base:
        kwargs["api_base"] = backend.api_base
    if tools:
        kwargs["tools"] = tools
        if out.tool_choice:
            kwargs["tool_choice"] = out.tool_choice
        # Our tools are plain functions, never litellm's MCP gateway. Without this flag
        # litellm imports that gateway (~0.4 s of CPU) inside a worker thread on the first
        # call with tools, and a timeout raised meanwhile on another call crashes in the
        # OpenAI SDK on the half-imported `httpx2` module.
        kwargs["_skip_mcp_handler"] = True
    if out.max_tokens:
        kwargs["max_tokens"] = out.max_tokens
    return kwargs


def _timeout(out: Outgoing) -> Any:
    """The timeout for litellm: ``out.timeout`` for each wait, ``out.connect_timeout`` to connect.

    An ``httpx.Timeout``; litellm honours its connect part for its OpenAI, Azure and Bedrock
    providers, and gives the others the whole timeout as a number.
    """
    import httpx  # litellm's own dependency, imported with it

    return httpx.Timeout(out.timeout, connect=min(out.timeout, out.connect_timeout))


def _field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: litellm's usage parts are models or, at times, dicts."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _usage(raw: Any) -> Usage | None:
    """The usage litellm normalised, as ours.

    litellm reports every provider in OpenAI's shape: ``prompt_tokens`` includes the
    prompt-cache reads and writes (for Anthropic, whose ``input_tokens`` excludes them,
    it adds them back), ``prompt_tokens_details.cached_tokens`` holds the reads and
    ``cache_write_tokens`` (or ``cache_creation_tokens``) the writes; the top-level
    ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` carry the same counts.
    """
    if raw is None:
        return None
    details = _field(raw, "prompt_tokens_details")
    read = _field(details, "cached_tokens") or _field(raw, "cache_read_input_tokens")
    write = (
        _field(details, "cache_write_tokens")
        or _field(details, "cache_creation_tokens")
        or _field(raw, "cache_creation_input_tokens")
    )
    return Usage(
        count(_field(raw, "prompt_tokens")),
        count(_field(raw, "completion_tokens")),
        count(read),
        count(write),
    )


class LitellmTransport:
    """Calls through ``litellm.acompletion``."""

    name: TransportName = "litellm"

    async def complete(self, out: Outgoing) -> Completion:
        """Send ``out`` and return the whole reply."""
        resp = await litellm().acompletion(**_kwargs(out))
        choices = getattr(resp, "choices", None)
        if not choices:  # litellm turns a body without "choices" into an error itself
            raise BackendError(out.backend.id, "empty response: no choices", kind="empty")
        msg = choices[0].message
        calls = tuple(
            ToolCallRequest(
                id=str(tc.id or f"call_{i}"),
                name=str(tc.function.name or ""),
                arguments=str(tc.function.arguments or ""),
            )
            for i, tc in enumerate(getattr(msg, "tool_calls", None) or [])
        )
        finish = choices[0].finish_reason
        return Completion(
            str(msg.content or ""), calls, _usage(getattr(resp, "usage", None)),
            str(finish) if finish else None,
        )  # fmt: skip

    @asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Open a streamed reply; leaving the context closes it."""
        raw = await litellm().acompletion(
            stream=True, stream_options={"include_usage": True}, **_kwargs(out)
        )
        try:
            yield _chunks(raw)
        finally:
            close = getattr(raw, "aclose", None)
            if close is not None:
                await close()


async def _chunks(raw: Any) -> AsyncIterator[Chunk]:
    async for chunk in raw:
        usage = _usage(getattr(chunk, "usage", None))
        choices = getattr(chunk, "choices", None) or []
        if not choices:
            if usage is not None:
                yield Chunk(usage=usage)
            continue
        for choice in choices:
            delta = choice.delta
            calls = tuple(
                ToolDelta(
                    index=tc.index or 0,
                    id=tc.id or None,
                    name=(tc.function.name or "") if tc.function else "",
                    arguments=(tc.function.arguments or "") if tc.function else "",
                )
                for tc in getattr(delta, "tool_calls", None) or []
            )
            finish = getattr(choice, "finish_reason", None)
            yield Chunk(
                text=delta.content or "", tool_calls=calls,
                finish_reason=str(finish) if finish else None, usage=usage,
            )  # fmt: skip
