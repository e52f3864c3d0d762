"""What a tool call answers, as values: sub-task results, ``delegate_many`` lists, call errors.

``delegation`` builds these; they become JSON text once, where they leave the core: the
orchestrator's tool message (``toolcalls``) and the MCP reply (``mcp``), both through
``dumps``. Each ``as_json`` gives the wire shape of docs/contracts.md: the keys in their
order, optional keys only when they say something. ``fit_result`` fits a bulky result into
the orchestrator's context budget without losing its structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

# A digested sub-task text never gets less than this many bytes.
MIN_SHARE = 400

WireStatus = Literal["ok", "error", "no_fit"]


@dataclass(frozen=True, slots=True)
class SubtaskResult:
    """How one sub-task ended, as the orchestrator is told.

    Attributes:
        status: ``ok``, ``error`` or ``no_fit`` (a refused sub-task is an ``error`` here).
        backend: the backend that answered, or the last one tried (None: none was).
        text: the answer (``ok`` only).
        error: why there is no answer (not ``ok``).
        truncated: the answer did not end by itself (``ok`` only).
        note: what was ignored in the request and why the answer is incomplete (``ok``).
        digest_of_bytes: the size of ``text`` before it was digested to fit the context
            (None: ``text`` is whole).
    """

    status: WireStatus
    backend: str | None
    text: str = ""
    error: str | None = None
    truncated: bool = False
    note: str | None = None
    digest_of_bytes: int | None = None

    def as_json(self, index: int | None = None) -> dict[str, Any]:
        """The JSON-ready mapping; ``index`` (its place in a ``delegate_many``) comes first."""
        if index is None:
            out: dict[str, Any] = {"status": self.status, "backend": self.backend}
        else:
            out = {"index": index, "status": self.status, "backend": self.backend}
        if self.status == "ok":
            out["text"] = self.text
            if self.truncated:
                out["truncated"] = True
            if self.note is not None:
                out["note"] = self.note
        else:
            out["error"] = self.error
        if self.digest_of_bytes is not None:
            out["digest_of_bytes"] = self.digest_of_bytes
        return out


@dataclass(frozen=True, slots=True)
class ManyResult:
    """A ``delegate_many`` call's result: one entry per task, in the order asked."""

    entries: tuple[SubtaskResult, ...]

    def as_json(self) -> list[dict[str, Any]]:
        """The JSON-ready list; each entry carries its index."""
        return [entry.as_json(i) for i, entry in enumerate(self.entries)]


@dataclass(frozen=True, slots=True)
class CallError:
    """A call rejected as a whole (bad arguments, unknown tool, too many sub-tasks)."""

    error: str

    def as_json(self) -> dict[str, Any]:
        """The JSON-ready mapping: an error that names no backend, since no task ran."""
        return {"status": "error", "backend": None, "error": self.error}


ToolResult: TypeAlias = SubtaskResult | ManyResult | CallError
RESULT_TYPES = (SubtaskResult, ManyResult, CallError)


def dumps(result: ToolResult) -> str:
    """``result`` as the JSON text its reader receives (UTF-8 kept as is)."""
    return json.dumps(result.as_json(), ensure_ascii=False)


def fit_result(result: ToolResult, budget: int, whole: str | None = None) -> str:
    """The JSON text of ``result``, with bulky sub-task texts digested to fit ``budget``.

    The structure survives (every entry keeps its index, status and backend); only
    ``text`` fields over their share of the budget are replaced by a budgeted digest,
    so the orchestrator still sees every result and knows what was shortened.

    Args:
        result: the tool result.
        budget: the bytes it may take in the orchestrator's context.
        whole: ``dumps(result)``, when the caller has it; returned as is (the same
            object) when it fits, so a result that fits is serialized once.

    Returns:
        The JSON text: ``whole`` when it fits, else the digested result's.
    """
    text = whole if whole is not None else dumps(result)
    size = len(text.encode())
    if size <= budget or isinstance(result, CallError):
        return text
    entries = result.entries if isinstance(result, ManyResult) else (result,)
    answered = [e for e in entries if e.status == "ok"]
    if not answered:
        return text
    skeleton = size - sum(len(e.text.encode()) for e in answered)
    share = max(MIN_SHARE, (budget - skeleton) // len(answered))
    if isinstance(result, ManyResult):
        return dumps(ManyResult(tuple(_digested(e, share) for e in entries)))
    return dumps(_digested(result, share))


def _digested(entry: SubtaskResult, share: int) -> SubtaskResult:
    """``entry`` with its text digested to ``share`` bytes, when it is longer."""
    if entry.status != "ok":
        return entry
    size = len(entry.text.encode())
    if size <= share:
        return entry
    from tanglebrain import compress  # only bulky tool results need it

    return replace(entry, text=compress.budgeted(entry.text, share), digest_of_bytes=size)
