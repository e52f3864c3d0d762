"""An orchestrator turn's tool calls: structured or written as text, run once each.

Calls written as text are found by ``textcalls.parse`` (re-exported here);
``StreamGate`` keeps them off stdout while a reply streams; ``run_calls`` runs a turn's calls,
an identical call only once per run (small models repeat theirs), and serializes each result
once, into its tool message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

import anyio

from tanglebrain import models
from tanglebrain.runtime import RunContext
from tanglebrain.textcalls import Parsed as Parsed
from tanglebrain.textcalls import TextCall as TextCall
from tanglebrain.textcalls import parse as parse
from tanglebrain.trace import Digest, ToolCall, Turn

# The run's warning when an orchestrator's calls came as text (after its id).
AS_TEXT = (
    "writes tool calls as text: they were recognized and run (ids text-…); a chat template "
    "that parses tool calls makes them reliable"
)
# A streamed reply is held back from the first character that may open a call.
_SUSPECT = re.compile(r"[{\[`<]")


class StreamGate:
    """A turn's text on its way to the reader: prose at once, possible tool calls held back.

    Everything from the first character that may open a call (``{``, ``[``, a backtick,
    ``<``) is held until ``finish``, which shows the prose part of it.
    """

    def __init__(self, offered: Collection[str], on_text: Callable[[str], None] | None) -> None:
        """Gate a turn that offered the tools ``offered``; ``on_text`` shows text (or None)."""
        self.offered, self.on_text = frozenset(offered), on_text
        self.streamed = False  # whether any text reached ``on_text``
        self._blank = ""  # text waiting to be shown: whitespace before anything visible
        self._sent: list[str] = []
        self._held: list[str] | None = None

    def feed(self, delta: str) -> None:
        """Take the next piece of a streamed reply; show what may be shown now."""
        if self._held is not None:
            self._held.append(delta)
            return
        m = _SUSPECT.search(delta) if self.offered else None
        cut = len(delta) if m is None else m.start()
        if m is not None:
            self._held = [delta[cut:]]
        self._sent.append(delta[:cut])
        self.show(delta[:cut])

    def show(self, text: str) -> None:
        """Pass ``text`` to the reader (leading whitespace waits for visible text)."""
        # Until something visible is shown, a failed turn can still fail over cleanly.
        self._blank += text
        if self.on_text is not None and self._blank and (self.streamed or self._blank.strip()):
            self.streamed = True
            self.on_text(self._blank)
            self._blank = ""

    def finish(self, text: str) -> Parsed:
        """The reply ``text`` is whole: parse it; show the prose that was held back."""
        if self.on_text is None:  # nothing was streamed
            return parse(text, self.offered)
        held = parse("".join(self._held or ()), self.offered)
        self.show(held.prose)
        self._blank = ""  # nothing visible came: whatever replaces the prose starts clean
        return Parsed(held.calls, "".join(self._sent) + held.prose, held.broken)


def turn_calls(
    reply: models.Reply, offered: Collection[str], prefix: str
) -> tuple[tuple[models.ToolCallRequest, ...], Parsed]:
    """A reply's tool calls: the structured ones, else those written in its text.

    Args:
        reply: the orchestrator's reply.
        offered: the tools offered on that turn.
        prefix: calls found in the text get the ids ``{prefix}-0``, ``{prefix}-1``, ….

    Returns:
        The calls, and the reply's text parsed (its prose is the text without the calls).
    """
    if reply.tool_calls or not offered:
        return reply.tool_calls, Parsed((), reply.text)
    parsed = parse(reply.text, offered)
    calls = tuple(
        models.ToolCallRequest(f"{prefix}-{i}", c.name, c.arguments)
        for i, c in enumerate(parsed.calls)
    )
    return calls, parsed


# --- running a turn's calls ----------------------------------------------------------------


def call_key(name: str, arguments: str) -> str | None:
    """What makes two calls the same: the tool and its arguments as data (None: not JSON)."""
    try:
        args = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return None
    return name + json.dumps(args, sort_keys=True, ensure_ascii=False)


async def run_calls(
    ctx: RunContext,
    turn: Turn,
    prose: str,
    calls: tuple[models.ToolCallRequest, ...],
    answered: dict[str, str],
) -> tuple[list[dict[str, Any]], int]:
    """Run a turn's tool calls concurrently; return its messages and how many were repeats.

    The messages are the assistant's (``prose`` and the calls) and one tool message per
    call, in order. A call identical to one already answered in this run (``answered``:
    call key → tool message) gets the earlier result again, without running anything; so
    does a call identical to an earlier one of the same turn, once that one is answered.
    """
    nodes = [ToolCall(id=tc.id, name=tc.name, arguments=tc.arguments) for tc in calls]
    turn.tool_calls.extend(nodes)
    keys = [call_key(tc.name, tc.arguments) for tc in calls]
    repeats = [k is not None and k in answered for k in keys]
    leader: dict[str, int] = {}  # the first call of each key in this turn
    for i, key in enumerate(keys):
        if key is not None:
            leader.setdefault(key, i)
    texts = ["" for _ in calls]

    async def one(i: int) -> None:
        key = keys[i]
        if key is not None and repeats[i]:
            texts[i] = answered[key]
        else:
            texts[i] = await _execute(ctx, turn, calls[i], nodes[i])
            if key is not None and nodes[i].error is None:
                answered[key] = texts[i]

    async with anyio.create_task_group() as tg:
        for i, key in enumerate(keys):
            if key is None or repeats[i] or leader[key] == i:
                tg.start_soon(one, i)
    for i, key in enumerate(keys):
        if key is not None and not repeats[i] and leader[key] != i:  # same call, same turn
            texts[i], nodes[i].error = texts[leader[key]], nodes[leader[key]].error
        nodes[i].context_bytes = len(texts[i].encode())
        nodes[i].result_bytes = nodes[i].result_bytes or nodes[i].context_bytes  # not run
    if any(repeats) or len(leader) < sum(k is not None for k in keys):
        ctx.run.warn(
            f"{turn.call.backend} repeated a tool call already asked for: the same results "
            "were given again, nothing was re-run"
        )
    tool_messages = [
        {"role": "tool", "tool_call_id": tc.id, "content": text}
        for tc, text in zip(calls, texts, strict=True)
    ]
    return [_assistant(prose, calls), *tool_messages], sum(repeats)


async def _execute(ctx: RunContext, turn: Turn, tc: models.ToolCallRequest, node: ToolCall) -> str:
    """Run one tool call; return its result as the tool message's text, serialized once."""
    # Loaded with the first tool call: a run answered without delegating never needs them.
    from tanglebrain import delegation, results

    result = await delegation.execute(
        ctx, tc.name, tc.arguments, node, turn.call.backend, lenient=True
    )
    whole = results.dumps(result)
    node.result_bytes = len(whole.encode())
    text = results.fit_result(result, ctx.roster.settings.context_budget_bytes, whole)
    if text is not whole:  # digested to fit the context budget
        size = len(text.encode())
        if size < node.result_bytes:
            ctx.run.digests.append(Digest(f"tool:{tc.id}", node.result_bytes, size))
    return text


def _assistant(text: str, calls: tuple[models.ToolCallRequest, ...]) -> dict[str, Any]:
    asked = [
        {"id": tc.id, "type": "function",
         "function": {"name": tc.name, "arguments": echoed_arguments(tc.arguments)}}
        for tc in calls
    ]  # fmt: skip
    return {"role": "assistant", "content": text.strip() or None, "tool_calls": asked}


def echoed_arguments(arguments: str) -> str:
    """A call's arguments as the history repeats them to the model: a JSON object's text.

    Arguments that are not a JSON object (cut short, empty, a bare list, ``NaN``) are sent back as
    ``{}``; the call's tool message says what was wrong with them. llama.cpp's server
    refuses a whole request whose history holds arguments it cannot parse (HTTP 500 on
    every later turn), and translating transports parse them to build their provider's
    call. Valid arguments are repeated byte for byte (a prompt cache keeps its prefix).
    """
    try:  # strict JSON: NaN and Infinity are Python's, not JSON's (llama.cpp refuses them)
        valid = isinstance(json.loads(arguments, parse_constant=_not_json), dict)
    except (ValueError, RecursionError):
        valid = False
    return arguments if valid else "{}"


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
