from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanglebrain.errors import ConfigError, MissingKeyError
from tanglebrain.roster import discover, load_file, packaged_path, parse
from tests.helpers import run_cli

OK = 'id = "a"\nmodel = "openai/x"\ngood_at = ["grunt"]\ncost = 1\n'


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
    ("backend-table", "[backend]\nid = 'a'\n", "array of tables", None),
    ("settings-type", "[settings]\nmax_turns = 'eight'\n" + backend(), "settings.max_turns", 2),
    ("settings-budget", "[settings]\nbudget_usd = 0\n" + backend(), "settings.budget_usd", 2),
    ("bad-env-name", backend(OK + 'api_key_env = "MY KEY"\n'), "field 'api_key_env'", 6),
    ("empty-model", backend(OK.replace('"openai/x"', '""')), "field 'model'", 3),
]


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
    repo = Path(__file__).resolve().parents[1] / "roster.toml"
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
        assert "\n" not in str(exc)


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
def test_random_documents_never_crash(doc: dict[str, object]) -> None:
    import tomli_w

    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return
    try:
        parse(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
