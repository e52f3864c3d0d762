from __future__ import annotations

import contextlib
import json
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanglebrain.budget import Budget, Reservation
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


def fanout_roster(
    base: str, *, fanout: int, worker: str, tag: str, concurrency: int, price: tuple[float, float]
) -> str:
    """An orchestrator fanning out to one priced worker ``w`` (the spec ``worker``)."""
    return f"""
[settings]
max_subtasks = 64
max_attempts = 1
[[backend]]
id = "orch"
model = "openai/orchestrator:fanout={fanout}"
api_base = "{base}"
good_at = ["planning"]
cost = 30
can_orchestrate = true
price = {{ input = 1.0, output = 2.0 }}
[[backend]]
id = "w"
model = "openai/{worker}"
api_base = "{base}"
good_at = ["{tag}"]
cost = 1
max_concurrency = {concurrency}
price = {{ input = {price[0]}, output = {price[1]} }}
"""


def roster_text(base: str, p_in: float, p_out: float, latency: float) -> str:
    return fanout_roster(base, fanout=64, worker=f"worker:latency={latency:.3f}", tag="work",
                         concurrency=64, price=(p_in, p_out))  # fmt: skip


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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


# Prose and log lines whose token count by litellm (tiktoken) is within 2 % of the
# simulator's chars/4, so that ``prompt_x`` alone sets how far our estimate is off.
LOG = (
    "The service answered slowly during the night because the cache was cold and every "
    "request went to the database. 2024-05-01 svc=api path=/v1/items status=200 took 583 "
    "ms; the cache was cold and the database slow. "
) * 150


def under_count_roster(base: str, prompt_x: float) -> str:
    return fanout_roster(base, fanout=8, worker=f"worker:prompt_x={prompt_x}", tag="summarize",
                         concurrency=8, price=(3.0, 1.0))  # fmt: skip


async def under_counted_run(sim: Simulator, prompt_x: float, cap: float) -> Run:
    from tanglebrain.runtime import Attachment

    trace = Run(prompt="summarize")
    request = Request(
        prompt="summarize the log", budget_usd=cap, attachments=[Attachment("stdin", LOG)]
    )
    with contextlib.suppress(BudgetExceeded):
        await run(request, parse(under_count_roster(sim.base_url, prompt_x)), env={}, trace=trace)
    return trace


@pytest.mark.parametrize(("prompt_x", "cap"), [(1.5, 0.1), (5, 0.2)])
async def test_a_backend_counting_more_prompt_tokens_stays_under_the_cap(
    sim: Simulator, prompt_x: float, cap: float
) -> None:
    # Eight sub-tasks each carry the log (~8k tokens). Reserved on our own count they
    # overran the cap (111 % at 1.5x, 362 % at 5x); the first call now goes alone and
    # the rest are reserved at what the backend reported.
    trace = await under_counted_run(sim, prompt_x, cap)
    spent = trace.totals()[2]
    assert spent is not None and 0 < spent <= cap
    assert any(s.status == "ok" for s in trace.subtasks())
    assert not [w for w in trace.warnings if "budget exceeded" in w]


def test_an_overrun_is_said_on_stderr_in_json_and_in_the_ledger(
    sim_thread: Simulator, tmp_path: Path
) -> None:
    from tanglebrain.ledger import Ledger, default_path
    from tests.helpers import run_cli

    # One direct call that alone costs more than the cap (the backend counts 5x our
    # estimate): nothing could have known before it, so it must at least be said.
    roster = tmp_path / "roster.toml"
    roster.write_text(
        under_count_roster(sim_thread.base_url, 5).split("[[backend]]", 1)[0]
        + "[[backend]]\n"
        + under_count_roster(sim_thread.base_url, 5).split("[[backend]]")[2]
    )
    out = run_cli(
        ["--roster", str(roster), "--budget", "0.05", "--json", "summarize the log"],
        tmp_path,
        stdin=LOG,
    )
    assert out.code == 0, out
    said = "budget exceeded: $0.1196 spent of the $0.0500 cap (239%)"
    assert f"warning: {said}" in out.stderr
    assert any(said in w for w in json.loads(out.stdout)["warnings"])
    stored = Ledger(default_path(tmp_path / "state")).recent(1)
    assert any(said in w for w in json.loads(stored[0]["warnings"]))


class _Spy(Budget):
    """A budget that remembers what each call reserved."""

    def __init__(self, cap_usd: float | None) -> None:
        super().__init__(cap_usd)
        self.reservations: list[float] = []

    def reserve(self, backend: str, worst_case_usd: float | None) -> Reservation:
        booked = super().reserve(backend, worst_case_usd)
        self.reservations.append(booked.amount)
        return booked


async def test_a_cache_hit_is_reserved_at_the_input_price_and_settled_at_its_cost(
    sim: Simulator,
) -> None:
    from tanglebrain import models
    from tanglebrain.runtime import RunContext
    from tanglebrain.trace import Call

    # The same call twice: 1,000 prompt tokens, none / 900 of them read from the cache.
    entries = [
        f'[[backend]]\nid = "{bid}"\nmodel = "openai/worker:cached={n},tokens=50"\n'
        f'api_base = "{sim.base_url}"\ngood_at = ["x"]\ncost = 1\nmax_output_tokens = 100\n'
        "price = { input = 2.0, output = 8.0, cached_input = 0.5 }\n"
        for bid, n in (("cold", 0), ("warm", 900))
    ]
    roster = parse("\n".join(entries))
    budget = _Spy(1.0)
    ctx = RunContext(roster=roster, env={}, run=Run(prompt="x"), budget=budget,
                     retry=models.RetryPolicy(max_attempts=1), timeout=30)  # fmt: skip
    prompt = [{"role": "user", "content": LOG[:4000]}]  # 1,000 tokens, by any count
    costs = []
    for b in roster.backends:
        reply = await ctx.call(b, prompt, Call("subtask", b.id, b.model))
        costs.append(reply.cost_usd)
    cold, warm = (1000 * 2.0 + 50 * 8.0) / 1e6, (100 * 2.0 + 900 * 0.5 + 50 * 8.0) / 1e6
    assert costs == [pytest.approx(cold), pytest.approx(warm)]
    assert budget.spent == pytest.approx(cold + warm) and budget.reserved == 0
    # Reserved alike: nothing tells how much a prompt the cache will serve before the reply.
    first, second = budget.reservations
    assert first == pytest.approx(second) and second > cold
