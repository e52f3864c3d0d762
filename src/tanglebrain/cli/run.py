"""``tanglebrain run`` (the default command): one request, one answer on stdout."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tanglebrain.errors import OutputClosed, UsageError


class StdoutSink:
    """Writes the answer as it streams; stdout carries the answer and nothing else."""

    def __init__(self) -> None:
        self.last = ""

    def write(self, text: str) -> None:
        """Write one delta and flush, so pipes see it at once.

        Raises:
            OutputClosed: the reader closed the pipe (``| head``); the run should stop.
        """
        if text:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except BrokenPipeError:
                # Point stdout at /dev/null so the interpreter's final flush stays quiet.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise OutputClosed() from None
            self.last = text

    def finish(self) -> None:
        """End the answer with exactly one newline."""
        if self.last and not self.last.endswith("\n"):
            self.write("\n")


def read_input(prompt: str | None) -> tuple[str, str | None]:
    """Return (prompt, piped stdin or None): ``-`` or no prompt reads the prompt from stdin."""
    piped = None
    if not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        piped = data.decode("utf-8", errors="replace") if data else None
    if prompt is None or prompt == "-":
        if not piped or not piped.strip():
            raise UsageError("no prompt given", fix='run tanglebrain "PROMPT" or pipe one in')
        return piped.strip(), None
    if not prompt.strip():
        raise UsageError("the prompt is empty", fix='run tanglebrain "PROMPT"')
    return prompt, piped


def state_dir(env: dict[str, str] | os._Environ[str]) -> Path:
    """``$TANGLEBRAIN_HOME``, else ``$XDG_DATA_HOME/tanglebrain`` (``~/.local/share``)."""
    home = env.get("TANGLEBRAIN_HOME")
    if home:
        return Path(home)
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tanglebrain"


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""
    app.command(
        "run",
        help='Answer PROMPT (the default command: `tanglebrain "PROMPT"`). Piped stdin '
        "becomes the attachment `stdin`; a PROMPT of `-` (or none) reads the prompt itself "
        "from stdin. The answer goes to stdout, everything else to stderr.",
    )(run_command)


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
    from tanglebrain.cli.execute import execute_run

    if budget is not None and (not math.isfinite(budget) or budget <= 0):
        raise UsageError("--budget must be a positive number of USD", fix="e.g. --budget 0.50")
    if max_subtasks is not None and max_subtasks < 1:
        raise UsageError("--max-subtasks must be at least 1")
    text, piped = read_input(prompt)
    code = execute_run(
        prompt=text,
        piped=piped,
        roster_path=roster or (ctx.obj or {}).get("roster"),
        backend=backend,
        task=task,
        json_out=json_out,
        no_delegate=no_delegate,
        budget=budget,
        max_subtasks=max_subtasks,
        quiet=quiet,
        verbose=verbose,
        state=state_dir(os.environ),
        progress=progress,
        no_log=no_log,
        review=review,
    )
    raise typer.Exit(code)
