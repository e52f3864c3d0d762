"""The ledger's schema: an ordered list of migrations, applied by ``PRAGMA user_version``.

A migration is never edited once released: a change is a new entry at the end, so that
any older file (and a newer tanglebrain reading it) knows exactly which steps it has.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, and every node of their trees (turn, tool, subtask, call, attempt).
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, started REAL NOT NULL, ended REAL, origin TEXT NOT NULL,
        mode TEXT NOT NULL, status TEXT NOT NULL, orchestrator TEXT, prompt TEXT NOT NULL,
        answer TEXT NOT NULL, error TEXT, subtasks INTEGER NOT NULL,
        subtasks_ok INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, cost_usd REAL,
        orchestrator_context_tokens INTEGER NOT NULL, warnings TEXT NOT NULL,
        digests TEXT NOT NULL
    );
    CREATE TABLE calls (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL, parent INTEGER, kind TEXT NOT NULL, role TEXT, idx INTEGER,
        name TEXT, task TEXT, status TEXT, backend TEXT, model TEXT, failover INTEGER,
        error TEXT, http_status INTEGER, started REAL, ended REAL, latency_ms REAL,
        prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, bytes_in INTEGER,
        bytes_out INTEGER, retries INTEGER, prompt TEXT, answer TEXT, extra TEXT,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 2: the orchestrator's price per token (for savings), indexes for runs/stats.
    """
    ALTER TABLE runs ADD COLUMN orchestrator_price_in REAL;
    ALTER TABLE runs ADD COLUMN orchestrator_price_out REAL;
    CREATE INDEX runs_started ON runs (started);
    CREATE INDEX calls_kind_backend ON calls (kind, backend);
    """,
    # 3: the review panel of a run (JSON: critiques, verdicts, overall), when there was one.
    """
    ALTER TABLE runs ADD COLUMN review TEXT;
    """,
    # 4: the prompt tokens read from and written to the provider's prompt cache (parts of
    # prompt_tokens), per call and attempt. NULL on older rows: not recorded, not zero.
    """
    ALTER TABLE calls ADD COLUMN cache_read_tokens INTEGER;
    ALTER TABLE calls ADD COLUMN cache_write_tokens INTEGER;
    """,
    # 5: one row per agent-hook or ``wrap`` invocation (see ``HOOK_COLUMNS``).
    """
    CREATE TABLE hook_log (
        time REAL NOT NULL, agent TEXT NOT NULL, event TEXT NOT NULL, tool TEXT,
        command TEXT, family TEXT, outcome TEXT, exit_code INTEGER, bytes_in INTEGER,
        bytes_out INTEGER, handler_ms REAL, command_ms REAL, raw_id TEXT
    );
    CREATE INDEX hook_log_time ON hook_log (time);
    """,
    # 6: the gate's decision of a run (``router.GateDecision`` as text), when asked.
    """
    ALTER TABLE runs ADD COLUMN gate TEXT;
    """,
    # 7: ``run --ab``: the pair id shared by a delegated run and its solo twin.
    """
    ALTER TABLE runs ADD COLUMN pair TEXT;
    CREATE INDEX runs_pair ON runs (pair);
    """,
)
VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to ``VERSION`` (under a write lock) and return the old version."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current >= VERSION:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for version in range(current + 1, VERSION + 1):
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {max(current, VERSION)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current
