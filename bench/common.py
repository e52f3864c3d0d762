"""What the benchmarks share: free ports, the fan-out roster, a bare HTTP client."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time

LATENCY = 0.3  # seconds per simulated worker call


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim() -> tuple[subprocess.Popen[bytes], str]:
    """The loopback simulator in a process of its own (its CPU is not ours); its /v1 URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tanglebrain", "sim", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("simulator did not start") from None
            time.sleep(0.05)


def fanout_roster(
    base: str, fanout: int, *, concurrency: int, max_subtasks: int = 32, transport: str = "auto"
) -> str:
    """A roster: a scripted orchestrator issuing one delegate_many of ``fanout`` 300 ms workers."""
    return f"""
[settings]
max_subtasks = {max(max_subtasks, fanout, 1)}
max_turns = 3

[[backend]]
id = "orch"
model = "openai/orchestrator:fanout={fanout}"
api_base = "{base}"
good_at = ["planning"]
cost = 10
can_orchestrate = true
price = {{ input = 3.0, output = 15.0 }}
transport = "{transport}"

[[backend]]
id = "worker"
model = "openai/worker:latency={LATENCY}"
api_base = "{base}"
good_at = ["work"]
cost = 1
max_concurrency = {concurrency}
price = {{ input = 0.1, output = 0.4 }}
transport = "{transport}"
"""


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
        raise RuntimeError(f"{url} {model}: request failed: {reply[:60]!r} ... {reply[-300:]!r}")
    return time.perf_counter() - t0
