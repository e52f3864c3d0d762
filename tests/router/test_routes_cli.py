"""Learned routing and the gate through the real CLI, simulator and ledger."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tanglebrain.ledger import Ledger, default_path
from tanglebrain.sim import SimReply, Simulator
from tests.helpers import backend_toml, cli_env, run_cli, write_roster

WIDE = "max_concurrency = 16"  # no spill-over: routing alone decides


def three_specialists(tmp_path: Path, sim: Simulator, *, routing: str, gate: str = "off") -> str:
    """An orchestrator fanning out 10 ``code`` sub-tasks; three specialists of it.

    ``a`` (cheapest) fails 40 % of its calls, ``b`` 10 %, ``c`` never; ids keep the
    simulator's per-spec failure counters apart from other tests'.
    """
    uid = uuid.uuid4().hex[:8]
    entries = [
        backend_toml("orch", "orchestrator:fanout=10", sim.base_url, good_at=("planning",),
                     cost=30, orchestrator=True),
        *(
            # Prices in proportion to cost: measured dollars say what the roster says.
            f'[[backend]]\nid = "{bid}"\nmodel = "openai/worker:{opt}id={uid}"\n'
            f'api_base = "{sim.base_url}"\ngood_at = ["code"]\ncost = {cost}\n{WIDE}\n'
            f"price = {{ input = {cost}, output = {2 * cost} }}\n"
            for bid, opt, cost in (("a", "fail_rate=0.4,", 1), ("b", "fail_rate=0.1,", 2),
                                   ("c", "", 4))
        ),
    ]  # fmt: skip
    settings = (
        f'max_attempts = 1\nrouting = "{routing}"\ngate = "{gate}"\n'
        "[settings.route_weights]\nexplore = 0.0\n"
    )
    write_roster(tmp_path / "roster.toml", *entries, settings=settings)
    return uid


def firsts(tmp_path: Path) -> list[list[str]]:
    """Per run recorded, oldest first: the backend each sub-task tried first."""
    ledger = Ledger(default_path(tmp_path / "state"))
    out = []
    for row in reversed(ledger.recent(100)):
        stored = ledger.load(row["id"])
        assert stored is not None
        out.append([s.calls[0].backend for s in stored.run.subtasks()])
    return out


@pytest.mark.parametrize("routing", ["static", "learned"])
def test_learned_routing_moves_sub_tasks_off_a_failing_backend(
    tmp_path: Path, sim_thread: Simulator, routing: str
) -> None:
    three_specialists(tmp_path, sim_thread, routing=routing)
    for _ in range(3):
        out = run_cli(["--json", "implement it"], tmp_path)
        assert out.code == 0, out.stderr
        data = json.loads(out.stdout)
        assert all(s["status"] == "ok" for s in data["subtasks"])  # failover saves every one
        assert {s["routed_by"] for s in data["subtasks"]} == {routing}
    runs = firsts(tmp_path)
    assert runs[0] == ["a"] * 10  # no evidence yet: learned starts where static does
    if routing == "static":
        assert runs[1:] == [["a"] * 10] * 2
    else:
        assert runs[1:] == [["b"] * 10] * 2, runs  # a failed 4 of 10: b (2x the cost) goes first

    routes = json.loads(run_cli(["routes", "--json", "--tag", "code"], tmp_path).stdout)
    assert routes["routing"] == routing
    (code,) = routes["tags"]
    evidence = {r["backend"]: r for r in code["order"]}
    assert evidence["a"]["n"] >= 10 and evidence["a"]["success"] < evidence["b"]["success"]
    assert code["static_order"] == ["a", "b", "c"]
    assert code["learned_order"][0] == "b", code
    assert [r["backend"] for r in code["order"]] == (
        code["learned_order"] if routing == "learned" else code["static_order"]
    )
    wide = cli_env(tmp_path, COLUMNS="300")  # no cell wraps mid-phrase
    text = run_cli(["routes", "--tag", "code"], tmp_path, env=wide)
    assert text.code == 0
    if routing == "static":  # what learning would change, beside what routing does now
        assert "cheapest" in text.stdout and 'with routing = "learned": b,' in text.stdout
    else:
        assert "best expected value" in text.stdout, text.stdout
        assert "less likely to succeed" in text.stdout, text.stdout

    stats = json.loads(run_cli(["stats", "--json"], tmp_path).stdout)
    if routing == "static":
        assert stats["routing"] == []
    else:
        (tag,) = stats["routing"]
        assert tag["tag"] == "code" and tag["learned_subtasks"] == 30 and tag["away"] == 20
        assert tag["static_choice"] == ["a"]
        assert tag["away_figures"]["success_rate"] > tag["static_figures"]["success_rate"]


def test_routes_on_an_empty_ledger_and_unknown_tag(tmp_path: Path, sim_thread: Simulator) -> None:
    three_specialists(tmp_path, sim_thread, routing="static")
    out = run_cli(["routes"], tmp_path)
    assert out.code == 0, out.stderr
    assert "cheapest" in out.stdout and "prior only" not in out.stdout
    data = json.loads(run_cli(["routes", "--json"], tmp_path).stdout)
    assert [t["tag"] for t in data["tags"]] == ["code", "planning"]
    assert all(r["n"] == 0 for t in data["tags"] for r in t["order"])
    bad = run_cli(["routes", "--tag", "nope"], tmp_path)
    assert bad.code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("tanglebrain: error: unknown tag 'nope'")


def test_routes_lists_left_out_backends(tmp_path: Path, sim_thread: Simulator) -> None:
    entries = [
        backend_toml("w", "worker", sim_thread.base_url, good_at=("code",)),
        backend_toml("off", "worker", sim_thread.base_url, good_at=("code",),
                     extra="enabled = false"),
        backend_toml("keyed", "worker", sim_thread.base_url, good_at=("code",),
                     extra='api_key_env = "NOPE_TEST_KEY"'),
    ]  # fmt: skip
    write_roster(tmp_path / "roster.toml", *entries)
    data = json.loads(run_cli(["routes", "--json"], tmp_path).stdout)
    (code,) = data["tags"]
    assert [r["backend"] for r in code["order"]] == ["w"]
    assert code["excluded"] == [
        {"backend": "off", "why": "disabled"},
        {"backend": "keyed", "why": "$NOPE_TEST_KEY is not set"},
    ]


# --- the gate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "mode", "gate"),
    [
        (["what is 2+2?"], "gated", "trivial by heuristic: short single request (3 words)"),
        (["compare these two designs"], "delegated", "orchestrated by heuristic"),
        (["--no-gate", "what is 2+2?"], "delegated", None),
        (["-b", "orch", "what is 2+2?"], "delegated", None),
        (["--no-delegate", "what is 2+2?"], "solo", None),
    ],
)
def test_heuristic_gate(
    tmp_path: Path, sim_thread: Simulator, args: list[str], mode: str, gate: str | None
) -> None:
    three_specialists(tmp_path, sim_thread, routing="static", gate="heuristic")
    out = run_cli(["--json", *args], tmp_path)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["mode"] == mode
    assert (data["gate"] or "").startswith(gate or "") and (data["gate"] is None) == (gate is None)
    if mode == "gated":
        # Answered by the cheapest backend, no orchestrator turn; a failover if it fails.
        stored = Ledger(default_path(tmp_path / "state")).load(data["run_id"])
        assert stored is not None and stored.run.gate == data["gate"]
        assert stored.run.mode == "gated" and len(stored.run.turns) >= 1
        assert all(t.call.backend != "orch" for t in stored.run.turns)
        assert data["subtasks"] == [] and "simulated" in data["answer"]


def test_a_gated_run_costs_a_fraction_of_an_orchestrated_one(
    tmp_path: Path, sim_thread: Simulator
) -> None:
    three_specialists(tmp_path, sim_thread, routing="static", gate="heuristic")
    gated = json.loads(run_cli(["--json", "what is 2+2?"], tmp_path).stdout)
    full = json.loads(run_cli(["--json", "--no-gate", "what is 2+2?"], tmp_path).stdout)
    assert gated["mode"] == "gated" and full["mode"] == "delegated"
    assert gated["usage"]["cost_usd"] * 5 <= full["usage"]["cost_usd"]


def model_gate(tmp_path: Path, sim: Simulator, classifier: str) -> None:
    entries = [
        backend_toml("orch", "orchestrator:fanout=2", sim.base_url, good_at=("planning",),
                     cost=30, orchestrator=True),
        backend_toml("w", "worker", sim.base_url, good_at=("code",), cost=2),
        backend_toml("cls", classifier, sim.base_url, good_at=("classify",), cost=0.1),
    ]  # fmt: skip
    write_roster(tmp_path / "roster.toml", *entries, settings='gate = "model"\nmax_attempts = 1\n')


@pytest.mark.parametrize(
    ("replies", "prompt", "mode", "gate"),
    [
        ([SimReply("SIMPLE")], "what is 2+2?", "gated", "trivial by model:cls: "),
        ([SimReply("COMPLEX")], "what is 2+2?", "delegated", "orchestrated by model:cls: "),
        # Unclear or failing classifier: the heuristic decides, and the record says why.
        ([SimReply("hmm")], "what is 2+2?", "gated", "trivial by heuristic (the classifier "),
        ([SimReply(status=500)], "compare x and y", "delegated", "orchestrated by heuristic ("),
        # Attachments: never trivial, no classifier call needed.
        ([], "what is this?", "delegated", "orchestrated by heuristic: 1 attachment"),
    ],
)
def test_model_gate(
    tmp_path: Path, sim_thread: Simulator, replies: list[SimReply], prompt: str, mode: str,
    gate: str,
) -> None:  # fmt: skip
    spec = f"script:id={uuid.uuid4().hex[:8]}"
    model_gate(tmp_path, sim_thread, spec)
    sim_thread.script(spec, replies)
    stdin = "some piped data\n" if not replies else None
    out = run_cli(["--json", prompt], tmp_path, stdin=stdin)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["mode"] == mode and data["gate"].startswith(gate), data["gate"]
    stored = Ledger(default_path(tmp_path / "state")).load(data["run_id"])
    assert stored is not None
    gate_calls = [c for c in stored.run.extra_calls if c.role == "gate"]
    assert len(gate_calls) == (1 if replies else 0)
    if mode == "gated":  # the cheapest backend answers: the classifier itself here
        assert stored.run.turns[0].call.backend == "cls"
