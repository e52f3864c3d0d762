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
