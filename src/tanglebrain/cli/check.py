"""``tanglebrain backends check``: validate the roster and probe each backend.

The report goes to stdout (``--json``: a JSON array with one object per backend); notes
go to stderr. The column "via" names the transport each backend's calls use ("openai":
the native OpenAI-compatible one; "litellm"). "latency" is a tiny request's on a warm
client; the first request's, client start-up and connection included, follows in
brackets (``first_call_ms`` in JSON).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from tanglebrain.cli.backends import (
    WHY,
    JsonOpt,
    RosterOpt,
    _console,
    _explicit,
    _note,
    complete_ids,
)
from tanglebrain.errors import UsageError

if TYPE_CHECKING:
    from tanglebrain.health import Verdict


def _latency(v: Verdict) -> str:
    """The warm latency, and the first call's (client start-up included) in brackets."""
    if v.latency_ms is None:
        return "-"
    first = f" (first {v.first_call_ms:.0f})" if v.first_call_ms is not None else ""
    return f"{v.latency_ms:.0f} ms{first}"


def _report(verdicts: list[Verdict]) -> None:
    from rich.table import Table

    table = Table(
        "id", "result", "via", "key", "reachable", "latency", "tools", "context",
        "$/M tokens in/out",
    )  # fmt: skip
    for v in verdicts:
        reach = {True: "yes", False: "no", None: "not checked"}[v.reachable]
        price = v.price_per_mtok
        table.add_row(
            v.id,
            "ok" if v.usable else "FAIL",
            v.transport,
            v.key,
            reach,
            _latency(v),
            v.tools,
            f"{v.context_window:,}" if v.context_window else "unknown",
            f"{price['input']:g}/{price['output']:g}" if price else "unknown",
        )
    console = _console()
    console.print(table)
    for v in verdicts:
        for line in v.problems:
            console.print(f"{v.id}: problem: {line}", markup=False, soft_wrap=True)
        for line in v.warnings:
            console.print(f"{v.id}: warning: {line}", markup=False, soft_wrap=True)


def check_command(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID",
            help="Backends to check (default: every enabled one).",
            autocompletion=complete_ids,
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="No network: validate the file and keys only.")
    ] = False,
    json_out: JsonOpt = False,
    roster: RosterOpt = None,
) -> None:
    """Validate the roster and send each backend a tiny request; exit 0 only if all are usable."""
    from tanglebrain.roster import load

    loaded = load(_explicit(ctx, roster))
    known = [b.id for b in loaded.roster.backends]
    unknown = [i for i in ids or [] if i not in known]
    if unknown:
        raise UsageError(f"unknown backend id {unknown[0]!r}", fix="known ids: " + ", ".join(known))
    targets = [b for b in loaded.roster.backends if b.id in ids] if ids else loaded.roster.enabled()
    if not targets:
        raise UsageError("no enabled backend to check", fix="`tanglebrain backends enable ID`")
    _note(f"roster {loaded.path} ({WHY[loaded.source]}) is valid")
    from tanglebrain.health import run_checks

    verdicts = run_checks(loaded.roster, targets, offline)
    if json_out:
        rows = [{**asdict(v), "usable": v.usable} for v in verdicts]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        _report(verdicts)
    good = sum(v.usable for v in verdicts)
    _note(
        f"{good} of {len(verdicts)} checked backend(s) usable"
        + (" (offline: keys and file only)" if offline else "")
    )
    if good < len(verdicts):
        raise typer.Exit(1)
