"""The hook log: one ledger row per handler or ``wrap`` invocation, secrets scrubbed.

Logging never fails a tool call: any error writing the row is swallowed (the command's
output and status matter more than its statistics). ``TANGLEBRAIN_NO_LOG=1`` records
nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tanglebrain.hooks._config import no_log, state_dir
from tanglebrain.redact import MASK, Redactor


class _Lazy:
    """A regular expression compiled on first use."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.compiled: re.Pattern[str] | None = None

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        if self.compiled is None:
            self.compiled = re.compile(self.pattern)
        return self.compiled.sub(repl, text)


# Credentials that commands carry on their own: provider key formats, assignments and
# options named like secrets, passwords in URLs.
_KEY_FORMATS = _Lazy(
    r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_-]{8,}|sk_[A-Za-z0-9_]{8,}|AIza[0-9A-Za-z_-]{20,}|"
    r"xox[abp]-[A-Za-z0-9-]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_.-]+)"
)
_NAMED = _Lazy(
    r"(?i)(\b[A-Za-z0-9_]*(?:key|token|secret|passw(?:or)?d|auth)[A-Za-z0-9_]*\s*[=:]\s*|"
    r"--(?:password|passwd|token|secret|api-key|auth)[= ]\s*|\bBearer\s+|\bBasic\s+)"
    r"(?:(?:Bearer|Basic)\s+)?(\"[^\"]*\"|'[^']*'|[^\s'\"]+)"
)
_URL_PASSWORD = _Lazy(r"(://[^/\s:@]+:)[^/\s@]+@")


# Cheap tests first: most commands hold none of these, and compiling the expressions above
# would cost a few ms on every tool call.
_HINTS = ("sk-", "sk_", "aiza", "xox", "gh", "eyj", "key", "token", "secret", "passw", "auth",
          "bearer", "basic", "://")  # fmt: skip


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials masked: configured key values and anything shaped like one."""
    text = Redactor(secrets)(text)
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    text = _KEY_FORMATS.sub(MASK, text)
    text = _NAMED.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def record(row: Mapping[str, Any], env: Mapping[str, str], secrets: Iterable[str] = ()) -> None:
    """Append ``row`` to the hook log of the state directory in ``env``; never raises."""
    if no_log(env):
        return
    data = dict(row)
    data.setdefault("time", time.time())
    if isinstance(data.get("command"), str):
        data["command"] = scrub(data["command"], secrets)[:4000]
    try:
        from tanglebrain.ledger import Ledger, default_path

        Ledger(default_path(state_dir(env))).record_hook(data)
    except Exception:  # statistics must never break a tool call
        return
