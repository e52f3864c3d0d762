"""The run tree as data: a scripted fan-out against the simulator, normalized."""

from __future__ import annotations

import math
import os
from typing import Any

from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import Roster, parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Attempt, Call, Run, Subtask, cost_of
from tanglebrain.views.render import run_json
from tests.helpers import backend_toml


def fanout_roster(base_url: str, *, fanout: int = 4, extra: str = "") -> Roster:
    """An orchestrator fanning out ``fanout`` sub-tasks; ``code`` ones fail over bad → w1."""
    return parse(
        "[settings]\nmax_attempts = 2\n\n"
        + "\n".join(
            [
                backend_toml(
                    "orch",
                    f"orchestrator:fanout={fanout}",
                    base_url,
                    good_at=("reasoning",),
                    cost=10,
                    orchestrator=True,
                ),
                backend_toml("bad", "fail:status=500", base_url, good_at=("code",), cost=1),
                backend_toml("w1", "worker", base_url, good_at=("code", "grunt"), cost=2),
                backend_toml("w2", "worker", base_url, good_at=("grunt",), cost=1, extra=extra),
            ]
        )
    )


async def fanout_run(sim: Simulator, *, fanout: int = 4) -> Run:
    """Run the scripted fan-out in-process and return its finished trace."""
    trace = await run(Request(prompt="build a thing"), fanout_roster(sim.base_url, fanout=fanout),
                      env=os.environ)  # fmt: skip
    trace.finish("ok")
    return trace


def shape(trace: Run) -> dict[str, Any]:
    """Structure, statuses, backends and attempt outcomes; no clocks."""

    def call(c: Call) -> tuple[str, str, list[str]]:
        return (c.role, c.backend, [a.status for a in c.attempts])

    def sub(s: Subtask) -> tuple[Any, ...]:
        return (s.index, s.task, s.status, s.backend, s.failed_over, [call(c) for c in s.calls])

    return {
        "mode": trace.mode,
        "status": trace.status,
        "orchestrator": trace.orchestrator,
        "turns": [
            {
                "call": call(t.call),
                "tools": [
                    (tc.name, tc.error, [sub(s) for s in tc.subtasks]) for tc in t.tool_calls
                ],
            }
            for t in trace.turns
        ],
        "extra_calls": [call(c) for c in trace.extra_calls],
    }


# One attempt on "bad": with w1 able to take the sub-task, a 500 fails over at once.
FAILOVER = [("subtask", "bad", ["error"]), ("subtask", "w1", ["ok"])]
DIRECT = [("subtask", "w2", ["ok"])]
SNAPSHOT = {
    "mode": "delegated",
    "status": "ok",
    "orchestrator": "orch",
    "turns": [
        {
            "call": ("orchestrator", "orch", ["ok"]),
            "tools": [
                (
                    "delegate_many",
                    None,
                    [
                        (0, "code", "ok", "w1", True, FAILOVER),
                        (1, "grunt", "ok", "w2", False, DIRECT),
                        (2, "code", "ok", "w1", True, FAILOVER),
                        (3, "grunt", "ok", "w2", False, DIRECT),
                    ],
                )
            ],
        },
        {"call": ("orchestrator", "orch", ["ok"]), "tools": []},
    ],
    "extra_calls": [],
}


async def test_fanout_tree_snapshot(sim: Simulator) -> None:
    trace = await fanout_run(sim)
    assert shape(trace) == SNAPSHOT
    assert trace.answer.startswith("Simulated synthesis of 4 sub-task results.")
    assert not trace.degraded


async def test_fanout_numbers_add_up(sim: Simulator) -> None:
    trace = await fanout_run(sim)
    for s in trace.subtasks():
        assert s.started is not None and s.ended is not None and s.ended >= s.started
        for c in s.calls:
            for a in c.attempts:
                assert a.backend == c.backend and a.model == c.model
                if a.status == "error":
                    assert a.http_status == 500 and "500" in (a.error or "")
                    assert a.prompt_tokens == a.completion_tokens == 0
                else:  # the simulator's usage formula: ceil(chars / 4)
                    assert a.prompt_tokens == math.ceil(len(s.prompt) / 4)
                    assert a.completion_tokens == math.ceil(len(s.answer) / 4)
                    assert a.bytes_out == len(s.answer.encode())
                assert a.ended >= a.started and a.latency_ms > 0 and a.bytes_in > 0
        assert [c.retries for c in s.calls] == ([0, 0] if s.failed_over else [0])
    atts = trace.attempts()
    assert len(atts) == 2 + 2 * 2 + 2 * 1  # two turns, two failovers (1+1), two direct
    prompt, completion, cost = trace.totals()
    assert prompt == sum(a.prompt_tokens for a in atts)
    assert completion == sum(a.completion_tokens for a in atts)
    # price = {input = 1.0, output = 2.0} per million tokens for every backend
    assert cost is not None and math.isclose(cost, (prompt + 2 * completion) / 1e6)
    turns = [t.call.attempts[0].prompt_tokens for t in trace.turns]
    assert trace.orchestrator_context_tokens == max(turns)
    data = run_json(trace)
    assert [s["attempts"] for s in data["subtasks"]] == [2, 1, 2, 1]
    assert sum(s["tokens"] for s in data["subtasks"]) == sum(
        a.prompt_tokens + a.completion_tokens for s in trace.subtasks() for a in s.attempts
    )


async def test_observers_see_every_state(sim: Simulator) -> None:
    seen: set[tuple[int, str]] = set()
    calls = 0

    def observer(run: Run) -> None:
        nonlocal calls
        calls += 1
        seen.update((s.index, s.status) for s in run.subtasks())

    trace = Run(prompt="build a thing")
    trace.subscribe(observer)
    await run(Request(prompt="build a thing"), fanout_roster(sim.base_url), env=os.environ,
              trace=trace)  # fmt: skip
    assert {status for _, status in seen} == {"queued", "running", "ok"}
    assert calls >= 4 * 3


def test_call_and_attempt_views() -> None:
    first = Attempt("b", "m", started=100.0, latency_ms=250.0, status="error", cost_usd=None)
    second = Attempt("b", "m", started=100.5, latency_ms=500.0, prompt_tokens=3,
                     completion_tokens=4, cost_usd=0.5)  # fmt: skip
    call = Call("subtask", "b", "m", [first, second])
    assert first.ended == 100.25 and call.started == 100.0 and call.ended == 101.0
    assert call.latency_ms == 1000.0 and call.retries == 1 and call.tokens == (3, 4)
    assert call.cost_usd == 0.5  # a failed attempt of unknown price billed nothing
    assert Call("subtask", "b", "m").started is None and Call("subtask", "b", "m").retries == 0


def test_a_failure_that_wrote_tokens_on_an_unknown_price_makes_the_cost_unknown() -> None:
    # A stream cut after some text was billed for it: at an unknown price, the call's cost
    # is unknown, even beside a success (a failure that wrote nothing still counts as free).
    cut = Attempt("b", "m", started=0.0, status="error", completion_tokens=5, cost_usd=None,
                  estimated=True)  # fmt: skip
    silent = Attempt("b", "m", started=0.0, status="error", cost_usd=None)
    ok = Attempt("b", "m", started=1.0, cost_usd=0.25)
    assert cost_of([cut, ok]) is None and cost_of([silent, ok]) == 0.25
    assert cost_of([cut]) is None and cost_of([silent]) is None


def test_unknown_price_is_unknown_not_zero() -> None:
    ok_unknown = Attempt("b", "m", started=0.0, cost_usd=None)
    assert cost_of([ok_unknown, Attempt("b", "m", started=0.0, cost_usd=1.0)]) is None
    assert cost_of([]) == 0.0
    run = Run(prompt="x")
    sub = Subtask(index=0, task=None, prompt="p", calls=[Call("subtask", "b", "m", [ok_unknown])])
    assert sub.latency_ms == 0.0 and sub.attempts == [ok_unknown]
    run.extra_calls.append(sub.calls[0])
    assert run.totals() == (0, 0, None)


def test_cache_tokens_add_up_per_call_and_run() -> None:
    hit = Attempt("b", "m", started=0.0, prompt_tokens=1000, cache_read_tokens=900)
    write = Attempt("b", "m", started=1.0, prompt_tokens=500, cache_write_tokens=400)
    failed = Attempt("b", "m", started=2.0, status="error")
    call = Call("subtask", "b", "m", [failed, hit])
    assert call.cache_tokens == (900, 0) and call.tokens == (1000, 0)
    run = Run(prompt="x")
    run.extra_calls += [call, Call("digest", "b", "m", [write])]
    assert run.cache_totals() == (900, 400) and run.totals()[:2] == (1500, 0)
    assert Run(prompt="y").cache_totals() == (0, 0)


async def test_every_reader_reports_the_same_figures(sim: Simulator) -> None:
    """``--json``, serve's extension, the ledger row and the sums agree (one mapping)."""
    from tanglebrain.ledger._rows import RUN_COLUMNS, run_row
    from tanglebrain.serve._wire import completion
    from tanglebrain.views.render import run_json

    run = await fanout_run(sim)
    f = run.figures()
    assert (f.prompt_tokens, f.completion_tokens, f.cost_usd) == run.totals()
    assert (f.cache_read_tokens, f.cache_write_tokens) == run.cache_totals()
    assert f.subtasks == len(run.subtasks()) > 0
    assert run_json(run)["usage"] == f.usage()
    served = completion(run)  # serve's answer: its usage and tanglebrain fields
    assert served["tanglebrain"]["subtasks"] == f.subtasks
    assert served["tanglebrain"]["cost_usd"] == f.cost_usd
    assert served["usage"]["prompt_tokens"] == f.prompt_tokens
    row = dict(zip([c.strip() for c in RUN_COLUMNS.split(",")], run_row(run, None), strict=False))
    assert (row["subtasks"], row["subtasks_ok"]) == (f.subtasks, f.subtasks_ok)
    assert (row["prompt_tokens"], row["cost_usd"]) == (f.prompt_tokens, f.cost_usd)
