"""The run as data: run → turns → tool calls → sub-tasks → attempts.

Every module records into this tree; nothing else keeps timing or usage counters.
The tree is plain dataclasses so that the ledger can store it, the renderer can draw
it and ``--json`` can serialise it without knowing how it was produced.

Observers (the live view) subscribe with ``Run.subscribe``; they are called after
every change, synchronously, on the event loop thread. Keep them cheap.

This module holds the nodes and their sums (``cost_of``, ``cache_tokens``, ``figures``).
The review branch lives in :mod:`tanglebrain._trace_review`, re-exported here and loaded
on first use: import every part of the tree from this module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tanglebrain._trace_review import Critique as Critique
    from tanglebrain._trace_review import Disagreement as Disagreement
    from tanglebrain._trace_review import Review as Review
    from tanglebrain._trace_review import Verdict as Verdict
    from tanglebrain._trace_review import review_from_dict as review_from_dict
    from tanglebrain._trace_review import review_to_dict as review_to_dict

# The review's classes load when first asked for: building them costs ~3 ms, and most
# runs have no review.
_REVIEW_NAMES = frozenset(
    {"Critique", "Disagreement", "Review", "Verdict", "review_from_dict", "review_to_dict"}
)


def __getattr__(name: str) -> Any:
    if name in _REVIEW_NAMES:
        from tanglebrain import _trace_review

        return getattr(_trace_review, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Status = Literal["queued", "running", "ok", "error", "no_fit", "refused", "cancelled"]
FAILED: frozenset[Status] = frozenset({"error", "no_fit", "refused"})
"""The statuses of a sub-task whose work was lost."""


def now() -> float:
    """Wall-clock seconds since the epoch (the one clock of the trace)."""
    return time.time()


@dataclass(slots=True)
class Attempt:
    """One HTTP request to one backend (a retry is a new attempt)."""

    backend: str
    model: str
    started: float
    latency_ms: float = 0.0
    # "cancelled": the run was interrupted while this attempt was in flight; the backend
    # did nothing wrong, so it counts neither for nor against it.
    status: Literal["ok", "error", "cancelled"] = "ok"
    error: str | None = None
    http_status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The parts of prompt_tokens read from and written to the provider's prompt cache
    # (billed at their own prices; see ``models.prices``).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    # Which transport carried it ("openai": native, "litellm"), and the error's kind
    # (``errors.ErrorKind``) when it failed.
    transport: str | None = None
    error_kind: str | None = None
    # The tokens (and so the cost) were counted here, 4 characters a token, not reported
    # by the provider: it reported no usage, or the stream ended before its usage came.
    estimated: bool = False

    @property
    def ended(self) -> float:
        """When the attempt ended (``started`` plus its latency)."""
        return self.started + self.latency_ms / 1000.0


@dataclass(slots=True)
class Call:
    """One logical model call, possibly retried: the attempts share backend and request."""

    role: Literal["orchestrator", "subtask", "review", "digest", "gate"]
    backend: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the last attempt succeeded."""
        return bool(self.attempts) and self.attempts[-1].status == "ok"

    @property
    def status(self) -> Literal["ok", "error", "cancelled"]:
        """The last attempt's status (``error`` when nothing was attempted)."""
        return self.attempts[-1].status if self.attempts else "error"

    @property
    def retries(self) -> int:
        """Attempts after the first one."""
        return max(0, len(self.attempts) - 1)

    @property
    def started(self) -> float | None:
        """When the first attempt started, or None before any attempt."""
        return self.attempts[0].started if self.attempts else None

    @property
    def ended(self) -> float | None:
        """When the last attempt ended, or None before any attempt."""
        return max(a.ended for a in self.attempts) if self.attempts else None

    @property
    def latency_ms(self) -> float:
        """From the first attempt's start to the last one's end (backoff included)."""
        if not self.attempts:
            return 0.0
        return (max(a.ended for a in self.attempts) - self.attempts[0].started) * 1000.0

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens over every attempt."""
        return (
            sum(a.prompt_tokens for a in self.attempts),
            sum(a.completion_tokens for a in self.attempts),
        )

    @property
    def cache_tokens(self) -> tuple[int, int]:
        """(cache-read, cache-write) prompt tokens over every attempt."""
        return cache_tokens(self.attempts)

    @property
    def cost_usd(self) -> float | None:
        """USD over every attempt, or None when a successful attempt's price is unknown."""
        return cost_of(self.attempts)


@dataclass(slots=True)
class Subtask:
    """One delegated sub-task; ``calls`` holds one entry per backend tried (failover)."""

    index: int
    task: str | None
    prompt: str
    requested_backend: str | None = None
    attach: list[str] = field(default_factory=list)
    status: Status = "queued"
    backend: str | None = None
    error: str | None = None
    started: float | None = None  # when its first call got a slot: queue wait is not latency
    ended: float | None = None
    calls: list[Call] = field(default_factory=list)
    answer: str = ""
    queued: float = field(default_factory=now)
    # How its first backend was chosen ("named", "static", "learned", "explore") and
    # which one static routing would have tried first.
    routed_by: str | None = None
    static_first: str | None = None

    @property
    def failed_over(self) -> bool:
        """Whether more than one backend was tried."""
        return len(self.calls) > 1

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt across every backend tried."""
        return [a for c in self.calls for a in c.attempts]

    @property
    def latency_ms(self) -> float:
        """Wall time from start to end (so far, while running), in milliseconds."""
        if self.started is None:
            return 0.0
        return ((self.ended or now()) - self.started) * 1000.0

    @property
    def queue_ms(self) -> float:
        """How long it waited for a backend slot (so far, while queued), in milliseconds."""
        end = self.started if self.started is not None else (self.ended or now())
        return max(0.0, (end - self.queued) * 1000.0)


@dataclass(slots=True)
class ToolCall:
    """One tool call the orchestrator made in a turn."""

    id: str
    name: str
    arguments: str
    subtasks: list[Subtask] = field(default_factory=list)
    error: str | None = None
    result_bytes: int = 0
    context_bytes: int = 0


@dataclass(slots=True)
class Turn:
    """One orchestrator turn: a model call plus the tool calls it asked for."""

    index: int
    call: Call
    tool_calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    # A digest of the prompt prefix sent (system prompt and tools): equal on every turn of
    # one orchestrator, which is what lets a provider's prompt cache serve it.
    prefix_hash: str | None = None
    # Why the model stopped writing: "stop", "tool_calls", or "length" and
    # ``models.REPEATED`` for a reply cut short (None: not known, e.g. an older record).
    finish_reason: str | None = None


@dataclass(slots=True)
class Digest:
    """Text that was compressed before entering the orchestrator's context."""

    name: str
    bytes_before: int
    bytes_after: int


@dataclass
class Run:
    """A whole request, from prompt to answer."""

    prompt: str
    origin: str = "cli"
    # 48 random bits as 12 hex digits (what uuid4().hex[:12] gave, without the UUID object).
    id: str = field(default_factory=lambda: os.urandom(6).hex())
    started: float = field(default_factory=now)
    ended: float | None = None
    mode: Literal["delegated", "solo", "direct", "gated"] = "delegated"
    orchestrator: str | None = None
    # The gate's decision, when one was asked (``router.GateDecision`` as text).
    gate: str | None = None
    # ``run --ab``: the id shared by the delegated run and its solo twin.
    pair: str | None = None
    status: Literal["running", "ok", "error", "budget", "interrupted"] = "running"
    answer: str = ""
    error: str | None = None
    turns: list[Turn] = field(default_factory=list)
    extra_calls: list[Call] = field(default_factory=list)
    digests: list[Digest] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orchestrator_context_tokens: int = 0
    review: Review | None = None
    _observers: list[Callable[[Run], None]] = field(default_factory=list, repr=False)

    # --- recording ------------------------------------------------------------

    def subscribe(self, observer: Callable[[Run], None]) -> None:
        """Call ``observer(run)`` after every recorded change."""
        self._observers.append(observer)

    def changed(self) -> None:
        """Notify observers; recorders call this after mutating a node."""
        for observer in self._observers:
            observer(self)

    def warn(self, message: str) -> None:
        """Record a warning shown to the user and included in ``--json``."""
        if message not in self.warnings:
            self.warnings.append(message)
        self.changed()

    def finish(self, status: Literal["ok", "error", "budget", "interrupted"]) -> None:
        """Mark the run ended; sub-tasks it left queued or running are cancelled."""
        self.status = status
        self.ended = now()
        for sub in self.subtasks():
            if sub.status in ("queued", "running"):
                sub.status, sub.ended = "cancelled", self.ended
        self.changed()

    # --- derived views ----------------------------------------------------------

    def subtasks(self) -> list[Subtask]:
        """Every sub-task in the order issued."""
        return [s for t in self.turns for c in t.tool_calls for s in c.subtasks]

    def calls(self) -> list[Call]:
        """Every model call: orchestrator turns, sub-task calls, then the rest."""
        out = [t.call for t in self.turns]
        out += [c for s in self.subtasks() for c in s.calls]
        return out + self.extra_calls

    def attempts(self) -> list[Attempt]:
        """Every HTTP attempt of the run."""
        return [a for c in self.calls() for a in c.attempts]

    @property
    def degraded(self) -> bool:
        """Whether work was lost: a sub-task failed, or a whole tool call was rejected."""
        return bool(self.rejected_calls()) or any(s.status in FAILED for s in self.subtasks())

    def rejected_calls(self) -> list[ToolCall]:
        """Tool calls refused as a whole (bad JSON, too many sub-tasks, unknown tool)."""
        return [tc for t in self.turns for tc in t.tool_calls if tc.error]

    @property
    def wall_ms(self) -> float:
        """Wall time so far (or in total once finished), in milliseconds."""
        return ((self.ended or now()) - self.started) * 1000.0

    def totals(self) -> tuple[int, int, float | None]:
        """(prompt tokens, completion tokens, cost in USD or None when any is unknown)."""
        atts = self.attempts()
        return (
            sum(a.prompt_tokens for a in atts),
            sum(a.completion_tokens for a in atts),
            cost_of(atts),
        )

    def cache_totals(self) -> tuple[int, int]:
        """(cache-read, cache-write) prompt tokens of the whole run (parts of its prompt)."""
        return cache_tokens(self.attempts())

    def figures(self) -> RunFigures:
        """The run's sums, computed once: what every view, the ledger and exports report."""
        atts = self.attempts()
        subs = self.subtasks()
        read, write = cache_tokens(atts)
        return RunFigures(
            prompt_tokens=sum(a.prompt_tokens for a in atts),
            completion_tokens=sum(a.completion_tokens for a in atts),
            cache_read_tokens=read,
            cache_write_tokens=write,
            cost_usd=cost_of(atts),
            orchestrator_context_tokens=self.orchestrator_context_tokens,
            subtasks=len(subs),
            subtasks_ok=sum(s.status == "ok" for s in subs),
        )


@dataclass(frozen=True, slots=True)
class RunFigures:
    """A run's sums, one mapping for every reader (``--json``, ``show``, serve, ledger, OTLP).

    Cached prompt tokens are parts of the prompt tokens; ``cost_usd`` is None when any
    attempt's cost is unknown.
    """

    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    orchestrator_context_tokens: int
    subtasks: int
    subtasks_ok: int

    def usage(self) -> dict[str, int | float | None]:
        """The ``usage`` object of ``--json`` and ``show --json`` (docs/contracts.md)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "orchestrator_context_tokens": self.orchestrator_context_tokens,
        }


def cache_tokens(attempts: Iterable[Attempt]) -> tuple[int, int]:
    """(cache-read, cache-write) prompt tokens summed over ``attempts``."""
    read = write = 0
    for a in attempts:
        read += a.cache_read_tokens
        write += a.cache_write_tokens
    return read, write


def cost_of(attempts: Iterable[Attempt]) -> float | None:
    """USD of ``attempts``, or None when it is unknown: never $0 for an unknown price.

    A successful attempt with an unknown price makes the sum unknown, and so does a
    failed one that generated tokens first (a stream cut after some arrived: billed). A
    failed one with an unknown price otherwise counts as free beside a success (a failure
    bills nothing as a rule), but a sum of failures alone is unknown when one of them is:
    nothing priced it, and $0 would read as "free".
    """
    cost = 0.0
    succeeded = unpriced_failure = False
    for a in attempts:
        if a.status == "ok" or a.completion_tokens:
            succeeded = succeeded or a.status == "ok"
            if a.cost_usd is None:
                return None
        if a.cost_usd is None:
            unpriced_failure = True
        else:
            cost += a.cost_usd
    return None if unpriced_failure and not succeeded else cost
