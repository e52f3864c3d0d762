"""The SQLite run ledger: round trip, migrations, permissions, parallel writers, secrets."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.errors import LedgerError
from tanglebrain.ledger import MIGRATIONS, VERSION, Ledger, default_path
from tanglebrain.ledger import _stats as ledger_stats
from tanglebrain.sim import Simulator
from tanglebrain.trace import Attempt, Call, Run, Subtask, ToolCall, Turn
from tests.test_trace import fanout_run

# The schema as version 1 shipped it: a database left by that release must upgrade.
V1_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, started REAL NOT NULL, ended REAL, origin TEXT NOT NULL,
    mode TEXT NOT NULL, status TEXT NOT NULL, orchestrator TEXT, prompt TEXT NOT NULL,
    answer TEXT NOT NULL, error TEXT, subtasks INTEGER NOT NULL,
    subtasks_ok INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost_usd REAL,
    orchestrator_context_tokens INTEGER NOT NULL, warnings TEXT NOT NULL,
    digests TEXT NOT NULL
);
CREATE TABLE calls (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, parent INTEGER, kind TEXT NOT NULL, role TEXT, idx INTEGER,
    name TEXT, task TEXT, status TEXT, backend TEXT, model TEXT, failover INTEGER,
    error TEXT, http_status INTEGER, started REAL, ended REAL, latency_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, bytes_in INTEGER,
    bytes_out INTEGER, retries INTEGER, prompt TEXT, answer TEXT, extra TEXT,
    PRIMARY KEY (run_id, seq)
);
INSERT INTO runs VALUES ('0123456789ab', 1700000000.0, 1700000002.5, 'cli', 'solo', 'ok',
    'orch', 'an old prompt', 'an old answer', NULL, 0, 0, 10, 5, 0.001, 10, '[]', '[]');
INSERT INTO calls VALUES ('0123456789ab', 0, NULL, 'turn', 'orchestrator', 0, NULL, NULL,
    NULL, 'orch', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, 'an old answer', NULL);
INSERT INTO calls VALUES ('0123456789ab', 1, 0, 'call', 'orchestrator', NULL, NULL, NULL,
    'ok', 'orch', 'openai/x', 0, NULL, NULL, 1700000000.5, 1700000002.0, 1500.0, 10, 5,
    0.001, 100, 50, 0, NULL, NULL, NULL);
INSERT INTO calls VALUES ('0123456789ab', 2, 1, 'attempt', 'orchestrator', 0, NULL, NULL,
    'ok', 'orch', 'openai/x', NULL, NULL, NULL, 1700000000.5, 1700000002.0, 1500.0, 10, 5,
    0.001, 100, 50, NULL, NULL, NULL, NULL);
PRAGMA user_version = 1;
"""


def as_dict(run: Run) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    data.pop("_observers")
    return data


def small_run(run_id: str | None = None, *, started: float | None = None, **over: Any) -> Run:
    run = Run(prompt="p", **({"id": run_id} if run_id else {}))
    run.started = started if started is not None else time.time()
    attempt = Attempt("orch", "openai/o", started=run.started, latency_ms=10.0, prompt_tokens=7,
                      completion_tokens=3, cost_usd=over.pop("cost", 0.001))  # fmt: skip
    run.turns.append(Turn(0, Call("orchestrator", "orch", "openai/o", [attempt])))
    for key, value in over.items():
        setattr(run, key, value)
    run.finish("ok")
    run.ended = run.started + 1.0
    return run


async def test_round_trip_keeps_tree_and_numbers(sim: Simulator, tmp_path: Path) -> None:
    trace = await fanout_run(sim)
    trace.warn("a warning")
    ledger = Ledger(default_path(tmp_path))
    ledger.record(trace, orchestrator_price=(3e-6, 15e-6))
    stored = ledger.load(trace.id)
    assert stored is not None
    assert as_dict(stored.run) == as_dict(trace)
    assert [t.finish_reason for t in stored.run.turns] == ["tool_calls", "stop"]
    assert stored.run.totals() == trace.totals()
    assert stored.orchestrator_price == (3e-6, 15e-6)
    row = ledger.recent(5)[0]
    prompt, completion, cost = trace.totals()
    assert (row["id"], row["subtasks"], row["subtasks_ok"]) == (trace.id, 4, 4)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (
        prompt, completion, cost)  # fmt: skip
    ledger.record(trace)  # recording again replaces, never duplicates
    assert len(ledger.recent(5)) == 1 and ledger.load(trace.id) is not None


async def test_stats_of_a_fanout(sim: Simulator, tmp_path: Path) -> None:
    trace = await fanout_run(sim)
    ledger = Ledger(default_path(tmp_path))
    ledger.record(trace, orchestrator_price=(10e-6, 20e-6))  # 10x the specialists' price
    data = ledger_stats.summarize(*ledger.rows_since(None))
    per = {b["backend"]: b for b in data["backends"]}
    assert (per["bad"]["calls"], per["bad"]["ok"], per["bad"]["failovers"]) == (2, 0, 2)
    assert per["bad"]["retries"] == 0 and per["bad"]["success_rate"] == 0.0  # failed over
    assert (per["w1"]["calls"], per["w1"]["ok"], per["w2"]["calls"]) == (2, 2, 2)
    assert per["orch"]["calls"] == 2 and per["w1"]["p50_ms"] <= per["w1"]["p95_ms"]
    assert data["specialist"]["calls"] == 6 and data["specialist"]["ok"] == 4
    assert data["modes"][0] == {**data["modes"][0], "mode": "delegated", "runs": 1, "ok": 1}
    sav = data["savings"]
    sub_atts = [a for s in trace.subtasks() for a in s.attempts]
    off = sum(a.prompt_tokens + a.completion_tokens for a in sub_atts)
    actual = sum(a.cost_usd or 0.0 for a in sub_atts)
    assert sav["offloaded_tokens"] == off and sav["unpriced_calls"] == 0
    assert math.isclose(sav["actual_usd"], actual)
    assert math.isclose(sav["saved_usd"], 9 * actual)
    assert math.isclose(sav["offloaded_share"], off / sum(trace.totals()[:2]))


def test_unknown_prices_stay_unknown(tmp_path: Path) -> None:
    ledger = Ledger(default_path(tmp_path))
    run = small_run()
    sub = Subtask(0, "grunt", "p", status="ok", backend="w", started=run.started,
                  ended=run.started + 0.5)  # fmt: skip
    sub.calls.append(
        Call(
            "subtask",
            "w",
            "openai/w",
            [Attempt("w", "openai/w", started=run.started, prompt_tokens=5, cost_usd=None)],
        )
    )
    run.turns[0].tool_calls.append(ToolCall("c1", "delegate", "{}", [sub]))
    ledger.record(run, orchestrator_price=(1e-6, 1e-6))
    ledger.record(small_run(), orchestrator_price=None)
    data = ledger_stats.summarize(*ledger.rows_since(None))
    assert data["savings"]["saved_usd"] is None and data["savings"]["unpriced_calls"] == 1
    assert {b["backend"]: b["cost_usd"] for b in data["backends"]}["w"] is None
    assert data["modes"][0]["cost_usd"] is None


def test_since_filters_old_runs(tmp_path: Path) -> None:
    ledger = Ledger(default_path(tmp_path))
    ledger.record(small_run("aaaaaaaaaaaa", started=time.time() - 3 * 86400))
    ledger.record(small_run("bbbbbbbbbbbb"))
    runs, calls = ledger.rows_since(time.time() - 86400)
    assert [r["id"] for r in runs] == ["bbbbbbbbbbbb"]
    assert {c["run_id"] for c in calls} == {"bbbbbbbbbbbb"}
    assert len(ledger.rows_since(None)[0]) == 2


def test_resolve_latest_prefix_and_ambiguity(tmp_path: Path) -> None:
    ledger = Ledger(default_path(tmp_path))
    ledger.record(small_run("abc111111111", started=1000.0))
    ledger.record(small_run("abc222222222", started=2000.0))
    assert ledger.resolve("latest") == ["abc222222222"]
    assert ledger.resolve("abc1") == ["abc111111111"]
    assert len(ledger.resolve("abc")) == 2
    assert ledger.resolve("zzz") == [] and ledger.resolve("a%") == []


def test_file_is_private_wal_and_current(tmp_path: Path) -> None:
    path = default_path(tmp_path / "new" / "dir")
    Ledger(path).record(small_run())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION


def test_reading_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    ledger = Ledger(default_path(tmp_path / "state"))
    assert ledger.recent(5) == [] and ledger.resolve("latest") == []
    assert ledger.load("x") is None and ledger.rows_since(None) == ([], [])
    assert not (tmp_path / "state").exists()


def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    Ledger(path).record(small_run("cccccccccccc"))
    assert Ledger(path).load("cccccccccccc") is not None


def test_upgrades_a_v1_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    ledger = Ledger(path)
    stored = ledger.load("0123456789ab")
    assert stored is not None and stored.orchestrator_price is None
    assert stored.run.answer == "an old answer" and stored.run.totals() == (10, 5, 0.001)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == VERSION
    ledger.record(small_run("dddddddddddd"), orchestrator_price=(1e-6, 2e-6))
    assert [r["id"] for r in ledger.recent(5)] == ["dddddddddddd", "0123456789ab"]


def test_upgrades_from_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:-1]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {VERSION - 1}")
    Ledger(path).record(small_run("eeeeeeeeeeee"), orchestrator_price=(1e-6, 2e-6))
    stored = Ledger(path).load("eeeeeeeeeeee")
    assert stored is not None and stored.orchestrator_price == (1e-6, 2e-6)


def cached_run(run_id: str, read: int, write: int = 0) -> Run:
    """A direct run on ``orch``: one call of 7 prompt tokens, ``read``/``write`` of them cached."""
    run = small_run(run_id)
    attempt = run.turns[0].call.attempts[0]
    attempt.cache_read_tokens, attempt.cache_write_tokens = read, write
    return run


def test_cache_tokens_round_trip_per_attempt_and_call(tmp_path: Path) -> None:
    ledger = Ledger(default_path(tmp_path))
    run = cached_run("ffffffffffff", 5, 1)
    ledger.record(run)
    stored = ledger.load(run.id)
    assert stored is not None and as_dict(stored.run) == as_dict(run)
    assert stored.run.turns[0].call.cache_tokens == (5, 1)
    with sqlite3.connect(default_path(tmp_path)) as conn:
        rows = conn.execute(
            "SELECT kind, cache_read_tokens, cache_write_tokens FROM calls ORDER BY seq"
        ).fetchall()
    assert rows == [("turn", None, None), ("call", 5, 1), ("attempt", 5, 1)]


def test_stats_share_of_cache_hits_leaves_out_calls_recorded_without_counts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)  # one call of 10 prompt tokens, cache unrecorded
    ledger = Ledger(path)
    old = ledger.load("0123456789ab")
    assert old is not None and old.run.cache_totals() == (0, 0)  # NULL reads as none
    per = {b["backend"]: b for b in ledger_stats.summarize(*ledger.rows_since(None))["backends"]}
    assert per["orch"]["cache_hit_share"] is None and per["orch"]["cache_read_tokens"] == 0
    ledger.record(cached_run("aaaaaaaaaaaa", 7))  # 7 of 7 prompt tokens from the cache
    ledger.record(cached_run("bbbbbbbbbbbb", 0, 2))
    per = {b["backend"]: b for b in ledger_stats.summarize(*ledger.rows_since(None))["backends"]}
    orch = per["orch"]
    assert orch["prompt_tokens"] == 10 + 7 + 7  # every call's tokens still count
    assert (orch["cache_read_tokens"], orch["cache_write_tokens"]) == (7, 2)
    assert orch["cache_hit_share"] == pytest.approx(7 / 14)


def test_unwritable_location_raises_ledger_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(LedgerError, match="cannot write"):
        Ledger(blocker / "state" / "runs.db").record(small_run())


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    secret = "sk-canary-ledger-0123456789"
    run = small_run(answer=f"the key is {secret}", error=f"401 for key {secret}")
    run.turns[0].call.attempts[0].error = f"Incorrect API key provided: {secret}"
    path = default_path(tmp_path)
    Ledger(path).record(run, secrets=[secret])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("runs.db"))
    assert secret.encode() not in raw
    stored = Ledger(path).load(run.id)
    assert stored is not None and stored.run.answer == "the key is [redacted]"


@pytest.mark.parametrize(
    "quoted",
    [
        lambda k: k[:13] + "…",  # cut by a shortened message
        lambda k: "…" + k[-9:],
        lambda k: k[5:30],
    ],
    ids=["head", "tail", "middle"],
)
def test_a_cut_key_never_reaches_the_file(tmp_path: Path, quoted: Callable[[str], str]) -> None:
    secret = "sk-canary-ledger-0123456789abcdefghijklmnop"
    run = small_run(error=f"403: Incorrect API key provided: {quoted(secret)}")
    run.turns[0].call.attempts[0].error = f"Incorrect API key provided: {quoted(secret)}"
    path = default_path(tmp_path)
    Ledger(path).record(run, secrets=[secret])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("runs.db"))
    text = raw.decode("utf-8", "replace")
    assert not any(secret[i : i + 8] in text for i in range(len(secret) - 7))
    stored = Ledger(path).load(run.id)
    assert stored is not None and "[redacted]" in (stored.run.error or "")


def _writer(path: str, worker: int, barrier: Any, count: int) -> None:
    barrier.wait()
    ledger = Ledger(Path(path))
    for i in range(count):
        ledger.record(small_run(f"{worker:02d}{i:010d}"))


def test_parallel_writers_never_see_locked(tmp_path: Path) -> None:
    path = default_path(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_writer, args=(str(path), w, barrier, 25)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    assert len(Ledger(path).recent(1000)) == 200
    assert os.stat(path).st_size > 0


def test_a_kept_open_ledger_writes_on_one_connection_others_can_read(tmp_path: Path) -> None:
    path = default_path(tmp_path)
    server = Ledger(path, keep_open=True)
    server.record_many([(small_run("a1"), None), (small_run("a2"), (1e-6, 2e-6))])
    first = server._kept
    server.record(small_run("a3"))
    assert first is not None and server._kept is first  # no reopening per run
    assert sorted(r["id"] for r in Ledger(path).recent(10)) == ["a1", "a2", "a3"]
    server.close()
    assert server._kept is None
    server.record(small_run("a4"))  # a write after close opens a new connection
    assert len(Ledger(path).recent(10)) == 4
    server.close()


def test_a_failed_batch_writes_none_of_its_runs_and_drops_the_kept_connection(
    tmp_path: Path,
) -> None:
    path = default_path(tmp_path)
    server = Ledger(path, keep_open=True)
    server.record(small_run("ok1"))
    broken = small_run("bad")
    broken.turns[0].call.attempts[0].prompt_tokens = 2**70  # too large for SQLite
    with pytest.raises(LedgerError, match="cannot write"):
        server.record_many([(small_run("ok2"), None), (broken, None)])
    assert server._kept is None
    assert [r["id"] for r in Ledger(path).recent(10)] == ["ok1"]
    server.record(small_run("ok3"))
    assert sorted(r["id"] for r in Ledger(path).recent(10)) == ["ok1", "ok3"]
    server.close()


def test_a_lone_surrogate_is_mended_not_lost(tmp_path: Path) -> None:
    # A character split across a stream's JSON escapes: two lone surrogates that make a
    # pair, and one stray.
    run = small_run("sur", answer="smile \ud83d\ude00 and \ud83d alone")
    path = default_path(tmp_path)
    Ledger(path).record(run)
    stored = Ledger(path).load("sur")
    assert stored is not None and stored.run.answer == "smile \U0001f600 and \ufffd alone"


def test_a_kept_open_ledger_follows_its_file_when_it_is_replaced(tmp_path: Path) -> None:
    path = default_path(tmp_path)
    server = Ledger(path, keep_open=True)
    server.record(small_run("before"))
    for leftover in tmp_path.glob("runs.db*"):
        leftover.unlink()  # the user clears the history while the server runs
    server.record(small_run("after"))
    assert [r["id"] for r in Ledger(path).recent(10)] == ["after"]
    server.close()
