"""Which backends may take a sub-task, in failover order (static or learned)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tanglebrain.roster import Backend, Roster
from tanglebrain.router._plan import WindowOf, _fits
from tanglebrain.router._state import LoadState


@dataclass(frozen=True)
class Route:
    """A sub-task's candidates, best first, and how the first was chosen.

    Attributes:
        candidates: the backends to try in order; empty means ``no_fit``.
        routed_by: ``named`` (the orchestrator pinned it), ``static`` (tag, cost,
            load), ``learned`` (best expected value) or ``explore`` (learned, trying
            the best but one).
        static_first: the backend static routing would have tried first.
    """

    candidates: tuple[Backend, ...]
    routed_by: str
    static_first: str | None


def route_subtask(
    roster: Roster,
    env: Mapping[str, str],
    *,
    task: str | None,
    backend_id: str | None,
    orchestrator_id: str | None,
    needed_tokens: int,
    load: LoadState,
    window_of: WindowOf = lambda b: None,
) -> Route:
    """Backends that may take a sub-task, best first, and how the first was chosen.

    A named backend comes first (it must be enabled and have its key); the backends
    good at ``task`` follow: statically cheapest first, then least loaded; with
    ``load.learned`` (``routing = "learned"``) by their learned score, cheapest first
    among equals. Backends cooling down after repeated failures go last either way;
    those whose context window the sub-task does not fit are left out. The
    orchestrator is not delegated to unless named.

    Spill-over: when the best of the others is saturated (its calls in flight, queued
    ones included, reach its ``max_concurrency``), the backends with a free slot whose
    cost is at most ``settings.spill_cost_factor`` times its cost move ahead of it, in
    order; the saturated ones stay next in line for failover. A free backend (cost 0)
    therefore spills only to other free backends: its saturation never starts spending
    money. A named backend is never spilled from.
    """
    out: list[Backend] = []
    routed_by = "static"
    static_first: str | None = None
    if backend_id is not None:
        named = roster.get(backend_id)
        if named is not None and named.usable(env) and _fits(named, needed_tokens, window_of):
            out.append(named)
            routed_by = "named"
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
        static_first = pool[0].id if pool else None
        if load.learned is not None and pool:
            healthy = [b for b in pool if not load.cooling(b.id)]
            ordered, explored = load.learned.order(task, healthy)
            pool = ordered + [b for b in pool if b not in healthy]
            if not out:
                routed_by = "explore" if explored else "learned"
        out.extend(_spill_over(pool, load, roster.settings.spill_cost_factor))
    return Route(tuple(out), routed_by, static_first)


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
