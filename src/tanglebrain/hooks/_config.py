"""The ``[hooks]`` table of the roster and the places hooks keep things, read without pydantic.

The handlers run on every tool call of an agent, so they read the roster without pydantic
(with ``tomllib`` only when a table is needed) and look only at what they need: the
``[hooks]`` table, and the ids, tags and key variables of the backends. The strict loader
(``tanglebrain.roster``) validates the same table for every other command; here a roster
that does not parse means "no settings".

Start-up is most of a handler's time, so the modules a handler imports use ``os.path``
strings rather than ``pathlib`` (which imports ``re`` and ``urllib``), import ``typing``
and ``collections.abc`` only for type checkers, and declare their records as
:class:`._record.Record` subclasses.
"""

from __future__ import annotations

import os

from tanglebrain.hooks._record import Record

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing is what this avoids
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_THRESHOLD = 6000  # bytes: smaller outputs pass byte for byte
RAW_KEEP = 200  # raw outputs kept in the state directory, newest first


class HooksConfig(Record):
    """What the hooks wrap and when ``wrap`` digests.

    Attributes:
        include: extra shell-glob patterns of commands to wrap (added to the defaults).
        exclude: patterns of commands never wrapped (they win over every include).
        threshold: outputs of at most this many bytes are printed unchanged.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: int = DEFAULT_THRESHOLD


class Specialist(Record):
    """An enabled backend of the roster, as the routing note names it."""

    id: str
    good_at: tuple[str, ...]


def home() -> str:
    """The user's home folder, as ``Path.home()`` finds it."""
    return os.path.expanduser("~")


def norm(path: str | os.PathLike[str]) -> str:
    """``str(Path(path))``: slashes collapsed, ``.`` parts and a trailing slash dropped."""
    text = os.fspath(path)
    lead = "//" if text.startswith("//") and not text.startswith("///") else "/"[: text[:1] == "/"]
    parts = [p for p in text.split("/") if p and p != "."]
    return (lead + "/".join(parts)) or "."


def lineage(path: str | os.PathLike[str]) -> list[str]:
    """``[p, *p.parents]`` of ``p = Path(path).absolute()``, as strings."""
    text = norm(path)
    if not text.startswith("/"):
        text = norm(os.path.join(os.getcwd(), text))
    root = "//" if text.startswith("//") else "/"
    found = [text]
    while text != root:
        text = text.rsplit("/", 1)[0]
        text = text if len(text) > len(root) else root
        found.append(text)
    return found


def listed(folder: str, suffix: str) -> list[str]:
    """``sorted(Path(folder).glob("*" + suffix))`` as strings ([] when unreadable)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, n) for n in sorted(names) if n.endswith(suffix)]


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a file (universal newlines, as ``Path.read_text``; a BOM dropped).

    Raises:
        OSError: it cannot be read.
        UnicodeDecodeError: it is not UTF-8.
    """
    with open(path, encoding="utf-8-sig") as fh:
        return fh.read()


def state_dir(env: Mapping[str, str]) -> str:
    """``$TANGLEBRAIN_HOME``, else ``$XDG_DATA_HOME/tanglebrain`` (as ``tanglebrain run``)."""
    named = env.get("TANGLEBRAIN_HOME")
    if named:
        return norm(named)
    base = env.get("XDG_DATA_HOME") or os.path.join(home(), ".local", "share")
    return norm(os.path.join(base, "tanglebrain"))


def no_log(env: Mapping[str, str]) -> bool:
    """Whether nothing may be recorded (``TANGLEBRAIN_NO_LOG=1``)."""
    return env.get("TANGLEBRAIN_NO_LOG", "").strip().lower() in {"1", "true", "yes", "on"}


def roster_path(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> str | None:
    """The roster a run from ``cwd`` would use (``$TANGLEBRAIN_ROSTER``, ./, XDG, packaged)."""
    named = env.get("TANGLEBRAIN_ROSTER")
    if named:
        return norm(named) if os.path.isfile(named) else None
    base = env.get("XDG_CONFIG_HOME") or os.path.join(home(), ".config")
    for path in (
        os.path.join(cwd, "roster.toml"),
        os.path.join(base, "tanglebrain", "roster.toml"),
    ):
        if os.path.isfile(path):
            return norm(path)
    return os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "roster.toml")


def roster_text(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> str | None:
    """The text of the roster a run from ``cwd`` would use, or None."""
    path = roster_path(env, cwd)
    try:
        return None if path is None else read_text(path)
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
