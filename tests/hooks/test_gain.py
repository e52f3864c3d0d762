"""``tanglebrain gain``: honest figures from known hook-log rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks._gain import agent_view, summarize
from tanglebrain.hooks._log import record, scrub
from tanglebrain.ledger import Ledger, default_path
from tests.helpers import cli_env, run_cli


def _row(**values: Any) -> dict[str, Any]:
    base = {
        "time": 1000.0, "agent": "claude", "event": "wrap", "tool": "Bash", "command": "make",
        "family": "make", "outcome": "digest", "exit_code": 1, "bytes_in": 0, "bytes_out": 0,
        "handler_ms": 5.0, "command_ms": 100.0, "raw_id": None,
    }  # fmt: skip
    return {**base, **values}


ROWS = [
    # a failed build: Claude itself would keep ~10,150 bytes of the 200,000
    _row(bytes_in=200_000, bytes_out=6_000, exit_code=2),
    # a successful 100 KB install: Claude would show a 2 KB preview; a 2,500-byte digest loses
    _row(family="npm ci", exit_code=0, bytes_in=100_000, bytes_out=2_500),
    # a small output passed through: nothing saved, nothing lost
    _row(family="pytest", outcome="pass", exit_code=0, bytes_in=300, bytes_out=300),
    # Codex keeps 10,000 (+ note) of a failure; Gemini 40,000 (+ note) of a big output
    _row(agent="codex", family="cargo test", bytes_in=50_000, bytes_out=4_000),
    _row(agent="gemini", family="cargo test", exit_code=0, bytes_in=60_000, bytes_out=5_000),
    # handler calls
    _row(event="pre-tool-use", outcome="rewrite", bytes_in=None, bytes_out=None, handler_ms=10.0),
    _row(event="pre-tool-use", outcome="skip: x", bytes_in=None, bytes_out=None, handler_ms=30.0),
]


@pytest.mark.parametrize(
    ("agent", "raw", "status", "seen"),
    [
        ("claude", 20_000, 0, 20_000),
        ("claude", 40_000, 0, 2_198),
        ("claude", 40_000, 1, 10_150),
        ("claude", 8_000, 1, 8_000),
        ("codex", 40_000, 0, 10_150),
        ("gemini", 30_000, 0, 30_000),
        ("gemini", 90_000, 0, 40_150),
        ("cli", 90_000, 0, 90_000),
    ],
)
def test_agent_view(agent: str, raw: int, status: int, seen: int) -> None:
    assert agent_view(agent, raw, status) == seen


def test_summary_counts_savings_honestly() -> None:
    data = summarize(ROWS)
    assert data["calls"] == 5 and data["digested"] == 4
    assert data["bytes_raw"] == 410_300
    assert data["bytes_in"] == 10_150 + 2_198 + 300 + 10_150 + 40_150
    assert data["bytes_out"] == 6_000 + 2_500 + 300 + 4_000 + 5_000
    assert data["bytes_saved"] == data["bytes_in"] - data["bytes_out"] == 45_148
    assert data["share_saved"] == pytest.approx(45_148 / 62_948)
    families = {f["family"]: f for f in data["families"]}
    assert families["npm ci"]["bytes_saved"] == -302  # grew: a loss, not zero
    assert families["pytest"]["bytes_saved"] == 0
    assert families["cargo test"]["bytes_saved"] == 6_150 + 35_150
    assert data["hook_calls"] == 2 and data["rewrites"] == 1
    assert (data["handler_p50_ms"], data["handler_p95_ms"]) == (10.0, 30.0)
    assert data["wrap_overhead_p50_ms"] == 5.0


def test_gain_reads_the_ledger(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for row in ROWS:
        record(row, env)
    out = run_cli(["gain", "--json"], tmp_path, env=env)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["bytes_saved"] == 45_148
    assert json.loads(run_cli(["gain", "--since", "1h", "--json"], tmp_path).stdout)["calls"] == 0
    text = run_cli(["gain"], tmp_path, env=env).stdout
    assert "saved: 45,148 (72%)" in text and "npm ci" in text
    assert run_cli(["gain", "--since", "soon"], tmp_path).code == 2


def test_wrap_and_hook_invocations_are_logged_scrubbed(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    command = "API_TOKEN=s3cr3tvalue99 seq 1 5000; exit 1"
    assert run_cli(["wrap", "--agent", "claude", "--", command], tmp_path, env=env).code == 1
    rows = Ledger(default_path(tmp_path / "state")).hook_rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["command"] == "API_TOKEN=[redacted] seq 1 5000; exit 1"
    assert (row["agent"], row["event"], row["exit_code"], row["outcome"]) == (
        "claude", "wrap", 1, "digest",
    )  # fmt: skip
    assert row["bytes_in"] == len("".join(f"{i}\n" for i in range(1, 5001)))
    assert 0 < row["bytes_out"] < row["bytes_in"] and row["raw_id"]
    quiet = cli_env(tmp_path, TANGLEBRAIN_NO_LOG="1")
    run_cli(["wrap", "--", "true"], tmp_path, env=quiet)
    assert len(Ledger(default_path(tmp_path / "state")).hook_rows()) == 1


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz make", "GITHUB_TOKEN=[redacted] make"),
        ("npm publish --token abc123", "npm publish --token [redacted]"),
        ('curl -H "Authorization: Bearer xyz12345678" x', 'curl -H "Authorization: [redacted]" x'),
        ("git clone https://u:pw@host/r", "git clone https://u:[redacted]@host/r"),
        ("echo sk-abcdefghijklmnop", "echo [redacted]"),
        ("pytest -k token_tests", "pytest -k token_tests"),
    ],
)
def test_scrub(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


def test_scrub_configured_key_values() -> None:
    assert scrub("make KEYLESS=abcd1234efgh", ["abcd1234efgh"]) == "make KEYLESS=[redacted]"
