"""The run ledger: every run and every call of its tree, in SQLite.

One file, ``runs.db`` in the state directory (``0700``), created ``0600``, in WAL mode with a
busy timeout, its schema built by an ordered list of migrations (``PRAGMA
user_version``). A run is written once, at its end, in one ``BEGIN IMMEDIATE``
transaction, retried with backoff while another process holds the lock, so that
parallel ``tanglebrain`` processes never show "database is locked". Failures raise
``LedgerError``; the CLI turns them into a warning. This package is the only one that
imports ``sqlite3`` (``_schema`` holds the migrations). No API key or header is ever
stored: the trace holds none, and ``record`` scrubs the key values it is given from every
text it writes.

The ``hook_log`` table holds one row per invocation of an agent hook or of ``wrap``
(``record_hook``, ``hook_rows``). Those run on every tool call of a coding agent, so this
module imports the run-tree code (``_rows``, ``trace``) only when a run is read or written,
and the handlers do not open the database at all: they append each row as a line of JSON
to the spool file ``hook_log.spool`` next to it (``tanglebrain.hooks._log``), and
``hook_rows`` folds the spool into the table before it reads (``ledger._spool``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tanglebrain.backoff import backoff
from tanglebrain.errors import LedgerError
from tanglebrain.ledger import _spool
from tanglebrain.ledger._schema import MIGRATIONS, VERSION, migrate
from tanglebrain.ledger._spool import HOOK_COLUMNS, HOOK_SPOOL
from tanglebrain.state import ensure_dir
from tanglebrain.surrogates import mend

if TYPE_CHECKING:
    from tanglebrain.ledger._rows import StoredRun
    from tanglebrain.trace import Run

__all__ = [
    "HOOK_COLUMNS", "HOOK_SPOOL", "MIGRATIONS", "VERSION", "Ledger", "LedgerError", "StoredRun",
    "default_path", "migrate",
]  # fmt: skip

FILENAME = "runs.db"
BUSY_TIMEOUT_S = 5.0
WRITE_TRIES = 8
T = TypeVar("T")
Row = dict[str, Any]


def __getattr__(name: str) -> Any:
    if name == "StoredRun":  # re-exported lazily: it needs the run-tree code
        from tanglebrain.ledger._rows import StoredRun

        return StoredRun
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_path(state_dir: Path) -> Path:
    """Where the ledger lives inside the state directory."""
    return state_dir / FILENAME


class Ledger:
    """The SQLite file at ``path``; each method opens and closes its own connection.

    Args:
        path: the file.
        keep_open: writes share one connection, kept open until ``close`` (a server's
            ledger). Closing the last connection to a WAL database checkpoints it, ~6 ms
            of fsync here: per run, that was a server's largest cost. Writes must then
            come one at a time (the session's writer limiter); reads still open their own.
    """

    def __init__(self, path: Path, *, keep_open: bool = False) -> None:
        self.path = path
        self._keep_open = keep_open
        self._kept: sqlite3.Connection | None = None
        self._kept_id: tuple[int, int] | None = None  # (device, inode) of the kept file

    def _same_file(self) -> bool:
        """Whether the kept connection's file is still the one at ``path``."""
        return self._kept_id is not None and _file_id(self.path) == self._kept_id

    def close(self) -> None:
        """Close the kept write connection, if any (the next write opens another)."""
        conn, self._kept = self._kept, None
        if conn is not None:
            conn.close()

    # --- connections ------------------------------------------------------------

    @contextmanager
    def _connect(self, *, create: bool, keep: bool = False) -> Iterator[sqlite3.Connection]:
        if keep and self._kept is not None and not self._same_file():
            self.close()  # the file was removed or replaced: write to the one at the path
        if keep and self._kept is not None:
            try:
                yield self._kept
            except BaseException:
                self.close()  # whatever state it is in, the next write starts afresh
                raise
            return
        if create:
            ensure_dir(self.path.parent)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=not keep
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
            yield conn
        except BaseException:
            conn.close()
            raise
        if keep:
            self._kept, self._kept_id = conn, _file_id(self.path)
        else:
            conn.close()

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying with jittered backoff while the database is busy."""
        for attempt in range(1, WRITE_TRIES + 1):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == WRITE_TRIES:
                    # Busy, or the disk's problem (full, read-only, I/O): the file is fine.
                    hint = " (another tanglebrain holds it; try again)" if busy else ""
                    raise LedgerError(f"cannot {what} {self.path}: {exc}{hint}") from None
            except sqlite3.DatabaseError as exc:  # not a database, a damaged one
                raise LedgerError(f"cannot {what} {self.path}: {exc}{self._aside()}") from None
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot {what} {self.path}: {exc}") from None
            except OSError as exc:
                raise LedgerError(f"cannot {what} {self.path}: {exc.strerror or exc}") from None
            time.sleep(backoff(attempt, 0.03, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _aside(self) -> str:
        """How to get going again with a file that is not a ledger (or a damaged one)."""
        return f" (move it aside to start a new ledger: mv {self.path} {self.path}.bad)"

    def _read(self, fn: Callable[[sqlite3.Connection], T], empty: T) -> T:
        if not self.path.exists():
            return empty

        def go() -> T:
            with self._connect(create=False) as conn:
                return fn(conn)

        return self._retry("read", go)

    # --- writing ----------------------------------------------------------------

    def record(
        self,
        run: Run,
        *,
        orchestrator_price: tuple[float, float] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        """Store ``run`` and its whole tree in one transaction (replacing an older copy).

        Args:
            run: the run, normally finished.
            orchestrator_price: the orchestrator's (input, output) USD per token, or None.
            secrets: values (API keys) that must never reach the file: every run of 8
                or more of their characters is replaced by ``[redacted]`` wherever it
                occurs in the run's text.

        Raises:
            LedgerError: the file could not be created or written.
        """
        self.record_many([(run, orchestrator_price)], secrets=secrets)

    def record_many(
        self, runs: Sequence[tuple[Run, tuple[float, float] | None]], *, secrets: Sequence[str] = ()
    ) -> None:
        """Store each (run, orchestrator price) as ``record`` does, all in one transaction.

        Raises:
            LedgerError: the file could not be created or written (then none was).
        """
        from tanglebrain.ledger._rows import (
            CALL_COLUMNS,
            N_CALL,
            RUN_COLUMNS,
            call_rows,
            run_row,
            scrubber,
        )

        scrub = scrubber(secrets)
        rows = [
            (run.id, scrub(run_row(run, price)), [scrub(row) for row in call_rows(run)])
            for run, price in runs
        ]
        insert_run = f"INSERT OR REPLACE INTO runs ({RUN_COLUMNS}) VALUES ({{}})"
        insert_calls = f"INSERT INTO calls ({CALL_COLUMNS}) VALUES ({', '.join('?' * N_CALL)})"

        def go() -> None:
            with self._connect(create=True, keep=self._keep_open) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for run_id, head, nodes in rows:
                        conn.execute("DELETE FROM calls WHERE run_id = ?", (run_id,))
                        conn.execute(insert_run.format(", ".join("?" * len(head))), head)
                        conn.executemany(insert_calls, nodes)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

        try:
            try:
                self._retry("write", go)
            except UnicodeEncodeError:
                # A lone surrogate (a character split across a stream's JSON escapes) has
                # no UTF-8 form: pairs are joined, strays become U+FFFD, and it is stored.
                rows = [(i, _mended(head), [_mended(n) for n in nodes]) for i, head, nodes in rows]
                self._retry("write", go)
        except (ValueError, OverflowError) as exc:  # a value SQLite cannot bind
            raise LedgerError(f"cannot write {self.path}: {exc}") from None

    # --- reading ----------------------------------------------------------------

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` runs, newest first, as column dicts."""
        from tanglebrain.ledger._rows import RUN_COLUMNS

        def go(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started DESC LIMIT ?", (limit,)
            )
            return _dicts(cur)

        return self._read(go, [])

    def resolve(self, ref: str) -> list[str]:
        """Run ids matching ``ref`` (``latest`` or an id prefix); at most two."""

        def go(conn: sqlite3.Connection) -> list[str]:
            if ref == "latest":
                cur = conn.execute("SELECT id FROM runs ORDER BY started DESC LIMIT 1")
            elif ref.isalnum():
                cur = conn.execute(
                    "SELECT id FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2",
                    (len(ref), ref.lower()),
                )
            else:
                return []
            return [str(row[0]) for row in cur]

        return self._read(go, [])

    def load(self, run_id: str) -> StoredRun | None:
        """The run with this exact id, rebuilt as a trace, or None."""
        from tanglebrain.ledger._rows import CALL_COLUMNS, RUN_COLUMNS, rebuild

        def go(conn: sqlite3.Connection) -> StoredRun | None:
            cur = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
            rows = _dicts(cur)
            if not rows:
                return None
            cur = conn.execute(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            return rebuild(rows[0], _dicts(cur))

        return self._read(go, None)

    def rows_since(self, since: float | None) -> tuple[list[Row], list[Row]]:
        """(runs, calls of kind ``call``) of the runs started at or after ``since``."""
        from tanglebrain.ledger._rows import RUN_COLUMNS

        def go(conn: sqlite3.Connection) -> tuple[list[Row], list[Row]]:
            start = since if since is not None else float("-inf")
            runs = _dicts(
                conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE started >= ?", (start,))
            )
            calls = _dicts(
                conn.execute(
                    "SELECT c.run_id, c.role, c.backend, c.status, c.failover, c.latency_ms, "
                    "c.prompt_tokens, c.completion_tokens, c.cost_usd, c.retries, "
                    "c.cache_read_tokens, c.cache_write_tokens FROM calls c "
                    "JOIN runs r ON r.id = c.run_id WHERE c.kind = 'call' AND r.started >= ?",
                    (start,),
                )
            )
            return runs, calls

        empty: tuple[list[Row], list[Row]] = ([], [])
        return self._read(go, empty)

    def route_rows(self, since: float) -> list[Row]:
        """Every call of a sub-task that ended at or after ``since``: routing evidence.

        One row per call, oldest first: its run, the sub-task's index, tag, prompt and
        how it was routed (``extra`` JSON), the backend, status, latency, cost, end,
        the error kind of its last attempt (``kind``) and whether it was the sub-task's
        first call (``first``).
        """

        def go(conn: sqlite3.Connection) -> list[Row]:
            return _dicts(
                conn.execute(
                    "SELECT c.run_id, s.idx, s.task, s.prompt, s.extra, c.backend, c.status, "
                    "c.latency_ms, c.cost_usd, c.ended, "
                    "(SELECT json_extract(a.extra, '$.error_kind') FROM calls a "
                    " WHERE a.run_id = c.run_id AND a.parent = c.seq "
                    " ORDER BY a.seq DESC LIMIT 1) AS kind, "
                    "c.seq = (SELECT MIN(f.seq) FROM calls f WHERE f.run_id = c.run_id "
                    " AND f.parent = c.parent AND f.kind = 'call') AS first "
                    "FROM calls c JOIN calls s ON s.run_id = c.run_id AND s.seq = c.parent "
                    "WHERE c.kind = 'call' AND s.kind = 'subtask' AND c.ended >= ? "
                    "ORDER BY c.ended",
                    (since,),
                )
            )

        return self._read(go, [])

    # --- the hook log -------------------------------------------------------------

    def record_hook(self, row: Mapping[str, Any]) -> None:
        """Append one hook invocation (``HOOK_COLUMNS``; missing ones are NULL).

        The caller scrubs secrets from the command first; this only stores.

        Raises:
            LedgerError: the file could not be created or written.
        """
        values = tuple(row.get(name) for name in HOOK_COLUMNS)

        def go() -> None:
            with self._connect(create=True) as conn:
                marks = ", ".join("?" * len(HOOK_COLUMNS))
                conn.execute(
                    f"INSERT INTO hook_log ({', '.join(HOOK_COLUMNS)}) VALUES ({marks})", values
                )

        self._retry("write", go)

    def hook_rows(
        self, since: float | None = None, *, agent: str | None = None, limit: int | None = None
    ) -> list[Row]:
        """Hook invocations at or after ``since`` (of ``agent`` when given), newest first.

        The spooled invocations are folded into the table first.
        """

        def go() -> list[Row]:
            with self._connect(create=not self.path.exists()) as conn:
                _spool.fold(conn, self.path.parent)
                sql = f"SELECT {', '.join(HOOK_COLUMNS)} FROM hook_log WHERE time >= ?"
                args: list[Any] = [since if since is not None else float("-inf")]
                if agent is not None:
                    sql += " AND agent = ?"
                    args.append(agent)
                sql += " ORDER BY time DESC, rowid DESC"
                if limit is not None:
                    sql += " LIMIT ?"
                    args.append(limit)
                return _dicts(conn.execute(sql, args))

        if not self.path.exists() and not _spool.spools(self.path.parent):
            return []
        return self._retry("read", go)


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _mended(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with every text made encodable: surrogate pairs joined, strays replaced."""
    return tuple(mend(v) if isinstance(v, str) else v for v in row)
