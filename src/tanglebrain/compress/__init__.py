"""Deterministic compression of bulky text (logs) before it reaches the orchestrator.

Two modes, both pure functions of their input (standard library only):

* :func:`faithful` renders terminal output (ANSI/OSC/APC sequences stripped, carriage-return
  and cursor-up redraws resolved to the final screen), then keeps every line that carries an
  error, warning, test/build summary or exit code, the first line carrying each must-keep fact
  (source path, ``file:line[:col]`` location, error code, exception type, stack frame), short
  continuations of error lines and head/tail context. Consecutive near-identical lines become
  one line with ``[×N]``; error, warning and summary lines that recur elsewhere are shown once
  with ``(×N)`` (N such lines in total). Everything else is elided and announced, e.g.
  ``[… 1,234 lines of 17 kinds elided …]``, and the most frequent elided kinds are listed.
* :func:`budgeted` returns the faithful digest when it fits the byte budget; otherwise a counts
  summary, then as many facts as fit, most informative first, and a note of what was cut. The
  result never exceeds the budget.

Near-identical means equal once volatile tokens are masked: timestamps, UUIDs, hex ids and
hashes, IPs, long numbers, and durations, sizes and percentages down to their order of magnitude
(``12 ms`` is like ``15 ms``, not like ``9000 ms``); in lines without errors, counters too (a
number that goes up line after line, on evidence). Any other number (a status, a value) is
content: lines that differ in one are never folded together, so a small input comes out whole.
Annotation lines start with ``[… `` and end with `` …]``; compressing a digest again keeps them
and changes nothing else.

This module is the public API. The work is done in :mod:`~tanglebrain.compress._render`
(terminal rendering), :mod:`~tanglebrain.compress._masks` (line keys),
:mod:`~tanglebrain.compress._rules` (line analysis), :mod:`~tanglebrain.compress._select`
(faithful selection) and :mod:`~tanglebrain.compress._budget` (budgeted mode).
"""

from __future__ import annotations

import re

from tanglebrain.compress._budget import fit
from tanglebrain.compress._render import Value
from tanglebrain.compress._runs import is_note
from tanglebrain.compress._select import faithful_lines, plan

__all__ = ["Digest", "binary_kind", "binary_note", "budgeted", "decode", "digest", "faithful"]

_SAMPLE = 65536  # characters looked at to tell binary data from text
_BINARY_SHARE = 0.3  # share of undecodable or control characters that makes data binary
# undecodable bytes and control characters that text does not use (tab, newlines, form feed,
# backspace and escape sequences are text)
_NOT_TEXT = re.compile(r"[\ufffd\x00-\x07\x0e-\x1a\x1c-\x1f]")
_MAGIC = (  # how common binary formats start, once decoded
    ("\ufffdPNG", "PNG image"),
    ("GIF8", "GIF image"),
    ("%PDF-", "PDF document"),
    ("PK\x03\x04", "zip archive"),
    ("\x1f\ufffd", "gzip data"),
    ("\x7fELF", "ELF executable"),
    ("MZ", "Windows executable"),
    ("SQLite format 3\x00", "SQLite database"),
)


def decode(data: bytes) -> str:
    """Decode bytes as UTF-8, replacing invalid sequences; never raises.

    Bytes that start with a UTF-16 byte-order mark are decoded as UTF-16.

    Args:
        data: Raw bytes, e.g. a log piped into the CLI.

    Returns:
        The decoded text.
    """
    raw = bytes(data)
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # e.g. PowerShell's redirected output
        return raw.decode("utf-16", errors="replace")
    return raw.decode("utf-8", errors="replace")


def binary_kind(text: str) -> str | None:
    """What binary data ``text`` holds, or None when it is text.

    Data counts as binary when, among its first 64 Ki characters, at least 30 % could not be
    decoded or are control characters that text does not use.

    Args:
        text: Decoded data (see :func:`decode`).

    Returns:
        A short name ("PNG image", "gzip data", "binary data"), or None.
    """
    sample = text[:_SAMPLE]
    if not sample or len(_NOT_TEXT.findall(sample)) < len(sample) * _BINARY_SHARE:
        return None
    return next((kind for magic, kind in _MAGIC if sample.startswith(magic)), "binary data")


def binary_note(text: str, size: int | None = None) -> str | None:
    """A one-line note standing for binary data, or None when ``text`` is text.

    Args:
        text: Decoded data.
        size: Its size in bytes before decoding, when known (else one byte a character).

    Returns:
        E.g. ``[… PNG image, 12,345 bytes: binary, not shown …]``.
    """
    kind = binary_kind(text)
    if kind is None:
        return None
    return f"[… {kind}, {len(text) if size is None else size:,} bytes: binary, not shown …]"


class Digest(Value):
    """A compressed text with its bookkeeping.

    Attributes:
        text: The compressed text.
        bytes_in: UTF-8 size of the input.
        bytes_out: UTF-8 size of ``text``.
        lines_in: Number of input lines.
        lines_kept: Number of lines of ``text`` that come from the input (annotations and
            blank lines not counted).
        budget: The byte budget, or None for a faithful digest.
    """

    __slots__ = ("budget", "bytes_in", "bytes_out", "lines_in", "lines_kept", "text")

    def __init__(
        self,
        text: str,
        bytes_in: int,
        bytes_out: int,
        lines_in: int,
        lines_kept: int,
        budget: int | None,
    ) -> None:
        self.text = text
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.lines_in = lines_in
        self.lines_kept = lines_kept
        self.budget = budget


def faithful(text: str) -> str:
    """Compress ``text`` without losing any must-keep fact.

    Args:
        text: Decoded text (see :func:`decode`).

    Returns:
        The digest: lines joined by newlines, without a trailing newline.
    """
    return "\n".join(faithful_lines(plan(text)))


def budgeted(text: str, budget: int) -> str:
    """Compress ``text`` to at most ``budget`` UTF-8 bytes.

    Starts from the faithful digest; when that is too big, keeps a counts summary and then as
    many facts as fit (failures and errors before warnings, rare kinds before frequent ones,
    first and last occurrences of each kind), ending with a note of what was cut.

    Args:
        text: Decoded text.
        budget: Hard cap in bytes; the result never exceeds it (it may be empty).

    Returns:
        The digest.
    """
    if budget <= 0:
        return ""
    p = plan(text)
    full = "\n".join(faithful_lines(p))
    if len(full.encode()) <= budget:
        return full
    return fit(p, budget)


def digest(text: str, budget: int | None = None) -> Digest:
    """Compress ``text`` faithfully, or within ``budget`` bytes when one is given.

    Args:
        text: Decoded text.
        budget: Byte cap, or None for a faithful digest.

    Returns:
        The :class:`Digest`.
    """
    out = faithful(text) if budget is None else budgeted(text, budget)
    return Digest(
        text=out,
        bytes_in=len(text.encode("utf-8", "surrogatepass")),
        bytes_out=len(out.encode()),
        lines_in=text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        lines_kept=sum(1 for line in out.split("\n") if line and not is_note(line)),
        budget=budget,
    )
