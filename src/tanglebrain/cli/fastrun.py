"""The fast path of ``run`` and ``demo``: a plain command line parsed without typer.

Building the typer app and coercing ``run``'s options costs a one-shot run ~100 ms, a
fifth of its wall time, for what is almost always a prompt and a few flags. This parser
accepts exactly those lines: ``run``'s own options (long names, and single short
ones), one prompt, ``--`` and the root options ``--roster`` and ``--debug`` before the
command. Anything else (``--help``, ``--opt=value``, clustered short flags, a value that
is not a plain number, a second prompt, an unknown option) returns None, and typer
parses the line with its own checks and messages. A test holds the two parsers to the
same results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FLAGS: dict[str, tuple[str, bool]] = {
    "--json": ("json_out", True),
    "--no-delegate": ("no_delegate", True),
    "--ab": ("ab", True),
    "--no-gate": ("no_gate", True),
    "-q": ("quiet", True),
    "--quiet": ("quiet", True),
    "-v": ("verbose", True),
    "--verbose": ("verbose", True),
    "--progress": ("progress", True),
    "--no-progress": ("progress", False),
    "--no-log": ("no_log", True),
    "--review": ("review", True),
    "--no-review": ("review", False),
}
VALUES: dict[str, str] = {
    "--roster": "roster",
    "-b": "backend",
    "--backend": "backend",
    "-t": "task",
    "--task": "task",
    "--budget": "budget",
    "--max-subtasks": "max_subtasks",
}
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class RunOptions:
    """The options of ``run``, however the command line was parsed (typer or this)."""

    prompt: str | None = None
    roster: Path | None = None
    backend: str | None = None
    task: str | None = None
    json_out: bool = False
    no_delegate: bool = False
    ab: bool = False
    no_gate: bool = False
    budget: float | None = None
    max_subtasks: int | None = None
    quiet: bool = False
    verbose: bool = False
    progress: bool | None = None
    no_log: bool = False
    review: bool | None = None


def parse(argv: list[str]) -> tuple[RunOptions, bool] | None:
    """The options of ``argv`` and whether ``--debug`` was given; None: typer parses it.

    ``argv`` is a command line with ``run`` in it (see ``with_default_command``).
    """
    found: dict[str, object] = {}
    root_roster: Path | None = None
    debug = False
    i = 0
    while i < len(argv) and argv[i] != "run":  # the root options, before the command
        if argv[i] == "--debug":
            debug = True
            i += 1
        elif argv[i] == "--roster" and i + 1 < len(argv):
            root_roster = Path(argv[i + 1])
            i += 2
        else:
            return None
    if i == len(argv):
        return None
    positional: list[str] = []
    rest = iter(argv[i + 1 :])
    for arg in rest:
        if arg == "--":
            positional.extend(rest)
        elif arg in FLAGS:
            name, flag = FLAGS[arg]
            found[name] = flag
        elif arg in VALUES:
            value = _value(VALUES[arg], next(rest, None))
            if value is None:
                return None
            found[VALUES[arg]] = value
        elif arg.startswith("-") and arg != "-":
            return None  # --help, --opt=value, -qv, an unknown option: typer's to judge
        else:
            positional.append(arg)
    if len(positional) > 1:
        return None
    found["prompt"] = positional[0] if positional else None
    found.setdefault("roster", root_roster)
    return RunOptions(**found), debug  # type: ignore[arg-type]


def _value(name: str, text: str | None) -> object | None:
    """An option's value; None when it is missing or one typer should judge."""
    if text is None:
        return None
    if name == "budget":
        return float(text) if _FLOAT.fullmatch(text) else None
    if name == "max_subtasks":
        return int(text) if _INT.fullmatch(text) else None
    return Path(text) if name == "roster" else text


def parse_demo(argv: list[str]) -> tuple[str | None, bool, bool] | None:
    """``demo``'s (prompt, --json, --review) from a plain command line; None: typer's.

    Only ``demo`` first (no root options), its two flags, one prompt and ``--``.
    """
    if argv[:1] != ["demo"]:
        return None
    flags = {"--json": False, "--review": False}
    positional: list[str] = []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--":
            positional.extend(rest)
        elif arg in flags:
            flags[arg] = True
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            positional.append(arg)
    if len(positional) > 1:
        return None
    return (positional[0] if positional else None), flags["--json"], flags["--review"]
