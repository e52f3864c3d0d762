"""The live view of a run on a terminal: a compact tree, redrawn by a refresher thread.

The view never renders from inside an observer: observers only set a dirty flag, and a
daemon thread redraws at most ``fps`` times a second.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tanglebrain.trace import Run, Subtask
from tanglebrain.views.render import first_words, money


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
