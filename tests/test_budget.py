from __future__ import annotations

import contextlib

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanglebrain.budget import Budget
from tanglebrain.errors import BudgetExceeded
from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run


def test_reserve_and_settle() -> None:
    b = Budget(1.0)
    r1 = b.reserve("a", 0.6)
    with pytest.raises(BudgetExceeded) as info:
        b.reserve("b", 0.5)
    assert info.value.exit_code == 3 and "'b'" in str(info.value)
    b.settle(r1, 0.1)
    assert b.spent == pytest.approx(0.1) and b.reserved == 0
    b.reserve("b", 0.5)
    assert b.remaining == pytest.approx(0.4)


def test_unknown_price_fails_closed_only_with_a_cap() -> None:
    with pytest.raises(BudgetExceeded, match="price"):
        Budget(1.0).reserve("x", None)
    Budget(None).reserve("x", None)


def test_settle_twice_is_harmless() -> None:
    b = Budget(1.0)
    r = b.reserve("a", 0.5)
    b.settle(r, 0.2)
    b.settle(r, 0.2)
    assert b.spent == pytest.approx(0.2)


def roster_text(base: str, p_in: float, p_out: float, latency: float) -> str:
    return f"""
[settings]
max_subtasks = 64
max_attempts = 1
[[backend]]
id = "orch"
model = "openai/orchestrator:fanout=64"
api_base = "{base}"
good_at = ["planning"]
cost = 30
can_orchestrate = true
price = {{ input = 1.0, output = 2.0 }}
[[backend]]
id = "w"
model = "openai/worker:latency={latency:.3f}"
api_base = "{base}"
good_at = ["work"]
cost = 1
max_concurrency = 64
price = {{ input = {p_in}, output = {p_out} }}
"""


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    p_in=st.floats(0.01, 200.0),
    p_out=st.floats(0.01, 200.0),
    latency=st.floats(0.0, 0.05),
    cap=st.floats(0.005, 0.6),
)
def test_budget_never_exceeded_under_64_way_fan_out(
    sim_thread: Simulator, p_in: float, p_out: float, latency: float, cap: float
) -> None:
    roster = parse(roster_text(sim_thread.base_url, p_in, p_out, latency))
    trace = Run(prompt="batch")

    async def main() -> None:
        await run(Request(prompt="batch", budget_usd=cap), roster, env={}, trace=trace)

    with contextlib.suppress(BudgetExceeded):
        anyio.run(main)
    spent = trace.totals()[2]
    assert spent is not None and spent <= cap + 1e-12
    subs = trace.subtasks()
    if subs:  # the cap bit: some ran, the rest were refused, none half-counted
        assert all(s.status in ("ok", "refused") for s in subs)
