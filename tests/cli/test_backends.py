"""`tanglebrain init` and `tanglebrain backends …` as users see them: real subprocesses."""

from __future__ import annotations

import difflib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tanglebrain.roster import load_file, packaged_path
from tanglebrain.sim import Simulator
from tests.helpers import ROOT, WAIT, backend_toml, cli_env, run_cli, start_cli, write_roster
from tests.roster.test_edit import CURATED

CANARY = "sk-canary-0123456789abcdefXYZ"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def curated(tmp_path: Path) -> Path:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    return path


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(old.split("\n"), new.split("\n")))
    return sorted(d[2:] for d in diff if d[:2] == "- "), sorted(
        d[2:] for d in diff if d[:2] == "+ "
    )


# --- init ---------------------------------------------------------------------------


def test_init_writes_the_starter_and_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "xdg" / "tanglebrain" / "roster.toml"
    out = run_cli(["init"], tmp_path)
    assert out.code == 0, out.stderr
    assert out.stdout == f"{dest}\n"
    assert dest.read_bytes() == packaged_path().read_bytes()
    assert "backends check" in out.stderr
    dest.write_text(CURATED)
    again = run_cli(["init"], tmp_path)
    assert again.code == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "--force" in again.stderr
    assert dest.read_text() == CURATED
    forced = run_cli(["init", "--force"], tmp_path)
    assert forced.code == 0, forced.stderr
    assert dest.read_bytes() == packaged_path().read_bytes()
    assert dest.with_name("roster.toml.bak").read_text() == CURATED


def test_init_to_a_path_says_which_roster_wins(tmp_path: Path) -> None:
    curated(tmp_path)
    out = run_cli(["init", "deep/er/mine.toml"], tmp_path)
    assert out.code == 0, out.stderr
    assert (tmp_path / "deep/er/mine.toml").read_bytes() == packaged_path().read_bytes()
    assert "takes precedence" in out.stderr and "--roster deep/er/mine.toml" in out.stderr


# --- list ---------------------------------------------------------------------------


def test_list_json_key_status_never_prints_a_key(tmp_path: Path) -> None:
    curated(tmp_path)
    env = cli_env(tmp_path, ANTHROPIC_API_KEY=CANARY)
    env.pop("GEMINI_API_KEY", None)  # "missing" even on a developer's machine
    outs = [run_cli(args, tmp_path, env=env) for args in (
        ["backends", "list", "--json"], ["backends", "--json"], ["backends"],
        ["backends", "check", "--offline", "--json"], ["backends", "check", "--offline"],
    )]  # fmt: skip
    for out in outs:
        assert CANARY not in out.stdout + out.stderr
        assert CANARY[3:12] not in out.stdout + out.stderr
    rows = json.loads(outs[0].stdout)
    assert json.loads(outs[1].stdout) == rows
    assert [r["id"] for r in rows] == ["local", "claude", "flash"]
    assert {r["id"]: r["key"] for r in rows} == {
        "local": "not needed", "claude": "set", "flash": "missing"
    }  # fmt: skip
    claude = rows[1]
    assert claude["can_orchestrate"] is True and claude["enabled"] is False
    assert claude["api_key_env"] == "ANTHROPIC_API_KEY" and claude["good_at"] == [
        "reasoning", "review"
    ]  # fmt: skip
    assert claude["context_window"] == 200000 and claude["context_window_source"] == "litellm"
    assert {r["roster_source"] for r in rows} == {"cwd"}
    assert {r["roster_path"] for r in rows} == {str(tmp_path / "roster.toml")}
    table = outs[2].stdout
    assert "roster.toml in the current directory" in table
    assert "missing ($GEMINI_API_KEY)" in table and "not needed" in table


@pytest.mark.parametrize(
    ("where", "source"), [("packaged", "packaged"), ("flag", "flag"), ("env", "env")]
)
def test_list_says_which_roster_and_why(tmp_path: Path, where: str, source: str) -> None:
    other = tmp_path / "other.toml"  # context windows set: no litellm import, a fast test
    other.write_text(CURATED.replace("good_at = ", "context_window = 1000\ngood_at = "))
    args, env = ["backends", "list", "--json"], cli_env(tmp_path)
    if where == "flag":
        args = ["--roster", str(other), *args]
    elif where == "env":
        env["TANGLEBRAIN_ROSTER"] = str(other)
    out = run_cli(args, tmp_path, env=env)
    assert out.code == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["roster_source"] for r in rows} == {source}
    expected = packaged_path() if where == "packaged" else other
    assert {r["roster_path"] for r in rows} == {str(expected)}
    sub = run_cli(["backends", "list", "--roster", str(other), "--json"], tmp_path)
    assert {r["roster_source"] for r in json.loads(sub.stdout)} == {"flag"}


# --- check --------------------------------------------------------------------------


def test_check_verdicts_against_the_simulator(tmp_path: Path, sim_thread: Simulator) -> None:
    url = sim_thread.base_url
    write_roster(
        tmp_path / "roster.toml",
        backend_toml("healthy", "echo", url),
        backend_toml("broken", "fail:status=500", url),
        backend_toml("typo", "ech0", url),
        backend_toml("mute", "worker", url, orchestrator=True),
        backend_toml("boss", "orchestrator", url, orchestrator=True),
        backend_toml("off", "echo", url, extra="enabled = false"),
        # Generous: a cold first call on a loaded machine must not look like a hang. The
        # hang itself is checked apart, with a short timeout, below.
        settings="timeout_s = 60\n",
    )
    out = run_cli(["backends", "check", "--json"], tmp_path)
    assert out.code == 1, out.stderr
    got = {v["id"]: v for v in json.loads(out.stdout)}
    assert set(got) == {"healthy", "broken", "typo", "mute", "boss"}  # enabled only
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    write_roster(stuck / "roster.toml", backend_toml("stuck", "hang", url),
                 settings="timeout_s = 0.5\n")  # fmt: skip
    out = run_cli(["backends", "check", "--json"], stuck)
    assert out.code == 1, out.stderr
    got.update({v["id"]: v for v in json.loads(out.stdout)})
    verdicts = {i: (v["usable"], v["reachable"], v["tools"]) for i, v in got.items()}
    assert verdicts == {
        "healthy": (True, True, "n/a"),
        "broken": (False, False, "not checked"),
        "stuck": (False, False, "not checked"),
        "typo": (False, False, "not checked"),
        "mute": (False, True, "no tool call returned"),
        "boss": (True, True, "works"),
    }
    assert "HTTP 500" in got["broken"]["problems"][0] or "500" in got["broken"]["problems"][0]
    assert "timed out after 0.5s" in got["stuck"]["problems"][0]
    assert "check the model name" in got["typo"]["problems"][0]
    assert "can_orchestrate false" in got["mute"]["problems"][0]
    assert got["healthy"]["latency_ms"] > 0
    assert got["healthy"]["price_per_mtok"] == {"input": 1.0, "output": 2.0}
    assert got["healthy"]["context_window"] is None
    assert any("context window unknown" in w for w in got["healthy"]["warnings"])
    with_tools = [r for r in sim_thread.requests if r.tools]
    assert sorted(r.model for r in with_tools) == ["orchestrator", "worker"]
    assert {r.tools[0]["function"]["name"] for r in with_tools if r.tools} == {"delegate"}


def test_check_gives_up_on_a_host_that_never_connects_at_connect_timeout_s(
    tmp_path: Path, blackhole: str
) -> None:
    gone = backend_toml("gone", "echo", blackhole)
    write_roster(tmp_path / "roster.toml", gone, settings="connect_timeout_s = 0.3\n")
    out = run_cli(["backends", "check", "--json"], tmp_path)
    assert out.code == 1, out.stderr
    [verdict] = json.loads(out.stdout)
    assert not verdict["reachable"]
    assert "connection failed: no connection within 0.3s" in verdict["problems"][0]


def test_check_latency_is_measured_on_a_warm_client(tmp_path: Path, sim_thread: Simulator) -> None:
    # The latency reported is a second request's, on the client the first one started
    # (litellm's first call, the connection); the first one's time is reported apart.
    # Each round of requests starts when the previous one has ended, the native
    # transport's first: no backend's start-up runs while another's latency is measured.
    from tanglebrain.health import PING, TOOL_PING, run_checks
    from tanglebrain.roster import parse
    from tanglebrain.trace import Call

    url = sim_thread.base_url
    roster = parse(
        backend_toml("native", "echo:id=native", url)
        + backend_toml("via-litellm", "echo:id=litellm", url, extra='transport = "litellm"')
        + backend_toml("boss", "orchestrator", url, orchestrator=True)
    )
    sim_thread.reset()
    calls: list[Call] = []
    verdicts = {v.id: v for v in run_checks(roster, roster.backends, offline=False, calls=calls)}
    assert all(v.usable for v in verdicts.values()), verdicts
    rounds = [sorted(c.backend for c in calls[i:j]) for i, j in ((0, 2), (2, 4), (4, 5), (5, 6))]
    assert rounds == [["boss", "native"], ["boss", "native"], ["via-litellm"], ["via-litellm"]]
    assert [(c.backend, c.role) for c in calls[6:]] == [("boss", "orchestrator")]  # tools
    first = {c.backend: c for c in calls[0:2] + calls[4:5]}
    timed = {c.backend: c for c in calls[2:4] + calls[5:6]}
    for bid, v in verdicts.items():
        assert v.first_call_ms == round(first[bid].attempts[-1].latency_ms, 1)
        assert v.latency_ms == round(timed[bid].attempts[-1].latency_ms, 1)
        assert first[bid].attempts[-1].transport == timed[bid].attempts[-1].transport
    assert verdicts["via-litellm"].transport == "litellm"
    sent = [(r.model, r.messages) for r in sim_thread.requests]
    for spec in ("echo:id=native", "echo:id=litellm", "orchestrator"):
        assert [m for model, m in sent if model == spec][:2] == [PING, PING]
    assert [m for model, m in sent if model == "orchestrator"][2:] == [TOOL_PING]
    assert (verdicts["native"].tools, verdicts["boss"].tools) == ("n/a", "works")


# What Qwen2.5-Coder-1.5B answered the tool probe through llama.cpp's stock chat template.
TEXT_CALL = '```json\n{\n  "name": "delegate",\n  "arguments": {\n    "prompt": "ping"\n  }\n}\n```'


def test_check_says_when_tool_calls_come_back_as_text(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    from tanglebrain.sim import SimReply

    spec = "script:id=textcalls"
    sim_thread.script(spec, [SimReply(text="ok"), SimReply(text="ok"), SimReply(text=TEXT_CALL)])
    write_roster(
        tmp_path / "roster.toml",
        backend_toml("texty", spec, sim_thread.base_url, orchestrator=True),
        settings="timeout_s = 60\n",
    )
    out = run_cli(["backends", "check", "--json"], tmp_path)
    assert out.code == 0, out.stdout + out.stderr
    [verdict] = json.loads(out.stdout)
    assert (verdict["usable"], verdict["tools"]) == (True, "as text")
    [warning] = [w for w in verdict["warnings"] if "tool calls come back as text" in w]
    assert "tanglebrain recognizes and runs them" in warning
    assert "chat template that parses its tool calls" in warning


def test_check_exit_zero_when_all_usable_and_named_ids(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    url = sim_thread.base_url
    write_roster(
        tmp_path / "roster.toml",
        backend_toml("good", "echo", url, extra="context_window = 8000"),
        backend_toml("bad", "fail:status=500", url),
        backend_toml("spare", "echo", url, extra="enabled = false"),
    )
    out = run_cli(["backends", "check", "good", "spare"], tmp_path)
    assert out.code == 0, out.stdout + out.stderr
    assert "2 of 2 checked backend(s) usable" in out.stderr
    assert "spare: warning: disabled" in out.stdout and "8,000" in out.stdout
    unknown = run_cli(["backends", "check", "good", "nope"], tmp_path)
    assert unknown.code == 2 and "known ids: good, bad, spare" in unknown.stderr


def test_check_says_how_to_fix(tmp_path: Path, dead_port: int) -> None:
    write_roster(
        tmp_path / "roster.toml",
        '[[backend]]\nid = "local"\nmodel = "ollama_chat/llama3.2"\n'
        f'api_base = "http://127.0.0.1:{dead_port}"\ngood_at = ["grunt"]\ncost = 0\n',
        '[[backend]]\nid = "keyed"\nmodel = "openai/gpt-4.1"\napi_key_env = "TB_TEST_KEY"\n'
        'good_at = ["review"]\ncost = 20\n',
    )
    out = run_cli(["backends", "check"], tmp_path)
    assert out.code == 1
    assert "start Ollama: `ollama serve`" in out.stdout
    assert "export TB_TEST_KEY=" in out.stdout
    assert "0 of 2 checked backend(s) usable" in out.stderr


def test_check_offline_needs_no_network(tmp_path: Path, dead_port: int) -> None:
    dead = f"http://127.0.0.1:{dead_port}/v1"
    write_roster(
        tmp_path / "roster.toml",
        backend_toml("a", "echo", dead),
        backend_toml("b", "orchestrator", dead, orchestrator=True),
        '[[backend]]\nid = "remote"\nmodel = "anthropic/claude-sonnet-4-5"\n'
        'api_key_env = "TB_TEST_KEY"\ngood_at = ["review"]\ncost = 30\n',
    )
    env = cli_env(tmp_path, TB_TEST_KEY="dummy-value")
    out = run_cli(["backends", "check", "--offline", "--json"], tmp_path, env=env)
    assert out.code == 0, out.stdout + out.stderr
    rows = json.loads(out.stdout)
    assert [(r["id"], r["usable"], r["reachable"]) for r in rows] == [
        ("a", True, None), ("b", True, None), ("remote", True, None)
    ]  # fmt: skip
    missing = run_cli(["backends", "check", "--offline"], tmp_path)
    assert missing.code == 1 and "export TB_TEST_KEY=" in missing.stdout


def test_check_invalid_roster_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text(CURATED.replace("can_orchestrate", "can_orchestate"))
    out = run_cli(["backends", "check", "--offline"], tmp_path)
    assert out.code == 2 and "did you mean 'can_orchestrate'" in out.stderr


# --- edits --------------------------------------------------------------------------

EDITS: list[tuple[list[str], list[str], list[str]]] = [
    (["disable", "local"], [], ["enabled = false"]),
    (["enable", "claude"], ["enabled = false # opt-in"], ["enabled = true # opt-in"]),
    (["set", "flash", "cost", "2.5"], ["cost = 3"], ["cost = 2.5"]),
    (["set", "flash", "good_at", "summarize,extract"], ['good_at = ["summarize"]'],
     ['good_at = ["summarize", "extract"]']),
    (["set", "claude", "price", "3,15"], [], ["price = { input = 3.0, output = 15.0 }"]),
    (["set", "local", "max_concurrency", "2"], [], ["max_concurrency = 2"]),
    (["set", "flash", "price", ""], ["price = { input = 0.3, output = 2.5 }"], []),
    (["set", "flash", "price.cached_input", "0.03"], ["price = { input = 0.3, output = 2.5 }"],
     ["price = { input = 0.3, output = 2.5, cached_input = 0.03 }"]),
    (["set", "claude", "price", "3,15,0.3,3.75"], [],
     ["price = { input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }"]),
    (["remove", "flash"], ["", "# Cheap reader.", "[[backend]]", 'id = "flash"',
     'model = "gemini/gemini-2.5-flash"', 'api_key_env = "GEMINI_API_KEY"',
     'good_at = ["summarize"]', "cost = 3", "price = { input = 0.3, output = 2.5 }"], []),
    (["add", "coder", "--model", "deepseek/deepseek-chat", "--good-at", "code,boilerplate",
      "--cost", "2", "--api-key-env", "DEEPSEEK_API_KEY", "--max-concurrency", "8",
      "--disabled"], [],
     ["", "[[backend]]", 'id = "coder"', 'model = "deepseek/deepseek-chat"',
      'api_key_env = "DEEPSEEK_API_KEY"', 'good_at = ["code", "boilerplate"]', "cost = 2",
      "enabled = false", "max_concurrency = 8"]),
    (["add", "box", "--model", "openai/qwen", "--api-base", "http://127.0.0.1:8080/v1",
      "--good-at", "grunt", "--cost", "0", "--orchestrator"], [],
     ["", "[[backend]]", 'id = "box"', 'model = "openai/qwen"',
      'api_base = "http://127.0.0.1:8080/v1"', 'good_at = ["grunt"]', "cost = 0",
      "can_orchestrate = true"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "removed", "added"), EDITS, ids=[" ".join(e[0][:2]) for e in EDITS]
)
def test_edit_commands_change_exactly_the_intended_lines(
    tmp_path: Path, args: list[str], removed: list[str], added: list[str]
) -> None:
    path = curated(tmp_path)
    out = run_cli(["backends", *args], tmp_path)
    assert out.code == 0, out.stderr
    assert out.stdout == f"{path}\n"
    assert changed_lines(CURATED, path.read_text()) == (sorted(removed), sorted(added))
    assert (tmp_path / "roster.toml.bak").read_text() == CURATED
    load_file(path)


def test_no_change_is_reported_and_not_written(tmp_path: Path) -> None:
    path = curated(tmp_path)
    out = run_cli(["backends", "enable", "local"], tmp_path)
    assert out.code == 0 and "already enabled" in out.stderr
    assert path.read_text() == CURATED and not (tmp_path / "roster.toml.bak").exists()


REFUSALS: list[tuple[list[str], str]] = [
    (["remove", "nope"], "known ids: local, claude, flash"),
    (["enable", "nope"], "known ids: local, claude, flash"),
    (["disable", "nope"], "known ids: local, claude, flash"),
    (["set", "nope", "cost", "1"], "known ids: local, claude, flash"),
    (["set", "local", "colour", "red"], "valid fields: id, model"),
    (["set", "local", "cost", "cheap"], "give a number"),
    (["set", "local", "cost", "-1"], "the file was not changed"),
    (["set", "local", "cost", "--", "-1"], "the file was not changed"),
    (["set", "local", "api_base", "sk-abcdefghijklmnopqrst"], "literal secrets are refused"),
    (["set", "claude", "price.cache_write", "3.75"], "set its input and output first"),
    (["set", "flash", "price.cached_input", "cheap"], "give a number >= 0"),
    (["set", "flash", "price.cached_input", "--", "-1"], "the file was not changed"),
    (["add", "claude", "--model", "m", "--good-at", "a", "--cost", "1"], "already exists"),
    (["add", "Bad Id", "--model", "m", "--good-at", "a", "--cost", "1"], "field 'id'"),
    (["add", "x", "--model", "m"], "needs --good-at and --cost"),
    (["add", "x", "--model", "m", "--good-at", "a", "--cost", "1", "--api-key-env",
      "sk-abcdefghijklmnopqrst"], "literal secrets are refused"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(r[0][:3]) for r in REFUSALS])
def test_refused_edits_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    path = curated(tmp_path)
    out = run_cli(["backends", *args], tmp_path)
    assert out.code == 2, out.stderr
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert path.read_text() == CURATED and not (tmp_path / "roster.toml.bak").exists()


def test_the_packaged_roster_is_never_edited(tmp_path: Path) -> None:
    before = packaged_path().read_bytes()
    out = run_cli(["backends", "disable", "local"], tmp_path)  # no roster anywhere: packaged
    assert out.code == 2 and "tanglebrain init" in out.stderr
    in_repo = run_cli(["backends", "disable", "local"], ROOT)  # ./roster.toml is the packaged one
    assert in_repo.code == 2 and "tanglebrain init" in in_repo.stderr
    assert packaged_path().read_bytes() == before


def test_edits_follow_roster_flag_env_and_group_option(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(CURATED)
    env = cli_env(tmp_path, TANGLEBRAIN_ROSTER=str(path))
    assert run_cli(["backends", "set", "flash", "cost", "4"], tmp_path, env=env).code == 0
    assert run_cli(["--roster", str(path), "backends", "set", "flash", "cost", "5"],
                   tmp_path).code == 0  # fmt: skip
    assert run_cli(["backends", "--roster", str(path), "set", "flash", "cost", "6"],
                   tmp_path).code == 0  # fmt: skip
    assert run_cli(["backends", "set", "--roster", str(path), "flash", "cost", "7"],
                   tmp_path).code == 0  # fmt: skip
    assert (
        "cost = 7\n" in path.read_text()
        and "cost = 6\n" in (tmp_path / "elsewhere.toml.bak").read_text()
    )


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    path = curated(tmp_path)
    ids = [f"worker{i}" for i in range(6)]
    procs = [
        start_cli(["backends", "add", i, "--model", f"ollama_chat/{i}", "--good-at", "grunt",
                   "--cost", "1"], tmp_path)
        for i in ids
    ]  # fmt: skip
    results = [(p.wait(timeout=WAIT), p.stderr.read() if p.stderr else b"") for p in procs]
    for proc in procs:
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in results] == [0] * 6, results
    text = path.read_text()
    assert sorted(b.id for b in load_file(path).backends) == sorted(
        ["local", "claude", "flash", *ids]
    )
    removed, _added = changed_lines(CURATED, text)
    assert removed == []  # every original line survived


# --- completion and start-up ---------------------------------------------------------


def complete(tmp_path: Path, words: str) -> list[str]:
    env = cli_env(tmp_path, _TANGLEBRAIN_COMPLETE="complete_bash", COMP_WORDS=words,
                  COMP_CWORD=str(len(words.split(" ")) - 1))  # fmt: skip
    out = run_cli([], tmp_path, env=env)
    assert out.code == 0 and "Traceback" not in out.stderr, out.stderr
    return out.stdout.split()


def test_completion_of_ids_and_tags(tmp_path: Path) -> None:
    curated(tmp_path)
    assert complete(tmp_path, "tanglebrain backends enable ") == ["local", "claude", "flash"]
    assert complete(tmp_path, "tanglebrain backends set cl") == ["claude"]
    assert complete(tmp_path, "tanglebrain backends check local f") == ["flash"]
    assert complete(tmp_path, "tanglebrain backends add x --good-at re") == [
        "reasoning", "review"
    ]  # fmt: skip
    assert complete(tmp_path, "tanglebrain backends add x --good-at grunt,c") == ["grunt,classify"]
    (tmp_path / "roster.toml").write_text("this is [not toml")
    assert complete(tmp_path, "tanglebrain backends enable ") == []


def test_help_and_listing_do_not_import_litellm(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom tanglebrain.cli.app import invoke\n"
        "for argv in (['--help'], ['backends', '--help'], ['backends', 'check', '--help'], "
        "['init', '--help'], ['backends', 'list', '--json']):\n"
        "    assert invoke(argv, debug=False) == 0\n"
        "assert 'litellm' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=cli_env(tmp_path), timeout=WAIT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "add" in proc.stdout and "--offline" in proc.stdout
