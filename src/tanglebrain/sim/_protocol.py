"""OpenAI chat-completions JSON of the simulator: completions, stream chunks, usage, SSE.

Pure builders, no I/O: :mod:`tanglebrain.sim._respond` fills them with the content composed
from a model spec and :mod:`tanglebrain.sim._http` writes them out. Every completion and chunk
carries ``system_fingerprint: "tanglebrain-sim"`` (:data:`FINGERPRINT`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from tanglebrain.sim._scripts import ModelSpec, Reply, content_text, messages_of

FINGERPRINT = "tanglebrain-sim"
"""The ``system_fingerprint`` of every simulated completion."""


def usage(
    body: Mapping[str, Any], spec: ModelSpec, reply: Reply, completion: int | None = None
) -> dict[str, Any]:
    """Compute the reported usage.

    ``prompt_tokens`` = ceil(chars of all message contents / 4) + ceil(chars of the
    compact JSON of ``tools`` / 4), times ``prompt_x=`` (rounded up) when the spec sets it;
    ``completion_tokens`` = ``completion`` when given, else ceil(chars of text plus
    tool-call names and arguments / 4), unless the spec sets ``tokens=``. With ``cached=N``,
    ``prompt_tokens_details.cached_tokens`` = min(N, ``prompt_tokens``): in OpenAI's
    shape the cached tokens are part of the prompt tokens.
    """
    chars = sum(len(content_text(m.get("content"))) for m in messages_of(body))
    tools = body.get("tools")
    tool_chars = len(json.dumps(tools, separators=(",", ":"))) if tools else 0
    prompt = math.ceil(chars / 4) + math.ceil(tool_chars / 4)
    if "prompt_x" in spec.opts:
        prompt = math.ceil(prompt * spec.num("prompt_x", 1.0))
    out_chars = len(reply.text or "") + sum(len(n) + len(a) for _, n, a in reply.tool_calls)
    if completion is None:
        completion = spec.int_opt("tokens")
    if completion is None:
        completion = math.ceil(out_chars / 4)
    used: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = spec.int_opt("cached")
    if cached is not None:
        used["prompt_tokens_details"] = {"cached_tokens": min(cached, prompt), "audio_tokens": 0}
    return used


def envelope(cid: str, spec: ModelSpec, obj: str, choices: list[Any]) -> dict[str, Any]:
    """The fields every completion and chunk share (incl. ``system_fingerprint``)."""
    return {
        "id": cid,
        "object": obj,
        "created": int(time.time()),
        "model": spec.raw,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }


def completion(
    cid: str, spec: ModelSpec, reply: Reply, used: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body (``finish`` overrides the finish reason)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in reply.tool_calls
        ]
    finish = finish or _finish(spec, reply)
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    payload = envelope(cid, spec, "chat.completion", [choice])
    payload["usage"] = used
    return payload


def _pieces(text: str, parts: int) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty pieces."""
    step = max(1, -(-len(text) // parts))
    return [text[i : i + step] for i in range(0, len(text), step)]


def delta_chunk(
    cid: str, spec: ModelSpec, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` event carrying ``delta``."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return envelope(cid, spec, "chat.completion.chunk", [choice])


def chunks(cid: str, spec: ModelSpec, reply: Reply) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed reply (without usage/[DONE])."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return delta_chunk(cid, spec, delta, finish)

    out = [chunk({"role": "assistant", "content": ""})]
    pieces = _pieces(reply.text or "", spec.int_opt("pieces", 3) or 3)
    out += [chunk({"content": piece}) for piece in pieces]
    for k, (call_id, name, args) in enumerate(reply.tool_calls):
        head = {
            "index": k,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [head]}))
        out += [
            chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
            for piece in _pieces(args, 2)
        ]
    out.append(chunk({}, _finish(spec, reply)))
    return out


def _finish(spec: ModelSpec, reply: Reply) -> str | None:
    if spec.str_opt("finish", "") == "none":
        return None
    return "tool_calls" if reply.tool_calls else "stop"


def sse(event: dict[str, Any] | str) -> bytes:
    """Encode one server-sent event: a JSON object, or a literal such as ``[DONE]``."""
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()
