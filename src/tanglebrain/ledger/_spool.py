"""The hook log's spool: what agent hooks append, folded into ``hook_log`` on read.

Hook handlers run on every tool call of a coding agent and never open SQLite: each
appends one JSON line to ``HOOK_SPOOL`` in the state directory
(``tanglebrain.hooks._log``). ``fold`` moves those lines into the ``hook_log`` table
whenever it is read, each line exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

HOOK_COLUMNS = (
    "time", "agent", "event", "tool", "command", "family", "outcome", "exit_code",
    "bytes_in", "bytes_out", "handler_ms", "command_ms", "raw_id",
)  # fmt: skip
# The spool hook handlers append to (``tanglebrain.hooks._log.SPOOL``). A fold renames it to
# ``HOOK_SPOOL.<pid>.<hex>`` before reading it.
HOOK_SPOOL = "hook_log.spool"
SPOOL_LOCK_WAIT_S = 2.0  # a spool whose writers hold it longer is folded next time


def fold(conn: sqlite3.Connection, folder: Path) -> None:
    """Move the spooled hook invocations into ``hook_log``: each line once, none lost.

    Under the database's write lock (which makes folds take turns), the spool is renamed
    to a name of this fold's own, so that new invocations start a new spool; an
    exclusive ``flock`` on it then waits for the writers that opened it before the
    rename (a writer checks after taking its shared lock that the file is still the
    spool, and writes to the new one if not). Its complete lines become rows in the
    same transaction as the rows of any spool an earlier fold left behind, and the
    files are deleted after the commit. A left-behind file was either never committed
    (its rows are missing) or committed but not deleted (they are all there): its rows
    are inserted only as often as they are not already in the table. A line that does
    not parse (a write cut short) is skipped.
    """
    if not spools(folder):
        return
    conn.execute("BEGIN IMMEDIATE")
    done: list[Path] = []
    try:
        left = spools(folder)
        left = [p for p in left if p.name != HOOK_SPOOL]
        mine = folder / f"{HOOK_SPOOL}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            os.rename(folder / HOOK_SPOOL, mine)
            taken = [mine]
        except FileNotFoundError:
            taken = []
        marks = ", ".join("?" * len(HOOK_COLUMNS))
        insert = f"INSERT INTO hook_log ({', '.join(HOOK_COLUMNS)}) VALUES ({marks})"
        same = " AND ".join(f"{name} IS ?" for name in HOOK_COLUMNS)
        for path in [*left, *taken]:
            rows = _spooled_rows(path)
            if rows is None:
                continue  # its writers hold it: the next fold takes it
            if path in left:
                rows = _missing(conn, rows, same)
            conn.executemany(insert, rows)
            done.append(path)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for path in done:
        path.unlink(missing_ok=True)


def spools(folder: Path) -> list[Path]:
    """The spool and the spools folds left behind in ``folder``, oldest name first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in sorted(names) if n == HOOK_SPOOL or n.startswith(HOOK_SPOOL + ".")]


def _spooled_rows(path: Path) -> list[tuple[Any, ...]] | None:
    """The rows of a renamed spool's complete lines; None while its writers hold it.

    Raises:
        OSError: it cannot be read.
    """
    import fcntl
    import json

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []  # deleted by a fold that committed it
    try:
        deadline = time.monotonic() + SPOOL_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.005)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    rows = []
    for line in b"".join(chunks).split(b"\n")[:-1]:  # the last piece has no newline: cut short
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        row = tuple(data.get(name) for name in HOOK_COLUMNS)
        if all(v is None or isinstance(v, (str, int, float)) for v in row):
            rows.append(row)
    return rows


def _missing(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], same: str) -> list[Any]:
    """``rows`` less those already in ``hook_log`` (counted: duplicates stay duplicates)."""
    wanted: dict[tuple[Any, ...], int] = {}
    for row in rows:
        wanted[row] = wanted.get(row, 0) + 1
    missing: list[Any] = []
    for row, count in wanted.items():
        there = conn.execute(f"SELECT COUNT(*) FROM hook_log WHERE {same}", row).fetchone()[0]
        missing += [row] * max(0, count - int(there))
    return missing
