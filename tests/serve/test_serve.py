"""``tanglebrain serve``: the OpenAI-compatible front door, over real HTTP.

The server runs as a subprocess (``tests/netguard.py serve --port 0``); backends are the
simulator. Clients are the official ``openai`` SDK and, for malformed requests, httpx.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanglebrain.cli.front import is_host, is_loopback
from tanglebrain.errors import (
    BackendError,
    BudgetExceeded,
    ConfigError,
    MissingKeyError,
    NoAnswerError,
)
from tanglebrain.roster import parse
from tanglebrain.serve import ServeConfig, create_app
from tanglebrain.serve._wire import ApiError, Deltas, chunk, error_for, parse_chat
from tanglebrain.sim import Simulator
from tanglebrain.trace import Run
from tests.helpers import GUARD, backend_toml, cli_env, run_cli, wait_until, write_roster

TOKEN = "s3cret-token-for-tests"


@dataclass
class Served:
    """A running ``tanglebrain serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    base_url: str
    home: Path
    stderr: list[str] = field(default_factory=list)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def runs(self) -> list[tuple[str, str, str | None]]:
        with sqlite3.connect(self.home / "runs.db") as db:
            return db.execute("SELECT origin, status, orchestrator FROM runs").fetchall()


def start_serve(tmp: Path, roster: Path, *args: str, **env: str) -> Served:
    """Start the server on a free port; return once it says where it listens."""
    cmd = [sys.executable, str(GUARD), "serve", "--port", "0", "--roster", str(roster), *args]
    environ = cli_env(tmp, **env)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=tmp, env=environ,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    for raw in proc.stderr:
        lines.append(raw.decode())
        if found := re.search(r"serving on (http://\S+/v1)", lines[-1]):
            break
    else:
        raise AssertionError(f"serve did not start: {''.join(lines)}")
    served = Served(proc, found.group(1), Path(environ["TANGLEBRAIN_HOME"]), lines)
    drain = threading.Thread(target=lambda: served.stderr.extend(r.decode() for r in proc.stderr))
    drain.start()
    return served


def roster_file(path: Path, base_url: str) -> Path:
    entries = [
        backend_toml("orch", "orchestrator:fanout=2", base_url, good_at=("planning",),
                     cost=10, orchestrator=True),
        backend_toml("worker", "worker", base_url, good_at=("grunt",), cost=1),
        backend_toml("echo", "echo", base_url, good_at=("grunt",), cost=2),
        backend_toml("broken", "fail:status=500", base_url, good_at=("grunt",), cost=3),
        backend_toml("cutter", "cut:size=4000", base_url, good_at=("grunt",), cost=3),
        backend_toml("off", "worker", base_url, extra="enabled = false"),
        backend_toml("slow", "worker:latency=1.5", base_url, good_at=("grunt",), cost=4),
        backend_toml("single", "worker:latency=0.2,id=single", base_url, good_at=("grunt",),
                     cost=5, extra="max_concurrency = 1"),
        backend_toml("looper", "worker:loop=1", base_url, good_at=("grunt",), cost=6),
        backend_toml("limited", "fail:status=429,retry_after=3", base_url, good_at=("grunt",),
                     cost=7),
    ]  # fmt: skip
    return write_roster(path, *entries, settings="max_attempts = 1\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sim_thread: Simulator) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    server = start_serve(tmp, roster_file(tmp / "roster.toml", sim_thread.base_url))
    yield server
    assert server.stop() == 0


@pytest.fixture
async def oai(served: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=served.base_url, api_key="x", max_retries=0) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- the happy paths ---------------------------------------------------------------------


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    models = await oai.models.list()
    assert [m.id for m in models.data] == ["auto", "orch", "worker", "echo", "broken", "cutter",
                                           "slow", "single", "looper", "limited"]  # fmt: skip
    one = await oai.models.retrieve("echo")
    assert (one.id, one.object, one.owned_by) == ("echo", "model", "tanglebrain")
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.models.retrieve("off")  # exists, but disabled
    assert caught.value.code == "model_not_found"


async def test_auto_runs_the_full_router(oai: openai.AsyncOpenAI) -> None:
    resp = await oai.chat.completions.create(model="auto", messages=user("plan a picnic"))
    assert resp.model == "orch"
    text = resp.choices[0].message.content or ""
    assert text.startswith("Simulated synthesis of 2 sub-task results")
    assert "picnic" in text and resp.choices[0].finish_reason == "stop"
    ext = (resp.model_extra or {})["tanglebrain"]
    assert ext["subtasks"] == 2 and ext["cost_usd"] > 0 and ext["degraded"] is False
    assert resp.id == f"chatcmpl-{ext['run_id']}"
    assert resp.usage is not None and resp.usage.total_tokens > 0


async def test_stream_with_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="auto", messages=user("stream a plan"), stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated synthesis of 2 sub-task results")
    assert {c.model for c in chunks} == {"orch"}
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finish) == 1 and (finish[0].model_extra or {})["tanglebrain"]["subtasks"] == 2
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0


async def test_stream_without_usage_has_no_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="echo", messages=user("e c h o"), stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "e c h o"
    assert all(c.usage is None and c.choices for c in chunks)


@pytest.mark.parametrize(
    ("messages", "prompt"),
    [
        (user("hello there"), "hello there"),
        ([{"role": "user", "content": [{"type": "text", "text": "a"},
                                       {"type": "text", "text": "b"}]}], "a\nb"),
        ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
         "Earlier conversation (oldest first):\n<<<system>>>\nbe brief\n<<<end system>>>\n\n"
         "Current request:\nhi"),
        ([{"role": "developer", "content": "d"}, {"role": "user", "content": "q1"},
          {"role": "assistant", "content": None}, {"role": "assistant", "content": "a1"},
          {"role": "user", "content": "q2"}],
         "Earlier conversation (oldest first):\n<<<developer>>>\nd\n<<<end developer>>>\n"
         "<<<user>>>\nq1\n<<<end user>>>\n<<<assistant>>>\na1\n<<<end assistant>>>\n\n"
         "Current request:\nq2"),
        # an agent framework's history: the tool call and its result become transcript
        ([{"role": "user", "content": "weather?"},
          {"role": "assistant", "content": None, "tool_calls": [
              {"id": "c1", "type": "function",
               "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
          {"role": "tool", "tool_call_id": "c1", "content": "rain"},
          {"role": "user", "content": "so?"}],
         "Earlier conversation (oldest first):\n<<<user>>>\nweather?\n<<<end user>>>\n"
         '<<<assistant>>>\ncalled weather({"city": "Oslo"})\n<<<end assistant>>>\n'
         "<<<tool>>>\nrain\n<<<end tool>>>\n\nCurrent request:\nso?"),
    ],
)  # fmt: skip
async def test_pinned_backend_and_message_mapping(
    oai: openai.AsyncOpenAI, messages: Any, prompt: str
) -> None:
    resp = await oai.chat.completions.create(model="echo", messages=messages)
    assert resp.model == "echo"
    assert resp.choices[0].message.content == prompt
    assert (resp.model_extra or {})["tanglebrain"]["subtasks"] == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_half_an_emoji_in_a_request_is_answered(served: Served, stream: bool) -> None:
    # JSON lets a client send one half of a pair ("\ud83d": a JS string cut mid-emoji);
    # it reaches the model as U+FFFD instead of failing the request.
    body = {"model": "echo", "messages": user("smile \ud83d"), "stream": stream}
    data = json.dumps(body).encode()  # ASCII: the half pair as its escape
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{served.base_url}/chat/completions", content=data,
                                 headers=headers)  # fmt: skip
    assert resp.status_code == 200, resp.text
    if stream:
        events = [json.loads(line[6:]) for line in resp.text.splitlines()
                  if line.startswith("data: {")]  # fmt: skip
        answer = "".join(e["choices"][0]["delta"].get("content", "") for e in events
                         if e.get("choices"))  # fmt: skip
    else:
        answer = resp.json()["choices"][0]["message"]["content"]
    assert "smile \ufffd" in answer


async def test_max_concurrency_holds_across_requests(
    oai: openai.AsyncOpenAI, sim_thread: Simulator
) -> None:
    async def one(i: int) -> None:
        resp = await oai.chat.completions.create(model="single", messages=user(f"q{i}"))
        assert resp.model == "single"

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(one, i)
    assert sim_thread.count("worker:latency=0.2,id=single") == 4
    assert sim_thread.in_flight_max("worker:latency=0.2,id=single") == 1


async def test_100_concurrent_requests(oai: openai.AsyncOpenAI) -> None:
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        if i % 2:
            resp = await oai.chat.completions.create(model="echo", messages=user(f"req {i}"))
            answers[i] = resp.choices[0].message.content or ""
            return
        stream = await oai.chat.completions.create(
            model="echo", messages=user(f"req {i}"), stream=True
        )
        answers[i] = "".join([c.choices[0].delta.content or "" async for c in stream])

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(one, i)
    assert answers == {i: f"req {i}" for i in range(100)}


# --- errors --------------------------------------------------------------------------


async def test_unknown_model_is_404_model_not_found(oai: openai.AsyncOpenAI) -> None:
    for model in ("gpt-4o", "off"):  # off exists but is disabled
        with pytest.raises(openai.NotFoundError) as caught:
            await oai.chat.completions.create(model=model, messages=user("x"))
        assert caught.value.code == "model_not_found"
        assert "auto, orch, worker" in caught.value.message


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "status", "code"),
    [
        ("POST", "/chat/completions", b'{"model": "echo", "messa', "application/json", 400,
         "invalid_json"),
        ("POST", "/chat/completions", b"\xff\xfe not utf-8", "application/json", 400,
         "invalid_json"),
        ("POST", "/chat/completions", json.dumps({"model": "echo", "messages": user("x")}),
         "text/plain", 415, "unsupported_media_type"),
        ("POST", "/chat/completions", "[]", "application/json", 400, "invalid_request"),
        ("POST", "/chat/completions", {"messages": user("x")}, None, 400, "invalid_request"),
        ("POST", "/chat/completions", {"model": "echo", "messages": []}, None, 400,
         "invalid_request"),
        ("POST", "/chat/completions",
         {"model": "echo", "messages": [{"role": "user", "content": [IMAGE]}]}, None, 400,
         "unsupported_content"),
        ("POST", "/chat/completions",
         {"model": "echo", "messages": [*user("x"), {"role": "assistant", "content": "y"}]},
         None, 400, "invalid_request"),
        ("POST", "/chat/completions",
         {"model": "echo", "messages": [{"role": "tool", "content": "x"}]}, None, 400,
         "invalid_request"),
        ("POST", "/chat/completions",
         {"model": "echo", "messages": user("x"), "tools": [{"type": "function"}]}, None, 400,
         "unsupported_parameter"),
        ("POST", "/chat/completions", {"model": "echo", "messages": user("x"), "n": 2}, None,
         400, "unsupported_parameter"),
        ("GET", "/chat/completions", None, None, 405, "method_not_allowed"),
        ("GET", "/nowhere", None, None, 404, "unknown_url"),
    ],
)  # fmt: skip
async def test_bad_requests_get_openai_errors(
    served: Served, method: str, path: str, body: Any, ctype: str | None, status: int,
    code: str,
) -> None:  # fmt: skip
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"content": body}
        if ctype:
            kwargs["headers"] = {"content-type": ctype}
        resp = await client.request(method, path, **kwargs)
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["code"] == code and error["message"] and "type" in error
        ok = await client.post("/chat/completions", json={"model": "echo", "messages": user("ok")})
        assert ok.status_code == 200  # the server survived


DEEP = b"[" * 400_000  # 400 KB, under the 1 MiB body limit
DEEP_KIND = {
    "model": "echo",
    "messages": [
        {"role": "user", "content": [{"type": json.loads("[" * 500 + "]" * 500), "text": "x"}]}
    ],
}


@pytest.mark.parametrize(
    ("target", "body", "code"),
    [("serve", DEEP, "invalid_json"), ("simulator", DEEP, None),
     ("serve", b'{"model": "echo", "messages": ' + DEEP, "invalid_json"),
     ("serve", json.dumps(DEEP_KIND).encode(), "invalid_request")],
)  # fmt: skip
async def test_deeply_nested_body_is_a_clean_400(
    served: Served, sim_thread: Simulator, target: str, body: bytes, code: str | None
) -> None:
    base = served.base_url if target == "serve" else sim_thread.base_url
    async with httpx.AsyncClient(base_url=base) as client:
        resp = await client.post(
            "/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400, resp.text[:200]
        error = resp.json()["error"]
        assert error["code"] == code and 0 < len(error["message"]) < 200, error
        ok = await client.post("/chat/completions", json={"model": "echo", "messages": user("ok")})
        assert ok.status_code == 200  # the server survived
    assert "RecursionError" not in "".join(served.stderr)


async def test_oversized_body_is_413_while_reading(served: Served, oai: openai.AsyncOpenAI) -> None:
    big = "x" * (1 << 20)
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model="echo", messages=user(big))
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}]}'

    async with httpx.AsyncClient(base_url=served.base_url) as client:
        resp = await client.post(
            "/chat/completions", content=chunked(), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("stream", [False, True])
async def test_backend_failure_is_502_with_reasons(oai: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        resp = await oai.chat.completions.create(model="broken", messages=user("x"), stream=stream)
        if stream:
            [c async for c in resp]  # type: ignore[union-attr]
    err = caught.value
    assert err.status_code == 502 and err.code == "backends_failed"
    assert "broken: HTTP 500" in err.message
    # The run retried and failed over already: OpenAI's SDKs must not run it again.
    assert err.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_rate_limited_backend_is_429_with_retry_after(
    oai: openai.AsyncOpenAI, stream: bool
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        resp = await oai.chat.completions.create(model="limited", messages=user("x"),
                                                 stream=stream)  # fmt: skip
        if stream:
            [c async for c in resp]  # type: ignore[union-attr]
    err = caught.value
    assert err.code == "rate_limited" and "limited: HTTP 429" in err.message
    assert err.response.headers["retry-after"] == "3"


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_caps_the_answer_and_a_cut_says_length(
    oai: openai.AsyncOpenAI, sim_thread: Simulator, stream: bool
) -> None:
    prompt = f"never stop {stream}"
    if stream:
        chunks = [c async for c in await oai.chat.completions.create(
            model="looper", messages=user(prompt), max_tokens=16, stream=True)]  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        finish = [f for f in finishes if f]
        warnings = (chunks[-1].model_extra or {})["tanglebrain"]["warnings"]
    else:
        resp = await oai.chat.completions.create(
            model="looper", messages=user(prompt), max_completion_tokens=16
        )
        text, finish = resp.choices[0].message.content or "", [resp.choices[0].finish_reason]
        warnings = (resp.model_extra or {})["tanglebrain"]["warnings"]
    assert finish == ["length"]
    assert 0 < len(text) <= 16 * 4  # the simulator writes 4 characters a token
    [sent] = [r for r in sim_thread.requests if prompt in json.dumps(r.messages)]
    assert sent.body["max_tokens"] == 16
    assert "limit of 16 tokens (the request's max_tokens; truncated)" in " ".join(warnings)
    # A cap the answer stays under changes nothing but the call's max_tokens.
    resp = await oai.chat.completions.create(model="echo", messages=user("short"), max_tokens=16)
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.content == "short"


async def test_error_mid_stream_ends_with_error_event_and_no_done(served: Served) -> None:
    body = {"model": "cutter", "messages": user("cut me off"), "stream": True}
    async with (
        httpx.AsyncClient(base_url=served.base_url) as client,
        client.stream("POST", "/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        events = [line[6:] async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert events and "[DONE]" not in events
    assert json.loads(events[0])["choices"][0]["delta"]["content"]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "backends_failed" and "stream cut" in error["message"]


# --- auth, binding, configuration --------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_off_loopback_needs_a_token(tmp_path: Path, host: str) -> None:
    out = run_cli(["serve", "--host", host, "--port", "0"], tmp_path)
    assert out.code == 2 and "Traceback" not in out.stderr
    assert "--token is required" in out.stderr and len(out.stderr.splitlines()) == 1


HOSTS = [  # (host, an address or name?, loopback?)
    ("127.0.0.1", True, True), ("::1", True, True), ("[::1]", True, True),
    ("localhost", True, True), ("LocalHost.", True, True), ("fe80::1%eth0", True, False),
    ("0.0.0.0", True, False), ("", True, False), ("my_service", True, False),
    ("api.example.com.", True, False), ("x" * 63, True, False), ("a." * 126 + "b", True, False),
    ("x" * 64, False, False), ("a..b", False, False), ("-lead.example", False, False),
    ("not a host", False, False), ("1.2.3.4/8", False, False),
]  # fmt: skip


@pytest.mark.parametrize(("host", "ok", "loopback"), HOSTS)
def test_what_counts_as_a_host_and_as_loopback(host: str, ok: bool, loopback: bool) -> None:
    assert (is_host(host), is_loopback(host)) == (ok, loopback)


@pytest.mark.parametrize("host", ["not a host", "-lead.example", "a..b", "x" * 64, "1.2.3.4/8"])
def test_a_host_that_is_no_address_or_name_is_refused_first(tmp_path: Path, host: str) -> None:
    # Before the token check: a --token would not make it bindable.
    out = run_cli(["serve", "--host", host, "--port", "0"], tmp_path)
    assert out.code == 2 and "is not an IP address or host name" in out.stderr
    assert "--token" not in out.stderr and len(out.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--roster", "missing.toml"], "missing.toml"),
        (["--max-body-bytes", "10"], "--max-body-bytes"),
        (["--token", " "], "--token must not be empty"),
        (["--request-timeout", "-1"], "--request-timeout"),
        (["--request-timeout", "nan"], "--request-timeout"),
    ],
)
def test_config_errors_exit_2_before_binding(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = run_cli(["serve", "--port", "0", *args], tmp_path)
    assert out.code == 2 and fragment in out.stderr and "Traceback" not in out.stderr


def test_port_in_use_exits_2(tmp_path: Path, served: Served) -> None:
    port = served.base_url.rsplit(":", 1)[1].split("/")[0]
    roster = roster_file(tmp_path / "roster.toml", "http://127.0.0.1:9/v1")
    out = run_cli(["serve", "--port", port, "--roster", str(roster)], tmp_path)
    assert out.code == 2 and "cannot listen" in out.stderr


async def test_token_auth_and_no_log(tmp_path: Path, sim: Simulator) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim.base_url)
    server = await anyio.to_thread.run_sync(
        lambda: start_serve(tmp_path, roster, "--token", TOKEN, TANGLEBRAIN_NO_LOG="1")
    )
    try:
        for key in ("", "wrong-token", TOKEN[:-1]):
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key=key or "-",
                                          max_retries=0) as bad:  # fmt: skip
                with pytest.raises(openai.AuthenticationError) as caught:
                    await bad.chat.completions.create(model="echo", messages=user("x"))
                assert caught.value.code == "invalid_api_key"
                with pytest.raises(openai.AuthenticationError):
                    await bad.models.list()
        async with httpx.AsyncClient(base_url=server.base_url) as raw:
            resp = await raw.get("/models")  # no Authorization header at all
            assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=TOKEN) as good:
            resp = await good.chat.completions.create(model="echo", messages=user("let me in"))
            assert resp.choices[0].message.content == "let me in"
    finally:
        code = await anyio.to_thread.run_sync(server.stop)
    assert code == 0
    assert not (server.home / "runs.db").exists()  # TANGLEBRAIN_NO_LOG=1


async def test_every_request_is_a_run_and_shutdown_is_graceful(
    tmp_path: Path, sim: Simulator
) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim.base_url)
    server = await anyio.to_thread.run_sync(start_serve, tmp_path, roster)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as oai:
        await oai.chat.completions.create(model="auto", messages=user("one"))
        stream = await oai.chat.completions.create(model="echo", messages=user("two"), stream=True)
        [c async for c in stream]
        with pytest.raises(openai.APIStatusError):
            await oai.chat.completions.create(model="broken", messages=user("three"))
        with pytest.raises(openai.BadRequestError):  # not a run: rejected before routing
            await oai.chat.completions.create(model="echo", messages=[])
        async with anyio.create_task_group() as tg:
            result: list[str] = []

            async def in_flight() -> None:
                resp = await oai.chat.completions.create(model="slow", messages=user("four"))
                result.append(resp.choices[0].message.content or "")

            tg.start_soon(in_flight)
            await sim.wait_in_flight(1, "worker:latency=1.5")
            server.proc.send_signal(signal.SIGTERM)  # the in-flight run still finishes
    assert result == ["simulated worker:latency=1.5 result for: four"]
    assert await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=60)) == 0
    assert sorted(server.runs()) == [
        ("serve", "error", "broken"), ("serve", "ok", "echo"), ("serve", "ok", "orch"),
        ("serve", "ok", "slow"),
    ]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_goes_away_cancels_its_run(
    tmp_path: Path, sim: Simulator, stream: bool
) -> None:
    roster = write_roster(tmp_path / "roster.toml", backend_toml("stuck", "hang", sim.base_url))
    server = await anyio.to_thread.run_sync(start_serve, tmp_path, roster)
    body = {"model": "stuck", "messages": user("wait"), "stream": stream}
    try:
        async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
            tg.start_soon(partial(client.post, f"{server.base_url}/chat/completions", json=body))
            await sim.wait_in_flight(1, "hang")
            tg.cancel_scope.cancel()  # the client closes its connection mid-run
        # The run stops its backend call (a hang would otherwise last the 120 s timeout).
        await anyio.to_thread.run_sync(wait_until, lambda: sim.in_flight("hang") == 0, "cancel")
    finally:
        code = await anyio.to_thread.run_sync(server.stop)
    assert code == 0
    with sqlite3.connect(server.home / "runs.db") as db:
        runs = db.execute("SELECT status, error FROM runs").fetchall()
    assert runs == [("interrupted", "client disconnected")]


async def test_a_client_that_leaves_mid_answer_leaves_a_run_billed_for_what_was_written(
    tmp_path: Path, sim: Simulator
) -> None:
    # The first deltas reached the client, which then left: the backend wrote (and billed)
    # them, so the interrupted run's record counts them, marked estimated.
    spec = "worker:gap=0.4,pieces=4"
    roster = write_roster(tmp_path / "roster.toml", backend_toml("slow", spec, sim.base_url))
    server = await anyio.to_thread.run_sync(start_serve, tmp_path, roster)
    body = {"model": "slow", "messages": user("take your time"), "stream": True}
    try:
        async with (
            httpx.AsyncClient(base_url=server.base_url) as client,
            client.stream("POST", "/chat/completions", json=body) as resp,
        ):
            async for line in resp.aiter_lines():
                if '"content": "simulated' in line:
                    break  # the first words are in: leave
        await anyio.to_thread.run_sync(wait_until, lambda: sim.in_flight(spec) == 0, "cancel")
    finally:
        assert await anyio.to_thread.run_sync(server.stop) == 0
    with sqlite3.connect(server.home / "runs.db") as db:
        [(status, cost)] = db.execute("SELECT status, cost_usd FROM runs").fetchall()
        [(state, tokens, extra)] = db.execute(
            "SELECT status, completion_tokens, extra FROM calls WHERE kind = 'attempt'"
        ).fetchall()
    assert (status, state) == ("interrupted", "cancelled")
    assert tokens > 0 and cost > 0 and json.loads(extra)["usage"] == "estimated"


# --- the pure mapping ------------------------------------------------------------------


def test_error_mapping() -> None:
    failures = [BackendError("a", "server error: boom", status=500), BackendError("b", "timed out")]
    cases: list[tuple[BaseException, int, str]] = [
        (BudgetExceeded(0.01, 0.02, 0.001, "a"), 402, "budget_exceeded"),
        (NoAnswerError(failures), 502, "backends_failed"),
        (MissingKeyError("a", "A_KEY"), 503, "backend_not_configured"),
        (ConfigError("request needs ~9 tokens", backend="a"), 400, "unroutable_request"),
        (RuntimeError("bug"), 500, "internal_error"),
    ]
    for exc, status, code in cases:
        err = error_for(exc)
        assert (err.status, err.code) == (status, code)
        assert set(err.body()["error"]) == {"message", "type", "code", "param"}
    assert "a: HTTP 500: server error: boom; b: timed out" in error_for(cases[1][0]).message
    assert "bug" not in error_for(cases[4][0]).message  # no internals leak


def test_parse_chat_options() -> None:
    roster = parse(backend_toml("w", "worker", "http://127.0.0.1:9/v1"))
    chat = parse_chat({"model": "auto", "messages": user("x"), "stream": True,
                       "stream_options": {"include_usage": True}}, roster)  # fmt: skip
    assert chat.stream and chat.include_usage and chat.request.backend is None
    assert chat.request.origin == "serve"
    pinned = parse_chat({"model": "w", "messages": user("x"), "temperature": 0.2}, roster)
    assert pinned.request.backend == "w" and not pinned.stream and not pinned.include_usage
    with pytest.raises(ApiError) as caught:
        parse_chat({"model": "w", "messages": user("x"), "stream": "yes"}, roster)
    assert caught.value.status == 400


code_point = st.one_of(st.integers(0xD800, 0xDFFF), st.integers(0, 0x10FFFF))
texts = st.lists(st.lists(code_point, max_size=12).map(lambda p: "".join(map(chr, p))),
                 min_size=1, max_size=4)  # fmt: skip


@given(texts, st.booleans(), st.sampled_from([None, "orch", 'a "quoted" é model']))
def test_delta_events_are_the_chunks_they_stand_for(
    deltas: list[str], first: bool, orchestrator: str | None
) -> None:
    trace = Run(prompt="p")
    trace.orchestrator = orchestrator
    events = Deltas(trace)
    expected = b"".join(
        chunk(trace, [{"index": 0,
                       "delta": {"role": "assistant", "content": d} if first and i == 0
                       else {"content": d}, "finish_reason": None}])
        for i, d in enumerate(deltas)
    )  # fmt: skip
    got = events.events(deltas, first)
    assert got == expected
    assert events.events(deltas, first) == got  # the encoded head is reused


@dataclass
class RawRequest:
    """One chat request to an in-process app over raw ASGI, from a client that never leaves."""

    app: Any
    scope: dict[str, Any]
    receive: Any
    recorded: list[tuple[str, str | None]]


def raw_request(sim: Simulator, bid: str, spec: str, *, stream: bool) -> RawRequest:
    roster = parse(backend_toml(bid, spec, sim.base_url))
    recorded: list[tuple[str, str | None]] = []
    config = ServeConfig(roster, {}, record=lambda runs: recorded.extend(
        (r.status, r.error) for r in runs))  # fmt: skip
    body = json.dumps({"model": bid, "messages": user("x"), "stream": stream}).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}  # fmt: skip
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    connected = asyncio.Event()  # never set: the client never leaves

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await connected.wait()
        return {"type": "http.disconnect"}

    return RawRequest(create_app(config), scope, receive, recorded)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("gap", [0, 1, 3], ids=["together", "one-turn", "three-turns"])
async def test_a_request_cancelled_twice_records_its_run_once_finished(
    sim: Simulator, stream: bool, gap: int
) -> None:
    # A stopping server cancels a request at its shutdown timeout and again as it settles;
    # the run must be over (no task left) before the request records it, and only once.
    raw = raw_request(sim, "stuck", "hang", stream=stream)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    before = asyncio.all_tasks()
    request = asyncio.get_running_loop().create_task(raw.app(raw.scope, raw.receive, send))
    await sim.wait_in_flight(1, "hang")
    request.cancel()
    for _ in range(gap):
        await asyncio.sleep(0)
    request.cancel()
    await asyncio.wait([request])
    left = asyncio.all_tasks() - before - {request}  # the simulator's own are not ours
    assert [t for t in left if "uvicorn" not in t.get_coro().cr_code.co_filename] == []
    assert raw.recorded == [("interrupted", "the server stopped before this run finished")]
    assert sent[0]["status"] == 503


async def test_a_forced_stop_with_a_reader_that_stopped_reading_is_quiet(sim: Simulator) -> None:
    # The answer is ready, but the client stopped reading: its send never returns. A forced
    # stop cancels the request twice (telling the client waits on that same send); the
    # request must end quietly, and the run was not delivered.
    raw = raw_request(sim, "echo", "echo", stream=True)
    forever = asyncio.Event()
    stalled = asyncio.Event()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            stalled.set()
            await forever.wait()  # the client's window is full and stays full

    request = asyncio.get_running_loop().create_task(raw.app(raw.scope, raw.receive, send))
    await stalled.wait()
    request.cancel()  # the shutdown timeout ran out
    for _ in range(3):
        await asyncio.sleep(0)
    request.cancel()  # and again as the server settles
    await asyncio.wait([request])
    assert not request.cancelled() and request.exception() is None  # nothing for uvicorn to log
    assert raw.recorded == [("interrupted", "the server stopped before this run finished")]
