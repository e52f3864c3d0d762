"""The typer application: global options, command registration, error mapping.

A command line builds only the commands it names: ``tanglebrain "…"`` imports and
registers ``run`` alone (building all 18 commands' options costs ~0.1 s of a one-shot
run); a line without a command word (``--help``) builds them all.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import Command, Context
from typer._click.exceptions import ClickException
from typer.core import TyperOption

from tanglebrain._version import __version__
from tanglebrain.cli import MODULES
from tanglebrain.cli.run import SIGTERM_EXIT
from tanglebrain.errors import ConfigError, MissingKeyError, TanglebrainError, Terminated

HELP_OPTIONS = ["--help", "-h"]


def _root(
    ctx: typer.Context,
    roster: Annotated[
        Path | None,
        typer.Option(
            "--roster",
            help="Roster file (else $TANGLEBRAIN_ROSTER, ./roster.toml, "
            "tanglebrain/roster.toml in $XDG_CONFIG_HOME, the packaged default).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"tanglebrain {__version__}")
        raise typer.Exit(0)
    ctx.obj = {"roster": roster, "debug": debug}


def make_app(modules: tuple[str, ...] = tuple(dict.fromkeys(MODULES.values()))) -> typer.Typer:
    """The typer app with the commands of ``modules`` (all of them by default)."""
    import importlib

    app = typer.Typer(
        name="tanglebrain",
        help="Send a request to an orchestrator model that delegates sub-tasks to cheaper "
        "specialists in parallel, and get one answer.\n\n"
        'Usage: tanglebrain "PROMPT" (the default command is `run`; see `tanglebrain run --help`).',
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": HELP_OPTIONS},
    )
    app.callback()(_root)
    for name in modules:
        importlib.import_module(f"tanglebrain.cli.{name}").register(app)
    return app


@functools.cache
def _click_command(modules: tuple[str, ...]) -> Command:
    """The click command of the app with ``modules``, built once per process."""
    command = typer.main.get_command(make_app(modules))
    _bare_flags(command)
    return command


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules ``argv`` needs: its command's, or all without a command word."""
    from tanglebrain.cli import GLOBAL_OPTIONS

    if "_TANGLEBRAIN_COMPLETE" in os.environ:  # shell completion: the words are in COMP_WORDS
        return tuple(dict.fromkeys(MODULES.values()))
    i = 0
    while i < len(argv) and argv[i].split("=", 1)[0] in GLOBAL_OPTIONS:
        takes = GLOBAL_OPTIONS[argv[i].split("=", 1)[0]] and "=" not in argv[i]
        i += 2 if takes else 1
    if i < len(argv) and argv[i] in MODULES:
        return (MODULES[argv[i]],)
    return tuple(dict.fromkeys(MODULES.values()))


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


def _bare_flags(command: Command) -> None:
    """Show flags in ``--help`` without a value type (typer prints ``<bool>``): they take none."""
    # The help option is made on first use and cached; make it now so that it is covered.
    command.get_help_option(Context(command, help_option_names=HELP_OPTIONS))
    for param in [*command.params, getattr(command, "_help_option", None)]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _bare_flags(sub)


def _roster_option(argv: list[str]) -> Path | None:
    """The ``--roster`` path given anywhere on the command line (before ``--``)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--roster="):
            return Path(arg.split("=", 1)[1])
        if arg == "--roster" and i + 1 < len(argv):
            return Path(argv[i + 1])
    return None


def _located(exc: MissingKeyError, argv: list[str]) -> MissingKeyError:
    """``exc`` naming the roster file and the line of the backend's ``api_key_env``.

    The key is looked up long after the roster was read, where its file is not known;
    this reads the roster the command used again, to point at the line to fix.
    """
    from tanglebrain.roster import _find_line, discover, parse

    if exc.file is not None or not exc.backend:
        return exc
    try:
        path, _ = discover(_roster_option(argv), os.environ, Path.cwd())
        text = path.read_text(encoding="utf-8")
        ids = [b.id for b in parse(text, path).backends]
    except (ConfigError, OSError, UnicodeDecodeError):
        return exc
    if exc.backend not in ids:
        return exc
    return exc.located(path, _find_line(text, ("backend", ids.index(exc.backend), "api_key_env")))


def invoke(argv: list[str], *, debug: bool) -> int:
    """Run the app on ``argv`` and return the exit code; never lets a traceback out."""
    command = _click_command(_modules_for(argv))
    try:
        result = command.main(args=argv, prog_name="tanglebrain", standalone_mode=False)
    except TanglebrainError as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, MissingKeyError):
            exc = _located(exc, argv)
        if exc.exit_code != 0:  # OutputClosed: the reader left, nothing to say
            error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\ntanglebrain: interrupted\n")
        return 130
    except Terminated:  # SIGTERM during ``run``; the run was recorded as interrupted
        sys.stderr.write("tanglebrain: terminated (SIGTERM)\n")
        return SIGTERM_EXIT
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
