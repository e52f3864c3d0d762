"""One run, one path: every front door finishes and records a run the same way."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tanglebrain.mcp import Bridge
from tanglebrain.roster import load_file
from tanglebrain.serve import ServeConfig, create_app
from tanglebrain.session import Session, Writer, finish, ledger_recorder
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run
from tests.helpers import WAIT, backend_toml, cli_env, run_cli, write_roster

PROMPT = "do the work"
RUN_FIELDS = "status, error, warnings, subtasks, subtasks_ok, prompt_tokens, completion_tokens"
NODE_FIELDS = "kind, role, idx, status, backend, error, http_status, failover, task"


def degraded_roster(path: Path, base: str) -> Path:
    """Two sub-tasks; the only worker answers 500: an answer with its work lost."""
    return write_roster(
        path,
        backend_toml("orch", "orchestrator:fanout=2", base, good_at=("planning",), cost=30,
                     orchestrator=True),
        backend_toml("bad", "fail:status=500", base, good_at=("work",)),
        settings="max_attempts = 1\n",
    )  # fmt: skip


def stored(state: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(state / "runs.db") as db:
        runs = db.execute(f"SELECT {RUN_FIELDS} FROM runs").fetchall()
        nodes = db.execute(f"SELECT {NODE_FIELDS} FROM calls ORDER BY seq").fetchall()
    return runs, nodes


def via_cli(tmp: Path, roster: Path) -> tuple[list[Any], list[Any]]:
    out = run_cli(["--roster", str(roster), PROMPT], tmp, env=cli_env(tmp))
    assert out.code == 0, out.stderr
    return stored(tmp / "state")


def via_serve(tmp: Path, roster: Path) -> tuple[list[Any], list[Any]]:
    env = cli_env(tmp)
    state = tmp / "state"
    loaded = load_file(roster)
    config = ServeConfig(
        roster=loaded, env=env, state_dir=state, roster_dir=roster.parent,
        record=ledger_recorder(loaded, env, state),
    )  # fmt: skip

    async def ask() -> None:
        transport = httpx.ASGITransport(app=create_app(config))
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}
            reply = await client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text

    anyio.run(ask)
    return stored(state)


@pytest.mark.parametrize("door", [via_cli, via_serve], ids=["cli", "serve"])
def test_the_same_degraded_run_is_recorded_the_same_way(
    tmp_path: Path, sim_thread: Simulator, door: Any
) -> None:
    base = sim_thread.base_url
    (tmp_path / "ref").mkdir()
    (tmp_path / "door").mkdir()
    reference = via_cli(tmp_path / "ref", degraded_roster(tmp_path / "ref.toml", base))
    runs, nodes = door(tmp_path / "door", degraded_roster(tmp_path / "r.toml", base))
    assert runs == reference[0] and nodes == reference[1]
    [(status, error, warnings, subtasks, subtasks_ok, *_)] = runs
    assert (status, error, subtasks, subtasks_ok) == ("ok", None, 2, 0)
    assert any("sub-task" in w for w in json.loads(warnings))  # the degraded warning


async def test_an_mcp_call_with_lost_work_is_finished_like_a_degraded_run(
    tmp_path: Path, sim: Simulator
) -> None:
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("bad", "fail:status=500", sim.base_url, good_at=("shaky",)),
        backend_toml("echo", "echo", sim.base_url, good_at=("echo",)),
        settings="max_attempts = 1\n",
    )
    env = cli_env(tmp_path)
    state = tmp_path / "state"
    bridge = Bridge(
        roster, env, tmp_path, record=lambda ts, r: ledger_recorder(r.roster, env, state)(ts)
    )
    tasks = [{"prompt": "a", "backend": "bad"}, {"prompt": "b", "backend": "echo"}]
    await bridge.call("delegate_many", {"tasks": tasks})
    [(status, error, warnings, subtasks, subtasks_ok, *_)] = stored(state)[0]
    assert (status, error, subtasks, subtasks_ok) == ("ok", None, 2, 1)
    assert any("sub-task" in w for w in json.loads(warnings))


def test_the_demo_finishes_its_run_and_keeps_nothing(tmp_path: Path) -> None:
    out = run_cli(["demo", "--json"], tmp_path, env=cli_env(tmp_path))
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["simulated"] is True and data["warnings"] == [] and not data["degraded"]
    assert not (tmp_path / "state" / "runs.db").exists()


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (None, "ok"),
        (KeyboardInterrupt(), "interrupted"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_finish_decides_the_status_by_what_happened(
    failure: BaseException | None, status: str
) -> None:
    trace = Run(prompt="p")
    finish(trace, failure)
    assert trace.status == status and trace.ended is not None
    assert (trace.error is None) == (failure is None)


async def test_a_session_keeps_nothing_for_a_run_that_sent_nothing(tmp_path: Path) -> None:
    kept: list[Run] = []
    roster = load_file(write_roster(tmp_path / "r.toml", backend_toml("a", "echo", "http://x")))
    session = Session(roster, {}, record=kept.extend)
    trace = Run(prompt="p")
    finish(trace)
    await session.keep(trace)
    assert kept == []


async def test_a_servers_circuit_breakers_hold_across_its_runs(
    tmp_path: Path, sim: Simulator
) -> None:
    """A backend that failed twice in one run is skipped by the next run of the server."""
    from tanglebrain.orchestrator import Hooks, Request
    from tanglebrain.session import server_limits

    roster = load_file(
        write_roster(
            tmp_path / "roster.toml",
            backend_toml("orch", "orchestrator:fanout=2", sim.base_url, good_at=("planning",),
                         cost=30, orchestrator=True),
            backend_toml("bad", "fail:status=500", sim.base_url, good_at=("work",), cost=1),
            backend_toml("good", "worker", sim.base_url, good_at=("work",), cost=2),
            settings="max_attempts = 1\n",
        )
    )  # fmt: skip
    session = Session(roster, {}, limits=server_limits(), export=False)
    for _ in range(2):
        trace = Run(prompt=PROMPT)
        await session.run(Request(prompt=PROMPT), trace, Hooks())
        assert [s.status for s in trace.subtasks()] == ["ok", "ok"]
    # The first run's two failures opened bad's circuit; the second run did not call it.
    assert sim.count("fail:status=500") == 2
    assert sim.count("worker") == 4


async def test_runs_finishing_together_are_kept_in_few_batches_each_once(tmp_path: Path) -> None:
    from tanglebrain.trace import Call, Turn

    batches: list[list[str]] = []
    roster = load_file(write_roster(tmp_path / "r.toml", backend_toml("a", "echo", "http://x")))
    session = Session(roster, {}, record=lambda runs: batches.append([r.id for r in runs]))
    traces = []
    for _ in range(20):
        trace = Run(prompt="p")
        trace.turns.append(Turn(0, Call("orchestrator", "a", "openai/echo")))
        finish(trace)
        traces.append(trace)
    async with anyio.create_task_group() as tg:
        for trace in traces:
            tg.start_soon(session.keep, trace)
    assert sorted(i for batch in batches for i in batch) == sorted(t.id for t in traces)
    assert len(batches) < len(traces)  # runs that waited for the writer went together


def kept_run() -> Run:
    from tanglebrain.trace import Call, Turn

    trace = Run(prompt="p")
    trace.turns.append(Turn(0, Call("orchestrator", "a", "openai/echo")))
    finish(trace)
    return trace


async def test_sessions_sharing_a_writer_each_write_their_own_runs_once(tmp_path: Path) -> None:
    roster = load_file(write_roster(tmp_path / "r.toml", backend_toml("a", "echo", "http://x")))
    writer = Writer()
    written: dict[str, list[list[str]]] = {"one": [], "two": []}
    sessions = {
        name: Session(roster, {}, writer=writer,
                      record=lambda runs, n=name: written[n].append([r.id for r in runs]))
        for name in written
    }  # fmt: skip
    traces = [(name, kept_run()) for _ in range(10) for name in sessions]
    done: list[str] = []

    async def keep(name: str, trace: Run) -> None:
        await sessions[name].keep(trace)
        assert any(trace.id in batch for batch in written[name])  # written before it returns
        done.append(trace.id)

    async with anyio.create_task_group() as tg:
        for name, trace in traces:
            tg.start_soon(keep, name, trace)
    for name in sessions:
        ids = [i for batch in written[name] for i in batch]
        assert sorted(ids) == sorted(t.id for n, t in traces if n == name)  # each once
    assert len(done) == len(traces)


async def test_a_keeper_that_stops_waiting_still_has_its_run_written(tmp_path: Path) -> None:
    roster = load_file(write_roster(tmp_path / "r.toml", backend_toml("a", "echo", "http://x")))
    written: list[str] = []
    release = threading.Event()

    def record(runs: Any) -> None:
        release.wait(WAIT)  # the first batch is slow: the second keeper has to wait
        written.extend(r.id for r in runs)

    session = Session(roster, {}, record=record)
    first, second = kept_run(), kept_run()
    async with anyio.create_task_group() as tg:
        tg.start_soon(session.keep, first)
        await anyio.sleep(0)  # the first keeper is writing now
        with anyio.CancelScope() as waiting:
            waiting.cancel()
            await session.keep(second)  # cancelled while it waits
        release.set()
    assert written == [first.id, second.id]


def test_one_run_that_cannot_be_stored_does_not_cost_the_others_their_record(
    tmp_path: Path,
) -> None:
    from tanglebrain.trace import Attempt, Call, Turn

    state = tmp_path / "state"
    roster = load_file(write_roster(tmp_path / "r.toml", backend_toml("a", "echo", "http://x")))
    notes: list[str] = []
    record = ledger_recorder(roster, {}, state, lambda message, prefix: notes.append(message))
    traces = []
    for i in range(3):
        trace = Run(prompt="p")
        attempt = Attempt("a", "openai/echo", started=trace.started,
                          prompt_tokens=2**70 if i == 1 else 5)  # fmt: skip
        trace.turns.append(Turn(0, Call("orchestrator", "a", "openai/echo", [attempt])))
        finish(trace)
        traces.append(trace)
    record(traces)
    with sqlite3.connect(state / "runs.db") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM runs")}
    assert ids == {traces[0].id, traces[2].id}
    assert len(notes) == 1 and traces[1].id in notes[0]
