"""Marking a prompt's stable prefix for the provider's prompt cache.

OpenAI, Gemini and DeepSeek cache long prompt prefixes on their own; Anthropic's models
(through its API, Bedrock or Vertex AI) cache only up to a ``cache_control`` marker the
request carries, and bill the first write above the input price (see ``prices``). So for
them the end of the system prompt and the last tool schema are marked (the prefix
Anthropic caches is tools, then system, then messages), and only when that prefix is long
enough to be cached at all: below the model's minimum a marker is silently ignored.

litellm carries the marker to each of those providers in its own form (Anthropic's
``cache_control`` blocks, Bedrock's ``cachePoint``); the native transport never sees one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tanglebrain.models._call import transport_name
from tanglebrain.models._prices import estimate_tokens
from tanglebrain.models._types import Message
from tanglebrain.roster import Backend

EPHEMERAL: Mapping[str, str] = {"type": "ephemeral"}
# Providers that serve Claude models with Anthropic's caching, as litellm translates them.
_CLAUDE_HOSTS = frozenset({"bedrock", "vertex_ai", "vertex_ai_beta"})
# Anthropic's minimum cacheable prefix, by model (its prompt-caching documentation):
# 4,096 tokens for Claude Haiku 4.5 and Opus 4.5/4.6, 2,048 for the Haiku 3 family,
# 1,024 for the rest (Sonnet, Opus 4/4.1 and the Claude 3 Sonnet/Opus models).
_MINIMUMS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"haiku-4|opus-4[-.][56]"), 4096),
    (re.compile(r"haiku"), 2048),
)
_DEFAULT_MINIMUM = 1024


def needs_marker(backend: Backend) -> bool:
    """Whether ``backend`` caches only what a request marks: a Claude model through litellm."""
    if transport_name(backend) != "litellm":
        return False
    provider = backend.provider
    return provider == "anthropic" or (
        provider in _CLAUDE_HOSTS and "claude" in backend.model.lower()
    )


def min_prefix_tokens(backend: Backend) -> int:
    """The shortest prefix, in tokens, that ``backend``'s model caches."""
    model = backend.model.lower()
    for pattern, minimum in _MINIMUMS:
        if pattern.search(model):
            return minimum
    return _DEFAULT_MINIMUM


def _system_end(messages: Sequence[Message]) -> int:
    """How many messages the leading run of system messages spans."""
    n = 0
    while n < len(messages) and messages[n].get("role") == "system":
        n += 1
    return n


def prefix_tokens(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None) -> int:
    """Estimated tokens of the stable prefix: the leading system messages and the tools."""
    system = messages[: _system_end(messages)]
    text = "".join(_text(m.get("content")) for m in system)
    if tools:
        text += json.dumps(list(tools), ensure_ascii=False, default=str)
    return estimate_tokens(text)


def cacheable_prefix(
    backend: Backend,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
) -> bool:
    """Whether a call should mark its prefix: a backend that needs a marker, a long prefix.

    A call whose prefix is marked may be billed a cache write (above the input price) for
    it; one whose prefix is too short to be cached is not marked, since the marker would
    be ignored.
    """
    if not needs_marker(backend):
        return False
    if not _system_end(messages) and not tools:
        return False
    return prefix_tokens(messages, tools) >= min_prefix_tokens(backend)


def marked(
    messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None
) -> tuple[list[Message], list[Mapping[str, Any]] | None]:
    """Copies of ``messages`` and ``tools`` with the prefix's end marked ``cache_control``.

    The last leading system message becomes a list of text blocks whose last block carries
    the marker; the last tool schema carries it too. Nothing given is changed in place:
    the same messages are sent again by a retry or the next turn.
    """
    out = list(messages)
    end = _system_end(out)
    if end:
        system = dict(out[end - 1])
        system["content"] = _marked_blocks(system.get("content"))
        out[end - 1] = system
    marked_tools: list[Mapping[str, Any]] | None = list(tools) if tools else None
    if marked_tools:
        marked_tools[-1] = {**marked_tools[-1], "cache_control": dict(EPHEMERAL)}
    return out, marked_tools


def _marked_blocks(content: Any) -> list[dict[str, Any]]:
    """``content`` as text blocks, the last one marked."""
    if isinstance(content, list) and content and all(isinstance(b, dict) for b in content):
        blocks = [dict(b) for b in content]
    else:
        blocks = [{"type": "text", "text": _text(content)}]
    blocks[-1]["cache_control"] = dict(EPHEMERAL)
    return blocks


def _text(content: Any) -> str:
    """Message content as text: a string, or the text of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text") or "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)
