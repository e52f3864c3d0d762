"""Start-up time of `tanglebrain --version` and `--help` against `python -c pass`.

Runs each command alternately (so machine noise hits all of them alike) and prints
the median wall time. Targets: --version <= 120 ms, --help <= 180 ms on 2 cores.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 21


def main() -> None:
    exe = shutil.which("tanglebrain", path=str(Path(sys.executable).parent)) or shutil.which(
        "tanglebrain"
    )
    if exe is None:
        sys.exit("tanglebrain is not installed in this environment (pip install -e .)")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "tanglebrain --version": [exe, "--version"],
        "tanglebrain --help": [exe, "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm the page cache
        subprocess.run(argv, capture_output=True, check=True)
    for _ in range(REPEATS):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times[name].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times["python -c pass"])
    targets = {"tanglebrain --version": 120.0, "tanglebrain --help": 180.0}
    print(f"{'command':<24}{'median ms':>10}{'p90 ms':>9}{'x python':>10}{'target':>9}  verdict")
    for name, samples in times.items():
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        target = targets.get(name)
        verdict = (
            "" if target is None else ("ok" if med <= target else f"MISS by {med - target:.0f} ms")
        )
        print(
            f"{name:<24}{med:>10.1f}{p90:>9.1f}{med / base:>10.2f}"
            f"{(f'{target:.0f}' if target else '-'):>9}  {verdict}"
        )


if __name__ == "__main__":
    main()
