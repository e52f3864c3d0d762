"""The ``routes`` view: one table per tag, the candidates in routing order."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tanglebrain.views.render import money, seconds


def routes_view(data: dict[str, Any]) -> RenderableType:
    """Per tag: the order, each backend's evidence and why; then who is left out."""
    w = data["weights"]
    parts: list[RenderableType] = [
        Text(
            f"routing: {data['routing']} (weights: success {w['success']:g}, cost {w['cost']:g}, "
            f"latency {w['latency']:g}; explores {w['explore']:.0%}; "
            f"half-life {w['half_life_days']:g} days)"
        )
    ]
    for entry in data["tags"]:
        table = Table(title=entry["tag"], box=None, header_style="bold", title_justify="left")
        for name, justify in (
            ("#", "right"), ("backend", "left"), ("calls", "right"), ("success", "right"),
            ("p50", "right"), ("$/call", "right"), ("score", "right"), ("why", "left"),
        ):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for i, row in enumerate(entry["order"], 1):
            table.add_row(
                str(i), row["backend"], str(row["n"]), f"{row['success']:.0%}",
                seconds(row["p50_ms"]), money(row["cost_usd"]), f"{row['score']:.3f}",
                row["why"],
            )  # fmt: skip
        parts += [Text(""), table]
        if not entry["order"]:
            parts.append(Text("  no usable backend is good at this tag", style="yellow"))
        if data["routing"] == "static" and entry["learned_order"] != entry["static_order"]:
            order = ", ".join(entry["learned_order"])
            parts.append(Text(f'  with routing = "learned": {order}', style="dim"))
        for left in entry["excluded"]:
            parts.append(Text(f"  left out: {left['backend']} ({left['why']})", style="dim"))
    return Group(*parts)
