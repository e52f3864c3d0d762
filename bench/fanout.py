"""Fan-out cost: a full tanglebrain run vs bare litellm doing the same HTTP calls.

The simulator runs in a separate process (so its CPU and memory are not counted).
For each N, this process alternates:

* baseline: bare ``litellm.acompletion`` — one orchestrator call, a gather of N
  worker calls, one more orchestrator call (what a run does, with no framework);
* tanglebrain: ``orchestrator.run`` with a scripted orchestrator that issues one
  ``delegate_many`` of N sub-tasks, then synthesizes.

It prints median wall time, the ratio, CPU per sub-task beyond the baseline, and
peak RSS (measured in a fresh subprocess for N = 256).
Targets: ratio <= 1.15 at N = 64 and 256; CPU <= 1 ms per sub-task beyond litellm's;
peak RSS at N = 256 <= 300 MB.

Usage: python bench/fanout.py [--repeats R] [--sizes 1,8,32,64,256]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from common import LATENCY, fanout_roster, free_port


def start_sim() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tanglebrain", "sim", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("simulator did not start") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1"


async def baseline(base: str, n: int) -> None:
    from tanglebrain.models._litellm import litellm

    lib = litellm()
    common = {"api_base": base, "api_key": "x", "num_retries": 0, "max_retries": 0}
    msgs = [{"role": "user", "content": "plan the work"}]
    await lib.acompletion(model="openai/worker:latency=0", messages=msgs, **common)
    results: list[object] = [None] * n

    async def one(i: int) -> None:
        results[i] = await lib.acompletion(
            model=f"openai/worker:latency={LATENCY}",
            messages=[{"role": "user", "content": f"Sub-task {i + 1} of {n}"}],
            **common,
        )

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    await lib.acompletion(model="openai/worker:latency=0", messages=msgs, **common)


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


def rss_child(base: str, n: int) -> float:
    """Peak RSS (MB) of a fresh process doing one full run of N."""
    code = (
        "import anyio, resource, sys, json; sys.path.insert(0, 'bench');"
        "from pathlib import Path; import fanout;"
        f"p = Path(sys.argv[1]); anyio.run(fanout.ours, p, {n});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.toml"
        path.write_text(fanout_roster(base, n, concurrency=512))
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
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    proc, base = start_sim()
    rows = []
    try:
        from tanglebrain.models._litellm import litellm

        litellm()  # import cost is paid once, outside the measurements
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                path = Path(tmp) / f"roster{n}.toml"
                path.write_text(fanout_roster(base, n, concurrency=512))
                measure(baseline, base, n)  # warm connection pools
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
                extra_cpu = (statistics.median(o_cpu) - statistics.median(b_cpu)) / n * 1000
                rows.append((n, bw, ow, ow / bw, statistics.median(b_cpu) / n * 1000, extra_cpu))
        rss = rss_child(base, 256) if 256 in sizes else None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"worker latency {LATENCY * 1000:.0f} ms, {args.repeats} alternating repeats, medians")
    print(
        f"{'N':>5}{'bare litellm s':>16}{'tanglebrain s':>15}{'ratio':>8}"
        f"{'litellm CPU ms/sub':>20}{'our extra CPU ms/sub':>22}"
    )
    for n, bw, ow, ratio, bcpu, extra in rows:
        print(f"{n:>5}{bw:>16.3f}{ow:>15.3f}{ratio:>8.2f}{bcpu:>20.2f}{extra:>22.2f}")
    if rss is not None:
        print(f"peak RSS of a fresh process running N=256: {rss:.0f} MB (target <= 300 MB)")
    verdicts = [
        f"ratio@{n}={r:.2f} {'ok' if r <= 1.15 else 'MISS'}"
        for n, _, _, r, _, _ in rows
        if n in (64, 256)
    ]
    worst = max((r[5] for r in rows if r[0] >= 32), default=0.0)
    print(
        "targets:",
        ", ".join(verdicts),
        f"| extra CPU/sub max (N>=32) {worst:.2f} ms {'ok' if worst <= 1.0 else 'MISS'}",
    )


if __name__ == "__main__":
    main()
