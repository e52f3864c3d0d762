"""The Gemini CLI handlers: BeforeTool (rewrite to ``wrap``) and BeforeAgent (routing note).

What takes effect was measured against Gemini CLI 0.61.0 (``shared/agents`` findings G01–G07):
the shell tool is ``run_shell_command`` with ``tool_input.command``; a BeforeTool
``hookSpecificOutput.tool_input`` replaces the call's input, and the CLI appends "[System]
Tool input parameters were modified by a hook before execution." to the result; AfterTool
can replace an output only by turning it into an error; a BeforeAgent
``additionalContext`` reaches the model as an extra part of the user turn.

Gemini checks its policy (deny, ask and allow rules) against the *rewritten* call, after
BeforeTool. A wrapper would therefore escape a deny rule, and outside YOLO mode the
rewritten command would need an approval the original did not. So the handler rewrites
only when Gemini runs in YOLO mode (which only ``--yolo`` / ``--approval-mode=yolo`` on
its command line turns on: the handler reads its parent processes' command lines) and no
deny or ask rule touches the command: ``tools.exclude`` of every settings file, a
``tools.core`` list that restricts the shell tool, and ``deny`` / ``ask_user`` rules of
the policy files (``~/.gemini/policies``, ``.gemini/policies``, ``/etc/gemini-cli/policies``).
A rule without a command prefix (a regex, an argument pattern) touches every command.
Settings or policies that cannot be read mean "unsure", and unsure means no rewrite.
"""

from __future__ import annotations

import os

from tanglebrain.hooks import _json
from tanglebrain.hooks._common import plan_rewrite, prompt_context, read_json, server_name
from tanglebrain.hooks._config import (
    home,
    lineage,
    listed,
    norm,
    read_text,
    roster_text,
)
from tanglebrain.hooks._perms import Rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from tanglebrain.hooks._common import Handled, Handler, Payload

SHELL_TOOLS = frozenset({"run_shell_command", "ShellTool", "*"})
SYSTEM_DIR = "/etc/gemini-cli"
ANCESTORS = 4  # parent processes looked at for Gemini's command line (a shell may sit between)


def gemini_dir(env: Mapping[str, str]) -> str:
    """The user's ``.gemini`` folder (``$GEMINI_CLI_HOME`` stands in for the home folder)."""
    return norm(os.path.join(env.get("GEMINI_CLI_HOME") or env.get("HOME") or home(), ".gemini"))


def project_dirs(cwd: str | os.PathLike[str]) -> list[str]:
    """The working folder and its parents: each may hold a ``.gemini`` folder."""
    return lineage(cwd)


def settings_files(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> list[str]:
    """Every Gemini CLI settings file that applies to a session in ``cwd``."""
    system = env.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH") or f"{SYSTEM_DIR}/settings.json"
    defaults = env.get("GEMINI_CLI_SYSTEM_DEFAULTS_PATH") or f"{SYSTEM_DIR}/system-defaults.json"
    files = [norm(defaults), norm(system), f"{gemini_dir(env)}/settings.json"]
    files += [os.path.join(d, ".gemini", "settings.json") for d in project_dirs(cwd)]
    return list(dict.fromkeys(files))


def policy_files(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> list[str]:
    """Every policy file (``*.toml`` in a ``policies`` folder) that may apply."""
    folders = [f"{SYSTEM_DIR}/policies", f"{gemini_dir(env)}/policies"]
    folders += [os.path.join(d, ".gemini", "policies") for d in project_dirs(cwd)]
    return [f for folder in dict.fromkeys(folders) for f in listed(folder, ".toml")]


def load_rules(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Rules | None:
    """The shell rules of every settings and policy file; None when one cannot be read."""
    found: dict[str, list[str]] = {"allow": [], "ask": [], "deny": []}
    for path in settings_files(env, cwd):
        try:
            text = read_text(path)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError):
            return None
        if not _settings_rules(text, found):
            return None
    for path in policy_files(env, cwd):
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError):
            return None
        if not _policy_rules(text, found):
            return None
    return Rules(tuple(found["allow"]), tuple(found["ask"]), tuple(found["deny"]))


def _settings_rules(text: str, found: dict[str, list[str]]) -> bool:
    """Add the shell rules of a settings file's ``tools`` table; False when unreadable."""
    try:
        data = _json.loads(text) if text.strip() else {}
    except ValueError:
        return False  # comments or broken JSON: unsure
    tools = data.get("tools", {}) if isinstance(data, dict) else None
    if not isinstance(tools, dict):
        return False
    for key, kind in (("exclude", "deny"), ("allowed", "allow")):
        listed = tools.get(key, [])
        if not isinstance(listed, list):
            return False
        found[kind] += [r for item in listed if (r := _tool_rule(item)) is not None]
    core = tools.get("core")
    if core is not None:
        if not isinstance(core, list):
            return False
        if "run_shell_command" not in core and "ShellTool" not in core:
            found["deny"].append("")  # the shell is limited to listed commands: not tanglebrain
    return True


def _tool_rule(item: Any) -> str | None:
    """``run_shell_command(git push)`` → ``git push:*``; the bare tool → ``""``; else None."""
    if not isinstance(item, str):
        return None
    name, _, rest = item.strip().partition("(")
    if name.strip() not in SHELL_TOOLS:
        return None
    prefix = rest.rsplit(")", 1)[0].strip()
    return f"{prefix}:*" if prefix else ""


def _policy_rules(text: str, found: dict[str, list[str]]) -> bool:
    """Add the shell rules of a policy file; False when it does not parse."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return False
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        return False
    for rule in rules:
        if not isinstance(rule, dict):
            return False
        tools = rule.get("toolName", "*")
        tools = tools if isinstance(tools, list) else [tools]
        if not any(t in SHELL_TOOLS for t in tools):
            continue
        kind = {"deny": "deny", "ask_user": "ask", "allow": "allow"}.get(rule.get("decision", ""))
        if kind is None:
            return False
        prefixes = rule.get("commandPrefix")
        prefixes = prefixes if isinstance(prefixes, list) else [prefixes]
        clean = [p.strip() for p in prefixes if isinstance(p, str) and p.strip()]
        narrowed = "commandRegex" in rule or "argsPattern" in rule
        if kind == "allow":
            if clean and not narrowed:
                found["allow"] += [f"{p}:*" for p in clean]
        else:
            found[kind] += [f"{p}:*" for p in clean] if clean and not narrowed else [""]
    return True


def approval_mode(pid: int | None = None) -> str | None:
    """Gemini CLI's approval mode from its command line, or None when no parent is Gemini.

    Only the command line turns YOLO on (``--yolo``, ``-y``, ``--approval-mode=yolo``);
    the settings file cannot. A mode toggled inside a session (Ctrl+Y) is not seen.
    """
    pid = os.getppid() if pid is None else pid
    for _ in range(ANCESTORS):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/stat", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            return None
        if any(_is_gemini(word) for word in argv[:3]):
            return mode_of(argv)
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            return None
        if pid <= 1:
            return None
    return None


def _is_gemini(word: str) -> bool:
    name = word.rsplit("/", 1)[-1]
    return name in ("gemini", "gemini.js") or "/gemini-cli/" in word


def mode_of(argv: list[str]) -> str:
    """The approval mode a Gemini CLI command line asks for (the last option wins)."""
    mode = "default"
    for i, word in enumerate(argv):
        name, eq, value = word.partition("=")
        if name in ("--yolo", "-y"):
            mode = "yolo" if not eq or value.lower() == "true" else mode
        elif name == "--approval-mode":
            mode = value if eq else (argv[i + 1] if i + 1 < len(argv) else mode)
    return mode


def before_tool(payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Handled:
    """Rewrite a shell call worth compressing to ``tanglebrain wrap``, when that is safe."""
    row: dict[str, Any] = {"agent": "gemini", "event": "before-tool"}
    row["tool"] = tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if tool != "run_shell_command" or not isinstance(tool_input, dict):
        return None, {**row, "outcome": "skip: not a shell call"}, []
    command = tool_input.get("command")
    if not isinstance(command, str) or tool_input.get("is_background"):
        return None, {**row, "outcome": "skip: background or no command"}, []
    mode = approval_mode()
    if mode != "yolo":
        # Outside YOLO mode the rewritten command would need an approval of its own.
        row["command"] = command
        return None, {**row, "outcome": f"skip: approval mode {mode or 'unknown'}"}, []
    rewritten, row, secrets = plan_rewrite(
        row, command, env, cwd, lambda: load_rules(env, cwd), "bypassPermissions"
    )
    if rewritten is None:
        return None, row, secrets
    new_input = {**tool_input, "command": rewritten}
    out = {"hookSpecificOutput": {"hookEventName": "BeforeTool", "tool_input": new_input}}
    return out, row, secrets


def before_agent(payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Handled:
    """Name the roster's specialists when a ``tanglebrain mcp`` server is configured."""
    row: dict[str, Any] = {"agent": "gemini", "event": "before-agent"}
    server = mcp_server(env, cwd)
    roster = roster_text(env, cwd) if server else None
    return prompt_context(row, server, roster, env, qualified=False, event="BeforeAgent")


def mcp_server(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> str | None:
    """The name of the ``mcpServers`` entry that runs ``tanglebrain mcp``, or None."""
    return server_name([read_json(p).get("mcpServers") for p in settings_files(env, cwd)])


HANDLERS: dict[str, Handler] = {
    "before-tool": before_tool,
    "before-agent": before_agent,
}
