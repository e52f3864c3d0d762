"""The Claude Code handlers: what is wrapped, and never a wider permission than before."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks._classify import worth_wrapping
from tanglebrain.hooks._config import HooksConfig
from tanglebrain.hooks._perms import Rules, load_rules, refusal
from tanglebrain.hooks._shell import scan
from tests.helpers import cli_env, run_cli

WRAP = "/x/tanglebrain wrap --agent claude -- "

CLASSIFIED = [
    ("pytest -q", "pytest"),
    ("python3 -m pytest tests/ -x", "pytest"),
    ("cd app && FOO=1 uv run pytest -x 2>&1", "pytest"),
    ("timeout 600 cargo test --workspace", "cargo test"),
    ("npm ci && npm run build", "npm ci"),
    ("./gradlew build --info", "gradlew"),
    ("make -j8 all", "make"),
    ("docker build -f Dockerfile.ci .", "docker build"),
    ("ruff check . && mypy src", "ruff"),
    ("journalctl -u nginx --since today", "journalctl"),
    ("kubectl logs deploy/web --tail 500", "kubectl logs"),
    ("pip install -r requirements.txt", "pip install"),
    ("cat src/main.py", None),
    ("head -n 50 README.md", None),
    ("less build.log", None),
    ("git diff HEAD~1", None),
    ("git show abc123", None),
    ("pytest -q | tail -20", None),
    ("make 2>&1 | grep error", None),
    ("docker logs -f web", None),
    ("npm run dev", None),
    ("pytest &", None),
    ("ls -la", None),
    ("echo 'pytest'", None),
    ("cat setup.py && pytest", None),
    ("pytest -k 'unterminated", None),
]


@pytest.mark.parametrize(("command", "family"), CLASSIFIED)
def test_default_classification(command: str, family: str | None) -> None:
    assert worth_wrapping(scan(command), HooksConfig()) == family


def test_include_and_exclude_patterns() -> None:
    config = HooksConfig(include=("run-suite*",), exclude=("pytest*",))
    assert worth_wrapping(scan("./run-suite --all"), config) == "run-suite"
    assert worth_wrapping(scan("pytest -q"), config) is None


ALLOW_MAKE = Rules(allow=("make:*", "pytest:*", "npm ci", "npm run build:*"))
PERMISSIONS = [
    # (command, rules, mode, rewritten?)
    ("make build", ALLOW_MAKE, "default", True),
    ("npm ci && npm run build", ALLOW_MAKE, "default", True),
    ("pytest -q 2>&1", ALLOW_MAKE, "default", True),
    ("make build", Rules(), "default", False),  # needs approval: stays with Claude
    ("make build", Rules(), "acceptEdits", False),
    ("make build", Rules(), "plan", False),
    ("make build", Rules(), "bypassPermissions", True),
    ("make build", Rules(allow=("",)), "default", True),  # "Bash": all of Bash allowed
    ("make build && touch x", ALLOW_MAKE, "default", False),  # touch is not allowed
    # finding C08: deny and ask rules are matched against the rewritten command
    ("make build && touch x", Rules(allow=("",), deny=("touch:*",)), "default", False),
    ("make build && touch x", Rules(deny=("touch:*",)), "bypassPermissions", False),
    ("make build; /usr/bin/touch x", Rules(deny=("touch:*",)), "bypassPermissions", False),
    ("make build; t'ou'ch x", Rules(deny=("touch:*",)), "bypassPermissions", False),
    ("make build; t\\ouch x", Rules(deny=("touch:*",)), "bypassPermissions", False),
    ("make $(echo touch) x", Rules(deny=("touch:*",)), "bypassPermissions", False),
    ("make `t=touch; $t x`", Rules(deny=("rm:*",)), "bypassPermissions", False),
    ('make && eval "$CMD"', Rules(deny=("rm:*",)), "bypassPermissions", False),
    ("make && sh -c 'x'", Rules(deny=("rm:*",)), "bypassPermissions", False),
    ("make deploy", Rules(allow=("make:*",), deny=("make deploy:*",)), "default", False),
    ("make deploy", Rules(allow=("make:*",), ask=("make:*",)), "default", False),
    ("make build", Rules(allow=("make:*",), deny=("",)), "bypassPermissions", False),
    ("make build", Rules(allow=("make:*",), ask=("*",)), "default", False),
    ("make build", Rules(allow=("make:*",), deny=("tanglebrain:*",)), "default", False),
    ("make build", Rules(allow=("make:*",), deny=("git push:*",)), "default", True),
    # narrow allow: only plain commands
    ("make > out.txt", ALLOW_MAKE, "default", False),
    ("make 2>/dev/null", ALLOW_MAKE, "default", True),
    ("(make)", ALLOW_MAKE, "default", False),
    ("make $(cat targets)", ALLOW_MAKE, "default", False),
    ("CC=clang make", ALLOW_MAKE, "default", False),
    ("make <<EOF\nx\nEOF", ALLOW_MAKE, "default", False),
    ("makefoo", ALLOW_MAKE, "default", False),
    ("npm ci --force", ALLOW_MAKE, "default", False),  # an exact rule allows nothing else
    ("npm run build:prod", Rules(allow=("npm run build:*",)), "default", False),
]


@pytest.mark.parametrize(("command", "rules", "mode", "ok"), PERMISSIONS)
def test_rewrite_never_widens_permissions(command: str, rules: Rules, mode: str, ok: bool) -> None:
    rewritten = WRAP + shlex.quote(command)
    assert (refusal(command, rewritten, scan(command), rules, mode) is None) is ok


def test_rules_come_from_every_settings_file(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps({"permissions": {"allow": ["Bash(make:*)", "Read(*)"]}}))
    b.write_text(json.dumps({"permissions": {"deny": ["Bash(touch:*)"], "ask": ["Bash"]}}))
    assert load_rules([a, b, tmp_path / "missing.json"]) == Rules(
        allow=("make:*",), ask=("",), deny=("touch:*",)
    )
    c.write_text("{ not json")
    assert load_rules([a, c]) is None
    c.write_text(json.dumps({"permissions": {"allow": "Bash"}}))
    assert load_rules([c]) is None


# --- the handler as Claude Code runs it ------------------------------------------------


def _home(tmp_path: Path, settings: dict[str, Any]) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))
    return home


def _hook(tmp_path: Path, home: Path, event: str, payload: dict[str, Any]) -> tuple[int, str]:
    env = cli_env(tmp_path, HOME=str(home))
    out = run_cli(["hook", "claude", event], tmp_path, stdin=json.dumps(payload), env=env)
    return out.code, out.stdout


def _bash(command: str, mode: str = "default", **extra: Any) -> dict[str, Any]:
    tool_input = {"command": command, "description": "run it", **extra}
    return {"tool_name": "Bash", "tool_input": tool_input, "permission_mode": mode}


def test_pre_tool_use_rewrites_an_allowed_build(tmp_path: Path) -> None:
    home = _home(tmp_path, {"permissions": {"allow": ["Bash(make:*)"]}})
    code, out = _hook(tmp_path, home, "pre-tool-use", _bash("make 'all targets'"))
    assert code == 0
    decision = json.loads(out)["hookSpecificOutput"]
    assert decision["permissionDecision"] == "allow"
    assert decision["updatedInput"]["description"] == "run it"
    words = shlex.split(decision["updatedInput"]["command"])
    assert words[words.index("wrap") :] == ["wrap", "--agent", "claude", "--", "make 'all targets'"]


@pytest.mark.parametrize(
    ("settings", "payload"),
    [
        ({}, _bash("make")),  # not allowed: Claude asks the user, as without the hook
        ({"permissions": {"allow": ["Bash"], "deny": ["Bash(touch:*)"]}}, _bash("make; touch x")),
        ({"permissions": {"allow": ["Bash"]}}, _bash("cat big.log")),
        ({"permissions": {"allow": ["Bash"]}}, _bash("make", run_in_background=True)),
        ({"permissions": {"allow": ["Bash"]}}, {"tool_name": "Read", "tool_input": {}}),
        ({"permissions": {"allow": ["Bash"]}}, _bash("make", mode="plan")),
    ],
)
def test_pre_tool_use_stays_silent(
    tmp_path: Path, settings: dict[str, Any], payload: dict[str, Any]
) -> None:
    assert _hook(tmp_path, _home(tmp_path, settings), "pre-tool-use", payload) == (0, "")


def test_project_settings_deny_is_honoured(tmp_path: Path) -> None:
    home = _home(tmp_path, {"permissions": {"allow": ["Bash(make:*)"]}})
    (tmp_path / ".claude").mkdir()
    deny = {"permissions": {"deny": ["Bash(make:*)"]}}
    (tmp_path / ".claude" / "settings.local.json").write_text(json.dumps(deny))
    payload = {**_bash("make"), "cwd": str(tmp_path)}
    assert _hook(tmp_path, home, "pre-tool-use", payload) == (0, "")


def test_broken_input_never_blocks(tmp_path: Path) -> None:
    home = _home(tmp_path, {})
    env = cli_env(tmp_path, HOME=str(home))
    for stdin in ("not json", "[]", ""):
        out = run_cli(["hook", "claude", "pre-tool-use"], tmp_path, stdin=stdin, env=env)
        assert (out.code, out.stdout) == (0, "")
    out = run_cli(["hook", "claude", "nope"], tmp_path, stdin="{}", env=env)
    assert out.code == 1  # a non-blocking error: 2 would block the tool call


ROSTER = """
[[backend]]
id = "local"
model = "ollama_chat/llama3.2"
api_base = "http://localhost:11434"
good_at = ["grunt", "classify"]
cost = 0

[[backend]]
id = "off"
model = "ollama_chat/x"
api_base = "http://localhost:11434"
good_at = ["code"]
cost = 0
enabled = false
"""


def test_user_prompt_names_specialists_when_the_server_is_registered(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text(ROSTER)
    home = _home(tmp_path, {})
    payload = {"prompt": "hi", "cwd": str(tmp_path)}
    assert _hook(tmp_path, home, "user-prompt-submit", payload) == (0, "")
    server = {"command": "tanglebrain", "args": ["mcp"]}
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {"tb": server}}))
    code, out = _hook(tmp_path, home, "user-prompt-submit", payload)
    text = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    assert code == 0 and "mcp__tb__delegate_many" in text
    assert "local (grunt, classify)" in text and "off (" not in text
    assert _hook(tmp_path, home, "user-prompt-submit", payload)[1] == out  # cache-friendly
