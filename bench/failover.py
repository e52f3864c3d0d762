"""Failover cost: a 64-way fan-out with a dead cheapest worker vs the same run without it.

The simulator runs in a separate process. For each repeat this process alternates two rosters
that differ in one backend:

* healthy: a scripted orchestrator issuing one ``delegate_many`` of N sub-tasks, and one worker
  (300 ms per call);
* dead: the same, plus a cheaper worker good at the same tag that answers HTTP 500 to every
  call (``max_concurrency = 4``), so every sub-task is routed to it first.

It prints the median wall time of each, their ratio, and how many calls the dead worker got
(with a retry on it for every sub-task, 3 attempts x N). Target: ratio <= 1.5.

Usage: python bench/failover.py [--repeats R] [--n N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from common import LATENCY, fanout_roster, start_sim

DEAD = """
[[backend]]
id = "dead"
model = "openai/fail:status=500"
api_base = "{base}"
good_at = ["work"]
cost = 0.5
max_concurrency = 4
price = {{ input = 0.1, output = 0.4 }}
"""


async def one_run(path: Path, n: int) -> int:
    """Run the roster once; return how many calls went to the dead worker."""
    from tanglebrain.orchestrator import Request, run
    from tanglebrain.roster import load_file

    trace = await run(Request(prompt="Process every item of the batch."), load_file(path), env={})
    subs = trace.subtasks()
    assert len(subs) == n and all(s.status == "ok" for s in subs), [s.error for s in subs][:3]
    return sum(len(c.attempts) for s in subs for c in s.calls if c.backend == "dead")


def timed(path: Path, n: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    dead_calls = anyio.run(one_run, path, n)
    return time.perf_counter() - t0, dead_calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    proc, base = start_sim()
    try:
        from tanglebrain.models._litellm import litellm

        litellm()  # import cost is paid once, outside the measurements
        with tempfile.TemporaryDirectory() as tmp:
            healthy = Path(tmp) / "healthy.toml"
            healthy.write_text(fanout_roster(base, args.n, concurrency=64))
            dead = Path(tmp) / "dead.toml"
            dead.write_text(healthy.read_text() + DEAD.format(base=base))
            timed(healthy, args.n)  # warm connection pools
            timed(dead, args.n)
            h_wall, d_wall, d_calls = [], [], []
            for _ in range(args.repeats):
                h_wall.append(timed(healthy, args.n)[0])
                wall, calls = timed(dead, args.n)
                d_wall.append(wall)
                d_calls.append(calls)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    h, d = statistics.median(h_wall), statistics.median(d_wall)
    ratio = d / h
    print(f"N={args.n}, worker latency {LATENCY * 1000:.0f} ms, {args.repeats} alternating repeats")
    print(f"{'roster':<28}{'median s':>10}{'calls to dead':>15}")
    print(f"{'healthy worker only':<28}{h:>10.3f}{'-':>15}")
    print(f"{'+ dead cheapest worker':<28}{d:>10.3f}{statistics.median(d_calls):>15.0f}")
    print(f"ratio {ratio:.2f} (target <= 1.5: {'ok' if ratio <= 1.5 else 'MISS'})")


if __name__ == "__main__":
    main()
