"""Start-up and one-shot wall time, side by side with baselines measured in the same run.

Commands run alternately (so machine noise hits all of them alike); each figure is a
median over ``--repeats`` runs, and every run's output is checked (a failed run would
look fast). Rows:

* ``python -c pass``: the interpreter alone;
* ``tanglebrain --version`` and ``--help`` (targets 120 ms and 180 ms);
* one-shot ``tanglebrain --roster R "hi"`` against a local OpenAI-compatible backend that
  answers at once (the loopback simulator's ``echo``), ``--no-log``;
* the same request through TangleBrain 0.25's ``--local`` path, when its venv exists
  (target for ours: <= 1.2x it). ``--install-baseline`` creates that venv with pip
  (``tanglebrain[delegate]==0.25.0``; the only step here that leaves 127.0.0.1);
* ``tanglebrain demo`` (target <= 1 s).

It also checks that the one-shot run never imported litellm.

Usage: python bench/startup.py [--repeats 21] [--baseline-venv DIR] [--install-baseline]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import start_sim

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".bench" / "tanglebrain-0.25"


def install_baseline(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "tanglebrain[delegate]==0.25.0"], check=True)


def timed(argv: list[str], env: dict[str, str] | None, expect: str) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if out.returncode != 0 or expect not in out.stdout:
        raise SystemExit(f"{argv[:3]} failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--baseline-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--install-baseline", action="store_true")
    args = parser.parse_args()
    exe = shutil.which("tanglebrain", path=str(Path(sys.executable).parent))
    if exe is None:
        sys.exit("tanglebrain is not installed in this environment (pip install -e .)")
    if args.install_baseline and not args.baseline_venv.exists():
        install_baseline(args.baseline_venv)
    old = args.baseline_venv / "bin" / "tanglebrain"
    proc, base = start_sim()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            roster = Path(tmp) / "roster.toml"
            roster.write_text(
                f'[[backend]]\nid = "local"\nmodel = "openai/echo"\napi_base = "{base}"\n'
                'good_at = ["chat"]\ncost = 0\ncan_orchestrate = true\n'
            )
            yaml = Path(tmp) / "roster.yaml"
            yaml.write_text(
                "- id: local\n  tier: local\n  invoke: { kind: openai-compat, base_url: "
                f'"{base}", model: "echo" }}\n  cost: free\n  good_at: [grunt]\n'
            )
            env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TANGLEBRAIN_ROSTER": str(yaml)}
            env["XDG_STATE_HOME"] = tmp
            commands: dict[str, tuple[list[str], dict[str, str] | None, str]] = {
                "python -c pass": ([sys.executable, "-c", "pass"], None, ""),
                "tanglebrain --version": ([exe, "--version"], None, "tanglebrain"),
                "tanglebrain --help": ([exe, "--help"], None, "Usage"),
                "one-shot run": ([exe, "--roster", str(roster), "--no-log", "hi"], env, "hi"),
                "tanglebrain demo": ([exe, "demo"], env, "simulated"),
            }
            if old.exists():
                commands["TangleBrain 0.25 --local"] = ([str(old), "--local", "hi"], env, "hi")
            times: dict[str, list[float]] = {name: [] for name in commands}
            for argv, e, expect in commands.values():  # warm the page cache
                timed(argv, e, expect)
            for _ in range(args.repeats):
                for name, (argv, e, expect) in commands.items():
                    times[name].append(timed(argv, e, expect))
            probe = (
                "import sys; from tanglebrain.cli import run_argv; "
                f"code = run_argv(['--roster', {str(roster)!r}, '--no-log', 'hi']); "
                "print('LITELLM' if 'litellm' in sys.modules else 'NO-LITELLM', code)"
            )
            loaded = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, env=env
            ).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report(times, loaded)


def report(times: dict[str, list[float]], loaded: str) -> None:
    med = {name: statistics.median(samples) for name, samples in times.items()}
    baseline = med.get("TangleBrain 0.25 --local")
    targets: dict[str, tuple[float, str]] = {
        "tanglebrain --version": (120.0, "120 ms"),
        "tanglebrain --help": (180.0, "180 ms"),
        "tanglebrain demo": (1000.0, "1 s"),
    }
    if baseline is not None:
        targets["one-shot run"] = (1.2 * baseline, "1.2x 0.25")
    print(f"{'command':<26}{'median ms':>10}{'p90 ms':>9}{'x python':>10}  target  verdict")
    for name, samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        target = targets.get(name)
        verdict = ""
        if target is not None:
            over = med[name] - target[0]
            verdict = "ok" if over <= 0 else f"MISS by {over:.0f} ms"
        print(
            f"{name:<26}{med[name]:>10.1f}{p90:>9.1f}{med[name] / med['python -c pass']:>10.2f}"
            f"  {target[1] if target else '-':<7} {verdict}"
        )
    if baseline is not None:
        print(f"one-shot run / TangleBrain 0.25: {med['one-shot run'] / baseline:.2f}x")
    else:
        print("TangleBrain 0.25 not measured: run with --install-baseline once")
    print(f"litellm imported by the one-shot run: {'yes' if 'NO-' not in loaded else 'no'}")


if __name__ == "__main__":
    main()
