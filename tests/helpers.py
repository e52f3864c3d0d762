"""Shared test helpers: rosters pointing at the simulator, the CLI in-process and as a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "tests" / "netguard.py"
# How long a test waits for a child process or for state to change before calling it a hang.
# Generous on purpose: a cold start on a loaded 2-core machine must never trip it.
WAIT = 300.0


def backend_toml(
    bid: str,
    spec: str,
    base_url: str,
    *,
    good_at: tuple[str, ...] = ("grunt",),
    cost: float = 1,
    orchestrator: bool = False,
    extra: str = "",
) -> str:
    tags = ", ".join(f'"{t}"' for t in good_at)
    return (
        f'[[backend]]\nid = "{bid}"\nmodel = "openai/{spec}"\napi_base = "{base_url}"\n'
        f"good_at = [{tags}]\ncost = {cost}\ncan_orchestrate = {str(orchestrator).lower()}\n"
        f"price = {{ input = 1.0, output = 2.0 }}\n{extra}\n"
    )


def write_roster(path: Path, *backends: str, settings: str = "max_attempts = 3\n") -> Path:
    path.write_text("[settings]\n" + settings + "\n" + "\n".join(backends))
    return path


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Hermetic: no state, config or provider keys leak in from the developer's shell.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TANGLEBRAIN_", "XDG_", "OTEL_")) and not k.endswith("_API_KEY")
    }
    env.update(
        TANGLEBRAIN_HOME=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        NO_COLOR="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    tmp_path: Path,
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run the CLI's real entry point in this process: argv in, exit code and output out.

    The process-wide state a command reads (environment, working directory, standard
    streams) is swapped for the call and restored after it, so each call sees what a fresh
    ``tanglebrain`` process in ``tmp_path`` would, without paying for a new interpreter.
    Stdin and stdout are pipes, not terminals, as under ``subprocess.run``.
    """
    from tanglebrain.cli import run_argv

    out, err = io.BytesIO(), io.BytesIO()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    sys.stdin = io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    os.environ.clear()
    os.environ.update(env or cli_env(tmp_path))
    os.chdir(tmp_path)
    try:
        code = run_argv(args)
    except SystemExit as exc:  # shell completion exits the way click does
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return Result(code, stdout, stderr)


def run_process(
    args: list[str],
    tmp_path: Path,
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run ``tanglebrain ARGS`` as a real process, for what only a process shows."""
    proc = subprocess.run(
        [sys.executable, str(GUARD), *args],
        input=stdin.encode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        cwd=tmp_path,
        env=env or cli_env(tmp_path),
        timeout=WAIT,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def start_cli(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(GUARD), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env or cli_env(tmp_path),
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll real state (not a fixed sleep) until ``condition()`` holds, or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def probe(code: str, argv: list[str], tmp_path: Path) -> str:
    """Run ``code`` in a fresh interpreter with ``argv`` and return its last stdout line.

    For what only a process of its own shows: the modules a command line loaded.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True, text=True, env=cli_env(tmp_path), timeout=WAIT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]
