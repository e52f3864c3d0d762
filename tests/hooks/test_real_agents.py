"""The real Codex CLI and Gemini CLI, against a fake model on 127.0.0.1, with ``hooks install``.

Runs each pinned release through the ``shared/agents`` harness (``probe.py``), which records
what the model received. Each test is skipped only when its agent is not installed
(``shared/agents/install.sh`` installs them); one run takes a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks._wrap import render
from tests.helpers import WAIT, cli_env, run_cli
from tests.hooks.test_real_claude import HARNESS, PREFIX, failing_build

FAILING_LINES = (
    "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoFailureException",
    "Error: Maven compile with spoon unsuccessful!",
    "Finished: FAILURE",
    "============================ 44 failed in 0.12s ============================",
    "make: *** [Makefile:2: build] Error 2",
    "exit status 2; all of it: tanglebrain raw ",
)


def _installed(agent: str) -> Any:
    path = PREFIX / "node_modules" / ".bin" / agent
    return pytest.mark.skipif(
        not (path.exists() and (HARNESS / "probe.py").exists()),
        reason=f"{agent} is not installed at {path} (run {HARNESS}/install.sh)",
    )


def _install(tmp_path: Path, agent: str) -> Path:
    home = tmp_path / "home"
    env = cli_env(tmp_path, HOME=str(home))
    out = run_cli(["hooks", "install", "--agent", agent], tmp_path, env=env)
    assert out.code == 0, out.stderr
    name = {"codex": ".codex/hooks.json", "gemini": ".gemini/settings.json"}[agent]
    return home / name


def _probe(agent: str, work: Path, settings: Path, *commands: str) -> dict[str, Any]:
    argv = [sys.executable, str(HARNESS / "probe.py"), "--agent", agent,
            "--settings", str(settings), "--prefix", str(PREFIX),
            "--file", str(work / "build.log"), "--file", str(work / "Makefile")]  # fmt: skip
    for command in commands:
        argv += ["--command", command]
    probe = subprocess.run(argv, capture_output=True, timeout=WAIT, check=False)
    report: dict[str, Any] = json.loads(probe.stdout)
    assert report.get("error") is None, report
    return report


@_installed("codex")
def test_codex_failing_build_log_reaches_the_model_as_a_digest(tmp_path: Path) -> None:
    work, raw = failing_build(tmp_path)
    report = _probe("codex", work, _install(tmp_path, "codex"), "make build")
    assert report["tool_command_run"][0].endswith("wrap --agent codex -- 'make build'")
    assert report["tool_command_exit_code"] == [2]
    (seen,) = report["tool_result_seen_by_model"]
    assert "Process exited with code 2" in seen  # the command's own status
    digest = render(raw, 2, 6000, 8000)[0].decode()
    assert seen.endswith("Output:\n" + digest)  # whole: nothing cut by Codex (5,000 + 5,000)
    for line in FAILING_LINES:
        assert line in seen


@_installed("gemini")
def test_gemini_failing_build_log_reaches_the_model_as_a_digest(tmp_path: Path) -> None:
    work, raw = failing_build(tmp_path)
    settings = json.loads(_install(tmp_path, "gemini").read_text())
    # finding G02-style rewrite, and a deny rule the wrapper must not escape
    settings["tools"] = {"exclude": ["run_shell_command(touch)"]}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    report = _probe("gemini", work, path, "make build", "make build && touch x")
    first, second = report["tool_command_run"]
    assert first.endswith("wrap --agent gemini -- 'make build'")
    # a command a deny rule touches is left to Gemini's own checks, never wrapped
    assert second == "make build && touch x"
    assert report["tool_command_exit_code"][0] == 2
    seen = report["tool_result_seen_by_model"][0]
    assert "Exit Code: 2" in seen  # the command's own status
    digest = render(raw, 2, 6000, 8000)[0].decode()
    assert digest.rstrip("\n") in seen  # whole: under Gemini's own 40,000-character cap
    assert "Tool input parameters were modified by a hook" in seen
    for line in FAILING_LINES:
        assert line in seen
