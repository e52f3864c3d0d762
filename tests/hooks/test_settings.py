"""``hooks install|uninstall|status`` on Claude Code settings files that hold other things."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tanglebrain.hooks._settings import installed, is_ours, plan_install, plan_uninstall
from tests.helpers import cli_env, run_cli

EXE = "/opt/bin/tanglebrain"
# Real settings files, odd formatting included: other hooks on the same events, other keys.
ORIGINALS = {
    "absent": None,
    "empty": "",
    "empty-object": "{}",
    "compact-other-hooks": json.dumps(
        {
            "model": "sonnet",
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}
                ],
                "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
            },
        },
        separators=(",", ":"),
    ),
    "odd-formatting": (
        '{\n\t"permissions" :  { "allow" : [ "Bash(make:*)" ] } ,\n'
        '    "hooks": {"UserPromptSubmit": [ {"hooks": [ {"type":"command",'
        '"command":"echo ctx"} ] } ]},\n"env": {"A": "1"}   }\n'
    ),
    "unicode": '{"statusLine": {"type": "command", "command": "echo ✓ é"}}',
}


def _file(tmp_path: Path, original: str | None) -> Path:
    path = tmp_path / ".claude" / "settings.json"
    if original is not None:
        path.parent.mkdir(parents=True)
        path.write_text(original, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_install_keeps_everything_else_and_uninstall_restores(name: str, tmp_path: Path) -> None:
    original = ORIGINALS[name]
    path = _file(tmp_path, original)
    before = json.loads(original) if original and original.strip() else {}
    change = plan_install(path, EXE)
    _apply(change)
    data = json.loads(path.read_text())
    assert {k: v for k, v in data.items() if k != "hooks"} == {
        k: v for k, v in before.items() if k != "hooks"
    }
    for event, groups in before.get("hooks", {}).items():
        assert all(g in data["hooks"][event] for g in groups)  # other hooks kept, in order
    assert sorted(installed(path)) == [
        f"{EXE} hook claude pre-tool-use",
        f"{EXE} hook claude user-prompt-submit",
    ]
    if original is not None:
        assert path.with_name("settings.json.bak").read_text() == original
    assert not plan_install(path, EXE).changed  # idempotent
    _apply(plan_uninstall(path))
    if original is None:
        assert json.loads(path.read_text()) == {}
    else:
        assert path.read_text(encoding="utf-8") == original


def test_uninstall_after_other_edits_keeps_them(tmp_path: Path) -> None:
    path = _file(tmp_path, ORIGINALS["compact-other-hooks"])
    _apply(plan_install(path, EXE))
    data = json.loads(path.read_text())
    data["theme"] = "dark"
    path.write_text(json.dumps(data))
    _apply(plan_uninstall(path))
    after = json.loads(path.read_text())
    assert after == {**json.loads(ORIGINALS["compact-other-hooks"]), "theme": "dark"}


def test_reinstall_replaces_an_old_entry(tmp_path: Path) -> None:
    path = _file(tmp_path, None)
    _apply(plan_install(path, "/old/tanglebrain"))
    _apply(plan_install(path, EXE))
    assert installed(path) == [
        f"{EXE} hook claude pre-tool-use",
        f"{EXE} hook claude user-prompt-submit",
    ]


@pytest.mark.parametrize(
    ("command", "ours"),
    [
        ("/a/b/tanglebrain hook claude pre-tool-use", True),
        ("'/a b/tanglebrain' hook claude user-prompt-submit", True),
        ("python3 hook.py claude", False),
        ("tanglebrain wrap -- x", False),
    ],
)
def test_is_ours(command: str, ours: bool) -> None:
    assert is_ours({"type": "command", "command": command}) is ours


def _apply(change: object) -> None:
    from tanglebrain.hooks._settings import Change, apply

    assert isinstance(change, Change)
    apply(change)


def test_cli_install_status_uninstall(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(tmp_path, HOME=str(home))
    path = home / ".claude" / "settings.json"
    dry = run_cli(["hooks", "install", "--agent", "claude", "--dry-run"], tmp_path, env=env)
    assert dry.code == 0 and "+++" in dry.stdout and not path.exists()
    out = run_cli(["hooks", "install", "--agent", "claude"], tmp_path, env=env)
    assert out.code == 0 and str(path) in out.stdout and path.exists()
    again = run_cli(["hooks", "install"], tmp_path, env=env)
    assert again.stdout.startswith("no change")
    status = run_cli(["hooks", "status"], tmp_path, env=env)
    assert status.code == 0, status.stderr
    assert f"user: {path}: installed" in status.stdout
    assert status.stdout.count("self-test: ok") == 2
    assert "last invocation: none recorded" in status.stdout  # the self-test is not logged
    project = run_cli(["hooks", "install", "--scope", "project"], tmp_path, env=env)
    assert (tmp_path / ".claude" / "settings.json").exists(), project.stderr
    out = run_cli(["hooks", "uninstall", "--agent", "claude"], tmp_path, env=env)
    assert out.code == 0 and installed(path) == []
    bad = run_cli(["hooks", "install", "--agent", "vim"], tmp_path, env=env)
    assert bad.code == 2 and "not supported" in bad.stderr


def test_invalid_settings_are_not_touched(tmp_path: Path) -> None:
    path = _file(tmp_path, "{ broken")
    env = cli_env(tmp_path)
    out = run_cli(["hooks", "install", "--scope", "project"], tmp_path, env=env)
    assert out.code == 2 and "not valid JSON" in out.stderr
    assert path.read_text() == "{ broken"


# --- Codex CLI (hooks.json) and Gemini CLI (settings.json) ------------------------------

AGENT_ORIGINALS = {
    # Codex's hooks.json holds only "hooks"; other hooks, odd formatting
    "codex": (
        '{ "hooks" : {\n\t"PreToolUse": [ {"matcher":"Bash","hooks":[{"type":"command",'
        '"command":"audit.sh","timeout":5}]}],\n  "Stop": [{"hooks": [{"type": "command", '
        '"command": "notify-send done"}]}] } }\n'
    ),
    "gemini": (
        '{\n  "security": {"auth": {"selectedType": "gemini-api-key"}},\n'
        '  "hooks": {"BeforeTool": [{"matcher": "write_file", "hooks": [{"type": "command",'
        ' "command": "lint.sh", "timeout": 30000}]}]},\n  "ui": {"theme": "✓ Dracula"}\n}'
    ),
}
AGENT_FILES = {"codex": (".codex", "hooks.json"), "gemini": (".gemini", "settings.json")}
AGENT_EVENTS = {
    "codex": {"PreToolUse": ("Bash", "pre-tool-use", 10),
              "UserPromptSubmit": (None, "user-prompt-submit", 10)},
    "gemini": {"BeforeTool": ("run_shell_command", "before-tool", 10_000),
               "BeforeAgent": (None, "before-agent", 10_000)},
}  # fmt: skip


@pytest.mark.parametrize("agent", ["codex", "gemini"])
def test_agent_install_keeps_everything_else_and_uninstall_restores(
    agent: str, tmp_path: Path
) -> None:
    from tanglebrain.hooks._settings import settings_path

    folder, name = AGENT_FILES[agent]
    path = settings_path("project", {}, tmp_path, agent)
    assert path == tmp_path / folder / name
    path.parent.mkdir()
    original = AGENT_ORIGINALS[agent]
    path.write_text(original, encoding="utf-8")
    before = json.loads(original)
    _apply(plan_install(path, EXE, agent))
    data = json.loads(path.read_text())
    assert {k: v for k, v in data.items() if k != "hooks"} == {
        k: v for k, v in before.items() if k != "hooks"
    }
    for event, groups in before["hooks"].items():
        assert data["hooks"][event][: len(groups)] == groups  # other hooks kept, first
    for event, (matcher, handler, timeout) in AGENT_EVENTS[agent].items():
        group = data["hooks"][event][-1]
        assert group.get("matcher") == matcher
        assert group["hooks"] == [
            {"type": "command", "command": f"{EXE} hook {agent} {handler}", "timeout": timeout}
        ]
    assert path.with_name(name + ".bak").read_text() == original
    assert not plan_install(path, EXE, agent).changed  # idempotent
    _apply(plan_uninstall(path))
    assert path.read_text(encoding="utf-8") == original


def test_codex_trust_is_detected(tmp_path: Path) -> None:
    from tanglebrain.hooks._settings import codex_hash, codex_trust

    home = tmp_path / "codex"
    path = home / "hooks.json"
    _apply(plan_install(path, "/opt/tanglebrain", "codex"))
    env = {"CODEX_HOME": str(home)}
    assert [t for _, t in codex_trust(path, env)] == ["untrusted", "untrusted"]
    # The hashes Codex CLI 0.171.0 reports (``codex app-server``, hooks/list) for these hooks.
    pre = {"type": "command", "command": "/opt/tanglebrain hook codex pre-tool-use", "timeout": 10}
    assert codex_hash("PreToolUse", "Bash", pre) == (
        "sha256:42d1382703c38dcb5fff763d70b31a5d32a04a76e77706ad0fe383bca283c630"
    )
    prompt = {**pre, "command": "/opt/tanglebrain hook codex user-prompt-submit"}
    assert codex_hash("UserPromptSubmit", None, prompt) == (
        "sha256:827631e7f7462ec79f786a41be07401e94e5319df25e2091390bee7785b42d4e"
    )
    good = codex_hash("PreToolUse", "Bash", pre)
    (home / "config.toml").write_text(
        'model = "o4"\n\n'
        f'[hooks.state."{path}:pre_tool_use:0:0"]\ntrusted_hash = "{good}"\n\n'
        f'[hooks.state."{path}:user_prompt_submit:0:0"]\ntrusted_hash = "sha256:old"\n'
    )
    assert dict(codex_trust(path, env)) == {
        pre["command"]: "trusted",
        prompt["command"]: "modified since trusted",
    }


def test_cli_codex_and_gemini(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(tmp_path, HOME=str(home))
    out = run_cli(["hooks", "install", "--agent", "codex"], tmp_path, env=env)
    assert out.code == 0 and "/hooks" in out.stdout, out.stderr
    status = run_cli(["hooks", "status", "--agent", "codex"], tmp_path, env=env)
    assert status.code == 0, status.stderr
    assert f"user: {home / '.codex' / 'hooks.json'}: installed" in status.stdout
    assert status.stdout.count("self-test: ok") == 2
    assert status.stdout.count("trust: untrusted (Codex skips it silently)") == 2
    out = run_cli(
        ["hooks", "install", "--agent", "gemini", "--scope", "project"], tmp_path, env=env
    )
    assert out.code == 0 and "YOLO" in out.stdout
    status = run_cli(["hooks", "status", "--agent", "gemini"], tmp_path, env=env)
    assert f"project: {tmp_path / '.gemini' / 'settings.json'}: installed" in status.stdout
    assert status.stdout.count("self-test: ok") == 2
    for agent, scope in (("codex", "user"), ("gemini", "project")):
        out = run_cli(["hooks", "uninstall", "--agent", agent, "--scope", scope], tmp_path, env=env)
        assert out.code == 0
    assert installed(home / ".codex" / "hooks.json") == []
    assert installed(tmp_path / ".gemini" / "settings.json") == []
