"""What routing decides from, beyond the roster: the ledger's outcomes and the gate.

``load_learned`` reads the sub-task outcomes of the ledger for ``routing =
"learned"``; ``decide_gate`` asks the gate (``router._gate``) whether a request is
trivial, calling the classifier backend when ``gate = "model"``. Both fall back to the
static behaviour with a warning on the run rather than fail it: routing evidence is
an optimisation, never a reason a request goes unanswered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from tanglebrain import router
from tanglebrain.errors import BackendError, BudgetExceeded, CircuitOpen, ConfigError, LedgerError
from tanglebrain.roster import Backend, Roster
from tanglebrain.router import GateDecision
from tanglebrain.runtime import RunContext
from tanglebrain.trace import Call, Run

if TYPE_CHECKING:
    import random


def read_learned(
    roster: Roster,
    state_dir: Path | None,
    *,
    now: float | None = None,
    rng: random.Random | None = None,
) -> router.Learned:
    """The outcomes of the ledger in ``state_dir`` as the learned router's evidence.

    Outcomes older than ``router.evidence_since`` are not read (they would weigh
    under 0.4 %).

    Raises:
        LedgerError: the ledger exists but cannot be read.
    """
    now = time.time() if now is None else now
    weights = roster.settings.route_weights
    rows = []
    if state_dir is not None:
        from tanglebrain.ledger import Ledger, default_path

        rows = Ledger(default_path(state_dir)).route_rows(router.evidence_since(weights, now))
    return router.Learned(router.outcomes_from_rows(rows), weights, now=now, rng=rng)


def load_learned(roster: Roster, state_dir: Path | None, trace: Run) -> router.Learned | None:
    """The learned router's evidence for a run, or None when the roster routes statically.

    An unreadable ledger warns on ``trace`` and routes statically.
    """
    if roster.settings.routing != "learned":
        return None
    try:
        return read_learned(roster, state_dir)
    except LedgerError as exc:
        trace.warn(f"learned routing has no evidence this run ({exc}); routing statically")
        return None


def classifier(ctx: RunContext) -> Backend | None:
    """The cheapest usable backend good at ``classify``, if any."""
    found = [b for b in ctx.usable() if router.CLASSIFY_TAG in b.good_at]
    return min(found, key=lambda b: b.cost) if found else None


async def decide_gate(ctx: RunContext, prompt: str, attachments: int) -> GateDecision:
    """Whether ``prompt`` is trivial, by the roster's ``gate`` (heuristic or model).

    The model gate's call is recorded on the run (role ``gate``). When no backend is
    good at ``classify``, or its call fails or answers unclearly, the heuristic decides
    and the decision says why.
    """
    if ctx.roster.settings.gate == "heuristic":
        return router.heuristic(prompt, attachments)
    hard = router.hard_limit(prompt.strip(), attachments)
    if hard is not None:  # no call needed to see this one is not trivial
        return GateDecision(False, "heuristic", hard)
    backend = classifier(ctx)
    if backend is None:
        return _fallback(prompt, f"no usable backend is good at {router.CLASSIFY_TAG!r}")
    call = Call("gate", backend.id, backend.model)
    ctx.run.extra_calls.append(call)
    messages = [
        {"role": "system", "content": router.CLASSIFY_PROMPT},
        {"role": "user", "content": prompt},
    ]
    try:
        reply = await ctx.call(backend, messages, call)
    except (BackendError, ConfigError, CircuitOpen, BudgetExceeded) as exc:
        return _fallback(prompt, f"the classifier {backend.id} failed: {exc}")
    verdict = router.parse_verdict(reply.text)
    if verdict is None:
        return _fallback(prompt, f"the classifier {backend.id} answered {reply.text[:40]!r}")
    word = "SIMPLE" if verdict else "COMPLEX"
    return GateDecision(verdict, f"model:{backend.id}", f"the classifier answered {word}")


def _fallback(prompt: str, why: str) -> GateDecision:
    decision = router.heuristic(prompt)
    return GateDecision(decision.trivial, f"heuristic ({why})", decision.reason)
