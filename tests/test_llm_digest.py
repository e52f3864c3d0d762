from __future__ import annotations

from tanglebrain import llm_digest
from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import parse
from tanglebrain.runtime import Attachment
from tanglebrain.sim import Simulator

LOG = "".join(f"2026-11-20 10:00:{i % 60:02d} INFO building module {i}\n" for i in range(3000))
LOG += "src/core/engine.c:120:5: error: implicit declaration of function 'frob' [E1234]\n"
LOG += "".join(f"warning: unused variable x{i} in lib/util_{i}.c:{i}\n" for i in range(300))
LOG += "make: *** [Makefile:42: all] Error 2\n"


def test_must_keep_lists_errors_first() -> None:
    facts = llm_digest.must_keep(LOG)
    first_fact = facts[0][0]
    assert "engine.c" in first_fact or "E1234" in first_fact or "Makefile" in first_fact
    assert any("src/core/engine.c:120:5" in f for f, _ in facts)


def test_backfill_appends_missing_facts_verbatim_within_budget() -> None:
    summary = "The build failed in the core engine."
    out, left_out = llm_digest.backfill(summary, LOG, 2000)
    assert out.startswith(summary) and len(out.encode()) <= 2000
    assert "src/core/engine.c:120:5: error: implicit declaration of function 'frob' [E1234]" in out
    assert left_out > 0  # 300 warnings cannot all fit in 2000 bytes


def test_backfill_leaves_a_complete_summary_alone() -> None:
    facts = llm_digest.must_keep("error in a/b.py:3\n")
    summary = "error in a/b.py:3 " + " ".join(f for f, _ in facts)
    assert llm_digest.backfill(summary, "error in a/b.py:3\n", 1000) == (summary, 0)


def roster(sim: Simulator, reader_spec: str) -> str:
    return f"""
[settings]
llm_digest = true
context_budget_bytes = 3000
max_attempts = 1
[[backend]]
id = "orch"
model = "openai/orchestrator:fanout=1"
api_base = "{sim.base_url}"
good_at = ["planning"]
cost = 30
can_orchestrate = true
[[backend]]
id = "reader"
model = "openai/{reader_spec}"
api_base = "{sim.base_url}"
good_at = ["summarize"]
cost = 0
"""


async def test_llm_digest_reaches_orchestrator_with_facts(sim: Simulator) -> None:
    trace = await run(
        Request(prompt="why?", attachments=(Attachment("stdin", LOG),)),
        parse(roster(sim, "worker:size=400")),
        env={},
    )
    summarize = [
        r
        for r in sim.requests
        if r.model == "worker:size=400" and "Summarize the text below" in r.messages[-1]["content"]
    ]
    assert len(summarize) == 1 and LOG.strip() in summarize[0].messages[-1]["content"]
    orch = next(r for r in sim.requests if r.model.startswith("orchestrator"))
    context = orch.messages[-1]["content"]
    assert "(summary by reader)" in context
    assert "src/core/engine.c:120:5" in context
    assert [c.role for c in trace.extra_calls] == ["digest"]


async def test_llm_digest_failure_falls_back(sim: Simulator) -> None:
    trace = await run(
        Request(prompt="why?", attachments=(Attachment("stdin", LOG),)),
        parse(roster(sim, "fail:status=500")),
        env={},
    )
    orch = next(r for r in sim.requests if r.model.startswith("orchestrator"))
    assert "(summary by" not in orch.messages[-1]["content"]
    assert "src/core/engine.c:120:5" in orch.messages[-1]["content"]
    assert any("LLM digest of stdin failed" in w for w in trace.warnings)
