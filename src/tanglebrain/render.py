"""Views of a run for people (stderr lines, rich tables) and scripts (``--json``).

Pure presentation: everything shown is read off the trace; nothing is computed here
that the trace does not already hold.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tanglebrain.trace import Run


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
    """Dollars for people: ``$0.0123``, or ``unknown``."""
    return "unknown" if usd is None else f"${usd:.4f}"


def degraded_warning(run: Run) -> str:
    """The stderr line that says a run was degraded and why."""
    bad = [s for s in run.subtasks() if s.status in ("error", "no_fit", "refused")]
    return (
        f"degraded: {len(bad)} of {len(run.subtasks())} sub-task(s) failed; "
        "the orchestrator covered for them"
    )


def summary_line(run: Run) -> str:
    """One line after every run: who answered, sub-tasks, backends, tokens, money, time."""
    subs = run.subtasks()
    ok = sum(1 for s in subs if s.status == "ok")
    prompt, completion, cost = run.totals()
    used = sorted({a.backend for a in run.attempts() if a.status == "ok"})
    parts = [
        f"{run.mode} by {run.orchestrator or '-'}",
        f"sub-tasks {ok} ok/{len(subs) - ok} failed" if subs else "no sub-tasks",
        f"backends {', '.join(used) or '-'}",
        f"tokens {prompt}+{completion}",
        money(cost),
        f"{run.wall_ms / 1000:.2f}s",
        f"run {run.id}",
    ]
    return " · ".join(parts)


def run_json(run: Run) -> dict[str, Any]:
    """The ``--json`` object of DESIGN.md §4."""
    prompt, completion, cost = run.totals()
    subtasks = []
    for i, s in enumerate(run.subtasks()):
        atts = s.attempts
        s_cost: float | None = 0.0
        for a in atts:
            if a.status == "ok" and a.cost_usd is None:
                s_cost = None
            elif s_cost is not None and a.cost_usd is not None:
                s_cost += a.cost_usd
        latency = ((s.ended or 0) - (s.started or 0)) * 1000 if s.started else 0.0
        subtasks.append(
            {
                "index": i,
                "task": s.task,
                "backend": s.backend,
                "status": s.status,
                "attempts": len(atts),
                "latency_ms": round(latency, 1),
                "tokens": sum(a.prompt_tokens + a.completion_tokens for a in atts),
                "cost_usd": s_cost,
            }
        )
    return {
        "answer": run.answer,
        "run_id": run.id,
        "orchestrator": run.orchestrator,
        "degraded": run.degraded,
        "subtasks": subtasks,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": cost,
            "orchestrator_context_tokens": run.orchestrator_context_tokens,
        },
        "warnings": list(run.warnings),
    }
