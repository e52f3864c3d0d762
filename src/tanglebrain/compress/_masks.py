"""Line keys for :mod:`tanglebrain.compress`: whitespace squashing and volatile-token masking.

Lines are compared, counted and folded together by keys in which the parts that change from
run to run are masked: :func:`template` (cheap, every hex/number run), :func:`volatile_masked`
(timestamps, UUIDs, hex ids, IPs), then :func:`kinds` (every number) or :func:`fold_keys`
(only durations, sizes, percentages and long numbers). Pure functions; standard library only.
"""

from __future__ import annotations

import re

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
    s = squash_all(lines)
    for rx, rep in _MASKS[:6]:
        s = rx.sub(rep, s)
    return s.split("\n")


def kinds(masked: list[str]) -> list[str]:
    """Kinds of lines: :func:`volatile_masked` output with every number masked too."""
    s = _MASKS[7][0].sub("<*>", _DIGITS.sub("<N>", "\n".join(masked)))
    return s.split("\n") if masked else []


def fold_keys(masked: list[str]) -> list[str]:
    """Keys under which error lines may be folded together.

    Finer than :func:`kinds`: on top of timestamps, UUIDs, hex ids and IPs only durations,
    sizes, percentages and long numbers are masked; small numbers (line and column numbers,
    counts, type variables like ``CAP#1``) are kept, since they usually carry meaning. Every
    masked number is a whole digit run, so equal keys imply equal kinds.
    """
    s = _VOLATILE_NUM.sub(_mask_digits, "\n".join(masked))
    return s.split("\n") if masked else []


def _mask_digits(m: re.Match[str]) -> str:
    return _DIGITS.sub("<N>", m.group())
