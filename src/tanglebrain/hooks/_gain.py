"""``tanglebrain gain``: what the hooks saved, counted honestly, from the hook log.

A raw output only counts for what the agent would itself have put in its context
(measured with the ``shared/agents`` harness against each agent's current release):

* Claude Code: a successful output over 30,000 characters is saved to a file and the model
  gets a 2 KB preview and the path; a failed one keeps its first and last ~5,000;
* Codex CLI: the first and last 5,000 characters;
* Gemini CLI: over 40,000 characters, the first 8,000 and last 32,000 plus a path.

So the raw side is capped at that, and a digest bigger than it counts as a loss (negative
savings), never as zero. Bytes stand in for characters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PATH_NOTE = 150  # bytes of the note naming the file an agent saved a big output to


def agent_view(agent: str, raw: int, status: int | None) -> int:
    """How many bytes of a ``raw``-byte output ``agent`` itself would put in its context."""
    if agent == "claude":
        if status == 0:
            return raw if raw <= 30_000 else 2_048 + PATH_NOTE
        return min(raw, 10_000 + PATH_NOTE)
    if agent == "codex":
        return min(raw, 10_000 + PATH_NOTE)
    if agent == "gemini":
        return raw if raw <= 40_000 else 40_000 + PATH_NOTE
    return raw


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def _totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    raw = sum(r["bytes_in"] or 0 for r in rows)
    seen = sum(agent_view(r["agent"], r["bytes_in"] or 0, r["exit_code"]) for r in rows)
    out = sum(r["bytes_out"] or 0 for r in rows)
    return {
        "calls": len(rows),
        "digested": sum(r["outcome"] == "digest" for r in rows),
        "bytes_raw": raw,
        "bytes_in": seen,
        "bytes_out": out,
        "bytes_saved": seen - out,
        "share_saved": (seen - out) / seen if seen else None,
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``gain`` report of hook-log rows (``Ledger.hook_rows``)."""
    wraps = [r for r in rows if r["event"] == "wrap"]
    hooks = [r for r in rows if r["event"] != "wrap"]
    handler = [r["handler_ms"] for r in hooks if r["handler_ms"] is not None]
    overhead = [r["handler_ms"] for r in wraps if r["handler_ms"] is not None]
    families: dict[str, list[Mapping[str, Any]]] = {}
    for r in wraps:
        families.setdefault(r["family"] or "other", []).append(r)
    per_family = [{"family": name, **_totals(rs)} for name, rs in families.items()]
    per_family.sort(key=lambda f: (-f["bytes_saved"], f["family"]))
    return {
        **_totals(wraps),
        "hook_calls": len(hooks),
        "rewrites": sum(r["outcome"] == "rewrite" for r in hooks),
        "handler_p50_ms": percentile(handler, 0.5),
        "handler_p95_ms": percentile(handler, 0.95),
        "wrap_overhead_p50_ms": percentile(overhead, 0.5),
        "wrap_overhead_p95_ms": percentile(overhead, 0.95),
        "families": per_family,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render(data: Mapping[str, Any]) -> str:
    """The report as plain text."""
    lines = [
        f"wrapped commands: {data['calls']} ({data['digested']} digested); hook calls: "
        f"{data['hook_calls']} ({data['rewrites']} rewritten)",
        f"bytes the agent would have seen: {data['bytes_in']:,} (raw {data['bytes_raw']:,}); "
        f"sent: {data['bytes_out']:,}; saved: {data['bytes_saved']:,} "
        f"({_share(data['share_saved'])})",
        f"handler: p50 {_ms(data['handler_p50_ms'])}, p95 {_ms(data['handler_p95_ms'])}; "
        f"wrap overhead: p50 {_ms(data['wrap_overhead_p50_ms'])}, "
        f"p95 {_ms(data['wrap_overhead_p95_ms'])}",
    ]
    if data["families"]:
        lines.append(f"{'family':<24} {'calls':>6} {'seen':>12} {'sent':>12} {'saved':>12} share")
        for f in data["families"]:
            lines.append(
                f"{f['family'][:24]:<24} {f['calls']:>6} {f['bytes_in']:>12,} "
                f"{f['bytes_out']:>12,} {f['bytes_saved']:>12,} {_share(f['share_saved'])}"
            )
    return "\n".join(lines)
