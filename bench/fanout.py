"""Fan-out cost: a full tanglebrain run vs a bare async-HTTP gather of the same calls.

The simulator runs in a separate process (so its CPU and memory are not counted).
For each N, this process alternates:

* baseline: raw asyncio HTTP/1.1 POSTs (bench/common.py ``post``), no framework: one
  orchestrator call, a gather of N worker calls, one more orchestrator call;
* tanglebrain: ``orchestrator.run`` with a scripted orchestrator that issues one
  ``delegate_many`` of N sub-tasks, then synthesizes (the roster's default transport:
  native for these OpenAI-compatible backends; ``--transport litellm`` to compare).

It prints median wall time, the ratio, our CPU per sub-task (transport included) and
beyond the baseline's, and the peak RSS of a fresh process running N = 256.
Targets: ratio <= 1.15 at N = 64 and 256; our CPU <= 1 ms per sub-task; peak RSS at
N = 256 <= 150 MB.

Usage: python bench/fanout.py [--repeats R] [--sizes 1,8,32,64,256] [--transport T]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio

from common import LATENCY, fanout_roster, post, start_sim

WORKER = f"worker:latency={LATENCY}"


async def baseline(base: str, n: int) -> None:
    await post(base, "echo", "plan the work", stream=False)
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(partial(post, stream=False), base, WORKER, f"Sub-task {i + 1} of {n}")
    await post(base, "echo", "synthesize", stream=True)


async def ours(roster_path: Path, n: int) -> None:
    from tanglebrain.orchestrator import Request, run
    from tanglebrain.roster import load_file

    trace = await run(
        Request(prompt="Process every item of the batch."), load_file(roster_path), env={}
    )
    subs = trace.subtasks()
    assert len(subs) == n and all(s.status == "ok" for s in subs), [s.error for s in subs][:3]


def measure(fn: object, *args: object) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    anyio.run(fn, *args)  # type: ignore[arg-type]
    return time.perf_counter() - t0, time.process_time() - c0


def rss_child(base: str, n: int, transport: str) -> float:
    """Peak RSS (MB) of a fresh process doing one full run of N."""
    code = (
        "import anyio, resource, sys, json; sys.path.insert(0, 'bench');"
        "from pathlib import Path; import fanout;"
        f"p = Path(sys.argv[1]); anyio.run(fanout.ours, p, {n});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.toml"
        path.write_text(fanout_roster(base, n, concurrency=512, transport=transport))
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1,8,32,64,256")
    parser.add_argument("--transport", default="auto", choices=("auto", "openai", "litellm"))
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    proc, base = start_sim()
    rows = []
    try:
        if args.transport == "litellm":
            from tanglebrain.models._litellm import litellm

            litellm()  # import cost is paid once, outside the measurements
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                path = Path(tmp) / f"roster{n}.toml"
                path.write_text(fanout_roster(base, n, concurrency=512, transport=args.transport))
                measure(baseline, base, n)  # warm up
                measure(ours, path, n)
                b_wall, b_cpu, o_wall, o_cpu = [], [], [], []
                for _ in range(args.repeats):
                    w, c = measure(baseline, base, n)
                    b_wall.append(w)
                    b_cpu.append(c)
                    w, c = measure(ours, path, n)
                    o_wall.append(w)
                    o_cpu.append(c)
                bw, ow = statistics.median(b_wall), statistics.median(o_wall)
                bc, oc = statistics.median(b_cpu), statistics.median(o_cpu)
                rows.append((n, bw, ow, ow / bw, oc / n * 1000, (oc - bc) / n * 1000))
        rss = rss_child(base, 256, args.transport) if 256 in sizes else None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report(rows, rss, args)


def report(rows: list[tuple[int, float, float, float, float, float]], rss: float | None,
           args: argparse.Namespace) -> None:  # fmt: skip
    print(
        f"worker latency {LATENCY * 1000:.0f} ms, {args.repeats} alternating repeats, medians,"
        f" transport {args.transport}"
    )
    print(
        f"{'N':>5}{'bare HTTP s':>13}{'tanglebrain s':>15}{'ratio':>8}"
        f"{'our CPU ms/sub':>16}{'beyond bare ms/sub':>20}"
    )
    for n, bw, ow, ratio, cpu, extra in rows:
        print(f"{n:>5}{bw:>13.3f}{ow:>15.3f}{ratio:>8.2f}{cpu:>16.2f}{extra:>20.2f}")
    if rss is not None:
        verdict = "ok" if rss <= 150 else f"MISS by {rss - 150:.0f} MB"
        print(
            f"peak RSS of a fresh process running N=256: {rss:.0f} MB (target <= 150 MB) {verdict}"
        )
    verdicts = [
        f"ratio@{n}={r:.2f} {'ok' if r <= 1.15 else 'MISS'}"
        for n, _, _, r, _, _ in rows
        if n in (64, 256)
    ]
    worst = max((r[4] for r in rows if r[0] >= 32), default=0.0)
    print(
        "targets:",
        ", ".join(verdicts),
        f"| our CPU/sub max (N>=32) {worst:.2f} ms {'ok' if worst <= 1.0 else 'MISS'}",
    )


if __name__ == "__main__":
    main()
