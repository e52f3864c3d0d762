"""What the handler and ``wrap`` import, and the stand-ins for what they no longer import."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tanglebrain.hooks import _json
from tanglebrain.hooks._common import quote
from tanglebrain.hooks._config import HooksConfig, lineage, listed, norm, state_dir
from tanglebrain.hooks._perms import Rules, _bash_rule, _has_word
from tests.helpers import ROOT, WAIT, cli_env

# Each costs milliseconds of start-up, paid on every tool call of the agent.
HEAVY = {"re", "json", "pathlib", "typing", "enum", "collections", "datetime", "sqlite3",
         "tomllib", "subprocess", "signal", "threading", "dataclasses", "inspect", "shlex",
         "importlib", "contextlib", "tanglebrain.ledger", "tanglebrain.compress"}  # fmt: skip
PROBE = (
    "import sys\n"
    "from tanglebrain.cli import run_argv\n"
    "code = run_argv(sys.argv[1:])\n"
    "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
)


def _modules(argv: list[str], tmp_path: Path, stdin: bytes = b"") -> set[str]:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    rules = {"permissions": {"allow": ["Bash(make:*)"]}}
    (home / ".claude" / "settings.json").write_text(json.dumps(rules))
    env = cli_env(tmp_path, HOME=str(home), PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, *argv],
        input=stdin, capture_output=True, env=env, cwd=tmp_path, timeout=WAIT, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return set(out.stderr.decode().split())


def test_the_handler_imports_nothing_heavy(tmp_path: Path) -> None:
    payload = {"tool_name": "Bash", "tool_input": {"command": "make build"}, "cwd": str(tmp_path)}
    loaded = _modules(["hook", "claude", "pre-tool-use"], tmp_path, json.dumps(payload).encode())
    assert "tanglebrain.hooks._perms" in loaded  # the whole path ran: rules were read
    assert (tmp_path / "state" / "hook_log.spool").exists()
    assert loaded & HEAVY == set()


def test_wrap_imports_nothing_heavy_for_a_small_output(tmp_path: Path) -> None:
    loaded = _modules(["wrap", "--", "echo hi"], tmp_path)
    assert "tanglebrain.hooks._wrap" in loaded
    assert loaded & HEAVY == set()


DOCUMENTS = [
    '{"a": [1, 2.5, -3e2, null, true, false, "x\\u00e9\\ud83d\\ude00"], "b": {}}',
    ' \t\n{"nested": {"deep": [[[]]]}}\r\n',
    '"just a string"', "12", "-0.0", "[NaN, Infinity, -Infinity]", "1e400",
    '{"dup": 1, "dup": 2}', '["\\ud800"]', '{"é": "ü", "k": "\\n\\t\\"\\\\"}',
    "", "   ", "{", '{"a" 1}', '{"a": 1,}', "[1,]", '{"a": "\\q"}', '"\x01"', "nul",
    "[1] [2]", '{"a": 1}x', "\ufeff{}", "01", "1.", "--1", "'single'",
]  # fmt: skip


def _outcome(fn: Any, data: Any) -> Any:
    try:
        value = fn(data)
    except Exception as exc:  # the type is what must agree
        return type(exc)
    return json.dumps(value, sort_keys=True) if not _has_nan(value) else repr(value)


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_is_json_loads(text: str) -> None:
    assert _outcome(_json.loads, text) == _outcome(json.loads, text)
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"):
        data = text.encode(encoding, "surrogatepass")
        assert _outcome(_json.loads, data) == _outcome(json.loads, data), encoding


VALUES = [{"a": [1, 2.5, None, True], "b": {"c": "é\n\u2028\ud800"}}, "x\u00e9", [], 3, 1e300,
          {"k": float("inf")}, {1: "int key", None: "none key"}]  # fmt: skip


@pytest.mark.parametrize("value", VALUES)
def test_dumps_is_json_dumps(value: Any) -> None:
    for ascii_only in (True, False):
        assert _json.dumps(value, ensure_ascii=ascii_only) == json.dumps(
            value, ensure_ascii=ascii_only
        )
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json.dumps({"a": object()})


ALPHABET = "ab_-./:@%+=,'\" \t\n\\$*!é1Z()[]#~"


def _words(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 8))) for _ in range(count)]


def test_quote_is_shlex_quote() -> None:
    for word in [*_words(1, 2000), "", "plain", "it's", "a b", "ünïcode"]:
        assert quote(word) == shlex.quote(word), word


def test_has_word_is_the_regular_expression() -> None:
    names = ["make", "rm", "touch", "x.y", "a-b", "é", "_", "git push"]
    texts = [*_words(2, 600), "make build", "premake x", "make.sh", "-make", "make-x", "make_x"]
    for name in names:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
        for text in [*texts, *(f"{t}{name}{u}" for t, u in itertools.pairwise(texts))]:
            assert _has_word(text, name) == bool(pattern.search(text)), (name, text)


def test_bash_rule_is_the_regular_expression() -> None:
    def oracle(item: str) -> str | None:
        item = item.strip()
        if item == "Bash":
            return ""
        m = re.fullmatch(r"Bash\s*\((.*)\)", item, re.S)
        return m.group(1).strip() if m else None

    items = ["Bash", "Bash()", "Bash(make:*)", "Bash (x)", "Bash\t\n( a )", "Bash(", "Bash)",
             "Bashx(y)", "Read(x)", " Bash(a(b)c) ", "Bash(a)b", "bash(x)", "Bash(\n)"]  # fmt: skip
    for item in [*items, *("Bash" + w for w in _words(3, 500))]:
        assert _bash_rule(item) == oracle(item), item


def test_paths_are_pathlib_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for text in ["/a/b", "/a//b/", "a/./b", "//a", "///a", "/", ".", "a/../b", "./", "x/"]:
        assert norm(text) == str(Path(text)), text
        expected = Path(text).absolute()
        assert lineage(text) == [str(expected), *map(str, expected.parents)], text
    for name in ("b.toml", "a.toml", ".hidden.toml", "c.json", "d.toml.bak"):
        (tmp_path / name).touch()
    assert listed(str(tmp_path), ".toml") == list(map(str, sorted(tmp_path.glob("*.toml"))))
    assert listed(str(tmp_path / "missing"), ".toml") == []
    assert state_dir({"TANGLEBRAIN_HOME": "/s//t/"}) == "/s/t"
    assert state_dir({"XDG_DATA_HOME": "/d"}) == "/d/tanglebrain"
    assert state_dir({}) == str(Path.home() / ".local" / "share" / "tanglebrain")


def test_records_behave_as_named_tuples() -> None:
    rules = Rules(allow=("make:*",))
    assert rules == Rules(("make:*",), (), ()) == (("make:*",), (), ())
    assert (rules.allow, rules.ask, rules.deny) == (("make:*",), (), ())
    assert repr(rules) == "Rules(allow=('make:*',), ask=(), deny=())"
    assert rules._replace(deny=("rm:*",)).deny == ("rm:*",)
    assert HooksConfig()._asdict() == {"include": (), "exclude": (), "threshold": 6000}
    assert hash(HooksConfig()) == hash(((), (), 6000))
    with pytest.raises(TypeError):
        Rules(bogus=())
    with pytest.raises(TypeError):
        Rules((), (), (), ())
    assert os.fspath(Path("x")) == "x"


def test_the_raw_id_digest_is_sha256() -> None:
    import hashlib

    from tanglebrain.hooks._wrap import _sha256

    for data in (b"", b"abc", bytes(range(256)) * 100):
        assert _sha256(data) == hashlib.sha256(data).hexdigest()
