"""Tests for tanglebrain.compress: deterministic compression of bulky text.

Corpus tests run on the fidelity corpus in ``tests/corpus`` (real third-party logs, with their
sources and licenses) and its own key extractor, ``tests/corpus/extract_keys.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tanglebrain.compress import (
    Digest,
    binary_kind,
    binary_note,
    budgeted,
    decode,
    digest,
    faithful,
)
from tanglebrain.compress._fields import describe
from tanglebrain.compress._masks import COUNTER_MIN, fold_keys, kinds, template, volatile_masked
from tanglebrain.compress._render import narrow, render
from tanglebrain.compress._runs import is_note
from tanglebrain.compress._select import HEAD, TAIL
from tanglebrain.runtime import Attachment
from tests.helpers import run_cli

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def _load_extract_keys() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_extract_keys", CORPUS / "extract_keys.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_generator() -> ModuleType:
    path = CORPUS / "generate_service_logs.py"
    spec = importlib.util.spec_from_file_location("corpus_generate_service_logs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EK = _load_extract_keys()
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.log"))
GHA_FILES = [n for n in CORPUS_FILES if n.startswith("cidiff_gha_")]
SYNTHETIC_FILES = [n for n in CORPUS_FILES if n.startswith("synthetic_")]


def test_the_corpus_is_complete() -> None:
    # A partial checkout must fail loudly, not shrink the parametrized tests below.
    assert len(CORPUS_FILES) == 19 and len(GHA_FILES) == 2 and len(SYNTHETIC_FILES) == 2
    assert all((CORPUS / "keys" / f"{name}.json").is_file() for name in CORPUS_FILES)


def test_synthetic_logs_are_what_their_generator_writes(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    assert _load_generator().main(["generate", str(tmp_path)]) == 0
    for name in SYNTHETIC_FILES:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name
        stem = name.removesuffix(".log")
        fields = (tmp_path / "keys" / f"{stem}.fields").read_text()
        assert fields == (CORPUS / "keys" / f"{stem}.fields").read_text()
    # The key is what the extractor builds from the log (the smaller one: ~5x faster).
    stem = "synthetic_service_json"
    key = EK.build_key(str(CORPUS / f"{stem}.log"), None, str(CORPUS / "keys" / f"{stem}.fields"))
    assert key == _key(f"{stem}.log")


def test_service_log_key_checks_the_incident() -> None:
    # what the issue reported: 4,018 failures, the first of them, the slowest request
    must = _key("synthetic_service_kv.log")["must_keep"]
    assert {"field": "status", "value": "500", "count": 4018, "first_line": 8001} in must[
        "field_counts"
    ]
    assert {"field": "latency_ms", "max": "9874", "line": 13577} in must["field_maxima"]
    folded = "INFO request method=GET path=/api/v1/users status=200 latency_ms=583 [×20,000]"
    assert EK.verify(_key("synthetic_service_kv.log"), folded, None, False)["missing_counts"] == {
        "field_counts": 11,
        "field_maxima": 2,
    }


@cache
def _text(name: str) -> str:
    return decode((CORPUS / name).read_bytes())


@cache
def _key(name: str) -> dict[str, Any]:
    key: dict[str, Any] = json.loads((CORPUS / "keys" / f"{name}.json").read_text("utf-8"))
    return key


@cache
def _faithful(name: str) -> str:
    return faithful(_text(name))


def _squashed(text: str) -> str:
    return "\n".join(EK.squash(line) for line in EK.clean_lines(text))


def _key_for(text: str) -> dict[str, Any]:
    """A fidelity key for arbitrary text, built by the corpus tool itself."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.log"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        key: dict[str, Any] = EK.build_key(str(path))
    return key


def _groundtruth_lines(raw: str, spec: str) -> list[str]:
    """Parse a CiDiff ``.groundtruth`` file: mode line, then ``E a-b`` / ``C n`` rows.

    Line numbers are 1-based as Java's ``BufferedReader.readLine()`` counts them (``\\r``,
    ``\\n`` and ``\\r\\n`` all end a line). Only ``E`` rows (error lines) are returned, squashed,
    without lines that carry fewer than three letters or digits besides a level tag.
    """
    rows = [r.split() for r in spec.splitlines()[1:] if r.strip()]
    lines = re.split(r"\r\n|\r|\n", raw)
    out: list[str] = []
    for kind, span in rows:
        first, _, last = span.partition("-")
        for n in range(int(first), int(last or first) + 1):
            text = EK.squash(EK.strip_ansi(lines[n - 1]))
            core = re.sub(r"^\[(?:ERROR|INFO|WARNING|WARN|DEBUG)\]\s*", "", text)
            if kind == "E" and len(re.findall(r"[A-Za-z0-9]", core)) >= 3:
                out.append(text)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# Corpus: fidelity, budgets, ground truth, idempotence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_faithful_digest_verifies_against_fidelity_key(name: str) -> None:
    report = EK.verify(_key(name), _faithful(name), None, False)
    assert report["ok"], report["missing"]
    assert len(_faithful(name).encode()) < len(_text(name).encode())


@pytest.mark.parametrize("name", CORPUS_FILES)
@pytest.mark.parametrize("budget", [0, 9, 100, 6000])
def test_budgeted_digest_of_corpus_file_never_exceeds_budget(name: str, budget: int) -> None:
    out = budgeted(_text(name), budget)
    assert len(out.encode()) <= budget
    if budget >= 6000:
        assert "attachment" in out or out == _faithful(name)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_faithful_is_idempotent_on_corpus(name: str) -> None:
    assert faithful(_faithful(name)) == _faithful(name)


@pytest.mark.parametrize("name", [n for n in CORPUS_FILES if "cidiff" in n])
def test_groundtruth_parser_agrees_with_key(name: str) -> None:
    spec = (CORPUS / "keys" / name.replace(".log", ".groundtruth")).read_text("utf-8")
    mine = _groundtruth_lines(_text(name), spec)
    assert mine
    assert mine == _key(name)["must_keep"]["groundtruth_lines"]


@pytest.mark.parametrize("name", GHA_FILES)
def test_budgeted_6000_keeps_every_groundtruth_line_of_github_actions_logs(name: str) -> None:
    truth = _key(name)["must_keep"]["groundtruth_lines"]
    out = budgeted(_text(name), 6000)
    assert truth and len(out.encode()) <= 6000
    haystack = _squashed(out)
    assert [line for line in truth if line not in haystack] == []


# --------------------------------------------------------------------------------------------
# Rules, one table each
# --------------------------------------------------------------------------------------------

ESC = "\x1b"


def _noisy(lines: list[str], noise: int = 40) -> str:
    out: list[str] = []
    for k, line in enumerate(lines):
        out.extend(f"[INFO] compiling unit {k * noise + i} of the project" for i in range(noise))
        out.append(line)
    out.extend(f"[INFO] compiling unit {i} of the tail" for i in range(noise))
    return "\n".join(out)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"{ESC}[31mred{ESC}[0m and {ESC}[1;32mbold green{ESC}[m", "red and bold green"),
        (f"{ESC}]0;window title\x07after title", "after title"),
        (f"{ESC}]8;;https://example.com{ESC}\\link{ESC}]8;;{ESC}\\ text", "link text"),
        (f"{ESC}_bk;t=1706575117741\x07Starting the run", "Starting the run"),
        (f"{ESC}P1$r0m{ESC}\\dcs gone", "dcs gone"),
        (f"{ESC}(Bcharset{ESC})0 ok", "charset ok"),
        (f"{ESC}[?25lhidden cursor{ESC}[?25h", "hidden cursor"),
        ("bell\x07 and\x00 nul\x7f", "bell and nul"),
        ("\x9b31mc1 csi", "c1 csi"),
    ],
)
def test_terminal_sequences_are_stripped(raw: str, expected: str) -> None:
    assert faithful(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Downloading 10%\rDownloading 50%\rDownloading 100%\n", ["Downloading 100%"]),
        ("step one\r\nstep two\r\n", ["step one", "step two"]),
        ("keep me\r   \n", ["keep me"]),
        (f"Counting 1%{ESC}[K\rCounting 2%{ESC}[K\rCounting done{ESC}[K\r\r\n", ["Counting done"]),
        ("progress 3/9\rerror: disk full\rprogress 9/9\n", ["error: disk full", "progress 9/9"]),
    ],
)
def test_carriage_return_rewrites_resolve_to_final_text(raw: str, expected: list[str]) -> None:
    assert render(raw).lines == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            f"a: waiting\nb: waiting\n{ESC}[2A{ESC}[2Ka: done\n{ESC}[2Kb: done\n",
            ["a: done", "b: done"],
        ),
        (  # docker push style: newline first, then up one row, rewrite, back down
            f"push\n\n{ESC}[1A{ESC}[2K\rl1: Preparing \r{ESC}[1B\n"
            f"{ESC}[1A{ESC}[2K\rl2: Preparing \r{ESC}[1B"
            f"{ESC}[2A{ESC}[2K\rl1: Pushed \r{ESC}[2B"
            f"{ESC}[1A{ESC}[2K\rl2: Pushed \r{ESC}[1B\n",
            ["push", "l1: Pushed", "l2: Pushed"],
        ),
        (  # playwright style: up, erase, column 0, rewrite, next line
            f"  1 test a\n{ESC}[1A{ESC}[2K{ESC}[0G  ok 1 test a{ESC}[1E  2 test b\n",
            ["  ok 1 test a", "  2 test b"],
        ),
        (f"[+] 0/2\n x\n y\n{ESC}[3A[+] 2/2\n{ESC}[J", ["[+] 2/2"]),
    ],
)
def test_cursor_up_redraws_resolve_to_final_screen(raw: str, expected: list[str]) -> None:
    assert render(raw).lines == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (  # timestamps, counters and IPs differ
            [f"2024-01-02 10:00:0{i} worker {i} heartbeat ok from 10.0.0.{i}" for i in range(6)],
            ["2024-01-02 10:00:00 worker 0 heartbeat ok from 10.0.0.0 [×6]"],
        ),
        (  # hashes (also ones starting with a letter) and sizes differ
            ["pulling layer a1b2c3d4e5 12.0 MB", "pulling layer 0f9e8d7c6b 12.1 MB"],
            ["pulling layer a1b2c3d4e5 12.0 MB [×2]"],
        ),
        (  # error lines: only truly volatile parts (time, duration, hex id) may differ
            [
                "ERROR 10:00:01 request timed out after 15 ms (id ab12cd34ef)",
                "ERROR 10:00:02 request timed out after 25 ms (id ff00ee11dd)",
            ],
            ["ERROR 10:00:01 request timed out after 15 ms (id ab12cd34ef) [×2]"],
        ),
        (  # ... small numbers in errors carry meaning and are kept apart
            ["error: expected 2 arguments, got 3", "error: expected 2 arguments, got 4"],
            ["error: expected 2 arguments, got 3", "error: expected 2 arguments, got 4"],
        ),
        (  # lines with different locations never merge
            ["  --> src/a.rs:1:5", "  --> src/a.rs:2:5"],
            ["  --> src/a.rs:1:5", "  --> src/a.rs:2:5"],
        ),
    ],
)
def test_runs_of_lines_differing_in_volatile_parts_collapse(
    lines: list[str], expected: list[str]
) -> None:
    assert faithful("start\n" + "\n".join(lines) + "\nend\n").split("\n") == [
        "start",
        *expected,
        "end",
    ]


@pytest.mark.parametrize(
    ("lines", "shown", "hidden"),
    [
        (
            ["error: no connection to db", "error: no connection to db", "error: no connection"],
            ["error: no connection to db (×2)", "error: no connection"],
            [],
        ),
        (
            [
                "ERROR 2024-05-01 12:00:01 upstream reset",
                "ERROR 2024-05-01 12:07:44 upstream reset",
            ],
            ["ERROR 2024-05-01 12:00:01 upstream reset (×2)"],
            ["ERROR 2024-05-01 12:07:44 upstream reset"],
        ),
        (
            [
                "warning: unused import os",
                "warning: unused import sys",
                "warning: unused import os",
            ],
            ["warning: unused import os (×2)", "warning: unused import sys"],
            [],
        ),
        (
            ["test result: ok. 3 passed; 0 failed", "test result: ok. 3 passed; 0 failed"],
            ["test result: ok. 3 passed; 0 failed (×2)"],
            [],
        ),
        (  # a line that names a new fact is never folded away
            ["error: bad value in cfg/a.toml", "error: bad value in cfg/b.toml"],
            ["error: bad value in cfg/a.toml", "error: bad value in cfg/b.toml"],
            [],
        ),
    ],
)
def test_recurring_lines_are_grouped_with_counts(
    lines: list[str], shown: list[str], hidden: list[str]
) -> None:
    out = faithful(_noisy(lines)).split("\n")
    for line in shown:
        assert out.count(line) == 1, out
    for line in hidden:
        assert line not in out


@pytest.mark.parametrize(
    "line",
    [
        "error[E0308]: mismatched types",
        "FATAL: out of memory",
        "thread 'main' panicked at 'boom', src/main.rs:10:5",
        "Traceback (most recent call last):",
        "java.lang.IllegalStateException: bad state",
        "npm ERR! code ERESOLVE",
        "Segmentation fault (core dumped)",
        "make: *** [Makefile:12: all] Error 2",
        "warning: variable 'x' set but not used [-Wunused-but-set-variable]",
        "FAILED tests/test_x.py::test_y - AssertionError: assert 1 == 2",
        "E       assert 1 == 2",
        "##[error]Process completed with exit code 2.",
    ],
)
def test_error_and_warning_lines_survive_among_noise(line: str) -> None:
    assert line in faithful(_noisy([line])).split("\n")


@pytest.mark.parametrize(
    ("line", "fact"),
    [
        ("  --> src/lib/parser.rs:120:9", "src/lib/parser.rs:120:9"),
        ("src/app.ts(14,7): something odd", "src/app.ts(14,7)"),
        ('  File "/srv/app/handlers.py", line 88, in handle', "/srv/app/handlers.py"),
        ("\tat com.acme.Foo.bar(Foo.java:42)", "Foo.java:42"),
        ("loading config from ./conf/settings.yaml", "./conf/settings.yaml"),
        ("[WARNING] /w/x/Y.java:[19,15] Unsafe is internal API", "/w/x/Y.java:[19,15]"),
        ("see C:\\build\\src\\Widget.cs(3,1)", "C:\\build\\src\\Widget.cs(3,1)"),
    ],
)
def test_paths_and_locations_survive_among_noise(line: str, fact: str) -> None:
    out = faithful(_noisy([line]))
    assert fact in out
    assert line.strip() in [x.strip() for x in out.split("\n")]


@pytest.mark.parametrize(
    ("body", "note", "kinds_listed"),
    [
        (
            [f"[INFO] compiling unit {i}" for i in range(100)],
            "[… 100 similar lines elided …]",
            ["[… 100 elided lines like: [INFO] compiling unit 0 …]"],
        ),
        (
            [f"{w} item {i}" for i in range(50) for w in ("fetch", "store", "index")],
            "[… 150 lines of 3 kinds elided …]",
            [f"[… 50 elided lines like: {w} item 0 …]" for w in ("fetch", "store", "index")],
        ),
        ([f"step {w} of the long procedure" for w in "abcde"], "[… 5 lines …]", []),
        (["one lone line that is rather long"], "[… 1 line …]", []),
    ],
)
def test_elided_lines_are_announced(body: list[str], note: str, kinds_listed: list[str]) -> None:
    head = [f"head line {c}" for c in "ABCDEFGHIJ"[:HEAD]]
    tail = [f"tail line {c}" for c in "ABCDEFGHIJ"[:TAIL]]
    out = faithful("\n".join([*head, *body, *tail])).split("\n")
    assert out == [*head, note, *tail, *kinds_listed]


def test_a_short_lone_line_is_shown_rather_than_announced() -> None:
    head = [f"head line {c}" for c in "ABCDEFGHIJ"[:HEAD]]
    tail = [f"tail line {c}" for c in "ABCDEFGHIJ"[:TAIL]]
    assert faithful("\n".join([*head, "short", *tail])).split("\n") == [*head, "short", *tail]


@pytest.mark.parametrize(
    "noise",
    [
        [f"{'⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'[i % 10]} resolving dependencies" for i in range(12)],
        [f"Progress ({i}): {i}.2/9.8 kB" for i in range(12)],
        [f"Downloading [{'=' * i}>{' ' * (9 - i)}] {i * 10}%" for i in range(10)],
        [f"{i}% done, {i * 3}.1 MB/s" for i in range(0, 100, 7)],
    ],
)
def test_progress_and_spinner_noise_is_dropped(noise: list[str]) -> None:
    out = faithful("\n".join([*noise, "real work starts", "error: it broke", *noise]))
    body = [x for x in out.split("\n") if not x.startswith("[… ")]
    assert body == ["real work starts", "error: it broke"]


def test_summary_exit_code_head_and_tail_are_kept() -> None:
    lines = [f"setup {w}" for w in ("alpha", "beta", "gamma")]
    lines += [f"noise {i}" for i in range(30)]
    lines += [f"[INFO] Tests run: {i}, Failures: 0, Errors: 0, Skipped: 0" for i in (3, 9)]
    lines += [f"noise {i}" for i in range(30)] + ["BUILD FAILED in 3s", "exited with code 2"]
    lines += [f"more noise {i}" for i in range(30)] + ["cleanup done"]
    out = faithful("\n".join(lines)).split("\n")
    for line in (
        "setup alpha",
        "setup gamma",
        "[INFO] Tests run: 3, Failures: 0, Errors: 0, Skipped: 0",
        "[INFO] Tests run: 9, Failures: 0, Errors: 0, Skipped: 0",
        "BUILD FAILED in 3s",
        "exited with code 2",
        "cleanup done",
    ):
        assert line in out


def test_github_actions_timestamps_are_removed_and_reported() -> None:
    raw = "2022-03-15T21:05:06.9563672Z first\n2022-03-15T21:06:52.1029145Z error: last\n"
    assert faithful(raw).split("\n") == [
        "[… GitHub Actions timestamps removed: 2022-03-15T21:05:06.9563672Z to "
        "2022-03-15T21:06:52.1029145Z …]",
        "first",
        "error: last",
    ]


def test_long_lines_lose_their_middle_but_name_its_facts() -> None:
    line = "cc " + " ".join(f"-Ipath{i}" for i in range(400)) + " src/main.c -o main"
    line = line[:900] + " lib/util.c " + line[900:]
    out = faithful(line)
    assert "chars elided; it named: lib/util.c" in out
    assert out.endswith("src/main.c -o main")
    assert len(out) < len(line) // 2


def test_digest_reports_sizes_and_counts() -> None:
    text = "\n".join([f"line {i}" for i in range(100)] + ["error: boom"]) + "\n"
    d = digest(text)
    assert isinstance(d, Digest)
    assert (d.bytes_in, d.lines_in, d.budget) == (len(text.encode()), 101, None)
    assert d.bytes_out == len(d.text.encode()) and d.text == faithful(text)
    assert 0 < d.lines_kept < 101
    b = digest(text, 120)
    assert b.budget == 120 and b.bytes_out <= 120 and b.text == budgeted(text, 120)


@pytest.mark.parametrize("budget", [-5, 0, 1, 2, 3, 10, 31, 64, 100, 250, 1000])
def test_budgeted_respects_tiny_budgets(budget: int) -> None:
    text = _noisy([f"error: failure number {i} in module_{i}.py:{i}" for i in range(30)])
    out = budgeted(text, budget)
    assert len(out.encode()) <= max(budget, 0)
    if budget >= 1000:
        assert "error: failure number" in out and "attachment" in out


def test_budgeted_puts_errors_before_warnings_and_noise() -> None:
    text = _noisy(
        [f"warning: deprecated call {i}" for i in range(20)]
        + ["error: the one real failure"]
        + [f"warning: deprecated call {i}" for i in range(20, 40)]
    )
    out = budgeted(text, 400)
    assert "error: the one real failure" in out
    assert len(out.encode()) <= 400


def test_empty_and_blank_input() -> None:
    assert faithful("") == ""
    assert faithful("\n\n\n") == ""
    assert budgeted("", 10) == ""
    assert digest("").lines_in == 0


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=3000))
def test_arbitrary_bytes_never_crash_and_respect_budget(data: bytes, budget: int) -> None:
    text = decode(data)
    assert isinstance(faithful(text), str)
    assert len(budgeted(text, budget).encode()) <= budget


# fmt: off
TERMINALISH = st.lists(
    st.sampled_from(
        ["\n", "\r", "\r\n", "\t", " ", "ok", "error", "warn", "a/b.c:1:2", "x" * 30, "42", "é",
         "\x1b[", "\x1b]0;t\x07", "\x1b_bk;t=1\x07", "\x1b[2K", "\x1b[1A", "\x1b[3B", "\x1b[J",
         "\x1b[s", "\x1b[u", "\x1b[99999C", "\x1b[5G", "\x1b[31m", "\x1b", "\x9b2K", "\x00",
         "\ud800", "100%", "Tests run: 1, Failures: 0, Errors: 0"]
    ),
    max_size=80,
).map("".join)
# fmt: on


@FAST
@given(TERMINALISH, st.integers(min_value=0, max_value=500))
def test_terminal_soup_never_crashes_and_respects_budget(text: str, budget: int) -> None:
    out = faithful(text)
    assert "\x1b" not in out and "\r" not in out
    assert len(budgeted(text, budget).encode()) <= budget


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\xfa", b"ok \xc3\x28 bad", b"\xe2\x82", b"\xed\xa0\x80 surrogate", b"\x80" * 100],
)
def test_invalid_utf8_is_replaced_not_raised(data: bytes) -> None:
    text = decode(data)
    assert "\ufffd" in text
    assert faithful(text)
    assert len(budgeted(text, 20).encode()) <= 20


def test_single_five_megabyte_line() -> None:
    words = ("alpha", "beta0x1f", "gamma", "delta-42", "epsilon")
    line = " ".join(words[i % 5] for i in range(900_000))[:5_000_000]
    out = faithful(line)
    assert 0 < len(out) < 5_000
    assert out.startswith("alpha beta0x1f")
    assert len(budgeted(line, 3000).encode()) <= 3000


WORD = st.sampled_from(["cache", "worker", "fetch", "db", "index", "parser", "node", "queue"])
NUM = st.integers(min_value=0, max_value=99999)
LOG_LINE = st.one_of(
    st.builds("[INFO] {} {} step {}".format, WORD, WORD, NUM),
    st.builds("Downloading {}/{} {}%\r".format, WORD, WORD, st.integers(0, 100)),
    st.builds("2024-05-0{}T10:{:02d}:00Z {} ready".format, st.integers(1, 9), st.integers(0, 59),
              WORD),
    st.builds("error: {} failed with code {}".format, WORD, NUM),
    st.builds("ERROR {} timed out after {}ms".format, WORD, NUM),
    st.builds("warning: unused variable `{}`".format, WORD),
    st.builds("src/{}/{}.rs:{}:{}: error[E0{}]: mismatched types".format, WORD, WORD, NUM, NUM,
              st.integers(100, 999)),
    st.builds('  File "/app/{}.py", line {}, in {}'.format, WORD, NUM, WORD),
    st.builds("\tat com.acme.{}.run({}.java:{})".format, WORD, WORD, NUM),
    st.builds("{}Exception: {} broke".format, st.sampled_from(["IO", "Value", "Runtime"]), WORD),
    st.builds("{} passed, {} failed in {}.{}s".format, NUM, NUM, NUM, NUM),
    st.builds("Process completed with exit code {}.".format, st.integers(0, 255)),
    st.builds("\x1b[1;31m{}\x1b[0m {}".format, WORD, NUM),
    st.just(""),
)  # fmt: skip
LOGS = st.lists(LOG_LINE, min_size=1, max_size=120).map("\n".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOGS)
def test_faithful_keeps_every_fact_of_generated_logs(text: str) -> None:
    report = EK.verify(_key_for(text), faithful(text), None, False)
    assert report["ok"], report["missing"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LOGS)
def test_compressing_a_digest_again_changes_nothing(text: str) -> None:
    once = faithful(text)
    twice = faithful(once)
    assert twice == once
    report = EK.verify(_key_for(once), twice, None, False)
    assert report["ok"], report["missing"]


MASKABLE = st.text(alphabet="0123456789abcdefABCDEFxX-:.,T Z+_g/@<>\t", max_size=40)


@settings(max_examples=300, deadline=None)
@given(MASKABLE)
def test_kinds_equal_the_fidelity_key_mask(line: str) -> None:
    assert kinds(volatile_masked([line])) == [EK.mask(line)]


@settings(max_examples=300, deadline=None)
@given(MASKABLE, st.lists(st.integers(min_value=0, max_value=10**7), min_size=1))
def test_equal_fold_keys_imply_equal_kinds(line: str, numbers: list[int]) -> None:
    numbers_iter = iter(numbers * (len(line) + 1))
    other = re.sub(r"\d+", lambda _: str(next(numbers_iter)), line)
    a, b = fold_keys(volatile_masked([line, other]))
    if a == b:
        assert EK.mask(line) == EK.mask(other)


# --------------------------------------------------------------------------------------------
# Fields of repeated line shapes (service logs)
# --------------------------------------------------------------------------------------------


def _service_log(n: int = 400) -> str:
    lines = []
    for i in range(n):
        status = 500 if i % 10 == 7 else 404 if i == 123 else 200
        latency = 9000 if i == 321 else 10 + (i * 37) % 90
        lines.append(f"INFO request path=/api/{'ab'[i % 2]} status={status} latency_ms={latency}")
    return "\n".join(lines)


def test_a_varying_status_field_keeps_its_distribution_and_first_lines() -> None:
    out = faithful(_service_log()).split("\n")
    assert "[… status: 200 ×359; 500 ×40 (first lines 8, 18, 28); 404 ×1 (first line 124) …]" in out
    assert "[… path: /api/a ×200; /api/b ×200 (first lines 2, 4, 6) …]" in out


def test_a_numeric_field_names_its_extremes_and_the_line_of_its_max() -> None:
    out = faithful(_service_log()).split("\n")
    assert "[… latency_ms: 400 values, min 10, median 55, max 9000 at line 322 …]" in out


def test_json_and_positional_fields_are_described() -> None:
    json_lines = [
        f'{{"level":"{"error" if i % 50 == 9 else "info"}","status":{500 if i % 50 == 9 else 200}}}'
        for i in range(200)
    ]
    out = faithful("\n".join(json_lines))
    assert "[… status: 200 ×196; 500 ×4 (first lines 10, 60, 110) …]" in out
    access = [
        f'GET /x HTTP/1.1" {503 if i == 37 else 200} {100 + i * 37 % 500} host=a' for i in range(60)
    ]
    out = faithful("\n".join(access))
    assert "[… field 4: 200 ×59; 503 ×1 (first line 38) …]" in out
    assert "[… field 5: 60 values, min 100, median 339, max 599 at line 28 …]" in out


@pytest.mark.parametrize(
    ("values", "note"),
    [
        (["1", "1", "1"], None),  # constant
        ([str(i) for i in range(50)], None),  # a counter
        ([f"u{i}" for i in range(50)], None),  # identifiers
        (
            [f"{i}.5ms" for i in (3, 1, 12, 9, 4, 7, 2, 8, 5)],
            "[… t: 9 values, min 1.5ms, median 5.5ms, max 12.5ms at line 3 …]",
        ),
        (["5ms", "7s"] * 5 + [str(i) for i in range(8)], None),  # mixed units
        (["nan", "inf"] * 3 + [str(i) for i in range(8)], None),
    ],
)
def test_field_notes_say_nothing_about_constants_counters_and_ids(
    values: list[str], note: str | None
) -> None:
    assert describe("t", values, list(range(len(values)))) == note


def test_field_notes_are_left_out_when_the_lines_are_shown() -> None:
    lines = [f"request status={200 + i % 2}" for i in range(12)]
    assert "status:" not in faithful("\n".join(lines))


@pytest.mark.parametrize("name", SYNTHETIC_FILES)
@pytest.mark.parametrize("budget", [6000, 3000])
def test_budgeted_digest_of_service_log_keeps_the_failing_statuses(name: str, budget: int) -> None:
    out = budgeted(_text(name), budget)
    assert len(out.encode()) <= budget
    failing = [f for f in _key(name)["must_keep"]["field_counts"] if f["field"] == "status"]
    assert [f for f in failing if EK.field_missing(f, out.split("\n"))] == []


# --------------------------------------------------------------------------------------------
# Small inputs, outliers and counters: what differs is never folded away
# --------------------------------------------------------------------------------------------

OK_GET = "GET /api status=200 latency_ms=3"
BAD_GET = "GET /api status=500 latency_ms=9000"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["1", "2", "3"], ["1", "2", "3"]),
        ([OK_GET] * 18 + [BAD_GET], [f"{OK_GET} [×18]", BAD_GET]),
        (
            [OK_GET] * 19 + [BAD_GET],
            [
                f"{OK_GET} [×19]",
                BAD_GET,
                f"[… fields of 20 lines like: {OK_GET} …]",
                "[… status: 200 ×19; 500 ×1 (first line 20) …]",
                "[… latency_ms: 3 ×19; 9000 ×1 (first line 20) …]",
            ],
        ),
        (
            ['{"status":200,"ms":3}'] * 18 + ['{"status":500,"ms":9000}'],
            ['{"status":200,"ms":3} [×18]', '{"status":500,"ms":9000}'],
        ),
        (
            ["GET /api status=200", "GET /api status=201"] * 3,
            ["GET /api status=200", "GET /api status=201"] * 3,
        ),
        (  # three values are no evidence of a counter
            [f"worker {i} ready" for i in range(3)],
            [f"worker {i} ready" for i in range(3)],
        ),
        (  # a line of nothing but a number is that number, never a counter
            [str(i) for i in range(1, 31)],
            [*map(str, range(1, 9)), "[… 14 similar lines elided …]", *map(str, range(23, 31))],
        ),
        (  # durations of one order of magnitude are volatile; an outlier is not
            ["took 12 ms", "took 15 ms", "took 9000 ms"],
            ["took 12 ms [×2]", "took 9000 ms"],
        ),
        (
            ["warning: queue depth 12", "warning: queue depth 5000"],
            ["warning: queue depth 12", "warning: queue depth 5000"],
        ),
        (
            ["warning: queue depth 12", "ok", "warning: queue depth 5000"],
            ["warning: queue depth 12", "ok", "warning: queue depth 5000"],
        ),
        (
            ["WARN slow request latency_ms=12", "ok", "WARN slow request latency_ms=9000"],
            ["WARN slow request latency_ms=12", "ok", "WARN slow request latency_ms=9000"],
        ),
        (
            ["ERROR request failed after 12 ms", "ERROR request failed after 9000 ms"],
            ["ERROR request failed after 12 ms", "ERROR request failed after 9000 ms"],
        ),
    ],
)
def test_lines_that_differ_in_content_are_never_folded_together(
    lines: list[str], expected: list[str]
) -> None:
    assert faithful("\n".join(lines)).split("\n") == expected


def test_a_counter_folds_but_what_it_counts_does_not() -> None:
    lines = [f"tick seq={i} status=200" for i in range(30)] + ["tick seq=30 status=503"]
    lines += [f"tick seq={i} status=200" for i in range(31, 40)]
    assert faithful("\n".join(lines)).split("\n") == [
        "tick seq=0 status=200 [×30]",
        "tick seq=30 status=503",
        "tick seq=31 status=200 [×9]",
        "[… fields of 40 lines like: tick seq=0 status=200 …]",
        "[… status: 200 ×39; 503 ×1 (first line 31) …]",
    ]


def test_a_latency_that_only_grows_is_described_with_its_outlier() -> None:
    lines = [f"GET /api status=200 latency_ms={i}" for i in range(1, 40)] + [BAD_GET]
    out = faithful("\n".join(lines)).split("\n")
    assert BAD_GET in out
    assert "[… status: 200 ×39; 500 ×1 (first line 40) …]" in out
    assert "[… latency_ms: 40 values, min 1, median 21, max 9000 at line 40 …]" in out


@pytest.mark.parametrize(
    ("name", "values", "note"),
    [
        (
            "latency_ms",
            [*map(str, range(1, 20)), "9000"],
            "[… latency_ms: 20 values, min 1, median 11, max 9000 at line 20 …]",
        ),
        (  # a constant step, but a measurement's name
            "latency_ms",
            [str(10 * i) for i in range(1, 21)],
            "[… latency_ms: 20 values, min 10, median 110, max 200 at line 20 …]",
        ),
        (  # a name ending in "time" that goes up and down is a measurement, not a clock
            "request_time",
            ["0.012", "0.003", "0.450", "0.009", "0.011", "0.004", "0.008", "0.010", "12.500"],
            "[… request_time: 9 values, min 0.003, median 0.010, max 12.500 at line 9 …]",
        ),
        (
            "t",
            [*map(str, range(1, 20)), "9000"],
            "[… t: 20 values, min 1, median 11, max 9000 at line 20 …]",
        ),
        (
            "elapsed",
            [f"{x}s" for x in (1, 3, 4, 9, 12, 20, 31, 33, 40, 52)],
            "[… elapsed: 10 values, min 1s, median 20s, max 52s at line 10 …]",
        ),
        ("ts", [str(1714560000 + i // 2) for i in range(20)], None),  # a clock
        ("offset", ["0", "512", "2048", "2100", "4096", "8192", "8200", "9000", "12000"], None),
        ("field 3", [str(i) for i in range(0, 100, 5)], None),  # a constant step
    ],
)
def test_a_field_counts_only_on_evidence(name: str, values: list[str], note: str | None) -> None:
    assert describe(name, values, list(range(len(values)))) == note


def test_the_compress_command_prints_a_small_input_unchanged(tmp_path: Path) -> None:
    out = run_cli(["compress"], tmp_path, stdin="1\n2\n3\n")
    assert (out.code, out.stdout) == (0, "1\n2\n3\n")


# short lines made of words, small numbers and fields: content, nothing volatile
CONTENT_TOKEN = st.one_of(
    st.sampled_from(
        ["GET", "POST", "/api/users", "request", "served", "queue", "depth", "ok", "retry",
         "warning:", "error:", "WARN", "slow"]
    ),
    st.integers(0, 9999).map(str),
    st.builds("{}={}".format, st.sampled_from(["status", "latency_ms", "n", "depth"]),
              st.integers(0, 9999)),
)  # fmt: skip
CONTENT_LINES = st.lists(
    st.lists(CONTENT_TOKEN, min_size=1, max_size=6).map(" ".join),
    min_size=1,
    max_size=HEAD + TAIL,
    unique=True,
)


@settings(max_examples=150, deadline=None)
@given(CONTENT_LINES)
def test_a_small_input_of_distinct_lines_comes_out_unchanged(lines: list[str]) -> None:
    # a counter takes COUNTER_MIN consecutive lines of one shape: leave those out
    runs = (lines[k : k + COUNTER_MIN] for k in range(len(lines) - COUNTER_MIN + 1))
    assume(all(len({template(x) for x in run}) > 1 for run in runs))
    text = "\n".join(lines)
    assert faithful(text) == text


# --------------------------------------------------------------------------------------------
# Budgeted: errors before frames, whole lines
# --------------------------------------------------------------------------------------------

JAVA_ERROR = (
    "2024-05-01 12:05:00.123 [http-nio-8080-exec-7] ERROR c.a.orders.OrderController - Request"
    " processing failed; nested exception is org.springframework.dao."
    "DataAccessResourceFailureException: Unable to acquire JDBC Connection"
)
JAVA_CAUSE = (
    "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not"
    " available, request timed out after 30000ms."
)
JAVA_LOG = "\n".join(
    [f"2024-05-01 12:00:{i % 60:02d} INFO worker {i} processed batch ok" for i in range(300)]
    + [
        JAVA_ERROR,
        "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC",
        "\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convert(Dialect.java:275)",
        "\tat com.acme.db.Pool.acquire(Pool.java:88)",
        "\tat com.acme.db.Repo.save(Repo.java:41)",
        "\tat com.acme.orders.OrderService.place(OrderService.java:120)",
        JAVA_CAUSE,
        "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
        "\tat java.base/java.lang.Thread.run(Thread.java:833)",
    ]
    + [f"2024-05-01 12:06:{i % 60:02d} INFO worker {i} processed batch ok" for i in range(300)]
)


def _has(out: list[str], line: str) -> bool:
    """Whether ``line`` is in ``out``, whole or with its middle clipped."""
    return any(x == line or (x[:20] == line[:20] and x[-20:] == line[-20:]) for x in out)


@pytest.mark.parametrize("budget", range(380, 1300, 40))
def test_budgeted_keeps_errors_before_stack_frames(budget: int) -> None:
    out = budgeted(JAVA_LOG, budget).split("\n")
    assert len("\n".join(out).encode()) <= budget
    assert _has(out, JAVA_CAUSE), out  # the last error always, clipped if need be
    frames = [line for line in out if line.startswith("\tat ")]
    if JAVA_CAUSE not in out:  # clipped: no room was left for any frame
        assert frames == [], out
    if frames:  # what went wrong outranks where: no frame before every error line is in
        assert _has(out, JAVA_ERROR), out


def test_budgeted_at_400_bytes_keeps_the_error_not_a_frame() -> None:
    out = budgeted(JAVA_LOG, 400)
    assert "Caused by: java.sql.SQLTransientConn" in out
    assert "\tat " not in out


@pytest.mark.parametrize("budget", [1, 8, 9, 20, 30, 50, 79, 90])
def test_tiny_budgets_end_on_a_whole_note(budget: int) -> None:
    out = budgeted(JAVA_LOG, budget)
    assert len(out.encode()) <= budget
    assert out == "" or all(is_note(line) for line in out.split("\n")), out


def _whole_lines(text: str, out: str) -> list[str]:
    """Lines of ``out`` that are neither a whole note nor a whole line of ``text``."""
    rendered = render(text).lines
    allowed = {x for line in rendered for x in (line, narrow(line), line.strip())}
    marker = re.compile(r" (?:\[×[\d,]+\]|\(×[\d,]+\))$")
    bad = []
    for line in out.split("\n") if out else []:
        body = marker.sub("", line)
        if not (is_note(line) or body in allowed or "…" in body or " chars elided" in body):
            bad.append(line)
    return bad


JAVA_SOUP = st.lists(st.sampled_from(JAVA_LOG.split("\n")[295:315]), max_size=40).map("\n".join)
SMALL_OR_ANY_BUDGET = st.one_of(st.integers(0, 120), st.integers(0, 2000))


@FAST
@given(st.one_of(JAVA_SOUP, LOGS, st.text(max_size=400)), SMALL_OR_ANY_BUDGET)
def test_budgeted_output_is_always_whole_lines(text: str, budget: int) -> None:
    out = budgeted(text, budget)
    assert len(out.encode()) <= max(budget, 0)
    assert _whole_lines(text, out) == []
    assert not out.endswith("\n")


# --------------------------------------------------------------------------------------------
# Binary input
# --------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PNG, "PNG image"),
        (ELF, "ELF executable"),
        (b"\x1f\x8b\x08\x00" + bytes(range(255, -1, -1)) * 4, "gzip data"),
        (bytes(range(256)) * 16, "binary data"),
        (b"plain log line\n" * 50, None),
        ("caf\u00e9 cr\u00e8me, na\u00efve\n".encode("latin-1") * 30, None),  # latin-1 text
        ("error: boom\n".encode("utf-16"), None),  # UTF-16 with its byte-order mark
        (b"\x1b[31mred\x1b[0m\r\nprogress 10%\r" * 20, None),  # terminal output is text
        (b"", None),
    ],
)
def test_binary_data_is_told_from_text(data: bytes, kind: str | None) -> None:
    assert binary_kind(decode(data)) == kind


def test_utf16_input_is_decoded() -> None:
    assert faithful(decode("error: boom\n".encode("utf-16"))) == "error: boom"


def test_a_binary_attachment_becomes_a_note() -> None:
    att = Attachment("stdin", decode(PNG))
    assert (
        att.text
        == binary_note(decode(PNG))
        == (f"[… PNG image, {len(decode(PNG)):,} bytes: binary, not shown …]")
    )
    assert "\ufffd" not in att.block() and "\x00" not in att.block()
    assert Attachment("log", "error: boom\n").text == "error: boom\n"
