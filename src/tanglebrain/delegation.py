"""The ``delegate`` and ``delegate_many`` tools: schemas, validation, fan-out, failover.

Sub-tasks run concurrently in an anyio task group, each backend behind its own
``CapacityLimiter``. A failing sub-task fails over to the next candidate backend and,
when none is left, becomes an ``error`` result telling the orchestrator to do that
part itself: nothing here raises into the orchestrator loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio

from tanglebrain import models, router
from tanglebrain.errors import BackendError, BudgetExceeded, CircuitOpen, ConfigError
from tanglebrain.models import estimate_tokens
from tanglebrain.runtime import TRUNCATED, RunContext, with_attachments
from tanglebrain.trace import Call, Subtask, ToolCall, now

DO_IT_YOURSELF = "do this part yourself"
CUT_ADVICE = "ask for less or split the sub-task, or do the rest yourself"


def _task_schema(tags: list[str], ids: list[str], attachments: list[str]) -> dict[str, Any]:
    task: dict[str, Any] = {"type": "string", "description": "a good_at tag from the menu"}
    if tags:
        task["enum"] = tags
    backend: dict[str, Any] = {"type": "string", "description": "a backend id, to pin one"}
    if ids:
        backend["enum"] = ids
    properties: dict[str, Any] = {
        "prompt": {"type": "string", "description": "a self-contained sub-task prompt"},
        "task": task,
        "backend": backend,
    }
    if attachments:  # offered only when there is something to attach: small models invent names
        properties["attach"] = {
            "type": "array",
            "description": "names of attachments to hand over in full",
            "items": {"type": "string", "enum": attachments},
        }
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
    }


def menu(ctx: RunContext, orchestrator_id: str | None) -> str:
    """One line per enabled backend: id, good_at, relative cost, context window."""
    lines = []
    for b in ctx.usable():
        if b.id == orchestrator_id:
            continue
        window = ctx.window_of(b)
        lines.append(
            f"- {b.id}: good at {', '.join(b.good_at)}; relative cost {b.cost:g}; "
            f"context window {f'{window} tokens' if window else 'unknown'}"
        )
    return "\n".join(lines) or "- (no specialist is enabled)"


def tool_schemas(ctx: RunContext, orchestrator_id: str | None) -> list[dict[str, Any]]:
    """The OpenAI function-tool schemas the orchestrator sees (docs/contracts.md)."""
    enabled = [b for b in ctx.usable() if b.id != orchestrator_id]
    tags = sorted({t for b in enabled for t in b.good_at})
    ids = [b.id for b in enabled]
    names = sorted(ctx.attachments)
    task = _task_schema(tags, ids, names)
    the_menu = menu(ctx, orchestrator_id)
    return [
        {
            "type": "function",
            "function": {
                "name": "delegate",
                "description": "Hand one sub-task to a specialist backend and get its answer. "
                "Pick by task tag (cheapest fitting backend) or by backend id.\n"
                f"Backends:\n{the_menu}",
                "parameters": task,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "delegate_many",
                "description": "Run several independent sub-tasks concurrently; results come "
                f"back in input order (at most {ctx.max_subtasks} sub-tasks per run).\n"
                f"Backends:\n{the_menu}",
                "parameters": {
                    "type": "object",
                    "properties": {"tasks": {"type": "array", "items": task, "minItems": 1}},
                    "required": ["tasks"],
                    "additionalProperties": False,
                },
            },
        },
    ]


@dataclass(frozen=True)
class Spec:
    """One validated sub-task request."""

    prompt: str
    task: str | None
    backend: str | None
    attach: tuple[str, ...]


def _parse_spec(ctx: RunContext, raw: Any, orchestrator_id: str | None) -> Spec | str:
    """A ``Spec``, or an error string explaining what is wrong with ``raw``."""
    if not isinstance(raw, dict):
        return "each task must be an object with a 'prompt'"
    unknown = set(raw) - {"prompt", "task", "backend", "attach"}
    if unknown:
        return f"unknown field(s) {sorted(unknown)}; use prompt, task, backend, attach"
    prompt, task, backend, attach = (
        raw.get("prompt"),
        raw.get("task"),
        raw.get("backend"),
        raw.get("attach") or [],
    )
    if not isinstance(prompt, str) or not prompt.strip():
        return "'prompt' must be a non-empty string"
    menu_ = [b for b in ctx.usable() if b.id != orchestrator_id]
    tags = sorted({t for b in menu_ for t in b.good_at})
    if task is not None and (not isinstance(task, str) or task not in tags):
        return f"unknown task tag {task!r}; valid tags: {', '.join(tags)}"
    if backend is not None and backend not in [b.id for b in ctx.usable()]:
        return f"unknown backend {backend!r}; valid ids: {', '.join(b.id for b in menu_)}"
    if not isinstance(attach, list) or not all(isinstance(a, str) for a in attach):
        return "'attach' must be a list of attachment names"
    missing = [a for a in attach if a not in ctx.attachments]
    if missing:
        return f"unknown attachment(s) {missing}; available: {sorted(ctx.attachments)}"
    return Spec(prompt, task, backend, tuple(dict.fromkeys(attach)))


async def execute(
    ctx: RunContext, name: str, arguments: str, node: ToolCall, orchestrator_id: str | None
) -> Any:
    """Run one tool call; return its result (a dict, or a list for ``delegate_many``)."""
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return _error(node, f"arguments are not valid JSON ({exc.msg}); call the tool again")
    if not isinstance(args, dict):
        return _error(node, "arguments must be a JSON object")
    if name == "delegate":
        raws: list[Any] = [args]
    elif name == "delegate_many":
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            return _error(node, "'tasks' must be a non-empty array of task objects")
        raws = tasks
    else:
        return _error(node, f"unknown tool {name!r}; the tools are delegate and delegate_many")
    left = ctx.max_subtasks - ctx.subtasks_used
    if len(raws) > left:
        return _error(
            node,
            f"too many sub-tasks: {len(raws)} requested, {left} of {ctx.max_subtasks} left "
            "in this run; send fewer or do the work yourself",
        )
    ctx.subtasks_used += len(raws)
    results = await fan_out(ctx, raws, node, orchestrator_id)
    out: Any = results[0] if name == "delegate" else results
    if name == "delegate":
        out = {k: v for k, v in out.items() if k != "index"}
    return out


def _error(node: ToolCall, message: str) -> dict[str, Any]:
    """The result of a call rejected as a whole: one error object (no task ran)."""
    node.error = message
    return {"status": "error", "backend": None, "error": message}


async def fan_out(
    ctx: RunContext, raws: list[Any], node: ToolCall, orchestrator_id: str | None
) -> list[dict[str, Any]]:
    """Run every sub-task concurrently; results in input order, failures contained."""
    first = len(ctx.run.subtasks())
    results: list[dict[str, Any]] = [{} for _ in raws]
    subtasks: list[tuple[int, Subtask, Spec | str]] = []
    for i, raw in enumerate(raws):
        spec = _parse_spec(ctx, raw, orchestrator_id)
        prompt = raw.get("prompt", "") if isinstance(raw, dict) else ""
        task = spec.task if isinstance(spec, Spec) else None
        sub = Subtask(index=first + i, task=task, prompt=str(prompt))
        if isinstance(spec, Spec):
            sub.requested_backend, sub.attach = spec.backend, list(spec.attach)
        node.subtasks.append(sub)
        subtasks.append((i, sub, spec))
    ctx.run.changed()

    async def one(i: int, sub: Subtask, spec: Spec | str) -> None:
        results[i] = {"index": i, **await _run_one(ctx, sub, spec, orchestrator_id)}

    async with anyio.create_task_group() as tg:
        for i, sub, spec in subtasks:
            tg.start_soon(one, i, sub, spec)
    return results


async def _run_one(
    ctx: RunContext, sub: Subtask, spec: Spec | str, orchestrator_id: str | None
) -> dict[str, Any]:
    if isinstance(spec, str):
        return _finish(ctx, sub, "error", None, f"invalid sub-task: {spec}")
    attachments = [ctx.attachments[a] for a in spec.attach]
    text = with_attachments(spec.prompt, attachments)
    candidates = router.subtask_candidates(
        ctx.roster,
        ctx.env,
        task=spec.task,
        backend_id=spec.backend,
        orchestrator_id=orchestrator_id,
        needed_tokens=estimate_tokens(text),
        load=ctx.load,
        window_of=ctx.window_of,
    )
    if not candidates:
        wanted = f"good at {spec.task!r}" if spec.task else f"named {spec.backend!r}"
        return _finish(
            ctx,
            sub,
            "no_fit",
            None,
            f"no enabled backend {wanted} can take this sub-task; {DO_IT_YOURSELF}",
        )
    messages = [{"role": "user", "content": text}]

    def started() -> None:  # a backend slot is ours: from here on it is running, not queued
        if sub.started is None:
            sub.status, sub.started = "running", now()
            ctx.run.changed()

    reasons: list[str] = []
    for i, backend in enumerate(candidates):
        call = Call("subtask", backend.id, backend.model)
        sub.calls.append(call)
        try:
            reply = await ctx.call(
                backend, messages, call, alternatives=i < len(candidates) - 1, on_start=started
            )
        except BudgetExceeded as exc:
            return _finish(
                ctx,
                sub,
                "refused",
                backend.id,
                f"{exc}; budget exhausted, finish with what you have",
            )
        except CircuitOpen as exc:
            sub.calls.remove(call)  # nothing was sent: not a call
            reasons.append(str(exc))
            continue
        except (BackendError, ConfigError) as exc:
            reasons.append(str(exc))
            continue
        sub.answer = reply.text
        return _finish(ctx, sub, "ok", backend.id, None, cut=_cut_note(reply))
    return _finish(
        ctx,
        sub,
        "error",
        candidates[-1].id,
        "every candidate failed (" + "; ".join(reasons) + f"); {DO_IT_YOURSELF}",
    )


def _cut_note(reply: models.Reply) -> str | None:
    """What the orchestrator is told about a reply that did not end by itself."""
    if reply.finish_reason == models.REPEATED:
        why = "was stopped because it kept repeating itself"
    elif reply.finish_reason in TRUNCATED:
        why = f"was cut at its output limit ({reply.completion_tokens} tokens)"
    else:
        return None
    return f"the text {why} and is incomplete; {CUT_ADVICE}"


def _finish(
    ctx: RunContext,
    sub: Subtask,
    status: Any,
    backend: str | None,
    error: str | None,
    cut: str | None = None,
) -> dict[str, Any]:
    sub.status, sub.backend, sub.error, sub.ended = status, backend, error, now()
    ctx.run.changed()
    out: dict[str, Any] = {"status": status, "backend": backend}
    if status == "ok":
        out["text"] = sub.answer
        if cut is not None:
            out["truncated"], out["note"] = True, cut
    else:
        # Over the wire "refused" is an error too: the contract has ok|error|no_fit.
        out["status"] = "no_fit" if status == "no_fit" else "error"
        out["error"] = error
    return out
