from __future__ import annotations

from pathlib import Path

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
    assert len(out.stdout.encode()) <= 301  # the digest plus the closing newline
    assert out.stderr == ""


def test_compress_missing_file_is_exit_2(tmp_path: Path) -> None:
    out = run_cli(["compress", str(tmp_path / "nope.log")], tmp_path)
    assert out.code == 2 and "nope.log" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""


def test_compress_is_deterministic(tmp_path: Path) -> None:
    a = run_cli(["compress"], tmp_path, stdin=NOISY)
    b = run_cli(["compress", "-"], tmp_path, stdin=NOISY)
    assert a.stdout == b.stdout and a.code == b.code == 0
