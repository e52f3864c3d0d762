"""``tanglebrain init`` and ``tanglebrain backends …``: see, check and edit the roster.

Streams: a listing or check report goes to stdout (``--json``: a JSON array of objects);
notes go to stderr. Commands that write a file print its path, and only that, on
stdout. Heavy modules (pydantic models, litellm) are imported inside the commands so
that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tanglebrain.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from tanglebrain.roster import Backend, EditResult, LoadedRoster, Roster

WHY = {
    "flag": "from --roster",
    "env": "from $TANGLEBRAIN_ROSTER",
    "cwd": "./roster.toml in the current directory",
    "xdg": "your config: $XDG_CONFIG_HOME/tanglebrain/roster.toml",
    "packaged": "the packaged default; run `tanglebrain init` for your own copy",
}


# --- shell completion (never raises) ------------------------------------------------


def _completion_roster(ctx: typer.Context) -> Roster:
    from tanglebrain.roster import load

    explicit: Path | None = None
    node: Any = ctx
    while node is not None and explicit is None:
        explicit = node.params.get("roster")
        node = node.parent
    return load(explicit).roster


def complete_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """Backend ids of the roster in use that start with ``incomplete``."""
    try:
        return [b.id for b in _completion_roster(ctx).backends if b.id.startswith(incomplete)]
    except Exception:
        return []


def complete_tags(ctx: typer.Context, incomplete: str) -> list[str]:
    """``good_at`` tags of the roster; completes the last item of ``a,b,…``."""
    try:
        head, comma, last = incomplete.rpartition(",")
        tags = sorted({t for b in _completion_roster(ctx).backends for t in b.good_at})
        return [head + comma + t for t in tags if t.startswith(last)]
    except Exception:
        return []


RosterOpt = Annotated[
    Path | None, typer.Option("--roster", help="Roster file (overrides discovery).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON array of objects.")]
IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Backend id.", autocompletion=complete_ids)
]


def _explicit(ctx: typer.Context, roster: Path | None) -> Path | None:
    return roster if roster is not None else (ctx.obj or {}).get("roster")


def _note(message: str) -> None:
    from tanglebrain.views import render

    render.note(message)


def _console() -> Any:
    from tanglebrain.views.render import table_console

    return table_console(highlight=False)


# --- init ---------------------------------------------------------------------------


def init_command(
    path: Annotated[
        Path | None,
        typer.Argument(help="Where to write (default $XDG_CONFIG_HOME/tanglebrain/roster.toml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite (keeps a .bak).")] = False,
) -> None:
    """Write a starter roster (the packaged default, with its comments) for you to edit."""
    from tanglebrain.roster import discover, write_starter, xdg_path

    dest = path if path is not None else xdg_path(os.environ)
    backup = write_starter(dest, force=force)
    sys.stdout.write(f"{dest}\n")
    _note(f"wrote a starter roster to {dest}" + (f" (old file kept as {backup})" if backup else ""))
    try:
        in_use, source = discover(None, os.environ, Path.cwd())
    except ConfigError as exc:  # $TANGLEBRAIN_ROSTER names a missing file
        in_use, source = Path(exc.file or "?"), "env"
    if in_use.resolve() != dest.resolve():
        if source == "packaged":  # nothing outranks it: it is just not where we look
            _note(
                f"{dest} is not where tanglebrain looks for a roster; pass --roster {dest} "
                f"or set TANGLEBRAIN_ROSTER={dest}"
            )
        else:
            _note(f"{in_use} takes precedence over it here; use --roster {dest} to use it")
    _note(
        "next: read it, enable backends (`tanglebrain backends enable ID`), then run "
        "`tanglebrain backends check`"
    )


# --- list ---------------------------------------------------------------------------


def _window(backend: Backend) -> tuple[int | None, str | None]:
    if backend.context_window is not None:
        return backend.context_window, "roster"
    from tanglebrain import models

    size = models.context_window(backend)
    return size, ("litellm" if size else None)


def _row(backend: Backend, loaded: LoadedRoster) -> dict[str, Any]:
    window, source = _window(backend)
    return {
        "id": backend.id,
        "model": backend.model,
        "good_at": list(backend.good_at),
        "cost": backend.cost,
        "can_orchestrate": backend.can_orchestrate,
        "enabled": backend.enabled,
        "api_key_env": backend.api_key_env,
        "key": backend.key_status(os.environ),
        "max_concurrency": backend.max_concurrency,
        "context_window": window,
        "context_window_source": source,
        "roster_path": str(loaded.path),
        "roster_source": loaded.source,
    }


def _list(explicit: Path | None, json_out: bool) -> None:
    from tanglebrain.roster import load
    from tanglebrain.views.history import Column, fit_table

    # Narrow terminals lose concurrency, context, tags and cost first, then the model is
    # cut; the id and the key status (with the variable to set) stay whole.
    columns = (
        Column("id", 100),
        Column("model", 55, shrink=14),
        Column("good at", 45),
        Column("cost", 50, "right"),
        Column("orch", 60),
        Column("enabled", 85),
        Column("key", 90),
        Column("concurrency", 30, "right"),
        Column("context", 40, "right"),
    )
    loaded = load(explicit)
    rows = [_row(b, loaded) for b in loaded.roster.backends]
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    cells = []
    for r in rows:
        key = r["key"] if r["key"] != "missing" else f"missing (${r['api_key_env']})"
        window = f"{r['context_window']:,}" if r["context_window"] else "unknown"
        cells.append([
            r["id"], r["model"], ", ".join(r["good_at"]), f"{r['cost']:g}",
            "yes" if r["can_orchestrate"] else "no", "yes" if r["enabled"] else "no",
            key, str(r["max_concurrency"]), window,
        ])  # fmt: skip
    console = _console()
    console.print(f"roster: {loaded.path} ({WHY[loaded.source]})", soft_wrap=True)
    console.print(fit_table(columns, cells, console.width))


def list_command(ctx: typer.Context, roster: RosterOpt = None, json_out: JsonOpt = False) -> None:
    """List the backends: model, tags, cost, key status (never the key), context window."""
    _list(_explicit(ctx, roster), json_out)


def backends_root(ctx: typer.Context, roster: RosterOpt = None, json_out: JsonOpt = False) -> None:
    """See, check and edit the roster's backends (no subcommand: list them)."""
    if roster is not None:
        ctx.ensure_object(dict)["roster"] = roster
    if ctx.invoked_subcommand is None:
        _list(_explicit(ctx, None), json_out)


# --- edits --------------------------------------------------------------------------


def _edit(
    ctx: typer.Context, roster: Path | None, fn: Callable[[Path], EditResult], done: str, same: str
) -> None:
    from tanglebrain.roster import editable_path

    path = editable_path(_explicit(ctx, roster), os.environ, Path.cwd())
    result = fn(path)
    sys.stdout.write(f"{path}\n")
    if result.changed:
        _note(f"{done} in {path} (previous version: {result.backup})")
    else:
        _note(f"{same}; {path} not changed")


def add_command(
    ctx: typer.Context,
    backend_id: Annotated[str, typer.Argument(metavar="ID", help="New id: a-z, 0-9, - and _.")],
    model: Annotated[str, typer.Option("--model", help="litellm model, e.g. openai/gpt-4.1.")],
    good_at: Annotated[
        str | None,
        typer.Option(
            "--good-at",
            help="Comma-separated tags, e.g. code,review (required).",
            autocompletion=complete_tags,
        ),
    ] = None,
    cost: Annotated[
        str | None, typer.Option("--cost", help="Relative cost, 0 = free (required).")
    ] = None,
    orchestrator: Annotated[
        bool, typer.Option("--orchestrator", help="can_orchestrate = true (needs tool calls).")
    ] = False,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="NAME of the env var holding the key.")
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Server URL.")] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", help="Parallel calls (default 4).")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    roster: RosterOpt = None,
) -> None:
    """Add a backend to the roster file (comments and formatting are kept)."""
    from tanglebrain.roster import add_backend, parse_value

    if good_at is None or cost is None:
        raise UsageError(
            "a backend needs --good-at and --cost",
            fix="e.g. --good-at code,review --cost 5 (cost is relative; 0 = free)",
        )
    fields = {
        "id": backend_id,
        "model": model,
        "api_key_env": api_key_env,
        "api_base": api_base,
        "good_at": parse_value("good_at", good_at),
        "cost": parse_value("cost", cost),
        "can_orchestrate": orchestrator or None,
        "enabled": False if disabled else None,
        "max_concurrency": max_concurrency,
    }
    _edit(ctx, roster, lambda p: add_backend(p, fields), f"added backend '{backend_id}'", "")
    if api_key_env and not os.environ.get(api_key_env):
        _note(f"${api_key_env} is not set in this shell: export {api_key_env}=…")
    _note(f"next: `tanglebrain backends check {backend_id}`")


def remove_command(ctx: typer.Context, backend_id: IdArg, roster: RosterOpt = None) -> None:
    """Remove a backend (and the comment block directly above it)."""
    from tanglebrain.roster import remove_backend

    _edit(
        ctx, roster, lambda p: remove_backend(p, backend_id), f"removed backend '{backend_id}'", ""
    )


def _switch(ctx: typer.Context, backend_id: str, roster: Path | None, on: bool) -> None:
    from tanglebrain.roster import set_field

    word = "enabled" if on else "disabled"
    _edit(
        ctx,
        roster,
        lambda p: set_field(p, backend_id, "enabled", on),
        f"{word} backend '{backend_id}'",
        f"backend '{backend_id}' is already {word}",
    )


def enable_command(ctx: typer.Context, backend_id: IdArg, roster: RosterOpt = None) -> None:
    """Enable a backend (enabled = true)."""
    _switch(ctx, backend_id, roster, True)


def disable_command(ctx: typer.Context, backend_id: IdArg, roster: RosterOpt = None) -> None:
    """Disable a backend (enabled = false)."""
    _switch(ctx, backend_id, roster, False)


def set_command(
    ctx: typer.Context,
    backend_id: IdArg,
    field_name: Annotated[str, typer.Argument(metavar="FIELD", help="A backend field.")],
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE",
            help="Parsed by the field's type; "
            "tags a,b; price IN,OUT; '' removes an optional field.",
        ),
    ],
    roster: RosterOpt = None,
) -> None:
    """Set one field of a backend, e.g. `set claude cost 25` or `set gpt price 2,8`."""
    from tanglebrain.roster import parse_value, set_field

    parsed = parse_value(field_name, value)
    _edit(
        ctx,
        roster,
        lambda p: set_field(p, backend_id, field_name, parsed),
        f"set {backend_id}.{field_name}",
        f"{backend_id}.{field_name} already has that value",
    )


def register(app: typer.Typer) -> None:
    """Add ``init`` and the ``backends`` group to ``app``."""
    from tanglebrain.cli import check

    app.command("init")(init_command)
    group = typer.Typer(help="See, check and edit the roster's backends (default: list).")
    group.callback(invoke_without_command=True)(backends_root)
    for name, command in (
        ("list", list_command),
        ("check", check.check_command),
        ("add", add_command),
        ("remove", remove_command),
        ("enable", enable_command),
        ("disable", disable_command),
        ("set", set_command),
    ):
        # `set ID cost -1`: a VALUE may start with "-"; --roster and --help still work.
        extra = {"ignore_unknown_options": True} if name == "set" else {}
        group.command(name, context_settings=extra)(command)
    app.add_typer(group, name="backends")
