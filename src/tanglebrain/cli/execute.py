"""The body of ``run``: run the request through a session, print the answer, keep the run."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from tanglebrain.cli.fastrun import RunOptions
from tanglebrain.cli.streams import SigtermStop, StdoutSink, collect_less, read_input, state_dir
from tanglebrain.errors import TanglebrainError, Terminated, UsageError
from tanglebrain.orchestrator import Hooks, Request
from tanglebrain.roster import LoadedRoster, load
from tanglebrain.session import Session, finish, ledger_recorder, logging_disabled
from tanglebrain.trace import Run
from tanglebrain.views import render

if TYPE_CHECKING:
    from tanglebrain.views.live import LiveView


def live_view(trace: Run, *, quiet: bool, progress: bool | None) -> LiveView | None:
    """A live view on stderr when wanted: ``--progress``, else when stderr is a terminal."""
    if quiet or progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from rich.console import Console

    from tanglebrain.views.live import LiveView

    return LiveView(trace, Console(stderr=True, force_terminal=True if progress else None))


def preload_transport(loaded: LoadedRoster, backend: str | None, task: str | None) -> None:
    """Start importing litellm in the background when the likely orchestrator needs it.

    The import takes seconds; started now, it overlaps the run's own start (attachments,
    routing, the system prompt) instead of following it. "Likely": the first choice of the
    orchestrator plan and the backends that cost the same (round-robin may pick any).
    """
    from tanglebrain import models, router

    try:
        plan = router.plan_orchestrator(loaded.roster, os.environ, pin=backend, task=task)
    except TanglebrainError:
        return  # the run reports it
    first = plan.candidates[0]
    peers = [b for b in plan.candidates if b.cost == first.cost]
    if any(models.transport_name(b) == "litellm" for b in peers):
        models.preload_litellm()


def _hooks(view: LiveView | None, sink: StdoutSink, output: Output) -> Hooks:
    quiet = output.quiet

    def note(message: str) -> None:
        if not quiet:
            render.note(message)

    def thought(message: str) -> None:
        if output.verbose and not quiet:
            render.note(message, prefix="orchestrator")

    def text(delta: str) -> None:
        if view is not None:
            view.stop()  # the answer streams to the same terminal: end the live view first
        sink.write(delta)

    return Hooks(
        on_text=None if output.json_out else text,
        on_note=note,
        on_thought=thought,
        observers=[view.observe] if view is not None else [],
    )


def run_options(opts: RunOptions, stop: SigtermStop) -> int:
    """Check ``opts``, read the prompt (and piped stdin), run it; the exit code.

    ``stop`` is installed by the caller before it imports this module: importing a run's
    modules takes a while, and a SIGTERM meanwhile must end the process the usual way.

    Raises:
        UsageError: a bad option value.
        TanglebrainError: the run failed (after it was recorded).
    """
    if opts.budget is not None and (not math.isfinite(opts.budget) or opts.budget <= 0):
        raise UsageError("--budget must be a positive number of USD", fix="e.g. --budget 0.50")
    if opts.max_subtasks is not None and opts.max_subtasks < 1:
        raise UsageError("--max-subtasks must be at least 1")
    if opts.ab and opts.no_delegate:
        raise UsageError(
            "--ab already runs the request solo beside the delegated run",
            fix="drop --no-delegate",
        )
    from tanglebrain.runtime import Attachment

    text, piped = read_input(opts.prompt)
    request = Request(
        prompt=text,
        attachments=(Attachment("stdin", piped),) if piped else (),
        backend=opts.backend,
        task=opts.task,
        no_delegate=opts.no_delegate,
        budget_usd=opts.budget,
        max_subtasks=opts.max_subtasks,
        review=opts.review,
        gate=not (opts.no_gate or opts.ab),  # an A/B pair measures delegation: never gated
    )
    return execute_run(
        request,
        roster_path=opts.roster,
        output=Output(
            json_out=opts.json_out, quiet=opts.quiet, verbose=opts.verbose,
            progress=opts.progress,
        ),
        state=state_dir(os.environ),
        no_log=opts.no_log,
        stop=stop,
        ab=opts.ab,
    )  # fmt: skip


@dataclass(frozen=True)
class Output:
    """How ``run`` presents itself: the answer or ``--json``, and what goes to stderr."""

    json_out: bool = False
    quiet: bool = False
    verbose: bool = False
    progress: bool | None = None  # the live tree: None = when stderr is a terminal


def execute_run(
    request: Request,
    *,
    roster_path: Path | None,
    output: Output,
    state: Path,
    no_log: bool = False,
    stop: SigtermStop | None = None,
    ab: bool = False,
) -> int:
    """Run one request end to end, record it, and return the exit code.

    The run counts as delivered only once the whole answer (or the ``--json`` object) is
    written: a reader that leaves before that (``| head -c 20``) interrupts it, and so
    does a SIGTERM handled by ``stop``. Either way the run is recorded as interrupted.

    With ``ab`` the same request also runs solo (``no_delegate``), concurrently and
    silently; both runs are recorded with one pair id, and the delegated one is the
    answer. A solo twin that fails is recorded as failed and costs the answer nothing.

    Raises:
        Terminated: ``stop`` received SIGTERM (after the run was recorded).
    """
    stop = stop or SigtermStop()
    loaded = load(roster_path, os.environ, Path.cwd())
    preload_transport(loaded, request.backend, request.task)
    log = not logging_disabled(no_log, os.environ)
    session = Session(
        loaded.roster, os.environ, roster_dir=loaded.path.parent, state_dir=state,
        record=ledger_recorder(loaded.roster, os.environ, state) if log else None,
    )  # fmt: skip
    sink = StdoutSink()
    trace = Run(prompt=request.prompt)
    solo = Run(prompt=request.prompt, pair=trace.id) if ab else None
    if solo is not None:
        trace.pair = trace.id
    view = live_view(trace, quiet=output.quiet, progress=output.progress)
    try:
        _run_live(session, request, trace, solo, view, _hooks(view, sink, output), stop)
        if stop.received:
            raise Terminated()
        _deliver(sink, trace, solo, json_out=output.json_out)
    except (TanglebrainError, KeyboardInterrupt, Terminated) as exc:
        _keep_ended(session, trace, solo, exc, quiet=output.quiet, recorded=log)
        raise
    session.keep_now(*_runs(trace, solo))
    if stop.received:  # after the answer was out: it stands, and the exit code says why
        raise Terminated()
    if not output.quiet:
        _report(trace, solo, recorded=log)
    return 0


def _runs(trace: Run, solo: Run | None) -> list[Run]:
    """The answer's run, then its A/B solo twin if there is one."""
    return [trace] if solo is None else [trace, solo]


def _run_live(
    session: Session,
    request: Request,
    trace: Run,
    solo: Run | None,
    view: LiveView | None,
    hooks: Hooks,
    stop: SigtermStop,
) -> None:
    """Run the request (and its A/B twin) with the live view up for exactly that long."""
    if view is not None:
        view.start()
    try:
        stop.defer()  # from here on the run may pay for calls: it must be recorded
        collect_less()
        anyio.run(_run_all, session, request, trace, solo, hooks, stop)
    finally:
        if view is not None:
            view.stop()


def _deliver(sink: StdoutSink, trace: Run, solo: Run | None, *, json_out: bool) -> None:
    """End the answer on stdout and the runs still open; under ``--json``, write the object."""
    sink.finish()
    for run in _runs(trace, solo):
        if run.status == "running":
            finish(run)
    if json_out:
        data = render.run_json(trace)
        if solo is not None:
            data["ab"] = render.ab_json(trace, solo)
        sink.write(json.dumps(data, ensure_ascii=False) + "\n")


def _keep_ended(
    session: Session,
    trace: Run,
    solo: Run | None,
    exc: BaseException,
    *,
    quiet: bool,
    recorded: bool,
) -> None:
    """Record the runs as ended by ``exc``; the summary too, once ``trace`` made calls."""
    for run in _runs(trace, solo):  # by what reached us: SIGTERM, the reader leaving, the failure
        if run.status == "running" or run is trace:
            finish(run, exc)
        session.keep_now(run)
    made_calls = trace.turns or trace.extra_calls
    if not quiet and trace.status != "interrupted" and made_calls:
        render.note(render.summary_line(trace, recorded=recorded), prefix="summary")


async def _run_all(
    session: Session,
    request: Request,
    trace: Run,
    solo: Run | None,
    hooks: Hooks,
    stop: SigtermStop,
) -> None:
    """Run the request into ``trace``; with an A/B ``solo`` twin, that one beside it."""

    async def twin(solo: Run) -> None:
        # A failure is finished as failed by the session; the delegated answer stands alone.
        with contextlib.suppress(TanglebrainError):
            await session.run(replace(request, no_delegate=True), solo, Hooks())
            finish(solo)  # nothing to deliver: it ends with its reply, not with ours

    with stop.cancelling():
        if solo is None:
            await session.run(request, trace, hooks)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(twin, solo)
            await session.run(request, trace, hooks)


def _report(trace: Run, solo: Run | None, *, recorded: bool) -> None:
    """The notes after an answer: the review, warnings, the summary, the A/B line."""
    for line in render.review_lines(trace.review) if trace.review else []:
        render.note(line, prefix="review")
    for warning in trace.warnings:
        render.note(warning, prefix="warning")
    render.note(render.summary_line(trace, recorded=recorded), prefix="done")
    if solo is not None:
        render.note(render.ab_line(trace, solo), prefix="a/b")
