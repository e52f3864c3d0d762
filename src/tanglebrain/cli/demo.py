"""``tanglebrain demo``: the whole path against the loopback simulator, without typer.

Typer-free so that a plain ``demo`` command line (``cli.fastrun``) skips building the
app; the typer command calls the same ``run_demo``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tanglebrain.roster import Roster

DEMO_PROMPT = "Review this service's failing build log, propose a fix, and draft the release note."
DEMO_LOG = "\n".join(
    [f"[{i:04d}] INFO compiling module_{i % 7}.py ... ok" for i in range(200)]
    + [
        "src/service/handlers.py:88:13: error: name 'retry_policy' is not defined",
        "FAILED tests/test_handlers.py::test_retry - NameError: retry_policy",
        "==== 1 failed, 212 passed in 4.21s ====",
    ]
)
_PLACEHOLDER = "http://127.0.0.1:9/v1"  # replaced by the simulator's address
SIMULATED = (
    "simulated: every backend in this demo is tanglebrain's loopback simulator "
    "(tanglebrain.sim); no model was called."
)


def demo_roster(base_url: str) -> str:
    """A roster whose backends all point at the simulator at ``base_url``."""
    entries = [
        ("orchestrator", "orchestrator:latency=0.05", '["reasoning", "planning"]', 30, True),
        ("reader", "worker:latency=0.3", '["long-context"]', 3, False),
        ("coder", "worker:latency=0.3", '["code"]', 2, False),
        ("writer", "worker:latency=0.3", '["writing"]', 1, False),
        ("consultant", "worker:latency=0.3", '["security"]', 20, False),
        ("reviewer", "reviewer:verdict=blocker,latency=0.2", '["review"]', 15, False),
    ]
    out = ["# Simulated backends for `tanglebrain demo`.", "[settings]", "max_turns = 4", ""]
    for bid, spec, tags, cost, orch in entries:
        out += [
            "[[backend]]",
            f'id = "{bid}"',
            f'model = "openai/{spec}"',
            f'api_base = "{base_url}"',
            f"good_at = {tags}",
            f"cost = {cost}",
            f"can_orchestrate = {'true' if orch else 'false'}",
            f"price = {{ input = {cost / 10:g}, output = {cost / 2:g} }}",
            "",
        ]
    return "\n".join(out)


def _roster(base_url: str) -> Roster:
    """The demo's roster, its backends pointed at the simulator at ``base_url``.

    The text parsed never changes (the simulator's port does), so it is validated once
    per install, not on every demo (see ``roster._validate``).
    """
    from tanglebrain.roster import parse

    roster = parse(demo_roster(_PLACEHOLDER), "<demo roster>")
    backends = tuple(replace(b, api_base=base_url) for b in roster.backends)
    return replace(roster, backends=backends)


def run_demo(prompt: str | None, *, json_out: bool, review: bool) -> int:
    """Run the demo request (or ``prompt``) against simulated backends; the exit code."""
    import json
    import os

    import anyio

    from tanglebrain.cli.streams import StdoutSink
    from tanglebrain.orchestrator import Hooks, Request
    from tanglebrain.runtime import Attachment
    from tanglebrain.session import Session, finish
    from tanglebrain.sim import Simulator
    from tanglebrain.trace import Run
    from tanglebrain.views import render

    request = Request(
        prompt=prompt or DEMO_PROMPT,
        attachments=(Attachment("stdin", DEMO_LOG),) if prompt is None else (),
        review=review,
        origin="demo",
    )
    sink = StdoutSink()
    trace = Run(prompt=request.prompt, origin="demo")

    async def main() -> None:
        async with Simulator() as sim:
            render.note(f"backends simulated at {sim.base_url}; the run is not recorded")
            # No ledger, no export: a demo run is not the user's.
            session = Session(_roster(sim.base_url), os.environ, export=False)
            hooks = Hooks(on_text=None if json_out else sink.write, on_note=render.note)
            await session.run(request, trace, hooks)

    anyio.run(main)
    if not json_out:
        sink.finish()
    finish(trace)
    if json_out:
        data = render.run_json(trace)
        data["simulated"] = True
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        sys.stdout.write(f"\n[{SIMULATED}]\n")
    for line in render.review_lines(trace.review) if trace.review else []:
        render.note(line, prefix="review")
    for warning in trace.warnings:
        render.note(warning, prefix="warning")
    render.note(render.summary_line(trace, recorded=False), prefix="done")
    return 0
