"""Scripted behaviours of the simulator: model-spec grammar and reply composition.

Nothing here does I/O. :mod:`tanglebrain.sim` parses each request's ``model`` string
with :func:`parse_spec`, handles the protocol-level kinds itself (``fail``, ``hang``,
``drop``, ``malformed``, ``empty``, ``cut``) and asks :func:`compose` for the content
of every reply that is a valid completion. Every text generated here says
"simulated", except ``echo`` (which repeats the user's text verbatim by design).

Model-spec grammar (``litellm`` model ``openai/<spec>`` sends ``<spec>``)::

    spec    := kind [":" option ("," option)*]
    option  := key "=" value

Options for every kind: ``latency=SECONDS`` (sleep before answering), ``tokens=N``
(completion tokens to report), ``id=TEXT`` (only makes the spec string distinct).
An unknown kind is a 404 ``model_not_found``; an unknown or bad option is a 400.

==============  ===============================================  ==========================
kind            behaviour                                        options
==============  ===============================================  ==========================
echo            the last user message, verbatim
worker          ``simulated <spec> result for: <60 chars>``      size=N (exact length)
fail            OpenAI error (429 sends ``Retry-After``)         status, retry_after,
                                                                 times=N, then=worker|echo
hang            never answers (503 when the server stops)
drop            200 headers, part of the body, connection closed
malformed       200 with a body that is not JSON
empty           200 with ``"choices": []``
cut             stream: 1-2 chunks then connection closed;       size=N
                non-stream: like drop
script          next ``SimReply`` queued by ``Simulator.script``
orchestrator    ``delegate_many``/``delegate`` calls, then the   rounds, fanout, calls,
                synthesis of the tool results                    mode=many|single, bad=...
reviewer        JSON critique ``{agree, disagree, missing}``     verdict=agree|minor|blocker,
                                                                 wrap=none|fence|prose
==============  ===============================================  ==========================
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = (
    "echo", "worker", "fail", "hang", "drop", "malformed",
    "empty", "cut", "script", "orchestrator", "reviewer",
)  # fmt: skip
"""Every model kind the simulator knows, as listed by ``GET /v1/models``."""

_COMMON = frozenset({"latency", "tokens", "id"})
_KIND_OPTIONS: dict[str, frozenset[str]] = {
    "worker": frozenset({"size"}),
    "cut": frozenset({"size"}),
    "fail": frozenset({"status", "retry_after", "times", "then", "size"}),
    "orchestrator": frozenset({"rounds", "fanout", "calls", "mode", "bad"}),
    "reviewer": frozenset({"verdict", "wrap"}),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "then": ("worker", "echo"),
    "mode": ("many", "single"),
    "bad": ("unknown_backend", "bad_json", "too_many"),
    "verdict": ("agree", "minor", "blocker"),
    "wrap": ("none", "fence", "prose"),
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "tokens": (0, 10_000_000),
    "size": (0, 64 * 1024 * 1024),
    "status": (400, 599),
    "times": (0, 1_000_000),
    "rounds": (1, 100),
    "fanout": (1, 1000),
    "calls": (1, 1000),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "latency": (0.0, 3600.0),
    "retry_after": (0.0, 3600.0),
}
_ORCHESTRATION_TAGS = frozenset(
    {"reasoning", "planning", "review", "second-opinion", "orchestration", "synthesis"}
)
_READING_TAGS = frozenset({"long-context", "summarize", "extract"})
_TOO_MANY = 500
FINGERPRINT = "tanglebrain-sim"
"""The ``system_fingerprint`` of every simulated completion."""


class SimError(Exception):
    """An OpenAI-shaped HTTP error the simulator answers with.

    Attributes:
        status: HTTP status code.
        message: human-readable message (always says "simulat...").
        type: OpenAI error ``type``.
        code: OpenAI error ``code``.
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON error body ``{"error": {message, type, code, param}}``."""
        return {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": None}
        }


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


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; see the module docstring for the grammar."""

    raw: str
    kind: str
    opts: dict[str, str | int | float] = field(default_factory=dict)

    def num(self, key: str, default: float) -> float:
        """Return a numeric option (int or float), or ``default``."""
        value = self.opts.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def int_opt(self, key: str, default: int | None = None) -> int | None:
        """Return an integer option, or ``default``."""
        value = self.opts.get(key, default)
        return value if isinstance(value, int) else default

    def str_opt(self, key: str, default: str) -> str:
        """Return a string option, or ``default``."""
        value = self.opts.get(key, default)
        return value if isinstance(value, str) else default


def _bad(message: str) -> SimError:
    return SimError(400, f"simulator: {message}", code="invalid_model_spec")


def _convert(key: str, value: str) -> str | int | float:
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise _bad(f"option {key}={value!r} must be one of {', '.join(_CHOICES[key])}")
        return value
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise _bad(f"option {key}={value!r} must be an integer in [{lo}, {hi}]")
        return int(value)
    if key in _FLOAT_RANGES:
        lo_f, hi_f = _FLOAT_RANGES[key]
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not lo_f <= number <= hi_f:
            raise _bad(f"option {key}={value!r} must be a number in [{lo_f:g}, {hi_f:g}]")
        return number
    return value  # id: any text


def parse_spec(raw: str) -> ModelSpec:
    """Parse ``kind[:key=value[,key=value...]]``.

    Args:
        raw: the request's ``model`` string.

    Returns:
        The parsed spec.

    Raises:
        SimError: 404 ``model_not_found`` for an unknown kind, 400 for bad options.
    """
    kind, colon, rest = raw.partition(":")
    if kind not in KINDS:
        raise SimError(
            404,
            f"simulator: unknown model kind {kind!r} (known: {', '.join(KINDS)})",
            code="model_not_found",
        )
    allowed = _COMMON | _KIND_OPTIONS.get(kind, frozenset())
    opts: dict[str, str | int | float] = {}
    for item in rest.split(",") if colon else []:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise _bad(f"option {item!r} in {raw!r} is not key=value")
        if key not in allowed:
            raise _bad(
                f"option {key!r} is not valid for kind {kind!r} ({', '.join(sorted(allowed))})"
            )
        if key in opts:
            raise _bad(f"option {key!r} given twice in {raw!r}")
        opts[key] = _convert(key, value)
    return ModelSpec(raw=raw, kind=kind, opts=opts)


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


def _fold(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def usage(body: Mapping[str, Any], spec: ModelSpec, reply: Reply) -> dict[str, int]:
    """Compute the reported usage.

    ``prompt_tokens`` = ceil(chars of all message contents / 4) + ceil(chars of the
    compact JSON of ``tools`` / 4); ``completion_tokens`` = ceil(chars of text plus
    tool-call names and arguments / 4), unless the spec sets ``tokens=``.
    """
    chars = sum(len(content_text(m.get("content"))) for m in messages_of(body))
    tools = body.get("tools")
    tool_chars = len(json.dumps(tools, separators=(",", ":"))) if tools else 0
    prompt = math.ceil(chars / 4) + math.ceil(tool_chars / 4)
    out_chars = len(reply.text or "") + sum(len(n) + len(a) for _, n, a in reply.tool_calls)
    completion = spec.int_opt("tokens")
    if completion is None:
        completion = math.ceil(out_chars / 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --- content kinds ---------------------------------------------------------------------


def worker_text(spec: ModelSpec, body: Mapping[str, Any]) -> str:
    """``simulated <spec> result for: <first 60 chars>``, padded/cut to ``size=``."""
    text = f"simulated {spec.raw} result for: {_fold(last_user_text(body))[:60]}"
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


def compose(
    kind: str,
    spec: ModelSpec,
    body: Mapping[str, Any],
    pop_script: Callable[[str], SimReply | None],
) -> Reply:
    """Compose the reply of a content kind.

    Args:
        kind: ``echo``, ``worker``, ``cut``, ``script``, ``orchestrator`` or ``reviewer``
            (``fail`` passes its ``then=`` kind here).
        spec: the parsed model spec.
        body: the request JSON.
        pop_script: pops the next scripted reply for a spec string, or None.

    Returns:
        The reply content.

    Raises:
        SimError: for an exhausted script or a scripted error status.
    """
    if kind == "echo":
        return Reply(last_user_text(body))
    if kind == "script":
        return _scripted(spec, pop_script(spec.raw), _tool_rounds(messages_of(body)) + 1)
    if kind == "orchestrator":
        return orchestrate(spec, body)
    if kind == "reviewer":
        return Reply(review_text(spec))
    return Reply(worker_text(spec, body))


def _scripted(spec: ModelSpec, item: SimReply | None, turn: int) -> Reply:
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
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }
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


# --- orchestrator ----------------------------------------------------------------------


def _dig(obj: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _enum(props: object, *path: str) -> list[str]:
    values = _dig(props, *path, "enum")
    if not isinstance(values, list):
        return []
    return list(dict.fromkeys(str(v) for v in values))


def _tool_rounds(messages: list[dict[str, Any]]) -> int:
    rounds, previous = 0, None
    for message in messages:
        role = message.get("role")
        if role == "tool" and previous != "tool":
            rounds += 1
        previous = role
    return rounds


def orchestrate(spec: ModelSpec, body: Mapping[str, Any]) -> Reply:
    """One orchestrator turn: a delegation plan, or the final synthesis.

    Args:
        spec: the ``orchestrator`` spec (``rounds``, ``fanout``, ``calls``, ``mode``, ``bad``).
        body: the request JSON (``messages`` and ``tools``).

    Returns:
        Tool calls (``delegate_many``/``delegate``) or the final text.
    """
    messages = messages_of(body)
    if last_user_text(body).startswith(REVIEW_MARKER):
        return Reply(_ruling(messages, last_user_text(body)))
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    schemas = {
        str(_dig(t, "function", "name")): _dig(t, "function", "parameters") for t in tools or []
    }
    rounds = _tool_rounds(messages)
    can_delegate = "delegate" in schemas or "delegate_many" in schemas
    if can_delegate and rounds < (spec.int_opt("rounds", 1) or 1):
        return _plan(spec, schemas, last_user_text(body), turn=rounds + 1)
    if rounds:
        return Reply(synthesis(messages))
    request = _fold(last_user_text(body))[:60]
    return Reply(f"Simulated answer from {spec.raw} (no delegation): {request}")


REVIEW_MARKER = "REVIEW PANEL"


def _ruling(messages: list[dict[str, Any]], panel: str) -> str:
    """Rule on a review panel: MODIFY when a blocker was raised, else AFFIRM."""
    draft = next(
        (
            content_text(m.get("content"))
            for m in reversed(messages)
            if m.get("role") == "assistant"
        ),
        "",
    )
    points = re.findall(r"^\d+\. \[(blocker|major|minor)\]", panel, re.M)
    lines = ["VERDICTS:"]
    for i, severity in enumerate(points, 1):
        verdict = "MODIFY" if severity == "blocker" else "AFFIRM"
        lines.append(f"{i}. {verdict}: simulated ruling on a {severity} point")
    if "blocker" in points:
        lines.append("OVERALL: MODIFY: simulated: a blocker was raised, the draft is revised")
        answer = f"{draft}\n\nSimulated revision: addressed {points.count('blocker')} blocker(s)."
    else:
        lines.append("OVERALL: AFFIRM: simulated: no blocker, the draft stands")
        answer = draft
    return "\n".join([*lines, "FINAL ANSWER:", answer])


def _plan(spec: ModelSpec, schemas: dict[str, object], request: str, turn: int) -> Reply:
    many = "delegate_many" in schemas
    props = (
        _dig(schemas["delegate_many"], "properties", "tasks", "items", "properties")
        if many
        else _dig(schemas["delegate"], "properties")
    )
    tags = _enum(props, "task")
    preferred = [t for t in tags if t not in _ORCHESTRATION_TAGS] or tags
    attachments = _enum(props, "attach", "items")
    backends = _enum(props, "backend")
    bad = spec.str_opt("bad", "")
    unknown = "sim-unknown-backend"
    while unknown in backends:
        unknown += "-x"
    n = _TOO_MANY if bad == "too_many" else spec.int_opt("fanout") or max(1, min(4, len(preferred)))
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        tag = preferred[i % len(preferred)] if preferred else None
        task: dict[str, Any] = {
            "prompt": f"Sub-task {i + 1} of {n} ({tag or 'general'}): {request[:200]}"
        }
        if tag:
            task["task"] = tag
        if bad == "unknown_backend":
            task["backend"] = unknown
        tasks.append(task)
    if attachments:
        readers = [t for t in tasks if t.get("task") in _READING_TAGS] or tasks[:1]
        for task in readers:
            task["attach"] = list(attachments)
    if not many or (spec.str_opt("mode", "many") == "single" and "delegate" in schemas):
        calls = [("delegate", json.dumps(task)) for task in tasks]
    else:
        k = min(spec.int_opt("calls", 1) or 1, n)
        bounds = [round(j * n / k) for j in range(k + 1)]
        calls = [
            ("delegate_many", json.dumps({"tasks": tasks[bounds[j] : bounds[j + 1]]}))
            for j in range(k)
        ]
    if bad == "bad_json":
        calls = [(name, args[: len(args) // 2]) for name, args in calls]
    return Reply(None, [(f"call_{turn}_{k}", name, args) for k, (name, args) in enumerate(calls)])


def synthesis(messages: list[dict[str, Any]]) -> str:
    """``Simulated synthesis of N sub-task results.`` plus one line per result entry."""
    lines: list[str] = []
    for message in messages:
        if message.get("role") != "tool":
            continue
        content = content_text(message.get("content"))
        try:
            data = json.loads(content)
        except ValueError:
            lines.append(f"- {_fold(content)[:80]}")
            continue
        for entry in data if isinstance(data, list) else [data]:
            lines.append(_entry_line(entry, len(lines)))
    return "\n".join([f"Simulated synthesis of {len(lines)} sub-task results.", *lines])


def _entry_line(entry: object, position: int) -> str:
    if not isinstance(entry, dict):
        return f"- {_fold(json.dumps(entry))[:80]}"
    detail = entry.get("text") if entry.get("text") is not None else entry.get("error", "")
    detail = detail if isinstance(detail, str) else json.dumps(detail)
    index = entry.get("index", position)
    backend, status = entry.get("backend", "?"), entry.get("status", "?")
    return f"- #{index} {backend} {status}: {_fold(detail)[:80]}"


# --- wire format ---------------------------------------------------------------------


def failure(spec: ModelSpec) -> SimError:
    """The error a ``fail`` spec answers with (``Retry-After`` on 429 or when given)."""
    status = spec.int_opt("status", 500) or 500
    retry = spec.opts.get("retry_after")
    headers: dict[str, str] = {}
    if status == 429 or retry is not None:
        seconds = float(retry or 0)
        headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
    return error_for_status(status, f"simulated failure: HTTP {status} from {spec.raw!r}", headers)


def envelope(cid: str, spec: ModelSpec, obj: str, choices: list[Any]) -> dict[str, Any]:
    """The fields every completion and chunk share (incl. ``system_fingerprint``)."""
    return {
        "id": cid,
        "object": obj,
        "created": int(time.time()),
        "model": spec.raw,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }


def completion(cid: str, spec: ModelSpec, reply: Reply, used: dict[str, int]) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in reply.tool_calls
        ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    payload = envelope(cid, spec, "chat.completion", [choice])
    payload["usage"] = used
    return payload


def _pieces(text: str, parts: int) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty pieces."""
    step = max(1, -(-len(text) // parts))
    return [text[i : i + step] for i in range(0, len(text), step)]


def chunks(cid: str, spec: ModelSpec, reply: Reply) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed reply (without usage/[DONE])."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return envelope(cid, spec, "chat.completion.chunk", [choice])

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in _pieces(reply.text or "", 3)]
    for k, (call_id, name, args) in enumerate(reply.tool_calls):
        head = {
            "index": k,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [head]}))
        out += [
            chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
            for piece in _pieces(args, 2)
        ]
    out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    return out
