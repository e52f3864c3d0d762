"""Routing choices over the roster and the run state (pure, table-testable).

* :mod:`._plan`: which backend orchestrates a request (task fit, context fit, cost,
  rotation), or answers it directly;
* :mod:`._gate`: whether a request is trivial enough to skip the orchestrator;
* :mod:`._explain`: the order and evidence ``tanglebrain routes`` shows;
* :mod:`._subtasks`: which backends may take a sub-task, in failover order (static, or
  :mod:`._learned` from the ledger's outcomes);
* :mod:`._state`: load and circuit breakers of the run (or server);
* :mod:`._rotation`: the round-robin counters, the only state kept here (a locked file).

Functions take everything they need as arguments (a ``window_of`` lookup for context
windows, outcomes already read from the ledger) so that no test needs a network.
"""

from typing import TYPE_CHECKING, Any

from tanglebrain.router._gate import (
    CLASSIFY_PROMPT,
    CLASSIFY_TAG,
    GateDecision,
    hard_limit,
    heuristic,
    parse_verdict,
)
from tanglebrain.router._plan import OrchestratorPlan, WindowOf, direct_plan, plan_orchestrator
from tanglebrain.router._rotation import RotationStore
from tanglebrain.router._state import Breakers, LoadState
from tanglebrain.router._subtasks import Route, route_subtask

if TYPE_CHECKING:
    from tanglebrain.router._explain import explain
    from tanglebrain.router._learned import (
        Estimate,
        Learned,
        Outcome,
        evidence_since,
        outcomes_from_rows,
    )

__all__ = [
    "CLASSIFY_PROMPT",
    "CLASSIFY_TAG",
    "Breakers",
    "Estimate",
    "GateDecision",
    "Learned",
    "LoadState",
    "OrchestratorPlan",
    "Outcome",
    "RotationStore",
    "Route",
    "WindowOf",
    "direct_plan",
    "evidence_since",
    "explain",
    "hard_limit",
    "heuristic",
    "outcomes_from_rows",
    "parse_verdict",
    "plan_orchestrator",
    "route_subtask",
]


# Loaded on first use: a run that routes statically never needs them, and
# ``explain`` is for ``tanglebrain routes`` only.
_LAZY = {
    "explain": "_explain",
    "Estimate": "_learned",
    "Learned": "_learned",
    "Outcome": "_learned",
    "evidence_since": "_learned",
    "outcomes_from_rows": "_learned",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
