"""Views of the ledger for ``runs``, ``show`` and ``stats``: rich tables and trees, JSON.

Pure presentation over what :mod:`tanglebrain.ledger` and
:mod:`tanglebrain.ledger._stats` return. Timestamps in JSON are ISO 8601 in UTC;
unknown dollar amounts are ``null`` in JSON and ``unknown`` for people, never $0.

This module holds ``runs`` (the listing that fits the terminal, ``fit_table``) and
``show`` (the run's tree and JSON); the ``stats`` view lives in
:mod:`tanglebrain.views.stats` and is re-exported here as ``stats_view``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tanglebrain.ledger import StoredRun
from tanglebrain.trace import Attempt, Call, Subtask, cache_tokens, cost_of, review_to_dict
from tanglebrain.views.render import first_words, money, seconds, usage_json
from tanglebrain.views.stats import stats_view as stats_view


def when(ts: float | None) -> str | None:
    """A timestamp as ISO 8601 in UTC (milliseconds), or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _wall_ms(row: dict[str, Any]) -> float | None:
    return None if row["ended"] is None else (row["ended"] - row["started"]) * 1000.0


# --- runs --------------------------------------------------------------------------


def runs_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``runs --json``: one object per run, newest first."""
    return [
        {
            "id": r["id"], "started": when(r["started"]), "orchestrator": r["orchestrator"],
            "mode": r["mode"], "status": r["status"], "subtasks": r["subtasks"],
            "subtasks_ok": r["subtasks_ok"], "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"], "cost_usd": r["cost_usd"],
            "wall_ms": _wall_ms(r), "prompt": first_words(r["prompt"]),
        }
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class Column:
    """A column of a listing that must fit the terminal.

    Attributes:
        name: the header.
        keep: importance; when the listing is too wide, the least important column goes
            first. The first column of a listing (the id) is never dropped.
        justify: cell alignment.
        shrink: when set, the column may be cut (with an ellipsis) down to this width
            instead of being dropped.
    """

    name: str
    keep: int
    justify: JustifyMethod = "left"
    shrink: int | None = None


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], width: int | None
) -> Table:
    """A borderless table of ``rows`` no wider than ``width`` (None: no limit).

    Cells are never wrapped. While the table is too wide, columns are taken in order of
    importance, least first: a shrinkable one is cut (down to its minimum), any other is
    left out. The first column is never touched. Width freed later goes back to the
    columns that were cut.
    """

    def natural(k: int) -> int:
        return max(cell_len(str(columns[k].name)), *(cell_len(str(r[k])) for r in rows), 1)

    full = [natural(k) for k in range(len(columns))]
    sizes = list(full)
    kept = list(range(len(columns)))

    def over() -> int:  # columns are two spaces apart
        return sum(sizes[k] for k in kept) + 2 * (len(kept) - 1) - (width or 0)

    if width is not None:
        for k in sorted(kept[1:], key=lambda k: columns[k].keep):
            if over() <= 0:
                break
            if (least := columns[k].shrink) is not None:
                sizes[k] = max(min(full[k], least), sizes[k] - over())
            else:
                kept.remove(k)
        for k in sorted(kept, key=lambda k: -columns[k].keep):
            sizes[k] += max(0, min(full[k] - sizes[k], -over()))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for k in kept:
        table.add_column(columns[k].name, justify=columns[k].justify, no_wrap=True,
                         overflow="ellipsis", max_width=sizes[k])  # fmt: skip
    for r in rows:
        table.add_row(*(r[k] for k in kept))
    return table


RUN_COLUMNS = (
    Column("id", 100),
    Column("time", 60),
    Column("orchestrator", 40),
    Column("kind", 10),
    Column("sub-tasks", 50),
    Column("status", 90),
    Column("tokens", 20, "right"),
    Column("cost", 80, "right"),
    Column("wall", 30, "right"),
    Column("prompt", 45, shrink=12),
)


def runs_table(rows: list[dict[str, Any]], width: int | None = None) -> Table:
    """``runs``: a table of recent runs, newest first, no wider than ``width``.

    When space is short, kind, tokens, wall time and orchestrator go, in that order;
    then the prompt is cut, then sub-tasks and time go. The id, status and cost stay.
    """
    cells: list[list[str | Text]] = []
    for r in rows:
        local = datetime.fromtimestamp(r["started"]).strftime("%Y-%m-%d %H:%M")
        subs = f"{r['subtasks_ok']}/{r['subtasks']}" if r["subtasks"] else "-"
        cells.append([
            r["id"], local, r["orchestrator"] or "-", r["mode"], subs,
            Text(r["status"], style="" if r["status"] == "ok" else "red"),
            str(r["prompt_tokens"] + r["completion_tokens"]), money(r["cost_usd"]),
            seconds(_wall_ms(r)), Text(first_words(r["prompt"], 40)),
        ])  # fmt: skip
    return fit_table(RUN_COLUMNS, cells, width)


# --- show --------------------------------------------------------------------------


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "backend": a.backend, "model": a.model, "status": a.status, "error": a.error,
        "http_status": a.http_status, "started": when(a.started), "ended": when(a.ended),
        "latency_ms": a.latency_ms, "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens, "cache_read_tokens": a.cache_read_tokens,
        "cache_write_tokens": a.cache_write_tokens, "cost_usd": a.cost_usd,
        "usage_estimated": a.estimated, "bytes_in": a.bytes_in, "bytes_out": a.bytes_out,
    }  # fmt: skip


def _call_json(c: Call) -> dict[str, Any]:
    prompt, completion = c.tokens
    read, write = c.cache_tokens
    return {
        "role": c.role, "backend": c.backend, "model": c.model,
        "status": c.status, "retries": c.retries,
        "latency_ms": c.latency_ms, "prompt_tokens": prompt, "completion_tokens": completion,
        "cache_read_tokens": read, "cache_write_tokens": write, "cost_usd": c.cost_usd,
        "attempts": [_attempt_json(a) for a in c.attempts],
    }  # fmt: skip


def _subtask_json(s: Subtask) -> dict[str, Any]:
    return {
        "index": s.index, "task": s.task, "prompt": s.prompt,
        "requested_backend": s.requested_backend, "attach": list(s.attach),
        "status": s.status, "backend": s.backend, "failed_over": s.failed_over,
        "routed_by": s.routed_by, "static_first": s.static_first,
        "error": s.error, "started": when(s.started), "ended": when(s.ended),
        "latency_ms": s.latency_ms if s.ended else None, "queue_ms": round(s.queue_ms, 1),
        "answer": s.answer,
        "calls": [_call_json(c) for c in s.calls],
    }  # fmt: skip


def show_json(stored: StoredRun) -> dict[str, Any]:
    """``show --json``: the whole run, every attempt included, as one object."""
    run, price = stored.run, stored.orchestrator_price
    return {
        "run_id": run.id, "started": when(run.started), "ended": when(run.ended),
        "wall_ms": run.wall_ms if run.ended else None, "origin": run.origin,
        "mode": run.mode, "gate": run.gate, "status": run.status,
        "orchestrator": run.orchestrator, "degraded": run.degraded, "prompt": run.prompt,
        "answer": run.answer, "error": run.error, "warnings": list(run.warnings),
        "usage": usage_json(run),
        "orchestrator_price": (
            {"input_per_token": price[0], "output_per_token": price[1]} if price else None
        ),
        "digests": [
            {"name": d.name, "bytes_before": d.bytes_before, "bytes_after": d.bytes_after}
            for d in run.digests
        ],
        "turns": [
            {
                "index": t.index, "text": t.text, "prefix_hash": t.prefix_hash,
                "finish_reason": t.finish_reason,
                "call": _call_json(t.call),
                "tool_calls": [
                    {
                        "id": tc.id, "name": tc.name, "arguments": tc.arguments,
                        "error": tc.error, "result_bytes": tc.result_bytes,
                        "context_bytes": tc.context_bytes,
                        "subtasks": [_subtask_json(s) for s in tc.subtasks],
                    }
                    for tc in t.tool_calls
                ],
            }
            for t in run.turns
        ],
        "extra_calls": [_call_json(c) for c in run.extra_calls],
        "review": review_to_dict(run.review) if run.review else None,
    }  # fmt: skip


def _tokens(prompt: int, completion: int, cached: int = 0) -> str:
    return f"{prompt}+{completion} tok" + (f" ({cached} cached)" if cached else "")


# An interrupted call is not the backend's failure: not in red.
_STATUS_STYLE = {"ok": "green", "cancelled": "dim"}


def _add_call(parent: Tree, call: Call, label: str) -> None:
    prompt, completion = call.tokens
    n = len(call.attempts)
    node = parent.add(Text.assemble(
        (label, "bold"), f" {call.model} · ",
        (call.status, _STATUS_STYLE.get(call.status, "red")),
        f" · {n} attempt{'s' * (n != 1)} · {seconds(call.latency_ms)} · ",
        f"{_tokens(prompt, completion, call.cache_tokens[0])} · {money(call.cost_usd)}",
    ))  # fmt: skip
    for i, a in enumerate(call.attempts, 1):
        usage = ""
        if a.status == "ok" or a.estimated:  # a failure with usage: what it generated first
            tokens = _tokens(a.prompt_tokens, a.completion_tokens, a.cache_read_tokens)
            usage = f" · {tokens} · {money(a.cost_usd)}" + " (estimated)" * a.estimated
        if a.status == "ok":
            what = ("ok", "green")
        else:
            what = (a.status, _STATUS_STYLE.get(a.status, "red"))
            usage += (f" · HTTP {a.http_status}" if a.http_status else "") + (
                f" · {first_words(a.error, 60)}" if a.error else ""
            )
        node.add(Text.assemble(
            f"attempt {i} · ", what,
            f" · {seconds(a.latency_ms)}{usage} · {a.bytes_in} B in, {a.bytes_out} B out",
        ))  # fmt: skip


def _add_subtask(parent: Tree, s: Subtask) -> None:
    atts = s.attempts
    style = {"ok": "green", "running": "yellow", "queued": "dim", "cancelled": "dim"}.get(
        s.status, "red"
    )
    head = parent.add(Text.assemble(
        (f"#{s.index} ", "bold"), f"{s.task or 'general'} → {s.backend or '-'} · ",
        (s.status, style), (" · failed over", "yellow") if s.failed_over else "",
        (f" · {s.routed_by} (static: {s.static_first})", "dim")
        if s.routed_by in ("learned", "explore") and s.static_first else "",
        f" · {seconds(s.latency_ms if s.ended else None)}",
        f" (queued {seconds(s.queue_ms)})" if s.queue_ms >= 50 else "", " · ",
        _tokens(sum(a.prompt_tokens for a in atts), sum(a.completion_tokens for a in atts),
                cache_tokens(atts)[0]),
        f" · {money(cost_of(atts))}",
    ))  # fmt: skip
    head.add(Text("prompt: " + first_words(s.prompt, 100), style="dim"))
    for call in s.calls:
        _add_call(head, call, call.backend)
    if s.error:
        head.add(Text("error: " + first_words(s.error, 120), style="red"))
    elif s.answer:
        head.add(Text("answer: " + first_words(s.answer, 100), style="dim"))


def show_tree(stored: StoredRun) -> Tree:
    """``show``: the run as a tree, every call and attempt included."""
    run = stored.run
    prompt, completion, cost = run.totals()
    tree = Tree(Text.assemble(
        (f"run {run.id}", "bold"), f" · {run.mode} by {run.orchestrator or '-'} · ",
        (run.status, "green" if run.status == "ok" else "red"),
        f" · {when(run.started)} · {seconds(run.wall_ms if run.ended else None)} · ",
        f"{_tokens(prompt, completion, run.cache_totals()[0])} · {money(cost)}",
    ))  # fmt: skip
    tree.add(Text("prompt: " + first_words(run.prompt, 100)))
    if run.gate:
        tree.add(Text("gate: " + run.gate, style="dim"))
    for t in run.turns:
        turn = tree.add(Text(f"turn {t.index}", style="bold"))
        _add_call(turn, t.call, f"orchestrator {t.call.backend}")
        for tc in t.tool_calls:
            tool = turn.add(Text.assemble(
                (tc.name, "bold"), f" · {len(tc.subtasks)} sub-task(s)",
                (f" · error: {first_words(tc.error, 80)}", "red") if tc.error else "",
            ))  # fmt: skip
            for s in tc.subtasks:
                _add_subtask(tool, s)
    for c in run.extra_calls:
        _add_call(tree, c, f"{c.role} {c.backend}")
    for w in run.warnings:
        tree.add(Text("warning: " + w, style="yellow"))
    if run.error:
        tree.add(Text("error: " + run.error, style="red"))
    tree.add(Text("answer: " + (first_words(run.answer, 100) or "-")))
    return tree
