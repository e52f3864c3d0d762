"""How the simulator answers one chat request, according to the kind in its model spec.

:func:`respond` parses the spec, sleeps for ``latency=`` (or forever for ``hang``) unless the
client leaves or the server stops, plays the protocol-level kinds (``drop``, ``cut``, ``fail``,
``malformed``, ``empty``) and otherwise sends the reply :func:`compose` builds, as JSON or as
an SSE stream. Errors are raised as :class:`~tanglebrain.sim._scripts.SimError` for the caller
to send.

Like llama.cpp's server, a request whose history holds a tool call with arguments that are
not JSON is refused with a 500, whatever the kind: a client must never echo a model's
malformed call back as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from starlette.types import Receive, Scope, Send

from tanglebrain.sim._http import JSON, drop, raw, send_events
from tanglebrain.sim._orchestrator import orchestrate
from tanglebrain.sim._protocol import chunks, completion, delta_chunk, envelope, sse, usage
from tanglebrain.sim._scripts import (
    LOOP_SENTENCE,
    LOOP_TOKENS,
    ModelSpec,
    Reply,
    SimError,
    SimReply,
    failure,
    last_user_text,
    loop_text,
    max_tokens_of,
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
    _check_tool_arguments(ex.body)
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
    rate = spec.num("fail_rate", 0.0)
    if rate > 0 and math.floor(ex.nth * rate) > math.floor((ex.nth - 1) * rate):
        # Evenly spread, so that a run of N requests fails exactly floor(N * rate) times.
        raise SimError(500, "simulated server error (fail_rate)", type="server_error")
    stream = ex.body.get("stream") is True
    if kind == "drop" or (kind == "cut" and not stream):
        await drop(ex.send)
    if kind == "fail":
        times = spec.int_opt("times")
        if times is None or ex.nth <= times:
            auth = dict(ex.scope.get("headers") or []).get(b"authorization", b"")
            raise failure(spec, auth.decode("latin-1"))
        kind = spec.str_opt("then", "worker")
    if kind == "worker" and spec.int_opt("loop"):
        await _loop(ex, spec, stream, closing)
    elif kind == "malformed":
        await _malformed(ex, spec, stream)
    elif kind == "empty":
        await _empty(ex, spec, stream)
    else:
        await _deliver(ex, spec, kind, compose(kind, spec, ex.body, pop_script), stream)


def _check_tool_arguments(body: Mapping[str, Any]) -> None:
    """Refuse, as llama.cpp does, a history whose tool-call arguments are not JSON."""
    for message in messages_of(body):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if not isinstance(arguments, str):
                continue
            try:
                json.loads(arguments)
            except (ValueError, RecursionError) as exc:
                raise SimError(
                    500, f"simulator: Failed to parse tool call arguments as JSON: {exc}",
                    type="server_error",
                ) from None  # fmt: skip


# The garbled 200s of ``malformed:body=…``: (content type, body bytes).
_GARBLED: dict[str, tuple[str, bytes]] = {
    "html": ("application/json", b"<html>simulated malformed body</html>"),
    "page": ("text/html", b"<html><body>simulated proxy error page</body></html>"),
    "utf8": ("application/json", b'{"simulated": "\xff\xfe invalid utf-8 \xc3"}'),
    "charset": ("application/json; charset=utf-16", '{"id": "x"}'.encode("utf-32")),
    "nochoices": ("application/json", b'{"id": "chatcmpl-sim", "object": "chat.completion"}'),
}


async def _malformed(ex: Exchange, spec: ModelSpec, stream: bool) -> None:
    content_type, junk = _GARBLED[spec.str_opt("body", "html")]
    if stream:
        await send_events(ex.send, [junk.decode("latin-1"), "[DONE]"])
    else:
        await raw(ex.send, 200, content_type, junk)


async def _empty(ex: Exchange, spec: ModelSpec, stream: bool) -> None:
    choices: list[Any] = []
    if spec.int_opt("choice"):  # a reply with nothing in it, in the shape of a real one
        key = "delta" if stream else "message"
        empty = {"index": 0, key: {"role": "assistant", "content": None}, "finish_reason": "stop"}
        choices.append(empty)
    payload = envelope(
        ex.cid, spec, "chat.completion.chunk" if stream else "chat.completion", choices
    )
    payload["usage"] = usage(ex.body, spec, Reply(""))
    if stream:
        await send_events(ex.send, [payload, "[DONE]"])
    else:
        await JSON(payload)(ex.scope, ex.receive, ex.send)


async def _deliver(ex: Exchange, spec: ModelSpec, kind: str, reply: Reply, stream: bool) -> None:
    """Send a composed reply: cut short, as an SSE stream, or as one JSON completion."""
    cid = ex.cid
    used = usage(ex.body, spec, reply)
    if stream or kind == "cut":  # a cut is a stream (a non-streamed one was a drop)
        include = _dig_bool(ex.body, "stream_options", "include_usage")
        events: list[dict[str, Any] | str] = [
            {**chunk, "usage": None} if include else chunk for chunk in chunks(cid, spec, reply)
        ]
        if include:
            events.append({**envelope(cid, spec, "chat.completion.chunk", []), "usage": used})
        if kind == "cut":
            await send_events(ex.send, events[: spec.int_opt("events", 2)], cut=True)
        else:
            await send_events(ex.send, [*events, "[DONE]"], gap=spec.num("gap", 0.0))
    else:
        await JSON(completion(cid, spec, reply, used))(ex.scope, ex.receive, ex.send)


async def _loop(ex: Exchange, spec: ModelSpec, stream: bool, closing: anyio.Event | None) -> None:
    """``worker:loop=1``: one sentence over and over, stopped only by a limit or the client."""
    limit = max_tokens_of(ex.body)
    if not stream:
        tokens = min(spec.int_opt("tokens", LOOP_TOKENS) or 0, limit or LOOP_TOKENS)
        reply = Reply(loop_text(4 * tokens))
        used = usage(ex.body, spec, reply, completion=tokens)
        body = completion(ex.cid, spec, reply, used, finish="length")
        await JSON(body)(ex.scope, ex.receive, ex.send)
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await ex.send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(event: dict[str, Any] | str) -> None:
        await ex.send({"type": "http.response.body", "body": sse(event), "more_body": True})

    async def generate() -> None:
        await write(delta_chunk(ex.cid, spec, {"role": "assistant", "content": ""}))
        sent, gap, n = 0, spec.num("gap", 0.0), 0
        # A word a chunk, as a model streams tokens: consecutive chunks differ, though the
        # text repeats (litellm itself stops only runs of identical chunks).
        words = [w + " " for w in LOOP_SENTENCE.split()]
        while limit is None or sent < 4 * limit:
            piece, n = words[n % len(words)], n + 1
            if limit is not None:
                piece = piece[: 4 * limit - sent]
            await write(delta_chunk(ex.cid, spec, {"content": piece}))
            sent += len(piece)
            await anyio.sleep(gap)  # also a checkpoint: lets the watchers see a client leave
        await write(delta_chunk(ex.cid, spec, {}, "length"))
        if _dig_bool(ex.body, "stream_options", "include_usage"):
            used = usage(ex.body, spec, Reply(loop_text(sent)))
            await write({**envelope(ex.cid, spec, "chat.completion.chunk", []), "usage": used})
        await write("[DONE]")
        await ex.send({"type": "http.response.body", "body": b"", "more_body": False})

    async with anyio.create_task_group() as tg:

        async def client_gone() -> None:
            while (await ex.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def server_closing() -> None:
            if closing is not None:
                await closing.wait()
                tg.cancel_scope.cancel()

        tg.start_soon(client_gone)
        tg.start_soon(server_closing)
        with contextlib.suppress(OSError):  # the client went away mid-write
            await generate()
        tg.cancel_scope.cancel()


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
