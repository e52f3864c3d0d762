from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

NOISY = "".join(f"\x1b[32m[{i:05d}] INFO step {i} done\x1b[0m\n" for i in range(2000))
NOISY += "src/app.py:10:2: error: boom\n"


def test_compress_stdin_faithful(tmp_path: Path) -> None:
    out = run_cli(["compress", "--stats"], tmp_path, stdin=NOISY)
    assert out.code == 0
    assert "src/app.py:10:2: error: boom" in out.stdout
    assert "\x1b" not in out.stdout and len(out.stdout) < len(NOISY) / 5
    assert "bytes" in out.stderr and "saved" in out.stderr and "ms" in out.stderr


def test_compress_file_with_budget(tmp_path: Path) -> None:
    path = tmp_path / "build.log"
    path.write_text(NOISY)
    out = run_cli(["compress", str(path), "--budget", "300"], tmp_path)
    assert out.code == 0
    assert len(out.stdout.encode()) <= 300  # the closing newline included
    assert out.stderr == ""


def test_compress_missing_file_is_exit_2(tmp_path: Path) -> None:
    out = run_cli(["compress", str(tmp_path / "nope.log")], tmp_path)
    assert out.code == 2 and "nope.log" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""


def test_compress_is_deterministic(tmp_path: Path) -> None:
    a = run_cli(["compress"], tmp_path, stdin=NOISY)
    b = run_cli(["compress", "-"], tmp_path, stdin=NOISY)
    assert a.stdout == b.stdout and a.code == b.code == 0


@pytest.mark.parametrize("budget", [1, 2, 10, 50, 90, 400])
def test_compress_budget_output_is_whole_lines(tmp_path: Path, budget: int) -> None:
    out = run_cli(["compress", "--budget", str(budget)], tmp_path, stdin=NOISY)
    assert out.code == 0 and len(out.stdout.encode()) <= budget
    assert out.stdout == "" or out.stdout.endswith("\n")
    for line in out.stdout.splitlines():  # notes are whole, never cut mid-bracket
        assert not line.startswith("[… ") or line.endswith(" …]"), line


ELF = "\x7fELF\x02\x01\x01" + "\x00" * 400 + "".join(map(chr, range(1, 128))) * 4


def test_compress_refuses_binary_stdin(tmp_path: Path) -> None:
    out = run_cli(["compress"], tmp_path, stdin=ELF)
    assert out.code == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert "stdin is ELF executable" in out.stderr and "not text" in out.stderr


def test_compress_refuses_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    out = run_cli(["compress", str(path)], tmp_path)
    assert out.code == 2 and out.stdout == ""
    assert f"{path} is PNG image (5,128 bytes), not text" in out.stderr
