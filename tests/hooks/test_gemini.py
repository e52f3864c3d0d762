"""The Gemini CLI handlers: input and output shapes as Gemini 0.61.0 sends and reads them.

The payloads are the ones the ``shared/agents`` harness recorded from the real Gemini CLI
(``tool_name: "run_shell_command"``, ``tool_input.command``, no permission mode); what
Gemini does with the answer is in its README (findings G02, G05). Gemini checks its policy
against the rewritten command, so the handler rewrites only under ``gemini --yolo``: the
tests run the handler as the child of a process whose command line says so.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks._gemini import load_rules, mode_of
from tanglebrain.hooks._perms import Rules
from tests.helpers import WAIT, cli_env, run_cli

# A stand-in parent named ``gemini``: runs the handler as its child, as Gemini CLI does.
PARENT = """import subprocess, sys
sys.exit(subprocess.run(sys.argv[sys.argv.index("--") + 1 :]).returncode)
"""


def _payload(command: str, cwd: Path, **extra: Any) -> dict[str, Any]:
    # As recorded from Gemini CLI 0.61.0.
    return {
        "session_id": "4365d7dd-a4e0-411f-8c0b-052bd8b0fe9f",
        "transcript_path": "/tmp/chats/session.jsonl",
        "cwd": str(cwd),
        "hook_event_name": "BeforeTool",
        "timestamp": "2026-11-27T22:02:49.938Z",
        "tool_name": "run_shell_command",
        "tool_input": {"command": command, **extra},
    }


def _hook(
    tmp_path: Path, event: str, payload: dict[str, Any], flags: tuple[str, ...] = ("--yolo",)
) -> tuple[int, str]:
    parent = tmp_path / "bin" / "gemini"
    parent.parent.mkdir(exist_ok=True)
    parent.write_text(PARENT)
    env = cli_env(tmp_path, HOME=str(tmp_path / "home"))
    argv = [sys.executable, str(parent), *flags, "--", sys.executable, "-m", "tanglebrain"]
    out = subprocess.run(
        [*argv, "hook", "gemini", event], input=json.dumps(payload).encode(),
        capture_output=True, env=env, cwd=tmp_path, timeout=WAIT, check=False,
    )  # fmt: skip
    return out.returncode, out.stdout.decode()


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["node", "/x/bin/gemini", "--yolo"], "yolo"),
        (["gemini", "-y", "-p", "hi"], "yolo"),
        (["gemini", "--approval-mode=yolo"], "yolo"),
        (["gemini", "--approval-mode", "auto_edit"], "auto_edit"),
        (["gemini", "--yolo=false"], "default"),
        (["gemini", "-p", "--yolo"], "yolo"),
        (["gemini"], "default"),
    ],
)
def test_mode_of(argv: list[str], mode: str) -> None:
    assert mode_of(argv) == mode


def test_rewrite_shape(tmp_path: Path) -> None:
    payload = _payload("make 'all targets'", tmp_path, description="build", dir_path="sub")
    code, out = _hook(tmp_path, "before-tool", payload)
    assert code == 0, out
    answer = json.loads(out)["hookSpecificOutput"]
    assert answer["hookEventName"] == "BeforeTool" and "decision" not in json.loads(out)
    new = answer["tool_input"]
    assert (new["description"], new["dir_path"]) == ("build", "sub")
    words = shlex.split(new["command"])
    assert words[words.index("wrap") :] == ["wrap", "--agent", "gemini", "--", "make 'all targets'"]


def _settings(tmp_path: Path, data: dict[str, Any], where: str = "home") -> None:
    folder = tmp_path / where / ".gemini" if where == "home" else tmp_path / ".gemini"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(data))


def _policy(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "home" / ".gemini" / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.toml").write_text(text)


POLICY = """
[[rule]]
toolName = "run_shell_command"
commandPrefix = ["git push", "rm"]
decision = "deny"
priority = 500

[[rule]]
toolName = "run_shell_command"
commandPrefix = "docker"
decision = "ask_user"

[[rule]]
toolName = "run_shell_command"
commandPrefix = "make"
decision = "allow"

[[rule]]
toolName = "read_file"
decision = "deny"
"""


def test_rules_from_settings_and_policies(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    _settings(tmp_path, {"tools": {"exclude": ["run_shell_command(curl)", "web_fetch"]}})
    _settings(tmp_path, {"tools": {"allowed": ["run_shell_command(npm ci)"]}}, where="project")
    _policy(tmp_path, POLICY)
    assert load_rules(env, tmp_path) == Rules(
        allow=("npm ci:*", "make:*"), ask=("docker:*",), deny=("curl:*", "git push:*", "rm:*")
    )
    _policy(
        tmp_path,
        '[[rule]]\ntoolName = "run_shell_command"\ncommandRegex = "x"\ndecision = "deny"\n',
    )
    assert load_rules(env, tmp_path) == Rules(
        allow=("npm ci:*",), ask=(), deny=("curl:*", "")
    )  # a rule without a prefix touches every command
    _policy(tmp_path, "[[rule]\n")
    assert load_rules(env, tmp_path) is None
    _policy(tmp_path, "")
    _settings(tmp_path, {"tools": {"core": ["run_shell_command(git)", "read_file"]}})
    assert load_rules(env, tmp_path) == Rules(allow=("npm ci:*",), deny=("",))
    (tmp_path / "home" / ".gemini" / "settings.json").write_text('{"a": 1, // comment\n}')
    assert load_rules(env, tmp_path) is None


@pytest.mark.parametrize(
    ("command", "flags", "policy", "rewritten"),
    [
        ("make build", ("--yolo",), "", True),
        ("make build", ("--approval-mode=yolo",), POLICY, True),
        ("make build", (), "", False),  # default mode: the rewrite would need approval
        ("make build", ("--approval-mode", "auto_edit"), "", False),
        ("make build && rm -rf out", ("--yolo",), POLICY, False),  # a deny rule
        ("make build; docker ps", ("--yolo",), POLICY, False),  # an ask rule
        ("make $(echo rm)", ("--yolo",), POLICY, False),  # hides what it runs
        ("cat big.log", ("--yolo",), "", False),
        ("make build", ("--yolo",), "[[rule]\n", False),  # unreadable: unsure
    ],
)
def test_never_widens_permissions(
    tmp_path: Path, command: str, flags: tuple[str, ...], policy: str, rewritten: bool
) -> None:
    if policy:
        _policy(tmp_path, policy)
    code, out = _hook(tmp_path, "before-tool", _payload(command, tmp_path), flags)
    assert code == 0 and bool(out) is rewritten


def test_background_other_tools_and_broken_input(tmp_path: Path) -> None:
    payload = _payload("make", tmp_path, is_background=True)
    assert _hook(tmp_path, "before-tool", payload) == (0, "")
    other = {**_payload("x", tmp_path), "tool_name": "read_file", "tool_input": {"path": "a"}}
    assert _hook(tmp_path, "before-tool", other) == (0, "")
    assert _hook(tmp_path, "before-tool", {}) == (0, "")
    out = run_cli(
        ["hook", "gemini", "before-tool"], tmp_path, stdin="not json", env=cli_env(tmp_path)
    )
    assert (out.code, out.stdout) == (0, "")


ROSTER = """
[[backend]]
id = "local"
model = "ollama_chat/llama3.2"
api_base = "http://localhost:11434"
good_at = ["grunt"]
cost = 0
"""


def test_before_agent_routing_note(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text(ROSTER)
    payload = {
        "session_id": "s", "transcript_path": "", "cwd": str(tmp_path),
        "hook_event_name": "BeforeAgent", "timestamp": "2026-11-27T22:02:49.938Z",
        "prompt": "Run the command and report.",
    }  # fmt: skip
    assert _hook(tmp_path, "before-agent", payload) == (0, "")
    _settings(
        tmp_path, {"mcpServers": {"tanglebrain": {"command": "tanglebrain", "args": ["mcp"]}}}
    )
    code, out = _hook(tmp_path, "before-agent", payload)
    answer = json.loads(out)["hookSpecificOutput"]
    assert code == 0 and answer["hookEventName"] == "BeforeAgent"
    assert (
        "delegate_many" in answer["additionalContext"]
        and "local (grunt)" in answer["additionalContext"]
    )
