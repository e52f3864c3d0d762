"""The command-line edge: argv in, exit code out.

``main`` keeps start-up cheap (``--version`` imports nothing else), makes ``run`` the
default command, and turns every expected failure into one line on stderr and the
exit code of DESIGN.md §4. Nothing below the CLI prints to the terminal.
"""

from __future__ import annotations

import os
import sys

from tanglebrain._version import __version__

COMMANDS = frozenset(
    {"run", "demo", "sim", "compress", "init", "backends", "runs", "show", "stats", "serve", "mcp"}
)
# Options of the top-level callback, and whether each takes a value.
GLOBAL_OPTIONS = {
    "--roster": True,
    "--debug": False,
    "--version": False,
    "--help": False,
    "--install-completion": False,
    "--show-completion": False,
}


def with_default_command(argv: list[str]) -> list[str]:
    """Insert ``run`` where the user gave a prompt or run options but no command."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            i += 2 if GLOBAL_OPTIONS[name] and "=" not in arg else 1
            continue
        break
    if i >= len(argv):
        # Nothing but global options: read the prompt from a pipe, else show help.
        if not sys.stdin.isatty() and not {"--help", "--version"} & set(argv):
            return [*argv, "run"]
        return argv
    if argv[i] in COMMANDS:
        return argv
    return [*argv[:i], "run", *argv[i:]]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # the fast path: no typer, no pydantic, no litellm
        sys.stdout.write(f"tanglebrain {__version__}\n")
        return
    from tanglebrain.cli.app import invoke

    debug = "--debug" in args or os.environ.get("TANGLEBRAIN_DEBUG") == "1"
    code = invoke(with_default_command(args), debug=debug)
    import gc

    gc.freeze()  # tearing down litellm's object graph would add ~1.5 s after the answer
    raise SystemExit(code)
