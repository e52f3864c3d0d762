"""The ``stats`` view of the ledger: per-backend and per-kind tables, then summary lines.

Pure presentation over the sums :mod:`tanglebrain.ledger._stats` returns (its ``stats``
dict). Unknown dollar amounts read ``unknown``, never $0. ``stats_view`` is also
re-exported by :mod:`tanglebrain.views.history` beside the ``runs`` and ``show`` views.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tanglebrain.views.render import money, seconds, times


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f} %"


def stats_view(data: dict[str, Any]) -> RenderableType:
    """``stats``: per-backend and per-kind tables plus the specialist and savings lines."""
    header = Text(f"{data['runs']} run(s)" + (f" since {data['since']}" if data["since"] else ""))
    backends, kinds = _backends_table(data["backends"]), _kinds_table(data["modes"])
    return Group(header, Text(""), backends, Text(""), kinds, Text(""), *_summary_lines(data))


def _backends_table(rows: list[dict[str, Any]]) -> Table:
    """One row per backend; ``cached``: prompt tokens read from the cache / prompt tokens."""
    table = Table(title="backends", box=None, header_style="bold", title_justify="left")
    for name in (
        "backend", "calls", "success", "p50", "p95", "retries", "tokens", "cached", "cost",
        "failovers",
    ):  # fmt: skip
        table.add_column(name, justify="left" if name == "backend" else "right")
    for b in rows:
        table.add_row(
            b["backend"], str(b["calls"]), _pct(b["success_rate"]), seconds(b["p50_ms"]),
            seconds(b["p95_ms"]), str(b["retries"]),
            str(b["prompt_tokens"] + b["completion_tokens"]), _pct(b["cache_hit_share"]),
            money(b["cost_usd"]), str(b["failovers"]),
        )  # fmt: skip
    return table


def _kinds_table(rows: list[dict[str, Any]]) -> Table:
    """One row per run kind (mode): runs, successes, median wall time, tokens, cost."""
    table = Table(title="run kinds", box=None, header_style="bold", title_justify="left")
    for name in ("kind", "runs", "ok", "median wall", "tokens", "cost", "median ctx tokens"):
        table.add_column(name, justify="left" if name == "kind" else "right")
    for m in rows:
        ctx = m["median_orchestrator_context_tokens"]
        table.add_row(
            m["mode"],
            str(m["runs"]),
            str(m["ok"]),
            seconds(m["median_wall_ms"]),
            str(m["tokens"]),
            money(m["cost_usd"]) if m["runs"] else "-",
            "-" if ctx is None else f"{ctx:.0f}",
        )
    return table


def _summary_lines(data: dict[str, Any]) -> list[Text]:
    """The specialist, context, offload and savings lines, and reviews when there were any."""
    spec, sav = data["specialist"], data["savings"]
    rate = spec["success_rate"]
    met = rate is not None and rate > spec["target"]
    ctx = data["orchestrator_context_tokens"]["median"]
    left_out = sav["unpriced_calls"]
    lines = [
        Text.assemble(
            "specialist success: ", (_pct(rate), "green" if met else "red"),
            f" of {spec['calls']} call(s) (target > {spec['target'] * 100:.0f} %)",
        ),
        Text(f"orchestrator context tokens per run (median): {'-' if ctx is None else int(ctx)}"),
        Text(f"tokens processed off the orchestrator: {_pct(sav['offloaded_share'])}"),
        Text(
            f"savings (estimated): {money(sav['saved_usd'])} (delegated tokens at the "
            f"orchestrator's price {money(sav['at_orchestrator_price_usd'])}, actually "
            f"{money(sav['actual_usd'])}"
            + (f"; {left_out} sub-task call(s) with unknown prices left out)" if left_out
               else ")")
        ),
    ]  # fmt: skip
    rv = data["reviews"]
    if rv["runs"]:
        counts = ", ".join(f"{k} {v}" for k, v in rv["overall"].items())
        lines.append(
            Text(
                f"reviews: {rv['runs']} run(s) reviewed ({rv['degraded']} degraded); overall "
                f"verdicts {counts}; the panel changed {_pct(rv['changed_share'])} of them"
            )
        )
    ab = data.get("ab") or {}
    if ab.get("pairs"):
        parts = []
        for key, label in (("cost", "cost"), ("wall", "wall time"),
                           ("orchestrator_context_tokens", "orchestrator context")):  # fmt: skip
            f = ab[key]
            parts.append(f"{label} {times(f['median_ratio'])} (totals {times(f['total_ratio'])})")
        lines.append(
            Text(
                f"measured over {ab['pairs']} A/B pair(s) (`run --ab`), delegated/solo, median: "
                + "; ".join(parts)
            )
        )
    for r in data.get("routing", []):
        away, static = r["away_figures"], r["static_figures"]
        lines.append(
            Text(
                f"learned routing, {r['tag']}: {_pct(r['away_share'])} of {r['learned_subtasks']} "
                f"sub-task(s) sent away from {', '.join(r['static_choice']) or '-'}; "
                f"those {_route(away)}; the static choice's history {_route(static)}"
            )
        )
    return lines


def _route(figures: dict[str, Any]) -> str:
    """``N ok X %, $Y each, p50 Z`` for the learned-routing line of ``stats``."""
    return (
        f"{_pct(figures['success_rate'])} ok first time, {money(figures['mean_cost_usd'])} each, "
        f"p50 {seconds(figures['p50_ms'])} (n={figures['subtasks']})"
    )
