"""Cost of recording a run: ledger write + live view ON vs OFF, on a 256-way fan-out.

Against the in-process simulator (``Simulator()``), a scripted orchestrator issues one
``delegate_many`` of N sub-tasks to workers with 0.3 s latency (max_concurrency N),
then synthesizes. Each repetition runs the same request twice, alternating the order:

* ON: a ``LiveView`` observer rendering to a terminal-like rich Console on /dev/null
  (force_terminal, 8 frames/s), and the ledger write (``Ledger.record``) at the end;
* OFF: no observer, no ledger.

Both wall time and process CPU (``time.process_time``; the simulator runs in this
process too, identically in both arms) cover the whole run, the view's start/stop and
the ledger write. Targets: ON/OFF wall ratio <= 1.05; extra CPU <= 0.2 ms per sub-task.

Usage: python bench/recording.py [--repeats R] [--n N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from rich.console import Console

from common import LATENCY, fanout_roster
from tanglebrain.ledger import Ledger, default_path
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import Roster, parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run
from tanglebrain.views.live import LiveView


def roster(base: str, n: int) -> Roster:
    return parse(fanout_roster(base, n, concurrency=n, max_subtasks=n))


class Stats:
    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.ledger_ms: list[float] = []
        self.ledger_cpu_ms: list[float] = []
        self.observed: list[int] = []
        self.frames: list[int] = []
        self.frame_ms = 0.0


async def one(
    r: Roster, n: int, ledger: Ledger | None, sink: object | None
) -> tuple[float, float, float, float, int, int, Run]:
    trace = Run(prompt="Process every item of the batch.")
    hooks = Hooks()
    seen = 0
    view = None
    c0, t0 = time.process_time(), time.perf_counter()
    if sink is not None:
        console = Console(file=sink, force_terminal=True, width=120, height=40)  # type: ignore[arg-type]
        view = LiveView(trace, console)
        hooks.observers.append(view.observe)

        def count(_: Run) -> None:
            nonlocal seen
            seen += 1

        hooks.observers.append(count)
        view.start()
    await run(Request(prompt=trace.prompt), r, env=os.environ, hooks=hooks, trace=trace)
    trace.finish("ok")
    write = write_cpu = 0.0
    if view is not None:
        view.stop()
    if ledger is not None:
        w0, wc0 = time.perf_counter(), time.process_time()
        ledger.record(trace, orchestrator_price=(3e-6, 15e-6))
        write = (time.perf_counter() - w0) * 1000
        write_cpu = (time.process_time() - wc0) * 1000
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    subs = trace.subtasks()
    assert len(subs) == n and all(s.status == "ok" for s in subs), [s.error for s in subs][:3]
    return wall, cpu, write, write_cpu, seen, view.frames if view else 0, trace


async def bench(n: int, repeats: int, tmp: Path) -> tuple[Stats, Stats]:
    on, off = Stats(), Stats()
    ledger = Ledger(default_path(tmp))
    with open(os.devnull, "w") as sink:
        async with Simulator() as sim:
            r = roster(sim.base_url, n)
            await one(r, n, ledger, sink)  # warm-up: imports, pools, the ledger file
            await one(r, n, None, None)
            for i in range(repeats):
                order = [(on, ledger, sink), (off, None, None)]
                for stats, led, out in order if i % 2 == 0 else order[::-1]:
                    wall, cpu, write, write_cpu, seen, frames, trace = await one(r, n, led, out)
                    stats.wall.append(wall)
                    stats.cpu.append(cpu)
                    stats.ledger_ms.append(write)
                    stats.ledger_cpu_ms.append(write_cpu)
                    stats.observed.append(seen)
                    stats.frames.append(frames)
        on.frame_ms = frame_cost(trace, sink)
    return on, off


def frame_cost(trace: Run, sink: object, frames: int = 50) -> float:
    """CPU ms to draw one frame of the live view of a finished N-way run."""
    console = Console(file=sink, force_terminal=True, width=120, height=40)  # type: ignore[arg-type]
    view = LiveView(trace, console)
    view.start()
    live = view._live
    assert live is not None
    c0 = time.process_time()
    for _ in range(frames):
        live.update(view._render(), refresh=True)
    cost = (time.process_time() - c0) / frames * 1000
    view.stop()
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        on, off = anyio.run(bench, args.n, args.repeats, Path(tmp))
    n = args.n
    w_on, w_off = statistics.median(on.wall), statistics.median(off.wall)
    c_on = statistics.median(on.cpu) / n * 1000
    c_off = statistics.median(off.cpu) / n * 1000
    # Paired estimates (each ON run against the OFF run of the same repetition) are
    # steadier than differences of medians on a shared, noisy machine.
    ratio = statistics.median(a / b for a, b in zip(on.wall, off.wall, strict=True))
    extra = statistics.median(a - b for a, b in zip(on.cpu, off.cpu, strict=True)) / n * 1000
    print(f"N={n} sub-tasks, worker latency {LATENCY * 1000:.0f} ms, simulator in-process, "
          f"{args.repeats} alternating repeats, medians")  # fmt: skip
    print(f"{'':28}{'OFF':>10}{'ON':>10}{'paired ON/OFF, diff':>21}")
    print(f"{'wall time (s)':28}{w_off:>10.3f}{w_on:>10.3f}{ratio:>21.3f}")
    print(f"{'CPU per sub-task (ms)':28}{c_off:>10.3f}{c_on:>10.3f}{extra:>+21.3f}")
    ledger_cpu = statistics.median(on.ledger_cpu_ms)
    frames = statistics.median(on.frames)
    print(f"{'ledger write wall (ms)':28}{'-':>10}{statistics.median(on.ledger_ms):>10.1f}")
    print(f"{'ledger write CPU (ms)':28}{'-':>10}{ledger_cpu:>10.1f}")
    print(f"{'observer calls per run':28}{'-':>10}{statistics.median(on.observed):>10.0f}")
    print(f"{'live frames per run':28}{'-':>10}{frames:>10.0f}")
    print(f"{'CPU per frame (ms)':28}{'-':>10}{on.frame_ms:>10.2f}")
    parts = (ledger_cpu + frames * on.frame_ms) / n
    print(f"{'components CPU/sub-task (ms)':28}{'-':>10}{parts:>10.3f}"
          "   (ledger CPU + frames x CPU per frame) / N")  # fmt: skip
    print(
        "targets: wall ratio <= 1.05",
        "ok" if ratio <= 1.05 else "MISS",
        f"({(ratio - 1) * 100:+.1f} %)",
        "| extra CPU <= 0.2 ms/sub-task",
        "ok" if extra <= 0.2 else "MISS",
        f"({extra:+.3f} ms)",
    )


if __name__ == "__main__":
    main()
