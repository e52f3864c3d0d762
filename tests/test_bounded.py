"""Bounded replies: every call sends an output cap, and a reply cut at it says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tanglebrain import models
from tanglebrain.ledger import Ledger, default_path
from tanglebrain.models import _repeat
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import parse
from tanglebrain.sim import Simulator
from tanglebrain.sim._scripts import LOOP_SENTENCE
from tanglebrain.trace import Run


def entry(
    sim: Simulator, bid: str, spec: str, tag: str, orch: bool = False, extra: str = ""
) -> str:
    return (
        f'[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{sim.base_url}"\n'
        f'good_at = ["{tag}"]\ncost = {30 if orch else 1}\ncan_orchestrate = {str(orch).lower()}\n'
        f"price = {{ input = 1.0, output = 2.0 }}\n{extra}\n"
    )


def sent_max_tokens(sim: Simulator, spec: str) -> list[object]:
    return [r.body.get("max_tokens") for r in sim.requests if r.model == spec]


CAPS = [
    # name, [settings], orchestrator extra, worker extra, budget, (orchestrator, worker) caps
    ("defaults", "", "", "", None, (8192, 4096)),
    ("settings", "max_output_tokens = 300\norchestrator_max_output_tokens = 900\n", "", "",
     None, (900, 300)),
    ("per-backend-wins", "max_output_tokens = 300\n", "max_output_tokens = 700",
     "max_output_tokens = 5000", None, (700, 5000)),
    # Under a budget the smaller of the cap and what the money left pays for is sent; a
    # cap below the budget's floor of 256 tokens still wins.
    ("cap-below-budget-floor", "max_output_tokens = 100\n", "", "", 1.0, (8192, 100)),
    ("budget-below-cap", "", "", "", 0.01, (8192, 4096)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "settings", "orch_extra", "worker_extra", "budget", "caps"),
    CAPS,
    ids=[c[0] for c in CAPS],
)
async def test_every_call_sends_its_output_cap(
    sim: Simulator,
    name: str,
    settings: str,
    orch_extra: str,
    worker_extra: str,
    budget: float | None,
    caps: tuple[int, int],
) -> None:
    orch, worker = "orchestrator:fanout=2", "worker"
    roster = parse(
        "[settings]\nmax_attempts = 1\ntimeout_s = 5\n"
        + settings
        + entry(sim, "orch", orch, "planning", True, orch_extra)
        + entry(sim, "w", worker, "work", extra=worker_extra)
    )
    trace = await run(Request(prompt="do it", budget_usd=budget), roster, env={})
    assert trace.answer.startswith("Simulated synthesis of 2")
    orch_sent, worker_sent = sent_max_tokens(sim, orch), sent_max_tokens(sim, worker)
    assert len(orch_sent) == 2 and len(worker_sent) == 2
    if name == "budget-below-cap":
        # $0.01 at $2/M pays for ~4,600 output tokens: fewer than the orchestrator's cap
        # (the budget wins), more than the worker's (the cap wins).
        assert all(isinstance(n, int) and caps[1] < n < caps[0] for n in orch_sent)
        assert worker_sent == [caps[1]] * 2
    else:
        assert orch_sent == [caps[0]] * 2 and worker_sent == [caps[1]] * 2


async def test_a_sub_task_that_never_stops_is_cut_at_the_cap_and_says_so(
    sim: Simulator, tmp_path: Path
) -> None:
    orch, looper = "orchestrator:fanout=1", "worker:loop=1"
    roster = parse(
        "[settings]\nmax_attempts = 1\ntimeout_s = 5\nmax_output_tokens = 64\n"
        + entry(sim, "orch", orch, "planning", True)
        + entry(sim, "w", looper, "work")
    )
    trace = await run(Request(prompt="do it"), roster, env={})
    assert sent_max_tokens(sim, looper) == [64]
    sub = trace.subtasks()[0]
    assert sub.status == "ok" and len(sub.answer) == 4 * 64  # the simulator's 4 chars a token
    warning = "w: the sub-task reply was cut at its output limit of 64 tokens"
    assert [w for w in trace.warnings if warning in w]
    # The orchestrator is told that the text is incomplete.
    result = next(
        json.loads(m["content"])
        for r in sim.requests
        if r.model == orch
        for m in r.messages
        if m.get("role") == "tool"
    )[0]  # delegate_many: one result per sub-task
    assert result["status"] == "ok" and result["truncated"] is True
    assert "incomplete" in result["note"] and "64" in result["note"]
    # And the ledger keeps it.
    trace.finish("ok")
    ledger = Ledger(default_path(tmp_path))
    ledger.record(trace)
    stored = ledger.load(trace.id)
    assert stored is not None and [w for w in stored.run.warnings if warning in w]


async def test_a_looping_stream_is_stopped_by_the_repetition_guard(sim: Simulator) -> None:
    # Direct answer, streamed: the simulator would write 8192 tokens (32 KB) of one
    # sentence; the guard stops it after a few KB and closes the stream.
    looper = "worker:loop=1"
    roster = parse("[settings]\ntimeout_s = 5\n" + entry(sim, "w", looper, "work"))
    shown: list[str] = []
    trace = Run(prompt="talk")
    await run(
        Request(prompt="talk"), roster, env={}, hooks=Hooks(on_text=shown.append), trace=trace
    )
    assert sent_max_tokens(sim, looper) == [8192]
    text = "".join(shown)
    assert trace.answer == text and text.startswith(LOOP_SENTENCE * 10)
    assert _repeat.REPEAT_MIN_CHARS <= len(text) < _repeat.REPEAT_MIN_CHARS + 1000
    stopped = "w: the orchestrator reply was stopped because it kept repeating itself"
    assert [w for w in trace.warnings if w.startswith(stopped)]


LOOPS = [
    # name, text, looping?
    ("short", LOOP_SENTENCE * 5, False),
    ("sentence-loop", "Intro. " + LOOP_SENTENCE * 40, True),
    ("one-char", "x" * 2500, True),
    ("one-char-short", "x" * 1999, False),
    ("paragraph-10x", "p" + ("".join(chr(65 + i % 26) for i in range(400))) * 10, True),
    ("paragraph-9x", "p" + ("".join(chr(65 + i % 26) for i in range(400))) * 9, False),
    ("block-too-long", "".join(chr(65 + i % 23) + str(i) for i in range(200)) * 12, False),
    ("varied-prose", " ".join(f"line {i} says {i * 7 % 13}." for i in range(400)), False),
    ("loop-then-other", LOOP_SENTENCE * 40 + "but then it said something else entirely.", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "expected"), LOOPS, ids=[c[0] for c in LOOPS])
def test_the_repetition_rule(name: str, text: str, expected: bool) -> None:
    assert models.looping(text) is expected
