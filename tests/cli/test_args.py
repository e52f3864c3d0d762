"""The command line's shape: which words are commands, which are prompts, help, errors, widths.

The backends are the simulator; every case checks what reached it, so a command word that
is sent to a model as a paid prompt shows up as a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tanglebrain.cli import COMMANDS, RUN_VALUE_OPTIONS, with_default_command
from tanglebrain.sim import Simulator
from tests.helpers import backend_toml, cli_env, run_cli, write_roster


@pytest.fixture(scope="module")
def sim_module() -> Iterator[Simulator]:
    s = Simulator().start_in_thread()
    try:
        yield s
    finally:
        s.stop()


def roster_file(path: Path, base_url: str) -> Path:
    return write_roster(
        path,
        backend_toml("boss", "echo", base_url, good_at=("planning", "runs"), orchestrator=True),
        backend_toml("worker", "worker", base_url),
        settings="max_attempts = 1\n",
    )


def env_for(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    roster = roster_file(tmp_path / "roster.toml", base_url)
    return cli_env(tmp_path, TANGLEBRAIN_ROSTER=str(roster), **extra)


# --- command words are never prompts ------------------------------------------------------

REWRITES = [
    (["hello"], ["run", "hello"]),
    (["--json", "hello"], ["run", "--json", "hello"]),
    (["--json", "stats"], ["stats", "--json"]),
    (["--no-log", "runs"], ["runs", "--no-log"]),
    (["--debug", "-q", "--json", "stats", "--since", "1d"],
     ["--debug", "stats", "-q", "--json", "--since", "1d"]),
    (["--roster", "r.toml", "--json", "runs"], ["--roster", "r.toml", "runs", "--json"]),
    (["-t", "runs", "count the runs"], ["run", "-t", "runs", "count the runs"]),  # a value
    (["--task=runs", "stats"], ["stats", "--task=runs"]),
    (["-qt", "runs", "x"], ["run", "-qt", "runs", "x"]),  # -t ends the cluster: next is its value
    (["-tgrunt", "runs"], ["runs", "-tgrunt"]),  # the value is attached
    (["--json", "--", "stats"], ["run", "--json", "--", "stats"]),  # after --: the prompt
    (["--", "-5 degrees"], ["run", "--", "-5 degrees"]),
    (["run", "--", "-5 degrees"], ["run", "--", "-5 degrees"]),
    (["stats", "--json"], ["stats", "--json"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), REWRITES)
def test_default_command_insertion(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv) == expected


def test_value_options_match_the_run_command() -> None:
    import typer

    from tanglebrain.cli.app import make_app

    app = make_app()
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    taking = {o for p in run.params if not getattr(p, "is_flag", True) for o in p.opts}
    assert taking - {p.name for p in run.params if p.param_type_name == "argument"} == set(
        RUN_VALUE_OPTIONS
    )
    assert set(typer.main.get_command(app).commands) == COMMANDS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "code", "check"),
    [
        (["--json", "stats"], 0, '"specialist"'),
        (["--json", "runs"], 0, "[]"),
        (["--no-log", "runs"], 2, "No such option: --no-log (see `tanglebrain runs --help`)"),
        (["-q", "stats"], 2, "No such option: -q"),
        (["--no-delegate", "backends"], 2, "No such option: --no-delegate"),
    ],
)  # fmt: skip
def test_an_option_before_a_command_word_never_spends(
    tmp_path: Path, sim_module: Simulator, args: list[str], code: int, check: str
) -> None:
    before = len(sim_module.requests)
    out = run_cli(args, tmp_path, env=env_for(tmp_path, sim_module.base_url))
    assert out.code == code, out.stderr
    assert check in (out.stdout if code == 0 else out.stderr)
    assert "Traceback" not in out.stderr
    assert len(sim_module.requests) == before  # nothing was sent to a model


@pytest.mark.parametrize(
    ("args", "prompt"),
    [
        (["run", "--no-delegate", "--", "-5 degrees"], "-5 degrees"),
        (["--no-delegate", "--", "-5 degrees"], "-5 degrees"),
        (["--roster", "roster.toml", "run", "--no-delegate", "--", "-5 degrees"], "-5 degrees"),
        (["--no-delegate", "--no-log", "--", "stats"], "stats"),
        (["--no-delegate", "-t", "runs", "count the runs"], "count the runs"),
    ],
)
def test_prompts_that_look_like_options_or_commands(
    tmp_path: Path, sim_module: Simulator, args: list[str], prompt: str
) -> None:
    before = len(sim_module.requests)
    env = env_for(tmp_path, sim_module.base_url)
    out = run_cli(args, tmp_path, env=env)
    assert out.code == 0, out.stderr
    sent = sim_module.requests[before:]
    assert sent and sent[-1].messages[-1]["content"] == prompt


# --- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--help"], "--debug"), (["run", "--help"], "--json"), (["runs", "--help"], "--json"),
     (["backends", "add", "--help"], "--disabled"), (["run", "--help"], "--help")],
)  # fmt: skip
def test_help_shows_flags_without_a_value(tmp_path: Path, args: list[str], flag: str) -> None:
    out = run_cli(args, tmp_path, env=cli_env(tmp_path, COLUMNS="80"))
    assert out.code == 0, out.stderr
    assert "<bool>" not in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if f" {flag} " in ln)
    assert "<" not in line  # no value placeholder next to a flag
    assert all(len(ln) <= 80 for ln in out.stdout.splitlines())
    assert not re.search(r"\w…", out.stdout)  # no word cut off at 80 columns


# --- errors -------------------------------------------------------------------------------


def test_missing_key_names_the_file_and_line(tmp_path: Path, sim_module: Simulator) -> None:
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("boss", "echo", sim_module.base_url, good_at=("planning",),
                     orchestrator=True, extra='api_key_env = "TB_TEST_UNSET_KEY"'),
    )  # fmt: skip
    line = roster.read_text().splitlines().index('api_key_env = "TB_TEST_UNSET_KEY"') + 1
    before = len(sim_module.requests)
    for args in (["--roster", str(roster), "hello"], ["run", "--roster", str(roster), "hello"]):
        out = run_cli(args, tmp_path)
        assert out.code == 2
        assert out.stderr == (
            f"tanglebrain: error: {roster}:{line}: backend 'boss', field 'api_key_env': "
            "environment variable TB_TEST_UNSET_KEY is not set (export TB_TEST_UNSET_KEY=... "
            "or run `tanglebrain backends disable boss`)\n"
        )
    assert len(sim_module.requests) == before


# --- listings in 80 columns ---------------------------------------------------------------


def test_runs_and_backends_fit_80_columns(tmp_path: Path, sim_module: Simulator) -> None:
    url = sim_module.base_url
    roster = write_roster(
        tmp_path / "roster.toml",
        backend_toml("orchestrator-primary", "worker", url, good_at=("planning",),
                     orchestrator=True),
        backend_toml("broken-orchestrator", "fail:status=500", url, good_at=("planning",),
                     orchestrator=True, cost=2),
        backend_toml("anthropic-specialist", "worker-with-a-rather-long-model-name", url,
                     good_at=("code", "review", "summarize", "translate"),
                     extra='api_key_env = "TB_TEST_UNSET_KEY"'),
        settings="max_attempts = 1\n",
    )  # fmt: skip
    env = cli_env(tmp_path, TANGLEBRAIN_ROSTER=str(roster))
    long_prompt = "a prompt long enough to be cut in a narrow terminal, and then some"
    ok = run_cli(["-b", "orchestrator-primary", "--no-delegate", long_prompt], tmp_path, env=env)
    assert ok.code == 0
    assert run_cli(["-b", "broken-orchestrator", "this one fails"], tmp_path, env=env).code == 1
    runs = json.loads(run_cli(["runs", "--json"], tmp_path, env=env).stdout)
    assert [r["status"] for r in runs] == ["error", "ok"]

    narrow = dict(env, COLUMNS="80")
    table = run_cli(["runs"], tmp_path, env=narrow).stdout.splitlines()
    assert all(len(line) <= 80 for line in table), table
    assert table[0].split()[:1] == ["id"] and "status" in table[0] and "cost" in table[0]
    assert "prompt" in table[0]
    for run, line in zip(runs, table[1:], strict=True):
        assert line.startswith(run["id"] + " ") and f" {run['status']} " in line
        assert "$" in line or "unknown" in line
    assert "a prompt long" in table[2]

    listing = run_cli(["backends"], tmp_path, env=narrow).stdout.splitlines()
    rows = listing[2:]
    assert all(len(line) <= 80 for line in listing[1:]), listing
    assert [r.split()[0] for r in rows] == ["orchestrator-primary", "broken-orchestrator",
                                            "anthropic-specialist"]  # fmt: skip
    assert "missing" in rows[2] and "key" in listing[1] and "enabled" in listing[1]


def test_the_answer_reaches_a_stdout_that_is_not_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # An embedding may point sys.stdout at a StringIO (contextlib.redirect_stdout).
    import io

    from tanglebrain.cli.run import StdoutSink

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    sink = StdoutSink()
    sink.write("an answer")
    sink.finish()
    assert out.getvalue() == "an answer\n"
