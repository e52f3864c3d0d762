#!/usr/bin/env python3
"""Generate the synthetic service logs of the fidelity corpus, deterministically.

Usage: generate_service_logs.py [CORPUS_DIR]

Writes two request logs of a made-up HTTP service (standard library only, fixed seeds, so the
same bytes every time on every platform):

* ``synthetic_service_kv.log``: 20,000 logfmt-style lines, all at level INFO, with an
  incident: 4,018 requests answered ``status=500`` (no error word on those lines), a few 404
  and 503 answers, and one request slower than all others.
* ``synthetic_service_json.log``: 4,000 JSON lines with a ``level`` field (info, warn, error),
  status codes and durations with decimals.

Both exist to check that a digest keeps the distribution of low-cardinality fields (counts per
value, first lines of rare values) and the extremes of numeric fields (the maximum and its
line). Their field specs (``keys/<stem>.fields``) are written too; ``extract_keys.py build``
turns those into the ``field_counts`` / ``field_maxima`` facts of the keys.
"""
from __future__ import annotations

import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
ENDPOINTS = ["/api/v1/orders", "/api/v1/users", "/api/v1/payments", "/api/v1/search", "/healthz"]


def _ts(ms: int) -> str:
    t = START + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _latency(rng: random.Random) -> int:
    return max(2, int(rng.lognormvariate(3.6, 0.7)))


def service_kv() -> str:
    """20,000 logfmt request lines; 4,018 of them status=500 during an incident."""
    rng = random.Random(20240501)
    n, failing = 20_000, 4_018
    incident = range(8_000, 16_000)  # 0-based lines of the payments incident
    fail_at = set(rng.sample(list(incident), failing))
    slowest = 13_576  # 0-based: line 13,577 of the file
    lines: list[str] = []
    clock = 0
    for i in range(n):
        clock += rng.randint(20, 140)
        method = "POST" if rng.random() < 0.3 else "GET"
        path = rng.choice(ENDPOINTS)
        status = 200
        latency = _latency(rng)
        if i in fail_at:
            path, method, status, latency = "/api/v1/payments", "POST", 500, rng.randint(2, 30)
        elif rng.random() < 0.015:
            status = 404
        elif i in (3_141, 9_265, 17_358):
            status = 503
        if i == slowest:
            latency = 9_874
        size = rng.randint(120, 4_000) if status == 200 else rng.randint(60, 200)
        lines.append(
            f"{_ts(clock)} INFO request method={method} path={path} status={status} "
            f"latency_ms={latency} bytes={size}"
        )
    assert sum(" status=500 " in x for x in lines) == failing
    return "\n".join(lines) + "\n"


def service_json() -> str:
    """4,000 JSON request lines with levels, status codes and decimal durations."""
    rng = random.Random(20240502)
    lines: list[str] = []
    clock = 0
    for i in range(4_000):
        clock += rng.randint(50, 400)
        status = rng.choices([200, 201, 400, 429, 502], weights=[880, 60, 30, 20, 10])[0]
        duration = round(rng.lognormvariate(2.5, 0.6), 1)
        if i == 2_718:
            duration = 2391.7
        level = "info" if status < 400 else "warn" if status < 500 else "error"
        record = {
            "ts": _ts(clock),
            "level": level,
            "msg": "request served" if status < 500 else "upstream failed",
            "method": rng.choice(["GET", "GET", "GET", "POST", "DELETE"]),
            "route": rng.choice(ENDPOINTS[:4]),
            "status": status,
            "duration_ms": duration,
            "trace": f"{rng.getrandbits(64):016x}",
        }
        lines.append(json.dumps(record, separators=(",", ":")))
    return "\n".join(lines) + "\n"


LOGS = {
    "synthetic_service_kv.log": (
        service_kv,
        {"categorical": ["status", "method", "path"], "numeric": ["latency_ms", "bytes"]},
    ),
    "synthetic_service_json.log": (
        service_json,
        {"categorical": ["level", "status", "method", "route"], "numeric": ["duration_ms"]},
    ),
}


def main(argv: list[str]) -> int:
    corpus = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, (make, spec) in LOGS.items():
        with open(os.path.join(corpus, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(make())
        stem = name[: -len(".log")]
        with open(os.path.join(corpus, "keys", stem + ".fields"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
            f.write("\n")
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
