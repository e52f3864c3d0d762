"""The cacheable prefix: Claude models get ``cache_control`` on the system prompt and tools.

Calls go through ``RunContext.call`` (which reads the roster's ``prompt_cache``) and
litellm, over HTTP on 127.0.0.1, to strict fakes of Anthropic's Messages API and Gemini's
generateContent (``tests/models/providers.py``) and to the OpenAI-compatible simulator;
each test asserts on the body the provider received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tanglebrain import models
from tanglebrain.budget import Budget, Reservation
from tanglebrain.models._cache import min_prefix_tokens, needs_marker
from tanglebrain.models._litellm import litellm
from tanglebrain.roster import Backend, Roster, parse
from tanglebrain.runtime import RunContext
from tanglebrain.sim import Simulator
from tanglebrain.trace import Call, Run
from tests.models.providers import Fake, serve

KEY = "test-key-not-a-real-one"
ENV = {"ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY}
EPHEMERAL = {"type": "ephemeral"}
# ~1,500 tokens by the 4-characters-a-token estimate: over Sonnet's 1,024 minimum, under
# the Haiku 3 family's 2,048.
LONG_SYSTEM = "You are the orchestrator. Plan the work, then delegate it. " * 100
SHORT_SYSTEM = "You are the orchestrator."
USAGE = {"input_tokens": 1600, "output_tokens": 5}


def tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
        },
    }


TOOLS = [tool("delegate"), tool("finish")]


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    litellm()  # imported once, outside the calls' timeouts


def roster(model: str, base: str, *, cache: str = "auto", transport: str = "auto") -> Roster:
    key = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}.get(model.split("/")[0])
    return parse(
        f'[settings]\nprompt_cache = "{cache}"\n\n'
        f'[[backend]]\nid = "b"\nmodel = "{model}"\napi_base = "{base}"\ngood_at = ["x"]\n'
        f'cost = 1\ntransport = "{transport}"\nmax_output_tokens = 100\n'
        "price = { input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }\n"
        + (f'api_key_env = "{key}"\n' if key else "")
    )


class _Spy(Budget):
    """A budget that remembers what each call reserved."""

    def __init__(self, cap_usd: float | None) -> None:
        super().__init__(cap_usd)
        self.reservations: list[float] = []

    def reserve(self, backend: str, worst_case_usd: float | None) -> Reservation:
        booked = super().reserve(backend, worst_case_usd)
        self.reservations.append(booked.amount)
        return booked


def context(r: Roster, budget: Budget | None = None) -> RunContext:
    return RunContext(
        roster=r, env=ENV, run=Run(prompt="x"), budget=budget or Budget(None),
        retry=models.RetryPolicy(max_attempts=1), timeout=30,
    )  # fmt: skip


def convo(system: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": "Do the thing."}]


async def call(
    r: Roster, messages: list[dict[str, Any]], *, stream: bool = False, budget: Budget | None = None
) -> models.Reply:
    ctx = context(r, budget)
    b = r.backends[0]
    return await ctx.call(
        b, messages, Call("orchestrator", b.id, b.model), tools=TOOLS,
        on_text=(lambda _: None) if stream else None,
    )  # fmt: skip


def marks(body: Any) -> int:
    return json.dumps(body).count('"cache_control"')


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_long_prefix_to_claude_is_marked(stream: bool) -> None:
    messages = convo(LONG_SYSTEM)
    with serve("anthropic", Fake(KEY, usage=USAGE)) as fake:
        await call(roster("anthropic/claude-sonnet-4-5", fake.base_url), messages, stream=stream)
    [request] = fake.requests
    body = request["body"]
    assert body["system"] == [{"type": "text", "text": LONG_SYSTEM, "cache_control": EPHEMERAL}]
    assert [(t["name"], t.get("cache_control")) for t in body["tools"]] == [
        ("delegate", None), ("finish", EPHEMERAL)
    ]  # fmt: skip
    assert marks(body) == 2  # the messages after the prefix carry none
    assert messages == convo(LONG_SYSTEM)  # the caller's messages are not changed


@pytest.mark.parametrize(
    ("model", "system", "cache"),
    [
        ("anthropic/claude-sonnet-4-5", SHORT_SYSTEM, "auto"),
        ("anthropic/claude-3-5-haiku-20241022", LONG_SYSTEM, "auto"),
        ("anthropic/claude-sonnet-4-5", LONG_SYSTEM, "off"),
    ],
    ids=["short-prefix", "under-haiku-minimum", "prompt-cache-off"],
)
async def test_no_marker_where_it_would_not_cache_or_is_off(
    model: str, system: str, cache: str
) -> None:
    with serve("anthropic", Fake(KEY, usage=USAGE)) as fake:
        await call(roster(model, fake.base_url, cache=cache), convo(system))
    [request] = fake.requests
    assert marks(request["body"]) == 0
    assert request["body"]["system"] in (system, [{"type": "text", "text": system}])


async def test_gemini_gets_no_marker() -> None:
    # Gemini caches long prefixes on its own; a marker would start litellm's explicit
    # context caching (another endpoint, which the fake refuses).
    usage = {"promptTokenCount": 1600, "candidatesTokenCount": 5, "totalTokenCount": 1605}
    with serve("gemini", Fake(KEY, usage=usage)) as fake:
        await call(roster("gemini/gemini-2.5-flash", fake.base_url), convo(LONG_SYSTEM))
    [request] = fake.requests
    assert request["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert marks(request["body"]) == 0


@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_openai_compatible_backends_get_no_marker(sim: Simulator, transport: str) -> None:
    await call(roster("openai/echo", sim.base_url, transport=transport), convo(LONG_SYSTEM))
    [request] = sim.requests
    assert marks(request.body) == 0 and request.messages[0]["content"] == LONG_SYSTEM


async def test_a_marked_call_reserves_prompt_tokens_at_the_cache_write_price() -> None:
    # Budget reservations: the same prompt, marked (Sonnet) and not (cache off). The
    # output part is alike (100 tokens at $15/M); the prompt part is 3.75/3 as dear.
    reserved = []
    for cache in ("auto", "off"):
        budget = _Spy(1.0)
        with serve("anthropic", Fake(KEY, usage=USAGE)) as fake:
            r = roster("anthropic/claude-sonnet-4-5", fake.base_url, cache=cache)
            await call(r, convo(LONG_SYSTEM), budget=budget)
        [amount] = budget.reservations
        reserved.append(amount - 100 * 15.0 / 1e6)
        assert marks(fake.requests[0]["body"]) == (2 if cache == "auto" else 0)
    marked, plain = reserved
    assert marked / plain == pytest.approx(3.75 / 3.0)


def test_a_cache_write_cheaper_than_input_reserves_at_the_input_price() -> None:
    r = parse(
        '[[backend]]\nid = "b"\nmodel = "anthropic/claude-sonnet-4-5"\ngood_at = ["x"]\n'
        'cost = 1\nmax_output_tokens = 100\napi_key_env = "ANTHROPIC_API_KEY"\n'
        "price = { input = 3.0, output = 15.0, cache_write = 1.0 }\n"
    )
    ctx = context(r, Budget(1.0))
    b = r.backends[0]
    assert ctx._worst_case(b, convo(LONG_SYSTEM), TOOLS, 100, True) == ctx._worst_case(
        b, convo(LONG_SYSTEM), TOOLS, 100, False
    )


def backend(model: str, transport: str = "auto") -> Backend:
    return parse(
        f'[[backend]]\nid = "b"\nmodel = "{model}"\ngood_at = ["x"]\ncost = 1\n'
        f'transport = "{transport}"\napi_base = "http://127.0.0.1:9/v1"\n'
    ).backends[0]


@pytest.mark.parametrize(
    ("model", "transport", "needs"),
    [
        ("anthropic/claude-sonnet-4-5", "auto", True),
        ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "auto", True),
        ("bedrock/converse/anthropic.claude-3-5-haiku-20241022-v1:0", "auto", True),
        ("vertex_ai/claude-opus-4-1@20250805", "auto", True),
        ("vertex_ai/gemini-2.5-pro", "auto", False),
        ("bedrock/amazon.nova-pro-v1:0", "auto", False),
        ("gemini/gemini-2.5-flash", "auto", False),
        ("openai/gpt-4.1", "auto", False),
        ("anthropic/claude-sonnet-4-5", "openai", False),  # an OpenAI-compatible gateway
    ],
)
def test_which_backends_need_a_marker(model: str, transport: str, needs: bool) -> None:
    assert needs_marker(backend(model, transport)) is needs


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("anthropic/claude-sonnet-4-5", 1024),
        ("anthropic/claude-opus-4-1", 1024),
        ("anthropic/claude-3-5-haiku-20241022", 2048),
        ("anthropic/claude-3-haiku-20240307", 2048),
        ("anthropic/claude-haiku-4-5", 4096),
        ("anthropic/claude-opus-4-5-20251101", 4096),
        ("bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0", 4096),
    ],
)
def test_minimum_cacheable_prefix_by_model(model: str, minimum: int) -> None:
    assert min_prefix_tokens(backend(model)) == minimum


def test_the_prefix_is_the_system_prompt_and_the_tools() -> None:
    sonnet = backend("anthropic/claude-sonnet-4-5")
    user_only = [{"role": "user", "content": LONG_SYSTEM}]
    assert not models.cacheable_prefix(sonnet, user_only, None)  # no prefix to mark
    assert models.cacheable_prefix(sonnet, convo(LONG_SYSTEM), None)
    many_tools = [tool(f"t{i}") for i in range(40)]  # long tools, short system prompt
    assert models.cacheable_prefix(sonnet, convo(SHORT_SYSTEM), many_tools)
    assert not models.cacheable_prefix(sonnet, convo(SHORT_SYSTEM), TOOLS)
