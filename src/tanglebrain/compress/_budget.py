"""Budgeted mode of :mod:`tanglebrain.compress`: the most informative lines within a byte cap.

When a faithful digest is too big, :func:`fit` keeps a counts summary, then as many entries of
the plan as fit (summaries and the final block of errors first, then rare error kinds before
frequent ones, warnings, last occurrences, facts, head and tail), then a note of what was cut.
The result never exceeds the budget. Pure functions; standard library only.
"""

from __future__ import annotations

import re

from tanglebrain.compress._masks import kinds, volatile_masked
from tanglebrain.compress._rules import ERROR, ERROR_WORD, WARNING
from tanglebrain.compress._select import (
    CONTEXT,
    Plan,
    clip,
    continues,
    fields,
    indent,
    shorten,
    shown,
    thousands,
)

_MARKER_ROOM = 24  # bytes allowed for the gap marker a unit may add in a budgeted digest

# a leading level tag such as "[ERROR]", "ERROR:" or "##[error]"
_TAG = re.compile(r"^(?:#*\[?(?:error|warn(?:ing)?|fatal|fail(?:ed)?)\]?:?\s*)+", re.IGNORECASE)
# an error word that only reports zero ("Errors: 0", "0 failed")
_ZERO_COUNT = re.compile(
    r"(?i)\b(?:errors?|failures?|failed|fatal|exceptions?)\s*[:=]\s*0\b"
    r"|\b0\s+(?:errors?|failures?|failed|exceptions?)\b"
)

# a fact naming an exception type ("java.lang.IllegalStateException", "ValueError")
_EXC_FACT = re.compile(r"(?:Exception|Error|Failure|Fault)\Z")
_MIN_CLIP = 40  # an error line is clipped to fit, but not shorter than this
_CLIP_OTHER = 120  # an error line other than the last is clipped to at most this

_Unit = tuple[int, list[int]]  # (tier, entries)


def _with_context(p: Plan, j: int) -> list[int]:
    """Entry ``j`` and the continuation lines that follow it."""
    lines, start, m = p.a.lines, p.start, len(p.start)
    base = indent(lines[start[j]])
    grp = [j]
    for k in range(j + 1, min(m, j + 1 + CONTEXT)):
        i = start[k]
        if not lines[i] or p.a.level[i] == ERROR or not continues(lines[i], base):
            break
        grp.append(k)
    return grp


def _strong(p: Plan, j: int) -> bool:
    """An error line that says more than its level tag or a zero count: words or facts."""
    i = p.start[j]
    said = _ZERO_COUNT.sub("", _TAG.sub("", p.a.lines[i].strip()))
    return bool(p.a.facts[i]) or bool(ERROR_WORD.search(said))


def _by_kind(
    p: Plan, kind_of: dict[int, str], level: int, want: bool
) -> tuple[list[int], list[int]]:
    """First and last entry of each kind at ``level`` whose strength is ``want``, rare first."""
    a = p.a
    groups: dict[str, list[int]] = {}
    for j in range(len(p.start)):
        i = p.start[j]
        if a.level[i] == level and not a.summary[i] and _strong(p, j) == want:
            groups.setdefault(kind_of[j] if level == ERROR else a.tmpl[i], []).append(j)
    ranked = sorted(groups.values(), key=lambda js: (sum(p.count[j] for j in js), -js[0]))
    return [js[0] for js in ranked], [js[-1] for js in ranked if len(js) > 1]


def _exception_heads(p: Plan) -> list[int]:
    """Entries that name an exception without an error word and are not stack frames.

    ``IllegalStateException: pool exhausted`` or ``Caused by: …`` say what went wrong; the
    frames below them only say where.
    """
    a, out = p.a, []
    for j, i in enumerate(p.start):
        line = a.lines[i].lstrip()
        named = any(_EXC_FACT.search(f) for f in a.facts[i])
        if named and a.level[i] != ERROR and not line.startswith(("at ", "File ")):
            out.append(j)
    return out


def _final_errors(p: Plan, errors: list[int], heads: set[int]) -> tuple[list[int], list[int]]:
    """The last error and the block of errors (and indented lines) leading up to it.

    Returns:
        The errors and exception lines of the block, the last error first, and the other
        lines of the block (stack frames, details), which rank below every error.
    """
    if not errors:
        return [], []
    a, lines, start = p.a, p.a.lines, p.start
    last = b = errors[-1]
    while b > 0:
        i = start[b - 1]
        if a.level[i] != ERROR and lines[i] and not indent(lines[i]):
            break
        b -= 1
    block = range(b, last)
    said = [j for j in block if a.level[start[j]] == ERROR or j in heads]
    return [last, *said], [j for j in block if j not in said]


def _units(p: Plan) -> list[_Unit]:
    """Groups of entries worth showing, most informative first, each with its tier.

    Tiers: 0 the last summaries (exit codes, totals); 1 the errors of the final block; 2 the
    first line of each error kind (rare kinds first) whose line names an error or a fact, and
    lines naming an exception, then the other lines of the final block (its frames), then the
    continuation lines of those errors; 3 other summaries; 4 the first line of each warning
    kind; 5 the first line of the remaining error kinds; 6 the last line of each error kind;
    7 lines with facts (stack frames among them); 8 head and tail. Error lines that do not fit
    whole are clipped rather than left out.
    """
    a, lines, start = p.a, p.a.lines, p.start
    m = len(start)
    units: list[_Unit] = []
    summaries = [j for j in range(m) if a.summary[start[j]]]
    units.extend((0, [j]) for j in reversed(summaries[-3:]))
    errors = [j for j in range(m) if a.level[start[j]] == ERROR]
    heads = _exception_heads(p)
    final, details = _final_errors(p, errors, set(heads))
    units.extend((1, [j]) for j in final)
    kind_of = dict(
        zip(errors, kinds(volatile_masked([lines[start[j]] for j in errors])), strict=True)
    )
    err_first, err_last = _by_kind(p, kind_of, ERROR, True)
    # every error and exception line first, then the frames of the final block, then the
    # continuation lines of the others: what went wrong outranks where
    units.extend((2, [j]) for j in [*err_first, *heads])
    units.extend((2, [j]) for j in details)
    units.extend((2, _with_context(p, j)) for j in [*err_first, *heads])
    units.extend((3, [j]) for j in reversed(summaries))
    units.extend((4, _with_context(p, j)) for j in _by_kind(p, kind_of, WARNING, True)[0])
    units.extend((5, _with_context(p, j)) for j in _by_kind(p, kind_of, ERROR, False)[0])
    units.extend((6, _with_context(p, j)) for j in err_last)
    units.extend((7, [j]) for j in range(m) if p.keep[j] and a.facts[start[j]])
    kept = [j for j in range(m) if p.keep[j] and lines[start[j]]]
    units.extend((8, [j]) for j in kept[:3] + kept[-3:])
    return units


def _body(p: Plan, j: int, width: int | None = None) -> str:
    """Entry ``j`` as printed; an error line that alone does not fit is clipped to ``width``."""
    if p.keep[j]:
        text = shown(p, j)
    else:
        text = shorten(p, j)
        text = f"{text} [×{thousands(p.count[j])}]" if p.count[j] > 1 and text else text
    return clip(text, width) if width is not None else text


def _assemble(p: Plan, chosen: list[int], widths: dict[int, int]) -> list[str]:
    if not chosen:
        return []
    out: list[str] = []
    prev = -1
    for j in [*sorted(chosen), len(p.start)]:
        hidden = sum(p.count[k] for k in range(prev + 1, j) if p.line(k))
        if hidden:
            out.append(f"[… {thousands(hidden)} line{'s' if hidden > 1 else ''} …]")
        if j < len(p.start):
            out.append(_body(p, j, widths.get(j)))
        prev = j
    return out


def _size(lines: list[str]) -> int:
    return sum(len(x.encode()) + 1 for x in lines)


def _closing_note(shown_lines: int, total: int) -> str:
    return (
        f"[… {thousands(total - shown_lines)} of {thousands(total)} lines not shown; "
        "the full text is available as an attachment …]"
    )


def _counts_summary(p: Plan, budget: int) -> list[str]:
    """Lines by level, then the most frequent error kinds with their counts."""
    a = p.a
    total = sum(1 for line in a.lines if line)
    n_err, n_warn = a.level.count(ERROR), a.level.count(WARNING)
    out = [
        f"[… {thousands(total)} non-blank lines in: {thousands(n_err)} error, "
        f"{thousands(n_warn)} warning, {thousands(total - n_err - n_warn)} other; "
        f"cut to fit {thousands(budget)} B …]"
    ]
    counts: dict[str, int] = {}
    errors = [line for line, lv in zip(a.lines, a.level, strict=True) if lv == ERROR]
    for k in kinds(volatile_masked(errors)):
        if sum(ch.isalnum() for ch in _TAG.sub("", k).replace("<*>", "")) >= 3:
            counts[k] = counts.get(k, 0) + 1  # a bare "[ERROR]" is no kind
    if counts:
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        parts = "; ".join(f"{thousands(c)}× {clip(k, 90)}" for k, c in top[:8])
        more = f"; {thousands(len(top) - 8)} more kinds" if len(top) > 8 else ""
        out.append(f"[… error kinds: {clip(parts + more, max(budget // 6, 40))} …]")
    return out


def _choose(p: Plan, room: int) -> tuple[dict[int, int], dict[int, int]]:
    """Entries of the most informative units whose estimated size fits ``room`` bytes.

    The last error is clipped when it does not fit whole, so that it is never left out while
    lower units (stack frames among them) fit.

    Returns:
        Each chosen entry with the rank of the unit that brought it, and the width of the
        entries that were clipped.
    """
    chosen: dict[int, int] = {}
    widths: dict[int, int] = {}
    used = tier1 = 0
    said = {j for j, i in enumerate(p.start) if p.a.level[i] == ERROR}
    said.update(_exception_heads(p))
    for rank, (tier, ents) in enumerate(_units(p)):
        new = [j for j in ents if j not in chosen]
        if not new:
            continue
        marker = _MARKER_ROOM * (1 + (not chosen))
        # the last error may take the whole room; the rest of its block only half of it
        cap = room if rank == 0 else room // 2
        tries: list[tuple[list[int], int | None]] = [(new, None)]
        if rank == 0 or (tier <= 2 and len(new) == 1 and new[0] in said):
            # an error line is clipped when it does not fit whole
            free = room - used - marker
            # other error lines are clipped short: one of them must not eat the room
            widest = free - 1 if rank == 0 else _CLIP_OTHER
            width = min(len(_body(p, new[0])), widest)
            while width >= _MIN_CLIP and len(_body(p, new[0], width).encode()) + 1 > free:
                width -= 1  # "…" and other characters take more than one byte
            if width >= _MIN_CLIP:
                tries.append((new[:1], width))
        for ents_try, width_try in tries:
            cost = _size([_body(p, j, width_try) for j in ents_try]) + marker
            if used + cost <= room and (tier != 1 or tier1 + cost <= cap):
                used += cost
                tier1 += cost if tier == 1 else 0
                chosen.update((j, rank) for j in ents_try)
                if width_try is not None:
                    widths[ents_try[0]] = width_try
                break
    return chosen, widths


def _last_resort(total: int, budget: int) -> str:
    """The longest whole note about the cut that fits ``budget`` ("" if none does)."""
    for note in (
        _closing_note(0, total),
        f"[… {thousands(total)} lines not shown …]",
        f"[… {thousands(total)} lines …]",
        "[… cut …]",
    ):
        if len(note.encode()) <= budget:
            return note
    return ""


def fit(p: Plan, budget: int) -> str:
    """Counts summary, then the most informative entries that fit, then the closing note.

    Args:
        p: The plan of the text (see :func:`tanglebrain.compress._select.plan`).
        budget: Hard cap in bytes (positive).

    Returns:
        The budgeted digest, at most ``budget`` UTF-8 bytes, made of whole lines: when not
        even the closing note fits, a shorter note or nothing.
    """
    total = sum(1 for line in p.a.lines if line)
    note_room = _size([_closing_note(0, total)])
    header = _counts_summary(p, budget)
    header += _field_notes(header, fields(p), budget)
    while header and _size(header) + note_room > budget:
        header.pop()
    chosen, widths = _choose(p, budget - _size(header) - note_room)
    while True:  # markers were estimated: drop the least informative units until it fits
        shown_lines = sum(p.count[j] for j in chosen if p.line(j))
        body = _assemble(p, list(chosen), widths)
        out = "\n".join([*header, *body, _closing_note(shown_lines, total)])
        if len(out.encode()) <= budget or not chosen:
            break
        worst = max(chosen.values())
        chosen = {j: r for j, r in chosen.items() if r != worst}
    return out if len(out.encode()) <= budget else _last_resort(total, budget)


def _field_notes(header: list[str], notes: list[str], budget: int) -> list[str]:
    """As many whole field notes as fit in two fifths of the budget, after ``header``."""
    room = budget * 2 // 5 - _size(header)
    out: list[str] = []
    for note in notes:
        if _size([*out, note]) > room:
            break
        out.append(note)
    return out if len(out) > 1 else []  # a shape's header alone says nothing
