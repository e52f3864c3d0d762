"""Views of a run for people (stderr lines, live tree, tables) and scripts (``--json``).

Pure presentation: everything shown is read off the trace or the ledger's rows;
nothing is computed here that they do not already hold. The live view never renders
from inside an observer: observers only set a dirty flag, and a refresher thread
redraws at most ``fps`` times a second.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tanglebrain.trace import Review, Run, Subtask, cost_of, review_to_dict

FAILED = ("error", "no_fit", "refused")


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
    used = sorted({a.backend for a in run.attempts() if a.status == "ok"})
    tasks = f"sub-tasks {ok} ok/{len(subs) - ok} failed" if subs else "no sub-tasks"
    parts = [
        f"{run.mode} by {run.orchestrator or '-'}",
        tasks + (f" ({over} failed over)" if over else ""),
        f"backends {', '.join(used) or '-'}",
        f"tokens {prompt}+{completion}",
        money(cost),
        f"{run.wall_ms / 1000:.2f}s",
        f"run {run.id}" if recorded else f"run {run.id} (not recorded)",
    ]
    return " · ".join(parts)


def run_json(run: Run) -> dict[str, Any]:
    """The ``--json`` object (docs/contracts.md)."""
    prompt, completion, cost = run.totals()
    subtasks = []
    for i, s in enumerate(run.subtasks()):
        atts = s.attempts
        subtasks.append(
            {
                "index": i,
                "task": s.task,
                "backend": s.backend,
                "status": s.status,
                "attempts": len(atts),
                "latency_ms": round(s.latency_ms, 1) if s.ended else 0.0,
                "queue_ms": round(s.queue_ms, 1),
                "tokens": sum(a.prompt_tokens + a.completion_tokens for a in atts),
                "cost_usd": cost_of(atts),
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
        **({"review": _review_json(run.review)} if run.review else {}),
    }


def _review_json(review: Review) -> dict[str, Any]:
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


def _state(sub: Subtask) -> tuple[str, str]:
    """(label, style) of a sub-task for the live view."""
    if sub.status == "queued":
        where = f" for {sub.calls[-1].backend}" if sub.calls else ""
        return f"queued{where} {sub.queue_ms / 1000:.1f}s", "dim"
    if sub.status == "cancelled":
        return "cancelled", "dim"
    if sub.status == "running":
        where = sub.calls[-1].backend if sub.calls else "?"
        over = " (failed over)" if sub.failed_over else ""
        return f"running on {where}{over} {sub.latency_ms / 1000:.1f}s", "yellow"
    if sub.status == "ok":
        if sub.failed_over:
            return f"failed over → {sub.backend} ok {sub.latency_ms / 1000:.1f}s", "yellow"
        return f"ok {sub.backend} {sub.latency_ms / 1000:.1f}s", "green"
    return f"{sub.status.replace('_', ' ')}: {first_words(sub.error or '', 50)}", "red"


_PRIORITY = {
    "error": 0, "no_fit": 0, "refused": 0, "running": 1, "ok": 2, "queued": 3, "cancelled": 4
}  # fmt: skip


def live_tree(run: Run, max_rows: int = 20) -> Text:
    """The fan-out as a compact tree: counts per state plus up to ``max_rows`` sub-tasks.

    Drawn as one ``Text`` with tree guides (a rich ``Tree`` of the same shape costs
    several times more to render, and this is redrawn up to 8 times a second).
    """
    subs = run.subtasks()
    counts: dict[str, int] = {}
    for s in subs:
        key = "failed over" if s.status == "ok" and s.failed_over else s.status
        counts[key] = counts.get(key, 0) + 1
    prompt, completion, cost = run.totals()
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("tanglebrain ", "bold")
    out.append(
        f"{run.mode} by {run.orchestrator or '…'} · turn {len(run.turns)} · "
        f"{run.wall_ms / 1000:.1f}s · tokens {prompt}+{completion} · {money(cost)}"
    )
    if not subs:
        if run.turns:
            turn = run.turns[-1]
            busy = bool(turn.call.attempts) and turn.call.attempts[-1].latency_ms == 0
            state = "thinking" if busy else "done"
            out.append(f"\n└── orchestrator {turn.call.backend}: {state}")
        return out
    order = ("ok", "failed over", "running", "queued", "error", "no_fit", "refused", "cancelled")
    summary = " · ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in order if k in counts)
    out.append(f"\n└── {len(subs)} sub-tasks: {summary}")
    shown = sorted(subs, key=lambda s: (_PRIORITY.get(s.status, 4) - s.failed_over, s.index))
    rows = sorted(shown[:max_rows], key=lambda s: s.index)
    more = len(subs) - len(rows)
    for i, sub in enumerate(rows):
        label, style = _state(sub)
        guide = "└── " if i == len(rows) - 1 and not more else "├── "
        out.append(f"\n    {guide}#{sub.index} {sub.task or 'general'} ")
        out.append(label, style)
    if more:
        out.append(f"\n    └── … {more} more", "dim")
    return out


class LiveView:
    """A live tree of ``run`` on ``console`` (stderr), refreshed at most ``fps`` a second.

    ``observe`` is the trace observer: O(1), it only marks the view dirty. A daemon
    thread redraws when dirty (and twice a second while anything runs, for the clocks).
    """

    def __init__(self, run: Run, console: Console, *, fps: float = 8.0) -> None:
        self.run = run
        self.console = console
        self.interval = 1.0 / fps
        self._dirty = True
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self.frames = 0

    def observe(self, run: Run) -> None:
        """Trace observer: mark the view for redrawing (never renders here)."""
        self._dirty = True

    def _render(self) -> Text:
        self.frames += 1
        return live_tree(self.run, max_rows=max(5, min(20, self.console.size.height - 6)))

    def start(self) -> None:
        """Show the view and start the refresher thread."""
        self._live = Live(
            self._render(),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start(refresh=True)
        self._thread = threading.Thread(target=self._loop, name="tanglebrain-live", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            if not self._dirty and now - last < 0.5:
                continue
            self._dirty, last = False, now
            try:
                if self._live is not None:
                    self._live.update(self._render(), refresh=True)
            except Exception:  # a frame drawn mid-change; the next one will do
                self._dirty = True

    def stop(self) -> None:
        """Draw the last frame and hand the terminal back; safe to call twice."""
        if self._thread is None or self._live is None:
            return
        self._stopped.set()
        self._thread.join()
        self._thread = None
        self._live.update(self._render())
        self._live.stop()
