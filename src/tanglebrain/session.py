"""The session boundary: one path from a typed request to a finished, recorded run.

Every front door (the CLI's ``run``, ``serve``, ``mcp``, ``demo``) translates its wire
format into a ``Request`` and ``Hooks`` and leaves the rest to a ``Session``, so that the
same run is finished and recorded the same way whichever door it came through::

    front door ── Request, Hooks ──▶ Session.run ──▶ orchestrator.run
                                          │ (delivered, or failed)
                                       finish ── status, degraded warning, unknown costs
                                          │
                                       Session.keep ──▶ ledger (one writer), OpenTelemetry

``finish`` is the one place a run's status is decided. ``keep`` never raises: a ledger
or export failure is one warning line, and never costs the user an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from tanglebrain.errors import BudgetExceeded, OutputClosed, TanglebrainError, Terminated
from tanglebrain.orchestrator import Hooks, Request
from tanglebrain.roster import Roster
from tanglebrain.runtime import Limits
from tanglebrain.trace import Run

if TYPE_CHECKING:
    from tanglebrain.ledger import Ledger

Note = Callable[[str, str], None]
# A server's circuit breakers probe a backend they skip this often: a backend that was down
# may be back within the server's life (a single run never probes).
SERVER_PROBE_S = 30.0


def server_limits() -> Limits:
    """Concurrency slots and circuit breakers shared by a server's runs (``serve``, ``mcp``)."""
    return Limits(probe_after_s=SERVER_PROBE_S)


def _stderr_note(message: str, prefix: str) -> None:
    from tanglebrain.views import render

    render.note(message, prefix=prefix)


def finish(trace: Run, failure: BaseException | None = None, *, error: str | None = None) -> None:
    """Mark ``trace`` ended by what happened to it.

    Args:
        trace: the run.
        failure: what stopped it, if anything: a budget refusal is ``budget``; Ctrl-C,
            SIGTERM, a closed stdout or a cancellation are ``interrupted``; anything else
            is ``error``.
        error: a failure without an exception (over MCP: every sub-task failed).
    """
    if failure is None and error is None:
        if trace.degraded:
            from tanglebrain.views import render

            warning = render.degraded_warning(trace)
            if warning not in trace.warnings:
                trace.warn(warning)
        trace.finish("ok")
        return
    if failure is not None and _cancelled(failure):
        # The exception's text names a cancel scope and a task; whoever cancelled the run
        # may have said why first (serve: "client disconnected").
        trace.error = trace.error or "cancelled"
    else:
        trace.error = error if failure is None else (str(failure) or type(failure).__name__)
    if isinstance(failure, BudgetExceeded):
        trace.finish("budget")
    elif failure is not None and _interrupted(failure):
        trace.finish("interrupted")
    else:
        trace.finish("error")


def _interrupted(failure: BaseException) -> bool:
    return isinstance(failure, KeyboardInterrupt | OutputClosed | Terminated) or _cancelled(failure)


def _cancelled(failure: BaseException) -> bool:
    return _in_event_loop() and isinstance(failure, anyio.get_cancelled_exc_class())


def _in_event_loop() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:
        return False
    return True


# Writes finished runs to the ledger, several at a time when they finished together.
Recorder = Callable[[Sequence[Run]], None]


class Writer:
    """Writes kept runs off the event loop, one batch at a time, for every session sharing it.

    The first run kept while nothing is being written starts the writing, which goes on
    (shielded from cancellation) until nothing is left: runs kept meanwhile are written
    in the next batch, one transaction per session. Their keepers just wait for it to
    end; a keeper that stops waiting still has its run written. A plain event, not a
    limiter and a scope per run: a server keeps one run per request.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Session, Run]] = []
        self._writing: anyio.Event | None = None  # set once the writing in progress ends

    async def keep(self, session: Session, trace: Run) -> None:
        """Have ``trace`` written by ``session.keep_now``; return once it is."""
        self._pending.append((session, trace))
        if self._writing is not None:  # the writing in progress takes it before it ends
            await self._writing.wait()
            return
        writing = self._writing = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                while self._pending:
                    batch, self._pending = self._pending, []
                    await anyio.to_thread.run_sync(_write, batch)
        finally:
            self._writing = None
            writing.set()


def _write(batch: list[tuple[Session, Run]]) -> None:
    for session in dict.fromkeys(s for s, _ in batch):  # in the order they came
        session.keep_now(*(t for s, t in batch if s is session))


class Session:
    """Runs requests against one roster and keeps their traces.

    Args:
        roster: the roster.
        env: where API keys are looked up (and the OTLP settings).
        roster_dir: the roster file's folder (``system_prompt_file`` is relative to it).
        state_dir: the state directory (rotation), or None.
        record: writes a finished run to the ledger (see ``ledger_recorder``); None: runs
            are not recorded (``--no-log``, the demo).
        limits: shared concurrency slots and circuit breakers (a server's, across its
            requests); a run makes its own when None.
        note: where warnings go (``(message, prefix)``); stderr by default.
        export: whether runs are exported over OTLP when it is configured (not the demo's).
        writer: writes kept runs one batch at a time (shared by sessions that write the
            same ledger); one of its own when None.
    """

    def __init__(
        self,
        roster: Roster,
        env: Mapping[str, str],
        *,
        roster_dir: Path | None = None,
        state_dir: Path | None = None,
        record: Recorder | None = None,
        limits: Limits | None = None,
        note: Note = _stderr_note,
        export: bool = True,
        writer: Writer | None = None,
    ) -> None:
        self.roster = roster
        self.env = env
        self.roster_dir = roster_dir
        self.state_dir = state_dir
        self.record = record
        self.limits = limits
        self.note = note
        self.export = export
        self._writer = writer or Writer()

    async def run(self, request: Request, trace: Run, hooks: Hooks) -> None:
        """Run ``request`` into ``trace``; a failure finishes the trace and propagates.

        On success the trace stays open: the front door calls ``finish`` once the answer
        is delivered (a reader that leaves first makes the run interrupted).
        """
        from tanglebrain.orchestrator import run

        try:
            await run(
                request, self.roster, env=self.env, state_dir=self.state_dir,
                roster_dir=self.roster_dir, hooks=hooks, trace=trace, limits=self.limits,
            )  # fmt: skip
        except BaseException as exc:
            mark_unpriced(trace, self.roster)
            finish(trace, exc)
            raise
        mark_unpriced(trace, self.roster)

    def keep_now(self, *traces: Run) -> None:
        """Record and export ``traces`` (finished runs that made calls); never raises."""
        traces = tuple(t for t in traces if t.turns or t.extra_calls)  # nothing sent: no record
        if not traces:
            return
        for trace in traces:
            mark_unpriced(trace, self.roster)
        if self.record is not None:
            try:
                self.record(traces)
            except Exception as exc:  # a recorder's bug must not cost the user an answer
                ids = ", ".join(t.id for t in traces)
                self.note(f"run {ids} not recorded: {type(exc).__name__}: {exc}", "warning")
        if self.export:
            for trace in traces:
                self._export(trace)

    async def keep(self, trace: Run) -> None:
        """``keep_now`` off the event loop, one writer at a time, even when cancelled.

        Runs that finish while the writer is busy wait for it together and are written
        in one transaction: a server finishing 200 runs at once writes a few batches,
        not 200 transactions (see ``Writer``).
        """
        await self._writer.keep(self, trace)

    def _export(self, trace: Run) -> None:
        endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        if not any(self.env.get(v) for v in endpoints):
            return  # the common case: no exporter, no import
        from tanglebrain import otel

        problem = otel.export_if_configured(
            trace, self.env, secrets=self.roster.key_values(self.env)
        )
        if problem:
            self.note(problem, "warning")


def ledger_recorder(
    roster: Roster,
    env: Mapping[str, str],
    state_dir: Path,
    note: Note = _stderr_note,
    *,
    ledger: Ledger | None = None,
) -> Recorder:
    """A recorder writing runs to the ledger in ``state_dir``; a failure is one warning.

    Args:
        roster: the roster the runs ran on (orchestrator prices, keys to scrub).
        env: where the keys are looked up.
        state_dir: where the ledger is (when ``ledger`` is None).
        note: where the warning goes.
        ledger: the ledger to write (a server's, kept open); one per call when None.
    """

    def record(traces: Sequence[Run]) -> None:
        from tanglebrain import models
        from tanglebrain.ledger import Ledger, default_path

        rows = []
        for trace in traces:
            orchestrator = roster.get(trace.orchestrator) if trace.orchestrator else None
            rows.append((trace, models.price_per_token(orchestrator) if orchestrator else None))
        target = ledger or Ledger(default_path(state_dir))
        secrets = roster.key_values(env)
        try:
            target.record_many(rows, secrets=secrets)
            return
        except TanglebrainError as exc:
            if len(rows) == 1:
                note(f"run {traces[0].id} not recorded: {exc}", "warning")
                return
        for row in rows:  # one run that cannot be stored must not cost the others theirs
            try:
                target.record_many([row], secrets=secrets)
            except TanglebrainError as exc:
                note(f"run {row[0].id} not recorded: {exc}", "warning")

    return record


def mark_unpriced(trace: Run, roster: Roster) -> None:
    """Make the cost of failed attempts on backends without a known price unknown.

    A failed attempt carries $0 whatever its backend's price; on a backend whose price
    is unknown that $0 would read as "free" in every view (see ``trace.cost_of`` for how
    unknown costs add up). Idempotent.
    """
    from tanglebrain import models

    unpriced: dict[str, bool] = {}
    for attempt in trace.attempts():
        if attempt.status == "ok" or attempt.cost_usd is None:
            continue
        if attempt.backend not in unpriced:
            backend = roster.get(attempt.backend)
            unknown = backend is not None and models.price_per_token(backend) is None
            unpriced[attempt.backend] = unknown
        if unpriced[attempt.backend]:
            attempt.cost_usd = None


def logging_disabled(no_log: bool, env: Mapping[str, str]) -> bool:
    """Whether runs must not be recorded (``--no-log`` or ``TANGLEBRAIN_NO_LOG=1``)."""
    return no_log or env.get("TANGLEBRAIN_NO_LOG", "").strip().lower() in _TRUE


_TRUE = frozenset({"1", "true", "yes", "on"})
