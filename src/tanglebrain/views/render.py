"""Views of a run for people (stderr lines) and scripts (``--json``).

Everything shown is read off the trace or the ledger's rows; nothing is computed here
that they do not already hold. ``note`` writes its line to stderr; the rest returns
text. The live tree is in ``views.live`` (it needs rich, which a piped run never loads).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from tanglebrain.trace import FAILED, Run, cache_tokens, cost_of

if TYPE_CHECKING:
    from rich.console import Console

    from tanglebrain.trace import Review

# Tables keep their id column whole down to this width, even when $COLUMNS says less.
MIN_WIDTH = 40
FILE_WIDTH = 160  # into a file or pipe without $COLUMNS: wide, nothing wrapped


def table_console(**options: Any) -> Console:
    """A rich console for stdout tables: the terminal's width, else ``$COLUMNS``, else wide.

    ``$COLUMNS`` counts also into a pipe, but never below ``MIN_WIDTH`` (rich prints
    nothing at all at 0).
    """
    from rich.console import Console

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        width: int | None = max(MIN_WIDTH, int(columns))
    else:
        width = None if sys.stdout.isatty() else FILE_WIDTH
    return Console(file=sys.stdout, width=width, **options)


def _color() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def note(message: str, prefix: str = "note") -> None:
    """One ``tanglebrain: prefix: message`` line on stderr."""
    label = f"tanglebrain: {prefix}: "
    if _color():
        label = f"\x1b[2m{label}\x1b[0m"
    sys.stderr.write(label + message.replace("\n", "\n  ") + "\n")
    sys.stderr.flush()


def money(usd: float | None) -> str:
    """Dollars for people: ``$0.0123`` (``$0.000042`` when tiny), or ``unknown``."""
    if usd is None:
        return "unknown"
    return f"${usd:.6f}" if 0 < abs(usd) < 0.001 else f"${usd:.4f}"


def seconds(ms: float | None) -> str:
    """A duration for people: ``850 ms``, ``2.31s``, or ``-``."""
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f}s"


def first_words(text: str, limit: int = 60) -> str:
    """The start of ``text`` on one line, cut at a word boundary with ``…``."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = flat[: limit - 1]
    if flat[limit - 1] != " " and " " in head:  # do not cut a word in two
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + "…"


def degraded_warning(run: Run) -> str:
    """The stderr line that says a run was degraded and why."""
    bad = [s for s in run.subtasks() if s.status in FAILED]
    parts = []
    if bad:
        parts.append(f"{len(bad)} of {len(run.subtasks())} sub-task(s) failed")
    rejected = run.rejected_calls()
    if rejected:
        parts.append(f"{len(rejected)} tool call(s) rejected ({rejected[0].error})")
    return f"degraded: {'; '.join(parts)}; the orchestrator covered for them"


def summary_line(run: Run, *, recorded: bool = True) -> str:
    """One line after every run: who answered, sub-tasks, backends, tokens, money, time.

    Args:
        run: the finished run.
        recorded: whether the run goes to the ledger; if not, its id is marked so, since
            ``tanglebrain show`` will not find it.
    """
    subs = run.subtasks()
    ok = sum(1 for s in subs if s.status == "ok")
    over = sum(1 for s in subs if s.failed_over)
    prompt, completion, cost = run.totals()
    cached = run.cache_totals()[0]
    used = sorted({a.backend for a in run.attempts() if a.status == "ok"})
    tasks = f"sub-tasks {ok} ok/{len(subs) - ok} failed" if subs else "no sub-tasks"
    parts = [
        f"{run.mode} by {run.orchestrator or '-'}",
        tasks + (f" ({over} failed over)" if over else ""),
        f"backends {', '.join(used) or '-'}",
        f"tokens {prompt}+{completion}" + (f" ({cached} cached)" if cached else ""),
        money(cost),
        f"{run.wall_ms / 1000:.2f}s",
        f"run {run.id}" if recorded else f"run {run.id} (not recorded)",
    ]
    return " · ".join(parts)


def ab_ratios(delegated: Run, solo: Run) -> dict[str, float | None]:
    """Delegated over solo: orchestrator context tokens, cost and wall time (None: unknown)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        "orchestrator_context_tokens": ratio(
            delegated.orchestrator_context_tokens, solo.orchestrator_context_tokens
        ),
        "cost": ratio(delegated.totals()[2], solo.totals()[2]),
        "wall": ratio(delegated.wall_ms, solo.wall_ms),
    }


def times(ratio: float | None) -> str:
    """A ratio for people: ``1.23x``, or ``unknown``."""
    return "unknown" if ratio is None else f"{ratio:.2f}x"


def ab_json(delegated: Run, solo: Run) -> dict[str, Any]:
    """The ``ab`` member of ``run --ab --json``: the solo twin and the measured ratios."""
    return {
        "pair": delegated.pair,
        "solo": {
            "run_id": solo.id, "status": solo.status, "error": solo.error,
            "answer": solo.answer, "wall_ms": round(solo.wall_ms, 1),
            "usage": usage_json(solo),
        },
        "ratios": ab_ratios(delegated, solo),
    }  # fmt: skip


def ab_line(delegated: Run, solo: Run) -> str:
    """The ``a/b`` line after ``run --ab``: the solo twin, and delegated over solo."""
    if solo.status != "ok":
        return f"solo run {solo.id} {solo.status}: {solo.error or 'no answer'}; no ratios"
    r = ab_ratios(delegated, solo)
    return (
        f"solo run {solo.id}: {money(solo.totals()[2])}, {solo.wall_ms / 1000:.2f}s, "
        f"{solo.orchestrator_context_tokens} context tokens · delegated/solo: cost "
        f"{times(r['cost'])}, wall {times(r['wall'])}, orchestrator context "
        f"{times(r['orchestrator_context_tokens'])} (measured)"
    )


def usage_json(run: Run) -> dict[str, Any]:
    """A run's ``usage`` object (``--json``, ``show --json``, the A/B twin's)."""
    return run.figures().usage()


def run_json(run: Run) -> dict[str, Any]:
    """The ``--json`` object (docs/contracts.md).

    Cached prompt tokens are parts of the prompt tokens: ``cache_read_tokens`` were read
    from the provider's prompt cache, ``cache_write_tokens`` written to it.
    """
    subtasks = []
    for i, s in enumerate(run.subtasks()):
        atts = s.attempts
        s_read, s_write = cache_tokens(atts)
        subtasks.append(
            {
                "index": i,
                "task": s.task,
                "backend": s.backend,
                "status": s.status,
                "routed_by": s.routed_by,
                "attempts": len(atts),
                "latency_ms": round(s.latency_ms, 1) if s.ended else 0.0,
                "queue_ms": round(s.queue_ms, 1),
                "tokens": sum(a.prompt_tokens + a.completion_tokens for a in atts),
                "cache_read_tokens": s_read,
                "cache_write_tokens": s_write,
                "cost_usd": cost_of(atts),
            }
        )
    return {
        "answer": run.answer,
        "run_id": run.id,
        "orchestrator": run.orchestrator,
        "mode": run.mode,
        "gate": run.gate,
        "degraded": run.degraded,
        "subtasks": subtasks,
        "usage": usage_json(run),
        "warnings": list(run.warnings),
        **({"review": _review_json(run.review)} if run.review else {}),
    }


def _review_json(review: Review) -> dict[str, Any]:
    from tanglebrain.trace import review_to_dict

    data = review_to_dict(review)
    data.pop("answer", None)  # it is the top-level answer
    return data


def review_lines(review: Review) -> list[str]:
    """The review panel for stderr: each critique, each verdict, the overall one."""
    out = []
    for c in review.critiques:
        if c.status != "ok":
            out.append(f"reviewer {c.reviewer} failed: {c.error}")
        elif c.parsed:
            kinds = ", ".join(d.severity for d in c.disagree) or "none"
            out.append(
                f"reviewer {c.reviewer}: {len(c.agree)} agree, {len(c.disagree)} disagree "
                f"({kinds}), {len(c.missing)} missing"
            )
        else:
            out.append(f"reviewer {c.reviewer}: free-form critique ({len(c.raw)} chars)")
    out += [f"{v.verdict} {v.point}: {v.reason}" for v in review.verdicts]
    if review.overall:
        out.append(f"overall {review.overall.verdict}: {review.overall.reason}")
    return out


# --- the live view ---------------------------------------------------------------
