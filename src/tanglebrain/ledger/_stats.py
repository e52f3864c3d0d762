"""Aggregates behind ``tanglebrain stats``, computed from ledger rows.

Pure functions over the row dicts that :meth:`tanglebrain.ledger.Ledger.rows_since`
returns: per backend (calls, success rate, latency percentiles, tokens, prompt-cache
hits, dollars, failovers), per run kind (delegated, solo, direct), the specialists'
success rate, the orchestrator's context size and what delegation saved. Unknown prices
stay unknown (``None``), never $0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

SPECIALIST_TARGET = 0.95


def _pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))])


def _sum_cost(costs: Sequence[float | None]) -> float | None:
    return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)


def summarize(runs: Sequence[dict[str, Any]], calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate ``rows_since`` output: per backend, per run kind, specialists, savings."""
    # A call cut short by the user's interrupt says nothing about its backend.
    cancelled: dict[str, int] = {}
    for c in calls:
        if c["status"] == "cancelled":
            cancelled[c["backend"]] = cancelled.get(c["backend"], 0) + 1
    calls = [c for c in calls if c["status"] != "cancelled"]
    backends: dict[str, list[dict[str, Any]]] = {name: [] for name in cancelled}
    for c in calls:
        backends.setdefault(c["backend"], []).append(c)
    per_backend = [
        {
            "backend": name, "calls": len(cs), "ok": sum(c["status"] == "ok" for c in cs),
            "success_rate": sum(c["status"] == "ok" for c in cs) / len(cs) if cs else None,
            "p50_ms": _pct([c["latency_ms"] or 0.0 for c in cs], 0.5),
            "p95_ms": _pct([c["latency_ms"] or 0.0 for c in cs], 0.95),
            "retries": sum(c["retries"] or 0 for c in cs),
            "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in cs),
            "completion_tokens": sum(c["completion_tokens"] or 0 for c in cs),
            **_cache(cs),
            "cost_usd": _sum_cost([c["cost_usd"] for c in cs]),
            "failovers": sum(c["failover"] or 0 for c in cs),
            "cancelled": cancelled.get(name, 0),
        }
        for name, cs in sorted(backends.items())
    ]  # fmt: skip
    modes = []
    for mode in ("delegated", "solo", "direct", "gated"):
        rs = [r for r in runs if r["mode"] == mode]
        modes.append({
            "mode": mode, "runs": len(rs), "ok": sum(r["status"] == "ok" for r in rs),
            "median_wall_ms": _pct([_wall(r) for r in rs], 0.5),
            "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rs),
            "cost_usd": _sum_cost([r["cost_usd"] for r in rs]) if rs else 0.0,
            "median_orchestrator_context_tokens": _pct(
                [r["orchestrator_context_tokens"] for r in rs], 0.5),
        })  # fmt: skip
    spec = [c for c in calls if c["role"] == "subtask"]
    spec_ok = sum(c["status"] == "ok" for c in spec)
    return {
        "runs": len(runs),
        "backends": per_backend,
        "modes": modes,
        "specialist": {
            "calls": len(spec), "ok": spec_ok, "target": SPECIALIST_TARGET,
            "success_rate": spec_ok / len(spec) if spec else None,
        },
        "orchestrator_context_tokens": {
            "runs": len(runs),
            "median": _pct([r["orchestrator_context_tokens"] for r in runs], 0.5),
        },
        "savings": _savings(runs, calls),
        "ab": _ab(runs),
        "reviews": _reviews(runs),
    }  # fmt: skip


def _cache(calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prompt-cache reads and writes, and the cache-hit share of the prompt tokens.

    The share is cache-read prompt tokens over prompt tokens, over the calls recorded
    with cache counts: calls recorded before the ledger kept them (NULL) would read as
    misses, so they are left out of both sides; None when no such call had a prompt.
    """
    known = [c for c in calls if c.get("cache_read_tokens") is not None]
    read = sum(c["cache_read_tokens"] for c in known)
    prompt = sum(c["prompt_tokens"] or 0 for c in known)
    return {
        "cache_read_tokens": read,
        "cache_write_tokens": sum(c.get("cache_write_tokens") or 0 for c in known),
        "cache_hit_share": read / prompt if prompt else None,
    }


def _reviews(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Reviews run, verdict counts, and the share of reviewed runs the panel changed."""
    panels = [json.loads(r["review"]) for r in runs if r.get("review")]
    overall = {v: 0 for v in ("AFFIRM", "MODIFY", "REVERSE")}
    points = dict(overall)
    for p in panels:
        if p.get("overall") and p["overall"].get("verdict") in overall:
            overall[p["overall"]["verdict"]] += 1
        for v in p.get("verdicts", []):
            if v.get("verdict") in points:
                points[v["verdict"]] += 1
    changed = sum(1 for p in panels if p.get("changed"))
    return {
        "runs": len(panels),
        "degraded": sum(1 for p in panels if p.get("degraded")),
        "overall": overall,
        "points": points,
        "changed": changed,
        "changed_share": changed / len(panels) if panels else None,
    }


def _ab(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Measured delegated-over-solo ratios over ``run --ab`` pairs where both answered.

    Per pair, delegated / solo of the orchestrator's context tokens, the cost and the wall
    time; reported as the median of the pairs' ratios and as the ratio of the totals. A
    pair with an unknown cost is left out of the cost figures (and counted).
    """
    arms: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r.get("pair") and r["status"] == "ok":
            arms.setdefault(r["pair"], {})[r["mode"]] = r
    pairs = [(a["delegated"], a["solo"]) for a in arms.values() if {"delegated", "solo"} <= set(a)]
    out: dict[str, Any] = {"pairs": len(pairs)}
    figures = {
        "orchestrator_context_tokens": lambda r: r["orchestrator_context_tokens"],
        "cost": lambda r: r["cost_usd"],
        "wall": _wall,
    }
    for name, get in figures.items():
        known = [(get(d), get(s)) for d, s in pairs if get(d) is not None and get(s) is not None]
        ratios = [d / s for d, s in known if s]
        solo_total = sum(s for _, s in known)
        out[name] = {
            "pairs": len(ratios),
            "median_ratio": _pct(ratios, 0.5),
            "total_ratio": sum(d for d, _ in known) / solo_total if solo_total else None,
        }
    return out


def _wall(run: dict[str, Any]) -> float:
    started = float(run["started"])
    return (float(run["ended"] or started) - started) * 1000.0


def _savings(runs: Sequence[dict[str, Any]], calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What delegated tokens would have cost at the orchestrator's price, minus their cost.

    Per sub-task call of a delegated run; a call whose own price or whose run's
    orchestrator price is unknown is left out of the dollars (and counted), never $0.
    """
    delegated = {r["id"]: r for r in runs if r["mode"] == "delegated"}
    total = sum(r["prompt_tokens"] + r["completion_tokens"] for r in delegated.values())
    off = priced = unpriced = 0
    at_price = actual = 0.0
    for c in calls:
        run = delegated.get(c["run_id"])
        if run is None or c["role"] != "subtask":
            continue
        p_tok, c_tok = c["prompt_tokens"] or 0, c["completion_tokens"] or 0
        off += p_tok + c_tok
        p_in, p_out = run["orchestrator_price_in"], run["orchestrator_price_out"]
        if c["cost_usd"] is None or p_in is None or p_out is None:
            unpriced += 1
            continue
        priced += 1
        at_price += p_tok * p_in + c_tok * p_out
        actual += c["cost_usd"]
    known = priced > 0
    return {
        "delegated_runs": len(delegated),
        "offloaded_tokens": off,
        "total_tokens": total,
        "offloaded_share": off / total if total else None,
        "at_orchestrator_price_usd": at_price if known else None,
        "actual_usd": actual if known else None,
        "saved_usd": at_price - actual if known else None,
        "priced_calls": priced,
        "unpriced_calls": unpriced,
    }


def routing(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tag, what learned routing did differently from static routing, and how it went.

    Over ``Ledger.route_rows`` (one row per sub-task call): of the sub-tasks the learned
    router placed, the share whose first backend was not the static choice ("away"),
    and for those the first call's success rate, the sub-task's mean cost and p50
    latency (every call of it, failovers included); beside them the same figures for
    every sub-task of the tag whose first call went to the static choice (any mode).
    """
    subtasks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] != "cancelled":
            subtasks.setdefault((r["run_id"], r["idx"]), []).append(r)
    by_tag: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for calls in subtasks.values():
        first = next((c for c in calls if c["first"]), calls[0])
        extra = json.loads(first["extra"]) if first.get("extra") else {}
        by_tag.setdefault(first["task"] or "*", []).append(({**first, **extra}, calls))
    out = []
    for tag, subs in sorted(by_tag.items()):
        placed = [(f, cs) for f, cs in subs if f.get("routed_by") in ("learned", "explore")]
        if not placed:
            continue
        away = [
            (f, cs) for f, cs in placed if f["static_first"] and f["backend"] != f["static_first"]
        ]
        statics = {f["static_first"] for f, _ in placed if f["static_first"]}
        baseline = [(f, cs) for f, cs in subs if f["backend"] in statics]
        out.append({
            "tag": tag, "learned_subtasks": len(placed), "away": len(away),
            "away_share": len(away) / len(placed),
            "static_choice": sorted(statics),
            "away_figures": _route_figures(away), "static_figures": _route_figures(baseline),
        })  # fmt: skip
    return out


def _route_figures(subs: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """First-call success rate, mean cost and p50 latency of some sub-tasks."""
    costs = [_sum_cost([c["cost_usd"] for c in cs]) for _, cs in subs]
    known = [c for c in costs if c is not None]
    return {
        "subtasks": len(subs),
        "success_rate": sum(f["status"] == "ok" for f, _ in subs) / len(subs) if subs else None,
        "mean_cost_usd": sum(known) / len(known) if known else None,
        "p50_ms": _pct([sum(c["latency_ms"] or 0.0 for c in cs) for _, cs in subs], 0.5),
    }
