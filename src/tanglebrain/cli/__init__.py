"""The command-line edge: argv in, exit code out.

``main`` keeps start-up cheap (``--version`` imports nothing else), makes ``run`` the
default command, and turns every expected failure into one line on stderr and the
exit code of docs/contracts.md. Nothing below the CLI prints to the terminal.
"""

from __future__ import annotations

import os
import sys

from tanglebrain._version import __version__

# typing costs the hook handlers ~13 ms of start-up; type checkers read this as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from tanglebrain.cli import fastrun

# The module that registers each command, in the order ``--help`` lists them.
MODULES = {
    "run": "run", "demo": "commands", "sim": "commands", "compress": "commands",
    "init": "backends", "backends": "backends", "runs": "history", "show": "history",
    "stats": "history", "routes": "routes", "serve": "front", "mcp": "front",
    "hooks": "hooks", "hook": "hooks", "wrap": "hooks", "raw": "hooks", "gain": "hooks",
}  # fmt: skip
COMMANDS = frozenset(MODULES)
# Options of the top-level callback, and whether each takes a value.
GLOBAL_OPTIONS = {
    "--roster": True,
    "--debug": False,
    "--version": False,
    "--help": False,
    "--install-completion": False,
    "--show-completion": False,
}


# Options of ``run`` that take a value (the value may look like a command word).
RUN_VALUE_OPTIONS = frozenset(
    {"--roster", "-b", "--backend", "-t", "--task", "--budget", "--max-subtasks"}
)


def _takes_value(arg: str) -> bool:
    """Whether the option ``arg`` consumes the next argument as its value."""
    if arg.startswith("--"):
        return "=" not in arg and arg in RUN_VALUE_OPTIONS
    # A cluster of short flags (``-qv``, ``-qb ID``): the first one that takes a value
    # takes the rest of the cluster, or the next argument when nothing is left.
    for k, letter in enumerate(arg[1:], start=1):
        if f"-{letter}" in RUN_VALUE_OPTIONS:
            return k == len(arg) - 1
    return False


def with_default_command(argv: list[str]) -> list[str]:
    """Insert ``run`` where the user gave a prompt or run options but no command.

    Options before a command word belong to that command (``--json stats`` is
    ``stats --json``): a command word is never sent to a model as a prompt. After
    ``--`` every word is the prompt.
    """
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
    j = i
    while j < len(argv) and argv[j].startswith("-") and argv[j] not in ("-", "--"):
        j += 2 if _takes_value(argv[j]) else 1
    if j < len(argv) and argv[j] in COMMANDS:
        return [*argv[:i], argv[j], *argv[i:j], *argv[j + 1 :]]
    return [*argv[:i], "run", *argv[i:]]


def run_argv(args: list[str]) -> int:
    """Run the command line ``args`` (without the program name) and return the exit code."""
    if args == ["--version"]:  # the fast path: no typer, no pydantic, no litellm
        sys.stdout.write(f"tanglebrain {__version__}\n")
        return 0
    # Agent hooks run on every tool call: they skip typer, rich and pydantic altogether.
    if args[:1] == ["hook"] and "--help" not in args:
        from tanglebrain.hooks._entry import hook_main

        return hook_main(args[1:])
    if args[:1] == ["wrap"] and "--help" not in args[: [*args, "--"].index("--")]:
        from tanglebrain.hooks._entry import wrap_main

        return wrap_main(args[1:])
    argv = with_default_command(args)
    debug = "--debug" in args or os.environ.get("TANGLEBRAIN_DEBUG") == "1"
    if "_TANGLEBRAIN_COMPLETE" not in os.environ:  # shell completion is typer's
        from tanglebrain.cli import fastrun

        parsed = fastrun.parse(argv)
        if parsed is not None:
            return _run_fast(parsed[0], argv, debug=debug or parsed[1])
        demo = fastrun.parse_demo(argv)
        if demo is not None:
            from tanglebrain.cli.demo import run_demo
            from tanglebrain.cli.edge import guarded

            prompt, json_out, review = demo
            return guarded(
                lambda: run_demo(prompt, json_out=json_out, review=review), argv, debug=debug
            )
    from tanglebrain.cli.app import invoke

    return invoke(argv, debug=debug)


def _run_fast(options: fastrun.RunOptions, argv: list[str], *, debug: bool) -> int:
    """``run`` from a command line the fast path parsed: no typer on the way."""
    from tanglebrain.cli.edge import guarded
    from tanglebrain.cli.streams import SigtermStop

    def go() -> int:
        with SigtermStop() as stop:  # first: importing the run's modules takes a while
            from tanglebrain.cli.execute import run_options

            return run_options(options, stop)

    return guarded(go, argv, debug=debug)


def _without_pydantic_plugins() -> None:
    """Let pydantic skip its plugin search in this process (the CLI's own, not a library's).

    On the first model it builds, pydantic imports ``importlib.metadata`` and scans every
    installed distribution for plugins: ~40-50 ms of a one-shot run, for plugins that have
    nothing to do with validating a roster. ``PYDANTIC_DISABLE_PLUGINS`` would skip the
    scan but not the import; a stand-in loader that finds none skips both. Only the
    console script does this, so a program that imports tanglebrain keeps its plugins.
    """
    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    import types

    loader = types.ModuleType(name)
    loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules[name] = loader


def _closed_streams() -> int | None:
    """Stand-ins for the standard streams the caller closed (``<&-``); an exit code if none fits.

    Python leaves a stream it found closed as None. A closed stdin reads as empty, a
    closed stderr swallows its lines; both get /dev/null on their own descriptor, or the
    next file opened would take it (and a stray print would land in it). A closed stdout
    is refused: nothing could be printed, the answer included.
    """
    for fd, name in ((0, "stdin"), (2, "stderr")):
        if getattr(sys, name) is None:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
    if sys.stdout is None:
        sys.stderr.write("tanglebrain: error: stdout is closed, so nothing can be printed "
                         "(redirect it instead, e.g. >/dev/null)\n")  # fmt: skip
        return 2
    return None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if (closed := _closed_streams()) is not None:
        raise SystemExit(closed)
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] not in (["hook"], ["wrap"]) and args != ["--version"]:  # no pydantic there
        _without_pydantic_plugins()
    code = run_argv(args)
    import gc

    gc.freeze()  # tearing down litellm's object graph would add ~1.5 s after the answer
    raise SystemExit(code)
