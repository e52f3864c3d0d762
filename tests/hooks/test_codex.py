"""The Codex CLI handlers: input and output shapes as Codex 0.171.0 sends and reads them.

The payloads are the ones the ``shared/agents`` harness recorded from the real Codex CLI
(``tool_name: "Bash"``, ``tool_input.command``, ``permission_mode``); what Codex does with
the answer is in its README (findings X02, X03, X07).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks._codex import load_rules, parse_rules
from tanglebrain.hooks._perms import Rules
from tests.helpers import cli_env, run_cli


def _payload(
    command: str, mode: str = "bypassPermissions", cwd: Path | None = None
) -> dict[str, Any]:
    # As recorded from Codex CLI 0.171.0 (``codex exec``, approval never).
    return {
        "session_id": "01a21f08-4780-7f53-886e-73715fb5ceaa",
        "turn_id": "01a21f08-47d3-78d1-bc06-0edf8ae7dbd9",
        "transcript_path": None,
        "cwd": str(cwd) if cwd else "/nonexistent",
        "hook_event_name": "PreToolUse",
        "model": "gpt-fake",
        "permission_mode": mode,
        "tool_name": "Bash",
        "tool_input": {"command": command},
        "tool_use_id": "fake_call_0_9466fb0b",
    }


def _hook(tmp_path: Path, event: str, payload: dict[str, Any], **env: str) -> tuple[int, str]:
    environ = cli_env(
        tmp_path, HOME=str(tmp_path / "home"), CODEX_HOME=str(tmp_path / "codex"), **env
    )
    out = run_cli(["hook", "codex", event], tmp_path, stdin=json.dumps(payload), env=environ)
    return out.code, out.stdout


def _rules(tmp_path: Path, text: str, where: str = "codex") -> None:
    folder = tmp_path / where / "rules" if where == "codex" else tmp_path / ".codex" / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.rules").write_text(text)


def test_rewrite_shape(tmp_path: Path) -> None:
    code, out = _hook(tmp_path, "pre-tool-use", _payload("make 'all targets'", cwd=tmp_path))
    assert code == 0
    answer = json.loads(out)["hookSpecificOutput"]
    # finding X03: without "allow" Codex ignores updatedInput
    assert answer["hookEventName"] == "PreToolUse" and answer["permissionDecision"] == "allow"
    words = shlex.split(answer["updatedInput"]["command"])
    assert words[words.index("wrap") :] == ["wrap", "--agent", "codex", "--", "make 'all targets'"]


RULES = """
# comments and other calls are skipped
prefix_rule(
    pattern = ["git", ["push", "fetch"]],
    decision = "prompt",
    justification = "ask before talking to remotes, (even) with parentheses",
)
prefix_rule(pattern=["rm"], decision="forbidden")
prefix_rule(pattern = ["make"])  # allow is the default decision
"""


def test_parse_rules() -> None:
    assert parse_rules(RULES) == [
        ("prompt", "git push:*"), ("prompt", "git fetch:*"), ("forbidden", "rm:*"),
        ("allow", "make:*"),
    ]  # fmt: skip
    assert parse_rules('prefix_rule(pattern=["x"], decision="maybe")') is None
    assert parse_rules("prefix_rule(pattern=x)") is None
    assert parse_rules('prefix_rule(pattern=["x"]') is None
    assert parse_rules("# prefix_rule(pattern=1)\n") == []


def test_rules_from_user_and_project(tmp_path: Path) -> None:
    env = {"CODEX_HOME": str(tmp_path / "codex")}
    _rules(tmp_path, RULES)
    _rules(tmp_path, 'prefix_rule(pattern=["npm"], decision="allow")\n'
           'prefix_rule(pattern=["touch"], decision="forbidden")\n', where="project")  # fmt: skip
    # a project's allow rules do not count: only a trusted project's would apply
    assert load_rules(env, tmp_path / "sub") == Rules(
        allow=("make:*",), ask=("git push:*", "git fetch:*"), deny=("rm:*", "touch:*")
    )
    _rules(tmp_path, "prefix_rule(pattern=[1])", where="project")
    assert load_rules(env, tmp_path) is None  # unreadable means unsure


FORBID_RM = 'prefix_rule(pattern=["rm"], decision="forbidden")'
FORBID_TB = 'prefix_rule(pattern=["tanglebrain"], decision="forbidden")'


@pytest.mark.parametrize(
    ("command", "mode", "rules", "rewritten"),
    [
        ("make build", "bypassPermissions", "", True),
        ("make build && rm -rf out", "bypassPermissions", FORBID_RM, False),
        ("make build; git push", "bypassPermissions", RULES, False),  # a prompt rule
        ("make $(echo rm) x", "bypassPermissions", RULES, False),  # hides what it runs
        ("make build", "bypassPermissions", FORBID_TB, False),  # the wrapper itself
        # approvals possible: only commands an allow rule covers
        ("make build", "default", "", False),
        ("make build", "default", RULES, True),
        ("make build && pytest", "default", RULES, False),
        ("make build", "plan", RULES, False),
        ("cat big.log", "bypassPermissions", "", False),
        ("make build", "bypassPermissions", "prefix_rule(pattern=broken", False),
    ],
)  # fmt: skip
def test_never_widens_permissions(
    tmp_path: Path, command: str, mode: str, rules: str, rewritten: bool
) -> None:
    if rules:
        _rules(tmp_path, rules)
    code, out = _hook(tmp_path, "pre-tool-use", _payload(command, mode, tmp_path))
    assert code == 0 and bool(out) is rewritten


def test_other_tools_and_broken_input(tmp_path: Path) -> None:
    other = {**_payload("x"), "tool_name": "apply_patch", "tool_input": {"patch": "…"}}
    assert _hook(tmp_path, "pre-tool-use", other) == (0, "")
    for stdin in ("not json", "[]", ""):
        environ = cli_env(tmp_path)
        out = run_cli(["hook", "codex", "pre-tool-use"], tmp_path, stdin=stdin, env=environ)
        assert (out.code, out.stdout) == (0, "")
    assert run_cli(["hook", "codex", "before-tool"], tmp_path, stdin="{}").code == 1


ROSTER = """
[[backend]]
id = "local"
model = "ollama_chat/llama3.2"
api_base = "http://localhost:11434"
good_at = ["grunt", "classify"]
cost = 0
"""


def test_user_prompt_submit_routing_note(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text(ROSTER)
    payload = {
        "session_id": "s", "turn_id": "t", "transcript_path": None, "cwd": str(tmp_path),
        "hook_event_name": "UserPromptSubmit", "model": "gpt-fake",
        "permission_mode": "bypassPermissions", "prompt": "Run the command and report.",
    }  # fmt: skip
    assert _hook(tmp_path, "user-prompt-submit", payload) == (0, "")
    (tmp_path / "codex").mkdir()
    (tmp_path / "codex" / "config.toml").write_text(
        'model = "o4"\n\n[mcp_servers.tb]\ncommand = "tanglebrain"\nargs = ["mcp"]\n'
    )
    code, out = _hook(tmp_path, "user-prompt-submit", payload)
    answer = json.loads(out)["hookSpecificOutput"]
    assert code == 0 and answer["hookEventName"] == "UserPromptSubmit"
    assert (
        "'tb'" in answer["additionalContext"]
        and "local (grunt, classify)" in answer["additionalContext"]
    )
