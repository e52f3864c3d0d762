"""The scripted ``orchestrator`` of the simulator: delegation plans, synthesis, review rulings.

Nothing here does I/O. Each turn reads the request's tool schemas and history: while rounds
remain it calls ``delegate_many`` (or ``delegate``) with sub-tasks built from the schema's
enums; once tool results are in, it writes a synthesis of them; asked to rule on a review
panel, it affirms or (on a blocker) modifies its draft. Every text says "simulated".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tanglebrain.sim._scripts import (
    ModelSpec,
    Reply,
    content_text,
    last_user_text,
    messages_of,
    one_line,
    tool_rounds,
)

REVIEW_MARKER = "REVIEW PANEL"
"""A user message starting with this asks the orchestrator to rule on a review panel."""

_ORCHESTRATION_TAGS = frozenset(
    {"reasoning", "planning", "review", "second-opinion", "orchestration", "synthesis"}
)
_READING_TAGS = frozenset({"long-context", "summarize", "extract"})
_TOO_MANY = 500


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
    rounds = tool_rounds(messages)
    offered = "delegate" in schemas or "delegate_many" in schemas
    can_delegate = offered and body.get("tool_choice") != "none"
    if can_delegate and rounds < (spec.int_opt("rounds", 1) or 1):
        return _plan(spec, schemas, last_user_text(body), turn=rounds + 1)
    if rounds:
        return Reply(synthesis(messages))
    request = one_line(last_user_text(body))[:60]
    return Reply(f"Simulated answer from {spec.raw} (no delegation): {request}")


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


def _tasks(spec: ModelSpec, props: object, request: str) -> list[dict[str, Any]]:
    """The sub-tasks of a plan: one per preferred task tag (or ``fanout=``), readers attached."""
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
    return tasks


def _plan(spec: ModelSpec, schemas: dict[str, object], request: str, turn: int) -> Reply:
    """Delegation calls: one ``delegate`` per task, or the tasks split over ``calls=`` batches."""
    many = "delegate_many" in schemas
    props = (
        _dig(schemas["delegate_many"], "properties", "tasks", "items", "properties")
        if many
        else _dig(schemas["delegate"], "properties")
    )
    tasks = _tasks(spec, props, request)
    n = len(tasks)
    if not many or (spec.str_opt("mode", "many") == "single" and "delegate" in schemas):
        calls = [("delegate", json.dumps(task)) for task in tasks]
    else:
        k = min(spec.int_opt("calls", 1) or 1, n)
        bounds = [round(j * n / k) for j in range(k + 1)]
        calls = [
            ("delegate_many", json.dumps({"tasks": tasks[bounds[j] : bounds[j + 1]]}))
            for j in range(k)
        ]
    if spec.str_opt("bad", "") == "bad_json":
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
            lines.append(f"- {one_line(content)[:80]}")
            continue
        for entry in data if isinstance(data, list) else [data]:
            lines.append(_entry_line(entry, len(lines)))
    return "\n".join([f"Simulated synthesis of {len(lines)} sub-task results.", *lines])


def _entry_line(entry: object, position: int) -> str:
    if not isinstance(entry, dict):
        return f"- {one_line(json.dumps(entry))[:80]}"
    detail = entry.get("text") if entry.get("text") is not None else entry.get("error", "")
    detail = detail if isinstance(detail, str) else json.dumps(detail)
    index = entry.get("index", position)
    backend, status = entry.get("backend", "?"), entry.get("status", "?")
    return f"- #{index} {backend} {status}: {one_line(detail)[:80]}"
