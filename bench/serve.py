"""Latency ``tanglebrain serve`` adds over its backend, at 200 concurrent streamed requests.

Three processes: the simulator, ``tanglebrain serve`` (ledger on, in a temp dir) and this
client (raw asyncio HTTP/1.1, one connection per request). Every round fires C streamed requests at
once and times each one to its last byte. Rounds alternate between

* baseline: the same request straight to the simulator (what the backend costs here,
  at the same concurrency, through the same client);
* served: through ``tanglebrain serve``.

Paths: ``pinned`` (model = a 300 ms worker: one backend call per request) and ``auto``
(the scripted orchestrator issues one ``delegate_many`` of F sub-tasks to 300 ms
workers, then synthesizes; its baseline replays the same HTTP pattern: a plan call, F
concurrent worker calls, a streamed synthesis call).

Added latency = served percentile - baseline percentile. Target (pinned): p95 added
<= 50 ms at C = 200 on 2 cores.

Usage: python bench/serve.py [--concurrency 200,20,1] [--rounds 3] [--fanout 4]
       [--paths pinned,auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio

from common import LATENCY, fanout_roster, free_port

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
    return subprocess.Popen(
        [sys.executable, "-m", "tanglebrain", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


async def post(url: str, model: str, text: str, *, stream: bool) -> float:
    """POST one chat request (a fresh connection, ``Connection: close``); seconds to EOF.

    A raw asyncio client: httpx costs several ms of CPU per request, which on 2 cores
    would measure the client more than the servers.
    """
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()  # type: ignore[union-attr]
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    data = json.dumps(body).encode()
    head = (
        f"POST {path}/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + data)
    reply = await reader.read()
    writer.close()
    ok = reply.startswith(b"HTTP/1.1 200") and (not stream or b"data: [DONE]" in reply)
    if not ok:
        raise RuntimeError(f"request failed: {reply[:60]!r} ... {reply[-300:]!r}")
    return time.perf_counter() - t0


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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


Row = tuple[str, int, list[float], list[float], list[float], float]


def measure(path: str, c: int, sim: str, srv: str, pid: int, args: argparse.Namespace) -> Row:
    """Alternating rounds at concurrency ``c``: latencies, walls, server CPU per request."""
    base_one: Callable[[int], Awaitable[float]]
    if path == "pinned":
        base_one = lambda i: post(sim, WORKER, f"request {i}", stream=True)  # noqa: E731
        ours_one = lambda i: post(srv, "worker", f"request {i}", stream=True)  # noqa: E731
    else:
        base_one = partial(auto_baseline, sim, args.fanout)
        ours_one = lambda i: post(srv, "auto", f"request {i}", stream=True)  # noqa: E731
    anyio.run(round_, base_one, c)  # warm-up both sides
    anyio.run(round_, ours_one, c)
    base, ours, walls, cpu = [], [], [], 0.0
    for _ in range(args.rounds if c >= 50 else min(30, max(args.rounds, 60 // c))):
        base += anyio.run(round_, base_one, c)[0]
        cpu0 = cpu_seconds(pid)
        lat, wall = anyio.run(round_, ours_one, c)
        cpu += cpu_seconds(pid) - cpu0
        ours += lat
        walls.append(wall)
    return path, c, base, ours, walls, cpu / len(ours)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="200,20,1", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=4)
    parser.add_argument("--paths", default="pinned,auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TANGLEBRAIN_HOME": tmp, "PYTHONPATH": str(ROOT / "src")}
        sim_port, srv_port = free_port(), free_port()
        sim = start(["sim", "--port", str(sim_port)], env)
        wait_port(sim_port, sim)
        sim_base = f"http://127.0.0.1:{sim_port}/v1"
        roster = Path(tmp) / "roster.toml"
        roster.write_text(fanout_roster(sim_base, args.fanout, concurrency=64))
        srv = start(["serve", "--port", str(srv_port), "--roster", str(roster)], env)
        rows = []
        try:
            wait_port(srv_port, srv)
            srv_base = f"http://127.0.0.1:{srv_port}/v1"
            for path in args.paths.split(","):
                for c in [int(x) for x in args.concurrency.split(",")]:
                    rows.append(measure(path, c, sim_base, srv_base, srv.pid, args))
            rss = peak_rss_mb(srv.pid)
        finally:
            for proc in (srv, sim):
                proc.terminate()
                proc.wait(timeout=30)
    report(rows, rss, args)


def report(rows: list[Row], rss: float, args: argparse.Namespace) -> None:
    print(
        f"C concurrent streamed requests fired at once per round, >= {args.rounds} rounds per "
        f"side (alternating), backend latency {LATENCY * 1000:.0f} ms, {os.cpu_count()} cores"
    )
    head = ("path", "C", "ok", "req/s", "base p50", "base p95", "serve p50", "serve p95",
            "added p50", "added p95", "CPU/req")  # fmt: skip
    print("".join(f"{h:>10}" for h in head))
    verdict = ""
    for path, c, base, ours, walls, cpu in rows:
        b50, b95, o50, o95 = pct(base, 0.5), pct(base, 0.95), pct(ours, 0.5), pct(ours, 0.95)
        rps = c / statistics.median(walls)
        cells = [path, str(c), f"{len(ours)}/{len(ours)}", f"{rps:.0f}"]
        cells += [f"{v * 1000:.0f} ms" for v in (b50, b95, o50, o95, o50 - b50, o95 - b95)]
        cells.append(f"{cpu * 1000:.1f} ms")
        print("".join(f"{x:>10}" for x in cells))
        if path == "pinned" and c == 200:
            added = (o95 - b95) * 1000
            verdict = (
                f"p95 added {added:.0f} ms (target <= 50 ms: {'ok' if added <= 50 else 'MISS'})"
            )
    print(f"peak RSS of the server process: {rss:.0f} MB; CPU/req = server CPU per request")
    if verdict:
        print("target (pinned, C = 200):", verdict)


if __name__ == "__main__":
    main()
