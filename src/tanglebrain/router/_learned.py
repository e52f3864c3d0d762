"""Learned sub-task routing: per (tag, backend) outcomes from the ledger, scored.

Each (tag, backend) pair gets a success estimate: a Beta-style mean of a prior taken
from the roster and of its recorded outcomes, every outcome weighted by its age
(``half_life_days``: an outcome that old counts half). The prior says what the roster
says: pricier backends are somewhat more likely to succeed, and a backend's first
``good_at`` tag is its specialty. It is weak (worth ``PRIOR_STRENGTH`` outcomes), and
its cost premium (``PRIOR_SPAN``) is below the default cost weight, so that without
evidence the default weights give the static order (cheapest first).

A candidate's score is ``success·P − cost·relative cost − latency·relative p50``, the
relatives being divided by the largest among the candidates (measured dollars per call
when every candidate has them, else the roster's ``cost``). Candidates are tried best
score first; with probability ``explore`` the best but one goes first, so that the
evidence on it stays fresh. Nothing here touches a hard limit: the caller passes only
backends that may take the sub-task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tanglebrain.roster import Backend, RouteWeights

if TYPE_CHECKING:  # random and statistics cost ~25 ms of every run's start-up to import
    import random

PRIOR_STRENGTH = 3.0
PRIOR_BASE = 0.8  # the cheapest candidate's prior success
PRIOR_SPAN = 0.05  # added, in proportion, up to the priciest candidate
PRIOR_SPECIALTY = 0.03  # the tag is the backend's first good_at
DAY_S = 86_400.0
# Outcomes older than this many half-lives weigh under 0.4 %: not worth reading.
HORIZON_HALF_LIVES = 8
ANY_TAG = "*"
"""The evidence key of sub-tasks given no tag: every outcome of the backend."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call of a sub-task to one backend, as routing evidence.

    Attributes:
        task: the sub-task's tag (None when it had none).
        backend: the backend called.
        ok: whether the call answered (and the answer was not redone).
        ended: when it ended (epoch seconds).
        latency_ms: its wall time.
        cost_usd: what it cost, None when unknown.
        kind: why it failed: an error kind (``timeout``, ``empty``, …) or ``redone``.
    """

    task: str | None
    backend: str
    ok: bool
    ended: float
    latency_ms: float | None = None
    cost_usd: float | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Estimate:
    """What the router believes of one candidate for one tag, and its score."""

    backend: str
    n: int
    success: float
    prior: float
    p50_ms: float | None
    cost_usd: float | None
    score: float
    relative_cost: float
    relative_latency: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``routes --json``."""
        return {
            "backend": self.backend,
            "n": self.n,
            "success": round(self.success, 4),
            "prior": round(self.prior, 4),
            "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 1),
            "cost_usd": self.cost_usd,
            "score": round(self.score, 4),
        }


@dataclass
class _Pair:
    """The evidence of one (tag, backend) pair."""

    n: int = 0
    weight: float = 0.0
    weight_ok: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (ms, weight)
    costs: list[tuple[float, float]] = field(default_factory=list)  # (usd, weight)


def _weighted_median(values: Sequence[tuple[float, float]]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2.0
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]  # pragma: no cover - weights are positive


class Learned:
    """The outcomes seen so far, and the scores they give each candidate.

    Args:
        outcomes: recorded outcomes (any order).
        weights: the roster's ``[settings.route_weights]``.
        now: the time ages are measured from (epoch seconds).
        rng: the exploration coin; seed it for repeatable choices.
    """

    def __init__(
        self,
        outcomes: Iterable[Outcome],
        weights: RouteWeights,
        *,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.weights = weights
        self.now = now
        if rng is None:
            import random

            rng = random.Random()
        self.rng = rng
        self._pairs: dict[tuple[str, str], _Pair] = {}
        for outcome in outcomes:
            self.add(outcome)

    def add(self, outcome: Outcome) -> None:
        """Count one more outcome (from the ledger, or a call of the current run)."""
        age_days = max(0.0, self.now - outcome.ended) / DAY_S
        weight = 0.5 ** (age_days / self.weights.half_life_days)
        for key in {outcome.task or ANY_TAG, ANY_TAG}:
            pair = self._pairs.setdefault((key, outcome.backend), _Pair())
            pair.n += 1
            pair.weight += weight
            if outcome.ok:
                pair.weight_ok += weight
                if outcome.latency_ms is not None:
                    pair.latencies.append((outcome.latency_ms, weight))
            if outcome.cost_usd is not None:
                pair.costs.append((outcome.cost_usd, weight))

    def estimates(self, tag: str | None, candidates: Sequence[Backend]) -> list[Estimate]:
        """Every candidate's estimate and score for ``tag``, in the given order."""
        if not candidates:
            return []
        key = tag or ANY_TAG
        pairs = [self._pairs.get((key, b.id), _Pair()) for b in candidates]
        priors = _priors(tag, candidates)
        success = [
            (PRIOR_STRENGTH * prior + p.weight_ok) / (PRIOR_STRENGTH + p.weight)
            for prior, p in zip(priors, pairs, strict=True)
        ]
        p50 = [_weighted_median(p.latencies) for p in pairs]
        costs = [
            sum(c * w for c, w in p.costs) / sum(w for _, w in p.costs) if p.costs else None
            for p in pairs
        ]
        rel_cost = _relative_costs(candidates, costs)
        rel_latency = _relative(p50)
        w = self.weights
        return [
            Estimate(
                backend=b.id,
                n=pair.n,
                success=s,
                prior=prior,
                p50_ms=lat,
                cost_usd=cost,
                score=w.success * s - w.cost * rc - w.latency * rl,
                relative_cost=rc,
                relative_latency=rl,
            )
            for b, pair, s, prior, lat, cost, rc, rl in zip(
                candidates, pairs, success, priors, p50, costs, rel_cost, rel_latency, strict=True
            )
        ]

    def order(self, tag: str | None, candidates: Sequence[Backend]) -> tuple[list[Backend], bool]:
        """``candidates`` best score first; and whether this pick explores.

        Ties keep the given order (the static one). Exploring swaps the first two.
        """
        scored = self.estimates(tag, candidates)
        ranked = sorted(range(len(candidates)), key=lambda i: -scored[i].score)
        out = [candidates[i] for i in ranked]
        explore = len(out) > 1 and self.rng.random() < self.weights.explore
        if explore:
            out[0], out[1] = out[1], out[0]
        return out, explore


def _priors(tag: str | None, candidates: Sequence[Backend]) -> list[float]:
    """Each candidate's prior success: by its cost rank among them, and its specialty."""
    levels = sorted({b.cost for b in candidates})
    span = max(1, len(levels) - 1)
    return [
        PRIOR_BASE
        + PRIOR_SPAN * levels.index(b.cost) / span
        + (PRIOR_SPECIALTY if tag is not None and b.good_at[0] == tag else 0.0)
        for b in candidates
    ]


def _relative_costs(candidates: Sequence[Backend], measured: Sequence[float | None]) -> list[float]:
    """Cost relative to the priciest candidate: measured dollars when all have them."""
    if all(c is not None for c in measured) and max(c or 0.0 for c in measured) > 0:
        return _relative(measured)
    return _relative([b.cost for b in candidates])


def _relative(values: Sequence[float | None]) -> list[float]:
    """Each value over the largest; unknown ones get the median of the known (neutral)."""
    known = [v for v in values if v is not None]
    if not known:
        return [0.0 for _ in values]
    ordered = sorted(known)
    mid = len(ordered) // 2
    fill = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    filled = [fill if v is None else v for v in values]
    top = max(filled)
    return [v / top if top > 0 else 0.0 for v in filled]


def evidence_since(weights: RouteWeights, now: float) -> float:
    """The oldest end time worth reading: ``HORIZON_HALF_LIVES`` half-lives before ``now``."""
    return now - HORIZON_HALF_LIVES * weights.half_life_days * DAY_S


def outcomes_from_rows(rows: Iterable[dict[str, Any]]) -> list[Outcome]:
    """Outcomes of the ledger's sub-task call rows (``Ledger.route_rows``).

    A call counts as a success when it answered, unless a later sub-task of the same
    run asked the same thing again: the answer was not good enough, so it counts
    against the backend (``redone``). Cancelled calls say nothing about a backend.
    """
    rows = [r for r in rows if r["status"] != "cancelled" and r["backend"]]
    asked: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["run_id"], (r["prompt"] or "").strip())
        asked[key] = max(asked.get(key, -1), r["idx"] if r["idx"] is not None else -1)
    out = []
    for r in rows:
        redone = asked[(r["run_id"], (r["prompt"] or "").strip())] > (r["idx"] or 0)
        ok = r["status"] == "ok" and not redone
        kind = None if ok else ("redone" if r["status"] == "ok" else r["kind"] or "error")
        latency = r["latency_ms"]
        out.append(
            Outcome(
                task=r["task"],
                backend=r["backend"],
                ok=ok,
                ended=float(r["ended"] or 0.0),
                latency_ms=None if latency is None or math.isnan(latency) else float(latency),
                cost_usd=r["cost_usd"],
                kind=kind,
            )
        )
    return out
