"""The model map read without importing litellm agrees with litellm's own look-up."""

from __future__ import annotations

import pytest

from tanglebrain.models import _model_map as model_map
from tanglebrain.models._litellm import litellm

MODELS = [
    # the packaged roster's models, and names as users write them
    "ollama_chat/llama3.2", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash",
    "deepseek/deepseek-chat", "openai/gpt-4.1", "openai/gpt-4o", "gpt-4o", "azure/gpt-4o",
    "mistral/mistral-large-latest", "ollama/llama3", "vertex_ai/gemini-1.5-pro",
    "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "openai/worker:latency=0.3",
    "openrouter/anthropic/claude-3.5-sonnet", "no-such-provider/no-such-model",
]  # fmt: skip
FIELDS = ("input_cost_per_token", "output_cost_per_token", "max_input_tokens")


@pytest.mark.parametrize("model", MODELS)
def test_the_same_prices_and_window_as_litellm(model: str) -> None:
    try:
        theirs = dict(litellm().get_model_info(model))
    except Exception:  # litellm raises for models it does not know
        theirs = {}
    ours = model_map.info(model)
    # 0 and missing mean the same to tanglebrain: no price, no window
    assert [ours.get(f) or None for f in FIELDS] == [theirs.get(f) or None for f in FIELDS]


def test_a_provider_prefix_is_stripped_only_for_that_providers_entry() -> None:
    assert model_map.info("openai/gpt-4o")["litellm_provider"] == "openai"
    assert model_map.info("anthropic/gpt-4o") == {}


def test_each_entry_found_alone_is_the_entry_of_the_whole_map() -> None:
    import json

    whole = json.loads(model_map._text())
    keys = sorted(whole)
    for key in keys[:: max(1, len(keys) // 300)]:  # ~300 keys spread over the map
        assert model_map._entry(key) == whole[key], key
    assert model_map._entry("no-such-provider/no-such-model") is None
