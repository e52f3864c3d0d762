from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tanglebrain.errors import ConfigError, MissingKeyError
from tanglebrain.ledger import Ledger, default_path
from tanglebrain.roster import Backend, Roster, parse
from tanglebrain.router import (
    Breakers,
    LoadState,
    RotationStore,
    plan_orchestrator,
    route_subtask,
)
from tanglebrain.trace import Run
from tests.helpers import WAIT


def roster(*entries: str) -> Roster:
    return parse("\n".join(f"[[backend]]\n{e}" for e in entries))


def b(bid: str, tags: str = "x", cost: float = 1, orch: bool = False, extra: str = "") -> str:
    tag_list = ", ".join(f'"{t}"' for t in tags.split(","))
    return (
        f'id = "{bid}"\nmodel = "ollama_chat/{bid}"\ngood_at = [{tag_list}]\ncost = {cost}\n'
        f"can_orchestrate = {str(orch).lower()}\n{extra}\n"
    )


WINDOWS = {"small": 1000, "big": 100_000}


def window_of(backend: Backend) -> int | None:
    return WINDOWS.get(backend.id)


ORCH_CASES = [
    # name, roster entries, kwargs, expected ids in order, direct?
    (
        "cheapest-first",
        [b("o1", cost=30, orch=True), b("o2", cost=10, orch=True)],
        {},
        ["o2", "o1"],
        False,
    ),
    (
        "task-hint-wins-over-cost",
        [b("o1", "planning", 30, True), b("o2", "code", 10, True)],
        {"task": "planning"},
        ["o1", "o2"],
        False,
    ),
    ("no-orchestrator-direct-cheapest", [b("w1", cost=5), b("w2", cost=1)], {}, ["w2", "w1"], True),
    ("pin-orchestrator", [b("o1", orch=True), b("o2", orch=True)], {"pin": "o2"}, ["o2"], False),
    ("pin-worker-is-direct", [b("o1", orch=True), b("w", cost=0)], {"pin": "w"}, ["w"], True),
    (
        "context-too-small-skipped",
        [b("small", cost=1, orch=True), b("big", cost=9, orch=True)],
        {"needed_tokens": 5000},
        ["big"],
        False,
    ),
    (
        "unknown-window-kept",
        [b("small", cost=1, orch=True), b("anon", cost=9, orch=True)],
        {"needed_tokens": 5000},
        ["anon"],
        False,
    ),
    (
        "disabled-ignored",
        [b("o1", orch=True, extra="enabled = false"), b("o2", orch=True)],
        {},
        ["o2"],
        False,
    ),
    (
        "keyless-skipped",
        [b("o1", cost=1, orch=True, extra='api_key_env = "TB_NOPE"'), b("o2", cost=5, orch=True)],
        {},
        ["o2"],
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "entries", "kwargs", "ids", "direct"), ORCH_CASES, ids=[c[0] for c in ORCH_CASES]
)
def test_plan_orchestrator(
    name: str, entries: list[str], kwargs: dict[str, object], ids: list[str], direct: bool
) -> None:
    plan = plan_orchestrator(roster(*entries), {}, window_of=window_of, **kwargs)  # type: ignore[arg-type]
    assert [c.id for c in plan.candidates] == ids
    assert plan.direct is direct


ORCH_ERRORS = [
    ("unknown-pin", [b("o1", orch=True)], {"pin": "zz"}, ConfigError, "unknown backend id"),
    (
        "disabled-pin",
        [b("o1", orch=True, extra="enabled = false"), b("o2")],
        {"pin": "o1"},
        ConfigError,
        "disabled",
    ),
    ("nothing-enabled", [b("o1", extra="enabled = false")], {}, ConfigError, "no backend"),
    (
        "nothing-fits",
        [b("small", orch=True)],
        {"needed_tokens": 5000},
        ConfigError,
        "no orchestrator fits",
    ),
    (
        "only-keyless",
        [b("o1", orch=True, extra='api_key_env = "TB_NOPE"')],
        {},
        MissingKeyError,
        "TB_NOPE",
    ),
    (
        "pinned-keyless",
        [b("o1", orch=True, extra='api_key_env = "TB_NOPE"')],
        {"pin": "o1"},
        MissingKeyError,
        "TB_NOPE",
    ),
]


@pytest.mark.parametrize(
    ("name", "entries", "kwargs", "exc", "fragment"), ORCH_ERRORS, ids=[c[0] for c in ORCH_ERRORS]
)
def test_plan_orchestrator_errors(
    name: str, entries: list[str], kwargs: dict[str, object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc, match=fragment):
        plan_orchestrator(roster(*entries), {}, window_of=window_of, **kwargs)  # type: ignore[arg-type]


def test_rotation_among_equals() -> None:
    r = roster(b("o1", orch=True), b("o2", orch=True), b("o3", cost=9, orch=True))
    firsts = []
    for offset in range(4):
        plan = plan_orchestrator(r, {}, rotation_offset=lambda key, n, o=offset: o)
        firsts.append(plan.candidates[0].id)
        assert plan.candidates[-1].id == "o3"  # the dearer one only as failover
        assert plan.rotation_key == "o1,o2"
    assert firsts == ["o1", "o2", "o1", "o2"]


SUB = [
    b("orch", "review", 30, True),
    b("cheap", "code,review", 1),
    b("dear", "code", 9),
    b("small", "code", 0.5),
    b("off", "code", 0, extra="enabled = false"),
]

SUB_CASES = [
    # name, kwargs, load, expected
    ("by-tag-cost-order", {"task": "code"}, {}, ["cheap", "dear"]),  # small: window too small
    ("fits-small-window", {"task": "code", "needed_tokens": 10}, {}, ["small", "cheap", "dear"]),
    ("orchestrator-excluded", {"task": "review"}, {}, ["cheap"]),
    ("named-first-then-tag", {"task": "code", "backend_id": "dear"}, {}, ["dear", "cheap"]),
    ("named-only", {"backend_id": "dear"}, {}, ["dear"]),
    ("named-orchestrator-allowed", {"backend_id": "orch"}, {}, ["orch"]),
    ("named-disabled", {"backend_id": "off"}, {}, []),
    ("unknown-tag-no-fit", {"task": "poetry"}, {}, []),
    (
        "load-breaks-cost-ties",
        {"task": "code", "needed_tokens": 10},
        {"in_flight": {"small": 3}},
        ["small", "cheap", "dear"],
    ),
    ("cooldown-goes-last", {"task": "code"}, {"failures": {"cheap": 2}}, ["dear", "cheap"]),
    ("one-failure-stays", {"task": "code"}, {"failures": {"cheap": 1}}, ["cheap", "dear"]),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "load", "expected"), SUB_CASES, ids=[c[0] for c in SUB_CASES]
)
def test_route_subtask(
    name: str, kwargs: dict[str, object], load: dict[str, dict[str, int]], expected: list[str]
) -> None:
    WINDOWS["small"] = 1000
    args: dict[str, object] = {"task": None, "backend_id": None, "needed_tokens": 5000, **kwargs}
    breakers = Breakers()
    for bid, n in load.get("failures", {}).items():
        for _ in range(n):
            breakers.record(bid, ok=False)
    got = route_subtask(
        roster(*SUB),
        {},
        orchestrator_id="orch",
        load=LoadState(in_flight=load.get("in_flight", {}), breakers=breakers),
        window_of=window_of,
        **args,
    )  # type: ignore[arg-type]
    assert [c.id for c in got.candidates] == expected


def test_a_circuit_opens_after_failures_in_a_row_and_probes_once_later() -> None:
    now = [0.0]
    breakers = Breakers(threshold=2, probe_after_s=30, clock=lambda: now[0])
    breakers.record("w", ok=False)
    breakers.record("w", ok=True)  # a success in between: not two in a row
    breakers.record("w", ok=False)
    assert not breakers.is_open("w") and breakers.admit("w")
    breakers.record("w", ok=False)
    assert breakers.is_open("w") and not breakers.admit("w")
    now[0] = 31.0  # half-open: exactly one probe goes through
    assert breakers.admit("w") and not breakers.admit("w")
    breakers.record("w", ok=False)  # the probe failed: open again, for another 30 s
    assert breakers.is_open("w")
    now[0] = 62.0
    assert breakers.admit("w")
    breakers.record("w", ok=True)  # the probe succeeded: closed
    assert not breakers.is_open("w") and breakers.admit("w") and breakers.admit("w")


def test_a_runs_circuit_stays_open_to_its_end() -> None:
    now = [0.0]
    breakers = Breakers(clock=lambda: now[0])
    breakers.record("w", ok=False)
    breakers.record("w", ok=False)
    now[0] = 1e9
    assert breakers.is_open("w")


def test_equal_cost_prefers_less_loaded() -> None:
    r = roster(b("a", "code", 1), b("b2", "code", 1))
    got = route_subtask(
        r,
        {},
        task="code",
        backend_id=None,
        orchestrator_id=None,
        needed_tokens=1,
        load=LoadState(in_flight={"a": 5}),
    )
    assert [c.id for c in got.candidates] == ["b2", "a"]


def test_rotation_store_advances_only_when_told(tmp_path: Path) -> None:
    store = RotationStore(tmp_path)
    assert store.offset("k", 3) == 0
    store.advance("k")
    store.advance("k")
    assert store.offset("k", 3) == 2
    assert store.offset("other", 3) == 0


def test_rotation_store_is_safe_across_processes(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from tanglebrain.router import RotationStore;"
        "s = RotationStore(Path(sys.argv[1]));"
        "[s.advance('k') for _ in range(25)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(6)]
    assert all(p.wait(timeout=WAIT) == 0 for p in procs)
    assert RotationStore(tmp_path).offset("k", 1000) == 150


def test_rotation_store_survives_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    store = RotationStore(blocker / "state")
    store.advance("k")  # must not raise
    assert store.offset("k", 2) == 0


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common 022 umask, under which a plain mkdir gives 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _first_by_rotation(state: Path) -> None:
    RotationStore(state).offset("k", 3)


def _first_by_ledger(state: Path) -> None:
    Ledger(default_path(state)).record(Run(prompt="p"))


@pytest.mark.usefixtures("loose_umask")
@pytest.mark.parametrize(
    "first", [_first_by_rotation, _first_by_ledger], ids=["rotation", "ledger"]
)
def test_state_dir_is_private_whoever_creates_it(
    tmp_path: Path, first: Callable[[Path], None]
) -> None:
    state = tmp_path / "new" / "state"
    first(state)
    RotationStore(state).advance("k")
    Ledger(default_path(state)).record(Run(prompt="q"))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o755  # shared parents: left alone


@pytest.mark.usefixtures("loose_umask")
def test_an_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    state = tmp_path / "chosen"
    state.mkdir(mode=0o750)
    RotationStore(state).advance("k")
    assert stat.S_IMODE(state.stat().st_mode) == 0o750


SPILL = [
    b("cheap", "code", 1, extra="max_concurrency = 2"),
    b("mid", "code", 2, extra="max_concurrency = 2"),
    b("dear", "code", 5, extra="max_concurrency = 2"),
    b("free", "local", 0, extra="max_concurrency = 1"),
    b("free2", "local", 0, extra="max_concurrency = 1"),
    b("paid", "local", 1),
]

SPILL_CASES = [
    # name, settings, kwargs, calls in flight (queued ones included), expected order
    ("free-slot-stays-first", "", {}, {"cheap": 1}, ["cheap", "mid", "dear"]),
    ("saturated-spills-within-2x", "", {}, {"cheap": 2}, ["mid", "cheap", "dear"]),
    ("queued-calls-saturate-too", "", {}, {"cheap": 9}, ["mid", "cheap", "dear"]),
    ("beyond-the-factor-waits", "", {}, {"cheap": 2, "mid": 2}, ["cheap", "mid", "dear"]),
    ("a-wider-factor", "spill_cost_factor = 5\n", {}, {"cheap": 2, "mid": 2},
     ["dear", "cheap", "mid"]),
    ("factor-1-no-dearer", "spill_cost_factor = 1\n", {}, {"cheap": 2}, ["cheap", "mid", "dear"]),
    ("free-spills-to-free", "", {"task": "local"}, {"free": 1}, ["free2", "free", "paid"]),
    ("free-never-to-paid", "", {"task": "local"}, {"free": 1, "free2": 1},
     ["free", "free2", "paid"]),
    ("named-is-kept", "", {"backend_id": "cheap"}, {"cheap": 2}, ["cheap", "mid", "dear"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "settings", "kwargs", "in_flight", "expected"),
    SPILL_CASES,
    ids=[c[0] for c in SPILL_CASES],
)
def test_saturated_backend_spills_over_within_the_cost_factor(
    name: str,
    settings: str,
    kwargs: dict[str, str],
    in_flight: dict[str, int],
    expected: list[str],
) -> None:
    text = "[settings]\n" + settings + "".join(f"[[backend]]\n{e}" for e in SPILL)
    args: dict[str, str | None] = {"task": "code", "backend_id": None, **kwargs}
    got = route_subtask(
        parse(text),
        {},
        orchestrator_id=None,
        needed_tokens=1,
        load=LoadState(in_flight=dict(in_flight)),
        **args,  # type: ignore[arg-type]
    )
    assert [c.id for c in got.candidates] == expected
