"""The edge of every command line: expected failures become one line and an exit code.

Typer-free, so that the fast path of ``run`` (``cli.fastrun``) and the typer app
(``cli.app.invoke``) map failures the same way and no traceback ever reaches a user.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from tanglebrain.cli.streams import FULL, SIGTERM_EXIT, drop_stdout
from tanglebrain.errors import (
    ConfigError,
    MissingKeyError,
    OutputFailed,
    TanglebrainError,
    Terminated,
)


def error_line(message: str) -> None:
    """Print an error to stderr, one ``tanglebrain: error: …`` line per message line."""
    for line in message.splitlines() or [""]:
        sys.stderr.write(f"tanglebrain: error: {line}\n" if line[:2] != "  " else line + "\n")
    sys.stderr.flush()


def stdout_abandoned() -> bool:
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
        text = path.read_text(encoding="utf-8-sig")
        ids = [b.id for b in parse(text, path).backends]
    except (ConfigError, OSError, UnicodeDecodeError):
        return exc
    if exc.backend not in ids:
        return exc
    return exc.located(path, _find_line(text, ("backend", ids.index(exc.backend), "api_key_env")))


def guarded(fn: Callable[[], int], argv: list[str], *, debug: bool) -> int:
    """``fn()``'s exit code, with every expected failure turned into one line and a code."""
    try:
        return fn()
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
    except BrokenPipeError:
        return 0  # the reader went away (``| head``): not our failure
    except OSError as exc:  # a listing or digest printed to a full disk (runs stream theirs)
        if exc.errno not in FULL:
            raise
        if debug:
            traceback.print_exc()
        drop_stdout()
        error_line(str(OutputFailed(exc.strerror or str(exc))))
        return 1
    except SystemExit as exc:
        if exc.code == 1 and stdout_abandoned():
            return 0  # the same, caught by click or rich before us
        raise
