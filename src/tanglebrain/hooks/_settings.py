"""Installing the handlers into an agent's settings file, and taking them out again.

Claude Code and Gemini CLI keep hooks in ``settings.json``, Codex CLI in ``hooks.json``
next to its ``config.toml``; all three use the same ``{"hooks": {EVENT: [{"matcher": …,
"hooks": [{"type": "command", "command": …, "timeout": …}]}]}}`` shape (Gemini counts the
timeout in milliseconds, the others in seconds).

The file is edited in place: every other setting and every other hook stays as it was,
installing twice changes nothing, and the previous version is kept as ``<file>.bak``.
Uninstalling restores the exact bytes of the backup when nothing else changed since
(odd formatting included), else writes the same JSON without the handlers.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tanglebrain.errors import ConfigError
from tanglebrain.hooks._shape import bad, check_shape

HOOK_TIMEOUT_S = 10


class Agent(NamedTuple):
    """How one agent's settings file holds the handlers.

    Attributes:
        name: the agent's name on the command line.
        events: (hook event, tool matcher or None, handler event) of every handler.
        timeout: the timeout written with each handler, in the agent's unit.
        sample: a hook payload the self-test feeds the handler.
        rewritten: the keys leading from the handler's answer to the rewritten command.
    """

    name: str
    events: tuple[tuple[str, str | None, str], ...]
    timeout: int
    sample: dict[str, Any]
    rewritten: tuple[str, ...]


_CLAUDE_LIKE = (
    ("PreToolUse", "Bash", "pre-tool-use"),
    ("UserPromptSubmit", None, "user-prompt-submit"),
)
_SAMPLE = {"tool_name": "Bash", "tool_input": {"command": "pytest -q"}}
AGENTS = {
    "claude": Agent(
        "claude", _CLAUDE_LIKE, HOOK_TIMEOUT_S,
        {"hook_event_name": "PreToolUse", **_SAMPLE, "permission_mode": "bypassPermissions"},
        ("hookSpecificOutput", "updatedInput", "command"),
    ),
    "codex": Agent(
        "codex", _CLAUDE_LIKE, HOOK_TIMEOUT_S,
        {"hook_event_name": "PreToolUse", **_SAMPLE, "permission_mode": "bypassPermissions"},
        ("hookSpecificOutput", "updatedInput", "command"),
    ),
    "gemini": Agent(
        "gemini",
        (("BeforeTool", "run_shell_command", "before-tool"), ("BeforeAgent", None, "before-agent")),
        HOOK_TIMEOUT_S * 1000,  # Gemini CLI counts hook timeouts in milliseconds
        {"hook_event_name": "BeforeTool", "tool_name": "run_shell_command",
         "tool_input": {"command": "pytest -q"}},
        ("hookSpecificOutput", "tool_input", "command"),
    ),
}  # fmt: skip
# Kept for callers that know only Claude Code.
EVENTS = _CLAUDE_LIKE
SAMPLE = AGENTS["claude"].sample
_OURS = re.compile(r"tanglebrain['\"]?\s+hook\s+(claude|codex|gemini)\s")


@dataclass(frozen=True)
class Change:
    """An edit of a settings file: its text before (None: no file) and after."""

    path: Path
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """Whether the edit changes the file."""
        return self.before != self.after


def settings_path(scope: str, env: Mapping[str, str], cwd: Path, agent: str = "claude") -> Path:
    """The file ``agent`` reads its hooks from, for ``scope`` (``user`` or ``project``).

    Claude Code: ``~/.claude/settings.json`` (``$CLAUDE_CONFIG_DIR``), ``.claude/settings.json``;
    Codex CLI: ``~/.codex/hooks.json`` (``$CODEX_HOME``), ``.codex/hooks.json``; Gemini CLI:
    ``~/.gemini/settings.json`` (``$GEMINI_CLI_HOME`` for the home folder),
    ``.gemini/settings.json``.
    """
    home = Path(env.get("HOME") or Path.home())
    if agent == "codex":
        if scope == "project":
            return cwd / ".codex" / "hooks.json"
        return Path(env.get("CODEX_HOME") or home / ".codex") / "hooks.json"
    if agent == "gemini":
        base = cwd if scope == "project" else Path(env.get("GEMINI_CLI_HOME") or home)
        return base / ".gemini" / "settings.json"
    if scope == "project":
        return cwd / ".claude" / "settings.json"
    return Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude") / "settings.json"


def is_ours(hook: Any, agent: str | None = None) -> bool:
    """Whether a hook entry runs one of these handlers (of ``agent`` when given)."""
    if not isinstance(hook, dict):
        return False
    found = _OURS.search(str(hook.get("command", "")))
    return found is not None and (agent is None or found.group(1) == agent)


def read(path: Path, agent: str | None = None) -> tuple[str | None, dict[str, Any]]:
    """(text, data) of a settings file; (None, {}) when it does not exist.

    Args:
        path: the settings file.
        agent: the agent whose file it is, when known (Gemini CLI allows a few switches
            among its hook events).

    Raises:
        ConfigError: the file cannot be read, is not JSON, or holds something other than
            the hooks shape the handlers are installed into (see :func:`check_shape`).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read settings: {exc}", file=path) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError) as exc:
        why = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise ConfigError(f"not valid JSON: {why}", file=path, fix="fix or move the file") from None
    check_shape(path, data, agent)
    return text, data


def without_ours(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every handler entry removed (and the groups and lists left empty by it)."""
    out = copy.deepcopy(data)
    hooks = out.get("hooks")
    if not isinstance(hooks, dict):
        return out
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            inner = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(inner, list) and any(is_ours(h) for h in inner):
                group = {**group, "hooks": [h for h in inner if not is_ours(h)]}
                if not group["hooks"]:
                    continue
            kept.append(group)
        if kept or not groups:
            hooks[event] = kept
        else:
            del hooks[event]
    if not hooks and "hooks" in out and data.get("hooks"):
        del out["hooks"]
    return out


def with_ours(data: dict[str, Any], exe: str, agent: str = "claude") -> dict[str, Any]:
    """``data`` with exactly one entry per handler of ``agent``, run by ``exe``."""
    out = without_ours(data)
    hooks = out.setdefault("hooks", {})
    spec = AGENTS[agent]
    for event, matcher, name in spec.events:
        entry = {"type": "command", "command": f"{exe} hook {agent} {name}"}
        group: dict[str, Any] = {"matcher": matcher} if matcher else {}
        group["hooks"] = [{**entry, "timeout": spec.timeout}]
        hooks.setdefault(event, []).append(group)
    return out


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def plan_install(path: Path, exe: str, agent: str = "claude") -> Change:
    """The edit that installs ``agent``'s handlers into ``path``.

    Raises:
        ConfigError: ``path`` cannot be read or has an unexpected shape (see :func:`read`).
    """
    before, data = read(path, agent)
    after = _dump(with_ours(data, exe, agent))
    if before is not None and json.loads(after) == data:
        after = before  # already installed as asked: leave the bytes alone
    return Change(path, before, after)


def plan_uninstall(path: Path, agent: str | None = None) -> Change:
    """The edit that removes the handlers from ``path`` (the backup's bytes when they match).

    Raises:
        ConfigError: ``path`` cannot be read or has an unexpected shape (see :func:`read`).
    """
    before, data = read(path, agent)
    if before is None:
        return Change(path, None, "")
    cleaned = without_ours(data)
    if cleaned == data:
        return Change(path, before, before)
    backup = path.with_name(path.name + ".bak")
    try:
        kept = backup.read_text(encoding="utf-8")
        if (json.loads(kept) if kept.strip() else {}) == cleaned:
            return Change(path, before, kept)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        pass  # no usable backup: write the cleaned JSON instead
    return Change(path, before, _dump(cleaned))


def apply(change: Change) -> None:
    """Write ``change``: the old file kept as ``.bak``, the new one replaced atomically.

    Raises:
        ConfigError: the file or its backup cannot be written (the file is left as it was).
    """
    if not change.changed or (change.before is None and not change.after):
        return
    path = change.path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600
        if change.before is not None:
            mode = path.stat().st_mode & 0o777
            path.with_name(path.name + ".bak").write_text(change.before, encoding="utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(change.after)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the settings file itself is still the old one
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write settings: {exc.strerror or exc}", file=path) from None


def installed(path: Path, agent: str | None = None) -> list[str]:
    """The handler commands ``path`` holds (empty when none or no file).

    Raises:
        ConfigError: ``path`` cannot be read or has an unexpected shape (see :func:`read`).
    """
    _, data = read(path, agent)
    groups = [g for gs in data.get("hooks", {}).values() if isinstance(gs, list) for g in gs]
    inner = [h for g in groups if isinstance(g, dict) for h in g.get("hooks") or []]
    return [str(h["command"]) for h in inner if is_ours(h)]


def self_test(command: str, env: Mapping[str, str], agent: str = "claude") -> str:
    """Run an installed handler command on a sample payload; say what happened."""
    spec = AGENTS[agent]
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            input=json.dumps(spec.sample).encode(),
            capture_output=True,
            env={**env, "TANGLEBRAIN_NO_LOG": "1"},
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    if proc.returncode != 0:
        return f"failed: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
    out = proc.stdout.decode(errors="replace").strip()
    if not out:
        return "ok (the sample was left alone)"
    try:
        found: Any = json.loads(out)
        for key in spec.rewritten:
            found = found[key]
    except (ValueError, KeyError, TypeError):
        return f"failed: unexpected output {out[:80]!r}"
    return "ok (the sample was rewritten)"


# --- Codex CLI's hook trust -----------------------------------------------------------


def codex_hash(event: str, matcher: str | None, hook: Mapping[str, Any]) -> str:
    """The hash Codex CLI records when the user trusts a command hook (``trusted_hash``).

    Codex hashes a normalized identity of the hook, not the file's text: the event's
    snake_case name, the matcher (for tool events), and the one handler with its
    defaults filled in, as compact JSON with sorted keys (checked against the hashes
    ``codex app-server`` reports in ``hooks/list``, Codex CLI 0.171.0).
    """
    handler: dict[str, Any] = {
        "type": "command",
        "command": hook.get("command"),
        "timeout": max(1, int(hook.get("timeout") or 600)),
        "async": bool(hook.get("async", False)),
    }
    if isinstance(hook.get("statusMessage"), str):
        handler["statusMessage"] = hook["statusMessage"]
    identity: dict[str, Any] = {"event_name": _snake(event), "hooks": [handler]}
    if matcher is not None and event in ("PreToolUse", "PostToolUse", "PermissionRequest",
                                         "SessionStart"):  # fmt: skip
        identity["matcher"] = matcher
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _snake(event: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", event).lower()


def codex_trust(path: Path, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(command, trust) of each handler in Codex's ``path`` (trusted, untrusted, modified…).

    Codex CLI skips a hook silently until the user trusts it (``/hooks`` in Codex); the
    trust lives in ``config.toml`` as ``[hooks.state."PATH:EVENT:GROUP:HANDLER"]`` with the
    hook's hash, and a hook whose hash changed since counts as untrusted again.

    Raises:
        ConfigError: ``path`` or ``config.toml`` cannot be read or has an unexpected shape.
    """
    _, data = read(path, "codex")
    home = Path(env.get("CODEX_HOME") or Path(env.get("HOME") or Path.home()) / ".codex")
    state = _codex_state(home / "config.toml")
    found = []
    for event, groups in data.get("hooks", {}).items():
        for g, group in enumerate(groups if isinstance(groups, list) else []):
            inner = group.get("hooks") if isinstance(group, dict) else None
            for h, hook in enumerate(inner if isinstance(inner, list) else []):
                if not is_ours(hook, "codex"):
                    continue
                entry = state.get(f"{path}:{_snake(event)}:{g}:{h}", {})
                trusted = entry.get("trusted_hash") if isinstance(entry, dict) else None
                if isinstance(entry, dict) and entry.get("enabled") is False:
                    trust = "disabled"
                elif trusted is None:
                    trust = "untrusted"
                elif trusted == codex_hash(event, group.get("matcher"), hook):
                    trust = "trusted"
                else:
                    trust = "modified since trusted"
                found.append((str(hook["command"]), trust))
    return found


def _codex_state(config: Path) -> dict[str, Any]:
    """The ``[hooks.state]`` table of Codex's ``config.toml`` ({} without one).

    Raises:
        ConfigError: the file cannot be read or parsed, or the table has an unexpected shape.
    """
    import tomllib

    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read Codex's config: {exc}", file=config) from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        why = exc if isinstance(exc, tomllib.TOMLDecodeError) else "nested too deeply"
        raise ConfigError(
            f"not valid TOML: {why}", file=config, fix="fix or move the file"
        ) from None
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict):
        raise bad(config, "hooks", hooks, "a table")
    state = hooks.get("state", {})
    if not isinstance(state, dict):
        raise bad(config, "hooks.state", state, "a table of hook states")
    for key, entry in state.items():
        where = f"hooks.state.{json.dumps(key, ensure_ascii=False)}"
        if not isinstance(entry, dict):
            raise bad(config, where, entry, "a table")
        if not isinstance(entry.get("trusted_hash", ""), str):
            raise bad(config, f"{where}.trusted_hash", entry["trusted_hash"], "a string")
        if not isinstance(entry.get("enabled", True), bool):
            raise bad(config, f"{where}.enabled", entry["enabled"], "a boolean")
    return state
