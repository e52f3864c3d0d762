"""Edit a roster file in place without damaging what the user curated.

Commands such as ``tanglebrain backends add`` change a file a person wrote by hand, so
everything an edit does not touch survives byte for byte: comments, blank lines, key
order, quoting, indentation, line endings. ``tomli-w`` cannot do this: it writes a
fresh document from plain data and drops every comment. ``tomlkit`` round-trips a
document exactly; it renders each edited ``key = value`` (keeping its inline comment)
and every new value here.

How an edit works:

1. The text is split into *statements*, each a run of whole lines: blank, comment,
   table header, or ``key = value`` (a value may span lines).
2. The edit replaces, inserts or deletes statements of one ``[[backend]]`` entry;
   every other line is copied through. A comment block directly above a
   ``[[backend]]`` header (no blank line between) belongs to that entry.
3. The result is parsed and compared with the same change made on plain data: if
   anything else changed, the edit is refused ("edit it by hand"). Then
   :func:`tanglebrain.roster.parse` validates it (unknown keys, bad values, literal
   secrets) before a byte is written.
4. It is written atomically (temp file in the same directory, fsync, ``os.replace``,
   original permissions kept); the previous version is kept as ``<name>.bak``. An
   exclusive ``flock`` on the sidecar ``<name>.lock``, held from read to write, keeps
   two concurrent edits from losing one. A symlinked roster is edited at its target.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomlkit

from tanglebrain import filelock
from tanglebrain import roster as roster_mod
from tanglebrain.errors import ConfigError, UsageError

Value = str | int | float | bool | list[str] | dict[str, float] | None
Change = Callable[["_Doc", dict[str, Any]], str]

FIELDS: dict[str, str] = {
    "id": "a non-empty string",
    "model": "a non-empty string",
    "api_key_env": "the NAME of an environment variable",
    "api_base": "a URL",
    "good_at": "comma-separated tags, e.g. code,review",
    "cost": "a number >= 0, e.g. 3 or 0.5",
    "can_orchestrate": "true or false",
    "enabled": "true or false",
    "max_concurrency": "a whole number, e.g. 8",
    "context_window": "a whole number of tokens, e.g. 128000",
    "price": "INPUT,OUTPUT in USD per million tokens, e.g. 3,15",
    "max_output_tokens": "a whole number of tokens, e.g. 4096",
    "transport": "auto, openai or litellm",
}
"""Every backend field ``backends set`` accepts, and what its VALUE must be."""
OPTIONAL_FIELDS = frozenset(
    {"api_key_env", "api_base", "context_window", "price", "max_output_tokens", "transport"}
)
"""Fields that an empty VALUE removes from the entry."""
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})
_SIMPLE_KEY = re.compile(r"""^[ \t]*(?:"([\w-]+)"|'([\w-]+)'|([\w-]+))[ \t]*=""")
_HEADER = re.compile(r"^(\[\[?)\s*(.*?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class EditResult:
    """What an edit did: ``changed`` is False when the file already said so."""

    path: Path
    changed: bool
    backup: Path | None = None


# --- values ------------------------------------------------------------------------


def parse_value(field: str, raw: str) -> Value:
    """Parse a ``backends set`` VALUE by the field's type.

    Args:
        field: a backend field name (a key of :data:`FIELDS`).
        raw: the text from the command line; empty removes an optional field.

    Returns:
        The TOML value, or None to remove the key.

    Raises:
        UsageError: the field is unknown or the value does not fit its type.
    """
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", fix="valid fields: " + ", ".join(FIELDS))
    text = raw.strip()
    if not text and field in OPTIONAL_FIELDS:
        return None
    try:
        return _convert(field, text)
    except ValueError:
        raise UsageError(f"{field}: cannot use {raw!r}", fix=f"give {FIELDS[field]}") from None


def _convert(field: str, text: str) -> Value:
    if field in ("can_orchestrate", "enabled"):
        if text.lower() not in _TRUE | _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    if field in ("max_concurrency", "context_window", "max_output_tokens"):
        return int(text)
    if field == "good_at":
        tags = [t.strip() for t in text.split(",") if t.strip()]
        if not tags:
            raise ValueError(text)
        return tags
    if field in ("cost", "price"):
        numbers = [
            int(p) if re.fullmatch(r"\s*[+-]?\d+\s*", p) else float(p) for p in text.split(",")
        ]
        if len(numbers) != (2 if field == "price" else 1) or not all(map(math.isfinite, numbers)):
            raise ValueError(text)
        return (
            {"input": float(numbers[0]), "output": float(numbers[1])}
            if field == "price"
            else numbers[0]
        )
    if field == "transport" and text not in ("auto", "openai", "litellm"):
        raise ValueError(text)
    if not text:
        raise ValueError(text)
    return text


def _render(value: Value) -> str:
    if isinstance(value, dict):
        inp, out = (tomlkit.item(float(value[k])).as_string() for k in ("input", "output"))
        return f"{{ input = {inp}, output = {out} }}"
    return tomlkit.item(value).as_string()


# --- the statement model -----------------------------------------------------------


@dataclass(frozen=True)
class _Stmt:
    kind: Literal["blank", "comment", "header", "key"]
    start: int  # first line
    end: int  # line after the last
    name: str = ""  # header: "[[backend]]", "[backend.price]"; key: its first component
    simple: bool = True  # key: a plain ``name = value``, not dotted


@dataclass(frozen=True)
class _Entry:
    header: int  # statement index of the [[backend]] line
    body_end: int  # statement index of the next header
    end: int  # statement index after its sub-tables ([backend.price] …)


class _Doc:
    """A roster text as lines and statements; edits return new text."""

    def __init__(self, text: str) -> None:
        self.text = text
        parts = text.split("\n")  # TOML's only line break (str.splitlines knows eight more)
        self.lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.stmts = _statements(self.lines)
        self.entries = _entries(self.stmts)

    def splice(self, start: int, end: int, new: list[str]) -> str:
        lines = list(self.lines)
        if new and start > 0 and not lines[start - 1].endswith("\n"):
            lines[start - 1] += self.nl  # the file ended without a newline
        return "".join(lines[:start] + new + lines[end:])

    def indent(self, line: int) -> str:
        text = self.lines[line]
        return text[: len(text) - len(text.lstrip(" \t"))]

    def keys(self, entry: _Entry) -> list[_Stmt]:
        return [s for s in self.stmts[entry.header + 1 : entry.body_end] if s.kind == "key"]

    def lead(self, header: int) -> int:
        """The first statement of the comment block directly above ``header``."""
        while header > 0 and self.stmts[header - 1].kind == "comment":
            header -= 1
        return header

    def own_end(self, entry: _Entry) -> int:
        """Statement index after the entry's own lines (not the next entry's comments)."""
        stmts = self.stmts
        k = 1 + max(
            i
            for i in range(entry.header, entry.end)
            if stmts[i].kind != "blank" and stmts[i].kind != "comment"
        )
        stop = self.lead(entry.end) if entry.end < len(stmts) else len(stmts)
        while k < stop and stmts[k].kind == "comment":
            k += 1
        return k


def _statements(lines: list[str]) -> list[_Stmt]:
    out: list[_Stmt] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if not text:
            out.append(_Stmt("blank", i, i + 1))
        elif text.startswith("#"):
            out.append(_Stmt("comment", i, i + 1))
        elif text.startswith("["):
            match = _HEADER.match(text)
            inner = match.group(2) if match else text
            name = ".".join(p.strip().strip("\"'") for p in inner.split("."))
            out.append(_Stmt("header", i, i + 1, f"[[{name}]]" if text[1] == "[" else f"[{name}]"))
        else:
            out.append(_key_statement(lines, i))
        i = out[-1].end
    return out


def _key_statement(lines: list[str], i: int) -> _Stmt:
    """``key = value`` starting at line ``i``: it ends where its text first parses."""
    for j in range(i + 1, len(lines) + 1):
        try:
            data = tomllib.loads("".join(lines[i:j]))
        except tomllib.TOMLDecodeError:
            continue
        name = next(iter(data), "")
        match = _SIMPLE_KEY.match(lines[i])
        simple = match is not None and name == next(g for g in match.groups() if g)
        return _Stmt("key", i, j, name, simple)
    raise _unsafe()


def _entries(stmts: list[_Stmt]) -> list[_Entry]:
    headers = [k for k, s in enumerate(stmts) if s.kind == "header"]
    out = []
    for n, h in enumerate(headers):
        if stmts[h].name != "[[backend]]":
            continue
        later = headers[n + 1 :]
        end = next(
            (k for k in later if not stmts[k].name.lstrip("[").startswith("backend.")),
            len(stmts),
        )
        out.append(_Entry(h, later[0] if later else len(stmts), end))
    return out


def _unsafe(detail: str = "") -> ConfigError:
    return ConfigError(
        "cannot make this edit without touching other lines" + (f": {detail}" if detail else ""),
        fix="edit the file by hand",
    )


# --- edits (each returns the new text and makes the same change on ``data``) -------


def _set(doc: _Doc, entry: _Entry, key: str, value: Value) -> str:
    tail = doc.stmts[entry.body_end : entry.end]
    if any(s.kind == "header" and s.name.strip("[]") == f"backend.{key}" for s in tail) or any(
        s.name == key and not s.simple for s in doc.keys(entry)
    ):
        raise _unsafe(f"'{key}' is written as a table or dotted keys here")
    keys = doc.keys(entry)
    found = next((s for s in keys if s.name == key), None)
    if found is not None:
        if value is None:
            return doc.splice(found.start, found.end, [])
        snippet = tomlkit.parse("".join(doc.lines[found.start : found.end]))
        item = tomlkit.parse(f"v = {_render(value)}")["v"]
        snippet[key] = item
        return doc.splice(found.start, found.end, [snippet.as_string()])
    if value is None:
        return doc.text
    anchor = keys[-1] if keys else doc.stmts[entry.header]
    indent = doc.indent(keys[0].start) if keys else ""
    return doc.splice(anchor.end, anchor.end, [f"{indent}{key} = {_render(value)}{doc.nl}"])


def _add(doc: _Doc, fields: Mapping[str, Value]) -> str:
    h_indent = k_indent = ""
    at = len(doc.lines)
    if doc.entries:
        last = doc.entries[-1]
        at = doc.stmts[doc.own_end(last) - 1].end
        h_indent = doc.indent(doc.stmts[last.header].start)
        keys = doc.keys(last)
        k_indent = doc.indent(keys[0].start) if keys else ""
    block = [f"{h_indent}[[backend]]{doc.nl}"] + [
        f"{k_indent}{k} = {_render(v)}{doc.nl}" for k, v in fields.items() if v is not None
    ]
    if at > 0 and doc.lines[at - 1].strip():
        block.insert(0, doc.nl)
    if at < len(doc.lines) and doc.lines[at].strip():
        block.append(doc.nl)
    return doc.splice(at, at, block)


def _remove(doc: _Doc, entry: _Entry) -> str:
    stmts = doc.stmts
    start, own = doc.lead(entry.header), doc.own_end(entry)
    if own == len(stmts) or stmts[own].kind == "blank":
        while start > 0 and stmts[start - 1].kind == "blank":
            start -= 1
    return doc.splice(stmts[start].start, stmts[own - 1].end, [])


def _index(data: dict[str, Any], backend_id: str, path: Path) -> int:
    entries = data.get("backend")
    ids = [b.get("id") for b in entries] if isinstance(entries, list) else []
    if backend_id not in ids:
        known = ", ".join(str(i) for i in ids) or "none"
        raise ConfigError(
            f"unknown backend id {backend_id!r}", file=path, fix=f"known ids: {known}"
        )
    return ids.index(backend_id)


def set_field(path: Path, backend_id: str, field: str, value: Value) -> EditResult:
    """Set (or, with None, remove) one field of one backend in the roster at ``path``."""
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", fix="valid fields: " + ", ".join(FIELDS))

    def change(doc: _Doc, data: dict[str, Any]) -> str:
        n = _index(data, backend_id, path)
        default = roster_mod.Backend.model_fields[field].default
        if field not in data["backend"][n] and value == default:
            return doc.text  # e.g. `enable` where `enabled` is absent: already true
        if value is None:
            data["backend"][n].pop(field, None)
        else:
            data["backend"][n][field] = value
        return _set(doc, doc.entries[n], field, value)

    return edit(path, change)


def add_backend(path: Path, fields: Mapping[str, Value]) -> EditResult:
    """Append a ``[[backend]]`` entry with ``fields`` (in that order; None is skipped)."""
    bid = str(fields.get("id"))

    def change(doc: _Doc, data: dict[str, Any]) -> str:
        entries = data.setdefault("backend", [])
        if isinstance(entries, list) and any(b.get("id") == bid for b in entries):
            raise ConfigError(
                "a backend with this id already exists",
                file=path,
                backend=bid,
                field="id",
                fix="pick another id",
            )
        entries.append({k: v for k, v in fields.items() if v is not None})
        return _add(doc, fields)

    return edit(path, change)


def remove_backend(path: Path, backend_id: str) -> EditResult:
    """Delete one ``[[backend]]`` entry (and the comment block directly above it)."""

    def change(doc: _Doc, data: dict[str, Any]) -> str:
        n = _index(data, backend_id, path)
        del data["backend"][n]
        return _remove(doc, doc.entries[n])

    return edit(path, change)


# --- the read-check-validate-write cycle -------------------------------------------


def edit(path: Path, change: Change) -> EditResult:
    """Apply ``change`` to the roster at ``path`` under the lock; validate; write atomically.

    Raises:
        ConfigError: the file cannot be read or written, the change is refused, or the
            result does not validate (then nothing is written).
    """
    real = path.resolve()
    with _locked(real):
        try:
            old = real.read_bytes()
            text = old.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read roster: {reason}", file=path) from None
        new = _apply(text, path, change)
        if new == text:
            return EditResult(path, changed=False)
        try:
            roster_mod.parse(new, path)
        except ConfigError as exc:
            where = {k: getattr(exc, k) for k in ("file", "line", "backend", "field", "fix")}
            raise ConfigError(f"{exc.problem}; the file was not changed", **where) from None
        mode = stat.S_IMODE(real.stat().st_mode)
        backup = real.with_name(real.name + ".bak")
        write_atomic(backup, old, mode)
        write_atomic(real, new.encode("utf-8"), mode)
        return EditResult(path, changed=True, backup=backup)


def _apply(text: str, path: Path, change: Change) -> str:
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):  # bad syntax, or nested too deep
        roster_mod.parse(text, path)  # raises the loader's message, with the line
        raise
    doc = _Doc(text)
    entries = data.get("backend", [])
    if not isinstance(entries, list) or len(entries) != len(doc.entries):
        raise _unsafe("backends are not all written as [[backend]] tables")
    new = change(doc, data)
    if data.get("backend") == []:
        del data["backend"]  # removing the last entry leaves no key behind
    try:
        same = tomllib.loads(new) == data
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise _unsafe()
    return new


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    try:
        with filelock.locked(lock):
            yield
    except OSError as exc:
        raise ConfigError(f"cannot lock roster: {exc.strerror}", file=lock) from None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``.

    Raises:
        ConfigError: the file cannot be written (nothing is left half-written).
    """
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", file=path) from None
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


# --- which file, and the starter file ------------------------------------------------


def editable_path(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The discovered roster file, unless it is the packaged default.

    Raises:
        ConfigError: the roster in use is the packaged default (or a named file is missing).
    """
    path, source = roster_mod.discover(explicit, env, cwd)
    if source == "packaged" or path.resolve() == roster_mod.packaged_path().resolve():
        raise ConfigError(
            "this is the packaged default roster; it is not edited in place",
            file=path,
            fix="run `tanglebrain init` to get your own copy, then edit that",
        )
    return path


def write_starter(dest: Path, *, force: bool) -> Path | None:
    """Copy the packaged roster (comments and all) to ``dest``; return the backup, if any.

    Raises:
        ConfigError: ``dest`` exists and ``force`` is False, or it cannot be written.
    """
    starter = roster_mod.packaged_path().read_bytes()
    if dest.is_dir():
        raise ConfigError("is a directory", file=dest, fix="give a file path, e.g. roster.toml")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory: {exc.strerror}", file=dest.parent) from None
    real = dest.resolve()
    with _locked(real):
        if not real.exists():
            umask = os.umask(0)
            os.umask(umask)
            write_atomic(real, starter, 0o666 & ~umask)
            return None
        if not force:
            raise ConfigError(
                "roster already exists; not overwritten",
                file=dest,
                fix="pass --force to replace it; the old file is kept as .bak",
            )
        backup = real.with_name(real.name + ".bak")
        mode = stat.S_IMODE(real.stat().st_mode)
        write_atomic(backup, real.read_bytes(), mode)
        write_atomic(real, starter, mode)
        return backup
