"""``tanglebrain routes``: the order sub-tasks of each tag would be tried in now, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tanglebrain.roster import Backend, Roster, RouteWeights
from tanglebrain.router._learned import Estimate, Learned


def explain(
    roster: Roster, env: Mapping[str, str], learned: Learned, tags: Sequence[str]
) -> list[dict[str, Any]]:
    """Per tag: the candidates in routing order with their evidence, and who is left out.

    The order is the roster's mode (static or learned) without load, open circuits or
    exploration, which only a running run has. Both orders are given, so that a roster
    still routing statically shows what learning would change.
    """
    out = []
    for tag in tags:
        tagged = [b for b in roster.backends if tag in b.good_at]
        eligible = [b for b in tagged if b.usable(env)]
        static = sorted(eligible, key=lambda b: b.cost)  # stable: roster order breaks ties
        estimates = {e.backend: e for e in learned.estimates(tag, static)}
        by_score = sorted(static, key=lambda b: -estimates[b.id].score)
        learned_mode = roster.settings.routing == "learned"
        order = by_score if learned_mode else static
        rows = []
        for i, b in enumerate(order):
            est = estimates[b.id]
            why = (
                _learned_why(est, estimates[order[0].id], i, learned.weights)
                if learned_mode
                else _static_why(b, order[0], i)
            )
            rows.append({**est.to_dict(), "why": why})
        out.append(
            {
                "tag": tag,
                "order": rows,
                "static_order": [b.id for b in static],
                "learned_order": [b.id for b in by_score],
                "excluded": [
                    {"backend": b.id, "why": _excluded(b, env)} for b in tagged if b not in eligible
                ],
            }
        )
    return out


def _excluded(b: Backend, env: Mapping[str, str]) -> str:
    if not b.enabled:
        return "disabled"
    return f"${b.api_key_env} is not set"


def _static_why(b: Backend, first: Backend, i: int) -> str:
    if i == 0:
        return "cheapest"
    if b.cost == first.cost:
        return "as cheap, later in the roster"
    return f"costs {b.cost:g} (vs {first.cost:g})"


def _learned_why(est: Estimate, best: Estimate, i: int, w: RouteWeights) -> str:
    evidence = f"over {est.n} call{'s' * (est.n != 1)}" if est.n else "prior only, no calls yet"
    if i == 0:
        return f"best expected value ({est.success:.0%} success, {evidence})"
    # The term of the score that costs it most against the best, as the weights count it.
    gaps = {
        "success": w.success * (best.success - est.success),
        "cost": w.cost * (est.relative_cost - best.relative_cost),
        "latency": w.latency * (est.relative_latency - best.relative_latency),
    }
    main = max(gaps, key=lambda k: gaps[k])
    if main == "success":
        return f"less likely to succeed ({est.success:.0%} vs {best.success:.0%}, {evidence})"
    if main == "cost":
        if est.cost_usd is not None and best.cost_usd is not None:
            return f"costlier ({_usd(est.cost_usd)} vs {_usd(best.cost_usd)} a call, {evidence})"
        return f"costlier ({est.relative_cost:.2f} vs {best.relative_cost:.2f} of the top cost)"
    return f"slower (p50 {_ms(est.p50_ms)} vs {_ms(best.p50_ms)}, {evidence})"


def _usd(usd: float) -> str:
    return f"${usd:.6f}" if 0 < abs(usd) < 0.001 else f"${usd:.4f}"


def _ms(ms: float | None) -> str:
    if ms is None:
        return "unknown"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
