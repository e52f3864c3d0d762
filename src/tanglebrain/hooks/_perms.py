"""Whether rewriting a Claude Code Bash call can widen the user's permissions.

A PreToolUse rewrite only runs with ``permissionDecision: "allow"``, and Claude Code then
matches deny and ask rules against the *rewritten* command, so ``wrap -- 'touch x'``
would escape a ``Bash(touch:*)`` deny rule. A rewrite is therefore allowed only when the
original command would have run without a prompt anyway:

* no deny or ask rule of any settings file may touch it. The check is deliberately broad:
  a rule matches when the first word of its prefix appears as a word anywhere in the
  command line (quotes removed or not) or in the rewritten command, and a command that
  hides what it runs (substitutions, ``eval``, ``sh -c``, quoted or ``$`` command names,
  heredocs) is refused as soon as any Bash deny or ask rule exists;
* and either the session runs in ``bypassPermissions`` mode, or every simple command of
  the line matches an allow rule. This check is deliberately narrow: plain commands only
  (no substitution, grouping, heredoc, background job or redirection to a file).

Settings that cannot be read or parsed mean "unsure", and unsure means no rewrite.
"""

from __future__ import annotations

import os

from tanglebrain.hooks import _json
from tanglebrain.hooks._config import home, read_text
from tanglebrain.hooks._record import Record
from tanglebrain.hooks._shell import glob

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from tanglebrain.hooks._shell import Shape

MANAGED = "/etc/claude-code/managed-settings.json"
SAFE_TARGETS = frozenset({"1", "2", "/dev/null"})
# Commands that run other commands given to them as data.
RUNS_OTHERS = frozenset(
    {"eval", "exec", "source", ".", "sh", "bash", "zsh", "dash", "ksh", "fish", "xargs",
     "env", "sudo", "doas", "su", "nohup", "watch", "parallel", "find", "command", "builtin"}
)  # fmt: skip
NEEDS_RULES = frozenset({"default", "acceptEdits", "dontAsk"})


class Rules(Record):
    """The Bash rules of every settings file: what is inside ``Bash(…)`` ("" for all of Bash)."""

    allow: tuple[str, ...] = ()
    ask: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


def settings_files(env: Mapping[str, str], project_dirs: Iterable[str]) -> list[str]:
    """Every Claude Code settings file whose permission rules apply to a session."""
    user = env.get("CLAUDE_CONFIG_DIR") or os.path.join(env.get("HOME") or home(), ".claude")
    files = [MANAGED, os.path.join(user, "settings.json")]
    files.append(os.path.join(user, "settings.local.json"))
    for project in dict.fromkeys(project_dirs):
        files += [
            os.path.join(project, ".claude", "settings.json"),
            os.path.join(project, ".claude", "settings.local.json"),
        ]
    return files


def load_rules(files: Iterable[str | os.PathLike[str]]) -> Rules | None:
    """The Bash rules of ``files`` (missing ones skipped); None when one cannot be read."""
    found: dict[str, list[str]] = {"allow": [], "ask": [], "deny": []}
    for path in files:
        try:
            data = _json.loads(read_text(path))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        perms = data.get("permissions", {}) if isinstance(data, dict) else None
        if not isinstance(perms, dict):
            return None
        for kind, rules in found.items():
            listed = perms.get(kind, [])
            if not isinstance(listed, list):
                return None
            rules += [r for item in listed if (r := _bash_rule(item)) is not None]
    return Rules(tuple(found["allow"]), tuple(found["ask"]), tuple(found["deny"]))


def _bash_rule(item: Any) -> str | None:
    """The content of a ``Bash`` / ``Bash(…)`` rule; None for other tools' rules."""
    if not isinstance(item, str):
        return None
    item = item.strip()
    if item == "Bash":
        return ""
    # ``Bash\s*\((.*)\)``, matched whole, without compiling a regular expression
    inner = item[4:].lstrip()
    if not item.startswith("Bash") or not inner.startswith("(") or not inner.endswith(")"):
        return None
    return inner[1:-1].strip() if len(inner) >= 2 else None


def refusal(command: str, rewritten: str, shape: Shape, rules: Rules, mode: str) -> str | None:
    """Why ``command`` must not be rewritten to ``rewritten``; None when it may be."""
    if not shape.ok:
        return "not understood"
    guarded = (*rules.deny, *rules.ask)
    for rule in guarded:
        if _touches(rule, command, rewritten, shape):
            return "matches a deny or ask rule"
    if guarded and _opaque(shape):
        return "hides what it runs, and deny or ask rules exist"
    if mode == "bypassPermissions":
        return None
    if mode not in NEEDS_RULES:
        return f"permission mode {mode}"
    if not _plain(shape):
        return "not a plain command"
    for cmd in shape.commands:
        if not any(_allows(rule, cmd.text) for rule in rules.allow):
            return "not allowed by an allow rule"
    return None


def _touches(rule: str, command: str, rewritten: str, shape: Shape) -> bool:
    star = rule.find("*")  # the head is what comes before the first ``:*`` or ``*``
    head = (rule if star < 0 else rule[: star - (rule[star - 1 : star] == ":")]).strip()
    if not head:
        return True
    first = head.split()[0]
    names = {first, first.rsplit("/", 1)[-1]} - {""}
    unquoted = command.replace("\\", "").replace("'", "").replace('"', "")
    texts = [command, unquoted, rewritten, *(c.text for c in shape.commands)]
    return any(_has_word(text, name) for name in names for text in texts)


def _word_char(ch: str) -> bool:
    """Whether ``ch`` is a word character of a regular expression (letters, digits, ``_``)."""
    return ch.isalnum() or ch == "_"


def _has_word(text: str, name: str) -> bool:
    r"""``re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text)``, without ``re``."""
    at = text.find(name)
    while at >= 0:
        before = text[at - 1] if at else ""
        end = at + len(name)
        after = text[end] if end < len(text) else ""
        if not (before and (_word_char(before) or before in ".-")) and not (
            after and (_word_char(after) or after == "-")
        ):
            return True
        at = text.find(name, at + 1)
    return False


def _opaque(shape: Shape) -> bool:
    if shape.substitution or shape.heredoc or shape.grouping:
        return True
    for cmd in shape.commands:
        if not cmd.plain_head or any("$" in w or "`" in w for w in cmd.words):
            return True
        if cmd.words[0].rsplit("/", 1)[-1] in RUNS_OTHERS:
            return True
    return False


def _plain(shape: Shape) -> bool:
    if shape.substitution or shape.grouping or shape.heredoc or shape.background:
        return False
    if any(t not in SAFE_TARGETS for t in shape.redirects):
        return False
    return all(c.plain_head and "=" not in c.words[0] for c in shape.commands)


def _allows(rule: str, text: str) -> bool:
    """Whether allow ``rule`` covers the simple command ``text`` (narrowly: prefix on words)."""
    if rule in ("", "*", ":*"):
        return True
    if rule.endswith(":*"):
        prefix = rule[:-2].rstrip()
        return bool(prefix) and (text == prefix or text.startswith(prefix + " "))
    if "*" in rule:
        return glob(text, rule)
    return text == rule
