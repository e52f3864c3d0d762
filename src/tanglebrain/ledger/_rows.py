"""How a run tree maps to ledger rows and back (pure; the SQL lives in ``ledger``).

A run is one row of ``runs`` plus one row of ``calls`` per node of its tree, in
depth-first order: ``turn`` → (``call`` → ``attempt``…) and ``tool`` → ``subtask`` →
``call`` → ``attempt``…; other calls (review, digest) are top-level ``call`` rows.
``seq`` numbers the nodes of a run and ``parent`` points at the parent's ``seq``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tanglebrain.redact import Redactor
from tanglebrain.trace import (
    Attempt,
    Call,
    Digest,
    Run,
    Subtask,
    ToolCall,
    Turn,
    cache_tokens,
    cost_of,
    review_from_dict,
    review_to_dict,
)

RUN_COLUMNS = (
    "id, started, ended, origin, mode, status, orchestrator, prompt, answer, error, "
    "subtasks, subtasks_ok, prompt_tokens, completion_tokens, cost_usd, "
    "orchestrator_context_tokens, warnings, digests, orchestrator_price_in, "
    "orchestrator_price_out, review, gate, pair"
)
CALL_COLUMNS = (
    "run_id, seq, parent, kind, role, idx, name, task, status, backend, model, failover, "
    "error, http_status, started, ended, latency_ms, prompt_tokens, completion_tokens, "
    "cache_read_tokens, cache_write_tokens, cost_usd, bytes_in, bytes_out, retries, prompt, "
    "answer, extra"
)
N_CALL = CALL_COLUMNS.count(",") + 1


@dataclass(frozen=True)
class StoredRun:
    """A run read back from the ledger, with what was recorded beside its tree."""

    run: Run
    orchestrator_price: tuple[float, float] | None


def scrubber(secrets: Sequence[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function masking ``secrets`` in a row's strings (see :mod:`tanglebrain.redact`).

    Every run of 8 or more characters of a secret becomes ``[redacted]``, so a key that
    was cut short somewhere upstream is still masked.
    """
    mask = Redactor(secrets)

    def scrub(row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not mask:
            return row
        return tuple(mask(value) if isinstance(value, str) else value for value in row)

    return scrub


def run_row(run: Run, price: tuple[float, float] | None) -> tuple[Any, ...]:
    """The ``runs`` row of ``run`` (values in ``RUN_COLUMNS`` order)."""
    f = run.figures()
    digests = [[d.name, d.bytes_before, d.bytes_after] for d in run.digests]
    return (
        run.id, run.started, run.ended, run.origin, run.mode, run.status, run.orchestrator,
        run.prompt, run.answer, run.error, f.subtasks, f.subtasks_ok, f.prompt_tokens,
        f.completion_tokens, f.cost_usd, f.orchestrator_context_tokens, json.dumps(run.warnings),
        json.dumps(digests), price[0] if price else None, price[1] if price else None,
        json.dumps(review_to_dict(run.review)) if run.review else None, run.gate, run.pair,
    )  # fmt: skip


def call_rows(run: Run) -> list[tuple[Any, ...]]:
    """The ``calls`` rows of every node of ``run``'s tree, depth first."""
    rows = _Rows(run.id)
    for turn in run.turns:
        t = rows.add(None, "turn", role="orchestrator", idx=turn.index,
                     backend=turn.call.backend, answer=turn.text,
                     extra=_dropped_empty({"prefix_hash": turn.prefix_hash,
                                           "finish_reason": turn.finish_reason}),
                     )  # fmt: skip
        rows.call(t, turn.call, failover=False)
        for tc in turn.tool_calls:
            extra = {"id": tc.id, "result_bytes": tc.result_bytes,
                     "context_bytes": tc.context_bytes}  # fmt: skip
            c = rows.add(t, "tool", name=tc.name, prompt=tc.arguments, error=tc.error,
                         extra=extra)  # fmt: skip
            for sub in tc.subtasks:
                rows.subtask(c, sub)
    for call in run.extra_calls:
        rows.call(None, call, failover=False)
    return rows.rows


_NODE_COLUMNS = tuple(c.strip() for c in CALL_COLUMNS.split(",")[4:-1])
_AT = {name: 4 + i for i, name in enumerate(_NODE_COLUMNS)}  # a column's place in its row
_EMPTY = (None,) * len(_NODE_COLUMNS)


class _Rows:
    """Accumulates ``calls`` rows; ``seq`` is the row's position."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.rows: list[tuple[Any, ...]] = []

    def add(self, parent: int | None, kind: str, **cols: Any) -> int:
        seq = len(self.rows)
        extra = cols.pop("extra", None)
        row: list[Any] = [self.run_id, seq, parent, kind, *_EMPTY]
        for name, value in cols.items():  # the few columns a node has, not all of them
            row[_AT[name]] = value
        row.append(json.dumps(extra) if extra else None)
        self.rows.append(tuple(row))
        return seq

    def call(self, parent: int | None, call: Call, *, failover: bool) -> None:
        if not call.attempts:  # nothing was sent: over MCP, a missing key, a closed stdout
            return
        prompt, completion = call.tokens
        read, write = call.cache_tokens
        atts = call.attempts
        seq = self.add(
            parent, "call", role=call.role, backend=call.backend, model=call.model,
            status=call.status, failover=int(failover),
            started=call.started, ended=call.ended, latency_ms=call.latency_ms,
            prompt_tokens=prompt, completion_tokens=completion, cache_read_tokens=read,
            cache_write_tokens=write, cost_usd=call.cost_usd,
            retries=call.retries, bytes_in=sum(a.bytes_in for a in atts),
            bytes_out=sum(a.bytes_out for a in atts),
        )  # fmt: skip
        for n, a in enumerate(atts):
            self.add(
                seq, "attempt", role=call.role, idx=n, backend=a.backend, model=a.model,
                status=a.status, error=a.error, http_status=a.http_status, started=a.started,
                ended=a.ended, latency_ms=a.latency_ms, prompt_tokens=a.prompt_tokens,
                completion_tokens=a.completion_tokens, cache_read_tokens=a.cache_read_tokens,
                cache_write_tokens=a.cache_write_tokens, cost_usd=a.cost_usd,
                bytes_in=a.bytes_in, bytes_out=a.bytes_out, extra=_attempt_extra(a),
            )  # fmt: skip

    def subtask(self, parent: int, sub: Subtask) -> None:
        atts = sub.attempts
        read, write = cache_tokens(atts)
        s = self.add(
            parent, "subtask", role="subtask", idx=sub.index, task=sub.task,
            status=sub.status, backend=sub.backend, failover=int(sub.failed_over),
            error=sub.error, started=sub.started, ended=sub.ended,
            latency_ms=sub.latency_ms if sub.ended else None,
            prompt_tokens=sum(a.prompt_tokens for a in atts),
            completion_tokens=sum(a.completion_tokens for a in atts),
            cache_read_tokens=read, cache_write_tokens=write,
            cost_usd=cost_of(atts), retries=sum(c.retries for c in sub.calls),
            prompt=sub.prompt, answer=sub.answer,
            extra={"requested_backend": sub.requested_backend, "attach": sub.attach,
                   "queued": sub.queued, "routed_by": sub.routed_by,
                   "static_first": sub.static_first},
        )  # fmt: skip
        for n, call in enumerate(sub.calls):
            # a call failed over from: it failed and another backend was tried after it
            self.call(s, call, failover=n < len(sub.calls) - 1 and not call.ok)


def rebuild(row: dict[str, Any], nodes: list[dict[str, Any]]) -> StoredRun:
    """The run of a ``runs`` row and its ``calls`` rows (in ``seq`` order)."""
    run = Run(
        prompt=row["prompt"], origin=row["origin"], id=row["id"], started=row["started"],
        ended=row["ended"], mode=row["mode"], orchestrator=row["orchestrator"],
        status=row["status"], answer=row["answer"], error=row["error"],
        warnings=json.loads(row["warnings"]),
        digests=[Digest(*d) for d in json.loads(row["digests"])],
        orchestrator_context_tokens=row["orchestrator_context_tokens"], gate=row.get("gate"),
        pair=row.get("pair"),
    )  # fmt: skip
    made: dict[int, Any] = {}
    for n in nodes:
        parent: Any = made.get(n["parent"]) if n["parent"] is not None else None
        made[n["seq"]] = node = _node(n)
        if isinstance(node, Turn):
            run.turns.append(node)
        elif isinstance(node, ToolCall):
            parent.tool_calls.append(node)
        elif isinstance(node, Subtask):
            parent.subtasks.append(node)
        elif isinstance(node, Call):
            if isinstance(parent, Turn):
                parent.call = node
            elif isinstance(parent, Subtask):
                parent.calls.append(node)
            else:
                run.extra_calls.append(node)
        else:
            parent.attempts.append(node)
    if row.get("review"):
        run.review = review_from_dict(json.loads(row["review"]))
    p_in, p_out = row.get("orchestrator_price_in"), row.get("orchestrator_price_out")
    price = (p_in, p_out) if p_in is not None and p_out is not None else None
    return StoredRun(run, price)


def _attempt_extra(a: Attempt) -> dict[str, str] | None:
    usage = "estimated" if a.estimated else None
    return _dropped_empty({"transport": a.transport, "error_kind": a.error_kind, "usage": usage})


def _dropped_empty(extra: dict[str, str | None]) -> dict[str, str] | None:
    """``extra`` without its unset values; None when nothing is left (no JSON stored)."""
    return {k: v for k, v in extra.items() if v} or None


def _node(n: dict[str, Any]) -> Turn | ToolCall | Subtask | Call | Attempt:
    extra = json.loads(n["extra"]) if n["extra"] else {}
    kind = n["kind"]
    if kind == "turn":
        return Turn(
            index=n["idx"], call=Call("orchestrator", n["backend"], ""), text=n["answer"] or "",
            prefix_hash=extra.get("prefix_hash"), finish_reason=extra.get("finish_reason"),
        )  # fmt: skip
    if kind == "tool":
        return ToolCall(
            id=extra.get("id", ""),
            name=n["name"],
            arguments=n["prompt"] or "",
            error=n["error"],
            result_bytes=extra.get("result_bytes", 0),
            context_bytes=extra.get("context_bytes", 0),
        )
    if kind == "subtask":
        return Subtask(
            index=n["idx"],
            task=n["task"],
            prompt=n["prompt"] or "",
            requested_backend=extra.get("requested_backend"),
            attach=list(extra.get("attach", [])),
            status=n["status"],
            backend=n["backend"],
            error=n["error"],
            started=n["started"],
            ended=n["ended"],
            answer=n["answer"] or "",
            # Older rows have no queue time: their latency included the wait.
            queued=extra.get("queued", n["started"] or n["ended"] or 0.0),
            routed_by=extra.get("routed_by"),
            static_first=extra.get("static_first"),
        )
    if kind == "call":
        return Call(n["role"], n["backend"], n["model"])
    return Attempt(
        backend=n["backend"],
        model=n["model"],
        started=n["started"],
        latency_ms=n["latency_ms"],
        status=n["status"],
        error=n["error"],
        http_status=n["http_status"],
        prompt_tokens=n["prompt_tokens"],
        completion_tokens=n["completion_tokens"],
        # Rows older than the cache columns hold NULL: nothing was recorded, so none.
        cache_read_tokens=n.get("cache_read_tokens") or 0,
        cache_write_tokens=n.get("cache_write_tokens") or 0,
        cost_usd=n["cost_usd"],
        bytes_in=n["bytes_in"],
        bytes_out=n["bytes_out"],
        transport=extra.get("transport"),
        error_kind=extra.get("error_kind"),
        estimated=extra.get("usage") == "estimated",
    )
