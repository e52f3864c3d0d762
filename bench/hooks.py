"""Agent hooks: handler and ``wrap`` wall time beside the bare interpreter, and corpus savings.

Every timed command runs alternately with the others (machine noise hits all alike), each
run's output is checked (a failed run would look fast), and each figure is a p50 / p95
over ``--repeats`` runs. Rows:

* ``python -S -c pass``: the interpreter alone, the floor of any Python hook;
* ``hook claude pre-tool-use`` on a ``make build`` call that is rewritten (target p95 <=
  50 ms) and on a ``cat`` call that is left alone;
* ``hook codex pre-tool-use`` and ``hook gemini before-tool`` on the same rewritten call,
  as each agent sends it (Gemini's under a ``gemini --yolo`` stand-in parent, a bash
  script: the handler rewrites only in YOLO mode, which it reads from its parents);
* a ~300 KB failing build log printed bare (``bash -c``) and through ``wrap --agent
  claude``, and ``echo hi`` both ways: wrap's overhead over the bare command (target
  <= 60 ms plus the compression time, measured in-process on the same output, between
  the rows of each round so that machine noise hits it alike).

Before timing, the package's bytecode is brought up to date (``compileall``), as an install
leaves it: a shell with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise leave stale ``.pyc``
files that every timed run compiles again (the timed runs drop that variable too).

Then every log of ``tests/corpus`` goes through ``wrap`` (faithful digest, and the
``--agent claude`` budget as a failed command): bytes in and out, median and total saved,
and for Claude the honest figure (the raw side capped at what Claude Code itself keeps).

Usage: python bench/hooks.py [--repeats 21]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tanglebrain import __file__ as PACKAGE
from tanglebrain.hooks._gain import agent_view, percentile
from tanglebrain.hooks._wrap import budget_for, render

ROOT = Path(__file__).resolve().parents[1]
SQUEEZE = "compression (in-process)"
CORPUS = ROOT / "tests" / "corpus"
LOGS = ("cidiff_jenkins_guava_1947_fail.log", "pytest_failure_demo.log",
        "jenkins_ninja_gcc_warnings.log", "pytest_failure_demo.log")  # fmt: skip


def tanglebrain() -> list[str]:
    """The console script next to this interpreter, else ``python -m tanglebrain``."""
    script = Path(sys.executable).parent / "tanglebrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tanglebrain"]


def setup(tmp: Path) -> dict[str, str]:
    """A throwaway HOME with an allow rule, a work dir with the build log; the environment."""
    home = tmp / "home"
    (home / ".claude").mkdir(parents=True)
    rules = {"permissions": {"allow": ["Bash(make:*)"]}}
    (home / ".claude" / "settings.json").write_text(json.dumps(rules))
    gemini = tmp / "bin" / "gemini"  # a stand-in parent whose command line says --yolo
    gemini.parent.mkdir()
    gemini.write_text('#!/bin/bash\n"${@:2}"\nexit $?\n')
    gemini.chmod(0o755)
    (tmp / "build.log").write_bytes(b"".join((CORPUS / n).read_bytes() for n in LOGS))
    # PYTHONDONTWRITEBYTECODE would recompile every module on every run: not a real install
    drop = ("TANGLEBRAIN_", "XDG_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "HOME": str(home), "TANGLEBRAIN_HOME": str(tmp / "state"), "SHELL": "/bin/bash"}


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: bytes, check: str) -> float:
    """Wall ms of one run; exits when its output does not contain ``check``."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=cwd, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if check.encode() not in out.stdout:
        raise SystemExit(f"{shlex.join(argv[:4])} gave no {check!r}: {out.stderr[-300:]!r}")
    return ms


def timings(tmp: Path, env: dict[str, str], repeats: int) -> dict[str, list[float]]:
    """Every row's wall times, the rows run alternately."""
    tb = tanglebrain()
    log_cmd = "cat build.log; exit 2"

    def payload(command: str, mode: str = "default") -> bytes:
        tool = {"command": command}
        data = {"tool_name": "Bash", "tool_input": tool, "permission_mode": mode}
        return json.dumps({**data, "cwd": str(tmp)}).encode()

    gemini_payload = json.dumps(
        {"cwd": str(tmp), "hook_event_name": "BeforeTool", "tool_name": "run_shell_command",
         "tool_input": {"command": "make build"}}
    ).encode()  # fmt: skip

    rows = {
        "python -S -c pass": ([sys.executable, "-S", "-c", "print('ok')"], b"", "ok"),
        "hook pre-tool-use (rewrite)": (
            [*tb, "hook", "claude", "pre-tool-use"], payload("make build"), "updatedInput"),
        "hook pre-tool-use (left alone)": (
            [*tb, "hook", "claude", "pre-tool-use"], payload("cat build.log"), ""),
        "hook codex pre-tool-use (rewrite)": (
            [*tb, "hook", "codex", "pre-tool-use"], payload("make build", "bypassPermissions"),
            "updatedInput"),
        "bash parent: true": ([str(tmp / "bin" / "gemini"), "--yolo", "true"], b"", ""),
        "hook gemini before-tool (rewrite)": (
            [str(tmp / "bin" / "gemini"), "--yolo", *tb, "hook", "gemini", "before-tool"],
            gemini_payload, "tool_input"),
        "bare: 300 KB failing log": (["/bin/bash", "-c", log_cmd], b"", "Finished: FAILURE"),
        "wrap: 300 KB failing log": (
            [*tb, "wrap", "--agent", "claude", "--", log_cmd], b"", "tanglebrain raw"),
        "bare: echo hi": (["/bin/bash", "-c", "echo hi"], b"", "hi"),
        "wrap: echo hi": ([*tb, "wrap", "--", "echo hi"], b"", "hi"),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in rows}
    times[SQUEEZE] = []
    raw = subprocess.run(
        ["/bin/bash", "-c", log_cmd], cwd=tmp, capture_output=True, check=False
    ).stdout
    for i in range(repeats + 1):  # the first round warms caches and writes bytecode
        for name, (argv, stdin, check) in rows.items():
            ms = run(argv, env, tmp, stdin, check)
            if i:
                times[name].append(ms)
        # The digest wrap prints, timed in this process between the rows (same noise).
        t0 = time.perf_counter()
        render(raw, 2, 6000, budget_for("claude", len(raw), 2))
        if i:
            times[SQUEEZE].append((time.perf_counter() - t0) * 1000)
    return times


def corpus(tmp: Path, env: dict[str, str]) -> list[tuple[str, int, int, int, int]]:
    """(file, bytes in, faithful out, claude out, what Claude Code keeps) per corpus log."""
    found = []
    for path in sorted(CORPUS.glob("*.log")):
        sizes = []
        for agent in ("cli", "claude"):
            argv = [*tanglebrain(), "wrap", "--agent", agent, "--", f"cat {path}; exit 1"]
            out = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, check=False)
            sizes.append(len(out.stdout))
        raw = path.stat().st_size
        found.append((path.name, raw, sizes[0], sizes[1], agent_view("claude", raw, 1)))
    return found


def _p(values: list[float], q: float) -> str:
    return f"{percentile(values, q) or 0:7.1f}"


def main() -> None:
    """Run the benchmark and print its tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    compileall.compile_dir(Path(PACKAGE).parent, quiet=1)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = setup(tmp)
        times = timings(tmp, env, args.repeats)
        squeeze = times[SQUEEZE]
        print(f"{'row':<34} {'p50 ms':>7} {'p95 ms':>7}")
        for row, values in times.items():
            print(f"{row:<34} {_p(values, 0.5)} {_p(values, 0.95)}")
        med = statistics.median
        big = med(times["wrap: 300 KB failing log"]) - med(times["bare: 300 KB failing log"])
        small = med(times["wrap: echo hi"]) - med(times["bare: echo hi"])
        print(f"wrap overhead (medians): 300 KB log {big:.1f} ms "
              f"(compression {med(squeeze):.1f} ms), echo hi {small:.1f} ms")  # fmt: skip
        rows = corpus(tmp, env)
    print(f"\n{'corpus log':<42} {'bytes in':>10} {'faithful':>9} {'claude':>7} {'kept':>7}")
    for name, raw, faithful, claude, kept in rows:
        print(f"{name:<42} {raw:>10,} {faithful:>9,} {claude:>7,} {kept:>7,}")
    saved = [raw - faithful for _, raw, faithful, _, _ in rows]
    honest = [kept - claude for *_, claude, kept in rows]
    total_in = sum(r[1] for r in rows)
    print(f"faithful: saved median {med(saved):,.0f} B, total {sum(saved):,} B "
          f"of {total_in:,} ({sum(saved) / total_in:.0%})")  # fmt: skip
    kept, share = sum(r[4] for r in rows), sum(honest) / sum(r[4] for r in rows)
    print(f"claude (failed command, raw capped at what Claude Code keeps): saved median "
          f"{med(honest):,.0f} B, total {sum(honest):,} B of {kept:,} ({share:.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
