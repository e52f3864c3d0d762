"""The delegate tools as a small model sees them: lean schemas, lenient validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tanglebrain import delegation, models
from tanglebrain.budget import Budget
from tanglebrain.orchestrator import Request, run
from tanglebrain.roster import parse
from tanglebrain.runtime import Attachment, RunContext
from tanglebrain.sim import SimReply, Simulator
from tanglebrain.trace import Run


def roster_text(base: str, *specialists: tuple[str, str], orch: str = "orchestrator") -> str:
    out = "[settings]\ntimeout_s = 5\nmax_attempts = 1\n"
    rows = [("orch", orch, "planning", True)] + [(i, "echo", t, False) for i, t in specialists]
    for bid, spec, tags, can in rows:
        tag_list = ", ".join(f'"{t}"' for t in tags.split(","))
        out += (
            f'[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{base}"\n'
            f"good_at = [{tag_list}]\ncost = 1\ncan_orchestrate = {str(can).lower()}\n"
        )
    return out


def context(*specialists: tuple[str, str], attachments: tuple[str, ...] = ()) -> RunContext:
    return RunContext(
        roster=parse(roster_text("http://127.0.0.1:9/v1", *specialists)),
        env={},
        run=Run(prompt="x"),
        budget=Budget(None),
        retry=models.RetryPolicy(max_attempts=1),
        timeout=5,
        attachments={a: Attachment(a, "text") for a in attachments},
    )


def task_schema(ctx: RunContext, lean: bool) -> dict[str, Any]:
    many = delegation.tool_schemas(ctx, "orch", lean=lean)[1]["function"]
    items: dict[str, Any] = many["parameters"]["properties"]["tasks"]["items"]
    return items


SCHEMAS = [
    # specialists, attachments, lean: the properties offered
    ([("a", "math"), ("b", "words")], (), True, {"prompt", "task"}),
    ([("a", "math"), ("b", "math,words")], (), True, {"prompt", "task", "backend"}),
    ([("a", "math"), ("b", "words")], ("stdin",), True, {"prompt", "task", "attach"}),
    ([("a", "math"), ("b", "words")], (), False, {"prompt", "task", "backend"}),
    ([("a", "math")], ("stdin", "log"), False, {"prompt", "task", "backend", "attach"}),
]


@pytest.mark.parametrize(("specialists", "attachments", "lean", "fields"), SCHEMAS)
def test_each_field_is_offered_only_when_the_run_gives_it_a_use(
    specialists: list[tuple[str, str]], attachments: tuple[str, ...], lean: bool, fields: set[str]
) -> None:
    ctx = context(*specialists, attachments=attachments)
    task = task_schema(ctx, lean)
    assert set(task["properties"]) == fields and task["required"] == ["prompt"]
    assert task["additionalProperties"] is False
    assert task["properties"]["task"]["enum"] == sorted({t for _, ts in specialists
                                                          for t in ts.split(",")})  # fmt: skip
    if "attach" in fields:
        assert task["properties"]["attach"]["items"]["enum"] == sorted(attachments)
    if "backend" in fields:
        assert task["properties"]["backend"]["enum"] == [i for i, _ in specialists]
    schemas = delegation.tool_schemas(ctx, "orch", lean=lean)
    descriptions = [t["function"]["description"] for t in schemas]
    assert all(("- a: good at" in d) is not lean for d in descriptions)
    assert all(len(d) < (140 if lean else 600) for d in descriptions)


ARGUMENTS = [
    # raw sub-task, the error without leniency, the note with it (None: rejected either way)
    ({"prompt": "x", "attach": ["stdin"]}, "unknown attachment(s) ['stdin']",
     "ignored 'attach': this run has no attachments"),
    ({"prompt": "x", "task": "geography"}, "unknown task tag 'geography'",
     "ignored unknown task tag 'geography'"),
    ({"prompt": "x", "backend": "words"}, "unknown backend 'words'",
     "ignored unknown backend 'words'"),
    ({"prompt": "x", "description": "d"}, "unknown field(s) ['description']",
     "ignored unknown field(s) ['description']"),
    ("translate 'cat' into French", "each task must be an object", None),
    ({"task": "math"}, "'prompt' must be a non-empty string", "'prompt' must be"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "strict", "lenient"), ARGUMENTS)
def test_lenient_validation_ignores_what_only_steers_routing(
    raw: Any, strict: str, lenient: str | None
) -> None:
    ctx = context(("a", "math"))
    spec = delegation._parse_spec(ctx, raw, "orch")
    assert isinstance(spec, str) and strict in spec
    relaxed = delegation._parse_spec(ctx, raw, "orch", lenient=True)
    if lenient is None:  # a bare string is the prompt itself
        assert isinstance(relaxed, delegation.Spec) and relaxed.prompt == raw and not relaxed.notes
    elif isinstance(relaxed, str):
        assert lenient in relaxed
    else:
        assert relaxed.notes == (lenient,) and relaxed.prompt == "x"


def test_an_unknown_attachment_is_still_refused_when_the_run_has_some() -> None:
    ctx = context(("a", "math"), attachments=("log",))
    spec = delegation._parse_spec(ctx, {"prompt": "x", "attach": ["stdin"]}, "orch", lenient=True)
    assert spec == "unknown attachment(s) ['stdin']; available: ['log']"


async def test_an_invented_attachment_loses_no_sub_task(sim: Simulator) -> None:
    # A 0.5B orchestrator sent attach: ["stdin"] with nothing attached: every sub-task was lost.
    tasks = [{"prompt": f"haiku about {w}", "attach": ["stdin"]} for w in ("rain", "sea")]
    sim.script("script", [SimReply(tool_calls=[("delegate_many", json.dumps({"tasks": tasks}))]),
                          SimReply(text="two haiku")])  # fmt: skip
    roster = parse(roster_text(sim.base_url, ("w", "writing"), orch="script"))
    trace = await run(Request(prompt="two haiku"), roster, env={})
    assert trace.answer == "two haiku" and not trace.degraded
    assert [s.status for s in trace.subtasks()] == ["ok", "ok"]
    [req] = [r for r in sim.requests if r.model == "script"][1:]
    [tool] = [m for m in req.messages if m["role"] == "tool"]
    assert [r["note"] for r in json.loads(tool["content"])] == [
        "ignored 'attach': this run has no attachments"
    ] * 2


async def test_a_custom_prompt_without_the_menu_keeps_it_in_the_tools(
    sim: Simulator, tmp_path: Path
) -> None:
    (tmp_path / "prompt.md").write_text("Answer well.\n")
    text = roster_text(sim.base_url, ("w", "work"))
    roster = parse(text.replace("[settings]\n", '[settings]\nsystem_prompt_file = "prompt.md"\n'))
    await run(Request(prompt="x"), roster, env={}, roster_dir=tmp_path)
    first = next(r for r in sim.requests if r.model == "orchestrator")
    assert all("- w: good at work" in (t["function"]["description"]) for t in first.tools or [])
