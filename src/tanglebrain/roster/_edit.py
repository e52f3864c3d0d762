"""Edit a roster file in place without damaging what the user curated.

Commands such as ``tanglebrain backends add`` change a file a person wrote by hand, so
everything an edit does not touch survives byte for byte: comments, blank lines, key
order, quoting, indentation, line endings. ``tomli-w`` cannot do this: it writes a
fresh document from plain data and drops every comment. ``tomlkit`` round-trips a
document exactly; it renders each edited ``key = value`` (keeping its inline comment)
and every new value here.

How an edit works:

1. The text is split into *statements* (``_statements``), each a run of whole lines:
   blank, comment, table header, or ``key = value`` (a value may span lines).
2. The edit replaces, inserts or deletes statements of one ``[[backend]]`` entry;
   every other line is copied through. A comment block directly above a
   ``[[backend]]`` header (no blank line between) belongs to that entry.
3. The result is parsed and compared with the same change made on plain data: if
   anything else changed, the edit is refused ("edit it by hand"). Then
   :func:`tanglebrain.roster.parse` validates it (unknown keys, bad values, literal
   secrets) before a byte is written.
4. It is written atomically by ``_files`` (temp file in the same directory, fsync,
   ``os.replace``, original permissions kept); the previous version is kept as
   ``<name>.bak``. An exclusive ``flock`` on the sidecar ``<name>.lock``, held from read
   to write, keeps two concurrent edits from losing one. A symlinked roster is edited at
   its target.
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomlkit

from tanglebrain.errors import ConfigError, UsageError, not_utf8
from tanglebrain.roster._files import locked, refuse_special, write_atomic
from tanglebrain.roster._load import parse
from tanglebrain.roster._schema import Backend
from tanglebrain.roster._statements import Doc, Entry, unsafe
from tanglebrain.roster._values import FIELDS, Value, render

Change = Callable[[Doc, dict[str, Any]], str]


@dataclass(frozen=True)
class EditResult:
    """What an edit did: ``changed`` is False when the file already said so."""

    path: Path
    changed: bool
    backup: Path | None = None


# --- edits (each returns the new text and makes the same change on ``data``) -------


def _set(doc: Doc, entry: Entry, key: str, value: Value) -> str:
    tail = doc.stmts[entry.body_end : entry.end]
    if any(s.kind == "header" and s.name.strip("[]") == f"backend.{key}" for s in tail) or any(
        s.name == key and not s.simple for s in doc.keys(entry)
    ):
        raise unsafe(f"'{key}' is written as a table or dotted keys here")
    keys = doc.keys(entry)
    found = next((s for s in keys if s.name == key), None)
    if found is not None:
        if value is None:
            return doc.splice(found.start, found.end, [])
        snippet = tomlkit.parse("".join(doc.lines[found.start : found.end]))
        item = tomlkit.parse(f"v = {render(value)}")["v"]
        snippet[key] = item
        return doc.splice(found.start, found.end, [snippet.as_string()])
    if value is None:
        return doc.text
    anchor = keys[-1] if keys else doc.stmts[entry.header]
    indent = doc.indent(keys[0].start) if keys else ""
    return doc.splice(anchor.end, anchor.end, [f"{indent}{key} = {render(value)}{doc.nl}"])


def _add(doc: Doc, fields: Mapping[str, Value]) -> str:
    h_indent = k_indent = ""
    at = len(doc.lines)
    if doc.entries:
        last = doc.entries[-1]
        at = doc.stmts[doc.own_end(last) - 1].end
        h_indent = doc.indent(doc.stmts[last.header].start)
        keys = doc.keys(last)
        k_indent = doc.indent(keys[0].start) if keys else ""
    block = [f"{h_indent}[[backend]]{doc.nl}"] + [
        f"{k_indent}{k} = {render(v)}{doc.nl}" for k, v in fields.items() if v is not None
    ]
    if at > 0 and doc.lines[at - 1].strip():
        block.insert(0, doc.nl)
    if at < len(doc.lines) and doc.lines[at].strip():
        block.append(doc.nl)
    return doc.splice(at, at, block)


def _remove(doc: Doc, entry: Entry) -> str:
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
    """Set (or, with None, remove) one field of one backend in the roster at ``path``.

    A dotted ``field`` (``price.cached_input``) sets one part of a table field, whose
    other parts are kept; the table must exist (a price needs its input and output).
    """
    if field not in FIELDS:
        raise UsageError(f"unknown field {field!r}", fix="valid fields: " + ", ".join(FIELDS))
    key, _, part = field.partition(".")

    def change(doc: Doc, data: dict[str, Any]) -> str:
        n = _index(data, backend_id, path)
        new = value
        if part:
            current = data["backend"][n].get(key)
            new = _with_part(current, field, value, backend_id)
            if new == current:
                return doc.text  # that part already has that value (or is already absent)
        default = next(f.default for f in fields(Backend) if f.name == key)
        if key not in data["backend"][n] and new == default:
            return doc.text  # e.g. `enable` where `enabled` is absent: already true
        if new is None:
            data["backend"][n].pop(key, None)
        else:
            data["backend"][n][key] = new
        return _set(doc, doc.entries[n], key, new)

    return edit(path, change)


def _with_part(table: Any, field: str, value: Value, backend_id: str) -> Value:
    """``table`` (a backend's current ``price``) with ``field``'s part set or, None, removed."""
    key, _, part = field.partition(".")
    if not isinstance(table, dict):
        if value is None:
            return None  # nothing to remove
        raise UsageError(
            f"{field}: backend {backend_id!r} has no {key} to add it to",
            fix=f"set its input and output first: `tanglebrain backends set {backend_id} "
            f"{key} IN,OUT`, or all at once: {key} IN,OUT,CACHED_INPUT,CACHE_WRITE",
        )
    new: dict[str, float] = {k: v for k, v in table.items() if k != part}
    if value is not None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise UsageError(f"{field}: cannot use {value!r}", fix=f"give {FIELDS[field]}")
        new[part] = float(value)
    return new


def add_backend(path: Path, fields: Mapping[str, Value]) -> EditResult:
    """Append a ``[[backend]]`` entry with ``fields`` (in that order; None is skipped)."""
    bid = str(fields.get("id"))

    def change(doc: Doc, data: dict[str, Any]) -> str:
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

    def change(doc: Doc, data: dict[str, Any]) -> str:
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
    refuse_special(real, path)
    with locked(real):
        try:
            old = real.read_bytes()
            text = old.decode("utf-8-sig")  # the BOM is not kept
        except (OSError, UnicodeDecodeError) as exc:
            reason = not_utf8(exc) if isinstance(exc, UnicodeDecodeError) else exc.strerror
            raise ConfigError(f"cannot read roster: {reason}", file=path) from None
        new = _apply(text, path, change)
        if new == text:
            return EditResult(path, changed=False)
        try:
            parse(new, path)
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
        parse(text, path)  # raises the loader's message, with the line
        raise
    doc = Doc(text)
    entries = data.get("backend", [])
    if not isinstance(entries, list) or len(entries) != len(doc.entries):
        raise unsafe("backends are not all written as [[backend]] tables")
    new = change(doc, data)
    if data.get("backend") == []:
        del data["backend"]  # removing the last entry leaves no key behind
    try:
        same = tomllib.loads(new) == data
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise unsafe()
    return new
