"""The turn loop: one request in, one answer out.

``run`` picks the orchestrator (``planning``: the gate or the router), then either answers
directly (no tools) or loops: the orchestrator calls tools, delegation runs them
concurrently, the results go back, until the orchestrator writes its answer or
``max_turns`` forces one. An orchestrator that fails after its retries hands the same
conversation to the next candidate; when every candidate failed the run ends with
``NoAnswerError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tanglebrain import briefing, evidence, models, planning, router, toolcalls
from tanglebrain.errors import BackendError, CircuitOpen, ConfigError, NoAnswerError
from tanglebrain.roster import Backend, Roster
from tanglebrain.runtime import Attachment, Limits, RunContext, with_attachments
from tanglebrain.tools import menu, tool_schemas
from tanglebrain.trace import Call, Run, ToolCall, Turn

FINAL_NOTICE = (
    "You have reached the turn limit. Write your final answer now, without tools, "
    "from what you already have."
)
REPEAT_NOTE = (
    "That call repeats one already answered in this run: its results are above, unchanged, "
    "and nothing was re-run. Write the final answer now, in plain text."
)
BROKEN_NOTE = (
    "Your reply holds neither a valid tool call nor an answer. Call the tool again with valid "
    "JSON arguments, or write the final answer in plain text."
)
NOTICES = (FINAL_NOTICE, REPEAT_NOTE)
# Errors of calls recorded but not run (they make the run degraded).
UNANSWERED = "not run: the last turn must answer; the sub-task results were the answer"
BROKEN = "not run: tool-call text that is not a valid call"


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
    gate: bool = True  # False: never answer directly for being trivial (--no-gate)
    # A lower output cap for the calls that write the answer, the orchestrator's turns
    # (serve's ``max_tokens``); None: the roster's caps.
    answer_max_tokens: int | None = None


@dataclass
class Hooks:
    """Where a run's output goes; all optional."""

    on_text: Callable[[str], None] | None = None
    on_note: Callable[[str], None] | None = None
    on_thought: Callable[[str], None] | None = None
    observers: list[Callable[[Run], None]] = field(default_factory=list)


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
    ctx = RunContext.for_run(
        roster, env, trace, budget_usd=request.budget_usd, max_subtasks=request.max_subtasks,
        attachments=request.attachments, limits=limits, answer_cap=request.answer_max_tokens,
    )  # fmt: skip
    planning.warn_missing_keys(ctx)
    reviewing = request.review if request.review is not None else roster.settings.review == "always"
    ctx.load.learned = evidence.load_learned(roster, state_dir, trace)
    store = router.RotationStore(state_dir) if state_dir is not None else None
    plan = await planning.plan(ctx, request, reviewing, store)
    for note in plan.notes:
        if hooks.on_note:
            hooks.on_note(note)
    # Under review the draft is not the answer: nothing reaches stdout until the ruling.
    draft_hooks = Hooks(None if reviewing else hooks.on_text, hooks.on_note, hooks.on_thought)
    solo = plan.direct or request.no_delegate
    views = ""
    if ctx.attachments and (reviewing or not solo):
        views = await briefing.attachment_views(ctx, plan.candidates[0].id)
    convo, backend, schemas = await _draft(ctx, request, plan, views, draft_hooks, roster_dir)
    if reviewing:
        await _review(ctx, hooks, backend, convo, views, schemas)
    if store is not None and plan.rotation_key:
        store.advance(plan.rotation_key)
    return trace


async def _draft(
    ctx: RunContext,
    request: Request,
    plan: router.OrchestratorPlan,
    views: str,
    hooks: Hooks,
    roster_dir: Path | None,
) -> tuple[list[dict[str, Any]], Backend, list[dict[str, Any]] | None]:
    """Write the draft answer, delegating or alone (a direct plan, ``--no-delegate``).

    Returns:
        What ``_turns`` returns: the conversation, who answered, the tools it was offered.
    """
    if not (plan.direct or request.no_delegate):
        convo = [{"role": "user", "content": briefing.user_message(request.prompt, views)}]
        return await _turns(ctx, plan.candidates, convo, hooks, tools=True, roster_dir=roster_dir)
    if ctx.run.mode != "gated":
        ctx.run.mode = "direct" if plan.direct else "solo"
    # Alone, the orchestrator reads the attachments in full: it cannot hand them on.
    text = with_attachments(request.prompt, request.attachments)
    convo = [{"role": "user", "content": text}]
    return await _turns(ctx, plan.candidates, convo, hooks, tools=False, roster_dir=roster_dir)


async def _review(
    ctx: RunContext,
    hooks: Hooks,
    backend: Backend,
    convo: list[dict[str, Any]],
    views: str,
    schemas: list[dict[str, Any]] | None,
) -> None:
    """Have the panel review the draft; its ruling's answer is the run's, shown whole."""
    from tanglebrain import review  # only reviewed runs need it

    trace = ctx.run
    trace.review = await review.panel(ctx, backend, convo, trace.answer, views, schemas)
    trace.answer = trace.review.answer
    if trace.review.warning:
        trace.warn(trace.review.warning)
    if hooks.on_text:
        hooks.on_text(trace.answer)


@dataclass
class _Loop:
    """What the turn loop carries from one turn to the next."""

    turn_no: int = 0
    force_final: bool = False  # a turn only repeated answered calls: the answer is due
    answered: dict[str, str] = field(default_factory=dict)  # call key -> its tool message
    # Per orchestrator: its system prompt and tool schemas, built once so that every turn
    # sends a byte-identical prefix (what providers' prompt caches match on), and a hash.
    prefixes: dict[str, tuple[str, list[dict[str, Any]], str]] = field(default_factory=dict)


async def _turns(
    ctx: RunContext,
    candidates: tuple[Backend, ...],
    convo: list[dict[str, Any]],
    hooks: Hooks,
    *,
    tools: bool,
    roster_dir: Path | None,
) -> tuple[list[dict[str, Any]], Backend, list[dict[str, Any]] | None]:
    """Loop turns until an answer; return the conversation, who answered, its tools.

    With ``tools`` the conversation gets the orchestrator's system prompt in front,
    rebuilt on failover (the menu leaves out the orchestrator itself).
    """
    run = ctx.run
    failures: list[BackendError | ConfigError] = []
    current = 0
    loop = _Loop()
    while True:
        if current >= len(candidates):
            raise NoAnswerError(failures)
        backend = candidates[current]
        run.orchestrator = backend.id
        final = not tools or loop.force_final or loop.turn_no >= ctx.roster.settings.max_turns - 1
        schemas = _prepare(ctx, backend, convo, final and loop.turn_no > 0, tools, roster_dir, loop)
        turn = _open_turn(ctx, backend, schemas, loop)
        sink = toolcalls.StreamGate(_names(schemas), hooks.on_text if final else None)
        try:
            reply = await ctx.call(
                # Stream only when someone reads along: a whole reply is cheaper to parse.
                backend,
                convo,
                turn.call,
                tools=schemas,
                on_text=sink.feed if sink.on_text else None,
                alternatives=current < len(candidates) - 1,
                tool_choice="none" if final and schemas else None,
            )  # an empty reply is a BackendError already, recorded on its attempt
            turn.text, turn.finish_reason = reply.text, reply.finish_reason
            if final:
                _settle_final(ctx, turn, reply, sink)
        except CircuitOpen as exc:  # skipped without a call: no turn to record
            run.turns.remove(turn)
            failures.append(exc)
            current += 1
            continue
        except (BackendError, ConfigError) as exc:
            failures.append(exc)
            if sink.streamed:  # part of an answer already reached stdout: no clean failover
                raise NoAnswerError(failures) from None
            current += 1
            continue
        run.orchestrator_context_tokens = max(run.orchestrator_context_tokens, reply.prompt_tokens)
        if final or await _step(ctx, turn, reply, convo, hooks, loop, _names(schemas)):
            run.changed()
            return convo, backend, schemas
        loop.turn_no += 1


def _open_turn(
    ctx: RunContext, backend: Backend, schemas: list[dict[str, Any]] | None, loop: _Loop
) -> Turn:
    """Record a new turn of ``backend``, with the hash of its prompt prefix when it has tools."""
    turn = Turn(index=len(ctx.run.turns), call=Call("orchestrator", backend.id, backend.model))
    if schemas is not None:
        turn.prefix_hash = loop.prefixes[backend.id][2]
    ctx.run.turns.append(turn)
    ctx.run.changed()
    return turn


def _prepare(
    ctx: RunContext,
    backend: Backend,
    convo: list[dict[str, Any]],
    forced: bool,
    tools: bool,
    roster_dir: Path | None,
    loop: _Loop,
) -> list[dict[str, Any]] | None:
    """Put ``backend``'s system prompt in front; return the tool schemas it is offered.

    A ``forced`` last turn is told to answer (once). It keeps the tools on offer but
    forbids calling them: dropping them would change the prompt's prefix, and some
    providers' adapters then add a placeholder tool that a model may call.
    """
    if not tools:
        return None
    if backend.id not in loop.prefixes:
        system = briefing.system_prompt(ctx, backend.id, roster_dir)
        # The menu is in the system prompt: the tools need not repeat it (a custom prompt
        # without it gets the full descriptions).
        lean = menu(ctx, backend.id) in system
        schemas = tool_schemas(ctx, backend.id, lean=lean)
        import hashlib  # ~3 ms to import: only runs that delegate need it

        blob = json.dumps([system, schemas], sort_keys=True, ensure_ascii=False).encode()
        loop.prefixes[backend.id] = (system, schemas, hashlib.sha256(blob).hexdigest()[:16])
    system, schemas, _ = loop.prefixes[backend.id]
    convo[: 1 if convo[0]["role"] == "system" else 0] = [{"role": "system", "content": system}]
    if forced and convo[-1].get("content") not in NOTICES:
        convo.append({"role": "user", "content": FINAL_NOTICE})
    return schemas


def _names(schemas: list[dict[str, Any]] | None) -> frozenset[str]:
    return frozenset(s["function"]["name"] for s in schemas or ())


def _settle_final(
    ctx: RunContext, turn: Turn, reply: models.Reply, sink: toolcalls.StreamGate
) -> None:
    """The last turn's prose is the answer; without prose, the sub-task results are.

    Raises:
        BackendError: no prose and no sub-task result to answer with.
    """
    parsed = sink.finish(reply.text)
    if parsed.prose.strip():
        ctx.run.answer = parsed.prose
        return
    results = [s.answer.strip() for s in ctx.run.subtasks() if s.status == "ok"]
    if not any(results):
        raise BackendError(turn.call.backend, "called tools on its last turn instead of answering")
    # Recorded as calls refused as a whole: the run is degraded, and says why.
    asked = [(tc.name, tc.arguments) for tc in reply.tool_calls] or [
        (c.name, c.arguments) for c in parsed.calls
    ]
    for i, (name, arguments) in enumerate(asked or [("", reply.text)]):
        node = ToolCall(f"text-{turn.index}-{i}", name, arguments, error=UNANSWERED)
        turn.tool_calls.append(node)
    ctx.run.warn(
        f"{turn.call.backend} wrote no answer on its last turn, only tool calls: "
        "the answer is the sub-task results as they came back"
    )
    ctx.run.answer = "\n\n".join(r for r in results if r)
    sink.show(ctx.run.answer)


async def _step(
    ctx: RunContext,
    turn: Turn,
    reply: models.Reply,
    convo: list[dict[str, Any]],
    hooks: Hooks,
    loop: _Loop,
    offered: frozenset[str],
) -> bool:
    """Act on a turn before the last: run its tool calls, or take its text as the answer.

    Returns:
        Whether the run is answered.
    """
    calls, parsed = toolcalls.turn_calls(reply, offered, f"text-{turn.index}")
    if calls and not reply.tool_calls:
        ctx.run.warn(f"{turn.call.backend} {toolcalls.AS_TEXT}")
    if not calls and (parsed.broken or not parsed.prose.strip()):  # no call, no answer
        turn.tool_calls.append(ToolCall(f"text-{turn.index}-0", "", reply.text, error=BROKEN))
        convo.append({"role": "assistant", "content": reply.text})
        convo.append({"role": "user", "content": BROKEN_NOTE})
        return False
    if not calls:
        ctx.run.answer = reply.text
        if hooks.on_text:
            hooks.on_text(reply.text)
        return True
    if parsed.prose.strip() and hooks.on_thought:
        hooks.on_thought(parsed.prose.strip())
    messages, repeats = await toolcalls.run_calls(ctx, turn, parsed.prose, calls, loop.answered)
    convo.extend(messages)
    if repeats == len(calls):
        convo.append({"role": "user", "content": REPEAT_NOTE})
        loop.force_final = True
    return False
