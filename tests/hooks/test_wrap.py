"""``tanglebrain wrap`` against bare ``bash -c``: status, bytes, digests, raw outputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tanglebrain.compress import decode
from tanglebrain.hooks._entry import parse_wrap
from tanglebrain.hooks._wrap import budget_for, render
from tests.helpers import ROOT, WAIT, cli_env

CORPUS = ROOT / "tests" / "corpus"
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.log"))
BASH = "/bin/bash"

# Real-world command lines; each must behave exactly as under bare ``bash -c``.
CATALOGUE = [
    "echo hello",
    "printf 'a\\nb\\n'",
    "echo out; echo err >&2; echo out2",
    "exit 3",
    "false",
    "true && echo yes",
    "false || echo fallback",
    "echo abc | tr a b",
    "seq 1 50 | sort -rn | head -3",
    "FOO=bar sh -c 'echo $FOO'",
    "FOO=1 BAR=2 env | grep -E '^(FOO|BAR)=' | sort",
    "mkdir -p sub/dir && cd sub/dir && pwd | sed 's#.*/sub/#sub/#'",
    "(cd / && pwd); pwd | wc -c",
    "{ echo a; echo b; } | wc -l",
    "cat <<EOF\nline 1\n$((1 + 2))\nEOF",
    "cat <<'EOF'\n$HOME stays literal\nEOF",
    "cat <<-EOF\n\tindented\n\tEOF",
    "tr a-z A-Z <<< 'shout'",
    "echo saved > f.txt && cat f.txt",
    "echo 1 >> g; echo 2 >> g; wc -l < g",
    "ls does-not-exist",
    "cd /nonexistent-dir-for-wrap",
    'echo "it\'s \\"quoted\\""',
    "echo $((6 * 7))",
    "for i in 1 2 3; do echo item $i; done",
    "if [ -d / ]; then echo dir; else echo none; fi",
    "case x in x) echo matched;; *) echo other;; esac",
    'echo "$(echo inner)"',
    "echo `echo tick`",
    "cat <(echo procsub)",
    "(exit 7)",
    "set -o pipefail; false | true",
    "set -e; echo before; false; echo after",
    "kill -TERM $$",
    "kill -KILL $$",
    "(sh -c 'kill -KILL $$'; echo child status $?) 2>/dev/null",
    "printf '\\x00\\x01\\x02\\xff\\xfe'",
    "head -c 3000 /dev/zero | tr '\\0' x",
    "python3 -c \"import sys; sys.stdout.write('x' * 10); sys.stderr.write('e')\"",
    "echo only-err >&2; exit 5",
    "printf 'h\\xc3\\xa9llo \\xe2\\x9c\\x93\\n'",
    "printf 'no trailing newline'",
    ":",
    "command -v sh >/dev/null && echo found",
    "trap 'echo trapped' EXIT; echo body",
    "exec echo replaced",
    "echo one \\\n  two",
    "a=(x y z); echo ${#a[@]} ${a[1]}",
    "exit 255",
    "echo start; sleep 0 & wait; echo end",
    'for i in $(seq 1 2000); do echo "line $i of a long listing"; done',
    "seq 1 30000; kill -KILL $$",
    'python3 -c "import sys; sys.stdout.buffer.write(bytes(range(256)) * 400)"',
]


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def bare(command: str, cwd: Path) -> tuple[bytes, int]:
    proc = subprocess.run(
        [BASH, "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=cli_env(cwd, SHELL=BASH),
        timeout=WAIT,
    )
    return proc.stdout, _status(proc.returncode)


def wrapped(args: list[str], cwd: Path, **env: str) -> tuple[bytes, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "tanglebrain", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=cli_env(cwd.parent, SHELL=BASH, **env),
        timeout=WAIT,
    )
    assert proc.stderr == b"", proc.stderr
    return proc.stdout, proc.returncode


def _workdirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "bare" / "w", tmp_path / "wrap" / "w"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    return a, b


@pytest.mark.parametrize("command", CATALOGUE)
def test_wrap_behaves_like_bare_bash(command: str, tmp_path: Path) -> None:
    a, b = _workdirs(tmp_path)
    raw, code = bare(command, a)
    out, status = wrapped(["wrap", "--", command], b)
    assert status == code
    expected, raw_id = render(raw, code, 6000)
    assert out == expected
    if len(raw) <= 6000:
        assert out == raw
    elif raw_id is not None:
        assert out.decode().splitlines()[-1].endswith(f"tanglebrain raw {raw_id} …]")
        kept, _ = wrapped(["raw", raw_id], b)
        assert kept == raw


def test_catalogue_is_large_and_varied() -> None:
    assert len(CATALOGUE) >= 40
    for construct in ("&&", "|", ">", "<<", "$(", "(", "kill", "exit", "\\x00"):
        assert any(construct in c for c in CATALOGUE), construct


def test_signal_and_binary_cases_give_shell_statuses(tmp_path: Path) -> None:
    a, b = _workdirs(tmp_path)
    cases = {"kill -TERM $$": 143, "kill -KILL $$": 137, "seq 1 30000; kill -KILL $$": 137}
    for command, status in cases.items():
        assert bare(command, a)[1] == status
        assert wrapped(["wrap", "--", command], b)[1] == status
    out, _ = wrapped(["wrap", "--", CATALOGUE[-1]], b)
    first, last = out.decode().splitlines()
    assert first == "[… binary data, 102,400 bytes: binary, not shown …]"
    assert "tanglebrain raw" in last


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["--", "make -j4"], ("make -j4", "cli", None)),
        (["make", "-j4"], ("make -j4", "cli", None)),
        (["--", "grep", "a b", "f"], ("grep 'a b' f", "cli", None)),
        (["--agent", "claude", "--threshold=10", "--", "x"], ("x", "claude", 10)),
        (["--agent=codex", "--", "--weird"], ("--weird", "codex", None)),
    ],
)
def test_parse_wrap(argv: list[str], parsed: tuple[str, str, int | None]) -> None:
    assert parse_wrap(argv) == parsed


@pytest.mark.parametrize("argv", [[], ["--"], ["--threshold", "x", "--", "y"], ["--nope", "y"]])
def test_bad_wrap_lines_are_usage_errors(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tanglebrain", "wrap", *argv],
        capture_output=True,
        cwd=tmp_path,
        env=cli_env(tmp_path),
        timeout=WAIT,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("tanglebrain: error: ")
    assert proc.stderr.decode().count("\n") == 1


# --- the corpus ----------------------------------------------------------------------


@cache
def _extract_keys() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_extract_keys", CORPUS / "extract_keys.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(name: str) -> dict[str, Any]:
    key: dict[str, Any] = json.loads((CORPUS / "keys" / f"{name}.json").read_text("utf-8"))
    return key


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_log_through_wrap_keeps_every_fidelity_key(name: str, tmp_path: Path) -> None:
    command = f"cat {CORPUS / name}; exit 4"
    out, status = wrapped(["wrap", "--", command], tmp_path)
    raw = (CORPUS / name).read_bytes()
    assert status == 4
    assert out == render(raw, 4, 6000)[0]  # deterministic: a pure function of the output
    if len(out) < len(raw):
        report = _extract_keys().verify(_key(name), decode(out), None, False)
        assert report["ok"], report["missing"]
    else:
        assert out == raw  # a digest that would not be smaller is never printed


@pytest.mark.parametrize("name", [n for n in CORPUS_FILES if "gha" in n])
def test_agent_budget_keeps_github_actions_groundtruth(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    out, raw_id = render(raw, 1, 6000, budget_for("claude", len(raw), 1))
    assert raw_id and len(out) <= 8000
    ek = _extract_keys()
    haystack = "\n".join(ek.squash(line) for line in ek.clean_lines(out.decode()))
    truth = _key(name)["must_keep"]["groundtruth_lines"]
    assert [line for line in truth if line not in haystack] == []


@pytest.mark.parametrize(
    ("agent", "size", "status", "budget"),
    [
        ("claude", 50_000, 1, 8000),
        ("claude", 20_000, 0, 8000),
        ("claude", 50_000, 0, 2000),
        ("codex", 50_000, 0, 8000),
        ("gemini", 50_000, 0, 8000),
        ("cli", 50_000, 0, None),
    ],
)
def test_budget_per_agent(agent: str, size: int, status: int, budget: int | None) -> None:
    assert budget_for(agent, size, status) == budget


def test_threshold_and_agent_from_the_command_line(tmp_path: Path) -> None:
    command = "seq 1 3000"
    raw, _ = bare(command, tmp_path)
    out, _ = wrapped(["wrap", "--threshold", "100000", "--", command], tmp_path)
    assert out == raw
    out, _ = wrapped(["wrap", "--agent", "claude", "--", command], tmp_path)
    assert out == render(raw, 0, 6000, 8000)[0] != raw


def test_roster_threshold_applies(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text("[hooks]\nthreshold = 10\n")
    out, _ = wrapped(["wrap", "--", "seq 1 5000"], tmp_path)
    assert b"tanglebrain raw" in out


def test_unknown_raw_id_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tanglebrain", "raw", "abcdef123456"],
        capture_output=True,
        cwd=tmp_path,
        env=cli_env(tmp_path),
        timeout=WAIT,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("tanglebrain: error: no raw output")
