"""Pure routing choices over the roster and run state.

* which backend orchestrates a request (task fit, context fit, cost, rotation),
* which backends may take a sub-task, in failover order,
* the rotation counter store (the only state this module keeps, in a locked file).

Functions here take everything they need as arguments (including a ``window_of``
lookup for context windows) so that they are table-testable without a network.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tanglebrain import filelock
from tanglebrain.errors import ConfigError, MissingKeyError, UsageError
from tanglebrain.roster import Backend, Roster
from tanglebrain.state import ensure_dir

WindowOf = Callable[[Backend], int | None]


@dataclass(frozen=True)
class OrchestratorPlan:
    """Who answers the request, in failover order.

    ``direct`` means no tools: the backend answers the prompt itself (no
    ``can_orchestrate`` backend is enabled, a non-orchestrator is pinned, or the
    user asked for ``--no-delegate``).
    """

    candidates: tuple[Backend, ...]
    direct: bool
    rotation_key: str | None = None
    notes: tuple[str, ...] = ()


def _fits(backend: Backend, needed_tokens: int, window_of: WindowOf) -> bool:
    window = window_of(backend)
    return window is None or needed_tokens <= window


def plan_orchestrator(
    roster: Roster,
    env: Mapping[str, str],
    *,
    pin: str | None = None,
    task: str | None = None,
    needed_tokens: int = 0,
    window_of: WindowOf = lambda b: None,
    rotation_offset: Callable[[str, int], int] = lambda key, n: 0,
) -> OrchestratorPlan:
    """Choose the orchestrator (or the direct answerer) for one request.

    Args:
        roster: the validated roster.
        env: environment, to see which API keys are set.
        pin: a backend id given with ``-b``.
        task: a ``-t`` tag hint.
        needed_tokens: estimated tokens entering the orchestrator's context.
        window_of: context window lookup (None = unknown, never filtered).
        rotation_offset: ``(group key, group size) -> offset`` for round-robin.

    Raises:
        ConfigError: unknown or disabled pin, no enabled backend, nothing fits.
        MissingKeyError: the only candidates lack their API key.
    """
    if task is not None and task not in roster.tags():
        raise UsageError(
            f"unknown task tag {task!r} for -t/--task",
            fix="known tags: " + (", ".join(roster.tags()) or "none"),
        )
    if pin is not None:
        return _plan_pinned(roster, pin, env, needed_tokens, window_of)
    enabled = roster.enabled()
    if not enabled:
        raise ConfigError(
            "no backend is enabled",
            fix="enable one with `tanglebrain backends enable ID` or edit the roster",
        )
    orchestrators = [b for b in enabled if b.can_orchestrate]
    if not orchestrators:
        direct = _direct_candidates(enabled, env, needed_tokens, window_of)
        return OrchestratorPlan(
            direct, direct=True, notes=("no orchestrator is configured; answering directly",)
        )
    fitting = _fitting_orchestrators(orchestrators, env, needed_tokens, window_of)
    return _ranked(fitting, task, rotation_offset)


def _plan_pinned(
    roster: Roster, pin: str, env: Mapping[str, str], needed_tokens: int, window_of: WindowOf
) -> OrchestratorPlan:
    """The pinned backend alone: it orchestrates if it can, else answers directly."""
    backend = _pinned(roster, pin)
    backend.api_key(env)
    if not _fits(backend, needed_tokens, window_of):
        raise ConfigError(
            f"request needs ~{needed_tokens} tokens but the context window is {window_of(backend)}",
            backend=pin,
            fix="pin a larger-context backend or send less input",
        )
    return OrchestratorPlan((backend,), direct=not backend.can_orchestrate)


def _fitting_orchestrators(
    orchestrators: Sequence[Backend],
    env: Mapping[str, str],
    needed_tokens: int,
    window_of: WindowOf,
) -> list[Backend]:
    """The orchestrators with their key set whose context window holds the request."""
    usable = [b for b in orchestrators if b.usable(env)]
    if not usable:
        first = orchestrators[0]
        raise MissingKeyError(first.id, first.api_key_env or "")
    fitting = [b for b in usable if _fits(b, needed_tokens, window_of)]
    if not fitting:
        largest = max((window_of(b) or 0) for b in usable)
        raise ConfigError(
            f"request needs ~{needed_tokens} tokens; no orchestrator fits "
            f"(largest context window: {largest})",
            fix="add a larger-context orchestrator or send less input",
        )
    return fitting


def _ranked(
    fitting: Sequence[Backend], task: str | None, rotation_offset: Callable[[str, int], int]
) -> OrchestratorPlan:
    """Order by task fit, then cost; rotate the tied best so that load spreads over them."""

    def rank(b: Backend) -> tuple[int, float]:
        return (0 if task is None or task in b.good_at else 1, b.cost)

    ordered = sorted(fitting, key=rank)  # stable: file order breaks ties
    top = [b for b in ordered if rank(b) == rank(ordered[0])]
    key = None
    if len(top) > 1:
        key = ",".join(sorted(b.id for b in top))
        shift = rotation_offset(key, len(top)) % len(top)
        top = top[shift:] + top[:shift]
    rest = [b for b in ordered if b not in top]
    return OrchestratorPlan((*top, *rest), direct=False, rotation_key=key)


def _pinned(roster: Roster, pin: str) -> Backend:
    backend = roster.get(pin)
    if backend is None:
        ids = ", ".join(b.id for b in roster.backends)
        raise ConfigError("unknown backend id", backend=pin, fix=f"known ids: {ids}")
    if not backend.enabled:
        raise ConfigError(
            "backend is disabled", backend=pin, fix=f"run `tanglebrain backends enable {pin}`"
        )
    return backend


def _direct_candidates(
    enabled: Sequence[Backend], env: Mapping[str, str], needed: int, window_of: WindowOf
) -> tuple[Backend, ...]:
    usable = [b for b in enabled if b.usable(env)]
    if not usable:
        first = enabled[0]
        raise MissingKeyError(first.id, first.api_key_env or "")
    fitting = [b for b in usable if _fits(b, needed, window_of)] or usable
    return tuple(sorted(fitting, key=lambda b: b.cost))


@dataclass
class Breakers:
    """A circuit breaker per backend: repeated failures stop further calls to it.

    After ``threshold`` failures in a row a backend's circuit opens: calls that have
    another candidate skip it. Once ``probe_after_s`` has passed, one call at a time may
    probe it (half-open); a success closes the circuit, a failure opens it again. A run
    keeps its circuits open to its end (the default); a server shares one ``Breakers``
    across its runs with a finite ``probe_after_s``.
    """

    threshold: int = 2
    probe_after_s: float = math.inf
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _opened: dict[str, float] = field(default_factory=dict)
    _probing: set[str] = field(default_factory=set)

    def is_open(self, backend_id: str) -> bool:
        """Whether calls with an alternative should skip ``backend_id`` now."""
        opened = self._opened.get(backend_id)
        if opened is None:
            return False
        return backend_id in self._probing or self.clock() - opened < self.probe_after_s

    def admit(self, backend_id: str) -> bool:
        """Whether a call may go to ``backend_id``; a half-open circuit admits one probe."""
        if self.is_open(backend_id):
            return False
        if backend_id in self._opened:
            self._probing.add(backend_id)
        return True

    def record(self, backend_id: str, ok: bool) -> None:
        """Book the outcome of a call to ``backend_id``."""
        self._probing.discard(backend_id)
        if ok:
            self._failures.pop(backend_id, None)
            self._opened.pop(backend_id, None)
            return
        failures = self._failures[backend_id] = self._failures.get(backend_id, 0) + 1
        if failures >= self.threshold:
            self._opened[backend_id] = self.clock()


@dataclass
class LoadState:
    """What the router needs to know about the run so far."""

    in_flight: dict[str, int] = field(default_factory=dict)
    breakers: Breakers = field(default_factory=Breakers)

    def cooling(self, backend_id: str) -> bool:
        """Whether this backend failed often enough to go last (its circuit is open)."""
        return self.breakers.is_open(backend_id)


def subtask_candidates(
    roster: Roster,
    env: Mapping[str, str],
    *,
    task: str | None,
    backend_id: str | None,
    orchestrator_id: str | None,
    needed_tokens: int,
    load: LoadState,
    window_of: WindowOf = lambda b: None,
) -> list[Backend]:
    """Backends that may take a sub-task, best first; empty means ``no_fit``.

    A named backend comes first (it must be enabled and have its key); the backends
    good at ``task`` follow, cheapest first, then least loaded. Backends cooling down
    after repeated failures go last; those whose context window the sub-task does
    not fit are left out. The orchestrator is not delegated to unless named.

    Spill-over: when the best of the others is saturated (its calls in flight, queued
    ones included, reach its ``max_concurrency``), the backends with a free slot whose
    cost is at most ``settings.spill_cost_factor`` times its cost move ahead of it,
    cheapest first; the saturated ones stay next in line for failover. A free backend
    (cost 0) therefore spills only to other free backends: its saturation never starts
    spending money. A named backend is never spilled from.
    """
    out: list[Backend] = []
    if backend_id is not None:
        named = roster.get(backend_id)
        if named is not None and named.usable(env) and _fits(named, needed_tokens, window_of):
            out.append(named)
    if task is not None or backend_id is None:
        pool = [
            b
            for b in roster.enabled()
            if (task is None or task in b.good_at)
            and b.id != orchestrator_id
            and b not in out
            and b.usable(env)
            and _fits(b, needed_tokens, window_of)
        ]
        pool.sort(key=lambda b: (load.cooling(b.id), b.cost, load.in_flight.get(b.id, 0)))
        out.extend(_spill_over(pool, load, roster.settings.spill_cost_factor))
    return out


def _spill_over(pool: list[Backend], load: LoadState, factor: float) -> list[Backend]:
    """``pool`` (sorted best first) with idle backends ahead of a saturated best one."""

    def free(b: Backend) -> bool:
        return load.in_flight.get(b.id, 0) < b.max_concurrency

    healthy = [b for b in pool if not load.cooling(b.id)]
    if not healthy or free(healthy[0]):
        return pool
    limit = healthy[0].cost * factor
    spill = [b for b in healthy if free(b) and b.cost <= limit]
    return spill + [b for b in pool if b not in spill]


# --- rotation ------------------------------------------------------------------------


class RotationStore:
    """Round-robin counters in ``state_dir/rotation.json``, safe across processes.

    Reads take a shared lock, advances an exclusive one; the counter moves only when
    a run succeeded, so a failing orchestrator does not skip its turn-mates.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "rotation.json"

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[dict[str, int]]:
        ensure_dir(self.path.parent)
        with filelock.locked(self.path.with_suffix(".lock"), shared=not exclusive):
            try:
                data = json.loads(self.path.read_text())
                counters = {str(k): int(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError):
                counters = {}
            yield counters
            if exclusive:
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(counters, sort_keys=True))
                os.replace(tmp, self.path)

    def offset(self, key: str, size: int) -> int:
        """Current offset for the group ``key`` of ``size`` members."""
        try:
            with self._locked(exclusive=False) as counters:
                return counters.get(key, 0) % max(size, 1)
        except OSError:
            return 0

    def advance(self, key: str) -> None:
        """Move the group's counter on by one (after a successful run)."""
        try:
            with self._locked(exclusive=True) as counters:
                counters[key] = counters.get(key, 0) + 1
        except OSError:
            pass  # rotation is a nicety; an unwritable state dir must not fail the run
