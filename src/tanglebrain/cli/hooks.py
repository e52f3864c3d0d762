"""``hooks install|uninstall|status``, ``hook``, ``wrap``, ``raw`` and ``gain``.

``hook`` and ``wrap`` normally never get here: ``cli.run_argv`` dispatches them before
typer is imported. They are registered too so that ``--help`` lists them and a command
line with global options before them still works.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tanglebrain.errors import UsageError

AGENTS = ("claude", "codex", "gemini")
SCOPES = ("user", "project")

hooks_app = typer.Typer(
    help=(
        "Install tanglebrain's hooks into a coding agent (Claude Code, Codex CLI, Gemini CLI), "
        "check them, remove them."
    ),
)


@hooks_app.callback(invoke_without_command=True)
def hooks_root(ctx: typer.Context) -> None:
    """Refuse ``tanglebrain hooks`` alone in one line, as every other usage error."""
    # click's no_args_is_help raises its help text as the error: a screenful of error lines.
    if ctx.invoked_subcommand is None:
        raise UsageError(
            "hooks needs a command: install, uninstall or status",
            fix="see `tanglebrain hooks --help`",
        )


AgentOption = Annotated[
    str, typer.Option("--agent", help="The coding agent: claude, codex or gemini.")
]
ScopeOption = Annotated[
    str,
    typer.Option(
        "--scope", help="user (~/.claude, ~/.codex, ~/.gemini) or project (./.claude, …)."
    ),
]
DryOption = Annotated[bool, typer.Option("--dry-run", help="Show the edit, change nothing.")]


def _check(agent: str, scope: str) -> None:
    if agent not in AGENTS:
        raise UsageError(
            f"agent {agent!r} is not supported", fix="use --agent claude, codex or gemini"
        )
    if scope not in SCOPES:
        raise UsageError(f"scope {scope!r} is not known", fix="use --scope user or project")


def _edit(install: bool, agent: str, scope: str, dry_run: bool) -> None:
    from tanglebrain.hooks import _settings
    from tanglebrain.hooks._common import self_command

    _check(agent, scope)
    path = _settings.settings_path(scope, os.environ, Path.cwd(), agent)
    change = (
        _settings.plan_install(path, self_command(), agent)
        if install
        else _settings.plan_uninstall(path, agent)
    )
    what = "installed in" if install else "removed from"
    if dry_run:
        diff = difflib.unified_diff(
            (change.before or "").splitlines(keepends=True),
            change.after.splitlines(keepends=True),
            str(path),
            f"{path} (after)",
        )
        sys.stdout.write("".join(diff) or f"no change: hooks already {what} {path}\n")
        return
    if not change.changed:
        sys.stdout.write(f"no change: hooks already {what} {path}\n")
        return
    _settings.apply(change)
    backup = f" (previous version: {path}.bak)" if change.before is not None else ""
    sys.stdout.write(f"hooks {what} {path}{backup}\n")
    if install and agent == "codex":
        sys.stdout.write(CODEX_TRUST)
    if install and agent == "gemini":
        sys.stdout.write(GEMINI_YOLO)


CODEX_TRUST = (
    "Codex CLI runs a hook only once you trust it, and skips an untrusted one silently:\n"
    "start codex, type /hooks, and trust the two tanglebrain hooks. Check with:\n"
    "  tanglebrain hooks status --agent codex\n"
)
GEMINI_YOLO = (
    "Gemini CLI checks its permissions against the rewritten command, so commands are\n"
    "rewritten only in YOLO mode (gemini --yolo) and never when a deny or ask rule\n"
    "touches them; in other modes their output reaches the model unchanged.\n"
)


@hooks_app.command("install")
def install_command(
    agent: AgentOption = "claude", scope: ScopeOption = "user", dry_run: DryOption = False
) -> None:
    """Add the handlers to the agent's settings file, keeping everything else."""
    _edit(True, agent, scope, dry_run)


@hooks_app.command("uninstall")
def uninstall_command(
    agent: AgentOption = "claude", scope: ScopeOption = "user", dry_run: DryOption = False
) -> None:
    """Remove the handlers from the agent's settings file, keeping everything else."""
    _edit(False, agent, scope, dry_run)


@hooks_app.command("status")
def status_command(agent: AgentOption = "claude") -> None:
    """Where the handlers are installed, whether they run, and their last invocation."""
    from tanglebrain.hooks import _settings
    from tanglebrain.hooks._config import state_dir
    from tanglebrain.ledger import Ledger, default_path

    _check(agent, "user")
    # Both files are read before anything is printed: a broken one is the only output.
    scopes = []
    for scope in SCOPES:
        path = _settings.settings_path(scope, os.environ, Path.cwd(), agent)
        commands = _settings.installed(path, agent)
        trust = dict(_settings.codex_trust(path, os.environ)) if agent == "codex" else {}
        scopes.append((scope, path, commands, trust))
    found = any(commands for _, _, commands, _ in scopes)
    untrusted = False
    for scope, path, commands, trust in scopes:
        sys.stdout.write(f"{scope}: {path}: {'installed' if commands else 'not installed'}\n")
        for command in commands:
            result = _settings.self_test(command, os.environ, agent)
            sys.stdout.write(f"  {command}\n    self-test: {result}\n")
            if agent == "codex":
                state = trust.get(command, "untrusted")
                untrusted = untrusted or state != "trusted"
                note = "" if state == "trusted" else " (Codex skips it silently)"
                sys.stdout.write(f"    trust: {state}{note}\n")
    rows = Ledger(default_path(Path(state_dir(os.environ)))).hook_rows(agent=agent, limit=1)
    if rows:
        r = rows[0]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        sys.stdout.write(f"last invocation: {when} {r['event']} {r['outcome'] or ''}\n".rstrip())
        sys.stdout.write("\n")
    else:
        sys.stdout.write("last invocation: none recorded\n")
    if untrusted:
        sys.stdout.write("trust the hooks: start codex, type /hooks, trust the tanglebrain hooks\n")
    if not found:
        sys.stdout.write(f"install with: tanglebrain hooks install --agent {agent}\n")


def hook_command(
    agent: Annotated[str, typer.Argument(help="The coding agent: claude, codex or gemini.")],
    event: Annotated[
        str,
        typer.Argument(
            help="pre-tool-use or user-prompt-submit (claude, codex); "
            "before-tool or before-agent (gemini)."
        ),
    ],
) -> None:
    """Run a hook handler on the agent's hook JSON from stdin (the agent calls this)."""
    from tanglebrain.hooks._entry import hook_main

    raise typer.Exit(hook_main([agent, event]))


def wrap_command(ctx: typer.Context) -> None:
    """Run a shell command; print its output, or a faithful digest when it is bulky.

    Usage: tanglebrain wrap [--agent NAME] [--threshold BYTES] -- COMMAND. The exit status is
    the command's; the digest's last line names the id of the full output (`tanglebrain raw`).
    """
    from tanglebrain.hooks._entry import wrap_main

    raise typer.Exit(wrap_main(list(ctx.args)))


def raw_command(
    raw_id: Annotated[str, typer.Argument(help="The id a digest's last line names.")],
) -> None:
    """Print the full output of a wrapped command, byte for byte."""
    from tanglebrain.hooks._wrap import load_raw

    data = load_raw(os.environ, raw_id)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def gain_command(
    since: Annotated[
        str | None, typer.Option("--since", help="Only invocations this recent: 30m, 24h, 7d, …")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What the hooks saved: calls, bytes in and out, share saved, handler times, per family."""
    from tanglebrain.cli.history import parse_duration
    from tanglebrain.hooks._config import state_dir
    from tanglebrain.hooks._gain import render, summarize
    from tanglebrain.ledger import Ledger, default_path

    start = time.time() - parse_duration(since) if since is not None else None
    rows = Ledger(default_path(Path(state_dir(os.environ)))).hook_rows(start)
    data = summarize(rows)
    if json_out:
        sys.stdout.write(json.dumps(data) + "\n")
    elif not rows:
        sys.stdout.write("no hook invocations recorded yet (see `tanglebrain hooks install`)\n")
    else:
        sys.stdout.write(render(data) + "\n")


def register(app: typer.Typer) -> None:
    """Add ``hooks``, ``hook``, ``wrap``, ``raw`` and ``gain`` to ``app``."""
    app.add_typer(hooks_app, name="hooks")
    app.command("hook")(hook_command)
    app.command(
        "wrap", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(wrap_command)
    app.command("raw")(raw_command)
    app.command("gain")(gain_command)
