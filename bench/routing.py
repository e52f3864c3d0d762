"""Learned vs static sub-task routing, and the gate, on the simulator.

Three specialists share the tag ``code``: ``a`` fails 40 % of its calls, ``b`` 10 %,
``c`` 1 % (HTTP 500, evenly spread by the simulator), with latencies and prices that
rise with reliability. A scripted orchestrator issues 10 ``code`` sub-tasks per run; 20
runs (200 sub-tasks) go through the real CLI entry point with ``routing = "static"``,
then the same with ``routing = "learned"`` (default weights, exploration on), each
with a fresh ledger. Failover saves nearly every sub-task in both modes, so the figure
that routing changes is the first try's success rate; also reported: sub-task success
after failover, the sub-tasks' dollars, p50 sub-task latency (failovers included),
and after how many sub-tasks the learned router's first choice left ``a`` for good.

Then the gate: the same trivial request with ``gate = "heuristic"`` and with
``--no-gate``, dollars compared.

Targets: learned first-try success >= static + 5 points at <= 1.2x its sub-task cost;
a gated trivial request <= 1/5 of an orchestrated one.

Usage: python bench/routing.py [--runs 20] [--prices 1,1.5,4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import start_sim
from tanglebrain.cli import run_argv
from tanglebrain.ledger import Ledger, default_path

SPECIALISTS = (("a", 0.4, 0.3), ("b", 0.1, 0.5), ("c", 0.01, 1.0))  # id, fail rate, latency


def roster(base: str, routing: str, prices: list[float], run_id: str) -> str:
    text = (
        f'[settings]\nrouting = "{routing}"\ngate = "heuristic"\nmax_attempts = 1\n\n'
        f'[[backend]]\nid = "orch"\nmodel = "openai/orchestrator:fanout=10"\n'
        f'api_base = "{base}"\ngood_at = ["planning"]\ncost = 20\ncan_orchestrate = true\n'
        "price = { input = 10.0, output = 30.0 }\n"
    )
    for (bid, rate, latency), price in zip(SPECIALISTS, prices, strict=True):
        spec = f"worker:latency={latency},fail_rate={rate},id={run_id}"
        text += (
            f'\n[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{base}"\n'
            f'good_at = ["code"]\ncost = {price:g}\nmax_concurrency = 16\n'
            f"price = {{ input = {price:g}, output = {2 * price:g} }}\n"
        )
    return text


def cli(args: list[str], home: Path) -> dict[str, Any]:
    os.environ["TANGLEBRAIN_HOME"] = str(home)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_argv(args)
    if code != 0:
        raise SystemExit(f"tanglebrain {' '.join(args)} exited {code}")
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def measure(base: str, routing: str, prices: list[float], runs: int, tag: str) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"tb-routing-{routing}-"))
    path = home / "roster.toml"
    path.write_text(roster(base, routing, prices, f"{tag}-{routing}"))
    for _ in range(runs):
        cli(["--roster", str(path), "run", "-q", "--no-progress", "--json", "implement it"], home)
    rows = Ledger(default_path(home)).route_rows(float("-inf"))
    subtasks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        subtasks.setdefault((r["run_id"], r["idx"]), []).append(r)
    ordered = sorted(subtasks.values(), key=lambda cs: float(cs[0]["ended"]))
    firsts = [next(c for c in cs if c["first"]) for cs in ordered]
    # The first sub-task the learned router sent elsewhere than a by choice (not exploring).
    shift = next(
        (i for i, f in enumerate(firsts) if f["backend"] != "a" and _routed(f) == "learned"),
        None,
    )
    return {
        "subtasks": len(ordered),
        "first_ok": sum(f["status"] == "ok" for f in firsts) / len(firsts),
        "final_ok": sum(any(c["status"] == "ok" for c in cs) for cs in ordered) / len(ordered),
        "cost": sum(float(c["cost_usd"] or 0.0) for cs in ordered for c in cs),
        "p50_ms": statistics.median(
            sum(float(c["latency_ms"] or 0.0) for c in cs) for cs in ordered
        ),
        "shift": -1 if shift is None else shift,
        "explored": sum(1 for f in firsts if _routed(f) == "explore"),
    }


def _routed(first: dict[str, Any]) -> Any:
    return json.loads(str(first["extra"])).get("routed_by") if first["extra"] else None


def gate(base: str, prices: list[float]) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="tb-gate-"))
    path = home / "roster.toml"
    path.write_text(roster(base, "static", prices, "gate"))
    args = ["--roster", str(path), "run", "-q", "--no-progress", "--json"]
    gated = cli([*args, "what is 2+2?"], home)
    full = cli([*args, "--no-gate", "what is 2+2?"], home)
    assert gated["mode"] == "gated" and full["mode"] == "delegated"
    return float(gated["usage"]["cost_usd"]), float(full["usage"]["cost_usd"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--prices", action="append", help="a,b,c prices (repeatable)")
    args = parser.parse_args()
    scenarios = [[float(p) for p in s.split(",")] for s in args.prices or ["1,1.5,4", "1,2,4"]]
    proc, base = start_sim()
    try:
        print(f"{args.runs} runs x 10 sub-tasks; a/b/c fail 40/10/1 %, latency 0.3/0.5/1.0 s\n")
        print("| prices a/b/c | routing | first-try ok | after failover | sub-task $ "
              "| p50 sub-task | first sent away from `a` | explored |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for n, prices in enumerate(scenarios):
            got = {r: measure(base, r, prices, args.runs, f"s{n}") for r in ("static", "learned")}
            for routing, m in got.items():
                shift = "never" if m["shift"] < 0 else f"sub-task {m['shift'] + 1:.0f}"
                if routing == "static":
                    shift = "-"
                print(
                    f"| {'/'.join(f'{p:g}' for p in prices)} | {routing} | {m['first_ok']:.1%} "
                    f"| {m['final_ok']:.1%} | ${m['cost']:.4f} | {m['p50_ms']:.0f} ms | {shift} "
                    f"| {m['explored']:.0f} |"
                )
            s, learned = got["static"], got["learned"]
            points = (learned["first_ok"] - s["first_ok"]) * 100
            ratio = learned["cost"] / s["cost"]
            verdict = "MET" if points >= 5 and ratio <= 1.2 else "MISSED"
            print(
                f"| | learned vs static | {points:+.1f} points | | {ratio:.2f}x | "
                f"{learned['p50_ms'] / s['p50_ms']:.2f}x | target +5 points at <= 1.2x: "
                f"{verdict} | |"
            )
        gated, full = gate(base, scenarios[0])
        verdict = "MET" if gated * 5 <= full else "MISSED"
        print(
            f"\ngate: trivial request ${gated:.6f} gated vs ${full:.6f} orchestrated = "
            f"1/{full / gated:.0f} (target <= 1/5: {verdict})"
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
