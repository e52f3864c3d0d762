"""The roster editor: exact line changes, refusal before writing, atomic + backed-up writes."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanglebrain.errors import ConfigError, UsageError
from tanglebrain.roster import (
    FIELDS,
    OPTIONAL_FIELDS,
    Backend,
    add_backend,
    editable_path,
    load_file,
    packaged_path,
    parse,
    parse_value,
    remove_backend,
    set_field,
    write_starter,
)
from tests.helpers import run_cli

SK = "sk-proj-abcdefghijklmnop1234"
CURATED = """\
# My roster. Hand-written; keep these comments.

[settings]
timeout_s = 60   # seconds

# The local model.
[[backend]]
id = "local"
model = "ollama_chat/llama3.2"
api_base = "http://localhost:11434"   # Ollama
good_at = ["grunt", "classify"]
cost = 0
# enabled = false  (commented out on purpose)

# Frontier orchestrator.
# Two lines of notes.
[[backend]]
id = "claude"
model = "anthropic/claude-sonnet-4-5"
api_key_env = "ANTHROPIC_API_KEY"
good_at = [
  "reasoning",  # the main reason
  "review",
]
"cost" = 30  # dear
can_orchestrate = true
enabled = false # opt-in

# Cheap reader.
[[backend]]
id = "flash"
model = "gemini/gemini-2.5-flash"
api_key_env = "GEMINI_API_KEY"
good_at = ["summarize"]
cost = 3
price = { input = 0.3, output = 2.5 }

# trailing notes at the end of the file
"""

Edit = Callable[[Path], object]


def changes(old: str, new: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts, each sorted (a diff may pick either
    of two equal blank lines)."""
    diff = list(difflib.ndiff(old.split("\n"), new.split("\n")))
    return sorted(d[2:] for d in diff if d[:2] == "- "), sorted(
        d[2:] for d in diff if d[:2] == "+ "
    )


CASES: list[tuple[str, Edit, list[str], list[str]]] = [
    ("disable: key added after the last key", lambda p: set_field(p, "local", "enabled", False),
     [], ["enabled = false"]),
    ("enable: value replaced, inline comment kept", lambda p: set_field(p, "claude", "enabled",
     True), ["enabled = false # opt-in"], ["enabled = true # opt-in"]),
    ("set a quoted key", lambda p: set_field(p, "claude", "cost", 25),
     ['"cost" = 30  # dear'], ['"cost" = 25  # dear']),
    ("set a multi-line array", lambda p: set_field(p, "claude", "good_at", ["planning"]),
     ["good_at = [", '  "reasoning",  # the main reason', '  "review",', "]"],
     ['good_at = ["planning"]']),
    ("set price in place", lambda p: set_field(p, "flash", "price", {"input": 1, "output": 2}),
     ["price = { input = 0.3, output = 2.5 }"], ["price = { input = 1.0, output = 2.0 }"]),
    ("set a cache price, the others kept",
     lambda p: set_field(p, "flash", "price.cached_input", 0.075),
     ["price = { input = 0.3, output = 2.5 }"],
     ["price = { input = 0.3, output = 2.5, cached_input = 0.075 }"]),
    ("set every price at once",
     lambda p: set_field(p, "flash", "price", {"input": 0.3, "output": 2.5,
                                               "cached_input": 0.03, "cache_write": 0.4}),
     ["price = { input = 0.3, output = 2.5 }"],
     ["price = { input = 0.3, output = 2.5, cached_input = 0.03, cache_write = 0.4 }"]),
    ("set a new optional field", lambda p: set_field(p, "claude", "context_window", 200000),
     [], ["context_window = 200000"]),
    ("'' removes an optional field", lambda p: set_field(p, "local", "api_base", None),
     ['api_base = "http://localhost:11434"   # Ollama'], []),
    ("rename", lambda p: set_field(p, "flash", "id", "reader"),
     ['id = "flash"'], ['id = "reader"']),
    ("remove the middle entry with its comment block",
     lambda p: remove_backend(p, "claude"),
     ["", "# Frontier orchestrator.", "# Two lines of notes.", "[[backend]]", 'id = "claude"',
      'model = "anthropic/claude-sonnet-4-5"', 'api_key_env = "ANTHROPIC_API_KEY"',
      "good_at = [", '  "reasoning",  # the main reason', '  "review",', "]",
      '"cost" = 30  # dear', "can_orchestrate = true", "enabled = false # opt-in"], []),
    ("remove the first entry", lambda p: remove_backend(p, "local"),
     ["", "# The local model.", "[[backend]]", 'id = "local"', 'model = "ollama_chat/llama3.2"',
      'api_base = "http://localhost:11434"   # Ollama', 'good_at = ["grunt", "classify"]',
      "cost = 0", "# enabled = false  (commented out on purpose)"], []),
    ("remove the last entry", lambda p: remove_backend(p, "flash"),
     ["", "# Cheap reader.", "[[backend]]", 'id = "flash"', 'model = "gemini/gemini-2.5-flash"',
      'api_key_env = "GEMINI_API_KEY"', 'good_at = ["summarize"]', "cost = 3",
      "price = { input = 0.3, output = 2.5 }"], []),
    ("add after the last entry",
     lambda p: add_backend(p, {"id": "mistral", "model": "mistral/mistral-large-latest",
                               "api_key_env": "MISTRAL_API_KEY", "api_base": None,
                               "good_at": ["code", "review"], "cost": 4,
                               "can_orchestrate": True}),
     [], ["", "[[backend]]", 'id = "mistral"', 'model = "mistral/mistral-large-latest"',
          'api_key_env = "MISTRAL_API_KEY"', 'good_at = ["code", "review"]', "cost = 4",
          "can_orchestrate = true"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "removed", "added"), CASES, ids=[c[0] for c in CASES])
def test_each_edit_changes_exactly_the_intended_lines(
    tmp_path: Path, name: str, edit: Edit, removed: list[str], added: list[str]
) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    edit(path)
    new = path.read_text()
    assert changes(CURATED, new) == (sorted(removed), sorted(added))
    assert (tmp_path / "roster.toml.bak").read_text() == CURATED
    parse(new)  # still a valid roster


def test_insertions_land_inside_their_entry(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    set_field(path, "local", "enabled", False)
    add_backend(path, {"id": "x", "model": "ollama_chat/x", "good_at": ["a"], "cost": 1})
    lines = path.read_text().splitlines()
    assert lines[lines.index("cost = 0") + 1] == "enabled = false"
    assert lines[-9:-6] == ["price = { input = 0.3, output = 2.5 }", "", "[[backend]]"]
    assert lines[-2:] == ["", "# trailing notes at the end of the file"]
    assert [b.id for b in load_file(path).backends] == ["local", "claude", "flash", "x"]


def test_every_packaged_entry_can_be_removed_cleanly(tmp_path: Path) -> None:
    original = packaged_path().read_text()
    path = tmp_path / "roster.toml"
    for backend in load_file(packaged_path()).backends[1:]:
        path.write_text(original)
        remove_backend(path, backend.id)
        text = path.read_text()
        assert "\n\n\n" not in text and text.endswith("\n")
        removed, added = changes(original, text)
        assert not added and f'id = "{backend.id}"' in removed
        assert sum(line.startswith("# ") for line in removed) == 2  # its own two comment lines


def test_settings_after_the_backends(tmp_path: Path) -> None:
    text = (
        '[[backend]]\nid = "a"\nmodel = "m"\ngood_at = ["x"]\ncost = 1\n\n'
        '[[backend]]\nid = "b"\nmodel = "m"\ngood_at = ["x"]\ncost = 2\n\n'
        "# Settings come last in this file.\n[settings]\nmax_turns = 4\n"
    )
    path = tmp_path / "roster.toml"
    path.write_text(text)
    add_backend(path, {"id": "c", "model": "m", "good_at": ["y"], "cost": 3})
    assert path.read_text() == text.replace(
        "cost = 2\n", 'cost = 2\n\n[[backend]]\nid = "c"\nmodel = "m"\ngood_at = ["y"]\ncost = 3\n'
    )
    path.write_text(text)
    remove_backend(path, "b")
    assert path.read_text() == text.replace(
        '[[backend]]\nid = "b"\nmodel = "m"\ngood_at = ["x"]\ncost = 2\n\n', ""
    )


def test_line_endings_indentation_and_missing_final_newline(tmp_path: Path) -> None:
    text = (
        '[[backend]]\r\n  id = "a"\r\n  model = "ollama_chat/a"\r\n  good_at = ["x"]\r\n  cost = 1'
    )
    path = tmp_path / "roster.toml"
    path.write_bytes(text.encode())
    set_field(path, "a", "enabled", False)
    add_backend(path, {"id": "b", "model": "ollama_chat/b", "good_at": ["y"], "cost": 2})
    data = path.read_bytes().decode()
    assert data.count("\r\n") == data.count("\n")
    assert '  cost = 1\r\n  enabled = false\r\n\r\n[[backend]]\r\n  id = "b"\r\n' in data
    assert [b.enabled for b in load_file(path).backends] == [False, True]


REFUSED: list[tuple[str, Edit, str]] = [
    ("negative cost", lambda p: set_field(p, "flash", "cost", -1), "field 'cost'"),
    ("empty tag list", lambda p: set_field(p, "flash", "good_at", []), "field 'good_at'"),
    ("bad id", lambda p: set_field(p, "flash", "id", "Bad Id"), "field 'id'"),
    ("id clash", lambda p: set_field(p, "flash", "id", "local"), "duplicate id"),
    ("literal secret", lambda p: set_field(p, "flash", "api_key_env", "sk-abcdefghijklmnop"),
     "literal secrets are refused"),
    ("secret in a URL field", lambda p: set_field(p, "local", "api_base",
     "Bearer abcdefghijklmnopq"), "literal secrets are refused"),
    ("duplicate add", lambda p: add_backend(p, {"id": "claude", "model": "m", "good_at": ["a"],
     "cost": 1}), "already exists"),
    ("unknown id", lambda p: remove_backend(p, "nope"), "known ids: local, claude, flash"),
    ("unknown field", lambda p: set_field(p, "local", "colour", "red"), "valid fields: id,"),
    ("secret among tags", lambda p: add_backend(p, {"id": "x", "model": "ollama_chat/x",
     "good_at": ["work", SK], "cost": 1}), "field 'good_at': literal secrets are refused"),
    ("secret set as tags", lambda p: set_field(p, "flash", "good_at", ["work", SK]),
     "literal secrets are refused"),
    ("hosted model, no key", lambda p: add_backend(p, {"id": "x", "model": "openai/x",
     "good_at": ["a"], "cost": 1}), 'add api_key_env = "OPENAI_API_KEY"'),
    ("drop the key of a hosted model", lambda p: set_field(p, "flash", "api_key_env", None),
     'add api_key_env = "GEMINI_API_KEY"'),
    ("api_base not a URL", lambda p: set_field(p, "local", "api_base", "not a url at all"),
     "field 'api_base'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_edit_leaves_file_and_backup_untouched(
    tmp_path: Path, name: str, edit: Edit, message: str
) -> None:
    path, bak = tmp_path / "roster.toml", tmp_path / "roster.toml.bak"
    path.write_text(CURATED)
    bak.write_bytes(b"an older version\n")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError) as info:
        edit(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_text() == CURATED
    assert bak.read_bytes() == b"an older version\n"
    assert sorted(set(os.listdir(tmp_path)) - {"roster.toml.lock"}) == before  # no temp files


def test_backends_add_refuses_a_secret_among_its_tags(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    args = ["backends", "add", "x", "--model", "ollama_chat/x", "--good-at", f"work,{SK}",
            "--cost", "1", "--roster", str(path)]  # fmt: skip
    out = run_cli(args, tmp_path)
    assert out.code == 2 and "literal secrets are refused" in out.stderr, out
    assert SK not in out.stderr + out.stdout and path.read_text() == CURATED


def test_a_deeply_nested_file_is_one_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED + "x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested more than 16 levels deep"):
        set_field(path, "local", "cost", 1)


def test_validation_names_that_nothing_was_written(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    with pytest.raises(ConfigError, match="the file was not changed"):
        set_field(path, "flash", "max_concurrency", 0)
    one = '[[backend]]\nid = "a"\nmodel = "m"\ngood_at = ["x"]\ncost = 1\n'
    path.write_text(one)
    with pytest.raises(ConfigError, match=r"no \[\[backend\]\] entries"):
        remove_backend(path, "a")
    assert path.read_text() == one


def test_shapes_it_cannot_edit_safely_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    sub = '[[backend]]\nid = "a"\nmodel = "m"\ngood_at = ["x"]\ncost = 1\n[backend.price]\n' \
          "input = 1.0\noutput = 2.0\n"  # fmt: skip
    path.write_text(sub)
    with pytest.raises(ConfigError, match="edit the file by hand"):
        set_field(path, "a", "price", {"input": 3.0, "output": 4.0})
    set_field(path, "a", "cost", 2)  # other fields of that entry are fine
    assert path.read_text() == sub.replace("cost = 1", "cost = 2")
    inline = 'backend = [{ id = "a", model = "m", good_at = ["x"], cost = 1 }]\n'
    path.write_text(inline)
    with pytest.raises(ConfigError, match="edit the file by hand"):
        set_field(path, "a", "cost", 2)
    assert path.read_text() == inline


def test_no_op_edit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    result = set_field(path, "local", "enabled", True)  # absent means enabled
    assert not result.changed
    result = set_field(path, "flash", "cost", 3)
    assert not result.changed and not (tmp_path / "roster.toml.bak").exists()


def test_permissions_backup_and_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "roster.toml"
    real.parent.mkdir()
    real.write_text(CURATED)
    real.chmod(0o640)
    link = tmp_path / "roster.toml"
    link.symlink_to(real)
    set_field(link, "flash", "cost", 2)
    assert link.is_symlink() and "cost = 2\n" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    bak = real.with_name("roster.toml.bak")
    assert bak.read_text() == CURATED and stat.S_IMODE(bak.stat().st_mode) == 0o640
    assert [p.name for p in real.parent.iterdir() if p.name.endswith(".tmp")] == []


VALUES: list[tuple[str, str, object]] = [
    ("cost", "5", 5), ("cost", "0.5", 0.5), ("enabled", "yes", True), ("enabled", "False", False),
    ("can_orchestrate", "on", True), ("good_at", " code, review ,", ["code", "review"]),
    ("price", "3,15", {"input": 3.0, "output": 15.0}), ("max_concurrency", "8", 8),
    ("api_base", "", None), ("price", "", None), ("model", " openai/x ", "openai/x"),
    ("price", "3,15,0.3", {"input": 3.0, "output": 15.0, "cached_input": 0.3}),
    ("price", "3,15,0.3,3.75",
     {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}),
    ("price.cached_input", "0.3", 0.3), ("price.cache_write", "4", 4.0),
    ("price.cached_input", "", None), ("price.cache_write", " ", None),
]  # fmt: skip


@pytest.mark.parametrize(("field", "raw", "expected"), VALUES)
def test_parse_value(field: str, raw: str, expected: object) -> None:
    assert parse_value(field, raw) == expected


BAD_VALUES = [
    ("cost", "cheap"), ("cost", "inf"), ("enabled", "maybe"), ("price", "3"), ("price", "a,b"),
    ("max_concurrency", "2.5"), ("good_at", " , "), ("model", ""), ("colour", "red"),
    ("transport", "http"), ("price", "3,15,0.3,3.75,1"), ("price.cached_input", "cheap"),
    ("price.cache_write", "1,2"), ("price.cached_input", "nan"), ("price.input", "3"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "raw"), BAD_VALUES)
def test_parse_value_refuses(field: str, raw: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_value(field, raw)
    assert info.value.exit_code == 2 and info.value.fix


def test_every_backend_field_is_settable() -> None:
    from dataclasses import MISSING, fields

    from tanglebrain.roster._schema import Price

    cache_prices = {f"price.{f.name}" for f in fields(Price) if f.default is not MISSING}
    assert cache_prices == {"price.cached_input", "price.cache_write"}
    assert set(FIELDS) == {f.name for f in fields(Backend)} | cache_prices
    assert set(FIELDS) >= OPTIONAL_FIELDS >= cache_prices


def test_cache_prices_are_set_and_removed_one_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED.replace("output = 2.5 }", "output = 2.5 }  # list price"))
    set_field(path, "flash", "price.cache_write", 0.4)
    set_field(path, "flash", "price.cached_input", 0.03)
    price = load_file(path).get("flash").price  # type: ignore[union-attr]
    assert price is not None and (price.cached_input, price.cache_write) == (0.03, 0.4)
    set_field(path, "flash", "price.cache_write", None)
    assert "price = { input = 0.3, output = 2.5, cached_input = 0.03 }  # list price\n" in (
        path.read_text()
    )
    assert not set_field(path, "flash", "price.cache_write", None).changed  # already absent
    assert not set_field(path, "flash", "price.cached_input", 0.03).changed  # already so


def test_a_cache_price_needs_a_price_and_a_sane_number(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    with pytest.raises(UsageError) as info:
        set_field(path, "claude", "price.cached_input", 0.3)
    assert "has no price" in info.value.problem and "price IN,OUT" in (info.value.fix or "")
    assert not set_field(path, "claude", "price.cached_input", None).changed
    with pytest.raises(ConfigError, match=r"greater than or equal to 0.*the file was not changed"):
        set_field(path, "flash", "price.cache_write", -1.0)
    assert path.read_text() == CURATED


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(min_size=1, max_size=40))
def test_any_model_string_round_trips_or_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(CURATED)
    try:
        set_field(path, "flash", "model", value)
    except ConfigError:
        assert path.read_text() == CURATED
        return
    backend = load_file(path).get("flash")
    assert backend is not None and backend.model == value
    removed, added = changes(CURATED, path.read_text())
    assert removed == ['model = "gemini/gemini-2.5-flash"'] and len(added) == 1


def test_editable_path_refuses_the_packaged_default(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    with pytest.raises(ConfigError, match="tanglebrain init"):
        editable_path(None, env, tmp_path)
    with pytest.raises(ConfigError, match="tanglebrain init"):
        editable_path(packaged_path(), env, tmp_path)  # also when named explicitly
    (tmp_path / "roster.toml").write_text(CURATED)
    assert editable_path(None, env, tmp_path) == tmp_path / "roster.toml"


def test_write_starter(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "roster.toml"
    assert write_starter(dest, force=False) is None
    assert dest.read_bytes() == packaged_path().read_bytes()
    dest.write_text(CURATED)
    with pytest.raises(ConfigError, match="--force"):
        write_starter(dest, force=False)
    assert dest.read_text() == CURATED
    backup = write_starter(dest, force=True)
    assert backup is not None and backup.read_text() == CURATED
    assert dest.read_bytes() == packaged_path().read_bytes()
    with pytest.raises(ConfigError, match="directory"):
        write_starter(tmp_path, force=True)


def special_files(tmp_path: Path) -> list[Path]:
    """A named pipe, and a character device where this user may make one (root)."""
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    paths = [fifo]
    try:
        os.mknod(tmp_path / "null.toml", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        paths.append(tmp_path / "null.toml")
    except (PermissionError, AttributeError):
        pass
    return paths


def test_a_roster_is_never_written_over_a_device_or_a_pipe(tmp_path: Path) -> None:
    # Replacing /dev/null with a file would break the machine; reading a pipe for the
    # backup would block forever.
    for path in special_files(tmp_path):
        before = path.lstat()
        with pytest.raises(ConfigError, match="not a regular file"):
            write_starter(path, force=True)
        with pytest.raises(ConfigError, match="not a regular file"):
            set_field(path, "local", "cost", 3)
        after = path.lstat()
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
        assert not path.with_name(path.name + ".lock").exists()
        assert not path.with_name(path.name + ".bak").exists()
    for args in (["init", "--force", "pipe.toml"], ["--roster", "pipe.toml", "backends"]):
        out = run_cli(args, tmp_path)
        assert out.code == 2 and "not a regular file" in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xef\xbb\xbf" + CURATED.encode(), None),  # a BOM, as Windows editors save
        (b"\x00\xffbinary", "not UTF-8 text (byte 0xff at offset 1) (save the roster as UTF-8"),
    ],
)
def test_roster_bytes(tmp_path: Path, content: bytes, fragment: str | None) -> None:
    path = tmp_path / "roster.toml"
    path.write_bytes(content)
    out = run_cli(["--roster", str(path), "backends", "--json"], tmp_path)
    if fragment is None:
        assert out.code == 0 and '"local"' in out.stdout
        set_field(path, "local", "cost", 3)  # editable too; the BOM is dropped
        assert path.read_text(encoding="utf-8").startswith("# My roster.")
    else:
        assert out.code == 2 and fragment in out.stderr


def test_a_roster_path_that_is_a_directory_says_which_file_to_give(tmp_path: Path) -> None:
    out = run_cli(["--roster", str(tmp_path), "backends"], tmp_path)
    assert out.code == 2
    assert f"roster path is a directory (give the file's path, e.g. {tmp_path}/roster.toml)" in (
        out.stderr
    )
