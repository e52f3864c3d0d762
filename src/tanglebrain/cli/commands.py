"""Small commands: ``demo``, ``sim``, ``compress``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tanglebrain.errors import UsageError

DEMO_PROMPT = "Review this service's failing build log, propose a fix, and draft the release note."
DEMO_LOG = "\n".join(
    [f"[{i:04d}] INFO compiling module_{i % 7}.py ... ok" for i in range(200)]
    + [
        "src/service/handlers.py:88:13: error: name 'retry_policy' is not defined",
        "FAILED tests/test_handlers.py::test_retry - NameError: retry_policy",
        "==== 1 failed, 212 passed in 4.21s ====",
    ]
)
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


def demo_command(
    prompt: Annotated[str | None, typer.Argument(help="Request for the demo.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON object.")] = False,
    review: Annotated[
        bool, typer.Option("--review", help="Add the simulated review panel to the demo.")
    ] = False,
) -> None:
    """Run a request through the real path against simulated backends (no keys, no network)."""
    import json
    import os
    import tempfile

    import anyio

    from tanglebrain.cli.run import StdoutSink
    from tanglebrain.orchestrator import Hooks, Request
    from tanglebrain.roster import load_file
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
            with tempfile.TemporaryDirectory(prefix="tanglebrain-demo-") as tmp:
                path = Path(tmp) / "roster.toml"
                path.write_text(demo_roster(sim.base_url))
                render.note(f"backends simulated at {sim.base_url}; the run is not recorded")
                # No ledger, no export: a demo run is not the user's.
                session = Session(load_file(path), os.environ, export=False)
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


def sim_command(
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the loopback simulator (scripted OpenAI-compatible models) until Ctrl-C."""
    from tanglebrain import sim

    sim.main(host=host, port=port)


def compress_command(
    file: Annotated[str, typer.Argument(help="File to compress, or - for stdin.")] = "-",
    budget: Annotated[
        int | None,
        typer.Option("--budget", help="Hard cap on the output, in bytes (whole lines)."),
    ] = None,
    stats: Annotated[bool, typer.Option("--stats", help="Print sizes and time to stderr.")] = False,
) -> None:
    """Print a faithful (or budgeted) digest of bulky text: `make 2>&1 | tanglebrain compress`.

    Binary input (an image, an archive, an executable) is refused with exit 2.
    """
    from tanglebrain import compress

    if budget is not None and budget < 1:
        raise UsageError("--budget must be a positive number of bytes", fix="e.g. --budget 6000")
    if file == "-":
        if sys.stdin.isatty():
            raise UsageError("no input", fix="pass a FILE or pipe text in")
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    started = time.perf_counter()
    text = compress.decode(data)
    kind = compress.binary_kind(text)
    if kind is not None:  # a digest of it would be noise, and raw bytes upset terminals
        source = "stdin" if file == "-" else file
        raise UsageError(
            f"{source} is {kind} ({len(data):,} bytes), not text",
            fix="compress reads logs and other text; try `strings FILE | tanglebrain compress`",
        )
    # the closing newline counts against the budget: the output is whole lines within it
    result = compress.digest(text, None if budget is None else budget - 1)
    elapsed = (time.perf_counter() - started) * 1000
    sys.stdout.write(result.text + "\n" if result.text else "")
    if stats:
        saved = 100 * (1 - result.bytes_out / result.bytes_in) if result.bytes_in else 0.0
        sys.stderr.write(
            f"tanglebrain: compress: {result.bytes_in} -> {result.bytes_out} bytes "
            f"({saved:.1f}% saved), {result.lines_kept} of {result.lines_in} lines kept, "
            f"{elapsed:.1f} ms\n"
        )


def register(app: typer.Typer) -> None:
    """Add the small commands to ``app``."""
    app.command("demo")(demo_command)
    app.command("sim")(sim_command)
    app.command("compress")(compress_command)
