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
