"""Who orchestrates a request: task fit, context fit, cost, rotation among equals."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tanglebrain.errors import ConfigError, MissingKeyError, UsageError
from tanglebrain.roster import Backend, Roster

WindowOf = Callable[[Backend], int | None]


@dataclass(frozen=True)
class OrchestratorPlan:
    """Who answers the request, in failover order.

    ``direct`` means no tools: the backend answers the prompt itself (no
    ``can_orchestrate`` backend is enabled, a non-orchestrator is pinned, or the
    user asked for ``--no-delegate``).
    """

    candidates: tuple[Backend, ...]
    direct: bool
    rotation_key: str | None = None
    notes: tuple[str, ...] = ()


def _fits(backend: Backend, needed_tokens: int, window_of: WindowOf) -> bool:
    window = window_of(backend)
    return window is None or needed_tokens <= window


def plan_orchestrator(
    roster: Roster,
    env: Mapping[str, str],
    *,
    pin: str | None = None,
    task: str | None = None,
    needed_tokens: int = 0,
    window_of: WindowOf = lambda b: None,
    rotation_offset: Callable[[str, int], int] = lambda key, n: 0,
) -> OrchestratorPlan:
    """Choose the orchestrator (or the direct answerer) for one request.

    Args:
        roster: the validated roster.
        env: environment, to see which API keys are set.
        pin: a backend id given with ``-b``.
        task: a ``-t`` tag hint.
        needed_tokens: estimated tokens entering the orchestrator's context.
        window_of: context window lookup (None = unknown, never filtered).
        rotation_offset: ``(group key, group size) -> offset`` for round-robin.

    Raises:
        ConfigError: unknown or disabled pin, no enabled backend, nothing fits.
        MissingKeyError: the only candidates lack their API key.
    """
    if task is not None and task not in roster.tags():
        raise UsageError(
            f"unknown task tag {task!r} for -t/--task",
            fix="known tags: " + (", ".join(roster.tags()) or "none"),
        )
    if pin is not None:
        return _plan_pinned(roster, pin, env, needed_tokens, window_of)
    enabled = roster.enabled()
    if not enabled:
        raise ConfigError(
            "no backend is enabled",
            fix="enable one with `tanglebrain backends enable ID` or edit the roster",
        )
    orchestrators = [b for b in enabled if b.can_orchestrate]
    if not orchestrators:
        direct = _direct_candidates(enabled, env, needed_tokens, window_of)
        return OrchestratorPlan(
            direct, direct=True, notes=("no orchestrator is configured; answering directly",)
        )
    fitting = _fitting_orchestrators(orchestrators, env, needed_tokens, window_of)
    return _ranked(fitting, task, rotation_offset)


def _plan_pinned(
    roster: Roster, pin: str, env: Mapping[str, str], needed_tokens: int, window_of: WindowOf
) -> OrchestratorPlan:
    """The pinned backend alone: it orchestrates if it can, else answers directly."""
    backend = _pinned(roster, pin)
    backend.api_key(env)
    if not _fits(backend, needed_tokens, window_of):
        raise ConfigError(
            f"request needs ~{needed_tokens} tokens but the context window is {window_of(backend)}",
            backend=pin,
            fix="pin a larger-context backend or send less input",
        )
    return OrchestratorPlan((backend,), direct=not backend.can_orchestrate)


def _fitting_orchestrators(
    orchestrators: Sequence[Backend],
    env: Mapping[str, str],
    needed_tokens: int,
    window_of: WindowOf,
) -> list[Backend]:
    """The orchestrators with their key set whose context window holds the request."""
    usable = [b for b in orchestrators if b.usable(env)]
    if not usable:
        first = orchestrators[0]
        raise MissingKeyError(first.id, first.api_key_env or "")
    fitting = [b for b in usable if _fits(b, needed_tokens, window_of)]
    if not fitting:
        largest = max((window_of(b) or 0) for b in usable)
        raise ConfigError(
            f"request needs ~{needed_tokens} tokens; no orchestrator fits "
            f"(largest context window: {largest})",
            fix="add a larger-context orchestrator or send less input",
        )
    return fitting


def _ranked(
    fitting: Sequence[Backend], task: str | None, rotation_offset: Callable[[str, int], int]
) -> OrchestratorPlan:
    """Order by task fit, then cost; rotate the tied best so that load spreads over them."""

    def rank(b: Backend) -> tuple[int, float]:
        return (0 if task is None or task in b.good_at else 1, b.cost)

    ordered = sorted(fitting, key=rank)  # stable: file order breaks ties
    top = [b for b in ordered if rank(b) == rank(ordered[0])]
    key = None
    if len(top) > 1:
        key = ",".join(sorted(b.id for b in top))
        shift = rotation_offset(key, len(top)) % len(top)
        top = top[shift:] + top[:shift]
    rest = [b for b in ordered if b not in top]
    return OrchestratorPlan((*top, *rest), direct=False, rotation_key=key)


def _pinned(roster: Roster, pin: str) -> Backend:
    backend = roster.get(pin)
    if backend is None:
        ids = ", ".join(b.id for b in roster.backends)
        raise ConfigError("unknown backend id", backend=pin, fix=f"known ids: {ids}")
    if not backend.enabled:
        raise ConfigError(
            "backend is disabled", backend=pin, fix=f"run `tanglebrain backends enable {pin}`"
        )
    return backend


def _direct_candidates(
    enabled: Sequence[Backend], env: Mapping[str, str], needed: int, window_of: WindowOf
) -> tuple[Backend, ...]:
    usable = [b for b in enabled if b.usable(env)]
    if not usable:
        first = enabled[0]
        raise MissingKeyError(first.id, first.api_key_env or "")
    fitting = [b for b in usable if _fits(b, needed, window_of)] or usable
    return tuple(sorted(fitting, key=lambda b: b.cost))


def direct_plan(
    roster: Roster, env: Mapping[str, str], *, needed_tokens: int, window_of: WindowOf, note: str
) -> OrchestratorPlan:
    """A gated request's answerers: every usable backend that fits, cheapest first.

    Raises:
        ConfigError: no backend is enabled.
        MissingKeyError: none has its API key.
    """
    enabled = roster.enabled()
    if not enabled:
        raise ConfigError(
            "no backend is enabled",
            fix="enable one with `tanglebrain backends enable ID` or edit the roster",
        )
    candidates = _direct_candidates(enabled, env, needed_tokens, window_of)
    return OrchestratorPlan(candidates, direct=True, notes=(note,))
