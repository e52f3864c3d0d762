from __future__ import annotations

import json

import pytest

from tanglebrain import review
from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import Roster, parse
from tanglebrain.runtime import RunContext
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run

CRITIQUE = {
    "agree": ["a"],
    "disagree": [{"point": "p", "reason": "r", "severity": "blocker"}],
    "missing": ["m"],
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(CRITIQUE),
        f"Here is my review.\n\n```json\n{json.dumps(CRITIQUE, indent=2)}\n```\nThanks.",
        f"My critique is {json.dumps(CRITIQUE)} and that is all.",
        f"```\n{json.dumps(CRITIQUE)}\n```",
    ],
    ids=["plain", "fence", "prose", "bare-fence"],
)
def test_parse_critique_finds_the_json(text: str) -> None:
    c = review.parse_critique("r1", text)
    assert c.parsed and c.agree == ["a"] and c.missing == ["m"]
    assert [(d.point, d.reason, d.severity) for d in c.disagree] == [("p", "r", "blocker")]


@pytest.mark.parametrize(
    "text", ["I think it is fine.", "{not json", '{"unrelated": 1}', "", "[1, 2]"]
)
def test_parse_critique_falls_back_to_text(text: str) -> None:
    c = review.parse_critique("r1", text)
    assert not c.parsed and c.raw == text.strip()


def test_unknown_severity_becomes_major() -> None:
    c = review.parse_critique("r", json.dumps({"disagree": [{"point": "x", "severity": "huge"}]}))
    assert c.disagree[0].severity == "major"


def test_parse_ruling() -> None:
    points = [
        ("r1", review.Disagreement("claim A", "why", "blocker")),
        ("r2", review.Disagreement("claim B", "why", "minor")),
    ]
    text = (
        "VERDICTS:\n1. MODIFY: fixed it\n2. AFFIRM — fine as is\n"
        "OVERALL: MODIFY: changed the fix\nFINAL ANSWER:\nThe new answer.\nSecond line."
    )
    answer, verdicts, overall = review.parse_ruling(text, points, "draft")
    assert answer == "The new answer.\nSecond line."
    assert [(v.point, v.verdict) for v in verdicts] == [
        ("claim A", "MODIFY"),
        ("claim B", "AFFIRM"),
    ]
    assert overall is not None and overall.verdict == "MODIFY"


def test_parse_ruling_without_format_keeps_text_or_draft() -> None:
    assert review.parse_ruling("Just an answer.", [], "draft")[0] == "Just an answer."
    assert review.parse_ruling("", [], "draft")[0] == "draft"


def backend(
    bid: str,
    model: str,
    tags: str,
    cost: float,
    orch: bool = False,
    base: str = "http://127.0.0.1:9/v1",
) -> str:
    tag_list = ", ".join(f'"{t}"' for t in tags.split(","))
    return (
        f'[[backend]]\nid = "{bid}"\nmodel = "{model}"\napi_base = "{base}"\n'
        f"good_at = [{tag_list}]\ncost = {cost}\ncan_orchestrate = {str(orch).lower()}\n"
        f"price = {{ input = 1.0, output = 2.0 }}\n"
    )


def test_reviewers_prefer_other_providers_then_cost() -> None:
    roster = parse(
        backend("orch", "anthropic/claude", "planning", 30, True)
        + backend("same", "anthropic/haiku", "review", 1)
        + backend("gpt", "openai/gpt", "review", 20)
        + backend("gem", "gemini/flash", "review", 5)
        + backend("off", "openai/x", "review", 0).replace("price", "enabled = false\nprice")
        + backend("noreview", "openai/y", "code", 0)
    )
    ctx = RunContext(
        roster=roster,
        env={},
        run=Run(prompt="x"),
        budget=None,  # type: ignore[arg-type]
        retry=None,
        timeout=1,
    )  # type: ignore[arg-type]
    orch = roster.backends[0]
    assert [b.id for b in review.pick_reviewers(ctx, orch, 3)] == ["gem", "gpt", "same"]
    assert [b.id for b in review.pick_reviewers(ctx, orch, 1)] == ["gem"]


def make(sim: Simulator, *reviewers: str, settings: str = "") -> Roster:
    if "timeout_s" not in settings:
        settings += "timeout_s = 5\n"
    text = "[settings]\nmax_attempts = 1\n" + settings + "\n"
    text += backend("orch", "openai/orchestrator:fanout=2", "planning", 30, True, sim.base_url)
    text += backend("w", "openai/worker", "work", 1, base=sim.base_url)
    for i, spec in enumerate(reviewers):
        text += backend(f"rev{i}", f"openai/{spec}", "review", 5 + i, base=sim.base_url)
    return parse(text)


async def test_reviewers_run_concurrently_and_blocker_modifies(sim: Simulator) -> None:
    roster = make(
        sim,
        "reviewer:verdict=blocker,latency=0.3,id=1",
        "reviewer:verdict=agree,latency=0.3,id=2",
        "reviewer:latency=0.3,id=3",
        settings="reviewers = 2\n",
    )
    out: list[str] = []
    from tanglebrain.orchestrator import Hooks

    trace = await run(
        Request(prompt="plan it", review=True), roster, env={}, hooks=Hooks(on_text=out.append)
    )
    rv = trace.review
    assert rv is not None and rv.reviewers == ["rev0", "rev1"]
    assert sim.in_flight_max() >= 2
    assert sim.count("reviewer:verdict=blocker,latency=0.3,id=1") == 1
    assert sim.count("reviewer:latency=0.3,id=3") == 0
    assert rv.overall is not None and rv.overall.verdict == "MODIFY" and rv.changed
    assert [v.verdict for v in rv.verdicts] == ["MODIFY"]
    assert "Simulated revision" in trace.answer
    assert out == [trace.answer]  # the draft never reached stdout
    # reviewers saw the request and the draft, not the orchestrator's transcript
    req = next(r for r in sim.requests if r.model.startswith("reviewer:verdict=blocker"))
    content = req.messages[-1]["content"]
    assert "plan it" in content and "Simulated synthesis" in content
    assert len(req.messages) == 2 and "tool" not in json.dumps(req.messages)
    # every reviewer's prompt opens with the same instructions: a prefix caches can serve
    asked = [r for r in sim.requests if r.model.startswith("reviewer")]
    assert len(asked) == 2
    assert all(
        r.messages[0] == {"role": "system", "content": review.REVIEWER_SYSTEM} for r in asked
    )
    # the ruling offers the tools of the turns that wrote the draft (the same prefix)
    orch = [r for r in sim.requests if r.model.startswith("orchestrator")]
    assert len(orch) == 3 and orch[-1].body["tool_choice"] == "none"
    assert orch[-1].tools == orch[0].tools and orch[0].tools
    assert orch[-1].messages[0] == orch[0].messages[0]


async def test_all_agree_needs_no_ruling(sim: Simulator) -> None:
    roster = make(sim, "reviewer:verdict=agree,wrap=fence")
    trace = await run(Request(prompt="x", review=True), roster, env={})
    rv = trace.review
    assert rv is not None and rv.overall is not None and rv.overall.verdict == "AFFIRM"
    assert not rv.changed and trace.answer.startswith("Simulated synthesis")
    assert sum(1 for r in sim.requests if r.model.startswith("orchestrator")) == 2


@pytest.mark.parametrize("spec", ["fail:status=500", "hang"])
async def test_failing_reviewer_degrades_review_not_run(sim: Simulator, spec: str) -> None:
    roster = make(sim, spec, settings="timeout_s = 0.5\n" if spec == "hang" else "")
    trace = await run(Request(prompt="x", review=True), roster, env={})
    assert trace.answer.startswith("Simulated synthesis")
    assert trace.review is not None and trace.review.degraded
    assert any("review degraded" in w for w in trace.warnings)


async def test_no_reviewer_configured_warns(sim: Simulator) -> None:
    trace = await run(Request(prompt="x", review=True), make(sim), env={})
    assert trace.review is not None and trace.review.degraded
    assert any("no enabled backend is good at 'review'" in w for w in trace.warnings)


async def test_budget_applies_to_reviews(sim: Simulator) -> None:
    text = (
        "[settings]\nmax_attempts = 1\n"
        + backend("orch", "openai/orchestrator:fanout=1", "planning", 0, True, sim.base_url)
        + backend("w", "openai/worker", "work", 0, base=sim.base_url)
        + f'[[backend]]\nid = "rev"\nmodel = "openai/reviewer"\napi_base = "{sim.base_url}"\n'
        'good_at = ["review"]\ncost = 5\n'
    )  # no price: refused under a budget
    trace = await run(Request(prompt="x", review=True, budget_usd=1.0), parse(text), env={})
    assert trace.review is not None and trace.review.degraded
    assert trace.review.critiques[0].status == "error"
    assert "price" in (trace.review.critiques[0].error or "")
    assert sim.count("reviewer") == 0


async def test_settings_review_always(sim: Simulator) -> None:
    roster = make(sim, "reviewer:verdict=agree", settings='review = "always"\n')
    trace = await run(Request(prompt="x"), roster, env={})
    assert trace.review is not None
    trace = await run(Request(prompt="x", review=False), roster, env={})
    assert trace.review is None


async def test_the_ruling_keeps_the_orchestrators_prefix(sim: Simulator) -> None:
    from tanglebrain import models
    from tanglebrain.budget import Budget

    roster = make(sim, "reviewer:verdict=blocker")
    ctx = RunContext(roster=roster, env={}, run=Run(prompt="plan it"), budget=Budget(None),
                     retry=models.RetryPolicy(max_attempts=1), timeout=5)  # fmt: skip
    tools = [{"type": "function", "function": {"name": "delegate", "parameters": {}}}]
    convo = [{"role": "system", "content": "You orchestrate."},
             {"role": "user", "content": "plan it"}]  # fmt: skip
    rv = await review.panel(ctx, roster.backends[0], convo, "the draft", "", tools=tools)
    assert rv.overall is not None and rv.overall.verdict == "MODIFY"
    [ruling] = [r for r in sim.requests if r.model.startswith("orchestrator")]
    # The same system prompt and tools as the turns that wrote the draft, no tool call.
    assert ruling.messages[:2] == convo and ruling.tools == tools
    assert ruling.body["tool_choice"] == "none"
