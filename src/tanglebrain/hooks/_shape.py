"""The shape of an agent's hook settings, checked before anything walks or edits them.

Claude Code, Codex CLI and Gemini CLI share ``{"hooks": {EVENT: [{"matcher": …, "hooks":
[{"type": "command", "command": …, "timeout": …}]}]}}``; a file holding anything else is
refused with the JSON path of the first odd part, and left as it is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tanglebrain.errors import ConfigError

# Older Gemini CLI releases keep their hook switches among the events (now ``hooksConfig``).
_GEMINI_SWITCHES = frozenset({"enabled", "disabled", "notifications"})
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), f"a {type(value).__name__}")


def bad(path: Path, field: str, value: Any, want: str) -> ConfigError:
    """The error for the part at ``field`` of ``path``: what it is, and what it must be."""
    return ConfigError(
        f"is {_kind(value)}; must be {want}", file=path, field=field, fix="fix or remove it"
    )


def check_shape(path: Path, data: Any, agent: str | None = None) -> None:
    """Refuse settings whose hooks are not ``{EVENT: [{"hooks": [{…}]}]}``.

    Installing, uninstalling and ``status`` walk and edit this tree; any other shape is
    reported with its JSON path (``hooks.PreToolUse[0].hooks``) instead of crashing half
    way or silently dropping what the user wrote.

    Raises:
        ConfigError: the first part of ``data`` that has an unexpected shape.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"holds {_kind(data)}; must be a JSON object of settings",
            file=path,
            fix="fix or move the file",
        )
    if "hooks" not in data:
        return
    hooks = data["hooks"]
    if not isinstance(hooks, dict):
        raise bad(path, "hooks", hooks, "an object of hook events")
    for event, groups in hooks.items():
        if agent == "gemini" and event in _GEMINI_SWITCHES:
            continue
        where = f"hooks.{event}"
        if not isinstance(groups, list):
            raise bad(path, where, groups, "an array of matcher objects")
        for g, group in enumerate(groups):
            if not isinstance(group, dict):
                raise bad(path, f"{where}[{g}]", group, "a matcher object")
            if "hooks" not in group:
                continue
            inner = group["hooks"]
            if not isinstance(inner, list):
                raise bad(path, f"{where}[{g}].hooks", inner, "an array of hook objects")
            for h, hook in enumerate(inner):
                _check_hook(path, f"{where}[{g}].hooks[{h}]", hook)


def _check_hook(path: Path, where: str, hook: Any) -> None:
    """Refuse a hook entry whose fields the handlers read are of the wrong type."""
    if not isinstance(hook, dict):
        raise bad(path, where, hook, "a hook object")
    command = hook.get("command", "")
    if not isinstance(command, str):
        raise bad(path, f"{where}.command", command, "a string")
    timeout = hook.get("timeout", 0)
    if _kind(timeout) != "a number":
        raise bad(path, f"{where}.timeout", timeout, "a number")
    # json.loads reads 1e999 as inf and NaN as nan; Codex's trust hash needs an integer.
    if isinstance(timeout, float) and not math.isfinite(timeout):  # ints are all finite
        raise ConfigError(
            f"is {timeout}; must be a finite number",
            file=path,
            field=f"{where}.timeout",
            fix="fix or remove it",
        )
