"""The body of ``run``: build the request, run it, print the answer and the summary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

from tanglebrain import render
from tanglebrain.cli.run import StdoutSink
from tanglebrain.errors import BudgetExceeded, NoAnswerError
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import load
from tanglebrain.runtime import Attachment
from tanglebrain.trace import Run


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
) -> int:
    """Run one request end to end and return the exit code."""
    loaded = load(roster_path, os.environ, Path.cwd())
    request = Request(
        prompt=prompt,
        attachments=(Attachment("stdin", piped),) if piped else (),
        backend=backend,
        task=task,
        no_delegate=no_delegate,
        budget_usd=budget,
        max_subtasks=max_subtasks,
    )
    sink = StdoutSink()
    trace = Run(prompt=prompt)

    def note(message: str) -> None:
        if not quiet:
            render.note(message)

    def thought(message: str) -> None:
        if verbose and not quiet:
            render.note(message, prefix="orchestrator")

    hooks = Hooks(on_text=None if json_out else sink.write, on_note=note, on_thought=thought)

    async def main() -> Run:
        return await run(
            request,
            loaded.roster,
            env=os.environ,
            state_dir=state,
            roster_dir=loaded.path.parent,
            hooks=hooks,
            trace=trace,
        )

    try:
        anyio.run(main)
    except BudgetExceeded:
        trace.finish("budget")
        raise
    except NoAnswerError:
        trace.finish("error")
        raise
    except KeyboardInterrupt:
        trace.finish("interrupted")
        raise
    trace.finish("ok")
    sink.finish()
    if trace.degraded:
        trace.warn(render.degraded_warning(trace))
    if json_out:
        sys.stdout.write(json.dumps(render.run_json(trace), ensure_ascii=False) + "\n")
    if not quiet:
        for warning in trace.warnings:
            render.note(warning, prefix="warning")
        render.note(render.summary_line(trace), prefix="done")
    return 0

