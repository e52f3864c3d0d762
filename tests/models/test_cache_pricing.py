"""Prompt-cache pricing: each provider's way of reporting cached tokens, billed once each.

Every shape reports 900 of 1,000 prompt tokens read from the cache (and 50 completion
tokens), end to end over HTTP on 127.0.0.1: OpenAI's through the simulator (native and
litellm transports), Anthropic's and Gemini's through strict fakes of their APIs that
litellm talks to (``tests/models/providers.py``). The recorded cost must be the
provider's: uncached prompt tokens at the input price, cached ones at the cache price.
"""

from __future__ import annotations

from typing import Any

import pytest

from tanglebrain import models
from tanglebrain.errors import BackendError
from tanglebrain.models import _model_map
from tanglebrain.models._litellm import _usage as litellm_usage
from tanglebrain.models._litellm import litellm
from tanglebrain.models._openai import _usage as openai_usage
from tanglebrain.roster import Backend, parse
from tanglebrain.sim import Simulator
from tanglebrain.trace import Call
from tests.models.providers import Fake, serve

PROMPT = [{"role": "user", "content": "x" * 4000}]  # 1,000 prompt tokens to the simulator
ONCE = models.RetryPolicy(max_attempts=1)
KEY = "test-key-not-a-real-one"
# List prices in USD per million tokens (input, cached input, output) of a model of each
# provider: gpt-4.1, claude-sonnet-4-5 (cache writes 3.75), gemini-2.5-flash.
PRICES = {"openai": (2.0, 0.5, 8.0), "anthropic": (3.0, 0.3, 15.0), "gemini": (0.3, 0.03, 2.5)}


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    litellm()  # imported once, outside the calls' timeouts


def backend(model: str, provider: str, *, base: str, transport: str = "auto") -> Backend:
    inp, cached, out = PRICES[provider]
    key = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}.get(provider)
    text = (
        f'[[backend]]\nid = "b"\nmodel = "{model}"\napi_base = "{base}"\ngood_at = ["x"]\n'
        f'cost = 1\ntransport = "{transport}"\n'
        f"price = {{ input = {inp}, output = {out}, cached_input = {cached}, "
        "cache_write = 3.75 }\n" + (f'api_key_env = "{key}"\n' if key else "")
    )
    return parse(text).backends[0]


async def complete(b: Backend, *, stream: bool) -> tuple[models.Reply, Call]:
    node = Call("subtask", b.id, b.model)
    env = {"ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY}
    reply = await models.complete(
        b, PROMPT, call=node, env=env, timeout=30, retry=ONCE,
        on_text=(lambda _: None) if stream else None,
    )  # fmt: skip
    return reply, node


def true_cost(provider: str, fresh: int, read: int, completion: int, write: int = 0) -> float:
    inp, cached, out = PRICES[provider]
    return (fresh * inp + read * cached + write * 3.75 + completion * out) / 1e6


def old_cost(provider: str, prompt: int, completion: int) -> float:
    """What the formula before cache pricing gave: every prompt token at the input price."""
    inp, _, out = PRICES[provider]
    return (prompt * inp + completion * out) / 1e6


def check(provider: str, reply: models.Reply, node: Call) -> None:
    assert (reply.prompt_tokens, reply.completion_tokens) == (1000, 50)
    assert (reply.cache_read_tokens, reply.cache_write_tokens) == (900, 0)
    assert reply.cost_usd == pytest.approx(true_cost(provider, 100, 900, 50))
    [attempt] = node.attempts
    assert (attempt.cache_read_tokens, attempt.cache_write_tokens) == (900, 0)
    assert attempt.cost_usd == reply.cost_usd and node.cache_tokens == (900, 0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("transport", ["openai", "litellm"])
async def test_openai_shape(sim: Simulator, transport: str, stream: bool) -> None:
    b = backend("openai/worker:cached=900,tokens=50", "openai", base=sim.base_url,
                transport=transport)  # fmt: skip
    reply, node = await complete(b, stream=stream)
    check("openai", reply, node)
    assert node.attempts[0].transport == transport


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_anthropic_shape(stream: bool) -> None:
    # Anthropic's input_tokens leaves the cache reads out; litellm adds them back.
    usage = {"input_tokens": 100, "cache_read_input_tokens": 900, "output_tokens": 50}
    with serve("anthropic", Fake(KEY, usage=usage)) as fake:
        reply, node = await complete(
            backend("anthropic/claude-sonnet-4-5", "anthropic", base=fake.base_url), stream=stream
        )
    check("anthropic", reply, node)
    assert [r["path"] for r in fake.requests] == ["/v1/messages"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_gemini_shape(stream: bool) -> None:
    # Gemini's promptTokenCount includes the cached tokens.
    usage = {"promptTokenCount": 1000, "cachedContentTokenCount": 900,
             "candidatesTokenCount": 50, "totalTokenCount": 1050}  # fmt: skip
    with serve("gemini", Fake(KEY, usage=usage)) as fake:
        reply, node = await complete(
            backend("gemini/gemini-2.5-flash", "gemini", base=fake.base_url), stream=stream
        )
    check("gemini", reply, node)
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert [r["path"] for r in fake.requests] == [f"/v1beta/models/gemini-2.5-flash:{verb}"]


async def test_anthropic_cache_writes_are_billed_at_the_write_price() -> None:
    usage = {"input_tokens": 100, "cache_creation_input_tokens": 600,
             "cache_read_input_tokens": 300, "output_tokens": 50}  # fmt: skip
    with serve("anthropic", Fake(KEY, usage=usage)) as fake:
        b = backend("anthropic/claude-sonnet-4-5", "anthropic", base=fake.base_url)
        reply, _ = await complete(b, stream=False)
    assert (reply.prompt_tokens, reply.cache_read_tokens, reply.cache_write_tokens) == (
        1000, 300, 600)  # fmt: skip
    assert reply.cost_usd == pytest.approx(true_cost("anthropic", 100, 300, 50, write=600))


async def test_the_fakes_refuse_what_their_provider_would() -> None:
    usage = {"input_tokens": 1, "output_tokens": 1}
    with serve("anthropic", Fake("another-key", usage=usage)) as fake:
        b = backend("anthropic/claude-sonnet-4-5", "anthropic", base=fake.base_url)
        with pytest.raises(BackendError) as info:
            await complete(b, stream=False)
    assert (info.value.status, info.value.kind) == (401, "auth")


@pytest.mark.parametrize(
    ("provider", "prompt_reported", "before"),
    [("openai", 1000, 2.2857), ("anthropic", 1000, 2.8409), ("gemini", 1000, 2.3352)],
)
def test_the_old_formula_overbilled(provider: str, prompt_reported: int, before: float) -> None:
    # 900 of 1,000 prompt tokens cached, 50 completion tokens, at the list prices above.
    # litellm reports Anthropic's prompt_tokens with the cache reads added back, so the
    # old formula billed all 1,000 at the input price for every shape.
    ratio = old_cost(provider, prompt_reported, 50) / true_cost(provider, 100, 900, 50)
    assert ratio == pytest.approx(before, abs=1e-4)


# --- how prices are found --------------------------------------------------------------


def priced(price: str = "", model: str = "openai/some-model", cost: float = 1) -> Backend:
    text = (
        f'[[backend]]\nid = "b"\nmodel = "{model}"\napi_base = "http://127.0.0.1:9"\n'
        f'good_at = ["x"]\ncost = {cost}\n' + (f"price = {{ {price} }}\n" if price else "")
    )
    return parse(text).backends[0]


@pytest.fixture
def model_map(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(_model_map, "info", lambda model: entries.get(model, {}))
    return entries


def test_the_roster_prices_cache_reads_and_writes(model_map: dict[str, Any]) -> None:
    p = models.prices(priced("input = 3, output = 15, cached_input = 0.3, cache_write = 3.75"))
    assert p == models.Prices(3e-6, 15e-6, 0.3e-6, 3.75e-6)


def test_litellms_map_prices_them_when_the_roster_does_not(model_map: dict[str, Any]) -> None:
    model_map["openai/some-model"] = {
        "input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6,
        "cache_read_input_token_cost": 0.5e-6, "cache_creation_input_token_cost": 2.5e-6,
    }  # fmt: skip
    assert models.prices(priced()) == models.Prices(2e-6, 8e-6, 0.5e-6, 2.5e-6)
    # A roster input price keeps the map's discount: a quarter of it, and writes +25 %.
    p = models.prices(priced("input = 4, output = 8"))
    assert p is not None and (p.cache_read, p.cache_write) == pytest.approx((1e-6, 5e-6))
    # What the roster says itself wins.
    p = models.prices(priced("input = 4, output = 8, cached_input = 0"))
    assert p is not None and (p.cache_read, p.cache_write) == pytest.approx((0.0, 5e-6))


@pytest.mark.parametrize(
    "entry",
    [{}, {"cache_read_input_token_cost": 0.0, "cache_creation_input_token_cost": 0.0},
     {"cache_read_input_token_cost": None}, {"cache_read_input_token_cost": 9e-6}],
    ids=["absent", "zero", "null", "dearer"],
)  # fmt: skip
def test_an_unknown_discount_is_no_discount(
    model_map: dict[str, Any], entry: dict[str, Any]
) -> None:
    model_map["openai/some-model"] = {
        "input_cost_per_token": 2e-6,
        "output_cost_per_token": 8e-6,
        **entry,
    }
    for b in (priced(), priced("input = 2, output = 8")):
        assert models.prices(b) == models.Prices(2e-6, 8e-6, 2e-6, 2e-6)
    assert models.cost_of(priced(), 1000, 0, 900) == pytest.approx(1000 * 2e-6)


def test_free_and_unknown_stay_so(model_map: dict[str, Any]) -> None:
    assert models.prices(priced(cost=0)) == models.Prices(0.0, 0.0, 0.0, 0.0)
    assert models.prices(priced()) is None
    assert models.cost_of(priced(), 1000, 10, 900) is None


def test_cost_of_never_bills_a_token_twice(model_map: dict[str, Any]) -> None:
    b = priced("input = 1, output = 2, cached_input = 0.1, cache_write = 1.25")
    assert models.cost_of(b, 1000, 50, 900) == pytest.approx((100 + 90 + 100) / 1e6)
    assert models.cost_of(b, 1000, 0, 300, 600) == pytest.approx((100 + 30 + 750) / 1e6)
    # Parts larger than the whole are cut to it: reads first, then writes.
    assert models.cost_of(b, 100, 0, 900, 50) == pytest.approx(10 / 1e6)
    assert models.cost_of(b, 100, 0, 60, 90) == pytest.approx((6 + 50) / 1e6)


# --- the usage objects each transport reads ---------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prompt_tokens": 1000, "completion_tokens": 5,
          "prompt_tokens_details": {"cached_tokens": 900}}, (1000, 5, 900, 0)),
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_cache_hit_tokens": 700,
          "prompt_cache_miss_tokens": 300}, (1000, 5, 700, 0)),
        ({"prompt_tokens": 1000, "completion_tokens": 5,
          "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 800}},
         (1000, 5, 100, 800)),
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 90}}, (10, 0, 10, 0)),
        ({"prompt_tokens": "12", "completion_tokens": None,
          "prompt_tokens_details": {"cached_tokens": "many"}}, (12, 0, 0, 0)),
        ({"prompt_tokens": 10, "prompt_tokens_details": None}, (10, 0, 0, 0)),
    ],
    ids=["openai", "deepseek", "gateway-writes", "clamped", "odd-values", "null-details"],
)  # fmt: skip
def test_openai_usage(raw: dict[str, Any], expected: tuple[int, ...]) -> None:
    u = openai_usage(raw)
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        expected
    )


def test_litellm_usage_objects_of_each_provider() -> None:
    lib = litellm()
    shapes = {
        # what litellm builds from Anthropic's reply (transformation.calculate_usage)
        "anthropic": lib.Usage(
            prompt_tokens=1000, completion_tokens=5, cache_read_input_tokens=300,
            cache_creation_input_tokens=600,
            prompt_tokens_details={"cached_tokens": 300, "cache_creation_tokens": 600},
        ),
        # only the top-level fields, as some providers' translations set them
        "top-level": lib.Usage(prompt_tokens=1000, completion_tokens=5,
                               cache_read_input_tokens=300, cache_creation_input_tokens=600),
        "dict": {"prompt_tokens": 1000, "completion_tokens": 5,
                 "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 600}},
    }  # fmt: skip
    for name, raw in shapes.items():
        u = litellm_usage(raw)
        assert u is not None, name
        got = (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens, u.cache_write_tokens)
        assert got == (1000, 5, 300, 600), name
