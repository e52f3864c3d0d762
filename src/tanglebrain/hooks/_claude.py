"""The Claude Code handlers: PreToolUse (rewrite to ``wrap``) and UserPromptSubmit (routing note).

What takes effect was measured against Claude Code 2.1.332 (``shared/agents`` findings):
a PreToolUse ``updatedInput`` runs only with ``permissionDecision: "allow"``, deny and ask
rules are matched against the rewritten command, PostToolUse cannot replace a failed
command's output, and a wrapper that exits with the command's status keeps "Exit code N"
visible. So the handler rewrites before the call, and only where :mod:`._perms` finds
that the original would have run without a prompt. A UserPromptSubmit
``additionalContext`` reaches the model as a system message after the prompt.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tanglebrain.hooks._classify import worth_wrapping
from tanglebrain.hooks._config import config_of, key_values, parse_roster, roster_text, specialists
from tanglebrain.hooks._perms import load_rules, refusal, settings_files
from tanglebrain.hooks._shell import scan

Payload = Mapping[str, Any]
Handled = tuple[dict[str, Any] | None, dict[str, Any], list[str]]


def self_command() -> str:
    """How a shell runs this tanglebrain: the console script's absolute path when known."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "tanglebrain" and argv0.is_file():
        return shlex.quote(str(argv0.resolve()))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = Path(folder or ".") / "tanglebrain"
        if folder and found.is_file() and os.access(found, os.X_OK):
            return shlex.quote(str(found.resolve()))
    return f"{shlex.quote(sys.executable)} -m tanglebrain"


def project_dirs(payload: Payload, env: Mapping[str, str]) -> list[Path]:
    """The project folders whose ``.claude`` settings apply (``$CLAUDE_PROJECT_DIR``, cwd)."""
    dirs = [env.get("CLAUDE_PROJECT_DIR"), payload.get("cwd"), os.getcwd()]
    return list(dict.fromkeys(Path(d) for d in dirs if isinstance(d, str) and d))


def pre_tool_use(payload: Payload, env: Mapping[str, str], cwd: Path) -> Handled:
    """Rewrite a Bash call worth compressing to ``tanglebrain wrap``, when that is safe."""
    row: dict[str, Any] = {"agent": "claude", "event": "pre-tool-use"}
    row["tool"] = tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if tool != "Bash" or not isinstance(tool_input, dict):
        return None, {**row, "outcome": "skip: not a Bash call"}, []
    command = tool_input.get("command")
    if not isinstance(command, str) or tool_input.get("run_in_background"):
        return None, {**row, "outcome": "skip: background or no command"}, []
    row["command"] = command
    text = roster_text(env, cwd)
    secrets = key_values(text, env)
    config = config_of(text)
    if config is None:
        return None, {**row, "outcome": "skip: invalid [hooks] table"}, secrets
    shape = scan(command)
    row["family"] = family = worth_wrapping(shape, config)
    if family is None:
        return None, {**row, "outcome": "skip: not worth wrapping"}, secrets
    rewritten = f"{self_command()} wrap --agent claude -- {shlex.quote(command)}"
    rules = load_rules(settings_files(env, project_dirs(payload, env)))
    mode = payload.get("permission_mode")
    why = "settings unreadable" if rules is None else None
    if rules is not None:
        why = refusal(
            command, rewritten, shape, rules, mode if isinstance(mode, str) else "default"
        )
    if why is not None:
        return None, {**row, "outcome": f"skip: {why}"}, secrets
    out = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": "tanglebrain: output digested by tanglebrain wrap",
            "updatedInput": {**tool_input, "command": rewritten},
        }
    }
    return out, {**row, "outcome": "rewrite"}, secrets


def user_prompt_submit(payload: Payload, env: Mapping[str, str], cwd: Path) -> Handled:
    """Name the roster's specialists when the ``tanglebrain`` MCP server is registered."""
    row: dict[str, Any] = {"agent": "claude", "event": "user-prompt-submit"}
    server = mcp_server(env, project_dirs(payload, env))
    text = roster_text(env, cwd) if server else None
    found = specialists(parse_roster(text))
    if not server or not found:
        return None, {**row, "outcome": "nothing to add"}, []
    listed = "; ".join(f"{s.id} ({', '.join(s.good_at)})" for s in found)
    text = (
        f"The MCP server '{server}' (tanglebrain) offers the tools mcp__{server}__delegate "
        f"(one sub-task) and mcp__{server}__delegate_many (several, run in parallel): each "
        f"hands a self-contained sub-task to a specialist model picked by its task tag, and "
        f"returns its answer. Specialists and what they are good at: {listed}."
    )
    out = {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": text}}
    return out, {**row, "outcome": "context"}, key_values(text, env)


def mcp_server(env: Mapping[str, str], projects: Iterable[Path]) -> str | None:
    """The name of the registered ``tanglebrain mcp`` server, or None."""
    home = Path(env.get("HOME") or Path.home())
    config = Path(env.get("CLAUDE_CONFIG_DIR") or home) / ".claude.json"
    user = _json(config)
    tables = [user.get("mcpServers")]
    by_project = user.get("projects") if isinstance(user.get("projects"), dict) else {}
    settings = [_json(p) for p in settings_files(env, projects)]
    approve_all = any(s.get("enableAllProjectMcpServers") is True for s in settings)
    approved = {n for s in settings for n in _names(s.get("enabledMcpjsonServers"))}
    for project in projects:
        entry = by_project.get(str(project)) if isinstance(by_project, dict) else None
        tables.append(entry.get("mcpServers") if isinstance(entry, dict) else None)
        listed = _json(project / ".mcp.json").get("mcpServers")
        if isinstance(listed, dict):
            tables.append({k: v for k, v in listed.items() if approve_all or k in approved})
    for table in tables:
        for name, spec in (table or {}).items() if isinstance(table, dict) else []:
            words = json.dumps(spec) if isinstance(spec, dict) else ""
            if name == "tanglebrain" or ("tanglebrain" in words and '"mcp"' in words):
                return str(name)
    return None


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


HANDLERS = {
    ("claude", "pre-tool-use"): pre_tool_use,
    ("claude", "user-prompt-submit"): user_prompt_submit,
}
