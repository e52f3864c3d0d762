"""``tanglebrain routes``: how sub-tasks of each tag would be routed now, and why.

Thin: load the roster and the ledger's evidence, print the view (stdout) or JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tanglebrain.errors import UsageError


def routes_command(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only this good_at tag.")] = None,
    roster: Annotated[
        Path | None, typer.Option("--roster", help="Roster file (overrides discovery).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per tag: the backends in the order sub-tasks would try them now, and why.

    Each with its evidence from the ledger: calls, success estimate, p50, cost.
    """
    from tanglebrain import evidence, router
    from tanglebrain.cli.run import state_dir
    from tanglebrain.roster import load

    loaded = load(roster if roster is not None else (ctx.obj or {}).get("roster"))
    tags = loaded.roster.tags()
    if tag is not None and tag not in tags:
        raise UsageError(f"unknown tag {tag!r}", fix="known tags: " + (", ".join(tags) or "none"))
    learned = evidence.read_learned(loaded.roster, state_dir(os.environ))
    settings = loaded.roster.settings
    data = {
        "routing": settings.routing,
        "weights": dataclasses.asdict(settings.route_weights),
        "tags": router.explain(loaded.roster, os.environ, learned, [tag] if tag else tags),
    }
    if json_out:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    from tanglebrain.views.render import table_console
    from tanglebrain.views.routes import routes_view

    table_console(soft_wrap=False).print(routes_view(data))


def register(app: typer.Typer) -> None:
    """Add ``routes`` to ``app``."""
    app.command("routes")(routes_command)
