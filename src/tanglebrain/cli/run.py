"""``tanglebrain run`` (the default command): one request, one answer on stdout.

The typer command only collects the options; ``cli.execute.run_options`` does the rest,
the same way for a command line that ``cli.fastrun`` parsed without typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Re-exported: where these have always been imported from.
from tanglebrain.cli.streams import (
    SIGTERM_EXIT,
    SigtermStop,
    StdoutSink,
    read_input,
    state_dir,
)

__all__ = ["SIGTERM_EXIT", "SigtermStop", "StdoutSink", "read_input", "register", "state_dir"]


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""
    app.command(
        "run",
        help='Answer PROMPT (the default command: `tanglebrain "PROMPT"`). Piped stdin '
        "becomes the attachment `stdin`; a PROMPT of `-` (or none) reads the prompt itself "
        "from stdin. The answer goes to stdout, everything else to stderr.",
    )(run_command)


# Over the 60-line limit on purpose: its signature is the CLI's option table (typer reads it).
def run_command(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="The request; `-` reads stdin.")] = None,
    roster: Annotated[Path | None, typer.Option("--roster", help="Roster file.")] = None,
    backend: Annotated[
        str | None, typer.Option("-b", "--backend", help="Pin this backend id.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("-t", "--task", help="Task-fit hint: a good_at tag.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the answer.")
    ] = False,
    no_delegate: Annotated[
        bool, typer.Option("--no-delegate", help="The orchestrator alone, no tools (baseline).")
    ] = False,
    ab: Annotated[
        bool,
        typer.Option(
            "--ab",
            help="Also run the request solo (--no-delegate) at the same time and record both "
            "as a pair; prints the delegated answer and the measured ratios (see `stats`).",
        ),
    ] = False,
    no_gate: Annotated[
        bool,
        typer.Option(
            "--no-gate", help="Orchestrate even a request the roster's gate finds trivial."
        ),
    ] = False,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Hard cap for this run, USD.")
    ] = None,
    max_subtasks: Annotated[
        int | None, typer.Option("--max-subtasks", help="Sub-tasks allowed in this run.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Nothing on stderr but errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show the orchestrator's notes on stderr.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live tree of the sub-tasks on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    no_log: Annotated[
        bool,
        typer.Option(
            "--no-log", help="Do not record this run in the ledger (also TANGLEBRAIN_NO_LOG=1)."
        ),
    ] = False,
    review: Annotated[
        bool | None,
        typer.Option(
            "--review/--no-review",
            help="Have backends good at 'review' critique the draft before the final answer "
            "(default: the roster's settings.review).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one request."""
    with SigtermStop() as stop:  # first: importing the run's modules takes a while
        from tanglebrain.cli.execute import run_options
        from tanglebrain.cli.fastrun import RunOptions

        options = RunOptions(
            prompt=prompt, roster=roster or (ctx.obj or {}).get("roster"), backend=backend,
            task=task, json_out=json_out, no_delegate=no_delegate, ab=ab, no_gate=no_gate,
            budget=budget, max_subtasks=max_subtasks, quiet=quiet, verbose=verbose,
            progress=progress, no_log=no_log, review=review,
        )  # fmt: skip
        code = run_options(options, stop)
    raise typer.Exit(code)
