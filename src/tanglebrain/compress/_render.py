"""Terminal rendering for :mod:`tanglebrain.compress`: raw output to the lines finally shown.

:func:`render` strips control sequences, replays carriage-return and cursor-movement redraws
(progress bars, spinners, ``docker pull`` layers) onto a grid of rows and removes GitHub
Actions per-line timestamps. :func:`narrow` shrinks wide runs of blanks in a rendered line.
Pure functions of their input; standard library only.
"""

from __future__ import annotations

import re

# Sequences that never move the cursor or change text: colours, private modes, OSC titles and
# hyperlinks, DCS/APC/PM/SOS strings (e.g. Buildkite's ``ESC _bk;t=… BEL`` timestamps),
# charset selection, other two-byte escapes and 8-bit CSI.
_INERT = re.compile(
    r"\x1b\[[0-?]*[ -/]*m"
    r"|\x1b\[\?[0-9;]*[hl]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[P_^X][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\\]^_=>78]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f\ud800-\udfff]")
_SEQ = re.compile(r"(\x1b\[[0-?]*[ -/]*[@-~]|\r|\x1b)")
_GHA_TS = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z(?: |$)", re.MULTILINE)
_WIDE_GAP = re.compile(r"[ \t]{3,}")
# overwritten text worth rescuing: it names an error or a warning
_RESCUE = re.compile(r"(?i)\b(?:error|fatal|fail(?:ed|ure)?|exception|panic|warn(?:ing)?)\b")


_MAX_COL = 1000  # cursor columns beyond this are clamped


def _int(params: str, default: int) -> int:
    head = params.split(";", 1)[0][:9]
    return int(head) if head.isdigit() and int(head) > 0 else default


class _Screen:
    """A grid of rows with a cursor; rows that get overwritten are remembered in ``lost``."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.lost: dict[str, int] = {}  # overwritten row -> row it was overwritten at
        self.cur = -1
        self.col = 0
        self.saved = (0, 0)

    def line_feed(self) -> None:
        """Move to column 0 of the next row (a new row below the last one)."""
        self.cur += 1
        if self.cur == len(self.rows):
            self.rows.append("")
        self.col = 0
        self.saved = (self.cur, 0)

    def replace(self, text: str) -> None:
        """Replace the current row with ``text``, remembering the row it overwrote."""
        old = self.rows[self.cur]
        if old and old != text:
            self.lost.setdefault(old, self.cur)
        self.rows[self.cur] = text

    def write(self, part: str) -> None:
        """Write text at the cursor: at column 0 it replaces the row, further right it overlays."""
        if self.col == 0 and part.strip():
            self.replace(part)
        elif self.col or part.strip():
            old, col = self.rows[self.cur], self.col
            self.rows[self.cur] = old[:col].ljust(col) + part + old[col + len(part) :]
        self.col += len(part)

    def control(self, final: str, params: str) -> None:
        """Apply one CSI sequence (final byte and parameters); unknown ones are dropped."""
        if final in "AF":
            self.cur = max(0, self.cur - _int(params, 1))
            self.col = 0 if final == "F" else self.col
        elif final in "BE":  # down; like a terminal, never below the last row
            self.cur = min(self.cur + _int(params, 1), len(self.rows) - 1)
            self.col = 0 if final == "E" else self.col
        elif final == "C":
            self.col = min(self.col + _int(params, 1), _MAX_COL)
        elif final == "D":
            self.col = max(0, self.col - _int(params, 1))
        elif final in "GHf`":
            column = params.split(";")[-1] if final in "Hf" else params
            self.col = min(_int(column, 1) - 1, _MAX_COL)
        elif final == "K":
            self._erase_in_line(params or "0")
        elif final == "J" and params in ("", "0"):
            for old in self.rows[self.cur + 1 :]:
                self.lost.setdefault(old, self.cur)
            del self.rows[self.cur + 1 :]
            self.rows[self.cur] = self.rows[self.cur][: self.col]
        elif final == "s":
            self.saved = (self.cur, self.col)
        elif final == "u":
            self.cur, self.col = min(self.saved[0], len(self.rows) - 1), self.saved[1]

    def _erase_in_line(self, mode: str) -> None:
        old, col = self.rows[self.cur], self.col
        new = old[:col] if mode == "0" else " " * col + old[col:] if mode == "1" else ""
        if old.strip() and new != old:
            self.lost.setdefault(old, self.cur)
        self.rows[self.cur] = new

    def final_rows(self) -> list[str]:
        """The rows, with overwritten rows that named an error or warning kept above them."""
        shown = set(self.rows)
        rescue: dict[int, list[str]] = {}
        for old, at in self.lost.items():
            if old not in shown and _RESCUE.search(old):
                rescue.setdefault(at, []).append(old)
        if not rescue:
            return self.rows
        out: list[str] = []
        for i, row in enumerate(self.rows):
            out.extend(rescue.get(i, ()))
            out.append(row)
        return out


def _emulate(segments: list[str]) -> list[str]:
    """Replay line feeds, carriage returns, cursor moves and erasures on a grid of rows.

    A line feed moves to column 0 of the next row. Text written at column 0 replaces the row
    (a carriage-return rewrite shows its last non-empty segment, as progress bars intend);
    text written further right overwrites in place. Cursor up/down/next/previous line, column
    moves and erase-in-line/display are honoured; anything else is dropped. Overwritten rows
    that named an error or warning are kept, just above the row that replaced them.
    """
    screen = _Screen()
    for seg in segments:
        screen.line_feed()
        if "\x1b" not in seg and "\r" not in seg:
            if seg:
                screen.replace(seg)
            continue
        for k, part in enumerate(_SEQ.split(seg)):
            if not k & 1:
                if part:
                    screen.write(part)
            elif part == "\r":
                screen.col = 0
            elif part != "\x1b":
                screen.control(part[-1], part[2:-1])
    return screen.final_rows()


class Value:
    """Equality and a repr from ``__slots__``, as a dataclass would give.

    Without importing dataclasses (and inspect) on ``wrap``'s path.
    """

    __slots__ = ()

    def _fields(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = type(self).__slots__
        return fields

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields())
        return f"{type(self).__name__}({args})"

    __hash__ = None  # type: ignore[assignment]  # mutable values: equal, not hashable


class Rendered(Value):
    """Text as the terminal finally showed it.

    Attributes:
        lines: The visible lines, without trailing whitespace or control sequences.
        first_ts: First GitHub Actions timestamp prefix removed from a line ("" if none).
        last_ts: Last such timestamp ("" if none).
    """

    __slots__ = ("first_ts", "last_ts", "lines")

    def __init__(self, lines: list[str], first_ts: str, last_ts: str) -> None:
        self.lines = lines
        self.first_ts = first_ts
        self.last_ts = last_ts


def _gha_timestamps(text: str) -> tuple[str, str, str]:
    """Remove GitHub Actions line timestamps; return the text and the first and last one."""
    m = _GHA_TS.search(text)
    if not m:
        return text, "", ""
    first_ts = last_ts = m.group().strip()
    end = len(text)
    while end > m.end():
        begin = text.rfind("\n", 0, end - 1) + 1
        last = _GHA_TS.match(text, begin)
        if last:
            last_ts = last.group().strip()
            break
        end = begin
    return _GHA_TS.sub("", text), first_ts, last_ts


def render(text: str) -> Rendered:
    """Strip terminal control sequences and resolve overwrites to the final screen.

    Args:
        text: Raw text, possibly with ANSI/VT sequences, carriage-return rewrites and cursor
            moves.

    Returns:
        The rendered lines, without trailing blanks or trailing empty lines. GitHub Actions
        per-line timestamps are removed (the first and last are reported).
    """
    if "\x1b" in text or "\x9b" in text:
        text = _INERT.sub("", text)
    text = _CTRL.sub("", text)
    while "\r\n" in text:  # \r+\n ends a line
        text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if "\x1b" in text or "\r" in text:
        text = "\n".join(_emulate(text.split("\n")))
    text, first_ts, last_ts = _gha_timestamps(text)
    lines = [x.rstrip() for x in text.split("\n")] if text else []
    while lines and not lines[-1]:
        lines.pop()
    return Rendered(lines, first_ts, last_ts)


def narrow(line: str) -> str:
    """Shrink runs of three or more blanks inside ``line`` to two; indentation stays."""
    if "   " not in line.lstrip():
        return line
    body = line.lstrip()
    return line[: len(line) - len(body)] + _WIDE_GAP.sub("  ", body)
