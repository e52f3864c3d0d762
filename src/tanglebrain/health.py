"""Health checks of roster backends: key presence, reachability, tool calls, facts.

The logic behind ``tanglebrain backends check``: each backend gets two tiny requests
(and, when it can orchestrate, one request offering a tool), concurrently; every
problem comes with the fix. Nothing here prints. Every configured key value is masked
in what the checks report.

The first request pays for starting the client: imports and set-up inside litellm on
its first call, the connection (TCP, TLS) and the pool. Its time is reported apart
(``first_call_ms``); the latency reported is the second request's, on the warm client.
Each round of requests starts once every backend's previous one has ended, so that no
backend's start-up is counted in another's latency (see ``run_checks``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio

from tanglebrain import models, toolcalls
from tanglebrain.errors import BackendError, ConfigError
from tanglebrain.redact import Redactor
from tanglebrain.roster import Backend, Roster
from tanglebrain.trace import Call

CHECK_TIMEOUT = 30.0  # seconds per probe at most; the roster's timeout_s when lower
PING = [{"role": "user", "content": "Connectivity check: reply with the single word: ok"}]
TOOL_PING = [
    {
        "role": "user",
        "content": 'Connectivity check: call the delegate tool once with prompt "ping". '
        "Do not answer in text.",
    }
]
TOOL = {
    "type": "function",
    "function": {
        "name": "delegate",
        "description": "Hand a sub-task to a specialist backend.",
        "parameters": {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The sub-task."}},
            "required": ["prompt"],
        },
    },
}


TEXT_CALLS = (
    "tool calls come back as text (e.g. a ```json block), not as tool_calls: the server's "
    "chat template does not parse them. tanglebrain recognizes and runs them, but nothing "
    "holds them to the tool schema; for reliable calls serve the model with a chat template "
    "that parses its tool calls (llama.cpp: --jinja --chat-template-file FILE)"
)


@dataclass
class Verdict:
    """What ``backends check`` found out about one backend."""

    id: str
    model: str
    enabled: bool
    key: str
    transport: str = "openai"  # "openai" (native) or "litellm": how its calls are made
    reachable: bool | None = None
    latency_ms: float | None = None  # a tiny request on the warm client
    first_call_ms: float | None = None  # the first request: client start-up included
    tools: str = "not checked"
    context_window: int | None = None
    price_per_mtok: dict[str, float] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """No problem found."""
        return not self.problems


def _fix(b: Backend, err: BackendError, timeout: float) -> str:
    host = urlsplit(b.api_base).netloc.rsplit("@", 1)[-1] if b.api_base else None
    ollama = b.provider.startswith("ollama") or ":11434" in (b.api_base or "")
    if err.status in (401, 403):
        var = b.api_key_env
        return f"check the key in ${var}" if var else "the server wants a key: set api_key_env"
    if err.status == 404:
        if ollama:
            return f"pull the model: `ollama pull {b.model.split('/', 1)[-1]}`"
        return f"fix it: `tanglebrain backends set {b.id} model …`"
    if err.status == 429:
        return "rate limited: try again later, or lower max_concurrency"
    if err.status is not None and err.status >= 500:
        return "the server failed: try again later"
    if err.kind == "timeout":
        where = f"is the server at {host} up?" if host else "is the provider reachable?"
        return f"no answer within {timeout:g}s: {where}"
    if err.kind == "connect":
        if ollama:
            return "start Ollama: `ollama serve`"
        return f"is the server at {host} running?" if host else "check your network connection"
    return "run with --debug, or see the provider's status page"


async def _ping(
    b: Backend, v: Verdict, wait: Wait, calls: list[Call], what: str = ""
) -> Call | None:
    """Send ``b`` the tiny request; its traced call, or None (and a problem) if it failed."""
    call = Call("subtask", b.id, b.model)
    try:
        await models.complete(
            b, PING, call=call, env=os.environ, timeout=wait.total, connect_timeout=wait.connect,
            retry=models.RetryPolicy(max_attempts=1), max_tokens=32,
        )  # fmt: skip
    except (BackendError, ConfigError) as exc:
        fix = _fix(b, exc, wait.total) if isinstance(exc, BackendError) else exc.fix
        v.problems.append(f"{what}{getattr(exc, 'reason', exc)} ({fix})")
        return None
    finally:
        calls.append(call)
    return call


async def _first(b: Backend, v: Verdict, wait: Wait, calls: list[Call]) -> None:
    """The first request: is ``b`` reachable at all (client start-up included)."""
    call = await _ping(b, v, wait, calls)
    v.reachable = call is not None
    if call is not None:
        v.first_call_ms = round(call.attempts[-1].latency_ms, 1)


async def _timed(b: Backend, v: Verdict, wait: Wait, calls: list[Call]) -> None:
    """The same request again, on the client the first one started: the latency."""
    call = await _ping(b, v, wait, calls, what="the second request failed: ")
    if call is not None:
        v.latency_ms = round(call.attempts[-1].latency_ms, 1)


async def _tools(b: Backend, v: Verdict, wait: Wait, calls: list[Call]) -> None:
    """Whether ``b``, which can orchestrate, answers a request offering a tool with a call."""
    call = Call("orchestrator", b.id, b.model)
    try:
        reply = await models.complete(
            b, TOOL_PING, call=call, env=os.environ, timeout=wait.total,
            connect_timeout=wait.connect, retry=models.RetryPolicy(max_attempts=1), tools=[TOOL],
        )  # fmt: skip
    except BackendError as exc:
        v.tools = "failed"
        v.problems.append(f"tool call failed: {exc.reason} ({_fix(b, exc, wait.total)})")
        return
    finally:
        calls.append(call)
    _judge_tools(b, v, reply)


def _judge_tools(b: Backend, v: Verdict, reply: models.Reply) -> None:
    """Whether the model called the tool: as a real tool call, as text, or not at all."""
    if reply.tool_calls:
        v.tools = "works"
    elif toolcalls.parse(reply.text, {"delegate"}).calls:
        # The model called the tool, but the server's chat template did not parse the call.
        v.tools = "as text"
        v.warnings.append(TEXT_CALLS)
    else:
        v.tools = "no tool call returned"
        v.problems.append(
            "can_orchestrate, but no tool call returned (pick a model with tool calling, or "
            f"`tanglebrain backends set {b.id} can_orchestrate false`)"
        )


def _static(b: Backend) -> Verdict:
    v = Verdict(b.id, b.model, b.enabled, b.key_status(os.environ), models.transport_name(b))
    v.context_window = b.context_window
    if b.price is not None:
        v.price_per_mtok = {"input": b.price.input, "output": b.price.output}
    if v.key == "missing":
        v.problems.append(f"${b.api_key_env} is not set (export {b.api_key_env}=…)")
    if not b.enabled:
        v.warnings.append(f"disabled (enable it: `tanglebrain backends enable {b.id}`)")
    return v


def _facts(b: Backend, v: Verdict) -> None:
    v.context_window = models.context_window(b)
    price = models.price_per_token(b)
    if price is not None:
        v.price_per_mtok = {"input": round(price[0] * 1e6, 6), "output": round(price[1] * 1e6, 6)}
    if v.context_window is None:
        v.warnings.append(
            f"context window unknown: it is not filtered by size (set it: "
            f"`tanglebrain backends set {b.id} context_window N`)"
        )
    if price is None:
        v.warnings.append(
            f"price unknown (set it: `tanglebrain backends set {b.id} price IN,OUT`"
            ", USD per million tokens)"
        )


@dataclass(frozen=True)
class Wait:
    """How long a check's request may take: each wait for the reply, and the connection."""

    total: float
    connect: float


# One round's request to one backend: (backend, its verdict, its wait, calls so far).
_Step = Callable[[Backend, Verdict, Wait, list[Call]], Coroutine[Any, Any, None]]


def run_checks(
    roster: Roster, targets: list[Backend], offline: bool, calls: list[Call] | None = None
) -> list[Verdict]:
    """Check ``targets`` concurrently (only keys and the file when ``offline``).

    Args:
        roster: the roster the targets come from (its timeouts and key values).
        targets: the backends to check.
        offline: check only the file and the keys; send nothing.
        calls: when given, every request's traced call is appended to it as it ends.

    Returns:
        One verdict per target, in order.
    """
    verdicts = [_static(b) for b in targets]
    if offline:
        return verdicts
    for b, v in zip(targets, verdicts, strict=True):
        _facts(b, v)
    if any(v.transport == "litellm" and not v.problems for v in verdicts):
        models.load_litellm()  # its import is not the backend's latency
    settings = roster.settings
    wait = Wait(min(settings.timeout_s, CHECK_TIMEOUT), settings.connect_timeout_s)
    traced: list[Call] = [] if calls is None else calls
    anyio.run(_rounds, targets, verdicts, wait, traced)
    mask = Redactor(roster.key_values(os.environ))  # a server may echo any key it was sent
    for v in verdicts:
        v.problems = [mask(p) for p in v.problems]
        v.warnings = [mask(w) for w in v.warnings]
    return verdicts


def _native(b: Backend, v: Verdict) -> bool:
    """Called through the native (openai) transport, no problem found so far."""
    return v.transport == "openai" and not v.problems


def _translated(b: Backend, v: Verdict) -> bool:
    """Called through litellm's translation, no problem found so far."""
    return v.transport == "litellm" and not v.problems


def _orchestrates(b: Backend, v: Verdict) -> bool:
    """Can orchestrate, so its tool calls count; no problem found so far."""
    return b.can_orchestrate and not v.problems


async def _rounds(
    targets: list[Backend], verdicts: list[Verdict], wait: Wait, traced: list[Call]
) -> None:
    """Send the checks' requests round by round, filling in each target's verdict."""

    async def each(step: _Step, which: Callable[[Backend, Verdict], bool]) -> None:
        async with anyio.create_task_group() as tg:
            for b, v in zip(targets, verdicts, strict=True):
                if which(b, v):
                    tg.start_soon(step, b, v, wait, traced)

    async def one_by_one(step: _Step, which: Callable[[Backend, Verdict], bool]) -> None:
        for b, v in zip(targets, verdicts, strict=True):
            if which(b, v):
                await step(b, v, wait, traced)

    # Each round starts when the previous one has ended everywhere. litellm's calls
    # do their work on this process's CPU (its first one for hundreds of ms, each
    # later one for tens), which a request in flight alongside counts as its own
    # latency: measured against the simulator, a native request took 7-30 ms next to
    # them and 2-6 ms alone. So the native transport's backends are measured first,
    # and litellm's timed requests go one at a time.
    await each(_first, _native)
    await each(_timed, _native)
    await each(_first, _translated)
    await one_by_one(_timed, _translated)
    await each(_tools, _orchestrates)
    for b, v in zip(targets, verdicts, strict=True):
        if v.reachable and not b.can_orchestrate:
            v.tools = "n/a"
