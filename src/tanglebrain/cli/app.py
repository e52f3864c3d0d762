"""The typer application: global options, command registration, error mapping."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException

from tanglebrain._version import __version__
from tanglebrain.errors import TanglebrainError

app = typer.Typer(
    name="tanglebrain",
    help="Send a request to an orchestrator model that delegates sub-tasks to cheaper "
    "specialists in parallel, and get one answer.\n\n"
    'Usage: tanglebrain "PROMPT" (the default command is `run`; see `tanglebrain run --help`).',
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["--help", "-h"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    roster: Annotated[
        Path | None,
        typer.Option(
            "--roster",
            help="Roster file (else $TANGLEBRAIN_ROSTER, ./roster.toml, "
            "$XDG_CONFIG_HOME/tanglebrain/roster.toml, the packaged default).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"tanglebrain {__version__}")
        raise typer.Exit(0)
    ctx.obj = {"roster": roster, "debug": debug}


def _register() -> None:
    from tanglebrain.cli import backends, commands, front, history, run

    run.register(app)
    commands.register(app)
    backends.register(app)
    history.register(app)
    front.register(app)


def error_line(message: str) -> None:
    """Print an error to stderr, one ``tanglebrain: error: …`` line per message line."""
    for line in message.splitlines() or [""]:
        sys.stderr.write(f"tanglebrain: error: {line}\n" if line[:2] != "  " else line + "\n")
    sys.stderr.flush()


def _command(argv: list[str]) -> str:
    from tanglebrain.cli import COMMANDS

    found = next((a for a in argv if a in COMMANDS), None)
    return f"{found} " if found else ""


def _stdout_abandoned() -> bool:
    """Whether click or rich has just given up on a closed stdout.

    Both catch EPIPE themselves and exit 1: click after swapping ``sys.stdout`` for a
    wrapper, rich after pointing fd 1 at /dev/null.
    """
    if sys.stdout is not sys.__stdout__:
        return True
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def invoke(argv: list[str], *, debug: bool) -> int:
    """Run the app on ``argv`` and return the exit code; never lets a traceback out."""
    _register()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="tanglebrain", standalone_mode=False)
    except TanglebrainError as exc:
        if debug:
            traceback.print_exc()
        if exc.exit_code != 0:  # OutputClosed: the reader left, nothing to say
            error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\ntanglebrain: interrupted\n")
        return 130
    except typer.Abort:
        sys.stderr.write("\ntanglebrain: interrupted\n")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except ClickException as exc:
        # One line, like every other error, instead of click's usage block.
        error_line(f"{exc.format_message()} (see `tanglebrain {_command(argv)}--help`)")
        return 2
    except BrokenPipeError:
        return 0  # the reader went away (``| head``): not our failure
    except SystemExit as exc:
        if exc.code == 1 and _stdout_abandoned():
            return 0  # the same, caught by click or rich before us
        raise
    code = result if isinstance(result, int) else 0
    if code == 130:  # typer turns Ctrl-C into exit code 130 before we see it
        sys.stderr.write("\ntanglebrain: interrupted\n")
    return code
