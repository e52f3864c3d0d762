"""``runs``, ``show`` and ``stats``: what the run ledger remembers.

Thin: parse options, read the ledger, print a view (stdout) or JSON. Heavy imports
(sqlite3, rich) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tanglebrain.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from tanglebrain.ledger import Ledger

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
EMPTY = 'no runs recorded yet; they appear here after `tanglebrain "PROMPT"`'
ALL = 1 << 62  # a --limit beyond any ledger (and within SQLite's integers) lists them all


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30m``, ``24h``, ``7d`` (also ``s`` and ``w``).

    Raises:
        UsageError: the text is not such a duration.
    """
    m = _DURATION.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--since {text!r} is not a duration", fix="e.g. 30m, 24h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _ledger() -> Ledger:
    from tanglebrain.cli.run import state_dir
    from tanglebrain.ledger import Ledger, default_path

    return Ledger(default_path(state_dir(os.environ)))


def _console() -> Console:
    from tanglebrain.views.render import table_console

    return table_console(soft_wrap=False)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def runs_command(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to list.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List recent runs: id, time, orchestrator, sub-tasks, status, tokens, cost, wall time."""
    from tanglebrain.views import history as render_history

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    rows = _ledger().recent(min(limit, ALL))
    if json_out:
        _print_json(render_history.runs_json(rows))
    elif not rows:
        sys.stdout.write(EMPTY + "\n")
    else:
        console = _console()
        console.print(render_history.runs_table(rows, console.width))


def show_command(
    run_id: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or `latest`.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show one run as a tree: turns, tool calls, sub-tasks, calls and every attempt."""
    from tanglebrain.views import history as render_history

    ledger = _ledger()
    ids = ledger.resolve(run_id.strip())
    if len(ids) > 1:
        raise UsageError(f"run id prefix {run_id!r} is ambiguous", fix="give more characters")
    stored = ledger.load(ids[0]) if ids else None
    if stored is None:
        what = "no runs recorded yet" if run_id == "latest" else f"no run {run_id!r} recorded"
        raise UsageError(what, fix="see `tanglebrain runs`")
    if json_out:
        _print_json(render_history.show_json(stored))
    else:
        _console().print(render_history.show_tree(stored))


def stats_command(
    since: Annotated[
        str | None, typer.Option("--since", help="Only runs this recent: 30m, 24h, 7d, …")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per backend and per run kind: success, latency, tokens, dollars, failovers, savings."""
    from tanglebrain.ledger import _stats as ledger_stats
    from tanglebrain.views import history as render_history

    # A duration longer than the clock has run (to 1970) asks for every run.
    start = max(0.0, time.time() - parse_duration(since)) if since is not None else None
    ledger = _ledger()
    runs, calls = ledger.rows_since(start)
    data = {"since": render_history.when(start), **ledger_stats.summarize(runs, calls)}
    data["routing"] = ledger_stats.routing(
        ledger.route_rows(start if start is not None else float("-inf"))
    )
    if json_out:
        _print_json(data)
    elif not runs:
        sys.stdout.write(EMPTY + (f" (since {since})" if since else "") + "\n")
    else:
        _console().print(render_history.stats_view(data))


def register(app: typer.Typer) -> None:
    """Add ``runs``, ``show`` and ``stats`` to ``app``."""
    app.command("runs")(runs_command)
    app.command("show")(show_command)
    app.command("stats")(stats_command)
