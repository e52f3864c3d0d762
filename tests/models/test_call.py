from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from tanglebrain import models
from tanglebrain.errors import BackendError, MissingKeyError
from tanglebrain.models._litellm import litellm
from tanglebrain.roster import Backend, parse
from tanglebrain.sim import SimReply, Simulator
from tanglebrain.trace import Call

# Every test here runs through both transports: ``make`` writes the current one into the
# backend's roster entry (set per test by the autouse fixture below).
_transport = "openai"


@pytest.fixture(autouse=True, params=["openai", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    global _transport
    _transport = request.param
    if _transport == "litellm":
        litellm()  # import it outside the tests' short timeouts
    return _transport


FAST = models.RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
HELLO = [{"role": "user", "content": "hello there"}]


def make(sim: Simulator, spec: str, extra: str = "", cost: float = 1) -> Backend:
    text = (
        f'[[backend]]\nid = "b"\nmodel = "openai/{spec}"\napi_base = "{sim.base_url}"\n'
        f'good_at = ["x"]\ncost = {cost}\ntransport = "{_transport}"\n{extra}'
    )
    return parse(text).backends[0]


async def call(
    backend: Backend,
    *,
    stream: bool = False,
    timeout: float = 5.0,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[models.Reply, Call]:
    node = Call("subtask", backend.id, backend.model)
    chunks: list[str] = []
    reply = await models.complete(
        backend,
        HELLO,
        call=node,
        env={},
        timeout=timeout,
        retry=FAST,
        tools=tools,
        on_text=chunks.append if stream else None,
    )
    if stream:
        assert "".join(chunks) == reply.text
    return reply, node


FAILURES = [
    # spec, status, reason fragment, retryable, attempts
    ("fail:status=500", 500, "server error", True, 3),
    ("fail:status=503", 503, "server error", True, 3),
    ("fail:status=429", 429, "rate limited", True, 3),
    ("fail:status=401", 401, "authentication failed", False, 1),
    ("fail:status=404", 404, "not found", False, 1),
    ("fail:status=400", 400, "", False, 1),
    ("drop", None, "connection failed", True, 3),
    ("malformed", None, "malformed response", False, 1),
    ("empty", None, "empty response", False, 1),
    ("empty:choice=1", None, "empty response", False, 1),  # content null, no tool calls
    ("hang", None, "timed out after 0.5s", False, 1),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("spec", "status", "reason", "retryable", "attempts"), FAILURES, ids=[f[0] for f in FAILURES]
)
async def test_failure_modes_map_to_backend_error(
    sim: Simulator,
    spec: str,
    status: int | None,
    reason: str,
    retryable: bool,
    attempts: int,
    stream: bool,
) -> None:
    backend = make(sim, spec)
    node = Call("subtask", backend.id, backend.model)
    with pytest.raises(BackendError) as info:
        await models.complete(
            backend,
            HELLO,
            call=node,
            env={},
            # Short only where a hang is what is tested: a cold first call can take ~0.5 s.
            timeout=0.5 if spec == "hang" else 30,
            retry=FAST,
            on_text=(lambda t: None) if stream else None,
        )
    err = info.value
    assert err.backend == "b"
    assert err.status == status
    assert reason in err.reason
    assert err.retryable is retryable
    assert len(node.attempts) == attempts
    assert all(a.status == "error" and a.error for a in node.attempts)
    # Nothing was generated before the failure: nothing estimated, no completion tokens
    # (the prompt's only where the server reported it: an empty stream's usage event).
    assert all(not a.estimated and a.completion_tokens == 0 for a in node.attempts)
    if not spec.startswith("empty") or not stream:
        assert all(a.prompt_tokens == 0 for a in node.attempts)
    # short, one line, never a raw body
    assert "\n" not in str(err) and len(str(err)) < 240 and "{" not in err.reason


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("body", ["html", "page", "utf8", "charset", "nochoices"])
async def test_a_garbled_200_is_one_unusable_attempt_not_a_server_error(
    sim: Simulator, body: str, stream: bool
) -> None:
    # HTML for JSON, an HTML page, invalid UTF-8, a wrong charset, JSON without choices:
    # the server said 200, so no "HTTP 500", and no retries on the same backend.
    backend = make(sim, f"malformed:body={body}")
    node = Call("subtask", backend.id, backend.model)
    with pytest.raises(BackendError) as info:
        await models.complete(
            backend, HELLO, call=node, env={}, timeout=30, retry=FAST,
            on_text=(lambda t: None) if stream else None,
        )  # fmt: skip
    err = info.value
    assert err.reason.startswith(("malformed response", "empty response")), err.reason
    assert err.status is None and not err.retryable and len(node.attempts) == 1


async def test_a_slow_healthy_stream_is_not_cut(sim: Simulator) -> None:
    # 36 events 0.2 s apart: ~7 s in all, far past timeout + any grace, but never 1 s silent.
    backend = make(sim, "worker:gap=0.2,pieces=32,size=320")
    reply, node = await call(backend, stream=True, timeout=1.0)
    assert len(reply.text) == 320 and reply.finish_reason == "stop"
    assert [a.status for a in node.attempts] == ["ok"]


async def test_a_silent_stream_times_out_between_chunks(sim: Simulator) -> None:
    with pytest.raises(BackendError, match=r"timed out after 0\.5s"):
        await call(make(sim, "worker:gap=30"), stream=True, timeout=0.5)


async def test_a_stream_without_a_finish_reason_is_cut_not_complete(sim: Simulator) -> None:
    backend = make(sim, "worker:finish=none")
    node = Call("subtask", backend.id, backend.model)
    with pytest.raises(BackendError) as info:
        await models.complete(
            backend, HELLO, call=node, env={}, timeout=30, retry=FAST, on_text=lambda t: None
        )
    assert "stream cut after" in info.value.reason and "finish reason" in info.value.reason
    assert info.value.status is None  # no HTTP status: a budget books the whole reservation
    assert [a.status for a in node.attempts] == ["error"]  # text reached the reader: no retry


@pytest.mark.parametrize("spec", ["fail:status=429,times=1", "fail:status=500,times=2"])
async def test_retry_then_success(sim: Simulator, spec: str) -> None:
    reply, node = await call(make(sim, spec))
    assert reply.text.startswith("simulated")
    assert [a.status for a in node.attempts][-1] == "ok"
    assert len(node.attempts) == int(spec.rsplit("=", 1)[1]) + 1
    assert sim.count(spec) == len(node.attempts)


async def test_retry_after_is_honoured(sim: Simulator) -> None:
    spec = "fail:status=429,times=1,retry_after=0.3"
    backend = make(sim, spec)
    node = Call("subtask", backend.id, backend.model)
    policy = models.RetryPolicy(max_attempts=2, base_delay=100.0)  # backoff would wait ~minutes
    reply = await models.complete(backend, HELLO, call=node, env={}, timeout=5, retry=policy)
    assert reply.text and len(node.attempts) == 2
    # the second attempt started after the server's Retry-After, not after the backoff
    gap = node.attempts[1].started - node.attempts[0].started
    assert 0.3 <= gap < 50


async def test_retry_after_too_long_gives_up(sim: Simulator) -> None:
    backend = make(sim, "fail:status=429,retry_after=3600")
    with pytest.raises(BackendError, match="rate limited"):
        await call(backend)


@pytest.mark.parametrize("stream", [False, True])
async def test_echo_usage_and_cost(sim: Simulator, stream: bool) -> None:
    backend = make(sim, "echo", "price = { input = 1.0, output = 2.0 }\n")
    reply, node = await call(backend, stream=stream)
    assert reply.text == "hello there"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    expected = (reply.prompt_tokens * 1.0 + reply.completion_tokens * 2.0) / 1e6
    assert reply.cost_usd == pytest.approx(expected)
    assert node.attempts[0].cost_usd == pytest.approx(expected)
    assert node.attempts[0].bytes_out == len(b"hello there")


async def test_unknown_price_is_unknown_not_zero(sim: Simulator) -> None:
    reply, _ = await call(make(sim, "echo"))
    assert reply.cost_usd is None


async def test_free_backend_costs_zero(sim: Simulator) -> None:
    reply, _ = await call(make(sim, "echo", cost=0))
    assert reply.cost_usd == 0.0


def test_known_model_price_from_litellm_map() -> None:
    text = '[[backend]]\nid="g"\nmodel="openai/gpt-4o"\napi_key_env="OPENAI_API_KEY"\n'
    b = parse(text + 'good_at=["x"]\ncost=5\n').backends[0]
    price = models.price_per_token(b)
    assert price is not None and price[0] > 0 and price[1] > 0


async def test_tool_calls_come_back(sim: Simulator) -> None:
    from tanglebrain.sim import SimReply

    sim.script("script", [SimReply(text=None, tool_calls=[("delegate", '{"prompt": "x"}')])])
    reply, _ = await call(make(sim, "script"))
    assert [(t.name, t.arguments) for t in reply.tool_calls] == [("delegate", '{"prompt": "x"}')]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_tool_calls_skip_litellms_mcp_gateway(sim: Simulator, stream: bool) -> None:
    # Loading litellm's MCP gateway on a tool call costs ~0.4 s and, done in a worker
    # thread, races other calls' timeouts on a half-imported module.
    import sys

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    await call(make(sim, "echo"), stream=stream, tools=[tool])
    sent = sim.requests[-1].body
    assert sent["tools"] == [tool]
    assert not [k for k in sent if k.startswith("_")]  # our flag never reaches the provider
    assert "litellm.responses.mcp.chat_completions_handler" not in sys.modules


async def test_missing_key_names_the_variable(sim: Simulator) -> None:
    backend = make(sim, "echo", 'api_key_env = "TB_NOT_SET_ANYWHERE"\n')
    with pytest.raises(MissingKeyError, match="TB_NOT_SET_ANYWHERE"):
        await call(backend)


async def test_key_is_sent_but_never_recorded(sim: Simulator) -> None:
    backend = make(sim, "echo", 'api_key_env = "TB_CANARY"\n')
    node = Call("subtask", backend.id, backend.model)
    await models.complete(
        backend, HELLO, call=node, env={"TB_CANARY": "sk-canary-123456789"}, timeout=5, retry=FAST
    )
    assert "sk-canary" not in repr(node)


@pytest.mark.parametrize("status", [400, 403, 500])
async def test_echoed_api_key_is_masked(sim: Simulator, status: int) -> None:
    backend = make(sim, f"fail:status={status},echo_auth=1", 'api_key_env = "TB_CANARY"\n')
    node = Call("subtask", backend.id, backend.model)
    with pytest.raises(BackendError) as info:
        await models.complete(
            backend,
            HELLO,
            call=node,
            env={"TB_CANARY": "sk-canary-987654321"},
            timeout=5,
            retry=FAST,
        )
    assert "credentials sent" in str(info.value)  # the provider did echo them
    assert "sk-canary" not in str(info.value) and "[redacted]" in str(info.value)
    assert all("sk-canary" not in (a.error or "") for a in node.attempts)


async def test_sink_failure_is_not_a_backend_failure(sim: Simulator) -> None:
    backend = make(sim, "echo")
    node = Call("subtask", backend.id, backend.model)

    def closed(_: str) -> None:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        await models.complete(
            backend, HELLO, call=node, env={}, timeout=5, retry=FAST, on_text=closed
        )
    # One attempt (no retry), kept on the record as stopped by us: not the backend's error.
    [attempt] = node.attempts
    assert (attempt.status, attempt.error, attempt.error_kind) == ("cancelled", None, None)
    assert attempt.latency_ms > 0
    # The first delta had arrived (it is what the reader failed on): it was generated and
    # billed, so the attempt counts it and the prompt, estimated.
    assert attempt.estimated and attempt.prompt_tokens > 0 and attempt.completion_tokens > 0


PRICED = "price = { input = 1.0, output = 2.0 }\n"


def assert_billed_estimate(attempt: Any, backend: Backend, received: str) -> None:
    """The attempt counts the prompt and what arrived (4 characters a token), priced."""
    assert attempt.estimated
    assert attempt.completion_tokens == math.ceil(len(received) / 4) > 0
    # litellm's tokenizer when it is loaded, else the same 4 characters a token
    assert attempt.prompt_tokens == models.count_tokens(backend, HELLO) > 0
    expected = (attempt.prompt_tokens * 1.0 + attempt.completion_tokens * 2.0) / 1e6
    assert attempt.cost_usd == pytest.approx(expected)
    assert attempt.bytes_out == len(received.encode())


async def cut_short(backend: Backend) -> tuple[Call, str]:
    """Stream a call that ends as a cut stream; its trace node and the text that arrived."""
    node = Call("subtask", backend.id, backend.model)
    deltas: list[str] = []
    with pytest.raises(BackendError, match="stream cut after"):
        await models.complete(
            backend, HELLO, call=node, env={}, timeout=30, retry=FAST, on_text=deltas.append
        )
    assert [a.status for a in node.attempts] == ["error"] and deltas
    return node, "".join(deltas)


async def test_a_cut_stream_records_what_was_generated_before_the_cut(sim: Simulator) -> None:
    # Billed by the provider although no usage came: the prompt and the text that arrived.
    backend = make(sim, "cut:size=400", PRICED)
    node, received = await cut_short(backend)
    assert_billed_estimate(node.attempts[0], backend, received)
    assert node.cost_usd == pytest.approx(node.attempts[0].cost_usd)


async def test_an_interrupted_stream_records_what_was_generated(sim: Simulator) -> None:
    # Ctrl-C, a client that left, a run that stopped its sub-tasks: cancelled mid-stream.
    # The cancel lands at the wait for the next delta, which comes 0.3 s after the first.
    backend = make(sim, "worker:gap=0.3,pieces=4", PRICED)
    node = Call("subtask", backend.id, backend.model)
    deltas: list[str] = []
    with anyio.CancelScope() as scope:

        def first_then_stop(text: str) -> None:
            deltas.append(text)
            scope.cancel()  # lands at the stream's next wait

        await models.complete(
            backend, HELLO, call=node, env={}, timeout=60, retry=FAST, on_text=first_then_stop
        )
    [attempt] = node.attempts
    assert scope.cancelled_caught and attempt.status == "cancelled"
    assert_billed_estimate(attempt, backend, "".join(deltas))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("spec", "estimated"), [("echo", False), ("echo:tokens=0", True)])
async def test_usage_is_marked_estimated_only_when_the_server_reported_none(
    sim: Simulator, spec: str, estimated: bool, stream: bool
) -> None:
    reply, node = await call(make(sim, spec, PRICED), stream=stream)
    assert reply.estimated is node.attempts[0].estimated is estimated
    assert reply.completion_tokens == (math.ceil(len("hello there") / 4) if estimated else 3)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_reply_cut_mid_character_is_mended_not_fatal(sim: Simulator, stream: bool) -> None:
    # Half of a surrogate pair (sent as the JSON escape "\ud83d"): UTF-8 has no form for
    # it, and every later step (sizes, the ledger, the next turn) encodes the reply. The
    # deltas go out as they came (a stream may split a pair across them).
    sim.script("script", [SimReply(text="half \ud83d")])
    node = Call("subtask", "b", "m")
    deltas: list[str] = []
    reply = await models.complete(
        make(sim, "script"), HELLO, call=node, env={}, timeout=5.0, retry=FAST,
        on_text=deltas.append if stream else None,
    )  # fmt: skip
    assert reply.text == "half \ufffd"
    assert node.attempts[-1].bytes_out == len("half \ufffd".encode())
    assert "".join(deltas) == ("half \ud83d" if stream else "")


async def test_a_host_that_never_connects_fails_over_at_the_connect_timeout(
    blackhole: str,
) -> None:
    # A host that drops packets (down, firewalled, a wrong address) is a connection failure
    # after connect_timeout, not a wait for the whole timeout meant for a slow model.
    text = (
        f'[[backend]]\nid = "b"\nmodel = "openai/gone"\napi_base = "{blackhole}"\n'
        f'good_at = ["x"]\ncost = 1\ntransport = "{_transport}"\n'
    )
    backend = parse(text).backends[0]
    node = Call("subtask", backend.id, backend.model)
    once = models.RetryPolicy(max_attempts=1)
    for on_text in (None, lambda t: None):  # whole and streamed
        with pytest.raises(BackendError) as info:
            await models.complete(
                backend, HELLO, call=node, env={}, timeout=600, retry=once, on_text=on_text,
                connect_timeout=0.3, failover=True,
            )  # fmt: skip
        err = info.value
        assert err.reason == "connection failed: no connection within 0.3s", err.reason
        assert (err.kind, err.retryable, err.status) == ("connect", True, None)
    assert [a.error_kind for a in node.attempts] == ["connect", "connect"]


async def test_usage_the_server_sent_before_a_stream_broke_is_kept(sim: Simulator) -> None:
    # The usage event came, the finish reason never did: a cut stream, billed as reported.
    # litellm holds usage back until a stream ends well, so through it the counts are ours.
    backend = make(sim, "worker:finish=none,tokens=7", PRICED)
    node, received = await cut_short(backend)
    [attempt] = node.attempts
    if _transport == "openai":
        assert (attempt.completion_tokens, attempt.estimated) == (7, False)
    else:
        assert_billed_estimate(attempt, backend, received)
    expected = (attempt.prompt_tokens * 1.0 + attempt.completion_tokens * 2.0) / 1e6
    assert attempt.prompt_tokens > 0 and attempt.cost_usd == pytest.approx(expected)


async def test_a_whole_reply_whose_stream_then_broke_is_an_answer(sim: Simulator) -> None:
    # Every event came (text, finish reason, usage), then the connection closed before
    # [DONE]: the model finished, and so does the call (with the usage it reported, where
    # the transport passes it on: litellm does not, for a stream that did not end well).
    backend = make(sim, "cut:events=99,tokens=9", PRICED)
    reply, node = await call(backend, stream=True)
    assert reply.text.startswith("simulated") and reply.finish_reason == "stop"
    assert [a.status for a in node.attempts] == ["ok"]
    if _transport == "openai":
        assert (reply.completion_tokens, reply.estimated) == (9, False)
    else:
        assert reply.estimated and reply.completion_tokens == math.ceil(len(reply.text) / 4)
