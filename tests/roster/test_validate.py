"""A roster validated once is built without pydantic after, and built the same."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tanglebrain import cachefile
from tanglebrain.cli.demo import demo_roster
from tanglebrain.errors import ConfigError
from tanglebrain.roster import _validate, packaged_path, parse
from tests.helpers import ROOT

OK = '[[backend]]\nid = "a"\nmodel = "ollama_chat/x"\ngood_at = ["grunt"]\ncost = 1\n'

# Numbers as TOML gives them: integers where a float is declared must become floats.
money = st.one_of(st.integers(0, 1000), st.floats(0, 1000, allow_nan=False))
tag = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
price = st.fixed_dictionaries(
    {"input": money, "output": money},
    optional={"cached_input": money, "cache_write": money},
)
backend = st.fixed_dictionaries(
    {"id": tag, "model": st.sampled_from(["openai/gpt-4.1", "ollama_chat/qwen3", "echo"]),
     "good_at": st.lists(tag, min_size=1, max_size=3), "cost": money},
    optional={
        "api_key_env": st.sampled_from(["OPENAI_API_KEY", "MY_KEY"]),
        "api_base": st.sampled_from(["http://127.0.0.1:9/v1", "https://example.com/v1"]),
        "can_orchestrate": st.booleans(), "enabled": st.booleans(),
        "max_concurrency": st.integers(1, 1024), "context_window": st.integers(1, 10**6),
        "price": price, "max_output_tokens": st.integers(1, 10**6),
        "transport": st.sampled_from(["auto", "openai", "litellm"]),
    },
)  # fmt: skip
route_weights = st.fixed_dictionaries(
    {},
    optional={"success": money.filter(lambda x: x <= 100), "cost": st.integers(0, 100),
              "latency": st.integers(0, 100), "explore": st.sampled_from([0, 0.5, 0.1]),
              "half_life_days": st.integers(1, 3650)},
)  # fmt: skip
settings_table = st.fixed_dictionaries(
    {},
    optional={
        "max_subtasks": st.integers(1, 10_000), "max_turns": st.integers(1, 100),
        "budget_usd": st.one_of(st.integers(1, 10), st.floats(0.01, 10)),
        "timeout_s": st.integers(1, 86_400), "max_attempts": st.integers(1, 10),
        "connect_timeout_s": st.one_of(st.integers(1, 86_400), st.floats(0.01, 60)),
        "system_prompt_file": st.just("prompt.md"), "context_budget_bytes": st.integers(200),
        "llm_digest": st.booleans(), "review": st.sampled_from(["never", "always"]),
        "reviewers": st.integers(1, 3), "spill_cost_factor": st.integers(1, 1000),
        "max_output_tokens": st.integers(1, 10**6),
        "routing": st.sampled_from(["static", "learned"]), "route_weights": route_weights,
        "gate": st.sampled_from(["off", "heuristic", "model"]),
        "prompt_cache": st.sampled_from(["auto", "off"]),
    },
)  # fmt: skip
hooks_table = st.fixed_dictionaries(
    {},
    optional={"include": st.lists(st.text(max_size=5), max_size=2),
              "exclude": st.lists(st.text(max_size=5), max_size=2),
              "threshold": st.integers(0, 10**6)},
)  # fmt: skip
roster_data = st.fixed_dictionaries(
    {"backend": st.lists(backend, min_size=1, max_size=3)},
    optional={"settings": settings_table, "hooks": hooks_table},
)


def same(data: dict[str, Any]) -> None:
    validated = _validate.validate(data)
    assert not isinstance(validated, list), validated
    # repr, not ==: 1 == 1.0, but a float field must hold a float
    assert repr(_validate.build(data)) == repr(validated)


@settings(max_examples=150, deadline=None)
@given(roster_data)
def test_build_makes_what_pydantic_makes(data: dict[str, Any]) -> None:
    same(data)


@pytest.mark.parametrize(
    "text",
    [packaged_path().read_text(), (ROOT / "roster.toml").read_text(),
     demo_roster("http://127.0.0.1:9/v1")],
    ids=["packaged", "repository", "demo"],
)  # fmt: skip
def test_shipped_rosters_build_as_pydantic_validates_them(text: str) -> None:
    same(tomllib.loads(text))


def test_a_text_is_remembered_once_it_passes_every_check() -> None:
    text = OK + "# remembered\n"
    assert not _validate.known(_validate.digest(text))
    first = parse(text)
    assert _validate.known(_validate.digest(text))
    assert parse(text) == first  # built, not validated, the second time
    assert not _validate.known(_validate.digest(text + " "))  # any change validates again


@pytest.mark.parametrize(
    "text",
    [OK + OK,  # duplicate id: refused after pydantic accepted it
     OK.replace('"ollama_chat/x"', '"openai/x"'),  # hosted model without key or base
     OK.replace("cost = 1", "cost = -1")],
    ids=["duplicate-id", "no-key", "bad-value"],
)  # fmt: skip
def test_a_refused_text_is_not_remembered(text: str) -> None:
    with pytest.raises(ConfigError):
        parse(text)
    assert not _validate.known(_validate.digest(text))
    with pytest.raises(ConfigError):  # and is refused again
        parse(text)


@pytest.mark.parametrize("content", ["{not json", '{"a": 1}', "[1, 2]", ""])
def test_an_odd_cache_file_means_validating(content: str) -> None:
    path = cachefile.path("rosters.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    text = OK + f"# odd cache {content!r}\n"
    assert parse(text).backends[0].id == "a"
    assert _validate.known(_validate.digest(text))


def test_only_the_latest_texts_are_remembered() -> None:
    texts = [OK + f"# version {i}\n" for i in range(_validate.KEEP + 3)]
    for text in texts:
        parse(text)
    assert [_validate.known(_validate.digest(t)) for t in texts[:3]] == [False] * 3
    assert all(_validate.known(_validate.digest(t)) for t in texts[3:])


def test_without_its_source_every_text_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    # An install that ships bytecode only: nothing says what validated, so nothing is kept.
    monkeypatch.setattr(_validate, "__file__", "/nonexistent/_validate.py")
    _validate._code.cache_clear()
    try:
        text = OK + "# no source\n"
        assert parse(text).backends[0].id == "a"
        assert _validate.digest(text) is None and not _validate.known(None)
        with pytest.raises(ConfigError):
            parse(OK.replace("cost = 1", "cost = -1"))
    finally:
        monkeypatch.undo()
        _validate._code.cache_clear()
    assert _validate.digest(OK) is not None


def test_a_cache_naming_a_text_that_never_validated_cannot_skip_the_checks() -> None:
    # A hand-edited rosters.json: the unknown key must still be refused, not crash.
    text = OK + "colour = 'red'\n"
    cachefile.write("rosters.json", [_validate.digest(text)])
    with pytest.raises(ConfigError, match="unknown key"):
        parse(text)
