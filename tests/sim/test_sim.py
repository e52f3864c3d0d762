"""Tests for the loopback OpenAI-compatible simulator (tanglebrain.sim)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanglebrain.sim import FINGERPRINT, SimReply, Simulator
from tanglebrain.sim._scripts import SimError, parse_spec
from tests.helpers import WAIT

SRC = Path(__file__).resolve().parents[2] / "src"
TLS = ssl.create_default_context()  # shared: httpx builds one per client (~20 ms) otherwise
ROSTER_TAGS = [
    "grunt", "classify", "reasoning", "planning", "review", "long-context",
    "summarize", "extract", "boilerplate", "code", "transform", "second-opinion",
]  # fmt: skip


BOTH = ("delegate", "delegate_many")
MANY = "delegate_many"
S = ["stdin"]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as s:
        yield s


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=30, limits=limits, verify=TLS) as c:
        yield c


@pytest.fixture
async def oai(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim-key", max_retries=0) as c:
        yield c


def user(text: str) -> Any:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


async def chat(client: httpx.AsyncClient, model: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", user("hello"))
    return await client.post("/chat/completions", json={"model": model, **body})


def delegate_tools(
    tags: list[str] | None = ROSTER_TAGS,
    attach: list[str] | None = None,
    backends: list[str] | None = None,
    names: tuple[str, ...] = ("delegate", "delegate_many"),
) -> list[dict[str, Any]]:
    props: dict[str, Any] = {
        "prompt": {"type": "string"},
        "task": {"type": "string"},
        "backend": {"type": "string"},
        "attach": {"type": "array", "items": {"type": "string"}},
    }
    if tags is not None:
        props["task"]["enum"] = tags
    if backends is not None:
        props["backend"]["enum"] = backends
    if attach is not None:
        props["attach"]["items"]["enum"] = attach
    item = {"type": "object", "properties": props, "required": ["prompt"]}
    params = {
        "delegate": item,
        "delegate_many": {
            "type": "object",
            "properties": {"tasks": {"type": "array", "items": item}},
        },
    }
    return [{"type": "function", "function": {"name": n, "parameters": params[n]}} for n in names]


def tool_calls(resp: httpx.Response) -> list[tuple[str, str, Any]]:
    message = resp.json()["choices"][0]["message"]
    return [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or []
    ]


def text_of(resp: httpx.Response) -> str:
    return str(resp.json()["choices"][0]["message"]["content"])


# --- content kinds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "prompt", "expected"),
    [
        ("echo", "exact\n  text ✓", "exact\n  text ✓"),
        ("echo:latency=0.01", "x", "x"),
        ("worker", "line one\nline two", "simulated worker result for: line one line two"),
        ("worker:id=b", "q" * 100, "simulated worker:id=b result for: " + "q" * 60),
        (
            "orchestrator",
            "solve it",
            "Simulated answer from orchestrator (no delegation): solve it",
        ),
    ],
)
async def test_content_kinds(
    client: httpx.AsyncClient, model: str, prompt: str, expected: str
) -> None:
    resp = await chat(client, model, messages=user(prompt))
    assert resp.status_code == 200
    body = resp.json()
    assert body["system_fingerprint"] == FINGERPRINT
    assert body["object"] == "chat.completion"
    assert body["model"] == model
    assert body["choices"][0]["finish_reason"] == "stop"
    assert text_of(resp) == expected


async def test_echo_takes_last_user_message_and_content_parts(client: httpx.AsyncClient) -> None:
    parts = [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": parts},
    ]
    assert text_of(await chat(client, "echo", messages=messages)) == "part one, part two"


@pytest.mark.parametrize("size", [0, 10, 5000])
async def test_worker_size_pads_deterministically(client: httpx.AsyncClient, size: int) -> None:
    first = text_of(await chat(client, f"worker:size={size}"))
    again = text_of(await chat(client, f"worker:size={size}"))
    assert len(first) == size
    assert first == again
    if size > 100:
        assert first.startswith(f"simulated worker:size={size} result for: hello")


async def test_usage_formula(client: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": "abc"}, {"role": "user", "content": "hello world"}]
    tools = delegate_tools()
    resp = await chat(client, "echo", messages=messages, tools=tools)
    tool_chars = len(json.dumps(tools, separators=(",", ":")))
    assert resp.json()["usage"] == {
        "prompt_tokens": math.ceil(14 / 4) + math.ceil(tool_chars / 4),
        "completion_tokens": math.ceil(11 / 4),
        "total_tokens": math.ceil(14 / 4) + math.ceil(tool_chars / 4) + math.ceil(11 / 4),
    }
    fixed = await chat(client, "worker:tokens=7")
    assert fixed.json()["usage"]["completion_tokens"] == 7


@pytest.mark.parametrize(
    ("model", "disagree", "prefix"),
    [
        ("reviewer", [], "{"),
        ("reviewer:verdict=agree", [], "{"),
        ("reviewer:verdict=minor", ["minor"], "{"),
        (
            "reviewer:verdict=blocker,wrap=fence",
            ["blocker"],
            "Simulated review follows.\n\n```json\n",
        ),
        ("reviewer:verdict=blocker,wrap=prose", ["blocker"], "This is a simulated review."),
    ],
)
async def test_reviewer(
    client: httpx.AsyncClient, model: str, disagree: list[str], prefix: str
) -> None:
    text = text_of(await chat(client, model))
    assert text.startswith(prefix)
    critique = json.loads(text[text.index("{") : text.rindex("}") + 1])
    assert set(critique) == {"agree", "disagree", "missing"}
    assert [d["severity"] for d in critique["disagree"]] == disagree
    assert "simulated" in json.dumps(critique)


# --- streaming -----------------------------------------------------------------------------


async def test_stream_text_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="worker",
        messages=user("stream me please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 2
    assert "".join(content) == "simulated worker result for: stream me please"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == math.ceil(len("".join(content)) / 4)
    assert all(c.system_fingerprint == FINGERPRINT for c in chunks)
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_stream_raw_sse_without_usage(client: httpx.AsyncClient) -> None:
    async with client.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "echo",
            "messages": user("abc def ghi"),
            "stream": True,
        },
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in resp.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" and e["choices"] for e in events)
    assert "usage" not in events[-1]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "abc def ghi"


async def test_stream_tool_calls(oai: openai.AsyncOpenAI, client: httpx.AsyncClient) -> None:
    kwargs: dict[str, Any] = {"messages": user("plan"), "tools": delegate_tools()}
    plain = tool_calls(await chat(client, "orchestrator:calls=2", **kwargs))
    stream = await oai.chat.completions.create(
        model="orchestrator:calls=2", stream=True, stream_options={"include_usage": True}, **kwargs
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "args": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["args"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    streamed = [(c["id"], c["name"], json.loads(c["args"])) for _, c in sorted(calls.items())]
    assert streamed == plain
    assert len(streamed) == 2


# --- failure modes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "etype", "code", "retry_after"),
    [
        ("fail", 500, "server_error", "simulated_failure", None),
        ("fail:status=503", 503, "server_error", "simulated_failure", None),
        ("fail:status=503,retry_after=2", 503, "server_error", "simulated_failure", "2"),
        ("fail:status=429", 429, "rate_limit_error", "rate_limit_exceeded", "0"),
        ("fail:status=429,retry_after=3", 429, "rate_limit_error", "rate_limit_exceeded", "3"),
        ("fail:status=429,retry_after=0.5", 429, "rate_limit_error", "rate_limit_exceeded", "0.5"),
        ("fail:status=401", 401, "authentication_error", "simulated_failure", None),
        ("nosuchkind", 404, "invalid_request_error", "model_not_found", None),
        ("", 404, "invalid_request_error", "model_not_found", None),
        ("script", 500, "server_error", "script_exhausted", None),
    ],
)
async def test_http_errors(
    client: httpx.AsyncClient,
    model: str,
    status: int,
    etype: str,
    code: str,
    retry_after: str | None,
) -> None:
    resp = await chat(client, model)
    assert resp.status_code == status
    assert resp.headers.get("retry-after") == retry_after
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == (etype, code)
    assert "simulat" in error["message"]


@pytest.mark.parametrize(
    "model",
    [
        "worker:latency=abc",
        "worker:latency=-1",
        "worker:tokens=1.5",
        "worker:size=x",
        "worker:nokey=1",
        "worker:latency",
        "worker:latency=1,latency=2",
        "worker:",
        "fail:status=200",
        "fail:then=hang",
        "orchestrator:mode=both",
        "orchestrator:bad=x",
        "orchestrator:fanout=0",
        "reviewer:verdict=maybe",
        "echo:size=10",
        "worker:latency=nan",
        "worker:cached=-1",
        "worker:cached=1.5",
    ],
)
async def test_bad_options_are_400(client: httpx.AsyncClient, model: str) -> None:
    resp = await chat(client, model)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_model_spec"


async def test_openai_client_sees_errors(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await oai.chat.completions.create(model="fail:status=429,retry_after=4", messages=user("x"))
    assert info.value.response.headers["retry-after"] == "4"
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="drop", messages=user("x"))


@pytest.mark.parametrize(("model", "stream"), [("drop", False), ("drop", True), ("cut", False)])
async def test_drop_is_a_protocol_error(
    client: httpx.AsyncClient, model: str, stream: bool
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await chat(client, model, stream=stream)
    assert (await chat(client, "echo")).status_code == 200  # the server is still fine


async def test_cut_stream_sends_chunks_then_breaks(client: httpx.AsyncClient) -> None:
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST",
            "/chat/completions",
            json={
                "model": "cut",
                "messages": user("x"),
                "stream": True,
            },
        ) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                lines.extend([line] if line else [])
    assert 1 <= len(lines) <= 2
    assert all(json.loads(line.removeprefix("data: "))["choices"] for line in lines)


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_is_not_json(client: httpx.AsyncClient, stream: bool) -> None:
    resp = await chat(client, "malformed", stream=stream)
    assert resp.status_code == 200
    payload = resp.text.removeprefix("data: ").split("\n")[0]
    with pytest.raises(ValueError):
        json.loads(payload)


async def test_empty_has_no_choices(client: httpx.AsyncClient) -> None:
    resp = await chat(client, "empty")
    assert resp.status_code == 200
    assert resp.json()["choices"] == []
    assert resp.json()["system_fingerprint"] == FINGERPRINT


@pytest.mark.parametrize(
    ("model", "ok_text"),
    [
        ("fail:times=2,then=echo", "hello"),
        ("fail:times=2,status=429", "simulated fail:times=2,status=429 result for: hello"),
        ("fail:times=0", "simulated fail:times=0 result for: hello"),
    ],
)
async def test_fail_times_then_success(
    client: httpx.AsyncClient, sim: Simulator, model: str, ok_text: str
) -> None:
    times = parse_spec(model).int_opt("times") or 0
    statuses = [(await chat(client, model)).status_code for _ in range(times)]
    assert all(s >= 400 for s in statuses)
    assert [text_of(await chat(client, model)) for _ in range(2)] == [ok_text, ok_text]
    assert sim.count(model) == times + 2
    sim.reset()
    if times:
        assert (await chat(client, model)).status_code >= 400  # reset restarts the count


# --- orchestrator --------------------------------------------------------------------------


async def orchestrate(client: httpx.AsyncClient, model: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("tools", delegate_tools())
    kwargs.setdefault("messages", user("Review the repo and fix the bug"))
    resp = await chat(client, model, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp


@pytest.mark.parametrize(
    ("tags", "attach", "fanout", "expected"),
    [
        # the default roster: orchestration-ish tags are skipped; reading tags get attachments
        (
            ROSTER_TAGS,
            S,
            None,
            [("grunt", None), ("classify", None), ("long-context", S), ("summarize", S)],
        ),
        (["reasoning", "planning"], None, None, [("reasoning", None), ("planning", None)]),
        (["code"], ["a.txt", "b.txt"], None, [("code", ["a.txt", "b.txt"])]),
        (["code", "extract"], S, 3, [("code", None), ("extract", S), ("code", None)]),
        (["code", "grunt"], S, 3, [("code", S), ("grunt", None), ("code", None)]),
        (None, None, None, [(None, None)]),
        ([], [], 2, [(None, None), (None, None)]),
    ],
)
async def test_orchestrator_first_turn(
    client: httpx.AsyncClient,
    tags: list[str] | None,
    attach: list[str] | None,
    fanout: int | None,
    expected: list[tuple[str | None, list[str] | None]],
) -> None:
    model = "orchestrator" + (f":fanout={fanout}" if fanout else "")
    resp = await orchestrate(client, model, tools=delegate_tools(tags, attach))
    assert resp.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert resp.json()["choices"][0]["message"]["content"] is None
    [(call_id, name, args)] = tool_calls(resp)
    assert (call_id, name) == ("call_1_0", "delegate_many")
    tasks = args["tasks"]
    assert [(t.get("task"), t.get("attach")) for t in tasks] == expected
    n = len(expected)
    for i, task in enumerate(tasks):
        tag = task.get("task") or "general"
        assert task["prompt"] == f"Sub-task {i + 1} of {n} ({tag}): Review the repo and fix the bug"
        assert "backend" not in task
        if tags:
            assert task["task"] in tags


@pytest.mark.parametrize(
    ("model", "names", "calls"),
    [
        ("orchestrator:fanout=5,calls=2", BOTH, [(MANY, 2), (MANY, 3)]),
        ("orchestrator:fanout=2,calls=9", BOTH, [(MANY, 1), (MANY, 1)]),
        ("orchestrator:fanout=3,mode=single", BOTH, [("delegate", 1)] * 3),
        ("orchestrator:fanout=2", ("delegate",), [("delegate", 1)] * 2),
        ("orchestrator:fanout=2,mode=single", (MANY,), [(MANY, 2)]),
    ],
)
async def test_orchestrator_fanout_calls_mode(
    client: httpx.AsyncClient, model: str, names: tuple[str, ...], calls: list[tuple[str, int]]
) -> None:
    got = tool_calls(await orchestrate(client, model, tools=delegate_tools(names=names)))
    assert [c[0] for c in got] == [f"call_1_{k}" for k in range(len(calls))]
    assert [(name, len(args["tasks"]) if "tasks" in args else 1) for _, name, args in got] == calls
    prompts = [t["prompt"] for _, _, a in got for t in a.get("tasks", [a])]
    total = sum(n for _, n in calls)
    assert [p.split(" (")[0] for p in prompts] == [
        f"Sub-task {i} of {total}" for i in range(1, total + 1)
    ]


async def test_orchestrator_bad_calls(client: httpx.AsyncClient) -> None:
    tools = delegate_tools(backends=["sim-unknown-backend", "flash"])
    [(_, _, args)] = tool_calls(
        await orchestrate(client, "orchestrator:bad=unknown_backend", tools=tools)
    )
    assert {t["backend"] for t in args["tasks"]} == {"sim-unknown-backend-x"}
    resp = await orchestrate(client, "orchestrator:bad=bad_json")
    raw = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    with pytest.raises(ValueError):
        json.loads(raw)
    [(_, _, args)] = tool_calls(await orchestrate(client, "orchestrator:bad=too_many"))
    assert len(args["tasks"]) == 500


@pytest.mark.parametrize("arguments", ['{"tasks": [', "", "not json"])
@pytest.mark.parametrize("model", ["worker", "echo", "orchestrator"])
async def test_a_history_with_broken_tool_arguments_is_refused_like_llama_cpp(
    client: httpx.AsyncClient, model: str, arguments: str
) -> None:
    call = {"id": "c1", "type": "function",
            "function": {"name": "delegate_many", "arguments": arguments}}  # fmt: skip
    messages = [
        *user("hi"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "error"},
    ]
    resp = await chat(client, model, messages=messages)
    assert resp.status_code == 500
    assert "Failed to parse tool call arguments as JSON" in resp.json()["error"]["message"]
    call["function"]["arguments"] = "{}"
    assert (await chat(client, model, messages=messages)).status_code == 200


def conversation(*results: str, request: str = "Fix the bug") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = user(request)
    for turn, content in enumerate(results, start=1):
        call = {
            "id": f"call_{turn}_0",
            "type": "function",
            "function": {"name": "delegate_many", "arguments": "{}"},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return messages


async def test_orchestrator_synthesis(client: httpx.AsyncClient) -> None:
    many = json.dumps(
        [
            {
                "index": 0,
                "status": "ok",
                "backend": "flash",
                "text": "summary\nof things " + "z" * 100,
            },
            {"index": 1, "status": "error", "backend": "deepseek", "error": "HTTP 500"},
        ]
    )
    single = json.dumps({"status": "no_fit", "backend": None, "error": "no backend fits"})
    messages = conversation(many)
    messages.append({"role": "tool", "tool_call_id": "x", "content": single})
    messages.append({"role": "tool", "tool_call_id": "y", "content": "not json\nat all"})
    resp = await orchestrate(client, "orchestrator", messages=messages)
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert text_of(resp).split("\n") == [
        "Simulated synthesis of 4 sub-task results.",
        "- #0 flash ok: " + ("summary of things " + "z" * 100)[:80],
        "- #1 deepseek error: HTTP 500",
        "- #2 None no_fit: no backend fits",
        "- not json at all",
    ]


async def test_orchestrator_rounds(client: httpx.AsyncClient) -> None:
    result = json.dumps([{"index": 0, "status": "ok", "backend": "b", "text": "done"}])
    second = tool_calls(
        await orchestrate(client, "orchestrator:rounds=2", messages=conversation(result))
    )
    assert [c[0] for c in second] == ["call_2_0"]
    final = await orchestrate(
        client, "orchestrator:rounds=2", messages=conversation(result, result)
    )
    assert text_of(final).startswith("Simulated synthesis of 2 sub-task results.")
    no_tools = await orchestrate(client, "orchestrator", messages=conversation(result), tools=None)
    assert text_of(no_tools).startswith("Simulated synthesis of 1 sub-task results.")


# --- script --------------------------------------------------------------------------------


async def test_script_queue(client: httpx.AsyncClient, sim: Simulator) -> None:
    args = json.dumps({"prompt": "p"})
    sim.script("script:id=a", [SimReply(text="one"), SimReply(tool_calls=[("delegate", args)])])
    sim.script("openai/script:id=a", [SimReply(status=429)])
    sim.script("script:id=b", [SimReply(text="other queue")])
    assert text_of(await chat(client, "script:id=a")) == "one"
    resp = await chat(client, "script:id=a")
    assert tool_calls(resp) == [("call_1_0", "delegate", {"prompt": "p"})]
    limited = await chat(client, "script:id=a")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "0")
    exhausted = await chat(client, "script:id=a")
    assert exhausted.status_code == 500
    assert exhausted.json()["error"]["code"] == "script_exhausted"
    assert text_of(await chat(client, "script:id=b")) == "other queue"
    sim.script("script", [SimReply(text="x")])
    sim.reset()
    assert (await chat(client, "script")).status_code == 500


@pytest.mark.parametrize("model", ["worker", "script:bogus=1", "nope"])
def test_script_rejects_non_script_specs(model: str) -> None:
    with pytest.raises(ValueError):
        Simulator().script(model, [SimReply(text="x")])


# --- records and concurrency ---------------------------------------------------------------


async def test_records(client: httpx.AsyncClient, sim: Simulator) -> None:
    tools = delegate_tools()
    headers = {"Authorization": "Bearer secret", "X-Trace": "t1"}
    await client.post(
        "/chat/completions",
        headers=headers,
        json={
            "model": "echo",
            "messages": user("a"),
            "tools": tools,
            "stream": True,
            "temperature": 0,
        },
    )
    await chat(client, "nosuchkind")
    bad = await client.post("/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    first, second = sim.requests
    assert (first.model, first.messages, first.tools, first.stream) == (
        "echo",
        user("a"),
        tools,
        True,
    )
    assert first.body["temperature"] == 0
    assert first.headers["x-trace"] == "t1"
    assert "authorization" not in first.headers
    assert (second.model, second.tools, second.stream) == ("nosuchkind", None, False)
    assert (sim.count("echo"), sim.count("openai/echo"), sim.count("worker")) == (1, 1, 0)
    sim.reset()
    assert sim.requests == []
    assert (sim.count("echo"), sim.in_flight_max()) == (0, 0)


async def test_in_flight_max_50(client: httpx.AsyncClient, sim: Simulator) -> None:
    await chat(client, "echo")  # another model, one at a time
    # Open the 50 connections first, then write the 50 requests back to back: the burst
    # arrives within milliseconds, far inside the 0.2 s latency, even on a loaded machine.
    conns = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", sim.port) for _ in range(50))
    )
    body = json.dumps({"model": "worker:latency=0.2", "messages": user("x")}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Length: {len(body)}\r\n"
    for _, writer in conns:
        writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
    statuses = [(await reader.readline()).split()[1] for reader, _ in conns]
    for _, writer in conns:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer in conns))
    assert statuses == [b"200"] * 50
    assert sim.in_flight_max("worker:latency=0.2") == 50
    assert sim.in_flight_max() == 50
    assert sim.in_flight_max("echo") == 1
    assert sim.in_flight() == 0
    assert sim.count("worker:latency=0.2") == 50


async def test_in_flight_exact_with_hung_requests(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(chat, client, "hang")
        await sim.wait_in_flight(20, "hang")
        assert sim.in_flight("hang") == sim.in_flight_max("hang") == 20
        tg.cancel_scope.cancel()  # clients give up
    assert sim.in_flight_max() == 20


async def test_250_concurrent_requests(client: httpx.AsyncClient, sim: Simulator) -> None:
    results = await asyncio.gather(
        *(chat(client, "worker:latency=0.05", messages=user(f"q{i}")) for i in range(250))
    )
    assert [text_of(r) for r in results] == [
        f"simulated worker:latency=0.05 result for: q{i}" for i in range(250)
    ]
    assert sim.count("worker:latency=0.05") == 250


async def test_shutdown_is_prompt_with_hung_requests() -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        with anyio.fail_after(10):  # a liveness guard, not a timing assertion
            async with Simulator() as sim:
                pending = [
                    asyncio.ensure_future(
                        client.post(
                            f"{sim.base_url}/chat/completions",
                            json={"model": model, "messages": user("x")},
                        )
                    )
                    for model in ("hang", "hang", "echo:latency=3600")
                ]
                await sim.wait_in_flight(3)
            responses = await asyncio.gather(*pending)
    assert [r.status_code for r in responses] == [503, 503, 503]
    assert responses[0].json()["error"]["code"] == "simulator_shutdown"
    assert sim.in_flight() == 0


# --- routes, thread mode, CLI --------------------------------------------------------------


async def test_models_and_unknown_routes(client: httpx.AsyncClient) -> None:
    models = (await client.get("/models")).json()
    assert {"echo", "worker", "orchestrator", "reviewer"} <= {m["id"] for m in models["data"]}
    for method, path, status in [("GET", "/nope", 404), ("GET", "/chat/completions", 405)]:
        resp = await client.request(method, path)
        assert resp.status_code == status
        assert set(resp.json()["error"]) >= {"message", "type", "code"}


def test_thread_mode_with_sync_client() -> None:
    sim = Simulator().start_in_thread()
    try:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"
        with httpx.Client(base_url=sim.base_url, timeout=10) as client:
            resp = client.post(
                "/chat/completions", json={"model": "echo", "messages": user("sync")}
            )
            assert resp.json()["choices"][0]["message"]["content"] == "sync"
            assert sim.count("echo") == 1
    finally:
        sim.stop()
    assert sim.requests[0].model == "echo"
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{sim.base_url}/chat/completions", json={"model": "echo"}, timeout=5)


def test_main_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "from tanglebrain.sim import main; main(port=0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        prefix = "tanglebrain simulator (simulated backends) listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.rstrip().endswith("/v1")
        resp = httpx.post(
            line.split(" on ")[1].strip() + "/chat/completions",
            json={"model": "echo", "messages": user("cli")},
            timeout=10,
        )
        assert resp.json()["choices"][0]["message"]["content"] == "cli"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    assert (proc.returncode, out, err) == (0, "", "")


# --- spec grammar --------------------------------------------------------------------------


@given(st.text(max_size=40))
def test_parse_spec_only_raises_sim_errors(raw: str) -> None:
    try:
        spec = parse_spec(raw)
    except SimError as err:
        assert err.status in (400, 404)
    else:
        assert spec.raw == raw
        assert spec.kind == raw.partition(":")[0]


# --- prompt_x and worker:loop=1 ---------------------------------------------------------------


@pytest.mark.parametrize(("x", "expected"), [("1.5", math.ceil(5 * 1.5)), ("5", 25), ("0", 0)])
async def test_prompt_x_inflates_the_reported_prompt(
    client: httpx.AsyncClient, x: str, expected: int
) -> None:
    messages = [{"role": "user", "content": "a" * 20}]  # 5 tokens at 4 chars a token
    usage = (await chat(client, f"worker:prompt_x={x}", messages=messages)).json()["usage"]
    assert usage["prompt_tokens"] == expected


@pytest.mark.parametrize(("cached", "expected"), [("0", 0), ("3", 3), ("900", 5)])
async def test_cached_reports_openai_cached_prompt_tokens(
    client: httpx.AsyncClient, cached: str, expected: int
) -> None:
    messages = [{"role": "user", "content": "a" * 20}]  # 5 tokens at 4 chars a token
    usage = (await chat(client, f"worker:cached={cached}", messages=messages)).json()["usage"]
    assert usage["prompt_tokens"] == 5  # the cached tokens are part of the prompt's
    assert usage["prompt_tokens_details"] == {"cached_tokens": expected, "audio_tokens": 0}
    plain = (await chat(client, "worker", messages=messages)).json()["usage"]
    assert "prompt_tokens_details" not in plain


async def test_cached_is_in_the_streamed_usage_too(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="worker:cached=2", messages=user("hello there"), stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2


LOOP_LIMITS = [
    # name, extra options, request fields, completion tokens
    ("max-tokens", "", {"max_tokens": 50}, 50),
    ("max-completion-tokens", "", {"max_completion_tokens": 30}, 30),
    ("tokens-below-cap", ",tokens=20", {"max_tokens": 50}, 20),
    ("no-cap", ",tokens=100", {}, 100),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "opts", "fields", "tokens"), LOOP_LIMITS, ids=[c[0] for c in LOOP_LIMITS]
)
async def test_loop_not_streamed_stops_at_a_limit(
    client: httpx.AsyncClient, name: str, opts: str, fields: dict[str, int], tokens: int
) -> None:
    from tanglebrain.sim._scripts import LOOP_SENTENCE

    resp = (await chat(client, "worker:loop=1" + opts, **fields)).json()
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == (LOOP_SENTENCE * 100)[: 4 * tokens]
    assert resp["usage"]["completion_tokens"] == tokens


async def test_loop_streamed_stops_at_max_tokens(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="worker:loop=1",
        messages=user("go on"),
        stream=True,
        max_tokens=40,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 160 and text.startswith("This simulated model repeats")
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 40


async def test_loop_streamed_without_a_cap_runs_until_the_client_leaves(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    body = {"model": "worker:loop=1", "messages": user("go on"), "stream": True}
    received = 0
    async with client.stream("POST", "/chat/completions", json=body) as resp:
        async for chunk in resp.aiter_bytes():
            received += len(chunk)
            if received > 200_000:  # far more than any finite reply of this size
                break
    assert sim.in_flight("worker:loop=1") <= 1
    with anyio.fail_after(WAIT):
        while sim.in_flight("worker:loop=1"):  # polls real state: the server saw us leave
            await anyio.sleep(0.01)
