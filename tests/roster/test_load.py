from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tanglebrain.errors import ConfigError, MissingKeyError
from tanglebrain.roster import discover, load_file, packaged_path, parse
from tests.helpers import run_cli

OK = 'id = "a"\nmodel = "ollama_chat/x"\ngood_at = ["grunt"]\ncost = 1\n'


SK = "sk-proj-abcdefghijklmnop1234"


def backend(body: str = OK) -> str:
    return "[[backend]]\n" + body


# (name, roster text, text that must appear in the one error line, expected line or None)
BAD = [
    ("syntax", "[[backend]\nid = 'a'\n", "invalid TOML", 1),
    ("syntax-value", backend(OK + "cost2 = \n"), "invalid TOML", 6),
    ("empty-file", "", "no [[backend]] entries", None),
    ("only-settings", "[settings]\nmax_turns = 3\n", "no [[backend]] entries", None),
    ("unknown-key", backend(OK + "colour = 'red'\n"), "field 'colour': unknown key", 6),
    ("misspelt-key", backend(OK + "can_orchestate = true\n"), "did you mean 'can_orchestrate'", 6),
    ("misspelt-setting", "[settings]\nmax_turn = 3\n" + backend(), "did you mean 'max_turns'", 2),
    ("unknown-top", "colour = 1\n" + backend(), "field 'colour': unknown key", 1),
    ("literal-key", backend(OK + 'api_key = "abc123"\n'), "field 'api_key': literal secrets", 6),
    ("literal-token", backend(OK + 'token = "abc123"\n'), "literal secrets are refused", 6),
    (
        "sk-in-env-field",
        backend(OK + 'api_key_env = "sk-abcdefghijklmnopqrstu"\n'),
        "field 'api_key_env': literal secrets",
        6,
    ),
    ("sk-in-base", backend(OK + 'api_base = "sk-abcdefghijklmnop"\n'), "literal secrets", 6),
    ("duplicate-id", backend() + backend(), "field 'id': duplicate id", 7),
    (
        "missing-model",
        backend('id = "a"\ngood_at = ["x"]\ncost = 1\n'),
        "field 'model': missing",
        1,
    ),
    (
        "missing-cost",
        backend('id = "a"\nmodel = "m"\ngood_at = ["x"]\n'),
        "field 'cost': missing",
        1,
    ),
    ("empty-good-at", backend(OK.replace('["grunt"]', "[]")), "field 'good_at'", 4),
    ("good-at-string", backend(OK.replace('["grunt"]', '"grunt"')), "field 'good_at'", 4),
    ("bad-tag", backend(OK.replace('"grunt"', '"Big Tag"')), "field 'good_at'", 4),
    ("negative-cost", backend(OK.replace("cost = 1", "cost = -1")), "field 'cost'", 5),
    ("cost-string", backend(OK.replace("cost = 1", 'cost = "cheap"')), "field 'cost'", 5),
    ("bad-id-chars", backend(OK.replace('"a"', '"My Backend"')), "field 'id'", 2),
    ("enabled-string", backend(OK + 'enabled = "yes"\n'), "field 'enabled'", 6),
    ("concurrency-zero", backend(OK + "max_concurrency = 0\n"), "field 'max_concurrency'", 6),
    ("window-float", backend(OK + "context_window = 1.5\n"), "field 'context_window'", 6),
    ("price-missing-output", backend(OK + "price = { input = 1 }\n"), "field 'output'", 6),
    ("price-unknown", backend(OK + "price = { input = 1, output = 2, cache = 1 }\n"), "'cache'", 6),
    ("price-cached-negative",
     backend(OK + "price = { input = 1, output = 2, cached_input = -1 }\n"),
     "field 'cached_input': Input should be greater than or equal to 0", 6),
    ("price-write-string", backend(OK + 'price = { input = 1, output = 2, cache_write = "x" }\n'),
     "field 'cache_write'", 6),
    ("backend-table", "[backend]\nid = 'a'\n", "array of tables", None),
    ("settings-type", "[settings]\nmax_turns = 'eight'\n" + backend(), "settings.max_turns", 2),
    ("settings-budget", "[settings]\nbudget_usd = 0\n" + backend(), "settings.budget_usd", 2),
    ("spill-below-1", "[settings]\nspill_cost_factor = 0.5\n" + backend(),
     "settings.spill_cost_factor': Input should be greater than or equal to 1", 2),
    ("spill-inf", "[settings]\nspill_cost_factor = inf\n" + backend(), "(use a finite", 2),
    ("output-cap-zero", "[settings]\nmax_output_tokens = 0\n" + backend(),
     "settings.max_output_tokens", 2),
    ("orchestrator-cap-float", "[settings]\norchestrator_max_output_tokens = 1.5\n" + backend(),
     "settings.orchestrator_max_output_tokens", 2),
    ("backend-output-cap", backend(OK + "max_output_tokens = -1\n"),
     "field 'max_output_tokens'", 6),
    ("bad-env-name", backend(OK + 'api_key_env = "MY KEY"\n'), "field 'api_key_env'", 6),
    ("empty-model", backend(OK.replace('"ollama_chat/x"', '""')), "field 'model'", 3),
    # literal secrets anywhere: list items, tables, key names
    ("secret-in-list", backend(OK.replace('["grunt"]', f'["work", "{SK}"]')),
     "field 'good_at': literal secrets are refused", 4),
    ("secret-in-nested-list", backend(OK.replace('["grunt"]', f'["work", ["{SK}"]]')),
     "field 'good_at': literal secrets are refused", 4),
    ("secret-in-table", backend(OK + f'price = {{ input = 1, output = "{SK}" }}\n'),
     "field 'output': literal secrets are refused", 6),
    ("secret-in-settings-list", f'[settings]\nreviewers = ["{SK}"]\n' + backend(),
     "field 'reviewers': literal secrets are refused", 2),
    ("secret-as-key-name", backend(OK + f'"{SK}" = 1\n'), "literal secrets are refused (in a", 6),
    # values that used to load and then break every call
    ("timeout-inf", "[settings]\ntimeout_s = inf\n" + backend(),
     "field 'settings.timeout_s': Input should be a finite number (got inf) (use a finite", 2),
    ("timeout-nan", "[settings]\ntimeout_s = nan\n" + backend(), "(use a finite number)", 2),
    ("timeout-huge", "[settings]\ntimeout_s = 1e300\n" + backend(), "(use a number <= 86400)", 2),
    ("connect-zero", "[settings]\nconnect_timeout_s = 0\n" + backend(),
     "field 'settings.connect_timeout_s'", 2),
    ("connect-text", '[settings]\nconnect_timeout_s = "10"\n' + backend(),
     "field 'settings.connect_timeout_s'", 2),
    ("cost-inf", backend(OK.replace("cost = 1", "cost = inf")), "field 'cost'", 5),
    ("model-10mb", backend(OK.replace("ollama_chat/x", "openai/" + "x" * 10_000_000)),
     "field 'model': String should have at most 256 characters (use at most 256", 3),
    ("model-spaces", backend(OK.replace("ollama_chat/x", "openai/ a b")),
     "field 'model': model must be a non-empty litellm model string without spaces "
     "(got 'openai/ a b') (use the litellm model string", 3),
    ("model-no-name", backend(OK.replace("ollama_chat/x", "openai/")), "field 'model'", 3),
    ("api-base-not-url", backend(OK + 'api_base = "not a url at all"\n'),
     "field 'api_base': api_base must be an http:// or https:// URL (got 'not a url at all') "
     "(use the server's URL", 6),
    ("api-base-no-host", backend(OK + 'api_base = "http:///v1"\n'), "field 'api_base'", 6),
    ("api-base-bad-port", backend(OK + 'api_base = "http://h:port/v1"\n'), "field 'api_base'", 6),
    ("backends-plural", "[[backends]]\n" + OK, "field 'backends': unknown key (did you mean "
     "'backend'?)", 1),
    ("hosted-without-key", backend(OK.replace("ollama_chat/x", "openai/x")),
     "backend 'a', field 'api_key_env': openai needs an API key, but neither api_key_env nor "
     'api_base is set (add api_key_env = "OPENAI_API_KEY"', 1),
    ("hosted-without-key-2nd", backend() + backend(OK.replace('"a"', '"b"').replace(
        "ollama_chat/x", "anthropic/claude")), 'add api_key_env = "ANTHROPIC_API_KEY"', 6),
    # nesting: one clean line, not a traceback
    ("nested-arrays", "x = " + "[" * 50_000 + "]" * 50_000 + "\n" + backend(),
     "nested more than 16 levels deep (a roster needs only", 1),
    ("nested-inline-tables", "x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n" + backend(),
     "nested more than 16 levels deep", 1),
    ("nested-headers", "[" + ".".join(["a"] * 50_000) + "]\nb = 1\n" + backend(),
     "nested more than 16 levels deep", 1),
    ("nested-in-backend", backend(OK + "extra = " + "[" * 40 + "]" * 40 + "\n"),
     "backend 'a', field 'extra': nested more than 16 levels deep", 6),
    # a nested settings table: its whole dotted path, and its own line
    ("route-weights-negative", "[settings]\nmax_turns = 4\n\n[settings.route_weights]\n"
     "success = 1\ncost = -1\n" + backend(), "field 'settings.route_weights.cost': Input "
     "should be greater than or equal to 0", 6),
    ("route-weights-unknown", "[settings.route_weights]\nbogus = 2\n" + backend(),
     "field 'settings.route_weights.bogus': unknown key (valid keys: success, cost", 2),
    ("route-weights-inline", "[settings]\nroute_weights = { explore = 2 }\n" + backend(),
     "field 'settings.route_weights.explore': Input should be less than or equal to 0.5", 2),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "expect", "line"), BAD, ids=[b[0] for b in BAD])
def test_bad_roster_in_process(name: str, text: str, expect: str, line: int | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "r.toml")
    message = str(info.value)
    assert expect in message
    assert "\n" not in message
    if line is not None:
        assert message.startswith(f"r.toml:{line}:"), message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("name", "text", "expect", "line"), BAD, ids=[b[0] for b in BAD])
def test_bad_roster_cli(
    tmp_path: Path, name: str, text: str, expect: str, line: int | None
) -> None:
    roster = tmp_path / "roster.toml"
    roster.write_text(text)
    result = run_cli(["--roster", str(roster), "hello"], tmp_path)
    assert result.code == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expect in lines[0]
    assert str(roster) in lines[0]
    assert "Traceback" not in result.stderr


GOOD = [
    ("local-openai-server", 'model = "openai/qwen"\napi_base = "http://127.0.0.1:8080/v1"\n'),
    ("hosted-with-key", 'model = "openai/gpt-4.1"\napi_key_env = "OPENAI_API_KEY"\n'),
    ("hosted-disabled-draft", 'model = "anthropic/claude"\nenabled = false\n'),
    ("unprefixed-model", 'model = "gpt-4o"\n'),
    ("cloud-credentials", 'model = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"\n'),
    ("https-base-with-port", 'model = "ollama_chat/x"\napi_base = "https://gpu.lan:11434"\n'),
    ("dotted-keys", 'model = "ollama_chat/x"\nprice.input = 1.0\nprice.output = 2.0\n'),
    (
        "cache-prices",
        'model = "ollama_chat/x"\n'
        "price = { input = 3, output = 15, cached_input = 0.3, cache_write = 3.75 }\n",
    ),
]


@pytest.mark.parametrize(("name", "body"), GOOD, ids=[g[0] for g in GOOD])
def test_legitimate_backends_still_load(name: str, body: str) -> None:
    roster = parse(backend(f'id = "a"\n{body}good_at = ["work"]\ncost = 1\n'))
    assert roster.backends[0].id == "a"


def test_every_string_is_checked_for_secrets_but_none_is_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        parse(backend(OK.replace('["grunt"]', f'["work", "{SK}"]')), "r.toml")
    assert SK not in str(info.value) and "sk-proj" not in str(info.value)


def test_packaged_roster_is_valid_and_safe() -> None:
    roster = load_file(packaged_path())
    enabled = roster.enabled()
    assert [b.id for b in enabled] == ["local"]
    assert enabled[0].cost == 0 and enabled[0].model == "ollama_chat/llama3.2"
    opt_in = [b for b in roster.backends if not b.enabled]
    assert {b.provider for b in opt_in} == {"anthropic", "gemini", "deepseek", "openai"}
    assert all(b.api_key_env for b in opt_in)
    assert any(b.can_orchestrate for b in opt_in)
    text = packaged_path().read_text()
    assert text.count("DISCLAIMER.md") >= 4


def test_packaged_roster_is_the_repo_roster() -> None:
    repo = Path(__file__).resolve().parents[2] / "roster.toml"
    assert packaged_path().resolve() == repo.resolve()


def test_discovery_order(tmp_path: Path) -> None:
    flag, env_file, cwd, xdg = (tmp_path / n for n in ("flag.toml", "env.toml", "cwd", "xdg"))
    for p in (flag, env_file):
        p.write_text(backend())
    cwd.mkdir()
    (xdg / "tanglebrain").mkdir(parents=True)
    (xdg / "tanglebrain" / "roster.toml").write_text(backend())
    env = {"TANGLEBRAIN_ROSTER": str(env_file), "XDG_CONFIG_HOME": str(xdg)}
    assert discover(flag, env, cwd) == (flag, "flag")
    assert discover(None, env, cwd) == (env_file, "env")
    (cwd / "roster.toml").write_text(backend())
    assert discover(None, {"XDG_CONFIG_HOME": str(xdg)}, cwd) == (cwd / "roster.toml", "cwd")
    (cwd / "roster.toml").unlink()
    assert discover(None, {"XDG_CONFIG_HOME": str(xdg)}, cwd)[1] == "xdg"
    assert discover(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")}, cwd) == (
        packaged_path(),
        "packaged",
    )
    with pytest.raises(ConfigError, match="not found"):
        discover(tmp_path / "missing.toml", env, cwd)


def test_missing_key_only_when_used() -> None:
    roster = parse(backend(OK + 'api_key_env = "TB_TEST_KEY"\n'))
    b = roster.backends[0]
    assert b.key_status({}) == "missing"
    assert b.key_status({"TB_TEST_KEY": "x"}) == "set"
    with pytest.raises(MissingKeyError) as info:
        b.api_key({})
    assert "TB_TEST_KEY" in str(info.value)


toml_text = st.text(alphabet=string.printable + "[]=\"'{}äé", max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_text)
def test_random_text_never_crashes(text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        assert str(exc).isprintable()  # one line, and nothing the terminal would interpret


scalars = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.text(max_size=5), max_size=3),
)
entry = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "model",
            "good_at",
            "cost",
            "enabled",
            "price",
            "max_concurrency",
            "api_key_env",
            "context_window",
            "can_orchestrate",
            "extra",
        ]
    ),
    scalars,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["backend", "settings", "x"]), st.lists(entry, max_size=3)))
@example(doc={"backend": [{"id": "\n"}]})  # a newline in an id once split the error line
@example(doc={"backend": [{"id": "\x1b[31m"}]})  # and an escape sequence reached the terminal
def test_random_documents_never_crash(doc: dict[str, object]) -> None:
    import tomli_w

    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return
    try:
        parse(text)
    except ConfigError as exc:
        assert str(exc).isprintable()  # one line, and nothing the terminal would interpret


def test_output_caps_and_spill_factor_defaults_and_overrides() -> None:
    roster = parse(backend() + backend(OK.replace('"a"', '"b"') + "max_output_tokens = 512\n"))
    settings_ = roster.settings
    assert (settings_.max_output_tokens, settings_.orchestrator_max_output_tokens) == (4096, 8192)
    assert settings_.spill_cost_factor == 2.0
    assert [b.max_output_tokens for b in roster.backends] == [None, 512]
    text = "[settings]\nspill_cost_factor = 3\nmax_output_tokens = 1000\n" + backend()
    assert parse(text).settings.spill_cost_factor == 3.0
    assert parse(text).settings.max_output_tokens == 1000
