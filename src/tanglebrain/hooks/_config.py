"""The ``[hooks]`` table of the roster and the places hooks keep things, read without pydantic.

The handlers run on every tool call of an agent, so they read the roster without pydantic
(with ``tomllib`` only when a table is needed) and look only at what they need: the
``[hooks]`` table, and the ids, tags and key variables of the backends. The strict loader
(``tanglebrain.roster``) validates the same table for every other command; here a roster
that does not parse means "no settings". Records are named tuples: ``dataclasses`` imports
``inspect``, ~40 ms of start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_THRESHOLD = 6000  # bytes: smaller outputs pass byte for byte
RAW_KEEP = 200  # raw outputs kept in the state directory, newest first


class HooksConfig(NamedTuple):
    """What the hooks wrap and when ``wrap`` digests.

    Attributes:
        include: extra shell-glob patterns of commands to wrap (added to the defaults).
        exclude: patterns of commands never wrapped (they win over every include).
        threshold: outputs of at most this many bytes are printed unchanged.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: int = DEFAULT_THRESHOLD


class Specialist(NamedTuple):
    """An enabled backend of the roster, as the routing note names it."""

    id: str
    good_at: tuple[str, ...]


def state_dir(env: Mapping[str, str]) -> Path:
    """``$TANGLEBRAIN_HOME``, else ``$XDG_DATA_HOME/tanglebrain`` (as ``tanglebrain run``)."""
    home = env.get("TANGLEBRAIN_HOME")
    if home:
        return Path(home)
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tanglebrain"


def no_log(env: Mapping[str, str]) -> bool:
    """Whether nothing may be recorded (``TANGLEBRAIN_NO_LOG=1``)."""
    return env.get("TANGLEBRAIN_NO_LOG", "").strip().lower() in {"1", "true", "yes", "on"}


def roster_path(env: Mapping[str, str], cwd: Path) -> Path | None:
    """The roster a run from ``cwd`` would use (``$TANGLEBRAIN_ROSTER``, ./, XDG, packaged)."""
    named = env.get("TANGLEBRAIN_ROSTER")
    if named:
        return Path(named) if Path(named).is_file() else None
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for path in (cwd / "roster.toml", Path(base) / "tanglebrain" / "roster.toml"):
        if path.is_file():
            return path
    return Path(__file__).resolve().parent.parent / "roster.toml"


def roster_text(env: Mapping[str, str], cwd: Path) -> str | None:
    """The text of the roster a run from ``cwd`` would use, or None."""
    path = roster_path(env, cwd)
    try:
        return None if path is None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def parse_roster(text: str | None) -> dict[str, Any] | None:
    """Roster text parsed as TOML, or None when there is none or it does not parse."""
    if text is None:
        return None
    import tomllib  # ~10 ms: only when a table is actually needed

    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None


def config_of(text: str | None) -> HooksConfig | None:
    """The hooks settings of roster text: the defaults without a ``hooks`` table, else parsed."""
    if text is None or "hooks" not in text:
        return HooksConfig()
    return hooks_config(parse_roster(text))


def key_names(text: str | None) -> list[str]:
    """The ``api_key_env`` names of roster text, read line by line without a TOML parser."""
    names = []
    for line in (text or "").splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and key.strip() == "api_key_env":
            names.append(value.split("#", 1)[0].strip().strip("\"'"))
    return names


def hooks_config(data: Mapping[str, Any] | None) -> HooksConfig | None:
    """The ``[hooks]`` table of a parsed roster; the defaults without one; None when invalid."""
    table = (data or {}).get("hooks", {})
    if not isinstance(table, dict) or set(table) - {"include", "exclude", "threshold"}:
        return None
    lists = [table.get("include", []), table.get("exclude", [])]
    if not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in lists):
        return None
    threshold = table.get("threshold", DEFAULT_THRESHOLD)
    if type(threshold) is not int or threshold < 0:
        return None
    return HooksConfig(tuple(lists[0]), tuple(lists[1]), threshold)


def specialists(data: Mapping[str, Any] | None) -> list[Specialist]:
    """The enabled backends of a parsed roster, in file order (malformed entries skipped)."""
    found: list[Specialist] = []
    for entry in (data or {}).get("backend", []) if isinstance(data, dict) else []:
        if not isinstance(entry, dict) or entry.get("enabled", True) is not True:
            continue
        bid, tags = entry.get("id"), entry.get("good_at")
        if (
            isinstance(bid, str)
            and isinstance(tags, list)
            and all(isinstance(t, str) for t in tags)
        ):
            found.append(Specialist(bid, tuple(tags)))
    return found


def key_values(text: str | None, env: Mapping[str, str]) -> list[str]:
    """The API-key values ``env`` holds for the roster's backends (to scrub them from logs)."""
    return [v for n in key_names(text) if n and (v := env.get(n))]
