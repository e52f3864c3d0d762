"""The turn loop: one request in, one answer out.

``run`` picks the orchestrator (router), then either answers directly (no tools) or
loops: the orchestrator calls tools, delegation runs them concurrently, the results
go back, until the orchestrator writes its answer or ``max_turns`` forces one. An
orchestrator that fails after its retries hands the same conversation to the next
candidate; when every candidate failed the run ends with ``NoAnswerError``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio

from tanglebrain import delegation, models, router
from tanglebrain.budget import Budget
from tanglebrain.errors import BackendError, CircuitOpen, ConfigError, NoAnswerError
from tanglebrain.models import estimate_tokens
from tanglebrain.roster import Backend, Roster
from tanglebrain.runtime import (
    Attachment,
    Limits,
    RunContext,
    with_attachments,
)
from tanglebrain.trace import Call, Digest, Run, ToolCall, Turn

# A digested sub-task text never gets less than this many bytes.
MIN_SHARE = 400

FINAL_NOTICE = (
    "You have reached the turn limit. Write your final answer now, without tools, "
    "from what you already have."
)


@dataclass(frozen=True)
class Request:
    """What the user asked for, and how."""

    prompt: str
    attachments: tuple[Attachment, ...] = ()
    backend: str | None = None
    task: str | None = None
    no_delegate: bool = False
    budget_usd: float | None = None
    max_subtasks: int | None = None
    review: bool | None = None  # None: the roster's settings.review decides
    origin: str = "cli"


@dataclass
class Hooks:
    """Where a run's output goes; all optional."""

    on_text: Callable[[str], None] | None = None
    on_note: Callable[[str], None] | None = None
    on_thought: Callable[[str], None] | None = None
    observers: list[Callable[[Run], None]] = field(default_factory=list)


def system_prompt(ctx: RunContext, orchestrator_id: str, base_dir: Path | None) -> str:
    """The orchestrator's system prompt: the package template or the user's file."""
    custom = ctx.roster.settings.system_prompt_file
    if custom:
        path = Path(custom).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            template = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read system prompt file: {exc.strerror}",
                field="settings.system_prompt_file",
                fix=f"check the path {path}",
            ) from None
    else:
        template = resources.files("tanglebrain").joinpath("prompts/orchestrator.md").read_text()
    return string.Template(template).safe_substitute(menu=delegation.menu(ctx, orchestrator_id))


def attachment_view(att: Attachment, digest: str) -> str:
    """What the orchestrator sees of an attachment: its size and a digest, not the text."""
    return (
        f"- {att.name}: {att.size} bytes, {att.lines} lines. Hand it to a delegate with "
        f'attach: ["{att.name}"]. Digest:\n<<<digest {att.name}>>>\n{digest.rstrip()}\n'
        f"<<<end digest {att.name}>>>"
    )


async def attachment_views(ctx: RunContext, orchestrator_id: str | None) -> str:
    """Every attachment's view (size and digest), recording the digests in the trace."""
    from tanglebrain import compress, llm_digest  # only runs with attachments need them

    budget = ctx.roster.settings.context_budget_bytes
    views = []
    for att in ctx.attachments.values():
        if ctx.roster.settings.llm_digest:
            digest = await llm_digest.digest(ctx, att, orchestrator_id)
        else:
            digest = compress.budgeted(att.text, budget)
        view = attachment_view(att, digest)
        ctx.run.digests.append(Digest(att.name, att.size, len(view.encode())))
        views.append(view)
    return "\n".join(views)


def _user_message(prompt: str, views: str) -> str:
    if not views:
        return prompt
    return (
        f"{prompt}\n\nAttachments (their full text is not in your context; delegates get it "
        "when you attach them):\n" + views
    )


async def run(
    request: Request,
    roster: Roster,
    *,
    env: Mapping[str, str],
    state_dir: Path | None = None,
    roster_dir: Path | None = None,
    hooks: Hooks | None = None,
    trace: Run | None = None,
    limits: Limits | None = None,
) -> Run:
    """Answer ``request`` with the backends of ``roster``.

    Returns:
        The finished run: ``answer``, ``orchestrator`` and the whole trace.

    Raises:
        ConfigError: bad pin, missing key, nothing fits.
        NoAnswerError: every candidate backend failed.
        BudgetExceeded: the budget ran out before an answer.
    """
    hooks = hooks or Hooks()
    trace = trace or Run(prompt=request.prompt, origin=request.origin)
    for observer in hooks.observers:
        trace.subscribe(observer)
    ctx = _context(request, roster, env, trace)
    for b in roster.enabled():
        if b.key_status(env) == "missing":  # said once, before anything is routed
            trace.warn(
                f"backend '{b.id}' is skipped: ${b.api_key_env} is not set "
                f"(export {b.api_key_env}=… or disable the backend)"
            )
    if limits is not None:
        ctx.limits = limits
    store = router.RotationStore(state_dir) if state_dir is not None else None
    plan = router.plan_orchestrator(
        roster,
        env,
        pin=request.backend,
        task=request.task,
        needed_tokens=_needed_tokens(request, roster.settings.context_budget_bytes),
        window_of=ctx.window_of,
        rotation_offset=store.offset if store else (lambda key, n: 0),
    )
    for note in plan.notes:
        if hooks.on_note:
            hooks.on_note(note)
    reviewing = request.review if request.review is not None else roster.settings.review == "always"
    # Under review the draft is not the answer: nothing reaches stdout until the ruling.
    draft_hooks = Hooks(None if reviewing else hooks.on_text, hooks.on_note, hooks.on_thought)
    solo = plan.direct or request.no_delegate
    views = ""
    if ctx.attachments and (reviewing or not solo):
        views = await attachment_views(ctx, plan.candidates[0].id)
    if solo:
        trace.mode = "direct" if plan.direct else "solo"
        text = with_attachments(request.prompt, request.attachments)
        convo, backend = await _turns(
            ctx,
            plan.candidates,
            [{"role": "user", "content": text}],
            draft_hooks,
            tools=False,
            roster_dir=roster_dir,
        )
    else:
        convo = [{"role": "user", "content": _user_message(request.prompt, views)}]
        convo, backend = await _turns(
            ctx, plan.candidates, convo, draft_hooks, tools=True, roster_dir=roster_dir
        )
    if reviewing:
        from tanglebrain import review  # only reviewed runs need it

        trace.review = await review.panel(ctx, backend, convo, trace.answer, views)
        trace.answer = trace.review.answer
        if trace.review.warning:
            trace.warn(trace.review.warning)
        if hooks.on_text:
            hooks.on_text(trace.answer)
    if store is not None and plan.rotation_key:
        store.advance(plan.rotation_key)
    return trace


def _context(request: Request, roster: Roster, env: Mapping[str, str], trace: Run) -> RunContext:
    settings = roster.settings
    cap = request.budget_usd if request.budget_usd is not None else settings.budget_usd
    return RunContext(
        roster=roster,
        env=env,
        run=trace,
        budget=Budget(cap),
        retry=models.RetryPolicy(max_attempts=settings.max_attempts),
        timeout=settings.timeout_s,
        attachments={a.name: a for a in request.attachments},
        max_subtasks=request.max_subtasks or settings.max_subtasks,
    )


def _needed_tokens(request: Request, budget_bytes: int) -> int:
    """Tokens the first orchestrator turn needs: the prompt, attachments, system prompt."""
    if request.no_delegate:  # the solo baseline reads every attachment in full
        size = sum(a.size for a in request.attachments)
    else:
        size = sum(min(a.size, budget_bytes) for a in request.attachments)
    return estimate_tokens(request.prompt) + size // 4 + 1500


async def _turns(
    ctx: RunContext,
    candidates: tuple[Backend, ...],
    convo: list[dict[str, Any]],
    hooks: Hooks,
    *,
    tools: bool,
    roster_dir: Path | None,
) -> tuple[list[dict[str, Any]], Backend]:
    """Loop turns until an answer; return the conversation and who answered.

    With ``tools`` the conversation gets the orchestrator's system prompt in front,
    rebuilt on failover (the menu leaves out the orchestrator itself).
    """
    run = ctx.run
    failures: list[BackendError | ConfigError] = []
    current = 0
    max_turns = ctx.roster.settings.max_turns
    turn_no = 0
    while True:
        if current >= len(candidates):
            raise NoAnswerError(failures)
        backend = candidates[current]
        run.orchestrator = backend.id
        if tools:
            system = {"role": "system", "content": system_prompt(ctx, backend.id, roster_dir)}
            convo[: 1 if convo[0]["role"] == "system" else 0] = [system]
        final = not tools or turn_no >= max_turns - 1
        if tools and final and turn_no > 0 and convo[-1].get("content") != FINAL_NOTICE:
            convo.append({"role": "user", "content": FINAL_NOTICE})
        # The last turn keeps the tools on offer but forbids calling them: dropping them
        # would change the prompt's prefix, and some providers' adapters then add a
        # placeholder tool that a model may call.
        schemas = delegation.tool_schemas(ctx, backend.id) if tools else None
        call = Call("orchestrator", backend.id, backend.model)
        turn = Turn(index=len(run.turns), call=call)
        run.turns.append(turn)
        run.changed()
        streamed = False

        def emit(delta: str) -> None:
            nonlocal streamed
            streamed = True
            if hooks.on_text:
                hooks.on_text(delta)

        try:
            reply = await ctx.call(
                # Stream only when someone reads along: a whole reply is cheaper to parse.
                backend,
                convo,
                call,
                tools=schemas,
                on_text=emit if final and hooks.on_text else None,
                alternatives=current < len(candidates) - 1,
                tool_choice="none" if final and schemas else None,
            )  # an empty reply is a BackendError already, recorded on its attempt
            if final and reply.tool_calls and not reply.text.strip():
                # Past the turn limit no tool call is run, however often a model asks.
                raise BackendError(backend.id, "called tools on its last turn instead of answering")
        except CircuitOpen as exc:  # skipped without a call: no turn to record
            run.turns.remove(turn)
            failures.append(exc)
            current += 1
            continue
        except (BackendError, ConfigError) as exc:
            failures.append(exc)
            if streamed:  # part of an answer already reached stdout: no clean failover
                raise NoAnswerError(failures) from None
            current += 1
            continue
        ctx.run.orchestrator_context_tokens = max(
            ctx.run.orchestrator_context_tokens, reply.prompt_tokens
        )
        turn.text = reply.text
        if not reply.tool_calls or final:  # a last turn's text is the answer, calls or not
            run.answer = reply.text
            if not final and hooks.on_text:
                hooks.on_text(reply.text)
            run.changed()
            return convo, backend
        if reply.text.strip() and hooks.on_thought:
            hooks.on_thought(reply.text.strip())
        convo.append(_assistant(reply))
        convo.extend(await _tools(ctx, turn, reply.tool_calls, backend.id))
        turn_no += 1


def _assistant(reply: models.Reply) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments},
            }
            for tc in reply.tool_calls
        ],
    }


async def _tools(
    ctx: RunContext, turn: Turn, calls: tuple[models.ToolCallRequest, ...], orchestrator_id: str
) -> list[dict[str, Any]]:
    """Run every tool call of a turn concurrently; one tool message per call, in order."""
    budget = ctx.roster.settings.context_budget_bytes
    nodes = [ToolCall(id=tc.id, name=tc.name, arguments=tc.arguments) for tc in calls]
    turn.tool_calls.extend(nodes)
    out: list[dict[str, Any]] = [{} for _ in calls]

    async def one(i: int, tc: models.ToolCallRequest) -> None:
        node = nodes[i]
        result = await delegation.execute(ctx, tc.name, tc.arguments, node, orchestrator_id)
        node.result_bytes = len(json.dumps(result, ensure_ascii=False).encode())
        text = fit_result(result, budget)
        node.context_bytes = len(text.encode())
        if node.context_bytes < node.result_bytes:
            ctx.run.digests.append(Digest(f"tool:{tc.id}", node.result_bytes, node.context_bytes))
        out[i] = {"role": "tool", "tool_call_id": tc.id, "content": text}

    async with anyio.create_task_group() as tg:
        for i, tc in enumerate(calls):
            tg.start_soon(one, i, tc)
    return out


def fit_result(result: Any, budget: int) -> str:
    """The JSON text of a tool result, with bulky sub-task texts digested to fit ``budget``.

    The structure survives (every entry keeps its index, status and backend); only
    ``text`` fields over their share of the budget are replaced by a budgeted digest,
    so the orchestrator still sees every result and knows what was shortened.
    """
    text = json.dumps(result, ensure_ascii=False)
    if len(text.encode()) <= budget:
        return text
    entries = [
        e
        for e in (result if isinstance(result, list) else [result])
        if isinstance(e, dict) and isinstance(e.get("text"), str)
    ]
    if not entries:
        return text
    skeleton = len(text.encode()) - sum(len(e["text"].encode()) for e in entries)
    share = max(MIN_SHARE, (budget - skeleton) // len(entries))
    from tanglebrain import compress  # only bulky tool results need it

    for entry in entries:
        size = len(entry["text"].encode())
        if size > share:
            entry["text"] = compress.budgeted(entry["text"], share)
            entry["digest_of_bytes"] = size
    return json.dumps(result, ensure_ascii=False)
