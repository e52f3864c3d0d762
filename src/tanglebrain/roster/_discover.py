"""Which roster file is used, and which one an edit may change.

A run takes the first of: ``--roster``, ``$TANGLEBRAIN_ROSTER``, ``./roster.toml``, the
XDG config file, the packaged default. The packaged default is never edited in place.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tanglebrain.errors import ConfigError
from tanglebrain.roster._load import load_file
from tanglebrain.roster._schema import Roster

Source = Literal["flag", "env", "cwd", "xdg", "packaged"]


@dataclass(frozen=True)
class LoadedRoster:
    """A roster plus where it came from."""

    roster: Roster
    path: Path
    source: Source


def packaged_path() -> Path:
    """The default roster shipped inside the package."""
    return Path(__file__).parent.parent / "roster.toml"  # tanglebrain/roster.toml


def xdg_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/tanglebrain/roster.toml`` (default ``~/.config``)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tanglebrain" / "roster.toml"


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a directory", …), else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # nothing there (or unreadable: opening it says why)
    return _what(mode)


def _what(mode: int) -> str | None:
    """What a file of this mode is, when it is not a regular file; None when it is."""
    if stat.S_ISREG(mode):
        return None
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"


def _check_named(path: Path, fix: str) -> None:
    """A roster the user named must be a regular file (a pipe could be read only once)."""
    try:
        what = _what(path.stat().st_mode)
    except OSError:
        raise ConfigError("roster file not found", file=path, fix=fix) from None
    if what == "a directory":
        raise ConfigError("roster path is a directory", file=path,
                          fix=f"give the file's path, e.g. {path / 'roster.toml'}")  # fmt: skip
    if what is not None:
        raise ConfigError(f"roster path is {what}", file=path,
                          fix="save the roster to a file and give its path")  # fmt: skip


def discover(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> tuple[Path, Source]:
    """Find the roster file: flag, then env var, then ./roster.toml, then XDG, then packaged.

    Raises:
        ConfigError: when an explicitly named file (flag or env var) does not exist.
    """
    if explicit is not None:
        _check_named(explicit, "check the --roster path")
        return explicit, "flag"
    from_env = env.get("TANGLEBRAIN_ROSTER")
    if from_env:
        path = Path(from_env)
        _check_named(path, "check $TANGLEBRAIN_ROSTER")
        return path, "env"
    if (cwd / "roster.toml").is_file():
        return cwd / "roster.toml", "cwd"
    if xdg_path(env).is_file():
        return xdg_path(env), "xdg"
    return packaged_path(), "packaged"


def load(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedRoster:
    """Discover and load the roster."""
    env = os.environ if env is None else env
    path, source = discover(explicit, env, cwd or Path.cwd())
    return LoadedRoster(load_file(path), path, source)


def editable_path(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The discovered roster file, unless it is the packaged default.

    Raises:
        ConfigError: the roster in use is the packaged default (or a named file is missing).
    """
    path, source = discover(explicit, env, cwd)
    if source == "packaged" or path.resolve() == packaged_path().resolve():
        raise ConfigError(
            "this is the packaged default roster; it is not edited in place",
            file=path,
            fix="run `tanglebrain init` to get your own copy, then edit that",
        )
    return path
