"""The body of ``run``: build the request, run it, print the answer, record the run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from tanglebrain.cli.run import SigtermStop, StdoutSink, Terminated
from tanglebrain.errors import BudgetExceeded, OutputClosed, TanglebrainError
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import LoadedRoster, load
from tanglebrain.runtime import Attachment
from tanglebrain.trace import Run
from tanglebrain.views import render

if TYPE_CHECKING:
    from tanglebrain.views.live import LiveView

_TRUE = frozenset({"1", "true", "yes", "on"})


def logging_disabled(no_log: bool, env: os._Environ[str] | dict[str, str]) -> bool:
    """Whether this run must not be recorded (``--no-log`` or ``TANGLEBRAIN_NO_LOG=1``)."""
    return no_log or env.get("TANGLEBRAIN_NO_LOG", "").strip().lower() in _TRUE


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


def mark_unpriced(trace: Run, loaded: LoadedRoster) -> None:
    """Make the cost of failed attempts on backends without a known price unknown.

    A failed attempt carries $0 whatever its backend's price; on a backend whose price
    is unknown that $0 would read as "free" in every view (see ``trace.cost_of`` for how
    unknown costs add up). Idempotent.
    """
    from tanglebrain import models

    unpriced: dict[str, bool] = {}
    for attempt in trace.attempts():
        if attempt.status == "ok" or attempt.cost_usd is None:
            continue
        if attempt.backend not in unpriced:
            backend = loaded.roster.get(attempt.backend)
            unpriced[attempt.backend] = (
                backend is not None and models.price_per_token(backend) is None
            )
        if unpriced[attempt.backend]:
            attempt.cost_usd = None


def record(trace: Run, loaded: LoadedRoster, state: Path) -> None:
    """Store the run in the ledger; never raises (a failure is one warning line)."""
    from tanglebrain import models
    from tanglebrain.ledger import Ledger, default_path

    mark_unpriced(trace, loaded)  # runs of serve and mcp come here straight
    roster = loaded.roster
    orchestrator = roster.get(trace.orchestrator) if trace.orchestrator else None
    secrets = roster.key_values(os.environ)
    try:
        price = models.price_per_token(orchestrator) if orchestrator else None
        Ledger(default_path(state)).record(trace, orchestrator_price=price, secrets=secrets)
    except TanglebrainError as exc:
        render.note(f"run {trace.id} not recorded: {exc}", prefix="warning")
    except Exception as exc:  # a ledger bug must not cost the user an answer
        render.note(f"run {trace.id} not recorded: {type(exc).__name__}: {exc}", "warning")


def export(trace: Run, loaded: LoadedRoster) -> None:
    """Export the run over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; never raises."""
    from tanglebrain import otel

    problem = otel.export_if_configured(
        trace, os.environ, secrets=loaded.roster.key_values(os.environ)
    )
    if problem:
        render.note(problem, prefix="warning")


def _hooks(
    view: LiveView | None, sink: StdoutSink, *, json_out: bool, quiet: bool, verbose: bool
) -> Hooks:
    def note(message: str) -> None:
        if not quiet:
            render.note(message)

    def thought(message: str) -> None:
        if verbose and not quiet:
            render.note(message, prefix="orchestrator")

    def text(delta: str) -> None:
        if view is not None:
            view.stop()  # the answer streams to the same terminal: end the live view first
        sink.write(delta)

    return Hooks(
        on_text=None if json_out else text,
        on_note=note,
        on_thought=thought,
        observers=[view.observe] if view is not None else [],
    )


def _keep(trace: Run, loaded: LoadedRoster, state: Path, *, log: bool) -> None:
    """Record (unless ``--no-log``) and export a run that got as far as calling a model."""
    if trace.turns or trace.extra_calls:
        if log:
            record(trace, loaded, state)
        export(trace, loaded)


def execute_run(
    *,
    prompt: str,
    piped: str | None,
    roster_path: Path | None,
    backend: str | None,
    task: str | None,
    json_out: bool,
    no_delegate: bool,
    budget: float | None,
    max_subtasks: int | None,
    quiet: bool,
    verbose: bool,
    state: Path,
    progress: bool | None = None,
    no_log: bool = False,
    review: bool | None = None,
    stop: SigtermStop | None = None,
) -> int:
    """Run one request end to end, record it, and return the exit code.

    The run counts as delivered only once the whole answer (or the ``--json`` object) is
    written: a reader that leaves before that (``| head -c 20``) interrupts it, and so
    does a SIGTERM handled by ``stop``. Either way the run is recorded as interrupted.

    Raises:
        Terminated: ``stop`` received SIGTERM (after the run was recorded).
    """
    stop = stop or SigtermStop()
    loaded = load(roster_path, os.environ, Path.cwd())
    preload_transport(loaded, backend, task)
    request = Request(
        prompt=prompt,
        attachments=(Attachment("stdin", piped),) if piped else (),
        backend=backend,
        task=task,
        no_delegate=no_delegate,
        budget_usd=budget,
        max_subtasks=max_subtasks,
        review=review,
    )
    sink = StdoutSink()
    trace = Run(prompt=prompt)
    view = live_view(trace, quiet=quiet, progress=progress)
    hooks = _hooks(view, sink, json_out=json_out, quiet=quiet, verbose=verbose)
    log = not logging_disabled(no_log, os.environ)

    async def main() -> None:
        with stop.cancelling():
            await run(request, loaded.roster, env=os.environ, state_dir=state,
                      roster_dir=loaded.path.parent, hooks=hooks, trace=trace)  # fmt: skip

    try:
        if view is not None:
            view.start()
        try:
            stop.defer()  # from here on the run may pay for calls: it must be recorded
            anyio.run(main)
        finally:
            if view is not None:
                view.stop()
            mark_unpriced(trace, loaded)  # before anything shows a cost
        if stop.received:
            raise Terminated()
        trace.finish("ok")
        sink.finish()
        if trace.degraded:
            trace.warn(render.degraded_warning(trace))
        if json_out:
            sink.write(json.dumps(render.run_json(trace), ensure_ascii=False) + "\n")
    except (TanglebrainError, KeyboardInterrupt, Terminated) as exc:
        status: Literal["budget", "interrupted", "error"] = (
            "budget" if isinstance(exc, BudgetExceeded)
            else "interrupted" if isinstance(exc, KeyboardInterrupt | OutputClosed | Terminated)
            else "error"
        )  # fmt: skip
        trace.error = str(exc) or type(exc).__name__
        trace.finish(status)
        _keep(trace, loaded, state, log=log)
        if not quiet and status != "interrupted" and (trace.turns or trace.extra_calls):
            render.note(render.summary_line(trace, recorded=log), prefix="summary")
        raise
    _keep(trace, loaded, state, log=log)
    if stop.received:  # after the answer was out: it stands, and the exit code says why
        raise Terminated()
    if not quiet:
        for line in render.review_lines(trace.review) if trace.review else []:
            render.note(line, prefix="review")
        for warning in trace.warnings:
            render.note(warning, prefix="warning")
        render.note(render.summary_line(trace, recorded=log), prefix="done")
    return 0
