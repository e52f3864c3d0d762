"""The delegate tools as an orchestrator is offered them: the menu and the JSON schemas.

``menu`` lists the specialists (also in the system prompt, see ``briefing``);
``tool_schemas`` gives ``delegate`` and ``delegate_many`` as OpenAI function tools whose
enums hold only what this run can use (docs/contracts.md). ``delegation`` validates and
runs the calls; ``mcp`` offers the same tools to MCP clients.
"""

from __future__ import annotations

from typing import Any

from tanglebrain.roster import Backend
from tanglebrain.runtime import RunContext

TAG_HINT = "a good_at tag from the menu"
PROMPT_HINT = "the sub-task, complete in itself: the specialist sees nothing else"


def _task_schema(tags: list[str], ids: list[str], attachments: list[str]) -> dict[str, Any]:
    """One sub-task's JSON schema; a property is offered only when the run gives it a use."""
    properties: dict[str, Any] = {"prompt": {"type": "string", "description": PROMPT_HINT}}
    if tags:
        properties["task"] = {"type": "string", "description": TAG_HINT, "enum": tags}
    if ids:
        properties["backend"] = {"type": "string", "description": "to pin one", "enum": ids}
    if attachments:  # offered only when there is something to attach: small models invent names
        properties["attach"] = {
            "type": "array",
            "description": "names of attachments to hand over in full",
            "items": {"type": "string", "enum": attachments},
        }
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
    }


def _pinning_helps(backends: list[Backend]) -> bool:
    """Whether a ``backend`` pin picks anything a ``task`` tag cannot: a shared tag."""
    seen: set[str] = set()
    for b in backends:
        if seen & set(b.good_at):
            return True
        seen |= set(b.good_at)
    return False


def menu(ctx: RunContext, orchestrator_id: str | None) -> str:
    """One line per enabled backend: id, good_at, relative cost, context window."""
    lines = []
    for b in ctx.usable():
        if b.id == orchestrator_id:
            continue
        window = ctx.window_of(b)
        lines.append(
            f"- {b.id}: good at {', '.join(b.good_at)}; relative cost {b.cost:g}; "
            f"context window {f'{window} tokens' if window else 'unknown'}"
        )
    return "\n".join(lines) or "- (no specialist is enabled)"


def tool_schemas(
    ctx: RunContext, orchestrator_id: str | None, *, lean: bool = False
) -> list[dict[str, Any]]:
    """The OpenAI function-tool schemas of ``delegate`` and ``delegate_many``.

    Args:
        ctx: the run.
        orchestrator_id: the orchestrator, left out of the menu.
        lean: for an orchestrator model whose system prompt holds the menu: the
            descriptions leave it out, and ``backend`` is offered only when two
            specialists share a tag (small models copy every field they see).

    Returns:
        The two tool schemas (docs/contracts.md).
    """
    enabled = [b for b in ctx.usable() if b.id != orchestrator_id]
    tags = sorted({t for b in enabled for t in b.good_at})
    ids = [b.id for b in enabled] if not lean or _pinning_helps(enabled) else []
    task = _task_schema(tags, ids, sorted(ctx.attachments))
    menu_ = "" if lean else f"\nBackends:\n{menu(ctx, orchestrator_id)}"
    one = "Hand one sub-task to a specialist and get its answer."
    many = (
        "Run several independent sub-tasks at once; one result per task, in order "
        f"(at most {ctx.max_subtasks} sub-tasks per run)."
    )
    if not lean:
        one += " Pick by task tag (cheapest fitting backend) or by backend id."
    tasks = {"type": "array", "items": task, "minItems": 1}
    listed = {"type": "object", "properties": {"tasks": tasks}, "required": ["tasks"]}
    return [
        _function("delegate", one + menu_, task),
        _function("delegate_many", many + menu_, {**listed, "additionalProperties": False}),
    ]


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }
