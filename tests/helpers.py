"""Shared test helpers: rosters pointing at the simulator, CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "tests" / "netguard.py"


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
    timeout: float = 60,
) -> Result:
    proc = subprocess.run(
        [sys.executable, str(GUARD), *args],
        input=stdin.encode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        cwd=tmp_path,
        env=env or cli_env(tmp_path),
        timeout=timeout,
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


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll real state (not a fixed sleep) until ``condition()`` holds, or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
