"""``tanglebrain mcp``: the MCP server over stdio, driven by the official ``mcp`` client SDK.

The server runs as ``python tests/netguard.py mcp --roster R``; its backends are the
simulator.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tanglebrain.sim import Simulator
from tests.helpers import GUARD, backend_toml, cli_env, write_roster


def roster_file(path: Path, base_url: str) -> Path:
    entries = [
        backend_toml("echo", "echo", base_url, good_at=("echo",), cost=1),
        backend_toml("worker", "worker", base_url, good_at=("grunt",), cost=2),
        backend_toml("flaky", "fail:status=500", base_url, good_at=("shaky",), cost=1),
        backend_toml("steady", "worker", base_url, good_at=("shaky",), cost=3),
        backend_toml("off", "worker", base_url, extra="enabled = false"),
    ]
    return write_roster(path, *entries, settings="max_attempts = 1\nmax_subtasks = 16\n")


def command(roster: Path, *args: str) -> list[str]:
    return [str(GUARD), "mcp", "--roster", str(roster), *args]


@asynccontextmanager
async def session(tmp: Path, roster: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=command(roster, *args), env=cli_env(tmp), cwd=tmp
    )
    with (tmp / "stderr.txt").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            yield client


async def call(client: ClientSession, name: str, arguments: dict[str, Any]) -> tuple[Any, bool]:
    result = await client.call_tool(name, arguments)
    assert len(result.content) == 1 and result.content[0].type == "text"
    return json.loads(result.content[0].text), result.is_error


ERRORS = [
    ("delegate", {"prompt": "x", "backend": "nope"},
     "unknown backend 'nope'; valid ids: echo, worker, flaky, steady"),
    ("delegate", {"prompt": "x", "backend": "off"}, "unknown backend 'off'"),
    ("delegate", {"prompt": "x", "task": "astrology"}, "unknown task tag 'astrology'"),
    ("delegate", {"task": "echo"}, "'prompt' must be a non-empty string"),
    ("delegate_many", {"tasks": []}, "'tasks' must be a non-empty array"),
    ("delegate_many", {"tasks": [{"prompt": "x"}] * 17}, "too many sub-tasks: 17 requested"),
    ("delegate", {"prompt": "all down", "backend": "flaky"}, "flaky: HTTP 500"),
    ("nope", {}, "unknown tool 'nope'; the tools are delegate, delegate_many, backends"),
]  # fmt: skip


async def test_tools_delegation_errors_failover_and_ledger(tmp_path: Path, sim: Simulator) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim.base_url)
    async with session(tmp_path, roster) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert list(tools) == ["delegate", "delegate_many", "backends"]
        props = tools["delegate"].input_schema["properties"]
        assert props["backend"]["enum"] == ["echo", "worker", "flaky", "steady"]
        assert props["task"]["enum"] == ["echo", "grunt", "shaky"]
        many = tools["delegate_many"].input_schema["properties"]["tasks"]["items"]
        assert many == tools["delegate"].input_schema
        for tool in tools.values():
            assert "- worker: good at grunt; relative cost 2" in (tool.description or "")

        tasks = [{"prompt": f"task number {i}", "backend": "echo"} for i in range(8)]
        tasks[3] = {"prompt": "by tag", "task": "grunt"}
        results, failed = await call(client, "delegate_many", {"tasks": tasks})
        assert not failed and [r["index"] for r in results] == list(range(8))
        assert all(r["status"] == "ok" for r in results)
        assert [r["text"] for r in results[:3]] == ["task number 0", "task number 1",
                                                     "task number 2"]  # fmt: skip
        assert results[3]["backend"] == "worker" and "by tag" in results[3]["text"]

        result, failed = await call(client, "delegate", {"prompt": "fail over", "task": "shaky"})
        assert not failed and result["status"] == "ok" and result["backend"] == "steady"
        assert "index" not in result

        for name, arguments, reason in ERRORS:
            result, failed = await call(client, name, arguments)
            assert failed and result["status"] == "error" and reason in result["error"], result

        menu, failed = await call(client, "backends", {})
        assert not failed and [b["id"] for b in menu] == ["echo", "worker", "flaky", "steady"]
    assert (tmp_path / "stderr.txt").read_text() == ""  # quiet unless --verbose

    with sqlite3.connect(tmp_path / "state" / "runs.db") as db:
        runs = db.execute("SELECT origin, status, prompt FROM runs ORDER BY started").fetchall()
        failover = db.execute(
            "SELECT backend FROM calls WHERE kind = 'subtask' AND failover = 1"
        ).fetchall()
    # one run per delegate/delegate_many call; `backends` and unknown tools are not runs
    assert [r[0] for r in runs] == ["mcp"] * (2 + len(ERRORS) - 1)
    assert runs[0][2] == "[mcp delegate_many] task number 0 (+7 more)"
    assert [r[1] for r in runs[:2]] == ["ok", "ok"] and failover == [("steady",)]


async def test_roster_error_reaches_the_caller_and_a_fix_is_picked_up(
    tmp_path: Path, sim: Simulator
) -> None:
    roster = tmp_path / "roster.toml"
    good = roster_file(roster, sim.base_url).read_text()
    roster.write_text(good.replace("can_orchestrate", "can_orchestate", 1))
    async with session(tmp_path, roster) as client:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == ["delegate", "delegate_many", "backends"]
        assert all("can_orchestate" in (t.description or "") for t in tools)
        result, failed = await call(client, "delegate", {"prompt": "x", "backend": "echo"})
        assert failed and result["error"].startswith("roster error: ")
        assert "can_orchestate" in result["error"]
        roster.write_text(good)
        result, failed = await call(client, "delegate", {"prompt": "fixed", "backend": "echo"})
        assert not failed and result == {"status": "ok", "backend": "echo", "text": "fixed"}
    assert "roster error" in (tmp_path / "stderr.txt").read_text()


def test_stdout_carries_protocol_messages_only(tmp_path: Path, sim_thread: Simulator) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim_thread.base_url)
    proc = subprocess.Popen(
        [sys.executable, *command(roster, "--verbose")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=tmp_path, env=cli_env(tmp_path),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    init = {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}  # fmt: skip
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "delegate", "arguments": {"prompt": "boom", "backend": "flaky"}}},
    ]  # fmt: skip
    for message in messages:
        proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()
    lines = []
    while not any(json.loads(line).get("id") == 3 for line in lines):
        lines.append(proc.stdout.readline())
        assert lines[-1], "the server closed stdout early"
    proc.stdin.close()
    lines += proc.stdout.read().splitlines()
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=30)
    assert proc.returncode == 0
    replies = [json.loads(line) for line in lines]  # every line is a JSON-RPC message
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    assert {r["id"] for r in replies} == {1, 2, 3}
    result = next(r for r in replies if r["id"] == 3)["result"]
    assert result["isError"] is True and "flaky: HTTP 500" in result["content"][0]["text"]
    assert "delegate: 1 sub-task(s), 0 ok" in stderr  # --verbose logs go to stderr


@pytest.mark.parametrize("args", [["--no-such-option"], ["--help"]])
def test_cli_usage(tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(GUARD), "mcp", *args], capture_output=True, cwd=tmp_path,
        env=cli_env(tmp_path), stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert proc.returncode == (0 if args == ["--help"] else 2)
    assert b"Traceback" not in proc.stderr


BAD_LINES = [
    ('{"jsonrpc": "2.0", "id": 1, "method": "ping"', None, -32700, "not valid JSON"),
    ("", None, -32700, "not valid JSON"),  # a bare newline is not a message either
    ('{"jsonrpc": "1.0", "id": 10, "method": "ping"}', 10, -32600, "'jsonrpc' must be \"2.0\""),
    ('{"jsonrpc": "2.0", "id": "no-method"}', "no-method", -32600, "needs a 'method'"),
    ('{"jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": [1]}', 12, -32600,
     "'params' must be an object"),
    ('{"jsonrpc": "2.0", "id": 13, "method": 5}', 13, -32600, "'method' must be a string"),
    ('{"jsonrpc": "1.0", "id": true, "method": "ping"}', None, -32600, "'jsonrpc'"),
    ("[]", None, -32600, "must be a JSON object"),
    ("42", None, -32600, "must be a JSON object"),
]  # fmt: skip


def test_unreadable_lines_are_answered_per_json_rpc(tmp_path: Path, sim_thread: Simulator) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim_thread.base_url)
    proc = subprocess.Popen(
        [sys.executable, *command(roster)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=tmp_path, env=cli_env(tmp_path),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None

    def send(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()

    def replies_until(rid: object) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while not out or out[-1].get("id") != rid:
            line = proc.stdout.readline() if proc.stdout else b""
            assert line, "the server closed stdout"
            out.append(json.loads(line))
        return out

    init = {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}  # fmt: skip
    send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}))
    replies_until(0)
    send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    for i, (line, rid, code, words) in enumerate(BAD_LINES):
        # A ping after each bad line: its reply proves that nothing more is coming for it.
        send(line)
        send(json.dumps({"jsonrpc": "2.0", "id": f"ping-{i}", "method": "ping"}))
        *errors, pong = replies_until(f"ping-{i}")
        assert pong.get("result") == {}, pong
        assert len(errors) == 1, (line, errors)
        assert errors[0]["jsonrpc"] == "2.0" and errors[0]["id"] == rid, (line, errors[0])
        assert errors[0]["error"]["code"] == code and words in errors[0]["error"]["message"]
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


async def test_a_delegate_that_produced_nothing_is_a_failed_run(
    tmp_path: Path, sim: Simulator
) -> None:
    # The ledger tells the truth: a `delegate` whose only sub-task failed, or a
    # `delegate_many` whose every sub-task failed, is a failed run; one with a success
    # among failures is ok (its failed sub-tasks are recorded as such).
    from tanglebrain.mcp import Bridge
    from tanglebrain.session import ledger_recorder

    url = sim.base_url
    dark = backend_toml("dark", "fail:status=503", url, good_at=("dark",))
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("flaky", "fail:status=500", url, good_at=("shaky",)),
        backend_toml("echo", "echo", url, good_at=("echo",)),
        dark.replace("price = {", "# price = {"),  # no price: its cost is unknown
        settings="max_attempts = 1\n",
    )
    state = tmp_path / "state"
    env = cli_env(tmp_path)
    bridge = Bridge(
        roster, env, tmp_path, record=lambda ts, r: ledger_recorder(r.roster, env, state)(ts)
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("delegate", {"prompt": "one", "backend": "flaky"}),
        ("delegate_many", {"tasks": [{"prompt": "a", "backend": "flaky"},
                                     {"prompt": "b", "backend": "dark"}]}),
        ("delegate_many", {"tasks": [{"prompt": "c", "backend": "flaky"},
                                     {"prompt": "d", "backend": "echo"}]}),
        ("delegate", {"prompt": "two", "backend": "dark"}),
    ]  # fmt: skip
    for name, arguments in calls:
        await bridge.call(name, arguments)
    with sqlite3.connect(state / "runs.db") as db:
        runs = db.execute("SELECT status, error, cost_usd FROM runs ORDER BY started").fetchall()
    assert [r[0] for r in runs] == ["error", "error", "ok", "error"]
    assert runs[0][1].startswith("the sub-task failed\n  #0 error: ") and "HTTP 500" in runs[0][1]
    assert runs[1][1].startswith("all 2 sub-tasks failed\n  #0 error: ")
    assert "HTTP 500" in runs[1][1] and "\n  #1 error: " in runs[1][1]
    assert runs[2][1] is None
    # what failed on a backend without a price cost an unknown amount, not $0
    assert runs[0][2] == 0.0 and runs[2][2] > 0 and runs[1][2] is runs[3][2] is None
