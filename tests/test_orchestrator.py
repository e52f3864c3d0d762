"""The full loop in-process: litellm over real HTTP to the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tanglebrain.errors import BudgetExceeded, NoAnswerError
from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import Roster, parse
from tanglebrain.runtime import Attachment
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run


def entry(
    sim: Simulator,
    bid: str,
    spec: str,
    tags: str,
    cost: float = 1,
    orch: bool = False,
    extra: str = "",
) -> str:
    tag_list = ", ".join(f'"{t}"' for t in tags.split(","))
    return (
        f'[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{sim.base_url}"\n'
        f"good_at = [{tag_list}]\ncost = {cost}\ncan_orchestrate = {str(orch).lower()}\n"
        f"price = {{ input = 1.0, output = 2.0 }}\n{extra}\n"
    )


def make(*entries: str, settings: str = "") -> Roster:
    if "timeout_s" not in settings:
        settings += "timeout_s = 5\n"
    return parse("[settings]\nmax_attempts = 2\n" + settings + "\n" + "".join(entries))


async def go(roster: Roster, prompt: str = "do the work", **kw: object) -> Run:
    return await run(Request(prompt=prompt, **kw), roster, env={})  # type: ignore[arg-type]


def tool_results(sim: Simulator, model: str) -> list[object]:
    """The JSON tool results the orchestrator received, turn by turn."""
    out = []
    for req in sim.requests:
        if req.model == model:
            out += [json.loads(m["content"]) for m in req.messages if m.get("role") == "tool"]
    return out


@pytest.mark.parametrize("n", [1, 8, 64])
async def test_fan_out_order_and_concurrency(sim: Simulator, n: int) -> None:
    roster = make(
        entry(sim, "orch", f"orchestrator:fanout={n}", "planning", 30, True),
        entry(sim, "w", "worker:latency=0.05", "work", extra="max_concurrency = 5"),
        settings=f"max_subtasks = {max(n, 1)}\n",
    )
    trace = await go(roster)
    subs = trace.subtasks()
    assert [s.index for s in subs] == list(range(n))
    assert all(s.status == "ok" and s.backend == "w" for s in subs)
    assert sim.in_flight_max("worker:latency=0.05") == min(n, 5)
    results = tool_results(sim, f"orchestrator:fanout={n}")
    assert len(results) == 1 and [r["index"] for r in results[0]] == list(range(n))
    for i, r in enumerate(results[0]):
        assert f"Sub-task {i + 1} of {n}" in r["text"]
    assert trace.answer.startswith(f"Simulated synthesis of {n} sub-task results.")
    assert trace.orchestrator == "orch" and not trace.degraded


async def test_queued_sub_tasks_are_not_running_and_their_wait_is_not_latency(
    sim: Simulator,
) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=16", "planning", 30, True),
        entry(sim, "w", "worker:latency=0.1", "work", extra="max_concurrency = 6"),
        settings="max_subtasks = 16\n",
    )
    trace = Run(prompt="do the work")
    running: list[int] = []
    trace.subscribe(lambda r: running.append(sum(s.status == "running" for s in r.subtasks())))
    await run(Request(prompt="do the work"), roster, env={}, trace=trace)
    subs = trace.subtasks()
    assert max(running) == 6  # never more "running" than the backend's slots
    first_end = min(s.ended or 0.0 for s in subs)
    waited = [s for s in subs if s.started is not None and s.started >= first_end]
    assert len(waited) >= 10  # 16 sub-tasks, 6 slots: the rest started after a slot freed
    for s in subs:
        assert s.started is not None and s.queued <= s.started
        # latency runs from the slot, the queue wait before it is counted apart
        assert s.latency_ms == pytest.approx(((s.ended or 0.0) - s.started) * 1000)
        assert s.queue_ms == pytest.approx((s.started - s.queued) * 1000)


async def test_multiple_tool_calls_in_one_turn_run_concurrently(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=6,calls=3", "planning", 30, True),
        entry(sim, "w", "worker:latency=0.2", "work", extra="max_concurrency = 16"),
    )
    trace = await go(roster)
    assert len(trace.turns[0].tool_calls) == 3
    assert [s.index for s in trace.subtasks()] == list(range(6))
    assert sim.in_flight_max("worker:latency=0.2") == 6


@pytest.mark.parametrize(
    "bad_spec",
    [
        "fail:status=500", "fail:status=429", "hang", "drop", "empty", "empty:choice=1",
        "malformed:body=page", "malformed:body=nochoices",
    ],
)  # fmt: skip
async def test_subtask_fails_over(sim: Simulator, bad_spec: str) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=2", "planning", 30, True),
        entry(sim, "bad", bad_spec, "work", cost=1),
        entry(sim, "good", "worker", "work", cost=5),
        settings="timeout_s = 0.5\n" if bad_spec == "hang" else "",  # short only for the hang
    )
    trace = await go(roster)
    subs = trace.subtasks()
    assert all(s.status == "ok" and s.backend == "good" for s in subs)
    assert all(s.failed_over and s.calls[0].backend == "bad" for s in subs)
    assert all(a.status == "error" and a.error for s in subs for a in s.calls[0].attempts)
    assert not trace.degraded


async def test_a_host_that_never_connects_is_failed_over_at_the_connect_timeout(
    sim: Simulator, blackhole: str
) -> None:
    # Its packets dropped (down, firewalled): not a wait for timeout_s (600 s here), but a
    # connection failure after connect_timeout_s, and the sub-tasks go to the next backend.
    gone = entry(sim, "gone", "worker", "work", cost=1).replace(sim.base_url, blackhole)
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=2", "planning", 30, True), gone,
        entry(sim, "good", "worker", "work", cost=5),
        settings="timeout_s = 600\nconnect_timeout_s = 0.3\n",
    )  # fmt: skip
    trace = await go(roster)
    subs = trace.subtasks()
    assert all(s.status == "ok" and s.backend == "good" and s.failed_over for s in subs)
    errors = {a.error for s in subs for a in s.calls[0].attempts}
    assert errors == {"connection failed: no connection within 0.3s"}


async def test_a_dead_backend_is_failed_over_at_once_and_then_skipped(sim: Simulator) -> None:
    # 64 sub-tasks, the cheapest worker answers 500 to everything, a healthy one exists.
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=64", "planning", 30, True),
        entry(sim, "dead", "fail:status=500", "work", cost=1, extra="max_concurrency = 4"),
        entry(sim, "good", "worker", "work", cost=5, extra="max_concurrency = 64"),
        settings="max_subtasks = 64\n",
    )
    trace = await go(roster)
    subs = trace.subtasks()
    assert len(subs) == 64 and all(s.status == "ok" and s.backend == "good" for s in subs)
    # No retries on the dead one while "good" can take the call, and once its circuit is
    # open (2 failures) the sub-tasks still queued for it skip it: at most its 4 slots'
    # worth of calls, plus one that took a slot freed by the first failure (192 before).
    assert sim.count("fail:status=500") <= 5
    tried = [s for s in subs if s.calls[0].backend == "dead"]
    assert all(len(s.calls[0].attempts) == 1 for s in tried)
    assert all(c.attempts for s in subs for c in s.calls)  # skipped backends leave no empty call


async def test_the_last_candidate_is_still_retried(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=1", "planning", 30, True),
        entry(sim, "flaky", "fail:status=500,times=1", "work"),
    )
    trace = await go(roster)
    [sub] = trace.subtasks()
    assert sub.status == "ok" and [a.status for a in sub.calls[0].attempts] == ["error", "ok"]


async def test_an_empty_orchestrator_reply_fails_over_and_is_recorded(sim: Simulator) -> None:
    roster = make(
        entry(sim, "o1", "empty:choice=1", "planning", 10, True),
        entry(sim, "o2", "orchestrator", "planning", 20, True),
        entry(sim, "w", "worker", "work"),
    )
    trace = await go(roster)
    assert trace.orchestrator == "o2" and trace.answer
    first = trace.turns[0].call
    assert first.backend == "o1"
    assert [a.status for a in first.attempts] == ["error"]
    assert "empty response" in (first.attempts[0].error or "")


async def test_all_specialists_down_orchestrator_still_answers(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=3", "planning", 30, True),
        entry(sim, "bad1", "fail:status=500", "work"),
        entry(sim, "bad2", "malformed", "work"),
    )
    trace = await go(roster)
    assert trace.degraded
    assert trace.answer.startswith("Simulated synthesis of 3")
    [results] = tool_results(sim, "orchestrator:fanout=3")
    assert all(r["status"] == "error" and "do this part yourself" in r["error"] for r in results)
    assert all("bad1" in r["error"] and "bad2" in r["error"] for r in results)


async def test_no_fit_when_no_backend_can_take_the_sub_task(sim: Simulator) -> None:
    from tanglebrain.sim import SimReply

    big = "x" * 4000  # ~1000 tokens: more than w's context window
    tasks = [
        {"prompt": big, "task": "work"},
        {"prompt": "small", "task": "work"},
        {"prompt": "plan", "task": "planning"},
    ]
    sim.script(
        "script",
        [
            SimReply(text=None, tool_calls=[("delegate_many", json.dumps({"tasks": tasks}))]),
            SimReply(text="final answer", tool_calls=[]),
        ],
    )
    roster = make(
        entry(sim, "orch", "script", "planning", 30, True),
        entry(sim, "w", "worker", "work", extra="context_window = 200"),
    )
    trace = await go(roster)
    assert trace.answer == "final answer"
    [results] = tool_results(sim, "script")
    assert [r["status"] for r in results] == ["no_fit", "ok", "ok"]
    assert "do this part yourself" in results[0]["error"] and results[0]["backend"] is None
    # the orchestrator's own tag is not on the menu: the tag is ignored, the work is done
    assert results[2]["note"] == "ignored unknown task tag 'planning'"
    assert results[2]["backend"] == "w"
    assert trace.degraded


async def test_all_orchestrators_down(sim: Simulator) -> None:
    roster = make(
        entry(sim, "o1", "fail:status=500", "planning", 10, True),
        entry(sim, "o2", "fail:status=401", "planning", 20, True),
        entry(sim, "w", "worker", "work"),
    )
    with pytest.raises(NoAnswerError) as info:
        await go(roster)
    text = str(info.value)
    assert "o1: HTTP 500" in text and "o2: HTTP 401" in text


async def test_orchestrator_fails_over_mid_run(sim: Simulator) -> None:
    # o1 plans (turn 1) then fails on the synthesis turn; o2 continues the same conversation.
    from tanglebrain.sim import SimReply

    args = json.dumps({"tasks": [{"prompt": "part one", "task": "work"}]})
    sim.script("script", [SimReply(text=None, tool_calls=[("delegate_many", args)])])
    roster = make(
        entry(sim, "o1", "script", "planning", 10, True),
        entry(sim, "o2", "orchestrator", "planning", 20, True),
        entry(sim, "w", "worker", "work"),
    )
    trace = await go(roster)
    assert trace.orchestrator == "o2"
    assert trace.answer.startswith("Simulated synthesis of 1")
    assert [t.call.backend for t in trace.turns] == ["o1", "o1", "o2"]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("unknown_backend", "unknown backend"),
        ("bad_json", "not valid JSON"),
        ("too_many", "too many sub-tasks"),
    ],
)
async def test_invalid_tool_calls_become_error_results(
    sim: Simulator, bad: str, fragment: str
) -> None:
    spec = f"orchestrator:bad={bad}"
    roster = make(entry(sim, "orch", spec, "planning", 30, True), entry(sim, "w", "worker", "work"))
    trace = await go(roster)
    assert trace.answer.startswith("Simulated synthesis")
    [result] = tool_results(sim, spec)
    text = json.dumps(result)
    assert fragment in text
    assert len(sim.requests) <= 3  # nothing ran 500 sub-tasks
    # The history repeats every call with arguments a server can parse (llama.cpp refuses
    # a request with broken ones, as the simulator does); the trace keeps what was sent.
    later = [r for r in sim.requests if r.model == spec][1]
    [asked] = [m for m in later.messages if m.get("tool_calls")]
    for call in asked["tool_calls"]:
        assert isinstance(json.loads(call["function"]["arguments"]), dict)


async def test_broken_arguments_show_the_model_what_it_sent(sim: Simulator) -> None:
    spec = "orchestrator:bad=bad_json"
    roster = make(entry(sim, "orch", spec, "planning", 30, True), entry(sim, "w", "worker", "work"))
    trace = await go(roster)
    [result] = tool_results(sim, spec)
    [sent] = trace.turns[0].tool_calls  # the trace keeps the broken text
    with pytest.raises(ValueError):
        json.loads(sent.arguments)
    assert result["error"].startswith("arguments are not valid JSON (")
    assert repr(sent.arguments[:40])[:-1] in result["error"]


async def test_arguments_that_are_not_an_object_are_quoted_back(sim: Simulator) -> None:
    from tanglebrain.sim import SimReply

    asked = SimReply(text=None, tool_calls=[("delegate", '["do it"]')])
    sim.script("script", [asked, SimReply(text="done")])
    roster = make(
        entry(sim, "o", "script", "planning", 10, True), entry(sim, "w", "worker", "work")
    )
    trace = await go(roster)
    assert trace.answer == "done"
    error = trace.turns[0].tool_calls[0].error
    assert error == """arguments must be a JSON object, not '["do it"]'"""


async def test_max_turns_forces_an_answer_with_tools_on_offer(sim: Simulator) -> None:
    spec = "orchestrator:rounds=10,fanout=1"
    roster = make(
        entry(sim, "orch", spec, "planning", 30, True),
        entry(sim, "w", "worker", "work"),
        settings="max_turns = 3\n",
    )
    trace = await go(roster)
    orch = [r for r in sim.requests if r.model == spec]
    assert len(orch) == 3
    # The same tools on every turn (one prompt prefix), but the last may not call them.
    assert orch[-1].tools == orch[0].tools and orch[0].tools
    # ...and the same system prompt, byte for byte: a prefix a prompt cache can serve.
    assert len({json.dumps(r.messages[0]) for r in orch}) == 1
    assert orch[0].messages[0]["role"] == "system"
    # The trace says so too: one prefix hash on every turn.
    hashes = {t.prefix_hash for t in trace.turns}
    assert len(trace.turns) == 3 and len(hashes) == 1 and None not in hashes
    assert orch[-1].body.get("tool_choice") == "none"
    assert "tool_choice" not in orch[0].body
    assert trace.answer.startswith("Simulated synthesis")


@pytest.mark.parametrize("preamble", ["I'll delegate the parts.", None])
async def test_a_model_that_never_stops_calling_tools_is_cut_at_max_turns(
    sim: Simulator, preamble: str | None
) -> None:
    from tanglebrain.sim import SimReply

    # Like a model calling a placeholder tool on every turn, tool_choice or not.
    sim.script("script", [SimReply(text=preamble, tool_calls=[("dummy_tool", "{}")])] * 50)
    roster = make(
        entry(sim, "orch", "script", "planning", 30, True),
        entry(sim, "w", "worker", "work"),
        settings="max_turns = 3\n",
    )
    if preamble is None:
        with pytest.raises(NoAnswerError, match="called tools on its last turn"):
            await go(roster)
    else:
        trace = await go(roster)
        assert trace.answer == preamble  # once, from the last turn
    assert len([r for r in sim.requests if r.model == "script"]) == 3


async def test_no_delegate_sends_no_tools_and_full_input(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True), entry(sim, "w", "worker", "work")
    )
    text = "line\n" * 100
    trace = await go(roster, no_delegate=True, attachments=(Attachment("stdin", text),))
    [req] = sim.requests
    assert req.tools is None and text.strip() in req.messages[-1]["content"]
    assert trace.mode == "solo" and trace.subtasks() == []


async def test_attachment_by_reference(sim: Simulator) -> None:
    big = "".join(f"2026-11-20T10:00:{i % 60:02d} INFO step {i} ok\n" for i in range(5000))
    big += "src/app/main.py:42:7: error: undefined name 'retry'\n"
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=2", "planning", 30, True),
        entry(sim, "reader", "echo", "long-context"),
        entry(sim, "w", "worker", "work"),
    )
    trace = await go(roster, attachments=(Attachment("stdin", big),))
    first = next(r for r in sim.requests if r.model.startswith("orchestrator"))
    context = json.dumps(first.messages)
    assert len(context) < 10_000 and "src/app/main.py:42:7" in context
    reader = [r for r in sim.requests if r.model == "echo"]
    assert reader and all(big.strip() in r.messages[-1]["content"] for r in reader)
    assert trace.digests and trace.digests[0].bytes_before == len(big)


async def test_budget_refuses_and_exit_code(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True), entry(sim, "w", "worker", "work")
    )
    with pytest.raises(BudgetExceeded):
        await go(roster, budget_usd=1e-9)


async def test_unpriced_backend_refused_under_budget(sim: Simulator) -> None:
    orch = entry(sim, "orch", "orchestrator:fanout=2", "planning", 30, True)
    unpriced = (
        f'[[backend]]\nid = "w"\nmodel = "openai/worker"\napi_base = "{sim.base_url}"\n'
        'good_at = ["work"]\ncost = 3\n'
    )
    trace = await go(make(orch, unpriced), budget_usd=1.0)
    subs = trace.subtasks()
    assert all(s.status == "refused" for s in subs)
    assert "price" in (subs[0].error or "") and "'w'" in (subs[0].error or "")
    assert not [r for r in sim.requests if r.model == "worker"]
    assert trace.degraded


async def test_rotation_advances_between_runs(sim: Simulator, tmp_path: Path) -> None:
    roster = make(
        entry(sim, "o1", "orchestrator", "planning", 10, True),
        entry(sim, "o2", "orchestrator", "planning", 10, True),
        entry(sim, "w", "worker", "work"),
    )
    seen = []
    for _ in range(4):
        trace = await run(Request(prompt="x"), roster, env={}, state_dir=tmp_path)
        seen.append(trace.orchestrator)
    assert seen == ["o1", "o2", "o1", "o2"]


async def test_system_prompt_file_overrides_template(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("CUSTOM ORCHESTRATOR PROMPT\nMenu:\n$menu\n")
    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True),
        entry(sim, "w", "worker", "work"),
        settings='system_prompt_file = "prompt.md"\n',
    )
    await run(Request(prompt="x"), roster, env={}, roster_dir=tmp_path)
    system = next(r for r in sim.requests if r.model == "orchestrator").messages[0]
    assert system["role"] == "system" and system["content"].startswith("CUSTOM ORCHESTRATOR PROMPT")
    assert "- w: good at work" in system["content"] and "orch:" not in system["content"]


async def test_missing_system_prompt_file_is_config_error(sim: Simulator, tmp_path: Path) -> None:
    from tanglebrain.errors import ConfigError

    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True),
        settings='system_prompt_file = "nope.md"\n',
    )
    with pytest.raises(ConfigError, match="system_prompt_file"):
        await run(Request(prompt="x"), roster, env={}, roster_dir=tmp_path)


async def test_default_system_prompt_lists_menu_and_rules(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True),
        entry(sim, "w", "worker", "work", cost=2),
    )
    await run(Request(prompt="x"), roster, env={})
    first = next(r for r in sim.requests if r.model == "orchestrator")
    system = first.messages[0]["content"]
    assert "- w: good at work; relative cost 2" in system
    assert "Do simple work yourself" in system
    assert "attach: [" not in system  # no attachment: the rule about them is left out
    names = [t["function"]["name"] for t in first.tools or []]
    assert names == ["delegate", "delegate_many"]
    task = first.tools[1]["function"]["parameters"]["properties"]["tasks"]["items"]
    assert task["properties"]["task"]["enum"] == ["work"]
    # Small models copy every field they see: each field offered only when it has a use.
    # One specialist per tag: the tag picks the backend, a pin adds nothing.
    # Nothing to attach, nothing offered: a small model invented attach: ["rain", …] here.
    assert set(task["properties"]) == {"prompt", "task"}
    assert first.tools[0]["function"]["parameters"] == task
    # The menu is in the system prompt: the tool descriptions do not repeat it.
    assert all("- w: good at" not in t["function"]["description"] for t in first.tools)


async def test_attach_is_offered_with_the_runs_attachment_names(sim: Simulator) -> None:
    roster = make(
        entry(sim, "orch", "orchestrator", "planning", 30, True), entry(sim, "w", "worker", "work")
    )
    await go(roster, attachments=(Attachment("stdin", "some text"),))
    first = next(r for r in sim.requests if r.model == "orchestrator")
    attach = first.tools[0]["function"]["parameters"]["properties"]["attach"]
    assert attach["items"]["enum"] == ["stdin"]
    assert 'Attach bulky inputs by name (`attach: ["stdin"]`)' in first.messages[0]["content"]


async def test_tight_budget_still_affords_the_synthesis(sim: Simulator) -> None:
    # A fixed 4096-token reservation at $15/M would need $0.061 for the last turn alone;
    # sizing max_tokens to the money left lets the run finish within the cap.
    orch = entry(sim, "orch", "orchestrator:fanout=3", "planning", 30, True).replace(
        "price = { input = 1.0, output = 2.0 }", "price = { input = 3.0, output = 15.0 }"
    )
    roster = make(orch, entry(sim, "w", "worker", "work"))
    trace = await go(roster, budget_usd=0.065)
    assert trace.answer.startswith("Simulated synthesis of 3")
    spent = trace.totals()[2]
    assert spent is not None and spent <= 0.065
    last = [r for r in sim.requests if r.model == "orchestrator:fanout=3"][-1]
    assert 256 <= last.body["max_tokens"] < 4096


@pytest.mark.parametrize(
    ("mid_cost", "spills"), [(2, True), (3, False)], ids=["within-2x", "beyond-2x"]
)
async def test_a_saturated_cheapest_spills_over_to_an_idle_backend(
    sim: Simulator, mid_cost: float, spills: bool
) -> None:
    # 16 sub-tasks, `cheap` takes 6 at a time: the rest used to queue on it while `mid`,
    # good at the same tag, sat idle.
    roster = make(
        entry(sim, "orch", "orchestrator:fanout=16", "planning", 30, True),
        entry(sim, "cheap", "worker:latency=0.2", "work", 1, extra="max_concurrency = 6"),
        entry(sim, "mid", "worker:id=mid", "work", mid_cost, extra="max_concurrency = 6"),
        settings="max_subtasks = 16\n",
    )
    trace = await go(roster)
    by = [s.backend for s in trace.subtasks()]
    assert all(s.status == "ok" for s in trace.subtasks()) and len(by) == 16
    assert sim.in_flight_max("worker:latency=0.2") <= 6
    if spills:
        assert by.count("mid") >= 6 and by.count("cheap") >= 6
    else:
        assert by.count("cheap") == 16


# --- small open models: calls written as text, repeated calls, a last turn without prose ------
# The replies below are what Qwen2.5-Coder-1.5B wrote as orchestrator (llama.cpp, stock chat
# template unless noted), with the sub-task prompts kept and the tags set to this roster's.

WORDS = ["translate 'red' into Spanish", "translate 'blue' into Spanish",
         "translate 'green' into Spanish"]  # fmt: skip
TASKS = {"tasks": [{"prompt": p, "task": "work"} for p in WORDS]}
REAL_FENCED = (  # first turn: a ```json block, pretty-printed
    '```json\n{\n  "name": "delegate_many",\n  "arguments": {\n    "tasks": [\n'
    + ",\n".join(
        f'      {{\n        "prompt": "{p}",\n        "task": "work"\n      }}' for p in WORDS
    )
    + "\n    ]\n  }\n}\n```"
)
REAL_BARE = json.dumps({"name": "delegate_many", "arguments": TASKS}) + "\n"  # a later turn
ANSWER = (
    'The Spanish translation of "red" is "rojo". The Spanish translation of "blue" is "azul". '
    'The Spanish translation of "green" is "verde".'
)
TEXT_SHAPES = {
    "real-fenced": REAL_FENCED,
    "real-bare": REAL_BARE,
    "tool_call-tags": "".join(
        f'<tool_call>\n{{"name": "delegate", "arguments": {{"prompt": "{p}"}}}}\n</tool_call>\n'
        for p in WORDS
    ),
    "parameters": json.dumps({"name": "delegate_many", "parameters": TASKS}),
    # Echoed inside the tool list's <tools> tags, in OpenAI's shape; and as a tag.
    "real-tools-tags": "<tools>\n"
    + json.dumps({"type": "function", "function": {"name": "delegate_many", "arguments": TASKS}})
    + "\n</tools>",
    "real-attribute-tag": "<tools>\n  <delegate_many tasks=[\n    "
    + ",\n    ".join(json.dumps(t) for t in TASKS["tasks"])
    + "\n  ]}\n</tools>",
    "preamble-and-fence": "I'll hand the three words out.\n" + REAL_FENCED,
}


def small_roster(sim: Simulator, settings: str = "") -> Roster:
    return make(
        entry(sim, "orch", "script", "planning", 0, True),
        entry(sim, "w", "echo", "work"),
        settings=settings,
    )


def script_requests(sim: Simulator) -> list[object]:
    return [r for r in sim.requests if r.model == "script"]


@pytest.mark.parametrize("text", TEXT_SHAPES.values(), ids=TEXT_SHAPES.keys())
async def test_tool_calls_written_as_text_are_run(sim: Simulator, text: str) -> None:
    from tanglebrain.sim import SimReply

    sim.script("script", [SimReply(text=text), SimReply(text=ANSWER)])
    trace = await go(small_roster(sim))
    assert trace.answer == ANSWER and not trace.degraded
    assert sorted(s.prompt for s in trace.subtasks()) == sorted(WORDS)
    assert all(s.status == "ok" for s in trace.subtasks())
    assert all(tc.id.startswith("text-0-") for tc in trace.turns[0].tool_calls)
    assert any("writes tool calls as text" in w for w in trace.warnings)
    # The conversation goes on as if the calls had been structured.
    second = script_requests(sim)[1].messages  # type: ignore[attr-defined]
    calls = second[-1 - len(trace.turns[0].tool_calls)]
    assert calls["role"] == "assistant" and calls["tool_calls"]
    assert "```" not in (calls["content"] or "") and "delegate" not in (calls["content"] or "")
    texts = [r["text"] for m in second if m["role"] == "tool" for r in _entries(m["content"])]
    assert sorted(texts) == sorted(WORDS)


def _entries(content: str) -> list[dict[str, object]]:
    data = json.loads(content)
    return data if isinstance(data, list) else [data]


@pytest.mark.parametrize(
    "text",
    [
        'The record reads {"name": "Paris", "arguments": {"population": 2102650}}.',
        '```json\n{"name": "search", "arguments": {"q": "capital of France"}}\n```',
        "You could delegate this, but it is simple: 17*23 = 391.",
    ],
    ids=["json-about-something-else", "a-tool-not-offered", "a-tool-name-in-prose"],
)
async def test_prose_holding_other_json_is_an_answer(sim: Simulator, text: str) -> None:
    from tanglebrain.sim import SimReply

    sim.script("script", [SimReply(text=text)])
    trace = await go(small_roster(sim))
    assert trace.answer == text and trace.subtasks() == [] and not trace.warnings


@pytest.mark.parametrize(
    "again",
    [
        # custom template: llama.cpp parsed the repeat into a real call, text "<tools></tools>"
        ("<tools></tools>\n", [("delegate_many", json.dumps(TASKS))]),
        (REAL_BARE, []),  # stock template: the same call again, as text
        # keys in another order, other spacing: the same call as data
        (json.dumps({"arguments": {"tasks": TASKS["tasks"]}, "name": "delegate_many"}, indent=1),
         []),
    ],
    ids=["structured", "as-text", "reordered"],
)  # fmt: skip
async def test_a_repeated_call_gets_the_earlier_results_and_the_answer_is_due(
    sim: Simulator, again: tuple[str, list[tuple[str, str]]]
) -> None:
    from tanglebrain.orchestrator import REPEAT_NOTE
    from tanglebrain.sim import SimReply

    first = SimReply(text="<tools></tools>\n", tool_calls=[("delegate_many", json.dumps(TASKS))])
    text, calls = again
    sim.script("script", [first, SimReply(text=text, tool_calls=calls), SimReply(text=ANSWER)])
    trace = await go(small_roster(sim))
    assert trace.answer == ANSWER and not trace.degraded
    assert sim.count("echo") == 3 and len(trace.subtasks()) == 3  # nothing ran twice
    requests = script_requests(sim)
    assert len(requests) == 3
    last = requests[-1]
    tool_msgs = [m for m in last.messages if m["role"] == "tool"]  # type: ignore[attr-defined]
    assert len(tool_msgs) == 2 and tool_msgs[0]["content"] == tool_msgs[1]["content"]
    assert last.messages[-1] == {"role": "user", "content": REPEAT_NOTE}  # type: ignore[attr-defined]
    assert last.body.get("tool_choice") == "none"  # type: ignore[attr-defined]
    assert any("repeated a tool call" in w for w in trace.warnings)


async def test_a_changed_call_is_not_a_repeat(sim: Simulator) -> None:
    from tanglebrain.sim import SimReply

    retry = {"tasks": TASKS["tasks"][1:]}  # a model asking again for two parts
    sim.script(
        "script",
        [SimReply(text=REAL_FENCED), SimReply(text=json.dumps({"name": "delegate_many",
         "arguments": retry})), SimReply(text=ANSWER)],
    )  # fmt: skip
    trace = await go(small_roster(sim))
    assert trace.answer == ANSWER and sim.count("echo") == 5


@pytest.mark.parametrize(
    "last",
    [
        (REAL_BARE, []),  # the stock template's forced last turn: the call again, as text
        ("<tools>\n\n</tools>\n", []),  # ... or the empty tags of its tool list
        ("", [("delegate_many", json.dumps(TASKS))]),  # a structured call despite "none"
    ],
    ids=["text", "empty-tags", "structured"],
)
async def test_a_last_turn_without_prose_is_answered_from_the_results(
    sim: Simulator, last: tuple[str, list[tuple[str, str]]]
) -> None:
    from tanglebrain.sim import SimReply

    text, calls = last
    sim.script(
        "script", [SimReply(text=REAL_FENCED), SimReply(text=text or None, tool_calls=calls)]
    )
    trace = await go(small_roster(sim, "max_turns = 2\n"))
    assert [r.body.get("tool_choice") for r in script_requests(sim)] == [None, "none"]  # type: ignore[attr-defined]
    assert trace.answer == "\n\n".join(WORDS)  # echo: each result is its prompt
    assert trace.degraded and trace.rejected_calls()[0].error.startswith("not run: the last turn")  # type: ignore[union-attr]
    assert any("wrote no answer on its last turn" in w for w in trace.warnings)
    assert sim.count("echo") == 3


async def test_a_streamed_answer_never_shows_tool_call_text(sim: Simulator) -> None:
    from tanglebrain.orchestrator import Hooks
    from tanglebrain.sim import SimReply

    shown: list[str] = []
    sim.script(
        "script",
        [SimReply(text=REAL_FENCED), SimReply(text="Rojo, azul, verde.\n" + REAL_FENCED)],
    )
    trace = await run(
        Request(prompt="x"), small_roster(sim, "max_turns = 2\n"), env={},
        hooks=Hooks(on_text=shown.append),
    )  # fmt: skip
    assert script_requests(sim)[-1].stream  # type: ignore[attr-defined]
    assert "".join(shown) == trace.answer == "Rojo, azul, verde.\n"
    assert not trace.degraded


ECHO = (  # the stock template's tool list, echoed: a definition, not a call
    '<tools>\n{"type": "function", "function": {"name": "delegate_many", "description": "Run '
    'several independent sub-tasks at once.", "parameters": {"type": "object", "properties": '
    '{"tasks": {"type": "array", "items": {"type": "object", "properties": {"prompt": {"type": '
    '"string"}}}}}, "required": ["tasks"]}}}\n</tools>'
)


@pytest.mark.parametrize(
    "bad",
    [REAL_FENCED[:120], ECHO, "<tools>\n\n</tools>\n"],
    ids=["cut-at-the-cap", "definition-echoed", "empty-tags"],
)
async def test_a_reply_without_call_or_answer_is_sent_back(sim: Simulator, bad: str) -> None:
    from tanglebrain.orchestrator import BROKEN_NOTE
    from tanglebrain.sim import SimReply

    cut = bad
    sim.script("script", [SimReply(text=cut), SimReply(text=REAL_BARE), SimReply(text=ANSWER)])
    trace = await go(small_roster(sim))
    assert trace.answer == ANSWER and len(trace.subtasks()) == 3
    second = script_requests(sim)[1].messages  # type: ignore[attr-defined]
    assert second[-2:] == [
        {"role": "assistant", "content": cut},
        {"role": "user", "content": BROKEN_NOTE},
    ]
    assert [tc.error is not None for t in trace.turns for tc in t.tool_calls] == [True, False]


async def test_identical_calls_in_one_turn_run_once(sim: Simulator) -> None:
    from tanglebrain.sim import SimReply

    # Custom template: three delegates and then the same delegate_many twice, in one reply.
    calls = [("delegate", json.dumps(t)) for t in TASKS["tasks"]]
    calls += [("delegate_many", json.dumps(TASKS, indent=1))] * 2
    preamble = "To translate 'red' into Spanish, use the `lang` specialist:\n"
    sim.script("script", [SimReply(text=preamble, tool_calls=calls), SimReply(text=ANSWER)])
    trace = await go(small_roster(sim))
    assert trace.answer == ANSWER and not trace.degraded
    assert sim.count("echo") == 6  # three delegates, one delegate_many
    second = script_requests(sim)[1]
    tools = [m["content"] for m in second.messages if m["role"] == "tool"]  # type: ignore[attr-defined]
    assert len(tools) == 5 and tools[3] == tools[4]
    assert "tool_choice" not in second.body  # type: ignore[attr-defined]
    nodes = trace.turns[0].tool_calls
    assert [len(n.subtasks) for n in nodes] == [1, 1, 1, 3, 0]
    assert nodes[4].context_bytes == nodes[3].context_bytes > 0
