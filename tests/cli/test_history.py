"""``runs``, ``show``, ``stats`` and run recording, through real CLI subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tanglebrain.sim import Simulator
from tests.helpers import WAIT, backend_toml, cli_env, run_cli, start_cli, wait_until, write_roster

RUN_KEYS = {
    "id", "started", "orchestrator", "mode", "status", "subtasks", "subtasks_ok",
    "prompt_tokens", "completion_tokens", "cost_usd", "wall_ms", "prompt",
}  # fmt: skip
SHOW_KEYS = {
    "run_id", "started", "ended", "wall_ms", "origin", "mode", "status", "orchestrator",
    "degraded", "prompt", "answer", "error", "warnings", "usage", "orchestrator_price",
    "digests", "turns", "extra_calls", "review", "gate",
}  # fmt: skip
CALL_KEYS = {
    "role", "backend", "model", "status", "retries", "latency_ms", "prompt_tokens",
    "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "attempts",
}  # fmt: skip
ATTEMPT_KEYS = {
    "backend", "model", "status", "error", "http_status", "started", "ended", "latency_ms",
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
    "usage_estimated", "bytes_in", "bytes_out",
}  # fmt: skip
SUBTASK_KEYS = {
    "index", "task", "prompt", "requested_backend", "attach", "status", "backend",
    "failed_over", "error", "started", "ended", "latency_ms", "queue_ms", "answer", "calls",
    "routed_by", "static_first",
}  # fmt: skip
STATS_KEYS = {
    "since", "runs", "backends", "modes", "specialist", "orchestrator_context_tokens", "savings",
    "reviews", "routing", "ab",
}  # fmt: skip
BACKEND_KEYS = {
    "backend", "calls", "ok", "success_rate", "p50_ms", "p95_ms", "retries", "prompt_tokens",
    "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cache_hit_share",
    "cost_usd", "failovers", "cancelled",
}  # fmt: skip
MODE_KEYS = {
    "mode", "runs", "ok", "median_wall_ms", "tokens", "cost_usd",
    "median_orchestrator_context_tokens",
}  # fmt: skip
SAVINGS_KEYS = {
    "delegated_runs", "offloaded_tokens", "total_tokens", "offloaded_share",
    "at_orchestrator_price_usd", "actual_usd", "saved_usd", "priced_calls", "unpriced_calls",
}  # fmt: skip
CANARY = "sk-canary-7f3a9c1e5b2d4806"


def fanout_roster(path: Path, sim: Simulator, extra: str = "") -> Path:
    url = sim.base_url
    return write_roster(
        path,
        backend_toml("orch", "orchestrator:fanout=4", url, good_at=("reasoning",), cost=10,
                     orchestrator=True, extra=extra),
        backend_toml("bad", "fail:status=500", url, good_at=("code",), cost=1),
        backend_toml("w1", "worker", url, good_at=("code", "grunt"), cost=2, extra=extra),
        backend_toml("w2", "worker", url, good_at=("grunt",), cost=1),
        settings="max_attempts = 2\n",
    )  # fmt: skip


def ledger_files(state: Path) -> list[Path]:
    return sorted(state.glob("runs.db*")) if state.exists() else []


def cli_json(args: list[str], home: Path) -> object:
    out = run_cli(args, home)
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, sim_thread: Simulator) -> Path:
    """A state directory holding one delegated, one solo and one direct run."""
    home = tmp_path_factory.mktemp("history")
    fanout_roster(home / "roster.toml", sim_thread)
    for args in (["build a thing"], ["--no-delegate", "solo please"], ["-b", "w2", "direct"]):
        out = run_cli(args, home)
        assert out.code == 0, out.stderr
    return home


def test_empty_ledger_is_friendly(tmp_path: Path) -> None:
    for args in (["runs"], ["stats"]):
        out = run_cli(args, tmp_path)
        assert out.code == 0 and "no runs recorded yet" in out.stdout and out.stderr == ""
    assert cli_json(["runs", "--json"], tmp_path) == []
    stats = cli_json(["stats", "--json"], tmp_path)
    assert isinstance(stats, dict) and set(stats) == STATS_KEYS and stats["runs"] == 0
    out = run_cli(["show", "latest"], tmp_path)
    assert out.code == 2 and out.stderr.count("\n") == 1 and "no runs recorded" in out.stderr
    assert not (tmp_path / "state").exists()  # reading never creates the ledger


def test_runs_lists_every_kind(home: Path) -> None:
    rows = cli_json(["runs", "--json"], home)
    assert isinstance(rows, list) and len(rows) == 3
    assert all(set(r) == RUN_KEYS for r in rows)
    assert [r["mode"] for r in rows] == ["direct", "solo", "delegated"]  # newest first
    delegated = rows[2]
    assert (delegated["subtasks"], delegated["subtasks_ok"], delegated["status"]) == (4, 4, "ok")
    assert delegated["prompt"] == "build a thing" and delegated["cost_usd"] > 0
    assert cli_json(["runs", "--json", "--limit", "1"], home) == rows[:1]
    table = run_cli(["runs"], home)
    assert table.code == 0 and all(r["id"] in table.stdout for r in rows)
    assert "4/4" in table.stdout and "build a thing" in table.stdout


def test_show_by_prefix_and_latest(home: Path) -> None:
    rows = cli_json(["runs", "--json"], home)
    assert isinstance(rows, list)
    run_id = rows[2]["id"]
    data = cli_json(["show", run_id[:6], "--json"], home)
    assert isinstance(data, dict) and set(data) == SHOW_KEYS and data["run_id"] == run_id
    turn = data["turns"][0]
    assert set(turn["call"]) == CALL_KEYS
    assert set(turn["call"]["attempts"][0]) == ATTEMPT_KEYS
    subs = turn["tool_calls"][0]["subtasks"]
    assert all(set(s) == SUBTASK_KEYS for s in subs)
    assert [s["failed_over"] for s in subs] == [True, False, True, False]
    assert [len(s["calls"][0]["attempts"]) for s in subs] == [1, 1, 1, 1]  # failed over at once
    assert data["orchestrator_price"] == {"input_per_token": 1e-6, "output_per_token": 2e-6}
    tree = run_cli(["show", "latest"], home)
    assert tree.code == 0 and f"run {rows[0]['id']}" in tree.stdout
    tree = run_cli(["show", run_id], home)
    assert "failed over" in tree.stdout and "attempt 1 · error" in tree.stdout


@pytest.mark.parametrize("ref", ["ffffffffffff", "zz", "no/such"])
def test_unknown_run_id_exit_2(home: Path, ref: str) -> None:
    out = run_cli(["show", ref], home)
    assert out.code == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no run" in out.stderr


def test_stats(home: Path) -> None:
    data = cli_json(["stats", "--json"], home)
    assert isinstance(data, dict) and set(data) == STATS_KEYS
    assert all(set(b) == BACKEND_KEYS for b in data["backends"])
    assert all(set(m) == MODE_KEYS for m in data["modes"])
    assert set(data["savings"]) == SAVINGS_KEYS
    assert [(m["mode"], m["runs"]) for m in data["modes"]] == [
        ("delegated", 1), ("solo", 1), ("direct", 1), ("gated", 0)]  # fmt: skip
    per = {b["backend"]: b for b in data["backends"]}
    assert per["bad"]["failovers"] == 2 and per["bad"]["success_rate"] == 0.0
    assert data["specialist"] == {**data["specialist"], "calls": 6, "ok": 4, "target": 0.95}
    # every backend costs the same per token here: delegation saved exactly nothing
    assert data["savings"]["saved_usd"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < data["savings"]["offloaded_share"] < 1
    recent = cli_json(["stats", "--json", "--since", "1h"], home)
    assert isinstance(recent, dict) and recent["runs"] == 3 and recent["since"]
    view = run_cli(["stats"], home)
    assert view.code == 0 and "specialist success: 66.7 %" in view.stdout
    assert "target > 95 %" in view.stdout and "savings (estimated):" in view.stdout


@pytest.mark.parametrize("since", ["yesterday", "5x", "-1h", "0d"])
def test_stats_bad_since_exit_2(tmp_path: Path, since: str) -> None:
    out = run_cli(["stats", "--since", since], tmp_path)
    assert out.code == 2 and "--since" in out.stderr and out.stderr.count("\n") == 1


def test_summary_line_names_the_recorded_run(tmp_path: Path, sim_thread: Simulator) -> None:
    fanout_roster(tmp_path / "roster.toml", sim_thread)
    out = run_cli(["summarize me"], tmp_path)
    assert out.code == 0, out.stderr
    done = [line for line in out.stderr.splitlines() if line.startswith("tanglebrain: done:")]
    assert len(done) == 1 and "sub-tasks 4 ok/0 failed (2 failed over)" in done[0]
    assert "backends orch, w1, w2" in done[0]
    run_id = re.search(r"run ([0-9a-f]{12})", done[0])
    assert run_id and cli_json(["runs", "--json"], tmp_path)[0]["id"] == run_id.group(1)  # type: ignore[index]
    quiet = run_cli(["-q", "quietly"], tmp_path)
    assert quiet.code == 0 and quiet.stderr == ""


def test_failed_and_interrupted_runs_are_recorded(tmp_path: Path, sim_thread: Simulator) -> None:
    failing = backend_toml("one", "fail:status=500", sim_thread.base_url)
    write_roster(tmp_path / "roster.toml", failing, settings="max_attempts = 1\n")
    assert run_cli(["doomed"], tmp_path).code == 1
    write_roster(tmp_path / "roster.toml", backend_toml("slow", "hang", sim_thread.base_url))
    before = sim_thread.in_flight("hang")
    proc = start_cli(["wait forever"], tmp_path)
    wait_until(lambda: sim_thread.in_flight("hang") > before, "request never reached the simulator")
    proc.send_signal(2)
    proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    rows = cli_json(["runs", "--json"], tmp_path)
    assert [(r["status"], r["prompt"]) for r in rows] == [  # type: ignore[index]
        ("interrupted", "wait forever"), ("error", "doomed")]  # fmt: skip


def test_parallel_processes_all_recorded(tmp_path: Path, sim_thread: Simulator) -> None:
    write_roster(tmp_path / "roster.toml", backend_toml("cheap", "echo", sim_thread.base_url))
    # Two at once is enough to race for the ledger: test_ledger races many more writers.
    procs = [start_cli([f"parallel {i}"], tmp_path) for i in range(2)]
    results = [p.communicate(timeout=WAIT) for p in procs]
    for i, (p, (stdout, stderr)) in enumerate(zip(procs, results, strict=True)):
        assert p.returncode == 0, stderr.decode()
        assert stdout == f"parallel {i}\n".encode()
        assert b"locked" not in stderr and b"warning" not in stderr
    rows = cli_json(["runs", "--json"], tmp_path)
    assert sorted(r["prompt"] for r in rows) == [f"parallel {i}" for i in range(2)]  # type: ignore[index]


def test_canary_key_never_stored_or_printed(tmp_path: Path, sim_thread: Simulator) -> None:
    fanout_roster(tmp_path / "roster.toml", sim_thread, extra='api_key_env = "TB_CANARY_KEY"')
    env = cli_env(tmp_path, TB_CANARY_KEY=CANARY)
    outputs = [run_cli(["--json", "use the key"], tmp_path, env=env)]
    for args in (["runs", "--json"], ["show", "latest", "--json"], ["stats", "--json"],
                 ["runs"], ["show", "latest"], ["stats"]):  # fmt: skip
        outputs.append(run_cli(args, tmp_path, env=env))
    assert all(o.code == 0 for o in outputs), [o.stderr for o in outputs]
    assert json.loads(outputs[0].stdout)["subtasks"]
    for o in outputs:
        assert CANARY not in o.stdout and CANARY not in o.stderr
    files = ledger_files(tmp_path / "state")
    assert files and all(CANARY.encode() not in f.read_bytes() for f in files)


@pytest.mark.parametrize(("args", "extra"), [(["--no-log"], {}), ([], {"TANGLEBRAIN_NO_LOG": "1"})])
def test_no_log_writes_nothing(
    tmp_path: Path, sim_thread: Simulator, args: list[str], extra: dict[str, str]
) -> None:
    write_roster(tmp_path / "roster.toml", backend_toml("cheap", "echo", sim_thread.base_url))
    out = run_cli([*args, "forget me"], tmp_path, env=cli_env(tmp_path, **extra))
    assert out.code == 0 and out.stdout == "forget me\n"
    assert out.stderr.rstrip().endswith("(not recorded)")  # `show` would not find its id
    assert ledger_files(tmp_path / "state") == []
    assert cli_json(["runs", "--json"], tmp_path) == []


def test_unwritable_state_dir_warns_and_answers(tmp_path: Path, sim_thread: Simulator) -> None:
    write_roster(tmp_path / "roster.toml", backend_toml("cheap", "echo", sim_thread.base_url))
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a directory")
    env = cli_env(tmp_path, TANGLEBRAIN_HOME=str(blocker / "state"))
    out = run_cli(["answer anyway"], tmp_path, env=env)
    assert out.code == 0 and out.stdout == "answer anyway\n"
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "not recorded" in warnings[0]
    assert "Traceback" not in out.stderr


def test_progress_flag_forces_the_live_tree(tmp_path: Path, sim_thread: Simulator) -> None:
    fanout_roster(tmp_path / "roster.toml", sim_thread)
    out = run_cli(["--progress", "watch it"], tmp_path)  # NO_COLOR=1 in cli_env
    assert out.code == 0, out.stderr
    assert "4 sub-tasks:" in out.stderr and "\x1b[" in out.stderr  # cursor control: live
    assert not re.search(r"\x1b\[3\dm", out.stderr)  # but no colours
    assert out.stdout.startswith("Simulated synthesis")
    plain = run_cli(["not a terminal"], tmp_path)  # stderr is a pipe: no live view
    assert plain.code == 0 and "\x1b[" not in plain.stderr and "sub-tasks:" not in plain.stderr
    for args in (["--progress", "-q", "quiet wins"], ["--no-progress", "off"]):
        out = run_cli(args, tmp_path)
        assert out.code == 0 and "\x1b[" not in out.stderr


def test_review_is_recorded_shown_and_counted(tmp_path: Path, sim_thread: Simulator) -> None:
    entries = [
        backend_toml(
            "orch",
            "orchestrator:fanout=1",
            sim_thread.base_url,
            good_at=("planning",),
            cost=30,
            orchestrator=True,
        ),
        backend_toml("w", "worker", sim_thread.base_url, good_at=("work",)),
        backend_toml("rev", "reviewer:verdict=blocker", sim_thread.base_url, good_at=("review",)),
    ]
    write_roster(tmp_path / "roster.toml", *entries)
    out = run_cli(["--review", "--json", "check my plan"], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["review"]["overall"]["verdict"] == "MODIFY" and data["review"]["changed"]
    assert "Simulated revision" in data["answer"]
    assert "tanglebrain: review: overall MODIFY" in out.stderr
    shown = cli_json(["show", "latest", "--json"], tmp_path)
    assert shown["review"]["overall"]["verdict"] == "MODIFY"
    assert [c["reviewer"] for c in shown["review"]["critiques"]] == ["rev"]
    assert run_cli(["--no-review", "plain"], tmp_path).code == 0
    stats = cli_json(["stats", "--json"], tmp_path)
    assert stats["reviews"] == {
        "runs": 1,
        "degraded": 0,
        "overall": {"AFFIRM": 0, "MODIFY": 1, "REVERSE": 0},
        "points": {"AFFIRM": 0, "MODIFY": 1, "REVERSE": 0},
        "changed": 1,
        "changed_share": 1.0,
    }
    text = run_cli(["stats"], tmp_path)
    assert "reviews: 1 run(s) reviewed" in text.stdout


def test_unknown_price_is_unknown_even_when_every_call_failed(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    # A backend without a price whose calls all failed did not cost "$0.0000": its cost is
    # unknown in every view. A priced backend's failures did cost $0.
    url = sim_thread.base_url
    priced = backend_toml("lit", "fail:status=500", url)
    dark = backend_toml("dark", "fail:status=503", url).replace("price = {", "# price = {")
    write_roster(tmp_path / "roster.toml", priced, dark, settings="max_attempts = 1\n")
    lit_run = run_cli(["-b", "lit", "priced and doomed"], tmp_path)
    assert lit_run.code == 1 and "$0.0000" in lit_run.stderr
    out = run_cli(["-b", "dark", "unpriced and doomed"], tmp_path)
    assert out.code == 1
    [summary] = [line for line in out.stderr.splitlines() if "summary:" in line]
    assert "unknown" in summary and "$0" not in summary

    rows = cli_json(["runs", "--json"], tmp_path)
    assert [(r["prompt"], r["cost_usd"]) for r in rows] == [  # type: ignore[index]
        ("unpriced and doomed", None), ("priced and doomed", 0.0)]  # fmt: skip
    listing = run_cli(["runs"], tmp_path).stdout.splitlines()
    assert "unknown" in listing[1] and "$0.0000" in listing[2]

    shown = run_cli(["show", "latest"], tmp_path).stdout
    assert "unknown" in shown and "$0" not in shown
    data = cli_json(["show", "latest", "--json"], tmp_path)
    assert data["usage"]["cost_usd"] is None  # type: ignore[index]
    assert [t["call"]["cost_usd"] for t in data["turns"]] == [None]  # type: ignore[index]

    stats = cli_json(["stats", "--json"], tmp_path)
    costs = {b["backend"]: b["cost_usd"] for b in stats["backends"]}  # type: ignore[index]
    assert costs == {"dark": None, "lit": 0.0}
    [direct] = [m for m in stats["modes"] if m["mode"] == "direct"]  # type: ignore[index]
    assert direct["cost_usd"] is None
    table = run_cli(["stats"], tmp_path).stdout
    [dark_line] = [line for line in table.splitlines() if line.strip().startswith("dark")]
    assert "unknown" in dark_line and "$0" not in dark_line


def test_a_cut_stream_is_billed_for_what_it_generated(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    # The stream broke after its first deltas: the provider billed the prompt and those,
    # though no usage came. The ledger, `show` and `runs` count them, marked estimated.
    entry = backend_toml("w", "cut:size=400", sim_thread.base_url)
    write_roster(tmp_path / "roster.toml", entry, settings="max_attempts = 1\n")
    out = run_cli(["-b", "w", "tell me a long story"], tmp_path)
    assert out.code == 1 and out.stdout.startswith("simulated")
    data = cli_json(["show", "latest", "--json"], tmp_path)
    [attempt] = data["turns"][0]["call"]["attempts"]  # type: ignore[index]
    assert attempt["status"] == "error" and attempt["usage_estimated"] is True
    assert attempt["completion_tokens"] == -(-len(out.stdout.strip()) // 4)
    expected = (attempt["prompt_tokens"] * 1.0 + attempt["completion_tokens"] * 2.0) / 1e6
    assert attempt["prompt_tokens"] > 0 and attempt["cost_usd"] == pytest.approx(expected)
    assert data["usage"]["cost_usd"] == pytest.approx(expected)  # type: ignore[index]
    [row] = cli_json(["runs", "--json"], tmp_path)  # type: ignore[misc]
    assert row["cost_usd"] == pytest.approx(expected)
    shown = run_cli(["show", "latest"], tmp_path).stdout
    assert "(estimated)" in shown and "stream cut" in shown


def test_cached_prompt_tokens_are_priced_shown_and_counted(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    # 400 characters: 100 prompt tokens, 90 of them read from the prompt cache.
    entry = backend_toml("w", "worker:cached=90,tokens=10", sim_thread.base_url).replace(
        "price = { input = 1.0, output = 2.0 }",
        "price = { input = 1.0, output = 2.0, cached_input = 0.1 }",
    )
    write_roster(tmp_path / "roster.toml", entry)
    out = run_cli(["--json", "-b", "w", "x" * 400], tmp_path)
    assert out.code == 0, out.stderr
    usage = json.loads(out.stdout)["usage"]
    true_cost = (10 * 1.0 + 90 * 0.1 + 10 * 2.0) / 1e6
    assert usage == {**usage, "prompt_tokens": 100, "completion_tokens": 10,
                     "cache_read_tokens": 90, "cache_write_tokens": 0}  # fmt: skip
    assert usage["cost_usd"] == pytest.approx(true_cost)
    assert "tokens 100+10 (90 cached)" in out.stderr

    call = cli_json(["show", "latest", "--json"], tmp_path)["turns"][0]["call"]  # type: ignore[index]
    assert (call["cache_read_tokens"], call["cache_write_tokens"]) == (90, 0)
    assert call["attempts"][0]["cache_read_tokens"] == 90
    assert call["cost_usd"] == pytest.approx(true_cost)
    assert "100+10 tok (90 cached)" in run_cli(["show", "latest"], tmp_path).stdout

    stats = cli_json(["stats", "--json"], tmp_path)
    [w] = stats["backends"]  # type: ignore[index]
    assert (w["cache_read_tokens"], w["cache_hit_share"]) == (90, 0.9)
    table = run_cli(["stats"], tmp_path).stdout
    assert "cached" in table and "90.0 %" in table
