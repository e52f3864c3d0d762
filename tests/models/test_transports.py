"""One behaviour, two transports: every scenario runs natively and through litellm.

Each scenario is a whole run against a fresh simulator, once per transport; what the
ledger would record (every node of the run's tree, the run's status, answer, warnings)
must be the same. Timings, run ids and tool-call ids differ by nature and are left out;
the transport an attempt used is compared separately.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tanglebrain.ledger._rows import CALL_COLUMNS, call_rows
from tanglebrain.models._litellm import litellm
from tanglebrain.orchestrator import Hooks, Request, run
from tanglebrain.roster import parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run

TRANSPORTS = ("openai", "litellm")
_VARYING = {"run_id", "started", "ended", "latency_ms"}
_VARYING_EXTRA = {"id", "queued", "transport"}


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    litellm()  # its import is not what is compared


@dataclass(frozen=True)
class Scenario:
    """A roster (built against a simulator's URL) and how the run is started."""

    name: str
    backends: Callable[[str], list[tuple[str, str, str, float, bool]]]  # base URL -> entries
    settings: str = ""
    stream: bool = False
    request: dict[str, Any] = field(default_factory=dict)


def _orch(spec: str = "orchestrator:fanout=2") -> tuple[str, str, str, float, bool]:
    return ("orch", spec, "planning", 30, True)


Entries = Callable[[str], list[tuple[str, str, str, float, bool]]]


def _failing_worker(spec: str) -> Entries:
    bad, good = ("bad", spec, "work", 1, False), ("good", "worker", "work", 5, False)
    return lambda _: [_orch(), bad, good]


FAULTS = [
    "fail:status=500", "fail:status=503", "fail:status=429", "fail:status=429,times=1",
    "fail:status=401", "fail:status=404", "fail:status=400", "drop", "empty",
    "empty:choice=1", "malformed:body=html", "malformed:body=page", "malformed:body=utf8",
    "malformed:body=charset", "malformed:body=nochoices", "cut",
]  # fmt: skip

SCENARIOS = [
    Scenario("direct answer", lambda _: [("solo", "echo", "planning", 1, True)]),
    Scenario("direct answer, streamed", lambda _: [("solo", "echo", "planning", 1, True)],
             stream=True),
    Scenario("fan-out", lambda _: [_orch("orchestrator:fanout=3"),
                                   ("w", "worker", "work", 1, False)]),
    Scenario("fan-out, streamed", lambda _: [_orch("orchestrator:fanout=3"),
                                             ("w", "worker", "work", 1, False)], stream=True),
    Scenario("orchestrator failover", lambda _: [
        ("o1", "fail:status=500", "planning", 10, True), _orch(),
        ("w", "worker", "work", 1, False)]),
    Scenario("budget", lambda _: [_orch(), ("w", "worker", "work", 1, False)],
             request={"budget_usd": 0.5}),
    Scenario("a cut sub-task stream", lambda _: [_orch(), ("w", "worker:finish=none", "work", 1,
                                                           False)], stream=True),
    Scenario("a looping answer", lambda _: [("solo", "worker:loop=1", "planning", 1, True)],
             stream=True),
    Scenario("a silent backend", _failing_worker("hang"), settings="timeout_s = 0.5\n"),
    Scenario("a silent answerer, streamed", lambda _: [("solo", "hang", "planning", 1, True)],
             settings="timeout_s = 0.5\n", stream=True),
    *(Scenario(f"sub-task fault {f}", _failing_worker(f)) for f in FAULTS),
    *(Scenario(f"sub-task fault {f}, streamed", _failing_worker(f), stream=True)
      for f in ("fail:status=500", "drop", "empty", "malformed:body=html", "cut")),
]  # fmt: skip


def _roster_text(scenario: Scenario, base: str, transport: str) -> str:
    settings = "[settings]\nmax_attempts = 2\n" + (scenario.settings or "timeout_s = 30\n")
    out = [settings]
    for bid, spec, tag, cost, orch in scenario.backends(base):
        out.append(
            f'[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{base}"\n'
            f'good_at = ["{tag}"]\ncost = {cost}\ncan_orchestrate = {str(orch).lower()}\n'
            f'transport = "{transport}"\nprice = {{ input = 1.0, output = 2.0 }}\n'
        )
    return "\n".join(out)


async def _record(scenario: Scenario, transport: str) -> tuple[dict[str, Any], list[Any]]:
    async with Simulator() as sim:
        roster = parse(_roster_text(scenario, sim.base_url, transport))
        shown: list[str] = []
        hooks = Hooks(on_text=shown.append) if scenario.stream else Hooks()
        trace = Run(prompt="do the work")
        try:
            await run(
                Request(prompt="do the work", **scenario.request), roster, env={},
                hooks=hooks, trace=trace,
            )  # fmt: skip
        except Exception as exc:  # a run that fails is compared by what it recorded
            trace.error = trace.error or type(exc).__name__
    return _summary(trace, shown), _rows(trace)


def _summary(trace: Run, shown: list[str]) -> dict[str, Any]:
    transports = {a.transport for a in trace.attempts()}
    return {
        "status": trace.status, "answer": trace.answer, "shown": "".join(shown),
        "warnings": trace.warnings, "error": trace.error, "transports": transports,
    }  # fmt: skip


def _rows(trace: Run) -> list[dict[str, Any]]:
    names = [c.strip() for c in CALL_COLUMNS.split(",")]
    rows = []
    for raw in call_rows(trace):
        row = {k: v for k, v in zip(names, raw, strict=True) if k not in _VARYING}
        extra = json.loads(row.pop("extra") or "{}")
        row["extra"] = {k: v for k, v in extra.items() if k not in _VARYING_EXTRA}
        rows.append(row)
    return rows


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_both_transports_record_the_same_run(scenario: Scenario) -> None:
    native, native_rows = await _record(scenario, "openai")
    translated, translated_rows = await _record(scenario, "litellm")
    assert native.pop("transports") == {"openai"}
    assert translated.pop("transports") == {"litellm"}
    assert native == translated
    assert len(native_rows) == len(translated_rows)
    for mine, theirs in zip(native_rows, translated_rows, strict=True):
        assert mine == theirs
    assert native_rows, "the run recorded nothing"
