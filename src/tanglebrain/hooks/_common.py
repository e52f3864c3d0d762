"""What the handlers of every agent share: the rewrite to ``wrap``, and small readers.

A shell call is rewritten to ``tanglebrain wrap --agent A -- 'CMD'`` only when its output
is worth digesting (:mod:`._classify`) and the agent's own permission rules, read by the
caller into :class:`._perms.Rules`, show that the original would have run without a
prompt and that no deny or ask rule touches it (:func:`._perms.refusal`).
"""

from __future__ import annotations

import os
import sys

from tanglebrain.hooks import _json
from tanglebrain.hooks._classify import worth_wrapping
from tanglebrain.hooks._config import (
    config_of,
    key_values,
    norm,
    read_text,
    roster_text,
    specialists,
)
from tanglebrain.hooks._perms import refusal
from tanglebrain.hooks._shell import scan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeAlias

    from tanglebrain.hooks._perms import Rules

    Payload: TypeAlias = Mapping[str, Any]
    Handled: TypeAlias = tuple[dict[str, Any] | None, dict[str, Any], list[str]]
    # The working folder is a string or a path (``os.path`` takes both).
    Handler: TypeAlias = Callable[[Payload, Mapping[str, str], str | os.PathLike[str]], Handled]

# What ``shlex.quote`` leaves unquoted (``shlex`` imports ``re``).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def quote(word: str) -> str:
    """``shlex.quote(word)``: a shell word that stands for ``word`` exactly."""
    if not word:
        return "''"
    if all(c in _SAFE for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def self_command() -> str:
    """How a shell runs this tanglebrain: the console script's absolute path when known."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else None
    named = argv0 is not None and norm(argv0).rsplit("/", 1)[-1] == "tanglebrain"
    if argv0 is not None and named and os.path.isfile(argv0):
        return quote(os.path.realpath(argv0))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = os.path.join(folder, "tanglebrain")
        if folder and os.path.isfile(found) and os.access(found, os.X_OK):
            return quote(os.path.realpath(found))
    return f"{quote(sys.executable)} -m tanglebrain"


def plan_rewrite(
    row: dict[str, Any],
    command: str,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    rules: Callable[[], Rules | None],
    mode: str,
) -> tuple[str | None, dict[str, Any], list[str]]:
    """(the rewritten command or None, the log row, secrets) for a shell call of ``row``'s agent.

    ``rules`` is called only for a command worth wrapping: reading settings costs time.
    ``mode`` is the agent's permission mode in Claude Code's words (``bypassPermissions``
    when nothing is ever asked, ``default`` when allow rules decide).
    """
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
    rewritten = f"{self_command()} wrap --agent {row['agent']} -- {quote(command)}"
    found = rules()
    why = "settings unreadable" if found is None else None
    if found is not None:
        why = refusal(command, rewritten, shape, found, mode)
    if why is not None:
        return None, {**row, "outcome": f"skip: {why}"}, secrets
    return rewritten, {**row, "outcome": "rewrite"}, secrets


def pre_tool_use_answer(
    payload: Payload,
    tool_input: Mapping[str, Any],
    command: str,
    row: dict[str, Any],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    rules: Callable[[], Rules | None],
) -> Handled:
    """The PreToolUse answer of Claude Code and Codex for a shell ``command``.

    The ``wrap`` rewrite (``allowed_rewrite``) when ``plan_rewrite`` allows one, else none.
    """
    mode = payload.get("permission_mode")
    rewritten, row, secrets = plan_rewrite(
        row, command, env, cwd, rules, mode if isinstance(mode, str) else "default"
    )
    if rewritten is None:
        return None, row, secrets
    return allowed_rewrite(tool_input, rewritten), row, secrets


def prompt_context(
    row: dict[str, Any],
    server: str | None,
    roster: str | None,
    env: Mapping[str, str],
    *,
    qualified: bool,
    event: str = "UserPromptSubmit",
) -> Handled:
    """The prompt-time answer (``event``): the routing note as added context, if any."""
    text = routing_note(server, roster, qualified=qualified)
    if text is None:
        return None, {**row, "outcome": "nothing to add"}, []
    out = {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}
    return out, {**row, "outcome": "context"}, key_values(roster, env)


def allowed_rewrite(tool_input: Mapping[str, Any], rewritten: str) -> dict[str, Any]:
    """A PreToolUse answer that runs ``rewritten`` instead (Claude Code and Codex).

    Both agents apply an ``updatedInput`` only with an ``allow`` decision; the caller has
    checked that the original command would have run without asking.
    """
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": "tanglebrain: output digested by tanglebrain wrap",
            "updatedInput": {**tool_input, "command": rewritten},
        }
    }


def routing_note(server: str | None, text: str | None, qualified: bool) -> str | None:
    """The routing note naming the roster's specialists, or None when there is nothing to say.

    Args:
        server: the name the ``tanglebrain mcp`` server is registered under, or None.
        text: the roster's text.
        qualified: name the tools as Claude Code does (``mcp__SERVER__TOOL``).
    """
    from tanglebrain.hooks._config import parse_roster

    found = specialists(parse_roster(text)) if server else []
    if not server or not found:
        return None
    listed = "; ".join(f"{s.id} ({', '.join(s.good_at)})" for s in found)
    one, many = (
        (f"mcp__{server}__delegate", f"mcp__{server}__delegate_many")
        if qualified
        else ("delegate", "delegate_many")
    )
    return (
        f"The MCP server '{server}' (tanglebrain) offers the tools {one} "
        f"(one sub-task) and {many} (several, run in parallel): each "
        f"hands a self-contained sub-task to a specialist model picked by its task tag, and "
        f"returns its answer. Specialists and what they are good at: {listed}."
    )


def server_name(tables: list[Any]) -> str | None:
    """The name under which one of ``tables`` (name → server spec) runs ``tanglebrain mcp``."""
    for table in tables:
        for name, spec in table.items() if isinstance(table, dict) else []:
            words = _json.dumps(spec) if isinstance(spec, dict) else ""
            if name == "tanglebrain" or ("tanglebrain" in words and '"mcp"' in words):
                return str(name)
    return None


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        data = _json.loads(read_text(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def names(value: Any) -> list[str]:
    """The strings of a JSON list (nothing for anything else)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
