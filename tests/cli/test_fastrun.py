"""The fast path of ``run`` parses exactly as typer does, or leaves the line to typer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from tanglebrain.cli import fastrun, with_default_command
from tanglebrain.cli.app import make_app
from tanglebrain.cli.fastrun import RunOptions
from tests.helpers import run_cli

ROOT = typer.main.get_command(make_app(("run",)))


def by_typer(argv: list[str]) -> tuple[RunOptions, bool] | None:
    """What typer makes of ``argv`` (options and --debug), or None when it refuses it."""
    try:
        ctx = ROOT.make_context("tanglebrain", list(argv))
        args = [*ctx._protected_args, *ctx.args]
        name, command, rest = ROOT.resolve_command(ctx, args)  # type: ignore[attr-defined]
        assert name == "run" and command is not None
        sub = command.make_context(name, rest, parent=ctx)
    except Exception:  # a usage error, --help: typer answers it itself
        return None
    params: dict[str, Any] = dict(sub.params)
    params["roster"] = params["roster"] or ctx.params["roster"]
    return RunOptions(**params), bool(ctx.params["debug"])


CASES = [
    ["hi"],
    ["--json", "-b", "local", "hi"],
    ["--roster", "r.toml", "hi", "--no-log", "-q"],
    ["run", "--roster", "a.toml", "hi"],
    ["--roster", "root.toml", "run", "--roster", "own.toml", "hi"],
    ["--debug", "run", "-t", "code", "--budget", "0.5", "--max-subtasks", "3", "x"],
    ["--progress", "--no-progress", "--review", "--no-review", "--ab", "--no-gate", "x"],
    ["-", "--no-delegate"],
    ["--", "-5 degrees"],
    ["run", "--", "--json"],
    ["-b", "--json", "x"],  # a value option takes the next word, even an option's name
    ["--budget", "1e-3", "x"],
    ["--budget", "-1", "x"],  # accepted here, refused by run itself (one message for both)
    ["--max-subtasks", "0", "x"],
    ["--verbose", "-v", "x"],
    [""],
    [],
]
TYPER_ONLY = [
    ["--help"],
    ["-h"],
    ["run", "--help"],
    ["--json=1", "x"],
    ["--budget=2", "x"],
    ["-qv", "x"],
    ["-blocal", "x"],
    ["x", "y"],
    ["--budget", "lots", "x"],
    ["--budget", "1_000", "x"],
    ["--max-subtasks", "2.5", "x"],
    ["--budget"],
    ["--roster=r.toml", "x"],
    ["--version"],
    ["stats"],
    ["--nope", "x"],
    ["run", "--debug", "x"],
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "(none)")
def test_the_fast_path_parses_as_typer_does(args: list[str]) -> None:
    argv = with_default_command(args)
    fast = fastrun.parse(argv)
    assert fast is not None
    assert fast == by_typer(argv)


@pytest.mark.parametrize("args", TYPER_ONLY, ids=" ".join)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert fastrun.parse(with_default_command(args)) is None


WORDS = st.sampled_from(
    [*fastrun.FLAGS, *fastrun.VALUES, "run", "--", "-", "x", "hi there", "", "--debug",
     "0.5", "-1", "7", "1e3", ".5", "5.", "+2", "r.toml", "--help", "-qv", "--x=1", "1_0"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=8))
def test_never_a_different_reading(args: list[str]) -> None:
    argv = with_default_command(args)
    fast = fastrun.parse(argv)
    if fast is not None:
        assert fast == by_typer(argv), argv


def test_a_fast_run_fails_as_a_typer_run_does(tmp_path: Path) -> None:
    """The same refusal, code and one line, whichever parser read the line."""
    roster = tmp_path / "r.toml"
    roster.write_text('[[backend]]\nid = "w"\nmodel = "openai/echo"\napi_base = '
                      '"http://127.0.0.1:9/v1"\ngood_at = ["x"]\ncost = 0\n')  # fmt: skip
    fast = run_cli(["--roster", str(roster), "--budget", "-1", "x"], tmp_path)
    slow = run_cli(["--roster", str(roster), "--budget=-1", "x"], tmp_path)  # typer's path
    assert fast.code == slow.code == 2
    assert fast.stderr == slow.stderr
    assert fast.stderr.startswith("tanglebrain: error: --budget must be a positive number")


DEMO = typer.main.get_command(make_app(("commands",)))


def demo_by_typer(argv: list[str]) -> tuple[str | None, bool, bool] | None:
    try:
        ctx = DEMO.make_context("tanglebrain", list(argv))
        args = [*ctx._protected_args, *ctx.args]
        name, command, rest = DEMO.resolve_command(ctx, args)  # type: ignore[attr-defined]
        assert name == "demo" and command is not None
        sub = command.make_context(name, rest, parent=ctx)
    except Exception:
        return None
    return sub.params["prompt"], sub.params["json_out"], sub.params["review"]


@pytest.mark.parametrize(
    "argv",
    [["demo"], ["demo", "--json"], ["demo", "--review", "hi"], ["demo", "hi", "--json"],
     ["demo", "--", "--json"], ["demo", "-"]],
    ids=" ".join,
)  # fmt: skip
def test_demo_fast_path_parses_as_typer_does(argv: list[str]) -> None:
    fast = fastrun.parse_demo(argv)
    assert fast is not None and fast == demo_by_typer(argv)


@pytest.mark.parametrize(
    "argv",
    [["demo", "--help"], ["demo", "--nope"], ["demo", "a", "b"], ["--roster", "r", "demo"],
     ["demo", "--json=1"], ["run", "demo"]],
    ids=" ".join,
)  # fmt: skip
def test_other_demo_lines_are_left_to_typer(argv: list[str]) -> None:
    assert fastrun.parse_demo(argv) is None
