"""Who answers a request: the gate's direct plan for a trivial one, else the router's.

``plan`` sizes the first turn, asks the gate when nothing else decides (``evidence``) and
otherwise has ``router`` pick the orchestrator candidates; ``warn_missing_keys`` says,
before anything is routed, which backends are skipped for lack of a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tanglebrain import evidence, router
from tanglebrain.models import estimate_tokens
from tanglebrain.runtime import RunContext

if TYPE_CHECKING:  # orchestrator imports this module: the request's type is for annotations only
    from tanglebrain.orchestrator import Request


def warn_missing_keys(ctx: RunContext) -> None:
    """Say once, before anything is routed, which enabled backends lack their key."""
    for b in ctx.roster.enabled():
        if b.key_status(ctx.env) == "missing":
            ctx.run.warn(
                f"backend '{b.id}' is skipped: ${b.api_key_env} is not set "
                f"(export {b.api_key_env}=… or disable the backend)"
            )


async def plan(
    ctx: RunContext, request: Request, reviewing: bool, store: router.RotationStore | None
) -> router.OrchestratorPlan:
    """Who answers ``request``: the gate's direct plan for a trivial request, else the router's.

    Args:
        ctx: the run.
        request: what was asked.
        reviewing: whether the answer will be reviewed (a review bypasses the gate).
        store: the persisted round-robin counters (None: no state folder, no rotation).

    Returns:
        The plan: the candidate orchestrators in failover order, notes, the rotation key.
    """
    needed = _needed_tokens(request, ctx.roster.settings.context_budget_bytes)
    gated = await _gated_plan(ctx, request, needed, reviewing)
    if gated is not None:
        return gated
    return router.plan_orchestrator(
        ctx.roster,
        ctx.env,
        pin=request.backend,
        task=request.task,
        needed_tokens=needed,
        window_of=ctx.window_of,
        rotation_offset=store.offset if store else (lambda key, n: 0),
    )


async def _gated_plan(
    ctx: RunContext, request: Request, needed: int, reviewing: bool
) -> router.OrchestratorPlan | None:
    """The direct plan of a request the gate finds trivial; None to orchestrate.

    The gate is asked only when the roster has one and nothing else decides: a pinned
    backend (``-b``), ``--no-delegate``, ``--no-gate`` and a review all bypass it.
    """
    settings = ctx.roster.settings
    if (
        settings.gate == "off"
        or not request.gate
        or request.backend is not None
        or request.no_delegate
        or reviewing
    ):
        return None
    decision = await evidence.decide_gate(ctx, request.prompt, len(request.attachments))
    ctx.run.gate = str(decision)
    ctx.run.changed()
    if not decision.trivial:
        return None
    ctx.run.mode = "gated"
    return router.direct_plan(
        ctx.roster,
        ctx.env,
        needed_tokens=needed,
        window_of=ctx.window_of,
        note=f"the gate found the request trivial ({decision.reason}); answering directly",
    )


def _needed_tokens(request: Request, budget_bytes: int) -> int:
    """Tokens the first orchestrator turn needs: the prompt, attachments, system prompt."""
    if request.no_delegate:  # the solo baseline reads every attachment in full
        size = sum(a.size for a in request.attachments)
    else:
        size = sum(min(a.size, budget_bytes) for a in request.attachments)
    return estimate_tokens(request.prompt) + size // 4 + 1500
