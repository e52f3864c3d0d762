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

Near-identical means equal once volatile tokens are masked (timestamps, UUIDs, hex ids and
hashes, IPs, durations, sizes, long numbers; for lines without errors, every number).
Annotation lines start with ``[… `` and end with `` …]``; compressing a digest again keeps them
and changes nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tanglebrain.compress_rules import (
    ERROR,
    ERROR_WORD,
    WARNING,
    Analysis,
    analyse,
    fold_keys,
    kinds,
    narrow,
    render,
    squash,
    volatile_masked,
)

__all__ = ["Digest", "budgeted", "decode", "digest", "faithful"]

_HEAD = 8  # lines of context kept at the start
_TAIL = 8  # ... and at the end
_CONTEXT = 3  # continuation lines kept after an error line
_FILL = 30  # a lone elided line up to this long is shown instead of announced
_SMALL_GAP = 10  # shorter gaps are announced without kinds
_LONG = 1200  # longer lines without errors lose their middle (facts there are listed)
_KINDS_SHOWN = 5  # most frequent elided kinds listed at the end
_MARKER_ROOM = 24  # bytes allowed for the gap marker a unit may add in a budgeted digest


def decode(data: bytes) -> str:
    """Decode bytes as UTF-8, replacing invalid sequences; never raises.

    Args:
        data: Raw bytes, e.g. a log piped into the CLI.

    Returns:
        The decoded text.
    """
    return bytes(data).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Digest:
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

    text: str
    bytes_in: int
    bytes_out: int
    lines_in: int
    lines_kept: int
    budget: int | None


# a leading level tag such as "[ERROR]", "ERROR:" or "##[error]"
_TAG = re.compile(r"^(?:#*\[?(?:error|warn(?:ing)?|fatal|fail(?:ed)?)\]?:?\s*)+", re.IGNORECASE)
# an error word that only reports zero ("Errors: 0", "0 failed")
_ZERO_COUNT = re.compile(
    r"(?i)\b(?:errors?|failures?|failed|fatal|exceptions?)\s*[:=]\s*0\b"
    r"|\b0\s+(?:errors?|failures?|failed|exceptions?)\b"
)


def _is_note(line: str) -> bool:
    return line.startswith("[… ") and line.endswith(" …]")


def _n(x: int) -> str:
    return f"{x:,}"


def _kind(tmpl: str) -> str:
    return " ".join(tmpl.split(None, 2)[:2])


def _clip(s: str, width: int) -> str:
    """Shorten ``s`` to ``width`` characters, cutting its middle."""
    if len(s) <= width:
        return s
    head = max(width * 2 // 5, 1)
    return s[:head] + "…" + s[len(s) - (width - head - 1) :] if width > head + 1 else s[:width]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _continues(line: str, base: int) -> bool:
    """Whether ``line`` continues a message indented by ``base`` (detail, gutter, frame)."""
    return _indent(line) > base or line.lstrip().startswith(("|", "│", "at "))


@dataclass
class _Plan:
    """Faithful selection over entries; an entry is a run of consecutive similar lines."""

    a: Analysis
    first_ts: str
    last_ts: str
    start: list[int]  # first line of each entry
    count: list[int]  # lines in the entry
    keep: list[bool]
    folded: list[int]  # recurrences shown elsewhere, counted on this entry
    rep: list[int]  # entry this one is folded into, or -1

    def line(self, j: int) -> str:
        return self.a.lines[self.start[j]]


def _plan(text: str) -> _Plan:
    rendered = render(text)
    a = analyse(rendered.lines)
    lines = a.lines
    key_of: dict[str, str] = {}

    def fold(want: list[str]) -> None:
        todo = list(dict.fromkeys(x for x in want if x not in key_of))
        key_of.update(zip(todo, fold_keys(volatile_masked(todo)), strict=True))

    # 1. runs of similar lines (lines with facts, summaries and notes only when identical)
    fold([x for i, x in enumerate(lines) if a.level[i] == ERROR and not a.facts[i]])

    def run_key(i: int) -> tuple[str, str]:
        line = lines[i]
        if not line:
            return ("b", "")
        if a.facts[i] or a.summary[i] or _is_note(line):
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
    m = len(start)

    # 2. lines that show a fact for the first time
    fresh = [False] * m
    seen: set[str] = set()
    for j, i in enumerate(start):
        fs = a.facts[i]
        if fs and not seen.issuperset(fs):
            seen.update(fs)
            fresh[j] = True

    # 3. errors, warnings and summaries: first of each kind kept, recurrences folded into it
    fold([lines[i] for j, i in enumerate(start) if a.level[i] == ERROR and not fresh[j]])
    keep = [False] * m
    folded = [0] * m
    rep = [-1] * m
    reps: dict[tuple[str, str], int] = {}
    anchors: list[int] = []
    for j, i in enumerate(start):
        line = lines[i]
        if not line:
            continue
        key: tuple[str, str] | None = None
        if _is_note(line):
            keep[j] = True
        elif a.summary[i]:
            key = ("s", squash(line))
        elif a.level[i] == ERROR:
            key = ("e", key_of[line]) if line in key_of else ("x", line)
            if fresh[j]:
                reps.setdefault(("x", line), j)
            elif ("x", line) in reps:
                key = ("x", line)
        elif a.level[i] == WARNING:
            key = ("w", a.tmpl[i])
        if key is not None:
            r = reps.setdefault(key, j)
            if r != j and not fresh[j]:
                folded[r] += count[j]
                rep[j] = r
            else:
                keep[j] = True
        keep[j] = keep[j] or fresh[j]
        if keep[j] and a.level[i] == ERROR:
            anchors.append(j)

    # 4. continuation lines of kept errors (details, gutters, stack frames)
    for j in anchors:
        base = _indent(lines[start[j]])
        for k in range(j + 1, min(m, j + 1 + _CONTEXT)):
            i = start[k]
            if not lines[i] or a.progress[i] or rep[k] >= 0 or not _continues(lines[i], base):
                break
            keep[k] = True

    # 5. head and tail context
    def plain(j: int) -> bool:
        i = start[j]
        return bool(lines[i]) and not a.progress[i] and rep[j] < 0 and not _is_note(lines[i])

    for order, limit in ((range(m), _HEAD), (range(m - 1, -1, -1), _TAIL)):
        taken = 0
        for j in order:
            if taken >= limit:
                break
            if plain(j):
                keep[j] = True
                taken += 1

    # 6. a gap of one short line is cheaper shown than announced
    j = 0
    while j < m:
        if keep[j]:
            j += 1
            continue
        k = j
        gap = []
        while k < m and not keep[k]:
            if lines[start[k]]:
                gap.append(k)
            k += 1
        if len(gap) == 1 and count[gap[0]] == 1 and plain(gap[0]):
            keep[gap[0]] = len(lines[start[gap[0]]]) <= _FILL
        j = k

    # 7. blank lines stay where the line before them stays
    last_kept = False
    for j in range(m):
        if lines[start[j]]:
            last_kept = keep[j]
        else:
            keep[j] = last_kept
    return _Plan(a, rendered.first_ts, rendered.last_ts, start, count, keep, folded, rep)


def _shorten(p: _Plan, j: int) -> str:
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
        out = f"{head} [… {_n(len(line) - len(head) - len(tail))} chars elided{named} …] {tail}"
        line = out if len(out) < len(line) * 3 // 4 else line
    return line if p.a.facts[i] else narrow(line)


def _shown(p: _Plan, j: int) -> str:
    """An entry as printed: its first line, with ``[×N]`` or ``(×N)`` when it stands for more."""
    text = _shorten(p, j)
    total = p.count[j] + p.folded[j]
    if text and p.folded[j]:
        return f"{text} (×{_n(total)})"
    if text and total > 1:
        return f"{text} [×{_n(total)}]"
    return text


def _gap_note(p: _Plan, gap: list[int]) -> str | None:
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
        return f"[… {_n(lines)} similar lines elided …]"
    return f"[… {_n(lines)} lines of {_n(len(sorts))} kinds elided …]"


def _faithful_lines(p: _Plan) -> list[str]:
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
        out.append(_shown(p, j))
    note = _gap_note(p, gap) if gap else None
    if note:
        out.append(note)
    sizes = sorted(
        ((sum(p.count[j] for j in js), js[0]) for js in elided.values()),
        key=lambda t: (-t[0], t[1]),
    )
    if sum(s for s, _ in sizes) >= 20:
        for size, j in sizes[:_KINDS_SHOWN]:
            if size >= 3:
                example = _clip(narrow(p.line(j).strip()), 100)
                out.append(f"[… {_n(size)} elided lines like: {example} …]")
    return out


def faithful(text: str) -> str:
    """Compress ``text`` without losing any must-keep fact.

    Args:
        text: Decoded text (see :func:`decode`).

    Returns:
        The digest: lines joined by newlines, without a trailing newline.
    """
    return "\n".join(_faithful_lines(_plan(text)))


# --------------------------------------------------------------------------------------------
# Budgeted mode
# --------------------------------------------------------------------------------------------


def _units(p: _Plan) -> list[tuple[int, list[int]]]:
    """Groups of entries worth showing, most informative first, each with its tier.

    Tiers: 0 the last summaries (exit codes, totals); 1 the final block of errors; 2 the first
    line of each error kind (rare kinds first) whose line names an error or a fact; 3 other
    summaries; 4 the first line of each warning kind; 5 the first line of the remaining error
    kinds; 6 the last line of each error kind; 7 lines with facts; 8 head and tail.
    """
    a, lines, start = p.a, p.a.lines, p.start
    m = len(start)
    units: list[tuple[int, list[int]]] = []
    summaries = [j for j in range(m) if a.summary[start[j]]]
    units.extend((0, [j]) for j in reversed(summaries[-3:]))
    errors = [j for j in range(m) if a.level[start[j]] == ERROR]
    if errors:
        last = b = errors[-1]
        while b > 0:
            i = start[b - 1]
            if a.level[i] != ERROR and lines[i] and not _indent(lines[i]):
                break
            b -= 1
        units.append((1, [last]))
        units.extend((1, [j]) for j in range(b, last))

    def with_context(j: int) -> list[int]:
        base = _indent(lines[start[j]])
        grp = [j]
        for k in range(j + 1, min(m, j + 1 + _CONTEXT)):
            i = start[k]
            if not lines[i] or a.level[i] == ERROR or not _continues(lines[i], base):
                break
            grp.append(k)
        return grp

    kind_of = dict(
        zip(errors, kinds(volatile_masked([lines[start[j]] for j in errors])), strict=True)
    )

    def strong(j: int) -> bool:
        """An error line that says more than its level tag or a zero count: words or facts."""
        i = start[j]
        said = _ZERO_COUNT.sub("", _TAG.sub("", lines[i].strip()))
        return bool(a.facts[i]) or bool(ERROR_WORD.search(said))

    def by_kind(level: int, want: bool) -> tuple[list[int], list[int]]:
        groups: dict[str, list[int]] = {}
        for j in range(m):
            i = start[j]
            if a.level[i] == level and not a.summary[i] and strong(j) == want:
                groups.setdefault(kind_of[j] if level == ERROR else a.tmpl[i], []).append(j)
        ranked = sorted(groups.values(), key=lambda js: (sum(p.count[j] for j in js), -js[0]))
        return [js[0] for js in ranked], [js[-1] for js in ranked if len(js) > 1]

    err_first, err_last = by_kind(ERROR, True)
    units.extend((2, with_context(j)) for j in err_first)
    units.extend((3, [j]) for j in reversed(summaries))
    units.extend((4, with_context(j)) for j in by_kind(WARNING, True)[0])
    units.extend((5, with_context(j)) for j in by_kind(ERROR, False)[0])
    units.extend((6, with_context(j)) for j in err_last)
    units.extend((7, [j]) for j in range(m) if p.keep[j] and a.facts[start[j]])
    kept = [j for j in range(m) if p.keep[j] and lines[start[j]]]
    units.extend((8, [j]) for j in kept[:3] + kept[-3:])
    return units


def _body(p: _Plan, j: int) -> str:
    if p.keep[j]:
        return _shown(p, j)
    text = _shorten(p, j)
    return f"{text} [×{_n(p.count[j])}]" if p.count[j] > 1 and text else text


def _assemble(p: _Plan, chosen: list[int]) -> list[str]:
    if not chosen:
        return []
    out: list[str] = []
    prev = -1
    for j in [*sorted(chosen), len(p.start)]:
        hidden = sum(p.count[k] for k in range(prev + 1, j) if p.line(k))
        if hidden:
            out.append(f"[… {_n(hidden)} line{'s' if hidden > 1 else ''} …]")
        if j < len(p.start):
            out.append(_body(p, j))
        prev = j
    return out


def _utf8_cut(s: str, budget: int) -> str:
    raw = s.encode()
    return s if len(raw) <= budget else raw[: max(budget, 0)].decode("utf-8", errors="ignore")


def _size(lines: list[str]) -> int:
    return sum(len(x.encode()) + 1 for x in lines)


def _closing_note(shown: int, total: int) -> str:
    return (
        f"[… {_n(total - shown)} of {_n(total)} lines not shown; "
        "the full text is available as an attachment …]"
    )


def _counts_summary(p: _Plan, budget: int) -> list[str]:
    """Lines by level, then the most frequent error kinds with their counts."""
    a = p.a
    total = sum(1 for line in a.lines if line)
    n_err, n_warn = a.level.count(ERROR), a.level.count(WARNING)
    out = [
        f"[… {_n(total)} non-blank lines in: {_n(n_err)} error, {_n(n_warn)} warning, "
        f"{_n(total - n_err - n_warn)} other; cut to fit {_n(budget)} B …]"
    ]
    counts: dict[str, int] = {}
    errors = [line for line, lv in zip(a.lines, a.level, strict=True) if lv == ERROR]
    for k in kinds(volatile_masked(errors)):
        if sum(ch.isalnum() for ch in _TAG.sub("", k).replace("<*>", "")) >= 3:
            counts[k] = counts.get(k, 0) + 1  # a bare "[ERROR]" is no kind
    if counts:
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        parts = "; ".join(f"{_n(c)}× {_clip(k, 90)}" for k, c in top[:8])
        more = f"; {_n(len(top) - 8)} more kinds" if len(top) > 8 else ""
        out.append(f"[… error kinds: {_clip(parts + more, max(budget // 6, 40))} …]")
    return out


def _fit(p: _Plan, budget: int) -> str:
    """Counts summary, then the most informative entries that fit, then the closing note."""
    total = sum(1 for line in p.a.lines if line)
    note_room = _size([_closing_note(0, total)])
    header = _counts_summary(p, budget)
    while header and _size(header) + note_room > budget:
        header.pop()
    room = budget - _size(header) - note_room
    chosen: dict[int, int] = {}  # entry -> rank of the unit that brought it
    used = tier1 = 0
    for rank, (tier, ents) in enumerate(_units(p)):
        new = [j for j in ents if j not in chosen]
        cost = _size([_body(p, j) for j in new]) + _MARKER_ROOM * (1 + (not chosen))
        if not new or used + cost > room or (tier == 1 and tier1 + cost > room // 2):
            continue
        used += cost
        tier1 += cost if tier == 1 else 0
        chosen.update((j, rank) for j in new)
    while True:  # markers were estimated: drop the least informative units until it fits
        shown = sum(p.count[j] for j in chosen if p.line(j))
        out = "\n".join([*header, *_assemble(p, list(chosen)), _closing_note(shown, total)])
        if len(out.encode()) <= budget or not chosen:
            break
        worst = max(chosen.values())
        chosen = {j: r for j, r in chosen.items() if r != worst}
    return out if len(out.encode()) <= budget else _utf8_cut(_closing_note(0, total), budget)


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
    p = _plan(text)
    full = "\n".join(_faithful_lines(p))
    if len(full.encode()) <= budget:
        return full
    return _fit(p, budget)


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
        lines_kept=sum(1 for line in out.split("\n") if line and not _is_note(line)),
        budget=budget,
    )
