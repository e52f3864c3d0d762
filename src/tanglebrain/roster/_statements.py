"""A roster text as statements: the whole lines an edit replaces, inserts or deletes.

A statement is a blank line, a comment, a table header, or ``key = value`` (a value may
span lines). An entry is one ``[[backend]]`` header with its keys and sub-tables; the
comment block directly above its header (no blank line between) belongs to it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Literal

from tanglebrain.errors import ConfigError

_SIMPLE_KEY = re.compile(r"""^[ \t]*(?:"([\w-]+)"|'([\w-]+)'|([\w-]+))[ \t]*=""")
_HEADER = re.compile(r"^(\[\[?)\s*(.*?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class Stmt:
    """One statement: a run of whole lines, ``start`` to ``end``."""

    kind: Literal["blank", "comment", "header", "key"]
    start: int  # first line
    end: int  # line after the last
    name: str = ""  # header: "[[backend]]", "[backend.price]"; key: its first component
    simple: bool = True  # key: a plain ``name = value``, not dotted


@dataclass(frozen=True)
class Entry:
    """One ``[[backend]]`` entry, as statement indices."""

    header: int  # statement index of the [[backend]] line
    body_end: int  # statement index of the next header
    end: int  # statement index after its sub-tables ([backend.price] …)


class Doc:
    """A roster text as lines and statements; edits return new text."""

    def __init__(self, text: str) -> None:
        self.text = text
        parts = text.split("\n")  # TOML's only line break (str.splitlines knows eight more)
        self.lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.stmts = _statements(self.lines)
        self.entries = _entries(self.stmts)

    def splice(self, start: int, end: int, new: list[str]) -> str:
        """The text with lines ``start`` to ``end`` replaced by ``new``."""
        lines = list(self.lines)
        if new and start > 0 and not lines[start - 1].endswith("\n"):
            lines[start - 1] += self.nl  # the file ended without a newline
        return "".join(lines[:start] + new + lines[end:])

    def indent(self, line: int) -> str:
        """The leading whitespace of ``line``, so that new lines match their neighbours."""
        text = self.lines[line]
        return text[: len(text) - len(text.lstrip(" \t"))]

    def keys(self, entry: Entry) -> list[Stmt]:
        """The ``key = value`` statements of the entry's own table (not its sub-tables)."""
        return [s for s in self.stmts[entry.header + 1 : entry.body_end] if s.kind == "key"]

    def lead(self, header: int) -> int:
        """The first statement of the comment block directly above ``header``."""
        while header > 0 and self.stmts[header - 1].kind == "comment":
            header -= 1
        return header

    def own_end(self, entry: Entry) -> int:
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


def _statements(lines: list[str]) -> list[Stmt]:
    out: list[Stmt] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if not text:
            out.append(Stmt("blank", i, i + 1))
        elif text.startswith("#"):
            out.append(Stmt("comment", i, i + 1))
        elif text.startswith("["):
            match = _HEADER.match(text)
            inner = match.group(2) if match else text
            name = ".".join(p.strip().strip("\"'") for p in inner.split("."))
            out.append(Stmt("header", i, i + 1, f"[[{name}]]" if text[1] == "[" else f"[{name}]"))
        else:
            out.append(_key_statement(lines, i))
        i = out[-1].end
    return out


def _key_statement(lines: list[str], i: int) -> Stmt:
    """``key = value`` starting at line ``i``: it ends where its text first parses."""
    for j in range(i + 1, len(lines) + 1):
        try:
            data = tomllib.loads("".join(lines[i:j]))
        except tomllib.TOMLDecodeError:
            continue
        name = next(iter(data), "")
        match = _SIMPLE_KEY.match(lines[i])
        simple = match is not None and name == next(g for g in match.groups() if g)
        return Stmt("key", i, j, name, simple)
    raise unsafe()


def _entries(stmts: list[Stmt]) -> list[Entry]:
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
        out.append(Entry(h, later[0] if later else len(stmts), end))
    return out


def unsafe(detail: str = "") -> ConfigError:
    """The refusal of an edit that would change more than the lines it means to."""
    return ConfigError(
        "cannot make this edit without touching other lines" + (f": {detail}" if detail else ""),
        fix="edit the file by hand",
    )
