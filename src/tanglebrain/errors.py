"""The one exception tree of tanglebrain.

Every expected failure is a ``TanglebrainError``. Each class stores its fields and
writes its own one-line message, and carries the process exit code the CLI uses::

    TanglebrainError                      exit 1
    ├── ConfigError(msg, file, line, backend, field, fix)   exit 2
    │   ├── MissingKeyError(backend, env_var)                exit 2
    │   └── UsageError(msg, fix)                             exit 2
    ├── BackendError(backend, reason, kind, status, retryable)  exit 1
    │   └── CircuitOpen(backend)                             exit 1
    ├── NoAnswerError(failures)                              exit 1
    ├── BudgetExceeded(cap_usd, spent_usd, needed_usd, backend)  exit 3
    ├── OutputClosed()                  exit 0 (the reader went away: ``| head``)
    └── LedgerError(msg)                                     (a warning, never fatal)

The CLI catches only this tree; anything else is a bug and shows a traceback.
``Terminated`` (SIGTERM) stands outside it, beside ``KeyboardInterrupt``.
A backend failure inside a fan-out never escapes as an exception: delegation turns
it into a tool result for the orchestrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal


class TanglebrainError(Exception):
    """Root of every error tanglebrain raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TanglebrainError):
    """A problem in the user's roster or settings: the user must fix something.

    Attributes:
        file: the roster file, when the error comes from one.
        line: 1-based line number inside ``file`` when known.
        backend: the backend id involved, when known.
        field: the offending field (``backend.cost``, ``settings.max_turns``, ...).
        fix: one short sentence telling the user what to do.
    """

    exit_code = 2

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        backend: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.line = line
        self.backend = backend
        self.field = field
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        subject = []
        if self.backend:
            subject.append(f"backend '{self.backend}'")
        if self.field:
            subject.append(f"field '{self.field}'")
        head = (", ".join(subject) + ": ") if subject else ""
        tail = f" ({self.fix})" if self.fix else ""
        return one_line(f"{where}{head}{self.problem}{tail}")


def one_line(text: str) -> str:
    r"""``text`` with control characters escaped (``\n``, ``\x1b``): one line, no escapes.

    Roster values end up in error messages; a newline or a terminal escape sequence in an
    id must not break the one-line error or reach the terminal raw.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What a file that failed to decode holds, for its error: the first bad byte and where."""
    bad = exc.object[exc.start : exc.start + 1]
    return f"not UTF-8 text (byte 0x{bad.hex() or '??'} at offset {exc.start})"


class MissingKeyError(ConfigError):
    """An enabled backend is about to be used but its API-key variable is unset.

    The message names the roster file and line of the backend's ``api_key_env`` when
    they are known (see :meth:`located`), like every other roster error.
    """

    def __init__(
        self,
        backend: str,
        env_var: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
    ) -> None:
        self.env_var = env_var
        super().__init__(
            f"environment variable {env_var} is not set",
            file=file,
            line=line,
            backend=backend,
            field="api_key_env",
            fix=f"export {env_var}=... or run `tanglebrain backends disable {backend}`",
        )

    def located(self, file: Path | str, line: int | None) -> MissingKeyError:
        """The same error, naming the roster file and line where the key is configured."""
        return MissingKeyError(self.backend or "", self.env_var, file=file, line=line)


class UsageError(ConfigError):
    """The command line itself is wrong (bad option value, missing prompt, ...)."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem, fix=fix)


ErrorKind = Literal[
    "timeout", "connect", "rate_limit", "auth", "not_found", "context", "server", "client",
    "malformed", "empty", "cut", "circuit", "other",
]  # fmt: skip
"""What went wrong with a backend call, for code to read (the reason is for people).

``timeout``: silence past the timeout; ``connect``: the connection failed or broke;
``rate_limit``: HTTP 429; ``auth``: 401/403; ``not_found``: 404 (a model name);
``context``: the prompt is over the model's window; ``server``: 5xx; ``client``: another
4xx; ``malformed``: a reply that is not a completion; ``empty``: a completion with
nothing in it; ``cut``: a stream that ended before its finish reason; ``circuit``: skipped
after repeated failures; ``other``: anything else.
"""


class BackendError(TanglebrainError):
    """One backend call failed (after its retries, when ``retryable``).

    Attributes:
        backend: backend id.
        reason: short human reason; never a raw response body.
        kind: what went wrong, for code (see ``ErrorKind``).
        status: HTTP status when there was one, else None (connection, timeout, ...).
        retryable: whether trying again (or elsewhere) may help.
        retry_after: seconds the server asked us to wait, when it said so.
    """

    def __init__(
        self,
        backend: str,
        reason: str,
        *,
        kind: ErrorKind = "other",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.backend = backend
        self.kind: ErrorKind = kind
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{backend}: {code}{reason}")


class CircuitOpen(BackendError):
    """A backend was skipped without a call: it failed repeatedly and an alternative exists."""

    def __init__(self, backend: str) -> None:
        super().__init__(backend, "skipped: it failed repeatedly (circuit open)", kind="circuit")


class NoAnswerError(TanglebrainError):
    """Every candidate backend failed; the message has one line per backend."""

    def __init__(self, failures: Sequence[BackendError | ConfigError]) -> None:
        self.failures = list(failures)
        lines = [f"  {f}" for f in self.failures] or ["  (no backend was tried)"]
        super().__init__("no answer: every candidate backend failed\n" + "\n".join(lines))


class BudgetExceeded(TanglebrainError):
    """A call would push the run's spend over its hard cap."""

    exit_code = 3

    def __init__(
        self,
        cap_usd: float,
        spent_usd: float,
        needed_usd: float | None,
        backend: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.cap_usd = cap_usd
        self.spent_usd = spent_usd
        self.needed_usd = needed_usd
        self.backend = backend
        self.reason = reason
        who = f" for backend '{backend}'" if backend else ""
        if reason:
            text = f"budget ${cap_usd:.4f}: call{who} refused: {reason}"
        else:
            need = f"${needed_usd:.4f}" if needed_usd is not None else "an unknown amount"
            text = (
                f"budget exhausted: ${spent_usd:.4f} of ${cap_usd:.4f} spent, "
                f"the next call{who} may need {need} (raise --budget)"
            )
        super().__init__(text)


class OutputFailed(TanglebrainError):
    """Stdout could not be written (a full disk): the answer did not reach its reader."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot write: {reason} (free some space, or send stdout elsewhere)")


class OutputClosed(TanglebrainError):
    """Stdout was closed by its reader (``| head``): stop quietly, nobody is listening."""

    exit_code = 0

    def __init__(self) -> None:
        super().__init__("stdout was closed by its reader; the run was stopped")


class LedgerError(TanglebrainError):
    """The run ledger could not be written or read; never sinks a run.

    A command that reads the ledger (``runs``, ``show``, ``stats``, ``routes``, ``gain``)
    exits 2 with it: the state file is the problem, not a backend.
    """

    exit_code = 2


class Terminated(BaseException):
    """SIGTERM (``timeout``, CI, a service manager) stopped ``run``.

    Like ``KeyboardInterrupt`` it derives from ``BaseException``: no ``except Exception``
    swallows it on its way to the CLI's edge, which exits 143 (``cli.run.SIGTERM_EXIT``).
    """

    def __str__(self) -> str:
        return "stopped by SIGTERM"
