"""The command line's edge under a hostile world: closed or full streams, odd values, bad files.

Every case ends in one ``tanglebrain: error:`` line and the documented exit code, never a
traceback. Closed and full standard streams need a process of their own (they are the
process's file descriptors); the rest runs the real entry point in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tanglebrain.sim import Simulator
from tests.helpers import GUARD, WAIT, backend_toml, cli_env, run_cli, write_roster


def roster(tmp_path: Path, base_url: str, settings: str = "") -> Path:
    entry = backend_toml("w", "worker", base_url, good_at=("general",))
    return write_roster(tmp_path / "roster.toml", entry, settings=settings)


def shell(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``command`` in sh, where ``$TB`` is the CLI (the redirections are the point)."""
    env = {**cli_env(tmp_path), "TB": f"{sys.executable} {GUARD}"}
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=WAIT)  # fmt: skip


def one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("tanglebrain: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "command",
    ['$TB --roster roster.toml hi >/dev/full', "$TB runs >/dev/full",
     "echo hi | $TB compress >/dev/full"],
)  # fmt: skip
def test_a_full_stdout_is_one_line_and_exit_1(
    tmp_path: Path, sim_thread: Simulator, command: str
) -> None:
    roster(tmp_path, sim_thread.base_url)
    done = shell(command, tmp_path)
    assert done.returncode == 1
    assert "cannot write: No space left on device" in one_error(done.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("json_out", ["", "--json"])
def test_a_run_whose_answer_found_no_room_is_still_recorded(
    tmp_path: Path, sim_thread: Simulator, json_out: str
) -> None:
    roster(tmp_path, sim_thread.base_url)
    done = shell(f"$TB --roster roster.toml {json_out} hi >/dev/full", tmp_path)
    assert done.returncode == 1 and "No space left on device" in one_error(done.stderr)
    shown = json.loads(run_cli(["show", "latest", "--json"], tmp_path).stdout)
    assert shown["status"] == "error" and "No space left on device" in shown["error"]
    [turn] = shown["turns"]
    # Streamed, the call is stopped by the failed write; under --json it was whole first.
    stopped = "ok" if json_out else "cancelled"
    assert [a["status"] for a in turn["call"]["attempts"]] == [stopped]


def test_a_closed_stdout_is_refused(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread.base_url)
    done = shell("$TB --roster roster.toml hi >&-", tmp_path)
    assert done.returncode == 2
    assert "stdout is closed" in one_error(done.stderr)
    assert not (tmp_path / "state" / "runs.db").exists()  # nothing ran, nothing spent


@pytest.mark.parametrize(
    ("command", "stdout"),
    [("$TB --roster roster.toml hi <&-", "simulated worker result for: hi"),
     ("$TB compress <&-", ""),
     ("$TB mcp <&-", "")],
)  # fmt: skip
def test_a_closed_stdin_reads_as_empty(
    tmp_path: Path, sim_thread: Simulator, command: str, stdout: str
) -> None:
    roster(tmp_path, sim_thread.base_url)
    done = shell(command, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip() == stdout


def test_a_closed_stderr_still_answers(tmp_path: Path, sim_thread: Simulator) -> None:
    roster(tmp_path, sim_thread.base_url)
    done = shell("$TB --roster roster.toml hi 2>&-", tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "simulated worker result for: hi"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sim", "--port", "99999"], "--port must be between 0 and 65535"),
        (["sim", "--port", "-1"], "--port must be between 0 and 65535"),
        (["sim", "--host", "999.1.1.1", "--port", "0"], "(check --host"),
        (["serve", "--host", "999.1.1.1", "--port", "0", "--token", "t"], "(check --host"),
    ],
)  # fmt: skip
def test_addresses_that_cannot_be_bound_say_which_part_is_wrong(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = run_cli(args, tmp_path)
    assert out.code == 2 and fragment in one_error(out.stderr)


@pytest.mark.parametrize(
    "args",
    [["runs", "--limit", "9223372036854775808"], ["stats", "--since", "740000d"],
     ["stats", "--since", "99999999999999d"], ["stats", "--since", "1" + "0" * 400 + "d"]],
)  # fmt: skip
def test_limits_beyond_any_ledger_mean_all_of_it(
    tmp_path: Path, sim_thread: Simulator, args: list[str]
) -> None:
    path = roster(tmp_path, sim_thread.base_url)
    assert run_cli(["--roster", str(path), "hi"], tmp_path).code == 0
    out = run_cli(args, tmp_path)
    assert out.code == 0 and "Traceback" not in out.stderr, out.stderr
    assert "1 run(s)" in out.stdout or "hi" in out.stdout


def test_a_system_prompt_file_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    (tmp_path / "prompt.md").write_bytes(b"You orchestrate.\n\xff\xfe\x00")
    orch = backend_toml("o", "orchestrator", sim_thread.base_url, good_at=("planning",),
                        orchestrator=True)  # fmt: skip
    entry = backend_toml("w", "worker", sim_thread.base_url)
    path = write_roster(tmp_path / "roster.toml", orch, entry,
                        settings='system_prompt_file = "prompt.md"\n')  # fmt: skip
    out = run_cli(["--roster", str(path), "plan it"], tmp_path)
    assert out.code == 2
    line = one_error(out.stderr)
    assert "not UTF-8 text (byte 0xff at offset 17)" in line and "save" in line


def test_a_damaged_ledger_names_the_fix_and_never_costs_an_answer(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    path = roster(tmp_path, sim_thread.base_url)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "runs.db").write_bytes(os.urandom(4096))
    for args in (["runs"], ["show", "latest"], ["stats"]):
        out = run_cli(args, tmp_path)
        assert out.code == 2
        assert "move it aside to start a new ledger: mv " in one_error(out.stderr)
    out = run_cli(["--roster", str(path), "hi"], tmp_path)
    assert out.code == 0 and out.stdout.strip() == "simulated worker result for: hi"
    assert "not recorded" in out.stderr and "move it aside" in out.stderr


@pytest.mark.parametrize("columns", ["0", "1", "5"])
def test_a_tiny_columns_still_shows_whole_run_ids(
    tmp_path: Path, sim_thread: Simulator, columns: str
) -> None:
    path = roster(tmp_path, sim_thread.base_url)
    run_id = run_cli(["--roster", str(path), "--json", "hi"], tmp_path).stdout
    env = {**cli_env(tmp_path), "COLUMNS": columns}
    out = run_cli(["runs"], tmp_path, env=env)
    assert out.code == 0
    assert json.loads(run_id)["run_id"] in out.stdout


@pytest.mark.parametrize("home", ["state", "state/sub"])
def test_a_state_directory_that_is_a_file_is_named(
    tmp_path: Path, sim_thread: Simulator, home: str
) -> None:
    path = roster(tmp_path, sim_thread.base_url)
    (tmp_path / "state").write_text("not a directory")
    env = {**cli_env(tmp_path), "TANGLEBRAIN_HOME": str(tmp_path / home)}
    out = run_cli(["--roster", str(path), "hi"], tmp_path, env=env)
    assert out.code == 0 and out.stdout.strip() == "simulated worker result for: hi"
    assert f"{tmp_path / 'state'} is a file, not a directory (point TANGLEBRAIN_HOME" in out.stderr
