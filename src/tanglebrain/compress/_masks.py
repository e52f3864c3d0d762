"""Line keys for :mod:`tanglebrain.compress`: whitespace squashing and volatile-token masking.

Lines are compared, counted and folded together by keys in which the parts that change from
run to run are masked: :func:`template` (cheap, every hex/number run), :func:`volatile_masked`
(timestamps, UUIDs, hex ids, IPs), then :func:`kinds` (every number) or :func:`fold_keys`
(only durations, sizes, percentages and long numbers). :func:`run_keys` tells which lines of one
template may be shown as one: only volatile tokens and counters (see :func:`counts_up`) may
differ. Pure functions; standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from itertools import pairwise

_WS = re.compile(r"\s+")
_HSPACE = re.compile(r"[^\S\n]{2,}|[^\S \n]")
_VOLATILE = re.compile(r"\d[\da-fA-F]*")
_HEX_HEAD_REVERSED = re.compile(r"#[a-fA-F]+")
_BLANKS = re.compile("  \x20*")  # two literal blanks first: the engine searches for them fast
_DIGITS = re.compile(r"\d+")
# Volatile tokens, masked in this order (timestamps, UUIDs, hex, IPs, clock times, numbers),
# then every placeholder becomes "<*>". A leading "\b" is written as "first character, then
# (?<!\w<first>)" so the regex engine can skip ahead to candidate characters; the matches are
# the same.
_HEXC = "[0-9a-fA-F]"
_MASKS = (
    (
        re.compile(
            r"\d(?<!\w\d)\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
        ),
        "<TS>",
    ),
    (
        re.compile(rf"{_HEXC}(?<!\w{_HEXC}){_HEXC}{{7}}-(?:{_HEXC}{{4}}-){{3}}{_HEXC}{{12}}\b"),
        "<UUID>",
    ),
    (re.compile(r"0(?<!\w0)x[0-9a-fA-F]+\b"), "<HEX>"),
    (
        re.compile(
            rf"{_HEXC}(?<!\w{_HEXC})(?:(?<=\d)|(?={_HEXC}*\d))(?:(?<=[a-fA-F])|(?={_HEXC}*[a-fA-F]))"
            rf"{_HEXC}{{6,}}\b"
        ),
        "<HEX>",
    ),
    (re.compile(r"\d(?<!\w\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\d(?<!\w\d)\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<TS>"),
    (_DIGITS, "<N>"),
    (re.compile(r"<[^<>\s]{1,12}>"), "<*>"),
)
# numbers that are volatile on their own: durations, sizes, percentages, long ids
_VOLATILE_NUM = re.compile(
    r"\d(?<!\w\d)(?:\d*(?:\.\d+)?(?:\s?(?:ms|us|µs|ns|s|secs?|seconds?|mins?|minutes?|h|hours?)"
    r"|\s?(?:[kKMGT]i?B|bytes?)|%)(?![\w])"
    r"|\d{5,}\b)"
)


# a number as a run key keeps it: an integer or a decimal
_NUM = re.compile(r"\d+(?:\.\d+)?")
# the key naming the number that follows ("latency_ms=", '"status": ')
_KEY_BEFORE = re.compile(r'(?:([A-Za-z_][\w.\-]*)=|"([A-Za-z_][\w.\-]*)"[ \t]*:[ \t]*)\Z')
_PLACEHOLDER = re.compile(r"<[A-Z]+>")
_LETTER = re.compile(r"[A-Za-z]")
# digits told apart in a masked number's order of magnitude (a placeholder stays short enough
# for the kinds mask to take it for one)
_MAX_MAGNITUDE = 12
_NAME_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")  # snake_case and camelCase words
COUNTER_MIN = 5  # fewer values are no evidence of counting
# words naming counters and clocks: with them, values that never go down count
_COUNTER_WORDS = frozenset((
    "count", "counter", "total", "seq", "sequence", "n", "num", "nr", "no", "index", "idx",
    "offset", "step", "iter", "iteration", "epoch", "tick", "frame", "round", "attempt",
    "batch", "gen", "generation", "cursor", "pos", "position", "uptime", "ts", "time",
    "timestamp", "clock",
))  # fmt: skip
# words naming measurements: those values never count, however they move
_MEASURE_WORDS = frozenset((
    "latency", "duration", "took", "elapsed", "rtt", "response", "wait", "ms", "us", "ns",
    "sec", "secs", "seconds", "bytes", "size", "len", "length", "status", "code", "rate",
    "load", "cpu", "mem", "memory", "usage", "temp", "temperature", "score",
))  # fmt: skip


def counts_up(name: str | None, xs: Sequence[float]) -> bool:
    """Whether values, in line order, are a counter or a clock rather than a measurement.

    It takes evidence, not just a rise: at least :data:`COUNTER_MIN` values that never go
    down and end higher than they start, a name that is not a measurement (``latency_ms``,
    ``status``) and either a counter or clock name (``seq``, ``offset``, ``ts``) or a constant
    step (``unit 1``, ``unit 2``, ...). A latency that keeps growing is an incident, not a
    counter.

    Args:
        name: The field's key, or None for a number without one.
        xs: The values.

    Returns:
        True when the values only count.
    """
    if len(xs) < COUNTER_MIN or xs[-1] <= xs[0] or any(b < a for a, b in pairwise(xs)):
        return False
    words = {w.lower() for w in _NAME_WORDS.findall(name or "")}
    if words & _MEASURE_WORDS:
        return False
    if words & _COUNTER_WORDS:
        return True
    step = xs[1] - xs[0]
    return all(math.isclose(b - a, step, rel_tol=1e-9, abs_tol=1e-9) for a, b in pairwise(xs))


def run_keys(runs: list[list[str]]) -> list[list[str]]:
    """For each run of lines sharing a template: keys under which its lines may be one line.

    Two lines get one key when they differ only in volatile tokens: timestamps, UUIDs, hex ids,
    IPs, long numbers, counters, and durations, sizes and percentages of the same order of
    magnitude (``12 ms`` and ``15 ms``, not ``12 ms`` and ``9000 ms``). Any other number
    (a status, a count, a bare value) is content: lines that differ in one are kept apart.

    Args:
        runs: Runs of consecutive lines, each run sharing one :func:`template`.

    Returns:
        The keys, run by run and line by line (comparable within a run only).
    """
    flat = [line for run in runs for line in run]
    # lines of one template differ in blanks only in their width: one blank stands for any
    text = _mask_volatile(_BLANKS.sub(" ", "\n".join(flat).replace("\t", " ")))
    masked = _VOLATILE_NUM.sub(_mask_digits, text).split("\n")
    out: list[list[str]] = []
    k = 0
    for run in runs:
        out.append(_without_counters(masked[k : k + len(run)]))
        k += len(run)
    return out


def _without_counters(keys: list[str]) -> list[str]:
    """``keys`` with the numbers that count up along consecutive lines of one shape masked."""
    if len(keys) < COUNTER_MIN:
        return keys
    shapes = _NUM.sub("\x00", "\n".join(keys)).split("\n")
    out = list(keys)
    a = 0
    while a < len(keys):
        b = a
        while b < len(keys) and shapes[b] == shapes[a]:
            b += 1
        shape = shapes[a]
        parts = shape.split("\x00")
        width = len(parts) - 1
        # a line that says nothing but its numbers is its numbers, never a counter
        if b - a >= COUNTER_MIN and width and _LETTER.search(_PLACEHOLDER.sub("", shape)):
            flat = _NUM.findall("\n".join(keys[a:b]))
            rows = [flat[r : r + width] for r in range(0, len(flat), width)]
            for c in range(width):
                named = _KEY_BEFORE.search(parts[c])
                name = (named.group(1) or named.group(2)) if named else None
                if counts_up(name, [float(row[c]) for row in rows]):
                    for row in rows:
                        row[c] = "<C>"
            out[a:b] = [shape + "\x00" + " ".join(row) for row in rows]
        a = b
    return out


def squash(line: str) -> str:
    """Collapse whitespace runs to one blank and strip the ends."""
    return _WS.sub(" ", line).strip()


def template(line: str) -> str:
    """Cheap template: hex runs containing a digit become ``#``, blank runs one blank."""
    # hex letters before the first digit are absorbed on the reversed text, where the
    # pattern starts with a literal and scans fast
    t = _HEX_HEAD_REVERSED.sub("#", _VOLATILE.sub("#", line)[::-1])[::-1]
    return _BLANKS.sub(" ", t.replace("\t", " "))


def squash_all(lines: list[str]) -> str:
    """Apply :func:`squash` to every line and join them with newlines."""
    return "\n".join(x.strip() for x in _HSPACE.sub(" ", "\n".join(lines)).split("\n"))


def volatile_masked(lines: list[str]) -> list[str]:
    """Squashed ``lines`` with timestamps, UUIDs, hex ids and IPs masked (placeholders).

    This is the first half of the fidelity-key masking; :func:`kinds` and :func:`fold_keys`
    finish it in two different ways.
    """
    if not lines:
        return []
    return _mask_volatile(squash_all(lines)).split("\n")


def _mask_volatile(s: str) -> str:
    for rx, rep in _MASKS[:6]:
        s = rx.sub(rep, s)
    return s


def kinds(masked: list[str]) -> list[str]:
    """Kinds of lines: :func:`volatile_masked` output with every number masked too."""
    s = _MASKS[7][0].sub("<*>", _DIGITS.sub("<N>", "\n".join(masked)))
    return s.split("\n") if masked else []


def fold_keys(masked: list[str]) -> list[str]:
    """Keys under which error and warning lines may be folded together.

    Finer than :func:`kinds`: on top of timestamps, UUIDs, hex ids and IPs only durations,
    sizes, percentages and long numbers are masked; small numbers (line and column numbers,
    counts, type variables like ``CAP#1``) are kept, since they usually carry meaning. A
    duration, size or percentage keeps its order of magnitude, so that a slow outlier is not
    folded into a fast line. Every masked number is a whole digit run, so equal keys imply
    equal kinds.
    """
    s = _VOLATILE_NUM.sub(_mask_digits, "\n".join(masked))
    return s.split("\n") if masked else []


def _mask_digits(m: re.Match[str]) -> str:
    """A volatile number masked; a duration, size or percentage keeps its order of magnitude."""
    s = m.group()
    if s.isdigit():  # a long number: an id, its size says nothing
        return "<N>"
    rest = s.lstrip("0123456789")
    width = min(len(s) - len(rest), _MAX_MAGNITUDE)
    return "<" + "N" * width + ">" + _DIGITS.sub("<N>", rest)
