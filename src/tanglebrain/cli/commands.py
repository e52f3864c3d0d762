"""Small commands: ``demo``, ``sim``, ``compress``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tanglebrain.errors import UsageError


def demo_command(
    prompt: Annotated[str | None, typer.Argument(help="Request for the demo.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON object.")] = False,
    review: Annotated[
        bool, typer.Option("--review", help="Add the simulated review panel to the demo.")
    ] = False,
) -> None:
    """Run a request through the real path against simulated backends (no keys, no network)."""
    from tanglebrain.cli.demo import run_demo

    raise typer.Exit(run_demo(prompt, json_out=json_out, review=review))


def sim_command(
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the loopback simulator (scripted OpenAI-compatible models) until Ctrl-C."""
    from tanglebrain import sim

    if not 0 <= port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
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
