"""``hooks install|uninstall|status`` on settings files whose hooks have an unexpected shape.

Each odd shape is one line on stderr naming the file and the JSON path, exit 2, no
traceback, and the file's bytes as they were (no backup written either).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Result, cli_env, run_cli

FILES = {
    "claude": (".claude", "settings.json"),
    "codex": (".codex", "hooks.json"),
    "gemini": (".gemini", "settings.json"),
}
COMMANDS = ("install", "uninstall", "status")
_HOOK = {"type": "command", "command": "audit.sh"}
# name: (file text, what the error line must name)
SHAPES = {
    "top-level-array": ("[]", "holds an array; must be a JSON object"),
    "top-level-null": ("null", "holds null; must be a JSON object"),
    "top-level-string": ('"hooks"', "holds a string; must be a JSON object"),
    "hooks-list": ('{"hooks": []}', "field 'hooks': is an array"),
    "hooks-string": ('{"hooks": "oops"}', "field 'hooks': is a string"),
    "hooks-number": ('{"hooks": 3}', "field 'hooks': is a number"),
    "hooks-null": ('{"hooks": null}', "field 'hooks': is null"),
    "event-string": (
        '{"hooks": {"PreToolUse": "oops"}}',
        "field 'hooks.PreToolUse': is a string; must be an array of matcher objects",
    ),
    "event-object": ('{"hooks": {"PreToolUse": {}}}', "field 'hooks.PreToolUse': is an object"),
    "event-null": ('{"hooks": {"Stop": null}}', "field 'hooks.Stop': is null"),
    "event-list-of-numbers": ('{"hooks": {"Stop": [1, 2]}}', "field 'hooks.Stop[0]': is a number"),
    "event-list-of-nulls": ('{"hooks": {"Stop": [null]}}', "field 'hooks.Stop[0]': is null"),
    "matcher-hooks-string": (
        json.dumps({"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": "audit.sh"}]}}),
        "field 'hooks.PreToolUse[0].hooks': is a string; must be an array of hook objects",
    ),
    "matcher-hooks-object": (
        json.dumps({"hooks": {"Stop": [{"hooks": _HOOK}]}}),
        "field 'hooks.Stop[0].hooks': is an object",
    ),
    "matcher-hooks-null": (
        '{"hooks": {"Stop": [{"hooks": null}]}}',
        "'hooks.Stop[0].hooks': is null",
    ),
    "entry-string": (
        json.dumps({"hooks": {"Stop": [{"hooks": [_HOOK, "audit.sh"]}]}}),
        "field 'hooks.Stop[0].hooks[1]': is a string; must be a hook object",
    ),
    "entry-null": ('{"hooks": {"Stop": [{"hooks": [null]}]}}', "'hooks.Stop[0].hooks[0]': is null"),
    "command-list": (
        json.dumps({"hooks": {"Stop": [{"hooks": [{**_HOOK, "command": ["audit.sh"]}]}]}}),
        "field 'hooks.Stop[0].hooks[0].command': is an array; must be a string",
    ),
    "timeout-string": (
        json.dumps({"hooks": {"Stop": [{"hooks": [{**_HOOK, "timeout": "10"}]}]}}),
        "field 'hooks.Stop[0].hooks[0].timeout': is a string; must be a number",
    ),
    "timeout-infinite": (
        '{"hooks": {"Stop": [{"hooks": [{"command": "a", "timeout": 1e999}]}]}}',
        "field 'hooks.Stop[0].hooks[0].timeout': is inf; must be a finite number",
    ),
    "nested-too-deeply": ("[" * 100_000, "not valid JSON: nested too deeply"),
}


def _setup(tmp_path: Path, agent: str, text: str) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    folder, name = FILES[agent]
    path = home / folder / name
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path, cli_env(tmp_path, HOME=str(home))


def _assert_refused(out: Result, path: Path, original: bytes, expected: str) -> None:
    assert out.code == 2 and out.stdout == "", out
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"tanglebrain: error: {path}: "), out.stderr
    assert expected in out.stderr
    assert "(fix or " in out.stderr  # says how to fix it
    assert path.read_bytes() == original
    assert not path.with_name(path.name + ".bak").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("agent", sorted(FILES))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_odd_shape_is_one_line_and_the_file_is_untouched(
    shape: str, agent: str, command: str, tmp_path: Path
) -> None:
    text, expected = SHAPES[shape]
    path, env = _setup(tmp_path, agent, text)
    original = path.read_bytes()
    out = run_cli(["hooks", command, "--agent", agent], tmp_path, env=env)
    _assert_refused(out, path, original, expected)


@pytest.mark.parametrize("command", ["install", "uninstall"])
def test_an_odd_shape_beside_installed_handlers_is_refused(command: str, tmp_path: Path) -> None:
    path, env = _setup(tmp_path, "claude", "{}")
    assert run_cli(["hooks", "install"], tmp_path, env=env).code == 0
    data = json.loads(path.read_text())
    data["hooks"]["Stop"] = "notify-send done"
    path.write_text(json.dumps(data))
    path.with_name("settings.json.bak").unlink()
    original = path.read_bytes()
    out = run_cli(["hooks", command], tmp_path, env=env)
    _assert_refused(out, path, original, "field 'hooks.Stop': is a string")


def test_status_reports_a_broken_project_file_alone(tmp_path: Path) -> None:
    _, env = _setup(tmp_path, "claude", "{}")
    assert run_cli(["hooks", "install"], tmp_path, env=env).code == 0
    project = tmp_path / ".claude" / "settings.json"
    project.parent.mkdir()
    project.write_text('{"hooks": {"PreToolUse": [{"hooks": {}}]}}')
    out = run_cli(["hooks", "status"], tmp_path, env=env)
    _assert_refused(out, project, project.read_bytes(), "'hooks.PreToolUse[0].hooks': is an object")


def test_gemini_switches_among_the_events_are_kept(tmp_path: Path) -> None:
    # Older Gemini CLI releases read hooks.enabled and hooks.disabled (now hooksConfig).
    text = '{"hooks": {"enabled": true, "disabled": ["lint"], "notifications": false}}'
    path, env = _setup(tmp_path, "gemini", text)
    assert run_cli(["hooks", "install", "--agent", "gemini"], tmp_path, env=env).code == 0
    assert json.loads(path.read_text())["hooks"]["disabled"] == ["lint"]
    out = run_cli(["hooks", "uninstall", "--agent", "gemini"], tmp_path, env=env)
    assert out.code == 0 and path.read_text() == text
    # Claude Code has no such switches: there they are an event of the wrong shape.
    path, env = _setup(tmp_path / "c", "claude", text)
    out = run_cli(["hooks", "install"], tmp_path, env=env)
    _assert_refused(out, path, text.encode(), "field 'hooks.enabled': is a boolean")


CODEX_CONFIGS = {
    "hooks-string": ('hooks = "x"\n', "field 'hooks': is a string; must be a table"),
    "state-number": ("[hooks]\nstate = 3\n", "field 'hooks.state': is a number"),
    "entry-number": ('[hooks.state]\n"a:b" = 1\n', "field 'hooks.state.\"a:b\"': is a number"),
    "hash-number": (
        '[hooks.state."a:b"]\ntrusted_hash = 3\n',
        "field 'hooks.state.\"a:b\".trusted_hash': is a number; must be a string",
    ),
    "enabled-string": (
        '[hooks.state."a:b"]\nenabled = "no"\n',
        "field 'hooks.state.\"a:b\".enabled': is a string; must be a boolean",
    ),
    "not-toml": ("model = [\n", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(CODEX_CONFIGS))
def test_codex_status_refuses_an_odd_config_toml(name: str, tmp_path: Path) -> None:
    path, env = _setup(tmp_path, "codex", "{}")
    assert run_cli(["hooks", "install", "--agent", "codex"], tmp_path, env=env).code == 0
    text, expected = CODEX_CONFIGS[name]
    config = path.with_name("config.toml")
    config.write_text(text)
    out = run_cli(["hooks", "status", "--agent", "codex"], tmp_path, env=env)
    assert out.code == 2, out
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"tanglebrain: error: {config}: ") and expected in out.stderr
    assert config.read_text() == text


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    original = '{"model": "sonnet"}'
    path, env = _setup(tmp_path, "claude", original)
    path.with_name("settings.json.bak").mkdir()  # the backup cannot be written
    out = run_cli(["hooks", "install"], tmp_path, env=env)
    assert out.code == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"{path}: cannot write settings" in out.stderr
    assert path.read_text() == original
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json", "settings.json.bak"]


def test_hooks_without_a_command_is_one_usage_line(tmp_path: Path) -> None:
    out = run_cli(["hooks"], tmp_path)
    assert out.code == 2 and out.stdout == ""
    assert out.stderr == (
        "tanglebrain: error: hooks needs a command: install, uninstall or status "
        "(see `tanglebrain hooks --help`)\n"
    )
    assert run_cli(["hooks", "--help"], tmp_path).code == 0


@pytest.mark.parametrize("agent", sorted(FILES))
def test_a_huge_integer_timeout_is_no_crash(tmp_path: Path, agent: str) -> None:
    # Every integer is finite; checking one too large for a float must not overflow.
    text = '{"hooks": {"Stop": [{"hooks": [{"command": "a", "timeout": 1' + "0" * 400 + "}]}]}}"
    path, env = _setup(tmp_path, agent, text)
    out = run_cli(["hooks", "status", "--agent", agent], tmp_path, env=env)
    assert "Traceback" not in out.stderr and "OverflowError" not in out.stderr, out.stderr
    assert path.read_text(encoding="utf-8") == text
