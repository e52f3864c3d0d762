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

import os

from tanglebrain.hooks._common import (
    names,
    pre_tool_use_answer,
    prompt_context,
    read_json,
    self_command,
    server_name,
)
from tanglebrain.hooks._config import home, norm, roster_text
from tanglebrain.hooks._perms import load_rules, settings_files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from tanglebrain.hooks._common import Handled, Handler, Payload

__all__ = ["HANDLERS", "mcp_server", "pre_tool_use", "self_command", "user_prompt_submit"]


def project_dirs(payload: Payload, env: Mapping[str, str]) -> list[str]:
    """The project folders whose ``.claude`` settings apply (``$CLAUDE_PROJECT_DIR``, cwd)."""
    dirs = [env.get("CLAUDE_PROJECT_DIR"), payload.get("cwd"), os.getcwd()]
    return list(dict.fromkeys(norm(d) for d in dirs if isinstance(d, str) and d))


def pre_tool_use(payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Handled:
    """Rewrite a Bash call worth compressing to ``tanglebrain wrap``, when that is safe."""
    row: dict[str, Any] = {"agent": "claude", "event": "pre-tool-use"}
    row["tool"] = tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if tool != "Bash" or not isinstance(tool_input, dict):
        return None, {**row, "outcome": "skip: not a Bash call"}, []
    command = tool_input.get("command")
    if not isinstance(command, str) or tool_input.get("run_in_background"):
        return None, {**row, "outcome": "skip: background or no command"}, []
    return pre_tool_use_answer(
        payload,
        tool_input,
        command,
        row,
        env,
        cwd,
        lambda: load_rules(settings_files(env, project_dirs(payload, env))),
    )


def user_prompt_submit(
    payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]
) -> Handled:
    """Name the roster's specialists when the ``tanglebrain`` MCP server is registered."""
    row: dict[str, Any] = {"agent": "claude", "event": "user-prompt-submit"}
    server = mcp_server(env, project_dirs(payload, env))
    roster = roster_text(env, cwd) if server else None
    return prompt_context(row, server, roster, env, qualified=True)


def mcp_server(env: Mapping[str, str], projects: Iterable[str]) -> str | None:
    """The name of the registered ``tanglebrain mcp`` server, or None."""
    config = os.path.join(env.get("CLAUDE_CONFIG_DIR") or env.get("HOME") or home(), ".claude.json")
    user = read_json(config)
    tables = [user.get("mcpServers")]
    by_project = user.get("projects") if isinstance(user.get("projects"), dict) else {}
    settings = [read_json(p) for p in settings_files(env, projects)]
    approve_all = any(s.get("enableAllProjectMcpServers") is True for s in settings)
    approved = {n for s in settings for n in names(s.get("enabledMcpjsonServers"))}
    for project in projects:
        entry = by_project.get(str(project)) if isinstance(by_project, dict) else None
        tables.append(entry.get("mcpServers") if isinstance(entry, dict) else None)
        listed = read_json(os.path.join(project, ".mcp.json")).get("mcpServers")
        if isinstance(listed, dict):
            tables.append({k: v for k, v in listed.items() if approve_all or k in approved})
    return server_name(tables)


HANDLERS: dict[str, Handler] = {
    "pre-tool-use": pre_tool_use,
    "user-prompt-submit": user_prompt_submit,
}
