"""The model map read without importing litellm agrees with litellm's own look-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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
    whole = json.loads(model_map._text())
    keys = sorted(whole)
    for key in keys[:: max(1, len(keys) // 300)]:  # ~300 keys spread over the map
        assert model_map._entry(key) == whole[key], key
    assert model_map._entry("no-such-provider/no-such-model") is None


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache folder, and nothing remembered in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    forget()
    yield tmp_path / "tanglebrain" / "model-map.json"
    forget()


def forget() -> None:
    model_map._remembered.cache_clear()
    model_map.info.cache_clear()


def test_answers_are_remembered_and_read_back_without_the_map(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = ["openai/gpt-4o", "no-such-provider/no-such-model", "anthropic/claude-sonnet-4-5"]
    slow = [model_map.info(m) for m in asked]
    assert fresh.is_file()
    forget()

    def no_map() -> str:
        raise AssertionError("the map was read")

    monkeypatch.setattr(model_map, "_text", no_map)
    assert [model_map.info(m) for m in asked] == slow
    assert slow[0]["max_input_tokens"] and slow[1] == {}


@pytest.mark.parametrize(
    "content",
    ['{"map": ["elsewhere", 1, 2], "models": {"openai/gpt-4o": {"max_input_tokens": 7}}}',
     "not json", '{"map": 3}', '["a", "list"]'],
    ids=["another version of the map", "corrupt", "wrong shape", "not an object"],
)  # fmt: skip
def test_a_stale_or_broken_cache_is_ignored_and_rewritten(fresh: Path, content: str) -> None:
    fresh.parent.mkdir(parents=True)
    fresh.write_text(content)
    assert model_map.info("openai/gpt-4o")["max_input_tokens"] != 7
    assert json.loads(fresh.read_text())["map"] == model_map._version()


def test_an_unwritable_cache_costs_nothing_but_time(fresh: Path) -> None:
    fresh.parent.parent.joinpath("tanglebrain").write_text("a file where the folder goes")
    assert model_map.info("openai/gpt-4o")["litellm_provider"] == "openai"
    assert not list(fresh.parent.parent.glob("**/*.tmp"))


def test_a_map_that_cannot_be_read_is_not_remembered_as_unknown(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_map, "_loaded", lambda: ([], ""))  # e.g. too many open files
    assert model_map.info("openai/gpt-4o") == {}
    assert not fresh.exists()


def test_remembered_answers_of_the_wrong_type_are_ignored(fresh: Path) -> None:
    fresh.parent.mkdir(parents=True)
    odd = {"openai/gpt-4o": {"max_input_tokens": "7", "litellm_provider": "openai"}}
    fresh.write_text(json.dumps({"map": model_map._version(), "models": odd}))
    assert model_map.info("openai/gpt-4o")["max_input_tokens"] != "7"
