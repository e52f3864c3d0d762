"""The native transport's edges: endpoints, request bodies, proxies, Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from tanglebrain import models
from tanglebrain.models import _http
from tanglebrain.models._errors import retry_after_seconds
from tanglebrain.models._openai import OpenAITransport, endpoint
from tanglebrain.models._types import Outgoing
from tanglebrain.roster import Backend, parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Call


def backend(model: str, extra: str = "") -> Backend:
    text = f'[[backend]]\nid = "b"\nmodel = "{model}"\ngood_at = ["x"]\ncost = 0\n{extra}'
    return parse(text).backends[0]


ENDPOINTS = [
    # model, roster extra, env, expected URL
    ("openai/gpt-4.1", 'api_key_env = "K"\n', {}, "https://api.openai.com/v1/chat/completions"),
    ("openai/gpt-4.1", 'api_key_env = "K"\n', {"OPENAI_BASE_URL": "http://gw:9/v1/"},
     "http://gw:9/v1/chat/completions"),
    ("openai/x", 'api_base = "http://h:1/v1"\n', {"OPENAI_BASE_URL": "http://gw:9/v1"},
     "http://h:1/v1/chat/completions"),
    ("ollama_chat/llama3.2", "", {}, "http://localhost:11434/v1/chat/completions"),
    ("ollama/llama3", 'api_base = "http://box:11434"\n', {}, "http://box:11434/v1/chat/completions"),
    ("ollama/llama3", 'api_base = "http://box:11434/v1/"\n', {},
     "http://box:11434/v1/chat/completions"),
    ("groq/llama-3.1-8b", 'api_key_env = "K"\ntransport = "openai"\n', {},
     "https://api.groq.com/openai/v1/chat/completions"),
    ("hosted_vllm/m", "", {}, None),
]  # fmt: skip


@pytest.mark.parametrize(("model", "extra", "env", "url"), ENDPOINTS)
def test_endpoints(model: str, extra: str, env: dict[str, str], url: str | None) -> None:
    assert endpoint(backend(model, extra), env) == url


TRANSPORTS = [
    ("openai/gpt-4.1", 'api_key_env = "K"\n', "openai"),
    ("openai/x", 'api_base = "http://h/v1"\n', "openai"),
    ("ollama_chat/llama3.2", "", "openai"),
    ("anthropic/claude-sonnet-4-5", 'api_key_env = "K"\n', "litellm"),
    ("gemini/gemini-2.5-flash", 'api_key_env = "K"\n', "litellm"),
    ("groq/llama-3.1-8b", 'api_key_env = "K"\n', "litellm"),
    ("groq/llama-3.1-8b", 'api_key_env = "K"\ntransport = "openai"\n', "openai"),
    ("openai/x", 'api_base = "http://h/v1"\ntransport = "litellm"\n', "litellm"),
]


@pytest.mark.parametrize(("model", "extra", "name"), TRANSPORTS)
def test_which_transport(model: str, extra: str, name: str) -> None:
    assert models.transport_name(backend(model, extra)) == name


def test_openai_itself_gets_max_completion_tokens_and_others_max_tokens() -> None:
    def body(b: Backend) -> dict[str, object]:
        out = Outgoing(b, [{"role": "user", "content": "hi"}], "k", 5.0, max_tokens=64)
        _, data, headers = OpenAITransport({})._request(out, stream=True)
        assert ("Authorization", "Bearer k") in headers
        return dict(json.loads(data))

    real = body(backend("openai/gpt-4.1", 'api_key_env = "K"\n'))
    local = body(backend("openai/qwen15", 'api_base = "http://127.0.0.1:1/v1"\n'))
    assert real["max_completion_tokens"] == 64 and "max_tokens" not in real
    assert local["max_tokens"] == 64 and "max_completion_tokens" not in local
    assert real["model"] == "gpt-4.1" and local["model"] == "qwen15"
    assert local["stream_options"] == {"include_usage": True}


def test_a_transport_openai_without_a_known_address_is_refused_when_loading() -> None:
    from tanglebrain.errors import ConfigError

    with pytest.raises(ConfigError, match="transport"):
        backend("anthropic/claude", 'api_key_env = "K"\ntransport = "openai"\n')


PROXIES = [
    # scheme, host, (https_proxy, http_proxy, all_proxy, no_proxy), expected
    ("http", "h", (None, "p:3128", None, None), "http://p:3128"),
    ("https", "h", (None, "http://p:3128", None, None), None),
    ("https", "h", ("http://s:1", None, "http://a:2", None), "http://s:1"),
    ("https", "h", (None, None, "http://a:2", None), "http://a:2"),
    ("http", "api.local", (None, "http://p:1", None, ".local"), None),
    ("http", "api.local", (None, "http://p:1", None, "other, local"), None),
    ("http", "notlocal", (None, "http://p:1", None, "local"), "http://p:1"),
    ("http", "127.0.0.1", (None, "http://p:1", None, "*"), None),
]  # fmt: skip


@pytest.mark.parametrize(("scheme", "host", "values", "proxy"), PROXIES)
def test_proxy_choice(
    scheme: str, host: str, values: tuple[str | None, ...], proxy: str | None
) -> None:
    assert _http._decide_proxy(scheme, host, values) == proxy


@pytest.fixture
async def proxy(sim: Simulator) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A forwarding HTTP proxy on 127.0.0.1 that records each request line."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        fields = dict(ln.lower().split(b":", 1) for ln in head.split(b"\r\n")[1:] if b":" in ln)
        length = int(fields.get(b"content-length", b"0"))
        body = await reader.readexactly(length)
        method, target, version = head.split(b"\r\n", 1)[0].split(b" ")
        path = b"/" + target.split(b"/", 3)[3]  # absolute-form to origin-form
        host, port = sim.base_url.split("//")[1].split("/")[0].split(":")
        up_r, up_w = await asyncio.open_connection(host, int(port))
        rest = head.split(b"\r\n", 1)[1].replace(b"keep-alive", b"close")
        up_w.write(b" ".join([method, path, version]) + b"\r\n" + rest + body)
        writer.write(await up_r.read())
        await writer.drain()
        writer.close()
        up_w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


async def test_a_plain_http_proxy_gets_the_absolute_url(
    sim: Simulator, proxy: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", address)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setattr(_http, "_POOL", _http.RunVar("tanglebrain_http_pool_test"))
    b = parse(
        f'[[backend]]\nid = "b"\nmodel = "openai/echo"\napi_base = "{sim.base_url}"\n'
        'good_at = ["x"]\ncost = 0\n'
    ).backends[0]
    reply = await models.complete(
        b, [{"role": "user", "content": "via the proxy"}], call=Call("subtask", "b", b.model),
        env={}, timeout=30, retry=models.RetryPolicy(max_attempts=1),
    )  # fmt: skip
    assert reply.text == "via the proxy"
    assert seen == [f"POST {sim.base_url}/chat/completions HTTP/1.1".encode()]


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 42, UTC), usegmt=True)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("1.5", now) == 1.5
    assert retry_after_seconds(date, now) == pytest.approx(42, abs=1)
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    for endless in ("inf", "nan", "1e400", "-inf"):  # nothing a client could wait for
        assert retry_after_seconds(endless, now) is None


async def test_a_pooled_connection_the_server_closed_is_replaced() -> None:
    # A server that answers each request and then closes the socket without saying so
    # (no "Connection: close"): the client pools the connection, finds it dead on the
    # next request before any byte of a response, and retries on a fresh one.
    served: list[int] = []
    reply = json.dumps({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }).encode()  # fmt: skip

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(ln.lower().split(b":", 1) for ln in head.split(b"\r\n")[1:] if b":" in ln)
        await reader.readexactly(int(fields[b"content-length"]))
        served.append(1)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(reply)}\r\n\r\n".encode()
            + reply
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        b = parse(
            f'[[backend]]\nid = "b"\nmodel = "openai/m"\napi_base = "http://127.0.0.1:{port}/v1"\n'
            'good_at = ["x"]\ncost = 0\n'
        ).backends[0]
        for _ in range(3):
            node = Call("subtask", "b", b.model)
            done = await models.complete(
                b, [{"role": "user", "content": "hi"}], call=node, env={}, timeout=30,
                retry=models.RetryPolicy(max_attempts=1),
            )  # fmt: skip
            assert done.text == "fine" and len(node.attempts) == 1  # no attempt was lost
    assert len(served) == 3


async def test_a_connection_idle_too_long_is_closed_and_replaced(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "IDLE_S", 0.0)  # every pooled connection counts as too old
    b = parse(
        f'[[backend]]\nid = "b"\nmodel = "openai/echo"\napi_base = "{sim.base_url}"\n'
        'good_at = ["x"]\ncost = 0\n'
    ).backends[0]
    for text in ("one", "two"):
        done = await models.complete(
            b, [{"role": "user", "content": text}], call=Call("subtask", "b", b.model),
            env={}, timeout=30, retry=models.RetryPolicy(max_attempts=1),
        )  # fmt: skip
        assert done.text == text
