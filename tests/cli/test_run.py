"""The command line as users and scripts see it: real subprocesses, real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tanglebrain.ledger import Ledger, default_path
from tanglebrain.sim import Simulator
from tests.helpers import (
    WAIT,
    backend_toml,
    cli_env,
    probe,
    run_cli,
    start_cli,
    wait_until,
    write_roster,
)


def roster(tmp_path: Path, sim: Simulator, *specs: tuple[str, str, float, bool]) -> Path:
    entries = [
        backend_toml(bid, spec, sim.base_url, cost=cost, orchestrator=orch)
        for bid, spec, cost, orch in specs
    ]
    return write_roster(tmp_path / "roster.toml", *entries, settings="max_attempts = 2\n")


def test_version_and_help(tmp_path: Path) -> None:
    out = run_cli(["--version"], tmp_path)
    assert out.code == 0 and out.stdout.startswith("tanglebrain ")
    out = run_cli(["--help"], tmp_path)
    assert out.code == 0 and "run" in out.stdout and "demo" in out.stdout
    out = run_cli(["run", "--help"], tmp_path)
    assert out.code == 0 and "--no-delegate" in out.stdout and "--budget" in out.stdout


def test_direct_answer_stdout_is_exactly_the_answer(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False), ("dear", "worker", 5, False))
    out = run_cli(["say exactly this"], tmp_path)
    assert out.code == 0, out.stderr
    assert out.stdout == "say exactly this\n"
    assert "no orchestrator is configured" in out.stderr


def test_pin_backend(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False), ("dear", "worker", 5, False))
    out = run_cli(["-b", "dear", "hello pinned"], tmp_path)
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("simulated worker result for: hello pinned")


def test_run_options_before_prompt_equal_explicit_run(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    path = roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    a = run_cli(["--roster", str(path), "--json", "-b", "cheap", "same"], tmp_path)
    b = run_cli(["--roster", str(path), "run", "--json", "-b", "cheap", "same"], tmp_path)
    assert a.code == b.code == 0
    assert json.loads(a.stdout)["answer"] == json.loads(b.stdout)["answer"] == "same"


def test_stdin_is_attached(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    out = run_cli(["summarize this"], tmp_path, stdin="line one\nline two\n")
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("summarize this\n\n<<<attachment stdin (18 bytes, 2 lines)>>>")
    seen = [r for r in sim_thread.requests if "line two" in str(r.messages)]
    assert seen, "the attachment never reached the backend"


def test_prompt_from_stdin(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    for args in (["-"], []):
        out = run_cli(args, tmp_path, stdin="prompt from a pipe\n")
        assert out.code == 0, out.stderr
        assert out.stdout == "prompt from a pipe\n"


def test_json_object(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    out = run_cli(["--json", "hi json"], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {
        "answer",
        "run_id",
        "orchestrator",
        "degraded",
        "subtasks",
        "usage",
        "warnings",
    }
    assert data["answer"] == "hi json" and data["orchestrator"] == "cheap"
    assert data["degraded"] is False and data["subtasks"] == []
    assert set(data["usage"]) == {
        "prompt_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "completion_tokens",
        "cost_usd",
        "orchestrator_context_tokens",
    }
    assert data["usage"]["cost_usd"] > 0


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["-b", "nope", "x"], 2, "unknown backend id"),
        (["--budget", "-1", "x"], 2, "--budget"),
        (["--max-subtasks", "0", "x"], 2, "--max-subtasks"),
        (["run", "--no-such-option", "x"], 2, "No such option"),
        ([""], 2, "prompt is empty"),
    ],
)
def test_usage_errors(
    tmp_path: Path, sim_thread: Simulator, args: list[str], code: int, fragment: str
) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    out = run_cli(args, tmp_path)
    assert out.code == code
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_every_backend_fails_exit_1(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(
        tmp_path, sim_thread, ("one", "fail:status=500", 1, False), ("two", "malformed", 2, False)
    )
    out = run_cli(["anything"], tmp_path)
    assert out.code == 1
    assert out.stdout == ""
    assert "one: HTTP 500" in out.stderr and "two: malformed response" in out.stderr
    assert "Traceback" not in out.stderr and "{" not in out.stderr


def test_failover_to_next_backend(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("one", "fail:status=500", 1, False), ("two", "echo", 2, False))
    out = run_cli(["still answered"], tmp_path)
    assert out.code == 0 and out.stdout == "still answered\n"


def test_missing_key_exit_2(tmp_path: Path, sim_thread: Simulator) -> None:
    entry = backend_toml("keyed", "echo", sim_thread.base_url, extra='api_key_env = "TB_UNSET_KEY"')
    write_roster(tmp_path / "roster.toml", entry)
    out = run_cli(["hi"], tmp_path)
    assert out.code == 2 and "TB_UNSET_KEY" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_litellm_noise_never_reaches_stdout(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("one", "fail:status=500", 1, False))
    out = run_cli(["--debug", "x"], tmp_path)
    assert out.code == 1 and out.stdout == ""
    assert "Give Feedback" not in out.stderr and "LiteLLM" not in out.stderr


def test_ctrl_c_exits_130(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread, ("slow", "hang", 1, False))
    before = sim_thread.in_flight("hang")
    proc = start_cli(["wait forever"], tmp_path)
    # Wait (without sleeping) until the request is really in flight at the backend.

    wait_until(lambda: sim_thread.in_flight("hang") > before, "request never reached the simulator")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert stdout == b"" and b"Traceback" not in stderr
    assert b"tanglebrain: interrupted" in stderr


def test_env_roster_variable(tmp_path: Path, sim_thread: Simulator) -> None:
    path = roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    moved = tmp_path / "elsewhere.toml"
    path.rename(moved)
    out = run_cli(["via env"], tmp_path, env=cli_env(tmp_path, TANGLEBRAIN_ROSTER=str(moved)))
    assert out.code == 0 and out.stdout == "via env\n"


def fan_roster(tmp_path: Path, sim: Simulator, worker: str, n: int = 4) -> Path:
    entries = [
        backend_toml(
            "orch",
            f"orchestrator:fanout={n}",
            sim.base_url,
            good_at=("planning",),
            cost=30,
            orchestrator=True,
        ),
        backend_toml("w", worker, sim.base_url, good_at=("work",), extra="max_concurrency = 64"),
    ]
    return write_roster(
        tmp_path / "roster.toml", *entries, settings="max_attempts = 1\ntimeout_s = 30\n"
    )


def test_all_specialists_down_is_degraded_exit_0(tmp_path: Path, sim_thread: Simulator) -> None:
    fan_roster(tmp_path, sim_thread, "fail:status=500")
    out = run_cli(["--json", "do it"], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["degraded"] is True
    assert [s["status"] for s in data["subtasks"]] == ["error"] * 4
    assert all(s["attempts"] == 1 for s in data["subtasks"])
    assert "degraded" in out.stderr


def test_json_subtasks_in_issue_order(tmp_path: Path, sim_thread: Simulator) -> None:
    fan_roster(tmp_path, sim_thread, "worker", n=6)
    out = run_cli(["--json", "do it"], tmp_path)
    data = json.loads(out.stdout)
    assert [s["index"] for s in data["subtasks"]] == list(range(6))
    assert all(
        s["backend"] == "w" and s["status"] == "ok" and s["tokens"] > 0 for s in data["subtasks"]
    )
    assert data["usage"]["orchestrator_context_tokens"] > 0


def test_all_orchestrators_down_exit_1_with_reasons(tmp_path: Path, sim_thread: Simulator) -> None:
    entries = [
        backend_toml("o1", "fail:status=500", sim_thread.base_url, cost=1, orchestrator=True),
        backend_toml("o2", "fail:status=404", sim_thread.base_url, cost=2, orchestrator=True),
    ]
    write_roster(tmp_path / "roster.toml", *entries, settings="max_attempts = 1\n")
    out = run_cli(["x"], tmp_path)
    assert out.code == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert any(line.strip().startswith("o1: HTTP 500") for line in lines)
    assert any(line.strip().startswith("o2: HTTP 404") for line in lines)


def test_ctrl_c_during_fan_out_stops_every_call(tmp_path: Path, sim_thread: Simulator) -> None:

    fan_roster(tmp_path, sim_thread, "hang", n=8)
    before = sim_thread.in_flight("hang")
    proc = start_cli(["fan out and hang"], tmp_path)
    wait_until(
        lambda: sim_thread.in_flight("hang") >= before + 8, "fan-out never reached the simulator"
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130 and b"Traceback" not in stderr
    # every in-flight request was abandoned by the client: the server sees them all go
    wait_until(
        lambda: sim_thread.in_flight("hang") <= before,
        "calls still in flight after Ctrl-C",
    )
    # The ledger says what happened: interrupted, not failed; no backend is blamed.
    data = json.loads(run_cli(["show", "latest", "--json"], tmp_path).stdout)
    assert data["status"] == "interrupted"
    subs = [s for t in data["turns"] for c in t["tool_calls"] for s in c["subtasks"]]
    assert len(subs) == 8 and {s["status"] for s in subs} == {"cancelled"}
    attempts = [a for s in subs for c in s["calls"] for a in c["attempts"]]
    assert attempts and {a["status"] for a in attempts} == {"cancelled"}
    assert not any("CancelledError" in (a["error"] or "") for a in attempts)
    stats = json.loads(run_cli(["stats", "--json"], tmp_path).stdout)
    [w] = [b for b in stats["backends"] if b["backend"] == "w"]
    assert (w["calls"], w["cancelled"]) == (0, 8)


def test_closed_stdout_stops_quietly(tmp_path: Path, sim_thread: Simulator) -> None:

    from tests.helpers import GUARD

    roster(tmp_path, sim_thread, ("big", "worker:size=2000000", 1, False))
    proc = subprocess.Popen(
        [sys.executable, str(GUARD), "a long answer please"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli_env(tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)  # like `| head -c 10`
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=WAIT) == 0
    assert b"error" not in stderr and b"Traceback" not in stderr
    shown = run_cli(["show", "latest", "--json"], tmp_path)
    data = json.loads(shown.stdout)
    assert data["status"] == "interrupted"
    calls = data["extra_calls"] + [t["call"] for t in data["turns"]]
    assert all(a["status"] != "error" for c in calls for a in c["attempts"])
    stats = json.loads(run_cli(["stats", "--json"], tmp_path).stdout)
    assert all(b["calls"] == b["ok"] for b in stats["backends"])  # no backend is blamed


@pytest.mark.parametrize(
    "args",
    [["backends"], ["backends", "list", "--json"], ["runs"], ["stats", "--json"], ["--help"]],
    ids=" ".join,
)
def test_listing_into_a_closed_pipe_exits_0(
    tmp_path: Path, sim_thread: Simulator, args: list[str]
) -> None:
    # `tanglebrain backends | head -0`: the reader is gone before the first write.
    import os

    from tests.helpers import GUARD

    roster(tmp_path, sim_thread, ("w", "worker", 1, False))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, str(GUARD), *args],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=cli_env(tmp_path),
            timeout=WAIT,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--budget", "nan", "x"], "--budget"),
        (["--budget", "inf", "x"], "--budget"),
        (["-t", "nosuchtag", "x"], "unknown task tag 'nosuchtag'"),
        (["run", "--bogus", "x"], "No such option"),
    ],
)
def test_more_usage_errors_are_one_line(
    tmp_path: Path, sim_thread: Simulator, args: list[str], fragment: str
) -> None:
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    out = run_cli(args, tmp_path)
    assert out.code == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], out.stderr


def test_keyless_specialist_is_named_and_skipped(tmp_path: Path, sim_thread: Simulator) -> None:
    entries = [
        backend_toml(
            "orch",
            "orchestrator:fanout=2",
            sim_thread.base_url,
            good_at=("planning",),
            cost=30,
            orchestrator=True,
        ),
        backend_toml(
            "keyless",
            "worker:id=keyless",
            sim_thread.base_url,
            good_at=("work",),
            cost=1,
            extra='api_key_env = "TB_SPECIALIST_KEY_UNSET"',
        ),
        backend_toml("w", "worker", sim_thread.base_url, good_at=("work",), cost=5),
    ]
    write_roster(tmp_path / "roster.toml", *entries)
    out = run_cli(["--json", "do it"], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert any("TB_SPECIALIST_KEY_UNSET" in w for w in data["warnings"])
    assert "TB_SPECIALIST_KEY_UNSET" in out.stderr
    assert all(s["backend"] == "w" and s["status"] == "ok" for s in data["subtasks"])
    assert sim_thread.count("worker:id=keyless") == 0


def test_rejected_tool_call_makes_the_run_degraded(tmp_path: Path, sim_thread: Simulator) -> None:
    fan_roster(tmp_path, sim_thread, "worker", n=3)
    out = run_cli(["--json", "--max-subtasks", "1", "do it"], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["degraded"] is True and data["subtasks"] == []
    assert "tool call(s) rejected" in out.stderr and "too many sub-tasks" in out.stderr


@pytest.mark.parametrize("args", [[], ["--json"], ["--review"]])
def test_demo_runs_the_real_path_against_the_simulator(tmp_path: Path, args: list[str]) -> None:
    out = run_cli(["demo", *args], tmp_path)
    assert out.code == 0, out.stderr
    if args == ["--json"]:
        data = json.loads(out.stdout)
        assert data["simulated"] is True and data["orchestrator"] == "orchestrator"
        assert data["answer"].startswith("Simulated synthesis of 4 sub-task results.")
        assert len(data["subtasks"]) == 4 and all(s["status"] == "ok" for s in data["subtasks"])
    else:
        assert out.stdout.startswith("Simulated synthesis of 4 sub-task results.")
        assert out.stdout.rstrip().endswith("no model was called.]")  # always labelled
    if args == ["--review"]:
        assert "tanglebrain: review:" in out.stderr
    done = out.stderr.splitlines()[-1]
    assert done.startswith("tanglebrain: done: delegated by orchestrator · sub-tasks 4 ok/0 failed")
    # A simulated run stays out of the ledger, and the summary says so.
    assert done.endswith("(not recorded)")
    assert not list(tmp_path.rglob("runs.db*"))


def _head_c(args: list[str], tmp_path: Path, size: int) -> tuple[int, bytes]:
    """``tanglebrain ARGS | head -c 10`` where head leaves once ``size`` bytes are written.

    Stdout is a pipe of exactly ``size`` bytes (one page), so the process blocks on
    whatever it writes past them (the newline that ends the answer, the rest of the
    ``--json`` object) until the reader has read 10 bytes and closed the pipe: the
    write that follows the whole answer is the one that fails, every time.
    """
    import array
    import fcntl
    import os
    import termios

    from tests.helpers import GUARD

    r, w = os.pipe()
    assert fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size) == size
    proc = subprocess.Popen(
        [sys.executable, str(GUARD), *args],
        stdin=subprocess.DEVNULL,
        stdout=w,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli_env(tmp_path),
    )
    os.close(w)

    def buffered() -> int:
        n = array.array("i", [0])
        fcntl.ioctl(r, termios.FIONREAD, n)
        return n[0]

    try:
        wait_until(lambda: buffered() >= size, "the answer never filled the pipe")
        assert os.read(r, 10)
    finally:
        os.close(r)
    _, stderr = proc.communicate(timeout=WAIT)
    return proc.returncode, stderr


@pytest.mark.parametrize("how", ["streamed", "whole", "json"])
def test_reader_leaving_after_the_whole_answer_is_recorded(
    tmp_path: Path, sim_thread: Simulator, how: str
) -> None:
    # `tanglebrain "…" | head -c 10`: the answer's calls were paid, so the run is in the
    # ledger (as interrupted) even when the reader left only after the whole answer.
    import mmap

    size = mmap.PAGESIZE
    orchestrates = how == "whole"  # offered tools, the reply is read and printed whole
    roster(tmp_path, sim_thread, ("big", f"worker:size={size}", 1, orchestrates))
    code, stderr = _head_c(["--json", "x"] if how == "json" else ["x"], tmp_path, size)
    assert code == 0 and b"error" not in stderr and b"Traceback" not in stderr
    data = json.loads(run_cli(["show", "latest", "--json"], tmp_path).stdout)
    assert data["status"] == "interrupted" and data["usage"]["completion_tokens"] > 0
    assert data["mode"] == ("delegated" if orchestrates else "direct")


def test_sigterm_is_an_interrupt(tmp_path: Path, sim_thread: Simulator) -> None:
    # `timeout`, CI and service managers stop with SIGTERM: like Ctrl-C, every call is
    # stopped and the run recorded, with the exit code a shell shows for SIGTERM.
    fan_roster(tmp_path, sim_thread, "hang", n=4)
    before = sim_thread.in_flight("hang")
    proc = start_cli(["fan out and hang"], tmp_path)
    wait_until(
        lambda: sim_thread.in_flight("hang") >= before + 4, "fan-out never reached the simulator"
    )
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 143 and stdout == b""
    assert stderr.decode().splitlines() == ["tanglebrain: terminated (SIGTERM)"]
    wait_until(lambda: sim_thread.in_flight("hang") <= before, "calls still in flight")
    data = json.loads(run_cli(["show", "latest", "--json"], tmp_path).stdout)
    assert data["status"] == "interrupted" and data["error"] == "stopped by SIGTERM"
    subs = [s for t in data["turns"] for c in t["tool_calls"] for s in c["subtasks"]]
    assert len(subs) == 4 and {s["status"] for s in subs} == {"cancelled"}
    assert {c["status"] for s in subs for c in s["calls"]} == {"cancelled"}
    shown = run_cli(["show", "latest"], tmp_path).stdout
    assert "· cancelled ·" in shown and "· error" not in shown


def test_a_prompt_with_an_undecodable_byte_is_answered(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    # Python passes the byte 0xff of an argument on as a lone surrogate, which no UTF-8
    # request body can carry: it reaches the model as U+FFFD instead of a traceback.
    roster(tmp_path, sim_thread, ("solo", "echo", 1, True))
    out = run_cli(["--no-log", "bad \udcff byte"], tmp_path)
    assert out.code == 0, out.stderr
    assert "bad \ufffd byte" in out.stdout and "Traceback" not in out.stderr


def test_sigterm_handler_belongs_to_run_alone(tmp_path: Path, sim_thread: Simulator) -> None:
    # serve, mcp and sim handle SIGTERM their own way: `run` must not leave its handler.
    roster(tmp_path, sim_thread, ("cheap", "echo", 1, False))
    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(["hello"], tmp_path).code == 0
    assert run_cli(["hello", "--budget", "-1"], tmp_path).code == 2
    assert signal.getsignal(signal.SIGTERM) is before


LITELLM_PROBE = (
    "import sys, threading\nfrom tanglebrain.cli import run_argv\n"
    "code = run_argv(sys.argv[1:])\n"
    "loading = any(t.name == 'litellm-import' for t in threading.enumerate())\n"
    "print('litellm' in sys.modules or loading, code)\n"
)


@pytest.mark.parametrize(
    ("transport", "loaded"), [("auto", False), ("openai", False), ("litellm", True)]
)
def test_litellm_is_loaded_only_when_a_backend_needs_it(
    tmp_path: Path, sim_thread: Simulator, transport: str, loaded: bool
) -> None:
    # A process of its own: the test process itself has litellm loaded.
    extra = f'transport = "{transport}"\n'
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("o", "orchestrator:fanout=2", sim_thread.base_url, orchestrator=True,
                     extra=extra),
        backend_toml("w", "worker", sim_thread.base_url),
    )  # fmt: skip
    argv = ["--roster", str(roster), "--no-log", "go"]
    assert probe(LITELLM_PROBE, argv, tmp_path) == f"{loaded} 0"


LAZY_PROBE = (
    "import sys\nfrom tanglebrain.cli import run_argv\n"
    "code = run_argv(sys.argv[1:])\n"
    "print(sorted(m for m in LAZY if m in sys.modules), code)\n"
)
LAZY = ("pydantic", "tanglebrain.delegation", "tanglebrain.results", "tanglebrain._trace_review")


def test_an_answer_without_delegation_loads_no_delegation_code(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    # The one-shot path: delegation, tool results and the review load with their first
    # use; pydantic only the first time a roster text is seen (roster._validate).
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("o", "echo", sim_thread.base_url, orchestrator=True),
    )
    code = f"LAZY = {LAZY!r}\n" + LAZY_PROBE
    argv = ["--roster", str(roster), "--no-log", "hi"]
    loaded = [probe(code, argv, tmp_path) for _ in range(2)]
    assert loaded == ["['pydantic'] 0", "[] 0"]


def test_ab_runs_solo_beside_the_delegated_run_and_records_the_pair(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    fan_roster(tmp_path, sim_thread, "worker", n=3)
    out = run_cli(["--ab", "do the work"], tmp_path)
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("Simulated synthesis")  # the delegated answer, only
    assert "a/b: solo run" in out.stderr and "delegated/solo: cost" in out.stderr
    data = json.loads(run_cli(["--ab", "--json", "do the work"], tmp_path).stdout)
    ab = data["ab"]
    assert ab["solo"]["status"] == "ok" and "no delegation" in ab["solo"]["answer"]
    assert data["mode"] == "delegated" and len(data["subtasks"]) == 3
    # Delegation costs more than answering solo here: the ratio says so, measured.
    assert ab["ratios"]["cost"] > 1 and ab["ratios"]["orchestrator_context_tokens"] > 1
    runs = json.loads(run_cli(["runs", "--json"], tmp_path).stdout)
    assert sorted(r["mode"] for r in runs) == [
        "delegated", "delegated", "solo", "solo"]  # fmt: skip
    stored = Ledger(default_path(tmp_path / "state")).load(data["run_id"])
    twin = Ledger(default_path(tmp_path / "state")).load(ab["solo"]["run_id"])
    assert stored is not None and twin is not None
    assert stored.run.pair == twin.run.pair == ab["pair"] and twin.run.mode == "solo"
    stats = json.loads(run_cli(["stats", "--json"], tmp_path).stdout)["ab"]
    assert stats["pairs"] == 2
    assert stats["cost"]["median_ratio"] == pytest.approx(ab["ratios"]["cost"], rel=0.05)
    view = run_cli(["stats"], tmp_path).stdout
    assert "measured over 2 A/B pair(s)" in view and "savings (estimated)" in view


def test_ab_refuses_no_delegate(tmp_path: Path, sim_thread: Simulator) -> None:
    fan_roster(tmp_path, sim_thread, "worker", n=1)
    out = run_cli(["--ab", "--no-delegate", "x"], tmp_path)
    assert out.code == 2 and out.stdout == ""
    assert "--ab already runs the request solo" in out.stderr
