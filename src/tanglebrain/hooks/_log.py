"""The hook log: one ledger row per handler or ``wrap`` invocation, secrets scrubbed.

A handler does not open the ledger (``sqlite3`` and a transaction would cost more than the
rest of the handler): it appends the row, as one line of JSON, to the spool file
``hook_log.spool`` of the state directory, in a single ``O_APPEND`` write under a shared
``flock``, the file private (``0600``). The ledger folds the spool into its ``hook_log``
table whenever the table is read (``Ledger.hook_rows``: ``gain``, ``hooks status``); the
exclusive lock it takes on the spool it folds waits for the writes in flight, and a writer
that finds the spool renamed under it writes again to the new one. See the ledger for the
fold.

Logging never fails a tool call: any error writing the row is swallowed (the command's
output and status matter more than its statistics). ``TANGLEBRAIN_NO_LOG=1`` records
nothing.
"""

from __future__ import annotations

import os
import time

from tanglebrain.hooks._config import no_log, state_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

SPOOL = "hook_log.spool"  # the same name as ``tanglebrain.ledger.HOOK_SPOOL``
MASK = "[redacted]"  # ``tanglebrain.redact.MASK``
TRIES = 8  # writes retried when a fold renamed the spool between open and lock


class _Lazy:
    """A regular expression compiled on first use (``re`` is imported then too)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.compiled: re.Pattern[str] | None = None

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        if self.compiled is None:
            import re

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
    secrets = [s for s in secrets if s]
    if secrets:
        from tanglebrain.redact import Redactor

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
        from tanglebrain.hooks._json import dumps

        append(state_dir(env), (dumps(data) + "\n").encode("ascii"))
    except Exception:  # statistics must never break a tool call
        return


def append(state: str, line: bytes) -> None:
    """Append ``line`` (one whole JSON line) to the spool of the state directory ``state``.

    Raises:
        OSError: the state directory or the spool cannot be written.
    """
    import fcntl

    path = os.path.join(state, SPOOL)
    for _ in range(TRIES):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            make_state_dir(state)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            opened = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                continue  # folded away between open and lock: write to a new spool
            if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                os.write(fd, line)
                return
        finally:
            os.close(fd)
    raise OSError(f"cannot append to {path}: renamed under every try")


def make_state_dir(path: str) -> None:
    """``tanglebrain.state.ensure_dir`` without ``pathlib``: create ``path`` ``0700``."""
    if os.path.isdir(path):
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    os.chmod(path, 0o700)
