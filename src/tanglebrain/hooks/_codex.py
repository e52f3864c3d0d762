"""The Codex CLI handlers: PreToolUse (rewrite to ``wrap``) and UserPromptSubmit (routing note).

What takes effect was measured against Codex CLI 0.171.0 (``shared/agents`` findings X01–X10):
hooks see the shell tool as ``tool_name: "Bash"`` with ``tool_input.command``; a PreToolUse
``updatedInput`` runs only with ``permissionDecision: "allow"`` (without it the original
command runs), and ``allow`` does not lift the sandbox; PostToolUse cannot replace an output
(only ``decision: "block"`` can, and that loses the exit status); a UserPromptSubmit
``additionalContext`` reaches the model as a developer message after the prompt. So, as
for Claude Code, the handler rewrites before the call, and only where the original would
have run without a prompt:

* no ``prefix_rule`` of Codex's exec policy (``$CODEX_HOME/rules/*.rules``, and
  ``.codex/rules/*.rules`` of the working folder and its parents) whose decision is
  ``forbidden`` or ``prompt`` may touch the command (checked broadly, by :mod:`._perms`);
* and Codex must run with ``permission_mode: "bypassPermissions"`` (approval policy
  ``never``: nothing is ever asked; the sandbox still applies to the rewritten command as
  it would have to the original), or every simple command must match a user-level
  ``prefix_rule`` whose decision is ``allow``.

A rules file that cannot be read or parsed means "unsure", and unsure means no rewrite.
Codex runs hooks only once the user trusted them (``/hooks`` in Codex); an untrusted hook
is skipped silently, which ``hooks status`` detects (:mod:`._settings`).
"""

from __future__ import annotations

import os

from tanglebrain.hooks._common import pre_tool_use_answer, prompt_context, server_name
from tanglebrain.hooks._config import (
    home,
    lineage,
    listed,
    norm,
    parse_roster,
    read_text,
    roster_text,
)
from tanglebrain.hooks._perms import Rules

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from tanglebrain.hooks._common import Handled, Handler, Payload

# Compiled only when a rules file exists (``re`` costs ~10 ms of start-up).
_CALL = r"\bprefix_rule\s*\("
_KEYWORD = r"\b(pattern|decision)\s*=\s*"
MAX_EXPANSION = 256  # alternatives a pattern may expand to before it counts as unreadable


def codex_home(env: Mapping[str, str]) -> str:
    """``$CODEX_HOME``, else ``~/.codex``."""
    named = env.get("CODEX_HOME")
    return named if named else os.path.join(env.get("HOME") or home(), ".codex")


def project_dirs(cwd: str | os.PathLike[str]) -> list[str]:
    """The working folder and its parents: each may hold a ``.codex`` folder."""
    return lineage(cwd)


def rules_files(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(user-level rules files, project rules files) of Codex's exec policy."""
    user = [norm(f) for f in listed(os.path.join(codex_home(env), "rules"), ".rules")]
    project = [
        norm(f)
        for d in project_dirs(cwd)
        for f in listed(os.path.join(d, ".codex", "rules"), ".rules")
    ]
    return user, [f for f in project if f not in user]


def load_rules(env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Rules | None:
    """The exec-policy rules as :class:`Rules`; None when a file cannot be read or parsed.

    ``forbidden`` rules are deny rules and ``prompt`` rules ask rules, from every file;
    ``allow`` rules count only from the user's own folder (a project's rules apply only
    once the user trusted the project, which is not checked here).
    """
    user, project = rules_files(env, cwd)
    found: dict[str, list[str]] = {"allow": [], "prompt": [], "forbidden": []}
    for path in [*user, *project]:
        try:
            parsed = parse_rules(read_text(path))
        except (OSError, UnicodeDecodeError):
            return None
        if parsed is None:
            return None
        for decision, prefix in parsed:
            if decision == "allow" and path not in user:
                continue
            found[decision].append(prefix)
    return Rules(tuple(found["allow"]), tuple(found["prompt"]), tuple(found["forbidden"]))


def parse_rules(text: str) -> list[tuple[str, str]] | None:
    """(decision, ``"word word:*"`` prefix) of every ``prefix_rule`` in a rules file.

    Alternatives (``["git", ["push", "fetch"]]``) are expanded. None when a rule cannot be
    read: an unknown decision, a pattern that is not a list of strings, and so on.
    """
    import ast  # only when a rules file exists
    import re

    rules: list[tuple[str, str]] = []
    clean = _strip_comments(text)
    for call in re.finditer(_CALL, clean):
        body = _balanced(clean, call.end() - 1)
        if body is None:
            return None
        values: dict[str, Any] = {}
        for kw in re.finditer(_KEYWORD, body):
            expr = _expression(body, kw.end())
            try:
                values[kw.group(1)] = ast.literal_eval(expr)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
        decision = values.get("decision", "allow")
        pattern = values.get("pattern")
        if decision not in ("allow", "prompt", "forbidden") or not isinstance(pattern, list):
            return None
        prefixes = _expand(pattern)
        if prefixes is None:
            return None
        rules += [(decision, f"{p}:*") for p in prefixes]
    return rules


def _strip_comments(text: str) -> str:
    """``text`` with ``#`` comments blanked (outside strings), offsets kept."""
    out, quote, i = list(text), "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            while i < len(text) and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        i += 1
    return "".join(out)


def _scan(text: str, start: int, *, to_comma: bool) -> int:
    """Where a bracketed or comma-ended span starting at ``start`` ends (strings skipped).

    Without ``to_comma``: the index of the bracket closing the one at ``start``; with
    it: of the next top-level comma. ``len(text)`` when there is none.
    """
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and not to_comma:
                return i
        elif ch == "," and depth == 0 and to_comma:
            return i
        i += 1
    return len(text)


def _balanced(text: str, start: int) -> str | None:
    """The text inside the bracket at ``start`` up to its match (strings skipped)."""
    end = _scan(text, start, to_comma=False)
    return text[start + 1 : end] if end < len(text) else None


def _expression(body: str, start: int) -> str:
    """The argument expression starting at ``start``: up to the next top-level comma."""
    return body[start : _scan(body, start, to_comma=True)].strip()


def _expand(pattern: list[Any]) -> list[str] | None:
    """Every word sequence a pattern matches the start of; None when it is not understood."""
    found = [""]
    for token in pattern:
        options = token if isinstance(token, list) else [token]
        if not options or not all(isinstance(o, str) and o.strip() for o in options):
            return None
        found = [f"{f} {o}".strip() for f in found for o in options]
        if len(found) > MAX_EXPANSION:
            return None
    return found if found != [""] else None


def pre_tool_use(payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]) -> Handled:
    """Rewrite a shell call worth compressing to ``tanglebrain wrap``, when that is safe."""
    row: dict[str, Any] = {"agent": "codex", "event": "pre-tool-use"}
    row["tool"] = tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if tool != "Bash" or not isinstance(tool_input, dict):
        return None, {**row, "outcome": "skip: not a shell call"}, []
    command = tool_input.get("command")
    if not isinstance(command, str):
        return None, {**row, "outcome": "skip: no command"}, []
    return pre_tool_use_answer(
        payload, tool_input, command, row, env, cwd, lambda: load_rules(env, cwd)
    )


def user_prompt_submit(
    payload: Payload, env: Mapping[str, str], cwd: str | os.PathLike[str]
) -> Handled:
    """Name the roster's specialists when a ``tanglebrain mcp`` server is configured."""
    row: dict[str, Any] = {"agent": "codex", "event": "user-prompt-submit"}
    server = mcp_server(env, project_dirs(cwd))
    roster = roster_text(env, cwd) if server else None
    return prompt_context(row, server, roster, env, qualified=False)


def mcp_server(env: Mapping[str, str], projects: Iterable[str]) -> str | None:
    """The name of the ``[mcp_servers.NAME]`` table that runs ``tanglebrain mcp``, or None."""
    files = [os.path.join(codex_home(env), "config.toml")]
    files += [os.path.join(p, ".codex", "config.toml") for p in projects]
    tables: list[Any] = []
    for path in files:
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError):
            continue
        if "tanglebrain" in text:  # parse only a file that can name the server
            data = parse_roster(text) or {}
            tables.append(data.get("mcp_servers"))
    return server_name(tables)


HANDLERS: dict[str, Handler] = {
    "pre-tool-use": pre_tool_use,
    "user-prompt-submit": user_prompt_submit,
}
