"""The typer application: global options, command registration, error mapping.

A command line builds only the commands it names: ``tanglebrain "…"`` imports and
registers ``run`` alone (building all 18 commands' options costs ~0.1 s of a one-shot
run); a line without a command word (``--help``) builds them all.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import Command, Context
from typer._click.exceptions import ClickException
from typer.core import TyperOption

from tanglebrain._version import __version__
from tanglebrain.cli import MODULES
from tanglebrain.cli.edge import error_line, guarded

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
        # Plain click help: typer's rich help imports rich's markdown stack (~175 ms), more
        # than the rest of `--help` together.
        rich_markup_mode=None,
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


def _command(argv: list[str]) -> str:
    from tanglebrain.cli import COMMANDS

    found = next((a for a in argv if a in COMMANDS), None)
    return f"{found} " if found else ""


def _bare_flags(command: Command) -> None:
    """Show flags in ``--help`` without a value type (typer prints ``<bool>``): they take none."""
    # The help option is made on first use and cached; make it now so that it is covered.
    command.get_help_option(Context(command, help_option_names=HELP_OPTIONS))
    for param in [*command.params, getattr(command, "_help_option", None)]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _bare_flags(sub)


def invoke(argv: list[str], *, debug: bool) -> int:
    """Run the app on ``argv`` and return the exit code; never lets a traceback out."""
    command = _click_command(_modules_for(argv))

    def main() -> int:
        try:
            result = command.main(args=argv, prog_name="tanglebrain", standalone_mode=False)
        except typer.Abort:
            raise KeyboardInterrupt() from None
        except typer.Exit as exc:
            return int(exc.exit_code or 0)
        except ClickException as exc:
            # One line, like every other error, instead of click's usage block.
            error_line(f"{exc.format_message()} (see `tanglebrain {_command(argv)}--help`)")
            return 2
        code = result if isinstance(result, int) else 0
        if code == 130:  # typer turns Ctrl-C into exit code 130 before we see it
            sys.stderr.write("\ntanglebrain: interrupted\n")
        return code

    return guarded(main, argv, debug=debug)
