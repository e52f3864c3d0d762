"""The real Claude Code, against a fake model on 127.0.0.1, with ``hooks install``'s settings.

Runs the pinned Claude Code release through the ``shared/agents`` harness (``probe.py``),
which records what the model received. Skipped only when the agent is not installed
(``shared/agents/install.sh`` installs it); one run takes a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tanglebrain.hooks._wrap import render
from tests.helpers import ROOT, WAIT, cli_env, run_cli

HARNESS = Path(os.environ.get("AGENTS_HARNESS", ROOT.parent / "shared" / "agents"))
PREFIX = Path(os.environ.get("AGENTS_PREFIX", "/tmp/agents"))
CLAUDE = PREFIX / "node_modules" / ".bin" / "claude"
CORPUS = ROOT / "tests" / "corpus"
LOGS = (
    "cidiff_jenkins_guava_1947_fail.log",
    "pytest_failure_demo.log",
    "jenkins_ninja_gcc_warnings.log",
)

pytestmark = pytest.mark.skipif(
    not (CLAUDE.exists() and (HARNESS / "probe.py").exists()),
    reason=f"Claude Code is not installed at {CLAUDE} (run {HARNESS}/install.sh)",
)


def _settings(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    out = run_cli(
        ["hooks", "install", "--agent", "claude"], tmp_path, env=cli_env(tmp_path, HOME=str(home))
    )
    assert out.code == 0, out.stderr
    data = json.loads((home / ".claude" / "settings.json").read_text())
    data["permissions"] = {"allow": ["Bash(make:*)"], "deny": ["Bash(touch:*)"]}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return path


def failing_build(tmp_path: Path) -> tuple[Path, bytes]:
    """A work folder whose ``make build`` prints a ~300 KB failing log; and that output."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "build.log").write_bytes(b"".join((CORPUS / n).read_bytes() for n in LOGS))
    (work / "Makefile").write_text("build:\n\t@cat build.log; exit 2\n")
    bare = subprocess.run(
        ["make", "build"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    assert bare.returncode == 2 and len(bare.stdout) > 280_000
    return work, bare.stdout


def test_failing_build_log_reaches_the_model_as_a_digest(tmp_path: Path) -> None:
    work, bare_output = failing_build(tmp_path)
    probe = subprocess.run(
        [
            sys.executable, str(HARNESS / "probe.py"), "--agent", "claude",
            "--settings", str(_settings(tmp_path)), "--allowed-tools", "",
            "--file", str(work / "build.log"), "--file", str(work / "Makefile"),
            "--command", "make build", "--command", "make build && touch x",
        ],
        capture_output=True, timeout=WAIT, check=False,
    )  # fmt: skip
    report = json.loads(probe.stdout)
    assert report.get("error") is None, report
    assert len(report["tool_command_run"]) == 1  # the second command never ran
    assert report["tool_command_run"][0].endswith("wrap --agent claude -- 'make build'")
    assert report["tool_command_exit_code"] == [2]
    seen, denied = report["tool_result_seen_by_model"]
    digest = render(bare_output, 2, 6000, 8000)[0].decode()
    assert seen == "Exit code 2\n" + digest.rstrip("\n")  # whole: nothing cut by Claude Code
    for line in (
        "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoFailureException",
        "Error: Maven compile with spoon unsuccessful!",
        "Finished: FAILURE",
        "============================ 44 failed in 0.12s ============================",
        "make: *** [Makefile:2: build] Error 2",
        "exit status 2; all of it: tanglebrain raw ",
    ):
        assert line in seen
    # finding C08: a deny rule on part of a compound command is never escaped by the wrapper
    assert "denied" in denied
