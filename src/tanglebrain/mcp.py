"""MCP server over stdio: ``tanglebrain mcp``.

An agent (Claude Code, Codex, …) becomes the orchestrator and tanglebrain's roster its
specialists. Three tools:

* ``delegate`` and ``delegate_many``: the arguments and results of docs/contracts.md, run by
  :func:`tanglebrain.delegation.execute` in a ``RunContext`` built as
  :func:`tanglebrain.orchestrator.run` builds one (the roster's budget, retries,
  timeout and ``max_subtasks`` apply per call), so routing, fan-out, failover and
  budget are the same as inside a run. Each call is one run in the ledger (origin
  ``mcp``): one turn, whose orchestrator is the client (``mcp:<client name>``), holding
  the tool call and its sub-tasks.
* ``backends``: the menu (id, good_at, relative cost, context window) as JSON.

Every result is one text content block holding the JSON. ``isError`` is set when the
call as a whole failed (a ``delegate`` whose sub-task did not succeed, bad arguments,
an unknown tool, a roster error); per-task failures of ``delegate_many`` are entries
with ``status: "error"`` and a reason. The roster is read at start and again whenever
its file's content changes, so a fixed roster needs no restart; while it is broken every call
answers with the roster error. stdout carries protocol messages only.

A line that is not JSON is answered with a JSON-RPC parse error (-32700, id null); a
message that is JSON but not a valid JSON-RPC 2.0 message (wrong ``jsonrpc``, no
``method``, ``params`` not an object, …) with an invalid-request error (-32600) that
carries the message's id when it is a string or an integer, else null. A client never
waits for a reply that will not come.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pydantic
from mcp import types as mt
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

from tanglebrain import delegation, results
from tanglebrain._version import __version__
from tanglebrain.errors import ConfigError
from tanglebrain.roster import LoadedRoster, discover, load
from tanglebrain.runtime import RunContext
from tanglebrain.session import Session, Writer, finish, server_limits
from tanglebrain.tools import menu, tool_schemas
from tanglebrain.trace import Call, Run, ToolCall, Turn

TOOLS = ("delegate", "delegate_many", "backends")
INSTRUCTIONS = (
    "tanglebrain hands sub-tasks to the user's roster of specialist models. Use "
    "delegate_many for independent sub-tasks: they run concurrently and come back in "
    "order. Pick a backend by task tag (cheapest fitting one) or by id; `backends` "
    "lists them. Each prompt must be self-contained: the specialist sees nothing else."
)
log = logging.getLogger("tanglebrain.mcp")
Recorder = Callable[[Sequence[Run], LoadedRoster], None]


@dataclass(frozen=True, slots=True)
class Reply:
    """One tool call's answer.

    Attributes:
        result: a delegation result (``results.ToolResult``) or JSON-ready data.
        text: ``result`` as the JSON text the client receives, serialized once.
        failed: whether the call as a whole failed (the reply's ``isError``).
    """

    result: Any
    text: str
    failed: bool

    @classmethod
    def of(cls, data: Any, failed: bool) -> Reply:
        """The reply holding JSON-ready ``data``."""
        return cls(data, json.dumps(data, ensure_ascii=False), failed)


class Bridge:
    """The roster behind the MCP tools; every delegate call is one recorded run."""

    def __init__(
        self,
        explicit: Path | None,
        env: Mapping[str, str],
        cwd: Path,
        record: Recorder | None = None,
    ) -> None:
        self.explicit, self.env, self.cwd, self.record = explicit, env, cwd, record
        self.client = "mcp:client"
        self._loaded: LoadedRoster | None = None
        self._data: bytes | None = None
        self._writer = Writer()  # one ledger writer across calls
        self.limits = server_limits()

    def roster(self) -> LoadedRoster:
        """The roster, re-read whenever its file's content changed.

        Raises:
            ConfigError: the roster cannot be found or is invalid.
        """
        path, _ = discover(self.explicit, self.env, self.cwd)
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        if self._loaded is None or data is None or data != self._data:
            self._loaded = None
            self._loaded, self._data = load(self.explicit, self.env, self.cwd), data
        return self._loaded

    def context(self, loaded: LoadedRoster, trace: Run) -> RunContext:
        """A ``RunContext`` for one call, as ``orchestrator.run`` builds one."""
        # The server's limits: max_concurrency holds across calls, not just within one.
        return RunContext.for_run(loaded.roster, self.env, trace, limits=self.limits)

    def tools(self) -> list[mt.Tool]:
        """The three tools; their descriptions list the menu (or the roster error)."""
        try:
            ctx = self.context(self.roster(), Run(prompt=""))
        except ConfigError as exc:
            anything = {"type": "object", "additionalProperties": True}
            note = f"Unavailable: tanglebrain's roster has an error: {exc}"
            return [mt.Tool(name=n, description=note, input_schema=anything) for n in TOOLS]
        listed = menu(ctx, None)
        out = [
            mt.Tool(
                name=s["function"]["name"],
                description=s["function"]["description"]
                + "\nThe result is JSON: "
                + ("{status, backend, text | error}" if i == 0 else "one entry per task, in order"),
                input_schema=s["function"]["parameters"],
            )
            for i, s in enumerate(tool_schemas(ctx, None))
        ]
        description = "The specialist backends tanglebrain can delegate to (JSON).\n"
        schema = {"type": "object", "properties": {}, "additionalProperties": False}
        return [
            *out,
            mt.Tool(name="backends", description=description + listed, input_schema=schema),
        ]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> tuple[Any, bool]:
        """Run one tool call; return (JSON-able result, whether it is an error).

        For callers in this process; the server sends ``reply``'s text instead.
        """
        reply = await self.reply(name, arguments)
        data = reply.result
        if isinstance(data, results.RESULT_TYPES):
            data = data.as_json()
        return data, reply.failed

    async def reply(self, name: str, arguments: Mapping[str, Any]) -> Reply:
        """Run one tool call; return its answer, with the JSON text the client receives."""
        if name not in TOOLS:
            return Reply.of(
                _error(f"unknown tool {name!r}; the tools are {', '.join(TOOLS)}"), True
            )
        try:
            loaded = self.roster()
        except ConfigError as exc:
            return Reply.of(_error(f"roster error: {exc}"), True)
        if name == "backends":
            return Reply.of(self.backends(loaded), False)
        return await self.delegate(loaded, name, arguments)

    def backends(self, loaded: LoadedRoster) -> list[dict[str, Any]]:
        """The menu as a JSON array."""
        ctx = self.context(loaded, Run(prompt=""))
        return [
            {"id": b.id, "good_at": list(b.good_at), "cost": b.cost,
             "context_window": ctx.window_of(b), "model": b.model}
            for b in loaded.roster.enabled()
        ]  # fmt: skip

    async def delegate(
        self, loaded: LoadedRoster, name: str, arguments: Mapping[str, Any]
    ) -> Reply:
        """Run ``delegate``/``delegate_many`` as one run and record it."""
        trace = Run(prompt=_summary(name, arguments), origin="mcp")
        node = ToolCall(id=f"mcp-{trace.id}", name=name, arguments=json.dumps(arguments))
        trace.turns.append(Turn(0, Call("orchestrator", self.client, "mcp"), [node]))
        t0 = time.perf_counter()
        try:
            result = await delegation.execute(
                self.context(loaded, trace), name, node.arguments, node, None
            )
            text = results.dumps(result)  # the one serialization: the run's answer and the reply
            node.result_bytes = node.context_bytes = len(text.encode())
            failed = isinstance(result, results.CallError) or (
                isinstance(result, results.SubtaskResult) and result.status != "ok"
            )
            trace.answer = text
            finish(trace, error=node.error or _failure(trace))
        except BaseException as exc:
            finish(trace, exc)
            raise
        finally:
            await self.session(loaded).keep(trace)
        subs = trace.subtasks()
        log.info(
            "%s: %d sub-task(s), %d ok, %.0f ms",
            name, len(subs), sum(s.status == "ok" for s in subs),
            (time.perf_counter() - t0) * 1000,
        )  # fmt: skip
        return Reply(result, text, failed)

    def session(self, loaded: LoadedRoster) -> Session:
        """The session that finishes and keeps this roster's calls."""
        record = self.record
        return Session(
            loaded.roster, self.env, roster_dir=loaded.path.parent,
            record=(lambda traces: record(traces, loaded)) if record is not None else None,
            limits=self.limits, note=_log_note, writer=self._writer,
        )  # fmt: skip


def _log_note(message: str, prefix: str) -> None:
    log.warning("%s: %s", prefix, message)


def _failure(trace: Run) -> str | None:
    """Why a call whose sub-tasks all failed produced nothing (None: one succeeded).

    A call with some sub-tasks ok is a partial success, like a degraded CLI run; one
    with none ok is a failed run, so that the ledger does not store it as ok.
    """
    subs = trace.subtasks()
    if not subs or any(s.status == "ok" for s in subs):
        return None
    head = "the sub-task failed" if len(subs) == 1 else f"all {len(subs)} sub-tasks failed"
    reasons = [f"#{s.index} {s.status.replace('_', ' ')}: {s.error or '-'}" for s in subs]
    return "\n  ".join([head, *reasons])


def _error(message: str) -> dict[str, Any]:
    return {"status": "error", "error": message}


def _summary(name: str, arguments: Mapping[str, Any]) -> str:
    """What the ledger shows as the run's prompt."""
    tasks = arguments.get("tasks") if name == "delegate_many" else [arguments]
    if not isinstance(tasks, list) or not tasks:
        return f"[mcp {name}]"
    first = tasks[0].get("prompt") if isinstance(tasks[0], dict) else None
    more = f" (+{len(tasks) - 1} more)" if len(tasks) > 1 else ""
    return f"[mcp {name}] {first if isinstance(first, str) else ''}{more}"


def build_server(bridge: Bridge) -> Server[Any]:
    """The low-level MCP server whose tools are ``bridge``'s."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListToolsResult:
        return mt.ListToolsResult(tools=bridge.tools())

    async def call_tool(
        ctx: ServerRequestContext[Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult:
        client = ctx.session.client_params
        if client is not None and client.client_info.name:
            bridge.client = f"mcp:{client.client_info.name}"
        try:
            reply = await bridge.reply(params.name, params.arguments or {})
        except Exception as exc:  # a bug: still tell the caller what happened
            log.exception("tool %s failed", params.name)
            reply = Reply.of(_error(f"internal error: {type(exc).__name__}: {exc}"), True)
        return mt.CallToolResult(content=[mt.TextContent(text=reply.text)], is_error=reply.failed)

    return Server(
        "tanglebrain",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def rejection(exc: Exception) -> mt.JSONRPCError:
    """The JSON-RPC error that answers a line the transport could not read as a message.

    Args:
        exc: what the transport raised for the line (a pydantic ``ValidationError``
            when the line is not JSON or not a JSON-RPC 2.0 message).
    """
    problems = exc.errors() if isinstance(exc, pydantic.ValidationError) else []
    if not problems or any(p["type"] == "json_invalid" for p in problems):
        error = mt.ErrorData(code=mt.PARSE_ERROR, message="Parse error: the line is not valid "
                             "JSON; send one JSON-RPC 2.0 message per line")  # fmt: skip
        return mt.JSONRPCError(jsonrpc="2.0", id=None, error=error)
    # Errors about a field of a union member carry the whole message as their input.
    message = next((p["input"] for p in problems if isinstance(p.get("input"), dict)), None)
    rid = message.get("id") if message is not None else None
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        rid = None
    why = _envelope_problem(message)
    error = mt.ErrorData(code=mt.INVALID_REQUEST, message=f"Invalid Request: {why}")
    return mt.JSONRPCError(jsonrpc="2.0", id=rid, error=error)


def _envelope_problem(message: dict[str, Any] | None) -> str:
    """What makes ``message`` (None: not a JSON object) an invalid JSON-RPC 2.0 message."""
    if message is None:
        return "a message must be a JSON object (batches are not supported)"
    if message.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be \"2.0\""
    if "method" in message and not isinstance(message["method"], str):
        return "'method' must be a string"
    if "params" in message and not isinstance(message["params"], dict | None):
        return "'params' must be an object"
    if "method" not in message and not {"result", "error"} & message.keys():
        return "a request needs a 'method'"
    return "not a valid JSON-RPC 2.0 request, notification or response"


class _Screened:
    """The transport's read stream, minus unreadable lines, which are answered at once.

    The SDK hands such lines to the server as exceptions, which it only logs, so a
    client would wait forever for the reply to a request it sent with a bad envelope.
    """

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], replies: WriteStream[SessionMessage]
    ) -> None:
        self.inner, self.replies = inner, replies

    async def receive(self) -> SessionMessage:
        """The next readable message (answering every unreadable one before it)."""
        while True:
            item = await self.inner.receive()
            if not isinstance(item, Exception):
                return item
            await self.replies.send(SessionMessage(rejection(item)))

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self.inner.aclose()

    def __aiter__(self) -> _Screened:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Screened:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def last_context(self) -> Any:
        """The sender's context of the last item, as the SDK's own stream exposes it."""
        return getattr(self.inner, "last_context", None)


async def serve_stdio(bridge: Bridge) -> None:
    """Speak MCP on stdin/stdout until the client closes stdin."""
    server = build_server(bridge)
    async with stdio_server() as (read, write):
        await server.run(_Screened(read, write), write, server.create_initialization_options())
