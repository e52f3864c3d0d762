"""Runs of similar lines for :mod:`tanglebrain.compress`: the entries a digest shows as one.

A run is consecutive lines that a digest may print as its first line and ``[×N]``: blank
lines together, error lines by their fold keys, other lines by their template, but only
where they differ in volatile tokens (see :func:`~tanglebrain.compress._masks.run_keys`).
Lines with facts, summaries and annotations join a run only when identical.
"""

from __future__ import annotations

from tanglebrain.compress._masks import run_keys
from tanglebrain.compress._rules import ERROR, Analysis


def is_note(line: str) -> bool:
    """Whether ``line`` is an annotation (``[… ``…`` …]``) rather than input text."""
    return line.startswith("[… ") and line.endswith(" …]")


def runs(a: Analysis, key_of: dict[str, str]) -> tuple[list[int], list[int]]:
    """Runs of similar lines (lines with facts, summaries and notes only when identical)."""
    lines = a.lines

    def run_key(i: int) -> tuple[str, str]:
        line = lines[i]
        if not line:
            return ("b", "")
        if a.facts[i] or a.summary[i] or is_note(line):
            return ("x", line)
        if a.level[i] == ERROR:
            return ("e", key_of[line])
        return (str(a.level[i]), a.tmpl[i])

    start: list[int] = []
    count: list[int] = []
    prev: tuple[str, str] | None = None
    for i in range(len(lines)):
        rk = run_key(i)
        if rk == prev:
            count[-1] += 1
        else:
            prev = rk
            start.append(i)
            count.append(1)
    return _split(a, start, count)


def _split(a: Analysis, start: list[int], count: list[int]) -> tuple[list[int], list[int]]:
    """Split runs of one template where their lines differ in more than volatile tokens.

    A template masks every number, but ``[×N]`` stands for N lines like the one shown: a status,
    a value or an outlier that differs must start a new entry (see
    :func:`~tanglebrain.compress._masks.run_keys`). Error runs are keyed finely already;
    progress lines are noise.
    """
    lines = a.lines
    todo = [
        j
        for j, (i, n) in enumerate(zip(start, count, strict=True))
        if n > 1
        and a.level[i] != ERROR
        and not a.progress[i]
        and lines[i]
        and lines[i : i + n].count(lines[i]) < n  # not all identical
    ]
    if not todo:
        return start, count
    keys = dict(
        zip(todo, run_keys([lines[start[j] : start[j] + count[j]] for j in todo]), strict=True)
    )
    new_start: list[int] = []
    new_count: list[int] = []
    for j, (i, n) in enumerate(zip(start, count, strict=True)):
        ks = keys.get(j)
        if ks is None:
            new_start.append(i)
            new_count.append(n)
            continue
        for k, key in enumerate(ks):
            if k and key == ks[k - 1]:
                new_count[-1] += 1
            else:
                new_start.append(i + k)
                new_count.append(1)
    return new_start, new_count
