"""Views built from the trace: summary line, live tree, history views."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from rich.console import Console

from tanglebrain.ledger import StoredRun
from tanglebrain.ledger import _stats as ledger_stats
from tanglebrain.sim import Simulator
from tanglebrain.trace import Attempt, Call, Run, Subtask, ToolCall, Turn
from tanglebrain.views import history as render_history
from tanglebrain.views import live, render
from tests.test_trace import fanout_run


def text_of(renderable: object, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def states_run() -> Run:
    """A run caught mid-flight: one sub-task in every state."""
    now = time.time()
    run = Run(prompt="p", orchestrator="orch")
    ok = Attempt("w1", "m", started=now, latency_ms=5, prompt_tokens=2, completion_tokens=3)
    bad = Attempt("bad", "m", started=now, latency_ms=5, status="error", http_status=500,
                  error="server error")  # fmt: skip
    running = Attempt("w1", "m", started=now)
    subs = [
        Subtask(0, "code", "p0", status="ok", backend="w1", started=now, ended=now + 0.3,
                calls=[Call("subtask", "w1", "m", [ok])]),
        Subtask(1, "code", "p1", status="ok", backend="w1", started=now, ended=now + 0.4,
                calls=[Call("subtask", "bad", "m", [bad]), Call("subtask", "w1", "m", [ok])]),
        Subtask(2, "grunt", "p2", status="running", started=now,
                calls=[Call("subtask", "w1", "m", [running])]),
        Subtask(3, "grunt", "p3"),
        Subtask(4, "grunt", "p4", status="error", backend="bad", started=now, ended=now,
                error="every candidate failed (bad: HTTP 500)"),
    ]  # fmt: skip
    turn = Turn(0, Call("orchestrator", "orch", "m", [ok]), [ToolCall("c", "delegate_many", "{}")])
    turn.tool_calls[0].subtasks.extend(subs)
    run.turns.append(turn)
    return run


def test_money_never_shows_unknown_as_zero() -> None:
    assert render.money(None) == "unknown"
    assert render.money(0.0) == "$0.0000"
    assert render.money(0.00004) == "$0.000040"
    assert render.money(1.5) == "$1.5000"


def test_first_words_and_seconds() -> None:
    assert render.first_words("a  b\nc") == "a b c"
    assert render.first_words("word " * 30, 20) == "word word word word…"
    assert render.seconds(850) == "850 ms" and render.seconds(2310) == "2.31s"
    assert render.seconds(None) == "-"


def test_summary_line() -> None:
    run = states_run()
    run.finish("ok")
    line = render.summary_line(run)
    assert line.startswith("delegated by orch · sub-tasks 2 ok/3 failed (1 failed over)")
    assert (
        "backends w1" in line and line.endswith(f"run {run.id}") and "tokens 6+9" in line
    )  # the same ok attempt, three times
    assert render.summary_line(run, recorded=False).endswith(f"run {run.id} (not recorded)")


def test_cached_prompt_tokens_in_the_summary_and_json() -> None:
    run = states_run()
    run.finish("ok")
    assert "(" not in render.summary_line(run).split("tokens ")[1].split(" · ")[0]
    ok = run.turns[0].call.attempts[0]  # the same ok attempt, three times in the tree
    ok.cache_read_tokens, ok.cache_write_tokens = 1, 1
    assert "tokens 6+9 (3 cached)" in render.summary_line(run)
    data = render.run_json(run)
    assert {k: data["usage"][k] for k in ("cache_read_tokens", "cache_write_tokens")} == {
        "cache_read_tokens": 3, "cache_write_tokens": 3}  # fmt: skip
    reads = [(s["cache_read_tokens"], s["cache_write_tokens"]) for s in data["subtasks"]]
    assert reads == [(1, 1), (1, 1), (0, 0), (0, 0), (0, 0)]


def test_live_tree_shows_every_state() -> None:
    out = text_of(live.live_tree(states_run()))
    assert "5 sub-tasks: 1 ok · 1 failed over · 1 running · 1 queued · 1 error" in out
    assert "#0 code ok w1 0.3s" in out
    assert "#1 code failed over → w1 ok 0.4s" in out
    assert "#2 grunt running on w1" in out
    assert "#3 grunt queued" in out
    assert "#4 grunt error: every candidate failed" in out


def test_live_tree_caps_rows_and_keeps_the_interesting_ones() -> None:
    out = text_of(live.live_tree(states_run(), max_rows=2))
    assert "#4 grunt error" in out and "#1 code failed over" in out
    assert "#3 grunt queued" not in out and "… 3 more" in out


def test_live_view_observer_never_renders() -> None:
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, width=100, height=30, color_system=None)
    run = states_run()
    view = live.LiveView(run, console, fps=50)
    for _ in range(10_000):
        view.observe(run)
    assert file.getvalue() == ""  # observers only mark the view dirty
    view.start()
    run.turns[0].tool_calls[0].subtasks[3].status = "running"
    view.observe(run)
    view.stop()
    view.stop()  # idempotent
    out = file.getvalue()
    assert "#3 grunt running" in out.rsplit("tanglebrain", 1)[-1]  # the last frame is current


async def test_history_views_of_a_fanout(sim: Simulator) -> None:
    trace = await fanout_run(sim)
    stored = StoredRun(trace, (1e-6, 2e-6))
    tree = text_of(render_history.show_tree(stored))
    assert f"run {trace.id} · delegated by orch · ok" in tree
    assert tree.count("attempt 1 · error") == 2 and "attempt 2 · error" not in tree  # failed over
    assert "#0 code → w1 · ok · failed over" in tree and "answer: Simulated synthesis" in tree
    data = render_history.show_json(stored)
    assert data["orchestrator_price"] == {"input_per_token": 1e-6, "output_per_token": 2e-6}
    assert len(data["turns"][0]["tool_calls"][0]["subtasks"]) == 4


def test_stats_view_with_unknown_prices() -> None:
    run = {"id": "r", "mode": "solo", "status": "ok", "started": 0.0, "ended": 1.0,
           "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": None,
           "orchestrator_context_tokens": 5, "orchestrator_price_in": None,
           "orchestrator_price_out": None}  # fmt: skip
    data = {"since": None, **ledger_stats.summarize([run], [])}
    out = text_of(render_history.stats_view(data))
    assert "solo" in out and "unknown" in out and "$0.0000" not in out.split("run kinds")[1]
    assert "specialist success: - of 0 call(s) (target > 95 %)" in out


def _run_row(i: int, status: str, cost: float | None) -> dict[str, Any]:
    return {"id": f"{i:012x}", "started": 1.7e9, "ended": 1.7e9 + 2.5, "orchestrator":
            "orchestrator-with-a-long-name", "mode": "delegated", "subtasks": 12,
            "subtasks_ok": 11, "status": status, "prompt_tokens": 123456,
            "completion_tokens": 7890, "cost_usd": cost,
            "prompt": "summarize the incident log and list every failing endpoint"}  # fmt: skip


@pytest.mark.parametrize(
    ("width", "present", "absent"),
    [
        (200, ["kind", "tokens", "wall", "orchestrator", "prompt"], []),
        (100, ["time", "sub-tasks", "prompt"], ["kind", "tokens"]),
        (80, ["time", "prompt"], ["kind", "tokens", "wall", "orchestrator"]),
        (60, ["prompt"], ["time", "kind", "tokens", "wall", "orchestrator"]),
    ],
)  # fmt: skip
def test_runs_table_fits_the_width_and_keeps_what_matters(
    width: int, present: list[str], absent: list[str]
) -> None:
    rows = [_run_row(1, "ok", 0.0123), _run_row(2, "interrupted", None)]
    lines = text_of(render_history.runs_table(rows, width), width).splitlines()
    header = lines[0].split()
    assert all(len(line.rstrip()) <= width for line in lines), lines
    assert header[0] == "id" and {"status", "cost"} <= set(header)
    assert set(present) <= set(header) and not set(absent) & set(header)
    assert lines[1].startswith("000000000001 ") and " ok " in lines[1] and "$0.0123" in lines[1]
    assert " interrupted " in lines[2] and "unknown" in lines[2]
