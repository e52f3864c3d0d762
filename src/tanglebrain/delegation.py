"""The ``delegate`` and ``delegate_many`` tools: validation, fan-out, failover.

Sub-tasks run concurrently in an anyio task group, each backend behind its own
``CapacityLimiter``. A failing sub-task fails over to the next candidate backend and,
when none is left, becomes an ``error`` result telling the orchestrator to do that
part itself: nothing here raises into the orchestrator loop. Results are the values of
``results``, serialized by whoever hands them on; the tools' schemas and the menu live in
``tools`` (re-exported here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anyio

from tanglebrain import models, router
from tanglebrain.errors import BackendError, BudgetExceeded, CircuitOpen, ConfigError
from tanglebrain.models import estimate_tokens
from tanglebrain.results import CallError, ManyResult, SubtaskResult, ToolResult
from tanglebrain.results import fit_result as fit_result
from tanglebrain.runtime import TRUNCATED, RunContext, with_attachments
from tanglebrain.tools import menu as menu
from tanglebrain.tools import tool_schemas as tool_schemas
from tanglebrain.trace import Call, Status, Subtask, ToolCall, now

DO_IT_YOURSELF = "do this part yourself"
CUT_ADVICE = "ask for less or split the sub-task, or do the rest yourself"


@dataclass(frozen=True)
class Spec:
    """One validated sub-task request; ``notes`` say what was ignored in it."""

    prompt: str
    task: str | None
    backend: str | None
    attach: tuple[str, ...]
    notes: tuple[str, ...] = ()


FIELDS = ("prompt", "task", "backend", "attach")


def _parse_spec(
    ctx: RunContext, raw: Any, orchestrator_id: str | None, lenient: bool = False
) -> Spec | str:
    """A ``Spec``, or an error string explaining what is wrong with ``raw``.

    ``lenient`` (an orchestrator model's calls) ignores what only steers routing, with a
    note, instead of rejecting the sub-task: unknown fields, tags and backend ids, and
    attachment names when the run has none. The work itself is never guessed at.
    """
    if lenient and isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        return "each task must be an object with a 'prompt'"
    notes: list[str] = []
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown and not lenient:
        return f"unknown field(s) {unknown}; use prompt, task, backend, attach"
    if unknown:
        notes.append(f"ignored unknown field(s) {unknown}")
    prompt, task, backend = raw.get("prompt"), raw.get("task"), raw.get("backend")
    attach = raw.get("attach") or []
    if not isinstance(prompt, str) or not prompt.strip():
        return "'prompt' must be a non-empty string"
    menu_ = [b for b in ctx.usable() if b.id != orchestrator_id]
    tags = sorted({t for b in menu_ for t in b.good_at})
    if task is not None and (not isinstance(task, str) or task not in tags):
        if not lenient:
            return f"unknown task tag {task!r}; valid tags: {', '.join(tags)}"
        notes.append(f"ignored unknown task tag {task!r}")
        task = None
    if backend is not None and backend not in [b.id for b in ctx.usable()]:
        if not lenient:
            return f"unknown backend {backend!r}; valid ids: {', '.join(b.id for b in menu_)}"
        notes.append(f"ignored unknown backend {backend!r}")
        backend = None
    if lenient and attach and not ctx.attachments:
        notes.append("ignored 'attach': this run has no attachments")
        attach = []
    if not isinstance(attach, list) or not all(isinstance(a, str) for a in attach):
        return "'attach' must be a list of attachment names"
    missing = [a for a in attach if a not in ctx.attachments]
    if missing:
        return f"unknown attachment(s) {missing}; available: {sorted(ctx.attachments)}"
    return Spec(prompt, task, backend, tuple(dict.fromkeys(attach)), tuple(notes))


async def execute(
    ctx: RunContext,
    name: str,
    arguments: str,
    node: ToolCall,
    orchestrator_id: str | None,
    *,
    lenient: bool = False,
) -> ToolResult:
    """Run one tool call; return its result, unserialized.

    With ``lenient`` (see ``_parse_spec``) a ``delegate_many`` whose ``tasks`` is one task
    instead of a list of them runs that task.

    Returns:
        A ``SubtaskResult`` for ``delegate``, a ``ManyResult`` for ``delegate_many``, or a
        ``CallError`` when the call as a whole is rejected and no sub-task runs.
    """
    try:
        args = json.loads(arguments or "{}")
    except (json.JSONDecodeError, RecursionError) as exc:
        # The history repeats this call with "{}" (see toolcalls.echoed_arguments): show
        # the model what it sent, so that it can mend its call.
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return _error(node, f"arguments are not valid JSON ({why}): {_sent(arguments)}; call "
                      "the tool again")  # fmt: skip
    if not isinstance(args, dict):
        return _error(node, f"arguments must be a JSON object, not {_sent(arguments)}")
    if name == "delegate":
        raws: list[Any] = [args]
    elif name == "delegate_many":
        tasks = args.get("tasks")
        if lenient and isinstance(tasks, dict | str):
            tasks = [tasks]
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
    results = await fan_out(ctx, raws, node, orchestrator_id, lenient=lenient)
    return results.entries[0] if name == "delegate" else results


def _sent(arguments: str) -> str:
    """What the model sent, quoted: the history repeats a broken call as ``{}``.

    See ``toolcalls.echoed_arguments``; the model mends its call from this.
    """
    return repr(arguments if len(arguments) <= 120 else arguments[:120] + "…")


def _error(node: ToolCall, message: str) -> CallError:
    """The result of a call rejected as a whole: one error (no task ran)."""
    node.error = message
    return CallError(message)


async def fan_out(
    ctx: RunContext,
    raws: list[Any],
    node: ToolCall,
    orchestrator_id: str | None,
    *,
    lenient: bool = False,
) -> ManyResult:
    """Run every sub-task concurrently; results in input order, failures contained."""
    first = len(ctx.run.subtasks())
    results: dict[int, SubtaskResult] = {}
    subtasks: list[tuple[int, Subtask, Spec | str]] = []
    for i, raw in enumerate(raws):
        spec = _parse_spec(ctx, raw, orchestrator_id, lenient)
        if isinstance(spec, Spec):
            sub = Subtask(index=first + i, task=spec.task, prompt=spec.prompt)
            sub.requested_backend, sub.attach = spec.backend, list(spec.attach)
        else:
            prompt = raw.get("prompt", "") if isinstance(raw, dict) else ""
            sub = Subtask(index=first + i, task=None, prompt=str(prompt))
        node.subtasks.append(sub)
        subtasks.append((i, sub, spec))
    ctx.run.changed()

    async def one(i: int, sub: Subtask, spec: Spec | str) -> None:
        results[i] = await _run_one(ctx, sub, spec, orchestrator_id)

    async with anyio.create_task_group() as tg:
        for i, sub, spec in subtasks:
            tg.start_soon(one, i, sub, spec)
    return ManyResult(tuple(results[i] for i in range(len(raws))))


async def _run_one(
    ctx: RunContext, sub: Subtask, spec: Spec | str, orchestrator_id: str | None
) -> SubtaskResult:
    if isinstance(spec, str):
        return _finish(ctx, sub, "error", None, f"invalid sub-task: {spec}")
    attachments = [ctx.attachments[a] for a in spec.attach]
    text = with_attachments(spec.prompt, attachments)
    route = router.route_subtask(
        ctx.roster,
        ctx.env,
        task=spec.task,
        backend_id=spec.backend,
        orchestrator_id=orchestrator_id,
        needed_tokens=estimate_tokens(text),
        load=ctx.load,
        window_of=ctx.window_of,
    )
    candidates = route.candidates
    sub.routed_by, sub.static_first = route.routed_by, route.static_first
    if not candidates:
        return _finish(ctx, sub, "no_fit", None, _no_fit(spec), notes=spec.notes)
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
            why = f"{exc}; budget exhausted, finish with what you have"
            return _finish(ctx, sub, "refused", backend.id, why, notes=spec.notes)
        except CircuitOpen as exc:
            sub.calls.remove(call)  # nothing was sent: not a call
            reasons.append(str(exc))
            continue
        except (BackendError, ConfigError) as exc:
            reasons.append(str(exc))
            _learn(ctx, spec.task, call, exc)
            continue
        _learn(ctx, spec.task, call, None)
        sub.answer = reply.text
        return _finish(ctx, sub, "ok", backend.id, None, _cut_note(reply), spec.notes)
    return _finish(
        ctx,
        sub,
        "error",
        candidates[-1].id,
        "every candidate failed (" + "; ".join(reasons) + f"); {DO_IT_YOURSELF}",
        notes=spec.notes,
    )


def _learn(ctx: RunContext, task: str | None, call: Call, exc: Exception | None) -> None:
    """Count a sub-task call's outcome in this run's learned routing (when it learns)."""
    learned = ctx.load.learned
    if learned is None or not call.attempts:  # nothing was sent: says nothing of the backend
        return
    kind = getattr(exc, "kind", None) if exc is not None else None
    learned.add(
        router.Outcome(
            task=task,
            backend=call.backend,
            ok=exc is None,
            ended=call.ended or learned.now,
            latency_ms=call.latency_ms,
            cost_usd=call.cost_usd,
            kind=str(kind) if kind is not None else ("error" if exc is not None else None),
        )
    )


def _no_fit(spec: Spec) -> str:
    """Why no backend can take ``spec``."""
    if spec.task:
        wanted = f"good at {spec.task!r}"
    else:
        wanted = f"named {spec.backend!r}" if spec.backend else "at all"
    return f"no enabled backend {wanted} can take this sub-task; {DO_IT_YOURSELF}"


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
    status: Status,
    backend: str | None,
    error: str | None,
    cut: str | None = None,
    notes: tuple[str, ...] = (),
) -> SubtaskResult:
    """Record how a sub-task ended; return its result (``notes``: what was ignored)."""
    if error is not None and notes:
        error += f" ({'; '.join(notes)})"
    sub.status, sub.backend, sub.error, sub.ended = status, backend, error, now()
    ctx.run.changed()
    if status == "ok":
        note = "; ".join([*notes, *([cut] if cut else [])]) if cut is not None or notes else None
        return SubtaskResult("ok", backend, sub.answer, truncated=cut is not None, note=note)
    # Over the wire "refused" is an error too: the contract has ok|error|no_fit.
    return SubtaskResult("no_fit" if status == "no_fit" else "error", backend, error=error)
