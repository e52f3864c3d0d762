"""What the benchmarks share: free ports, and the fan-out roster they run against."""

from __future__ import annotations

import socket

LATENCY = 0.3  # seconds per simulated worker call


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fanout_roster(base: str, fanout: int, *, concurrency: int, max_subtasks: int = 32) -> str:
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

[[backend]]
id = "worker"
model = "openai/worker:latency={LATENCY}"
api_base = "{base}"
good_at = ["work"]
cost = 1
max_concurrency = {concurrency}
price = {{ input = 0.1, output = 0.4 }}
"""
