"""Benchmark deterministic compression on the fidelity corpus in tests/corpus.

Usage: python bench/compress.py [--corpus DIR] [--repeat N] [--budget BYTES]

For every corpus file: bytes in, faithful bytes out, share saved, whether the faithful digest
verifies against the file's fidelity key, p50/p95 wall time of decode+faithful in this process,
and the same for a trivial baseline measured in the same run (splitlines + one ANSI regex), with
the ratio between the two (machines here are shared and noisy: compare ratios). For the budgeted
mode: share of must-keep facts kept, and ground-truth line recall for the CiDiff logs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    from tanglebrain.compress import budgeted, decode, faithful
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))
    from tanglebrain.compress import budgeted, decode, faithful

DEFAULT_CORPUS = ROOT / "tests" / "corpus"
BASELINE_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
REPEAT_REGEX = r"\[[x×](\d+)\]|\([x×](\d+)\)|(?<![\w.])[x×](\d+)\s*$"


def load_extract_keys(corpus: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_extract_keys", corpus / "extract_keys.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {corpus / 'extract_keys.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline(raw: bytes) -> list[str]:
    return [BASELINE_ANSI.sub("", line) for line in decode(raw).splitlines()]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timings(raw: bytes, repeat: int) -> tuple[list[float], list[float]]:
    """Wall times (s) of decode+faithful and of the baseline, interleaved run by run."""
    faithful(decode(raw))
    baseline(raw)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        faithful(decode(raw))
        t1 = time.perf_counter()
        baseline(raw)
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        base.append(t2 - t1)
    return ours, base


def facts_kept(report: dict[str, Any], key: dict[str, Any]) -> float:
    total = sum(len(v) for v in key["must_keep"].values())
    missing = sum(report["missing_counts"].values())
    return 1.0 if total == 0 else (total - missing) / total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--budget", type=int, default=6000)
    args = ap.parse_args(argv)
    if not (args.corpus / "extract_keys.py").is_file():
        print(f"corpus not found at {args.corpus}", file=sys.stderr)
        return 2
    ek = load_extract_keys(args.corpus)
    names = sorted(p.name for p in args.corpus.glob("*.log"))

    header = (
        f"{'file':38} {'KB in':>7} {'faithful B':>10} {'saved':>6} {'key':>4} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'base p50':>8} {'×base':>6} "
        f"{'facts@' + str(args.budget):>11} {'GT recall':>10}"
    )
    print(header)
    print("-" * len(header))
    savings: list[float] = []
    verified = 0
    slow: list[str] = []
    recalls: dict[str, float] = {}
    for name in names:
        raw = (args.corpus / name).read_bytes()
        key = json.loads((args.corpus / "keys" / f"{name}.json").read_text("utf-8"))
        text = decode(raw)
        out = faithful(text)
        report = ek.verify(key, out, REPEAT_REGEX, False)
        verified += bool(report["ok"])
        saved = 1 - len(out.encode()) / len(raw)
        savings.append(saved)
        ours, base = timings(raw, args.repeat)
        p50, p95, b50 = percentile(ours, 0.5), percentile(ours, 0.95), percentile(base, 0.5)
        limit = 0.050 if len(raw) <= 300_000 else 0.150
        if p95 >= limit:
            slow.append(f"{name} p95 {p95 * 1000:.1f} ms >= {limit * 1000:.0f} ms")
        small = budgeted(text, args.budget)
        assert len(small.encode()) <= args.budget
        kept = facts_kept(ek.verify(key, small, REPEAT_REGEX, False), key)
        truth = key["must_keep"].get("groundtruth_lines")
        recall = "-"
        if truth:
            hay = "\n".join(ek.squash(line) for line in ek.clean_lines(small))
            recalls[name] = sum(line in hay for line in truth) / len(truth)
            recall = f"{recalls[name]:.0%} ({sum(line in hay for line in truth)}/{len(truth)})"
        print(
            f"{name:38} {len(raw) / 1000:7.1f} {len(out.encode()):10,} {saved:6.1%} "
            f"{'yes' if report['ok'] else 'NO':>4} {p50 * 1000:7.1f} {p95 * 1000:7.1f} "
            f"{b50 * 1000:8.2f} {p50 / b50:6.1f} {kept:11.1%} {recall:>10}"
        )

    median = statistics.median(savings)
    gha = {n: r for n, r in recalls.items() if n.startswith("cidiff_gha_")}
    print()
    print(f"faithful digests verified: {verified}/{len(names)}")
    print(f"median saving: {median:.1%}  (mean {statistics.mean(savings):.1%})")
    print("time: decode+faithful, wall clock, in process; base = splitlines + ANSI regex")
    targets = [
        ("faithful fidelity on 100 % of files", verified == len(names)),
        ("median saving >= 75 %", median >= 0.75),
        ("p95 < 50 ms (<= 300 KB) and < 150 ms (larger)", not slow),
        (
            f"budgeted ({args.budget} B) ground-truth recall 100 % on GitHub Actions logs",
            bool(gha) and all(r == 1.0 for r in gha.values()),
        ),
    ]
    for label, ok in targets:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")
    for line in slow:
        print(f"    slow: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
