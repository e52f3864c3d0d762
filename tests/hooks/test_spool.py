"""The hook log's spool: handlers append lines, reading the ledger folds them in, once each."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tanglebrain.hooks._log import SPOOL, append, record
from tanglebrain.ledger import HOOK_COLUMNS, HOOK_SPOOL, Ledger, default_path
from tests.helpers import ROOT, WAIT, cli_env, run_cli


def _row(n: int, **values: Any) -> dict[str, Any]:
    base = {"time": 1000.0 + n, "agent": "claude", "event": "pre-tool-use", "tool": "Bash",
            "command": f"make {n}", "outcome": "rewrite", "handler_ms": 1.5 + n}  # fmt: skip
    return {**base, **values}


def _line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row) + "\n").encode()


def _ledger(state: Path) -> Ledger:
    return Ledger(default_path(state))


def test_the_names_agree() -> None:
    assert SPOOL == HOOK_SPOOL


def test_a_handler_appends_to_the_spool_and_never_opens_the_ledger(tmp_path: Path) -> None:
    env = cli_env(tmp_path, TANGLEBRAIN_HOME=str(tmp_path / "state" / "deep"))
    payload = {"tool_name": "Bash", "tool_input": {"command": "make"}, "cwd": str(tmp_path)}
    out = run_cli(["hook", "claude", "pre-tool-use"], tmp_path, stdin=json.dumps(payload), env=env)
    assert out.code == 0, out.stderr
    state = tmp_path / "state" / "deep"
    assert sorted(os.listdir(state)) == [SPOOL]  # no runs.db: SQLite was not touched
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / SPOOL).stat().st_mode) == 0o600
    line = json.loads((state / SPOOL).read_text())
    assert (line["agent"], line["event"], line["command"]) == ("claude", "pre-tool-use", "make")
    rows = _ledger(state).hook_rows()
    assert [(r["event"], r["command"], r["outcome"]) for r in rows] == [
        ("pre-tool-use", "make", line["outcome"])
    ]
    assert sorted(os.listdir(state)) == ["runs.db"]  # folded: the spool is gone


def test_gain_and_status_see_every_invocation(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for n in range(5):
        record(_row(n), env)
    record(_row(9, event="wrap", outcome="pass", bytes_in=10, bytes_out=10), env)
    assert json.loads(run_cli(["gain", "--json"], tmp_path, env=env).stdout)["hook_calls"] == 5
    record(_row(20, agent="codex"), env)  # after a fold: a new spool
    status = run_cli(["hooks", "status", "--agent", "codex"], tmp_path, env=env).stdout
    assert "last invocation: " in status and "pre-tool-use rewrite" in status
    data = json.loads(run_cli(["gain", "--json"], tmp_path, env=env).stdout)
    assert (data["hook_calls"], data["calls"]) == (6, 1)
    assert len(_ledger(tmp_path / "state").hook_rows()) == 7


def test_no_ledger_and_no_spool_reads_as_nothing(tmp_path: Path) -> None:
    assert _ledger(tmp_path / "state").hook_rows() == []
    assert not (tmp_path / "state").exists()


def test_a_cut_line_or_garbage_is_skipped_not_fatal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bad = b'{"time": 5, "agent": "x"\n' + b"[1, 2]\n" + b'{"time": {"nested": 1}}\n'
    cut = _line(_row(2))[:-9]  # a write cut short: no newline
    (state / SPOOL).write_bytes(_line(_row(0)) + bad + _line(_row(1)) + cut)
    rows = _ledger(state).hook_rows()
    assert [r["command"] for r in rows] == ["make 1", "make 0"]
    assert not (state / SPOOL).exists()


def test_rows_keep_every_column(tmp_path: Path) -> None:
    state = tmp_path / "state"
    row = {name: f"v-{name}" for name in HOOK_COLUMNS} | {"time": 7.25, "exit_code": 3}
    append(str(state), _line({**row, "unknown": "ignored"}))
    assert _ledger(state).hook_rows() == [row]


def test_a_fold_that_died_before_its_commit_is_taken_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _ledger(state).hook_rows()  # nothing yet, and no file made
    state.mkdir()
    (state / f"{HOOK_SPOOL}.123.dead").write_bytes(_line(_row(0)) + _line(_row(0)))
    append(str(state), _line(_row(1)))
    rows = _ledger(state).hook_rows()
    assert [r["command"] for r in rows] == ["make 1", "make 0", "make 0"]  # twice: as written
    assert os.listdir(state) == ["runs.db"]


def test_a_fold_that_died_after_its_commit_adds_nothing_twice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lines = _line(_row(0)) + _line(_row(0)) + _line(_row(1))
    append(str(state), lines)
    assert len(_ledger(state).hook_rows()) == 3
    # the same lines again under a fold's name: as if it committed but did not delete
    (state / f"{HOOK_SPOOL}.77.abcd").write_bytes(lines + _line(_row(2)))
    assert len(_ledger(state).hook_rows()) == 3 + 1  # only the line not yet stored


def test_a_fold_waits_for_writes_in_flight_and_late_writers_follow_the_rename(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    append(str(state), _line(_row(0)))
    spool = state / SPOOL
    fd = os.open(spool, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a fold in progress holds the spool
    writer = threading.Thread(target=append, args=(str(state), _line(_row(1))))
    writer.start()  # opens the spool, then waits for its shared lock
    time.sleep(0.2)
    assert writer.is_alive()
    os.rename(spool, state / f"{HOOK_SPOOL}.1.moved")  # the fold renames it
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    writer.join(WAIT)
    assert spool.read_bytes() == _line(_row(1))  # written to the new spool, not the moved one
    assert (state / f"{HOOK_SPOOL}.1.moved").read_bytes() == _line(_row(0))
    assert sorted(r["command"] for r in _ledger(state).hook_rows()) == ["make 0", "make 1"]


WRITER = """
import sys, time
from tanglebrain.hooks._log import append
state, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    append(state, ('{"time": %d, "agent": "%s", "event": "e", "command": "%s-%d"}\\n'
                   % (i, tag, tag, i)).encode())
    time.sleep(0.001)  # spread the writes over many folds
"""
READER = """
import os, sys, time
from pathlib import Path
from tanglebrain.ledger import Ledger, default_path
state = Path(sys.argv[1])
while not (state / "stop").exists():
    Ledger(default_path(state)).hook_rows(limit=1)
"""


def test_racing_writers_and_folds_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    count = 200
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(state)], env=env) for _ in range(2)
    ]
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(state), f"w{k}", str(count)], env=env)
        for k in range(3)
    ]
    try:
        assert all(w.wait(WAIT) == 0 for w in writers)
    finally:
        state.mkdir(exist_ok=True)
        (state / "stop").touch()
        codes = [r.wait(WAIT) for r in readers]
    assert codes == [0, 0]
    commands = [r["command"] for r in _ledger(state).hook_rows()]
    expected = {f"w{k}-{i}" for k in range(3) for i in range(count)}
    assert len(commands) == len(expected) and set(commands) == expected
    assert not [n for n in os.listdir(state) if n.startswith(SPOOL)]
