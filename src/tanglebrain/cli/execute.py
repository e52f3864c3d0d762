"""The body of ``run``: build the request, run it, print the answer, record the run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

import anyio

from tanglebrain import render
from tanglebrain.cli.run import StdoutSink
from tanglebrain.errors import BudgetExceeded, OutputClosed, TanglebrainError
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import LoadedRoster, load
from tanglebrain.runtime import Attachment
from tanglebrain.trace import Run

_TRUE = frozenset({"1", "true", "yes", "on"})


def logging_disabled(no_log: bool, env: os._Environ[str] | dict[str, str]) -> bool:
    """Whether this run must not be recorded (``--no-log`` or ``TANGLEBRAIN_NO_LOG=1``)."""
    return no_log or env.get("TANGLEBRAIN_NO_LOG", "").strip().lower() in _TRUE


def live_view(trace: Run, *, quiet: bool, progress: bool | None) -> render.LiveView | None:
    """A live view on stderr when wanted: ``--progress``, else when stderr is a terminal."""
    if quiet or progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from rich.console import Console

    return render.LiveView(trace, Console(stderr=True, force_terminal=True if progress else None))


def record(trace: Run, loaded: LoadedRoster, state: Path) -> None:
    """Store the run in the ledger; never raises (a failure is one warning line)."""
    from tanglebrain import llm
    from tanglebrain.ledger import Ledger, default_path

    roster = loaded.roster
    orchestrator = roster.get(trace.orchestrator) if trace.orchestrator else None
    secrets = [
        value for b in roster.backends if b.api_key_env and (value := os.environ.get(b.api_key_env))
    ]
    try:
        price = llm.price_per_token(orchestrator) if orchestrator else None
        Ledger(default_path(state)).record(trace, orchestrator_price=price, secrets=secrets)
    except TanglebrainError as exc:
        render.note(f"run {trace.id} not recorded: {exc}", prefix="warning")
    except Exception as exc:  # a ledger bug must not cost the user an answer
        render.note(f"run {trace.id} not recorded: {type(exc).__name__}: {exc}", "warning")


def export(trace: Run) -> None:
    """Export the run over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; never raises."""
    from tanglebrain import otel

    problem = otel.export_if_configured(trace, os.environ)
    if problem:
        render.note(problem, prefix="warning")


def _hooks(
    view: render.LiveView | None, sink: StdoutSink, *, json_out: bool, quiet: bool, verbose: bool
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
        export(trace)


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
) -> int:
    """Run one request end to end, record it, and return the exit code."""
    loaded = load(roster_path, os.environ, Path.cwd())
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

    async def main() -> Run:
        return await run(request, loaded.roster, env=os.environ, state_dir=state,
                         roster_dir=loaded.path.parent, hooks=hooks, trace=trace)  # fmt: skip

    try:
        if view is not None:
            view.start()
        try:
            anyio.run(main)
        finally:
            if view is not None:
                view.stop()
    except (TanglebrainError, KeyboardInterrupt) as exc:
        status: Literal["budget", "interrupted", "error"] = (
            "budget" if isinstance(exc, BudgetExceeded)
            else "interrupted" if isinstance(exc, KeyboardInterrupt | OutputClosed) else "error"
        )  # fmt: skip
        trace.error = str(exc) or type(exc).__name__
        trace.finish(status)
        _keep(trace, loaded, state, log=log)
        if not quiet and status != "interrupted" and (trace.turns or trace.extra_calls):
            render.note(render.summary_line(trace, recorded=log), prefix="summary")
        raise
    trace.finish("ok")
    sink.finish()
    if trace.degraded:
        trace.warn(render.degraded_warning(trace))
    if json_out:
        sys.stdout.write(json.dumps(render.run_json(trace), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    _keep(trace, loaded, state, log=log)
    if not quiet:
        for line in render.review_lines(trace.review) if trace.review else []:
            render.note(line, prefix="review")
        for warning in trace.warnings:
            render.note(warning, prefix="warning")
        render.note(render.summary_line(trace, recorded=log), prefix="done")
    return 0
