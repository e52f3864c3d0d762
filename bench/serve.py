"""Latency ``tanglebrain serve`` adds over its backend, at 200 concurrent streamed requests.

Processes: the simulator, ``tanglebrain serve`` (ledger on, in a temp dir), two reference
proxies (bench/serve_floor.py) and this client (raw asyncio HTTP/1.1, one connection per
request). Every round fires C streamed requests at once and times each one to its last
byte. Rounds alternate between the sides:

* base: the same request straight to the simulator (what the backend costs here, at the
  same concurrency, through the same client);
* raw proxy: a bare ASGI proxy relaying bytes (the floor of any Python proxy here);
* litellm proxy: a bare ASGI proxy making one streamed litellm call per request (the
  floor of a proxy built on litellm);
* served: through ``tanglebrain serve``;
* served wN: through ``tanglebrain serve --workers N`` (one port, N processes).

Paths: ``pinned`` (model = a 300 ms worker: one backend call per request) and ``auto``
(the scripted orchestrator issues one ``delegate_many`` of F sub-tasks to 300 ms
workers, then synthesizes; its baseline replays the same HTTP pattern: a plan call, F
concurrent worker calls, a streamed synthesis call).

Added latency = a side's percentile - the base percentile. Targets (pinned, C = 200, 2
cores): p95 added <= 50 ms for one process, <= 100 ms for ``--workers 2``.

Usage: python bench/serve.py [--concurrency 200,20,1] [--rounds 3] [--fanout 4]
       [--paths pinned,auto] [--no-floors] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio

from common import LATENCY, fanout_roster, free_port, post

WORKER = f"worker:latency={LATENCY}"
ROOT = Path(__file__).resolve().parents[1]


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("a server did not start") from None
            time.sleep(0.05)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return start_raw(["-m", "tanglebrain", *args], env)


def start_raw(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


async def auto_baseline(url: str, fanout: int, i: int) -> float:
    """The HTTP calls of one auto run, made directly: plan, F workers, streamed synthesis."""
    t0 = time.perf_counter()
    await post(url, "echo", f"plan request {i}", stream=False)
    async with anyio.create_task_group() as tg:
        for k in range(fanout):
            tg.start_soon(partial(post, stream=False), url, WORKER, f"sub-task {k}")
    await post(url, "echo", f"synthesize request {i}", stream=True)
    return time.perf_counter() - t0


async def round_(one: Callable[[int], Awaitable[float]], n: int) -> tuple[list[float], float]:
    """Fire ``n`` requests at once; return their latencies and the wall time."""
    latencies = [0.0] * n

    async def run(i: int) -> None:
        latencies[i] = await one(i)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(run, i)
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def family(pid: int) -> list[int]:
    """``pid`` and its live children (a server's workers)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, kids)]


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its workers."""
    total = 0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak RSS of ``pid``, or the sum over its workers (shared pages counted in each)."""
    pids = family(pid)
    total = 0.0
    for p in pids[1:] or pids:
        found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        total += int(found.group(1)) / 1024 if found else float("nan")
    return total


@dataclass
class Side:
    """One way of serving the request: its per-request coroutine and its server's pid."""

    name: str
    one: Callable[[int], Awaitable[float]]
    pid: int | None = None
    latencies: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    cpu: float = 0.0

    def p(self, q: float) -> float:
        return pct(self.latencies, q)

    def cpu_per_request(self) -> float:
        return self.cpu / max(1, len(self.latencies))


@dataclass
class Row:
    path: str
    c: int
    sides: list[Side]


FLOORS = ("raw proxy", "litellm proxy")


def streamed(url: str, model: str) -> Callable[[int], Awaitable[float]]:
    """One streamed request to ``url`` for ``model``, numbered by the caller."""
    return lambda i: post(url, model, f"request {i}", stream=True)


def measure(
    path: str, c: int, urls: dict[str, str], pids: dict[str, int], args: argparse.Namespace
) -> Row:
    """Alternating rounds at concurrency ``c``, one per side in turn."""
    sim = urls["base"]
    served = [name for name in urls if name.startswith("served")]
    if path == "pinned":
        sides = [Side("base", streamed(sim, WORKER))]
        sides += [Side(n, streamed(urls[n], "floor"), pids[n]) for n in FLOORS if n in urls]
        sides += [Side(n, streamed(urls[n], "worker"), pids[n]) for n in served]
    else:
        sides = [Side("base", partial(auto_baseline, sim, args.fanout))]
        sides += [Side(n, streamed(urls[n], "auto"), pids[n]) for n in served]
    for side in sides:  # warm-up
        anyio.run(round_, side.one, c)
    for _ in range(args.rounds if c >= 50 else min(30, max(args.rounds, 60 // c))):
        for side in sides:
            cpu0 = cpu_seconds(side.pid) if side.pid else 0.0
            lat, wall = anyio.run(round_, side.one, c)
            side.cpu += cpu_seconds(side.pid) - cpu0 if side.pid else 0.0
            side.latencies += lat
            side.walls.append(wall)
    return Row(path, c, sides)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="200,20,1", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=4)
    parser.add_argument("--paths", default="pinned,auto")
    parser.add_argument("--no-floors", action="store_true", help="skip the reference proxies")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure `serve --workers N` (1: skip)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TANGLEBRAIN_HOME": tmp, "PYTHONPATH": str(ROOT / "src")}
        sim_port, srv_port = free_port(), free_port()
        procs = [start(["sim", "--port", str(sim_port)], env)]
        wait_port(sim_port, procs[0])
        sim_base = f"http://127.0.0.1:{sim_port}/v1"
        roster = Path(tmp) / "roster.toml"
        # Concurrency above C: the server's own cost is measured, not a backend's throttle.
        roster.write_text(fanout_roster(sim_base, args.fanout, concurrency=256))
        urls, pids = {"base": sim_base}, {}
        try:
            served = ["-m", "tanglebrain", "serve", "--roster", str(roster), "--port"]
            servers = [("served", [*served, str(srv_port)])]
            if args.workers > 1:
                servers.append((f"served w{args.workers}", [*served, str(free_port()),
                                "--workers", str(args.workers)]))  # fmt: skip
            if not args.no_floors:
                for mode in ("raw", "litellm"):
                    servers.append((f"{mode} proxy", [str(ROOT / "bench" / "serve_floor.py"),
                                    "--mode", mode, "--port", str(free_port()),
                                    "--upstream", sim_base, "--model", WORKER]))  # fmt: skip
            for name, argv in servers:
                port = int(argv[argv.index("--port") + 1])
                proc = start_raw(argv, env)
                procs.append(proc)
                wait_port(port, proc)
                urls[name], pids[name] = f"http://127.0.0.1:{port}/v1", proc.pid
            rows = []
            for path in args.paths.split(","):
                for c in [int(x) for x in args.concurrency.split(",")]:
                    rows.append(measure(path, c, urls, pids, args))
            rss = {n: peak_rss_mb(pid) for n, pid in pids.items() if n.startswith("served")}
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(timeout=30)
    report(rows, rss, args)


def report(rows: list[Row], rss: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"C concurrent streamed requests fired at once per round, >= {args.rounds} rounds per "
        f"side (alternating), backend latency {LATENCY * 1000:.0f} ms, {os.cpu_count()} cores"
    )
    head = ("path", "C", "side", "ok", "req/s", "p50", "p95", "added p50", "added p95",
            "CPU/req")  # fmt: skip
    widths = (8, 5, 16, 9, 7, 9, 9, 11, 11, 9)
    print("".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    verdicts = []
    for row in rows:
        base = row.sides[0]
        for side in row.sides:
            rps = row.c / statistics.median(side.walls)
            n = len(side.latencies)
            cells = [row.path, str(row.c), side.name, f"{n}/{n}", f"{rps:.0f}"]
            cells += [f"{side.p(q) * 1000:.0f} ms" for q in (0.5, 0.95)]
            if side is base:
                cells += ["-", "-", "-"]
            else:
                cells += [f"{(side.p(q) - base.p(q)) * 1000:.0f} ms" for q in (0.5, 0.95)]
                cells.append(f"{side.cpu_per_request() * 1000:.1f} ms")
            print("".join(f"{x:>{w}}" for x, w in zip(cells, widths, strict=True)))
        if row.path != "pinned" or row.c != 200:
            continue
        floor = next((s for s in row.sides if s.name == "litellm proxy"), None)
        for served in (s for s in row.sides if s.name.startswith("served")):
            added = (served.p(0.95) - base.p(0.95)) * 1000
            target = 50 if served.name == "served" else 100
            verdict = f"{served.name}: p95 added {added:.0f} ms "
            verdict += f"(target <= {target} ms: {'ok' if added <= target else 'MISS'})"
            if floor is not None:
                beyond = (served.p(0.95) - floor.p(0.95)) * 1000
                verdict += f"; beyond a bare litellm proxy: {beyond:.0f} ms"
            verdicts.append(verdict)
    peaks = ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items())
    print(f"peak RSS: {peaks} (workers: the sum over them, shared pages counted in each)")
    print("CPU/req = that server's CPU (all its processes) per request")
    for verdict in verdicts:
        print("target (pinned, C = 200):", verdict)


if __name__ == "__main__":
    main()
