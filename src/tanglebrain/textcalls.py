"""Tool calls a model wrote as text, found and parsed (never raising on any input).

Servers whose chat template does not parse a model's tool calls return them as text (```` ```json
````, ``<tool_call>``, ``<tools>``, bare JSON, a tag). ``parse`` finds the offered tools' calls
and the prose around them; text naming no offered tool is prose. ``toolcalls`` runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

# Where a bare JSON call may start: an object, or a list of objects.
_JSON_START = re.compile(r"\{|\[\s*\{")
# Wrappers that are removed with the calls they hold, when they hold nothing else.
_WRAPPERS = (
    re.compile(r"```[ \t]*[\w.+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S),
    re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S),
    re.compile(r"<tools>(.*?)(?:</tools>|\Z)", re.S),  # echoed from the tools prompt
)
# A text made of these alone has no prose.
_EMPTY = re.compile(r"<(tools|tool_call)>\s*</\1>|```[\w.+-]*\s*```")
# ``<delegate_many tasks=[…]>``: a call as a tag with JSON attribute values.
_TAG_CALL = re.compile(r"<([\w.-]+)\s+(?=\w+\s*=)")
_ATTRIBUTE = re.compile(r"\s*(\w+)\s*=\s*")
# A fence or tag that opens right before a would-be call.
_OPENER = re.compile(r"(?:```[ \t]*[\w.+-]*|<tool_call>|<tools>)\s*\Z")
_META_KEYS = frozenset({"name", "type", "id"})
_MAX_BROKEN = 8  # bounds the clean-up loop on adversarial text
_MAX_DEPTH = 3


@dataclass(frozen=True, slots=True)
class TextCall:
    """A tool call found in text: the tool's name and its arguments as JSON text."""

    name: str
    arguments: str


_ECHO = TextCall("", "")  # marks a tool definition copied as text: cut out, not run


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a reply's text holds.

    Attributes:
        calls: the calls of offered tools, in order.
        prose: the text without those calls (and without their fences or tags).
        broken: something that looks like a call of an offered tool is not valid JSON.
    """

    calls: tuple[TextCall, ...]
    prose: str
    broken: bool = False


def parse(text: str, offered: Collection[str]) -> Parsed:
    """Find the calls of ``offered`` tools written in ``text``.

    Args:
        text: a model's reply text.
        offered: the names of the tools offered on that turn.

    Returns:
        The calls and the prose around them; ``Parsed((), text)`` when ``text`` names no
        offered tool.
    """
    names = frozenset(offered)
    if not text or not any(name in text for name in names):
        return Parsed((), _visible(text))
    found = [(s, e, c) for s, e, v in _json_values(text) if (c := _calls_in(v, names))]
    spans: list[tuple[int, int]] = []
    calls: list[TextCall] = []
    for start, end, some in sorted(found + _tag_calls(text, names), key=lambda f: f[0]):
        if not spans or start >= spans[-1][1]:  # a tag call's JSON values are its own
            spans.append((start, end))
            calls.extend(c for c in some if c.name)  # not the echoes of definitions
    prose, broken = _drop_broken(_without(text, _with_wrappers(text, spans)), names)
    return Parsed(tuple(calls), _visible(prose), broken)


def _visible(prose: str) -> str:
    """``prose``, or nothing when it is only empty fences or tool tags."""
    return prose if _EMPTY.sub("", prose).strip() else ""


def _json_values(text: str) -> list[tuple[int, int, Any]]:
    """Every JSON object (or list starting with one) in ``text``, outermost first."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    while (m := _JSON_START.search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            pos = m.start() + 1
            continue
        out.append((m.start(), end, value))
        pos = end
    return out


def _calls_in(value: Any, names: frozenset[str], depth: int = 0) -> list[TextCall]:
    """The calls of offered tools that ``value`` spells, in any of the shapes models use."""
    if depth > _MAX_DEPTH:  # calls sit at the top or in one list: deeper is not a call
        return []
    if isinstance(value, list):
        return [c for item in value for c in _calls_in(item, names, depth + 1)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("tool_calls"), list):
        return _calls_in(value["tool_calls"], names, depth + 1)
    if isinstance(value.get("function"), dict):  # OpenAI's own shape, copied as text
        value = value["function"]
    name = value.get("name")
    if isinstance(name, str) and name in names:
        if "arguments" in value:
            args = value["arguments"]
        elif "parameters" in value:
            args = value["parameters"]
        else:  # {"name": "delegate", "prompt": …}: the arguments spread beside the name
            args = {k: v for k, v in value.items() if k not in _META_KEYS}
        if isinstance(args, dict) and isinstance(args.get("properties"), dict):
            return [_ECHO]  # the tool's definition, schema and all, copied from the prompt
        return [TextCall(name, _arguments(args))]
    if len(value) == 1:  # {"delegate_many": {"tasks": […]}}
        [(key, args)] = value.items()
        if key in names and isinstance(args, dict):
            return [TextCall(key, _arguments(args))]
    return []


def _tag_calls(text: str, names: frozenset[str]) -> list[tuple[int, int, list[TextCall]]]:
    """Calls written as a tag, ``<delegate tasks=[…]>``: each attribute value is JSON."""
    decoder, out = json.JSONDecoder(), []
    for m in _TAG_CALL.finditer(text):
        if m.group(1) not in names:
            continue
        args: dict[str, Any] = {}
        pos = m.end()
        while (a := _ATTRIBUTE.match(text, pos)) is not None:
            try:
                args[a.group(1)], pos = decoder.raw_decode(text, a.end())
            except (ValueError, RecursionError):
                break
        if args:  # the tag's end, as models write it: "}", "/>", ">" or nothing
            end = re.compile(r"[\s}/]*>?").match(text, pos)
            call = TextCall(m.group(1), _arguments(args))
            out.append((m.start(), end.end() if end else pos, [call]))
    return out


def _arguments(args: Any) -> str:
    """Arguments as JSON text; a string is passed on as is (validation will answer it)."""
    if isinstance(args, str):
        return args
    return json.dumps(args, ensure_ascii=False)


def _with_wrappers(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` grown to the fence or tag around them when it holds only calls."""
    out = list(spans)
    for wrapper in _WRAPPERS:
        for m in wrapper.finditer(text):
            inner = [(s, e) for s, e in spans if m.start(1) <= s and e <= m.end(1)]
            rest = _without(text[: m.end(1)], inner)[m.start(1) :]
            if inner and not rest.strip(" \t\r\n,"):
                out.append((m.start(), m.end()))
    return out


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with ``spans`` (possibly overlapping) cut out."""
    parts, pos = [], 0
    for start, end in sorted(spans):
        if start > pos:
            parts.append(text[pos:start])
        pos = max(pos, end)
    parts.append(text[pos:])
    return "".join(parts)


def _drop_broken(prose: str, names: frozenset[str]) -> tuple[str, bool]:
    """Cut out what still looks like a call of an offered tool: it did not parse."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf'"name"\s*:\s*"(?:{alternatives})"|<(?:{alternatives})\s+\w+\s*=')
    broken = False
    for _ in range(_MAX_BROKEN):
        m = pattern.search(prose)
        if m is None:
            break
        broken = True
        start, end = _region(prose, m)
        prose = prose[:start] + prose[end:]
    return prose, broken


def _region(text: str, m: re.Match[str]) -> tuple[int, int]:
    """The extent of the would-be call matched by ``m``: its fence or tag, else from its brace."""
    start = _outer_brace(text, m.start())
    opener = _OPENER.search(text[:start])
    if opener is None:  # bare JSON: cut to the end, where a cut-off call stops
        return start, len(text)
    tag = opener.group().strip()
    closer = "</" + tag[1:] if tag.startswith("<") else "```"
    found = text.find(closer, m.end())
    return opener.start(), len(text) if found < 0 else found + len(closer)


def _outer_brace(text: str, at: int) -> int:
    """The outermost ``{`` still open at ``at`` (``at`` itself when there is none)."""
    depth, start = 0, at
    for i in range(at - 1, -1, -1):
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            if depth == 0:
                start = i
            else:
                depth -= 1
    return start
