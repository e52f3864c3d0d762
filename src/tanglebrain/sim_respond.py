"""How the simulator answers one chat request, according to the kind in its model spec.

:func:`respond` parses the spec, sleeps for ``latency=`` (or forever for ``hang``) unless the
client leaves or the server stops, plays the protocol-level kinds (``drop``, ``cut``, ``fail``,
``malformed``, ``empty``) and otherwise sends the reply :func:`compose` builds, as JSON or as
an SSE stream. Errors are raised as :class:`~tanglebrain.sim_scripts.SimError` for the caller
to send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tanglebrain.sim_http import drop, raw, send_events
from tanglebrain.sim_orchestrator import orchestrate
from tanglebrain.sim_protocol import chunks, completion, envelope, usage
from tanglebrain.sim_scripts import (
    ModelSpec,
    Reply,
    SimError,
    SimReply,
    failure,
    last_user_text,
    messages_of,
    parse_spec,
    review_text,
    scripted,
    tool_rounds,
    worker_text,
)

Pause = Literal["elapsed", "disconnected", "closing"]
PopScript = Callable[[str], SimReply | None]
"""Pops the next scripted reply queued for a spec string, or returns None."""


@dataclass(frozen=True)
class Exchange:
    """One chat request being answered.

    Attributes:
        body: the request JSON.
        nth: how many requests (this one included) arrived for its model string.
        cid: the completion id, ``chatcmpl-sim-N``.
        scope: ASGI scope.
        receive: ASGI receive channel.
        send: ASGI send channel.
    """

    body: dict[str, Any]
    nth: int
    cid: str
    scope: Scope
    receive: Receive
    send: Send


def compose(kind: str, spec: ModelSpec, body: Mapping[str, Any], pop_script: PopScript) -> Reply:
    """Compose the reply of a content kind.

    Args:
        kind: ``echo``, ``worker``, ``cut``, ``script``, ``orchestrator`` or ``reviewer``
            (``fail`` passes its ``then=`` kind here).
        spec: the parsed model spec.
        body: the request JSON.
        pop_script: pops the next scripted reply for a spec string, or None.

    Returns:
        The reply content.

    Raises:
        SimError: for an exhausted script or a scripted error status.
    """
    if kind == "echo":
        return Reply(last_user_text(body))
    if kind == "script":
        return scripted(spec, pop_script(spec.raw), tool_rounds(messages_of(body)) + 1)
    if kind == "orchestrator":
        return orchestrate(spec, body)
    if kind == "reviewer":
        return Reply(review_text(spec))
    return Reply(worker_text(spec, body))


async def respond(
    model: str, ex: Exchange, pop_script: PopScript, closing: anyio.Event | None
) -> None:
    """Answer one chat request as its model spec says.

    Args:
        model: the request's ``model`` string (the spec, without ``openai/``).
        ex: the request and its ASGI channel.
        pop_script: pops the next scripted reply for a spec string, or None.
        closing: set when the server starts shutting down.

    Raises:
        SimError: the error to answer with (bad spec, ``fail``, shutdown, script errors).
    """
    spec = parse_spec(model)
    latency = spec.num("latency", 0.0)
    kind = spec.kind
    if kind == "hang" or latency > 0:
        outcome = await pause(ex.receive, None if kind == "hang" else latency, closing)
        if outcome == "disconnected":
            return
        if outcome == "closing":
            raise SimError(
                503, "simulator: shutting down", type="server_error", code="simulator_shutdown"
            )
    stream = ex.body.get("stream") is True
    if kind == "drop" or (kind == "cut" and not stream):
        await drop(ex.send)
    if kind == "fail":
        times = spec.int_opt("times")
        if times is None or ex.nth <= times:
            auth = dict(ex.scope.get("headers") or []).get(b"authorization", b"")
            raise failure(spec, auth.decode("latin-1"))
        kind = spec.str_opt("then", "worker")
    if kind == "malformed":
        await _malformed(ex, stream)
    elif kind == "empty":
        await _empty(ex, spec, stream)
    else:
        await _deliver(ex, spec, kind, compose(kind, spec, ex.body, pop_script), stream)


async def _malformed(ex: Exchange, stream: bool) -> None:
    junk = "<html>simulated malformed body</html>"
    if stream:
        await send_events(ex.send, [junk, "[DONE]"])
    else:
        await raw(ex.send, 200, "application/json", junk.encode())


async def _empty(ex: Exchange, spec: ModelSpec, stream: bool) -> None:
    payload = envelope(ex.cid, spec, "chat.completion.chunk" if stream else "chat.completion", [])
    payload["usage"] = usage(ex.body, spec, Reply(""))
    if stream:
        await send_events(ex.send, [payload, "[DONE]"])
    else:
        await JSONResponse(payload)(ex.scope, ex.receive, ex.send)


async def _deliver(ex: Exchange, spec: ModelSpec, kind: str, reply: Reply, stream: bool) -> None:
    """Send a composed reply: cut short, as an SSE stream, or as one JSON completion."""
    cid = ex.cid
    used = usage(ex.body, spec, reply)
    if kind == "cut":
        await send_events(ex.send, list(chunks(cid, spec, reply)[:2]), cut=True)
    elif stream:
        include = _dig_bool(ex.body, "stream_options", "include_usage")
        events: list[dict[str, Any] | str] = [
            {**chunk, "usage": None} if include else chunk for chunk in chunks(cid, spec, reply)
        ]
        if include:
            events.append({**envelope(cid, spec, "chat.completion.chunk", []), "usage": used})
        await send_events(ex.send, [*events, "[DONE]"])
    else:
        await JSONResponse(completion(cid, spec, reply, used))(ex.scope, ex.receive, ex.send)


def _dig_bool(body: Mapping[str, Any], key: str, sub: str) -> bool:
    value = body.get(key)
    return isinstance(value, dict) and value.get(sub) is True


async def pause(receive: Receive, seconds: float | None, closing: anyio.Event | None) -> Pause:
    """Wait ``seconds`` (None: forever) unless the client leaves or the server stops.

    Args:
        receive: ASGI receive channel (watched for ``http.disconnect``).
        seconds: how long to wait, or None for ever.
        closing: set when the server starts shutting down, or None.

    Returns:
        ``"elapsed"``, ``"disconnected"`` or ``"closing"``: what ended the wait.
    """
    outcome: list[Pause] = []
    async with anyio.create_task_group() as tg:

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            outcome.append("disconnected")
            tg.cancel_scope.cancel()

        async def server_closing() -> None:
            if closing is not None:
                await closing.wait()
                outcome.append("closing")
                tg.cancel_scope.cancel()

        tg.start_soon(client_gone)
        tg.start_soon(server_closing)
        if seconds is None:
            await anyio.sleep_forever()
        else:
            await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    return outcome[0] if outcome else "elapsed"
