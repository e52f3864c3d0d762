"""Faithful selection for :mod:`tanglebrain.compress`: which lines a digest keeps, and how.

:func:`plan` groups rendered lines into entries (runs of similar lines) and marks the entries
a faithful digest keeps: every first occurrence of a must-keep fact, errors, warnings and
summaries (recurrences folded into the first of their kind), short continuations of errors,
head and tail context. :func:`faithful_lines` prints a plan, announcing what was elided.
The budgeted mode (:mod:`tanglebrain.compress._budget`) picks from the same plan.
"""

from __future__ import annotations

from tanglebrain.compress._fields import described, field_notes
from tanglebrain.compress._masks import fold_keys, squash, volatile_masked
from tanglebrain.compress._render import narrow, render
from tanglebrain.compress._rules import ERROR, WARNING, Analysis, analyse
from tanglebrain.compress._runs import is_note, runs

HEAD = 8  # lines of context kept at the start
TAIL = 8  # ... and at the end
CONTEXT = 3  # continuation lines kept after an error line
_FILL = 30  # a lone elided line up to this long is shown instead of announced
_SMALL_GAP = 10  # shorter gaps are announced without kinds
_LONG = 1200  # longer lines without errors lose their middle (facts there are listed)
_KINDS_SHOWN = 5  # most frequent elided kinds listed at the end


def thousands(x: int) -> str:
    """``x`` with thousands separators."""
    return f"{x:,}"


def _kind(tmpl: str) -> str:
    return " ".join(tmpl.split(None, 2)[:2])


def clip(s: str, width: int) -> str:
    """Shorten ``s`` to ``width`` characters, cutting its middle."""
    if len(s) <= width:
        return s
    head = max(width * 2 // 5, 1)
    return s[:head] + "…" + s[len(s) - (width - head - 1) :] if width > head + 1 else s[:width]


def indent(line: str) -> int:
    """The width of ``line``'s leading whitespace."""
    return len(line) - len(line.lstrip())


def continues(line: str, base: int) -> bool:
    """Whether ``line`` continues a message indented by ``base`` (detail, gutter, frame)."""
    return indent(line) > base or line.lstrip().startswith(("|", "│", "at "))


class Plan:
    """Faithful selection over entries; an entry is a run of consecutive similar lines.

    Attributes:
        a: The analysis of the rendered lines.
        first_ts: First GitHub Actions timestamp removed ("" if none).
        last_ts: Last such timestamp ("" if none).
        start: First line of each entry.
        count: Lines in each entry.
        keep: Whether the faithful digest shows the entry.
        folded: Recurrences shown elsewhere, counted on this entry.
        rep: Entry this one is folded into, or -1.
    """

    __slots__ = ("a", "count", "first_ts", "folded", "keep", "last_ts", "rep", "start")

    def __init__(
        self,
        a: Analysis,
        first_ts: str,
        last_ts: str,
        start: list[int],
        count: list[int],
        keep: list[bool],
        folded: list[int],
        rep: list[int],
    ) -> None:
        self.a = a
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.start = start
        self.count = count
        self.keep = keep
        self.folded = folded
        self.rep = rep

    def line(self, j: int) -> str:
        """The first line of entry ``j``."""
        return self.a.lines[self.start[j]]

    def plain(self, j: int) -> bool:
        """Whether entry ``j`` is ordinary text: not blank, progress, folded or a note."""
        i = self.start[j]
        line = self.a.lines[i]
        return bool(line) and not self.a.progress[i] and self.rep[j] < 0 and not is_note(line)


def _fold(key_of: dict[str, str], want: list[str]) -> None:
    """Add the fold keys of the lines in ``want`` not yet in ``key_of``."""
    todo = list(dict.fromkeys(x for x in want if x not in key_of))
    key_of.update(zip(todo, fold_keys(volatile_masked(todo)), strict=True))


def _fresh(a: Analysis, start: list[int]) -> list[bool]:
    """For every entry: does its line show a fact for the first time."""
    fresh = [False] * len(start)
    seen: set[str] = set()
    for j, i in enumerate(start):
        fs = a.facts[i]
        if fs and not seen.issuperset(fs):
            seen.update(fs)
            fresh[j] = True
    return fresh


def _keep_first_of_kinds(p: Plan, fresh: list[bool], key_of: dict[str, str]) -> list[int]:
    """Keep the first error, warning and summary of each kind; fold recurrences into it.

    Returns:
        The kept error entries (anchors for continuation lines).
    """
    a, lines, start = p.a, p.a.lines, p.start
    _fold(key_of, [lines[i] for j, i in enumerate(start) if a.level[i] == ERROR and not fresh[j]])
    # warnings fold like errors: a number that carries meaning makes another kind. Only the
    # many warnings of one shape with fields (key=value, JSON) fold by their template: the
    # field notes list their values (see fields())
    warnings = [x for x, level in zip(lines, a.level, strict=True) if level == WARNING]
    many = {x for x, big in zip(warnings, described(warnings), strict=True) if big}
    _fold(key_of, [x for x in warnings if x not in many])
    reps: dict[tuple[str, str], int] = {}
    anchors: list[int] = []
    for j, i in enumerate(start):
        line = lines[i]
        if not line:
            continue
        key: tuple[str, str] | None = None
        if is_note(line):
            p.keep[j] = True
        elif a.summary[i]:
            key = ("s", squash(line))
        elif a.level[i] == ERROR:
            key = ("e", key_of[line]) if line in key_of else ("x", line)
            if fresh[j]:
                reps.setdefault(("x", line), j)
            elif ("x", line) in reps:
                key = ("x", line)
        elif a.level[i] == WARNING:
            key = ("w", key_of[line]) if line in key_of else ("t", a.tmpl[i])
        if key is not None:
            r = reps.setdefault(key, j)
            if r != j and not fresh[j]:
                p.folded[r] += p.count[j]
                p.rep[j] = r
            else:
                p.keep[j] = True
        p.keep[j] = p.keep[j] or fresh[j]
        if p.keep[j] and a.level[i] == ERROR:
            anchors.append(j)
    return anchors


def _keep_continuations(p: Plan, anchors: list[int]) -> None:
    """Keep continuation lines of kept errors (details, gutters, stack frames)."""
    lines, start, m = p.a.lines, p.start, len(p.start)
    for j in anchors:
        base = indent(lines[start[j]])
        for k in range(j + 1, min(m, j + 1 + CONTEXT)):
            i = start[k]
            if not lines[i] or p.a.progress[i] or p.rep[k] >= 0 or not continues(lines[i], base):
                break
            p.keep[k] = True


def _keep_head_tail(p: Plan) -> None:
    m = len(p.start)
    for order, limit in ((range(m), HEAD), (range(m - 1, -1, -1), TAIL)):
        taken = 0
        for j in order:
            if taken >= limit:
                break
            if p.plain(j):
                p.keep[j] = True
                taken += 1


def _fill_lone_gaps(p: Plan) -> None:
    """A gap of one short line is cheaper shown than announced."""
    m = len(p.start)
    j = 0
    while j < m:
        if p.keep[j]:
            j += 1
            continue
        k = j
        gap = []
        while k < m and not p.keep[k]:
            if p.line(k):
                gap.append(k)
            k += 1
        if len(gap) == 1 and p.count[gap[0]] == 1 and p.plain(gap[0]):
            p.keep[gap[0]] = len(p.line(gap[0])) <= _FILL
        j = k


def _keep_blanks(p: Plan) -> None:
    """Blank lines stay where the line before them stays."""
    last_kept = False
    for j in range(len(p.start)):
        if p.line(j):
            last_kept = p.keep[j]
        else:
            p.keep[j] = last_kept


def plan(text: str) -> Plan:
    """Render and analyse ``text``, then select what its faithful digest keeps.

    Args:
        text: Decoded text.

    Returns:
        The :class:`Plan`.
    """
    rendered = render(text)
    a = analyse(rendered.lines)
    key_of: dict[str, str] = {}
    _fold(key_of, [x for i, x in enumerate(a.lines) if a.level[i] == ERROR and not a.facts[i]])
    start, count = runs(a, key_of)
    m = len(start)
    p = Plan(a, rendered.first_ts, rendered.last_ts, start, count, [False] * m, [0] * m, [-1] * m)
    anchors = _keep_first_of_kinds(p, _fresh(a, start), key_of)
    _keep_continuations(p, anchors)
    _keep_head_tail(p)
    _fill_lone_gaps(p)
    _keep_blanks(p)
    return p


def shorten(p: Plan, j: int) -> str:
    """An entry's line as printed.

    Error, warning and summary lines are verbatim. Other lines longer than ``_LONG`` lose their
    middle (the facts named there are listed); lines without facts also get long runs of
    blanks narrowed.
    """
    i = p.start[j]
    line = p.a.lines[i]
    if p.a.level[i] or p.a.summary[i]:
        return line
    if len(line) > _LONG and " chars elided" not in line:
        head, tail = line[: _LONG // 2], line[-_LONG // 6 :]
        middle = [f for f in p.a.facts[i] if f not in head and f not in tail]
        named = "; it named: " + " ".join(middle) if middle else ""
        cut = thousands(len(line) - len(head) - len(tail))
        out = f"{head} [… {cut} chars elided{named} …] {tail}"
        line = out if len(out) < len(line) * 3 // 4 else line
    return line if p.a.facts[i] else narrow(line)


def shown(p: Plan, j: int) -> str:
    """An entry as printed: its first line, with ``[×N]`` or ``(×N)`` when it stands for more."""
    text = shorten(p, j)
    total = p.count[j] + p.folded[j]
    if text and p.folded[j]:
        return f"{text} (×{thousands(total)})"
    if text and total > 1:
        return f"{text} [×{thousands(total)}]"
    return text


def _gap_note(p: Plan, gap: list[int]) -> str | None:
    lines, sorts = 0, set()
    for j in gap:
        if p.line(j):
            lines += p.count[j]
            sorts.add(_kind(p.a.tmpl[p.start[j]]))
    if not lines:
        return None
    if lines < _SMALL_GAP:
        return f"[… {lines} line{'s' if lines > 1 else ''} …]"
    if len(sorts) == 1:
        return f"[… {thousands(lines)} similar lines elided …]"
    return f"[… {thousands(lines)} lines of {thousands(len(sorts))} kinds elided …]"


def _elided_kinds(p: Plan, elided: dict[str, list[int]]) -> list[str]:
    """Notes naming the most frequent kinds of elided lines, each with an example."""
    sizes = sorted(
        ((sum(p.count[j] for j in js), js[0]) for js in elided.values()),
        key=lambda t: (-t[0], t[1]),
    )
    out: list[str] = []
    if sum(s for s, _ in sizes) >= 20:
        for size, j in sizes[:_KINDS_SHOWN]:
            if size >= 3:
                example = clip(narrow(p.line(j).strip()), 100)
                out.append(f"[… {thousands(size)} elided lines like: {example} …]")
    return out


def fields(p: Plan) -> list[str]:
    """Notes on the varying fields of frequent line shapes the faithful digest hides."""
    a = p.a
    shown_rows = {p.start[j] for j in range(len(p.start)) if p.keep[j]}
    return field_notes(
        a.lines,
        lambda i: not a.progress[i] and not is_note(a.lines[i]),
        lambda i: i not in shown_rows,
        lambda line: clip(narrow(line.strip()), 100),
    )


def faithful_lines(p: Plan) -> list[str]:
    """Print a plan: kept entries in order, elided gaps announced, frequent elided kinds listed.

    The varying fields of the line shapes it hides come last (see :func:`fields`).

    Args:
        p: The plan (see :func:`plan`).

    Returns:
        The lines of the faithful digest.
    """
    out: list[str] = []
    if p.first_ts:
        out.append(f"[… GitHub Actions timestamps removed: {p.first_ts} to {p.last_ts} …]")
    gap: list[int] = []
    elided: dict[str, list[int]] = {}
    for j in range(len(p.start)):
        if not p.keep[j]:
            gap.append(j)
            if p.line(j):
                elided.setdefault(_kind(p.a.tmpl[p.start[j]]), []).append(j)
            continue
        note = _gap_note(p, gap) if gap else None
        if note:
            out.append(note)
        gap = []
        out.append(shown(p, j))
    note = _gap_note(p, gap) if gap else None
    if note:
        out.append(note)
    return out + _elided_kinds(p, elided) + fields(p)
