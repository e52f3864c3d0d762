"""Installing the handlers into Claude Code's settings file, and taking them out again.

The file is edited in place: every other setting and every other hook stays as it was,
installing twice changes nothing, and the previous version is kept as ``<file>.bak``.
Uninstalling restores the exact bytes of the backup when nothing else changed since
(odd formatting included), else writes the same JSON without the handlers.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tanglebrain.errors import ConfigError

# (event, matcher, handler event name) of every handler installed
EVENTS = (("PreToolUse", "Bash", "pre-tool-use"), ("UserPromptSubmit", None, "user-prompt-submit"))
HOOK_TIMEOUT_S = 10
_OURS = re.compile(r"tanglebrain['\"]?\s+hook\s+claude\s")
SAMPLE = {
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "pytest -q"},
    "permission_mode": "bypassPermissions",
}


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


def settings_path(scope: str, env: Mapping[str, str], cwd: Path) -> Path:
    """Claude Code's settings file of ``scope`` (``user`` or ``project``)."""
    if scope == "project":
        return cwd / ".claude" / "settings.json"
    home = Path(env.get("HOME") or Path.home())
    return Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude") / "settings.json"


def is_ours(hook: Any) -> bool:
    """Whether a hook entry runs one of these handlers."""
    return isinstance(hook, dict) and bool(_OURS.search(str(hook.get("command", ""))))


def read(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(text, data) of a settings file; (None, {}) when it does not exist.

    Raises:
        ConfigError: the file cannot be read or is not a JSON object with a ``hooks`` object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read settings: {exc}", file=path) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=path, fix="fix or move the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("hooks", {}), dict):
        raise ConfigError("not a settings object with a hooks object", file=path)
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


def with_ours(data: dict[str, Any], exe: str) -> dict[str, Any]:
    """``data`` with exactly one entry per handler, run by ``exe``."""
    out = without_ours(data)
    hooks = out.setdefault("hooks", {})
    for event, matcher, name in EVENTS:
        entry = {"type": "command", "command": f"{exe} hook claude {name}"}
        group: dict[str, Any] = {"matcher": matcher} if matcher else {}
        group["hooks"] = [{**entry, "timeout": HOOK_TIMEOUT_S}]
        hooks.setdefault(event, []).append(group)
    return out


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def plan_install(path: Path, exe: str) -> Change:
    """The edit that installs the handlers into ``path``."""
    before, data = read(path)
    after = _dump(with_ours(data, exe))
    if before is not None and json.loads(after) == data:
        after = before  # already installed as asked: leave the bytes alone
    return Change(path, before, after)


def plan_uninstall(path: Path) -> Change:
    """The edit that removes the handlers from ``path`` (the backup's bytes when they match)."""
    before, data = read(path)
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
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return Change(path, before, _dump(cleaned))


def apply(change: Change) -> None:
    """Write ``change``: the old file kept as ``.bak``, the new one replaced atomically."""
    if not change.changed or (change.before is None and not change.after):
        return
    path = change.path
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600
    if change.before is not None:
        mode = path.stat().st_mode & 0o777
        path.with_name(path.name + ".bak").write_text(change.before, encoding="utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(change.after)
    os.replace(tmp, path)


def installed(path: Path) -> list[str]:
    """The handler commands ``path`` holds (empty when none, or when it cannot be read)."""
    try:
        _, data = read(path)
    except ConfigError:
        return []
    groups = [g for gs in data.get("hooks", {}).values() if isinstance(gs, list) for g in gs]
    inner = [h for g in groups if isinstance(g, dict) for h in g.get("hooks") or []]
    return [str(h["command"]) for h in inner if is_ours(h)]


def self_test(command: str, env: Mapping[str, str]) -> str:
    """Run an installed handler command on a sample payload; say what happened."""
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            input=json.dumps(SAMPLE).encode(),
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
        json.loads(out)["hookSpecificOutput"]["updatedInput"]["command"]
    except (ValueError, KeyError, TypeError):
        return f"failed: unexpected output {out[:80]!r}"
    return "ok (the sample was rewritten)"
