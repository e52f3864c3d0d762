"""Field summaries for :mod:`tanglebrain.compress`: what varies inside lines of one shape.

Service logs repeat one line shape thousands of times, and the lines differ only in their
fields (``status=500``, ``"level":"error"``, a latency as a bare number). A digest that folds
such lines into one would hide the failures, so :func:`field_notes` groups lines by shape (the
template with every ``key=value`` / ``"key": value`` value masked) and, for each shape that
the digest does not show in full, describes each varying field:

* a low-cardinality field (status codes, levels, endpoints): its distribution, counts per
  value, most frequent first, with the first line numbers of every value but the most common;
* a numeric field with many values (latencies, sizes, durations): count, min, median, max and
  the line of the max, so a slow outlier cannot hide. Identifiers say nothing, nor do counters
  and clocks, but a field counts only on evidence (see
  :func:`~tanglebrain.compress._masks.counts_up`): a latency that only grows is described.

Line numbers are 1-based, of the rendered text. Pure functions; standard library only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import accumulate

from tanglebrain.compress._masks import counts_up, template

CATEGORIES = 8  # at most this many distinct values: a distribution, not a range
_MIN_LINES = 20  # smaller shapes are shown or announced well enough already
_MIN_HIDDEN = 10  # ... and so are shapes the digest shows almost entirely
_SHAPES_SHOWN = 5  # most frequent shapes described
_FIELDS_SHOWN = 8  # fields described per shape
_FIRST_LINES = 3  # first line numbers given for each rare value
_TOP_VALUES = 3  # most common values named for a field with many values

# "key": value (JSON) and key=value (logfmt); a value never spans lines
# (group 1: the key with its punctuation, group 2: the value)
_JSON_KV = re.compile(r'("[A-Za-z_][\w.\-]*"[ \t]*:[ \t]*)("(?:[^"\\\n]|\\.)*"|[^\s,}\]]+)')
_LOGFMT_KV = re.compile(r'(?<![\w.\-/"])([A-Za-z_][\w.\-]*=)("(?:[^"\\\n]|\\.)*"|[^\s,;"]*)')
# a token that is one number (optionally quoted, with a unit): a positional field
_NUM_SLOT = re.compile(r"[\"'(\[]?#(?:\.#)?(?:ms|us|µs|ns|s|[kKMG]i?B|B|%)?[\"')\],;]?")
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)(ms|us|µs|ns|s|[kKMG]i?B|B|%)?")
# names of identifiers: their spread says nothing (counters and clocks are told by their values
# too: a "request_time" that goes up and down is a measurement)
_ID_NAME = re.compile(r"(?i)(?:^|[_.\-])(?:id|pid|tid|uid|gid|port|seq|line|lineno)$")


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) > 1 and v[0] == '"' == v[-1] else v


class _Pairs:
    """The key/value pairs of some lines, found in one pass over their joined text.

    Attributes:
        masked: Each line with every value masked as ``<v>``.
        found: Keys (with their punctuation) and values of the JSON pairs, then of the
            logfmt pairs (those found once JSON values are masked), in text order.
        offset: For each kind, the index in ``found`` of each line's first pair.
    """

    def __init__(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        self.found: list[tuple[list[str], list[str]]] = []
        for rx in (_JSON_KV, _LOGFMT_KV):
            parts = rx.split(text)
            self.found.append((parts[1::3], parts[2::3]))
            parts[2::3] = ["<v>"] * len(parts[2::3])
            text = "".join(parts)
        self.masked = text.split("\n")
        self.offset = [
            list(accumulate((m.count(tag) for m in self.masked), initial=0))
            for tag in ('":<v>', "=<v>")
        ]

    def columns(self, rows: list[int]) -> dict[str, list[str]]:
        """The values of each pair position on lines ``rows`` (all of one shape), by key."""
        cols: dict[str, list[str]] = {}
        first = self.masked[rows[0]]
        for kind, tag in enumerate(('":<v>', "=<v>")):
            keys, values = self.found[kind]
            offset = self.offset[kind]
            for pos in range(first.count(tag)):
                at = [offset[r] + pos for r in rows]
                if len({keys[k] for k in at}) > 1:
                    continue  # keys with numbers in them are not one field
                column = [values[k] for k in at]
                if column[0][:1] == '"':
                    column = [_unquote(v) for v in column]
                name = keys[at[0]].rstrip(" \t:=").strip('"')
                cols.setdefault(name, column)
        return cols


def _thousands(x: int) -> str:
    return f"{x:,}"


def _first_rows(values: list[str], value: str, rows: list[int]) -> list[int]:
    out: list[int] = []
    k = -1
    while len(out) < _FIRST_LINES:
        try:
            k = values.index(value, k + 1)
        except ValueError:
            break
        out.append(rows[k] + 1)
    return out


def _distribution(name: str, values: list[str], rows: list[int]) -> str:
    counts = Counter(values)
    first = {v: _first_rows(values, v, rows) for v in counts}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], first[kv[0]][0]))
    parts = [f"{ranked[0][0]} ×{_thousands(ranked[0][1])}"]
    for value, n in ranked[1:]:
        lines = ", ".join(str(x) for x in first[value])
        parts.append(f"{value} ×{_thousands(n)} (first line{'s' if n > 1 else ''} {lines})")
    return f"[… {name}: " + "; ".join(parts) + " …]"


def _floats(values: list[str]) -> list[float] | None:
    """The values as numbers (one unit for all, if any), or None."""
    try:
        xs = list(map(float, values))
    except ValueError:
        pass
    else:  # float() also takes "nan", "inf" and "1_000"
        return xs if all(map(math.isfinite, xs)) else None
    nums = [_NUMBER.fullmatch(v) for v in values]
    units = {m.group(2) for m in nums if m}
    if not all(nums) or len(units) > 1:
        return None
    return [float(m.group(1)) for m in nums if m]


def _spread(name: str, values: list[str], xs: list[float], rows: list[int]) -> str:
    ordered = sorted(xs)
    low, mid, high = ordered[0], ordered[len(xs) // 2], ordered[-1]
    top = xs.index(high)  # the first line holding the max
    return (
        f"[… {name}: {_thousands(len(xs))} values, min {values[xs.index(low)]}, "
        f"median {values[xs.index(mid)]}, max {values[top]} at line {rows[top] + 1} …]"
    )


def _many(name: str, values: list[str]) -> str | None:
    counts = Counter(values)
    if len(counts) * 2 > len(values):
        return None  # mostly unique: identifiers, timestamps, messages
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:_TOP_VALUES]
    named = "; ".join(f"{v} ×{_thousands(n)}" for v, n in top)
    return f"[… {name}: {_thousands(len(counts))} distinct values, most common {named} …]"


def describe(name: str, values: list[str], rows: list[int]) -> str | None:
    """A note on one field's values, or None when they do not vary or say nothing.

    Args:
        name: The field's name (its key, or ``field N`` for the Nth token of a line).
        values: Its value on each line.
        rows: The 0-based line number of each value.

    Returns:
        A distribution for at most :data:`CATEGORIES` distinct values, else a numeric spread
        (count, min, median, max and the line of the max), else the most common values. None
        for identifiers, counters and clocks.
    """
    distinct = len(set(values))
    if distinct < 2:
        return None
    if distinct <= CATEGORIES:
        return _distribution(name, values, rows)
    if _ID_NAME.search(name):
        return None
    xs = _floats(values)
    if xs is None:  # not numbers, or mixed units
        return _many(name, values)
    return None if counts_up(name, xs) else _spread(name, values, xs, rows)


def _fields(group: list[int], rows: list[int], pairs: _Pairs) -> list[str]:
    """Notes on the varying fields of lines ``group`` of ``pairs`` (all of one shape).

    ``rows`` are their line numbers in the text.
    """
    by_name = pairs.columns(group)
    first = pairs.masked[group[0]]
    tokens = first.split()
    shape = template(first).split()
    for k, tok in enumerate(shape if len(shape) == len(tokens) else []):
        if _NUM_SLOT.fullmatch(tok):
            column = [pairs.masked[i].split() for i in group]
            if all(len(t) == len(tokens) for t in column):
                by_name[f"field {k + 1}"] = [t[k].strip("\"'()[],;") for t in column]
    ranked: list[tuple[int, int, str]] = []
    for k, (name, values) in enumerate(by_name.items()):
        note = describe(name, values, rows)
        if note:
            # fields with the rarest values first: those are the anomalies (a budget may
            # keep only the first few notes)
            rare = min(Counter(values).values()) if " values, min " not in note else len(rows)
            ranked.append((rare, k, note))
    return [note for _, _, note in sorted(ranked)[:_FIELDS_SHOWN]]


def described(lines: Sequence[str]) -> list[bool]:
    """Whether each line has fields and shares its shape with enough of ``lines`` to be described.

    Args:
        lines: Lines of one text (e.g. its warnings).

    Returns:
        For each line, whether :func:`field_notes` would describe its shape when hidden: it has
        ``key=value`` or ``"key": value`` fields and at least as many lines share its shape as
        make a shape worth describing.
    """
    if len(lines) < _MIN_LINES:
        return [False] * len(lines)
    shapes = template("\n".join(_Pairs(list(lines)).masked)).split("\n")
    sizes = Counter(shapes)
    return [sizes[s] >= _MIN_LINES and "<v>" in s for s in shapes]


def field_notes(
    lines: Sequence[str],
    candidate: Callable[[int], bool],
    hidden: Callable[[int], bool],
    example: Callable[[str], str],
) -> list[str]:
    """Notes describing the varying fields of frequent line shapes the digest hides.

    Args:
        lines: The rendered lines.
        candidate: Whether line ``i`` may be described (not blank, progress or a note).
        hidden: Whether line ``i`` is not shown verbatim in the digest.
        example: How to print a line as an example (shortened).

    Returns:
        For each described shape, most frequent first: a header naming the shape by its first
        line, then one note per varying field.
    """
    rows = [i for i, line in enumerate(lines) if ("=" in line or '":' in line) and candidate(i)]
    if len(rows) < _MIN_LINES:
        return []
    picked = [lines[i] for i in rows]
    pairs = _Pairs(picked)
    groups: dict[str, list[int]] = {}
    for n, s in enumerate(template("\n".join(pairs.masked)).split("\n")):
        if "<v>" in s or "#" in s:
            groups.setdefault(s, []).append(n)
    big = [g for g in groups.values() if len(g) >= _MIN_LINES]
    big = [g for g in big if sum(1 for n in g if hidden(rows[n])) >= _MIN_HIDDEN]
    out: list[str] = []
    for group in sorted(big, key=lambda g: (-len(g), g[0]))[:_SHAPES_SHOWN]:
        notes = _fields(group, [rows[n] for n in group], pairs)
        if notes:
            like = example(picked[group[0]])
            out.extend([f"[… fields of {_thousands(len(group))} lines like: {like} …]", *notes])
    return out
