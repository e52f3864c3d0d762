"""End to end: a 219 KB CI log piped into a run reaches the orchestrator as a few KB."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tanglebrain.sim import Simulator
from tests.helpers import backend_toml, run_cli, write_roster

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
LOG = CORPUS / "cidiff_gha_google-auto_693_fail.log"
KEY = CORPUS / "keys" / "cidiff_gha_google-auto_693_fail.log.json"


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_ci_log_reaches_orchestrator_as_digest(tmp_path: Path, sim_thread: Simulator) -> None:
    spec = "orchestrator:fanout=2,id=e2e"
    entries = [
        backend_toml(
            "orch", spec, sim_thread.base_url, good_at=("planning",), cost=30, orchestrator=True
        ),
        backend_toml("reader", "echo:id=e2e", sim_thread.base_url, good_at=("long-context",)),
        backend_toml("coder", "worker:id=e2e", sim_thread.base_url, good_at=("code",)),
    ]
    write_roster(tmp_path / "roster.toml", *entries)
    log = LOG.read_bytes()
    out = run_cli(
        ["--json", "Why did this build fail?"], tmp_path, stdin=log.decode("utf-8", "replace")
    )
    assert out.code == 0, out.stderr
    first = next(r for r in sim_thread.requests if r.model == spec)
    context = "".join(str(m.get("content") or "") for m in first.messages)
    assert len(context.encode()) <= 8 * 1024, len(context.encode())
    truth = json.loads(KEY.read_text())["must_keep"]["groundtruth_lines"]
    flat = squash(context)
    assert [line for line in truth if squash(line) not in flat] == []
    # the specialist that was handed the attachment got all of it
    reader = [r for r in sim_thread.requests if r.model == "echo:id=e2e"]
    assert reader and len(reader[0].messages[-1]["content"]) >= len(log) * 0.95
    data = json.loads(out.stdout)
    assert data["usage"]["orchestrator_context_tokens"] < 4000


def test_binary_stdin_reaches_a_run_as_a_note(tmp_path: Path, sim_thread: Simulator) -> None:
    spec = "orchestrator:fanout=2,id=e2ebin"
    entries = [
        backend_toml(
            "orch", spec, sim_thread.base_url, good_at=("planning",), cost=30, orchestrator=True
        ),
        backend_toml("reader", "echo:id=e2ebin", sim_thread.base_url, good_at=("long-context",)),
        backend_toml("coder", "worker:id=e2ebin", sim_thread.base_url, good_at=("code",)),
    ]
    write_roster(tmp_path / "roster.toml", *entries)
    elf = "\x7fELF\x02\x01\x01" + "\x00" * 4000 + "".join(map(chr, range(1, 128))) * 40
    out = run_cli(["--json", "What is this file?"], tmp_path, stdin=elf)
    assert out.code == 0, out.stderr
    sent = [
        str(m.get("content") or "")
        for r in sim_thread.requests
        if r.model in (spec, "echo:id=e2ebin")
        for m in r.messages
    ]
    assert any("[… ELF executable, 9,087 bytes: binary, not shown …]" in c for c in sent)
    assert not any("\x00" in c or "\x01" in c for c in sent)
