"""Scripted behaviours of the simulator: the texts and failures of each kind.

Nothing here does I/O. :mod:`tanglebrain.sim._respond` parses each request's ``model`` string
with :func:`parse_spec`, handles the protocol-level kinds itself (``fail``, ``hang``,
``drop``, ``malformed``, ``empty``, ``cut``) and composes the content of every reply that is
a valid completion from the texts here (``worker``, ``echo``, ``script``, ``reviewer``) and
from :mod:`tanglebrain.sim._orchestrator` (``orchestrator``). Every text generated here says
"simulated", except ``echo`` (which repeats the user's text verbatim by design).

The model-spec grammar (every kind, what it does, its options) and its parser are in
:mod:`tanglebrain.sim._spec`; ``KINDS``, ``ModelSpec``, ``SimError`` and ``parse_spec`` are
re-exported here, where the rest of the simulator imports them from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tanglebrain.sim._spec import KINDS as KINDS
from tanglebrain.sim._spec import ModelSpec as ModelSpec
from tanglebrain.sim._spec import SimError as SimError
from tanglebrain.sim._spec import parse_spec as parse_spec

LOOP_SENTENCE = "This simulated model repeats this sentence and never stops. "
"""What ``worker:loop=1`` writes, over and over."""
LOOP_TOKENS = 16_384
"""Completion tokens a non-streamed ``worker:loop=1`` reply has without ``tokens=``."""


@dataclass(frozen=True)
class SimReply:
    """One scripted reply for the ``script`` kind.

    Attributes:
        text: assistant text, or None.
        tool_calls: ``(function name, JSON-argument string)`` pairs.
        status: when set, answer with this HTTP error status instead.
    """

    text: str | None = None
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    status: int | None = None


@dataclass(frozen=True)
class Reply:
    """The content of one completion: text and/or ``(id, name, arguments)`` calls."""

    text: str | None
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)


# --- message helpers -------------------------------------------------------------------


def content_text(content: object) -> str:
    """Flatten an OpenAI message ``content`` (string or list of parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the request's messages that are JSON objects."""
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def last_user_text(body: Mapping[str, Any]) -> str:
    """Return the text of the last ``role: user`` message ("" when there is none)."""
    for message in reversed(messages_of(body)):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def one_line(text: str) -> str:
    """``text`` with carriage returns and line feeds turned into blanks."""
    return text.replace("\r", " ").replace("\n", " ")


def tool_rounds(messages: list[dict[str, Any]]) -> int:
    """Return how many rounds of tool results the conversation holds."""
    rounds, previous = 0, None
    for message in messages:
        role = message.get("role")
        if role == "tool" and previous != "tool":
            rounds += 1
        previous = role
    return rounds


# --- scripted texts and failures -------------------------------------------------------


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    """The request's output cap (``max_tokens`` or ``max_completion_tokens``), if any."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def loop_text(chars: int) -> str:
    """``LOOP_SENTENCE`` repeated to exactly ``chars`` characters."""
    copies = chars // len(LOOP_SENTENCE) + 1
    return (LOOP_SENTENCE * copies)[:chars]


def worker_text(spec: ModelSpec, body: Mapping[str, Any]) -> str:
    """``simulated <spec> result for: <first 60 chars>``, padded/cut to ``size=``."""
    text = f"simulated {spec.raw} result for: {one_line(last_user_text(body))[:60]}"
    size = spec.int_opt("size")
    if size is None:
        return text
    parts, total, line = [text], len(text), 0
    while total < size:
        filler = f"\nsimulated filler line {line:06d} of a size={size} answer."
        parts.append(filler)
        total += len(filler)
        line += 1
    return "".join(parts)[:size]


def scripted(spec: ModelSpec, item: SimReply | None, turn: int) -> Reply:
    """The reply a ``script`` spec gives on ``turn`` with the queued ``item``.

    Raises:
        SimError: for an exhausted script (``item`` is None) or a scripted error status.
    """
    if item is None:
        raise SimError(
            500,
            f"simulator: script exhausted for {spec.raw!r}",
            type="server_error",
            code="script_exhausted",
        )
    if item.status is not None:
        headers = {"Retry-After": "0"} if item.status == 429 else {}
        raise error_for_status(
            item.status, f"simulated scripted failure from {spec.raw!r}", headers
        )
    calls = [(f"call_{turn}_{k}", name, args) for k, (name, args) in enumerate(item.tool_calls)]
    return Reply(item.text, calls)


def error_for_status(status: int, message: str, headers: Mapping[str, str]) -> SimError:
    """Build an OpenAI-shaped error whose type/code match the HTTP status."""
    types = {
        400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
        404: "not_found_error", 429: "rate_limit_error",
    }  # fmt: skip
    kind = types.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = "rate_limit_exceeded" if status == 429 else "simulated_failure"
    return SimError(status, message, type=kind, code=code, headers=headers)


def review_text(spec: ModelSpec) -> str:
    """A JSON critique ``{agree, disagree, missing}``, wrapped per ``wrap=``."""
    verdict = spec.str_opt("verdict", "agree")
    disagree: list[dict[str, str]] = []
    if verdict != "agree":
        disagree.append(
            {
                "point": "simulated: the draft's central claim",
                "reason": "simulated reviewer objection (test fixture, not a model's view)",
                "severity": verdict,
            }
        )
    critique = {
        "agree": ["simulated: the draft addresses the request"],
        "disagree": disagree,
        "missing": ["simulated: a worked example"] if verdict == "blocker" else [],
    }
    text = json.dumps(critique, indent=2)
    wrap = spec.str_opt("wrap", "none")
    if wrap == "fence":
        return f"Simulated review follows.\n\n```json\n{text}\n```\n"
    if wrap == "prose":
        return f"This is a simulated review. My critique is {text} and that is all."
    return text


def failure(spec: ModelSpec, authorization: str = "") -> SimError:
    """The error a ``fail`` spec answers with (``Retry-After`` on 429 or when given).

    With ``echo_auth=1`` the message quotes the request's Authorization header, as some
    providers do, so that tests can check credentials never leak further.
    """
    status = spec.int_opt("status", 500) or 500
    retry = spec.opts.get("retry_after")
    headers: dict[str, str] = {}
    if status == 429 or retry is not None:
        seconds = float(retry or 0)
        headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
    message = f"simulated failure: HTTP {status} from {spec.raw!r}"
    if spec.int_opt("echo_auth", 0):
        message += f" (credentials sent: {authorization or 'none'})"
    return error_for_status(status, message, headers)
