"""The OpenAI wire format of ``tanglebrain serve``: request mapping, errors, responses.

No I/O here; :mod:`tanglebrain.serve` does the HTTP.

* **model** is a routing directive: ``auto`` is the full router (like ``tanglebrain
  "…"``), an enabled backend id pins that backend, anything else is a 404
  ``model_not_found``. The response's ``model`` names the backend that wrote the answer.
* **messages**: the last message must be ``user`` text and is the request. Earlier
  messages (``system``/``developer``/``user``/``assistant``, and a ``tool``/``function``
  result) are rendered in order, each in a ``<<<role>>> … <<<end role>>>`` block, under
  "Earlier conversation (oldest first):" in front of "Current request:" and it; with no
  earlier message the prompt is exactly the user's text. An assistant's ``tool_calls``
  are rendered as ``called NAME(ARGUMENTS)`` lines. Content is a string or a list of
  ``text`` parts; any other part (images, audio, files) is a 400 ``unsupported_content``.
* **parameters**: ``max_completion_tokens`` (or ``max_tokens``) lowers the output cap of
  the calls that write the answer (the orchestrator's turns); an answer cut at a cap, or
  stopped for repeating itself, ends with ``finish_reason: "length"``. ``tools`` (unless
  ``tool_choice`` is ``"none"``), a ``response_format`` other than ``text``, and
  ``n > 1`` are 400 ``unsupported_parameter``; sampling parameters are ignored.
* **usage** counts every model call of the run (orchestrator and sub-tasks). The
  ``tanglebrain`` field carries ``run_id``, ``subtasks``, ``cost_usd`` (None when a price
  is unknown), ``degraded`` and ``warnings``.
* **errors** are ``{"error": {message, type, code, param}}``: 400 ``invalid_json``
  (also for JSON nested too deeply to parse),
  ``invalid_request``, ``unsupported_content``, ``unsupported_parameter``,
  ``unroutable_request`` (e.g. the request fits no context window); 401
  ``invalid_api_key``; 402 ``budget_exceeded`` (OpenAI clients do not retry it); 404
  ``model_not_found``, ``unknown_url``; 405 ``method_not_allowed``; 413
  ``request_too_large``; 415 ``unsupported_media_type``; 429 ``rate_limited`` (every
  candidate was rate limited; ``Retry-After`` when they said how long); 502
  ``backends_failed`` (every candidate failed; one reason per backend); 503
  ``backend_not_configured`` (an API key is missing); 500 ``internal_error`` (a bug;
  details only in the server's log). 502 and 503 carry ``x-should-retry: false``: the
  run retried and failed over already, so OpenAI's SDKs do not run it again.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tanglebrain.errors import (
    BudgetExceeded,
    ConfigError,
    MissingKeyError,
    NoAnswerError,
    TanglebrainError,
)
from tanglebrain.orchestrator import Request
from tanglebrain.roster import Roster
from tanglebrain.runtime import TRUNCATED
from tanglebrain.trace import Run, RunFigures

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Tells OpenAI's SDKs not to retry: the run already retried and failed over.
NO_RETRY = {"x-should-retry": "false"}


class ApiError(Exception):
    """An OpenAI-shaped HTTP error, with the headers it is sent with."""

    def __init__(
        self, status: int, message: str, code: str, type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.type = status, message, code, type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code,
                          "param": None}}  # fmt: skip


class ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclass(frozen=True)
class Chat:
    """A validated chat-completions request."""

    request: Request
    stream: bool = False
    include_usage: bool = False


# --- request mapping -----------------------------------------------------------------


def load_json(raw: bytes) -> Any:
    """The decoded request body.

    Raises:
        ApiError: 400 ``invalid_json`` when the body is not JSON or is nested deeper than
            the decoder can follow (a chat request needs a handful of levels).
    """
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        # The decoder recurses per bracket; a small body of brackets exhausts the stack.
        raise ApiError(400, "the body is not valid JSON: it is nested too deeply; a chat "
                       "request needs only a few levels of arrays and objects",
                       "invalid_json") from None  # fmt: skip


def parse_chat(body: Any, roster: Roster) -> Chat:
    """Map a chat-completions body to a ``Chat``.

    Raises:
        ApiError: 400 for a malformed request, 404 for an unknown model.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required: 'auto' or a backend id", "invalid_request")
    if model != "auto" and not ((b := roster.get(model)) and b.enabled):
        raise unknown_model(model, ["auto", *(b.id for b in roster.enabled())])
    _refuse_unsupported(body)
    cap = _answer_cap(body)
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ApiError(400, "'stream' must be a boolean, 'stream_options' an object",
                       "invalid_request")  # fmt: skip
    prompt = render_messages(body.get("messages"))
    backend = None if model == "auto" else model
    request = Request(prompt, backend=backend, origin="serve", answer_max_tokens=cap)
    return Chat(request, stream, stream and options.get("include_usage") is True)


def unknown_model(model: str, ids: Sequence[str]) -> ApiError:
    """404 ``model_not_found``, with the ids that exist."""
    return ApiError(404, f"model {model!r} does not exist; use one of: {', '.join(ids)}",
                    "model_not_found")  # fmt: skip


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """400 ``unsupported_parameter`` for what a text answer cannot honour."""
    tools_off = body.get("tool_choice") == "none" or body.get("function_call") == "none"
    if (body.get("tools") or body.get("functions")) and not tools_off:
        raise ApiError(400, "tools are not supported: tanglebrain answers with text "
                       "(tool_choice \"none\" is accepted)", "unsupported_parameter")  # fmt: skip
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError(400, "response_format is not supported: tanglebrain answers with "
                       "free text (only {\"type\": \"text\"} is accepted)",
                       "unsupported_parameter")  # fmt: skip
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):  # true is not 1 here
        raise ApiError(400, "only n = 1 is supported", "unsupported_parameter")


def _answer_cap(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` (or the older ``max_tokens``), when given."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise ApiError(400, f"'{name}' must be a positive integer", "invalid_request")
        return value
    return None


def render_messages(messages: Any) -> str:
    """The prompt for ``messages``: earlier turns in delimited blocks, then the last one.

    Raises:
        ApiError: 400 when the messages are malformed or not all text.
    """
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array", "invalid_request")
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ROLES:
            raise ApiError(400, f"messages[{i}]: role must be one of {', '.join(ROLES)}",
                           "invalid_request")  # fmt: skip
        text = _text(msg.get("content"), i)
        if role == "assistant" and isinstance(msg.get("tool_calls"), list):
            text = "\n".join([text, *map(_called, msg["tool_calls"])]).strip()
        turns.append((str(role), text))
    role, last = turns[-1]
    if role != "user" or not last.strip():
        raise ApiError(400, "the last message must be a user message with text",
                       "invalid_request")  # fmt: skip
    earlier = [f"<<<{r}>>>\n{t}\n<<<end {r}>>>" for r, t in turns[:-1] if t.strip()]
    if not earlier:
        return last
    return ("Earlier conversation (oldest first):\n" + "\n".join(earlier)
            + "\n\nCurrent request:\n" + last)  # fmt: skip


def _called(call: Any) -> str:
    """An assistant's tool call as a line of the transcript."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return ""
    name, arguments = function.get("name"), function.get("arguments")
    return f"called {name if isinstance(name, str) else '?'}({_plain(arguments)})"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _text(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ApiError(400, f"messages[{i}].content must be a string or an array of parts",
                       "invalid_request")  # fmt: skip
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ApiError(400, f"messages[{i}].content[{j}] must be an object with a string "
                           "'type'", "invalid_request")  # fmt: skip
        kind = part["type"]
        if kind != "text":  # cut: never echo an arbitrarily large value
            raise ApiError(400, f"messages[{i}].content[{j}]: content type {kind[:40]!r} is not "
                           "supported; tanglebrain serve accepts text only",
                           "unsupported_content")  # fmt: skip
        if not isinstance(part.get("text"), str):
            raise ApiError(400, f"messages[{i}].content[{j}].text must be a string",
                           "invalid_request")  # fmt: skip
        texts.append(part["text"])
    return "\n".join(texts)


def error_for(exc: BaseException) -> ApiError:
    """The HTTP error a failed run answers with."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BudgetExceeded):
        return ApiError(402, str(exc), "budget_exceeded", "insufficient_quota")
    if isinstance(exc, NoAnswerError):
        reasons = "; ".join(str(f) for f in exc.failures) or "no backend was tried"
        if exc.failures and all(getattr(f, "kind", None) == "rate_limit" for f in exc.failures):
            return _rate_limited(exc, reasons)
        return ApiError(502, f"no answer: every candidate backend failed: {reasons}",
                        "backends_failed", "server_error", NO_RETRY)  # fmt: skip
    if isinstance(exc, MissingKeyError):
        return ApiError(503, str(exc), "backend_not_configured", "server_error", NO_RETRY)
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc), "unroutable_request")
    if isinstance(exc, TanglebrainError):
        return ApiError(500, str(exc), "tanglebrain_error", "server_error")
    return ApiError(500, "internal error (see the server's log)", "internal_error", "server_error")


def _rate_limited(exc: NoAnswerError, reasons: str) -> ApiError:
    """429 when every candidate was rate limited: worth a retry, once they say so."""
    waits = [w for f in exc.failures if (w := getattr(f, "retry_after", None)) is not None]
    headers = {"retry-after": str(max(1, math.ceil(max(waits))))} if waits else {}
    return ApiError(429, f"no answer: every candidate backend is rate limited: {reasons}",
                    "rate_limited", "rate_limit_error", headers)  # fmt: skip


# --- response shapes -----------------------------------------------------------------


def finish_reason(trace: Run) -> str:
    """``length`` when the answer is a reply cut short (at a cap, or for repeating itself).

    The answer is the last turn's reply, unless a review's ruling rewrote it or the
    sub-task results stood in for a turn without prose: those are not that reply.
    """
    last = trace.turns[-1] if trace.turns else None
    answer = trace.answer.strip()
    if last is not None and last.finish_reason in TRUNCATED and answer and answer in last.text:
        return "length"
    return "stop"


def extension(trace: Run, figures: RunFigures) -> dict[str, Any]:
    """The ``tanglebrain`` field: run id, sub-task count, cost, degradation."""
    return {"run_id": trace.id, "subtasks": figures.subtasks, "cost_usd": figures.cost_usd,
            "degraded": trace.degraded, "warnings": list(trace.warnings)}  # fmt: skip


def usage(figures: RunFigures) -> dict[str, int]:
    """Tokens of every call of the run."""
    prompt, completion = figures.prompt_tokens, figures.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def completion(trace: Run) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object."""
    figures = trace.figures()
    return {
        "id": f"chatcmpl-{trace.id}", "object": "chat.completion",
        "created": int(trace.started), "model": trace.orchestrator or "auto",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": trace.answer},
                     "finish_reason": finish_reason(trace)}],
        "usage": usage(figures), "tanglebrain": extension(trace, figures),
    }  # fmt: skip


DONE = b"data: [DONE]\n\n"
"""The SSE event that ends a stream that answered."""


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as JSON."""
    return b"data: " + json_bytes(event) + b"\n\n"


_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once, not per event


def json_bytes(value: Any) -> bytes:
    """``value`` as UTF-8 JSON; a lone surrogate (see ``surrogates``) as its JSON escape.

    Relayed as the backend or client wrote it: a stream that split a character's two
    halves across events gives each event its half, and the client joins them.
    """
    return _encode(value).encode("utf-8", "backslashreplace")


def chunk(trace: Run, choices: list[dict[str, Any]], **extra: Any) -> bytes:
    """One SSE ``chat.completion.chunk`` event."""
    return sse({**_envelope(trace), "choices": choices, **extra})


def _envelope(trace: Run) -> dict[str, Any]:
    return {"id": f"chatcmpl-{trace.id}", "object": "chat.completion.chunk",
            "created": int(trace.started), "model": trace.orchestrator or "auto"}  # fmt: skip


_ROLE = b'"role": "assistant", '
_DELTA_END = b'}, "finish_reason": null}]}\n\n'


class Deltas:
    """A response's answer events; the part every one repeats is encoded once.

    The same bytes as ``chunk`` with the choice ``{"index": 0, "delta": {"role":
    "assistant", "content": text}, "finish_reason": null}`` (the role on the first only),
    ~4x cheaper (~3 instead of ~15 us): a streamed answer writes one per delta.
    """

    def __init__(self, trace: Run) -> None:
        self._trace = trace
        self._model: str | None = None
        self._head = b""

    def events(self, texts: Sequence[str], first: bool) -> bytes:
        """One event per text; ``first``: the first text opens the answer (with the role)."""
        model = self._trace.orchestrator or "auto"
        if model != self._model:  # the orchestrator is known once the run has one
            self._model = model
            self._head = b"data: " + json_bytes(_envelope(self._trace))[:-1]
            self._head += b', "choices": [{"index": 0, "delta": {'
        parts: list[bytes] = []
        for i, text in enumerate(texts):
            role = _ROLE if first and i == 0 else b""
            parts += (self._head, role, b'"content": ', json_bytes(text), _DELTA_END)
        return b"".join(parts)


class Pipe:
    """Answer deltas from the run to the response writer (never loses one to a timeout).

    On asyncio's own future and timer rather than an anyio event and cancel scope: the
    writer waits once per delta, and those cost more CPU than the delta (``serve`` always
    runs on asyncio, under uvicorn).
    """

    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, text: str) -> None:
        """Queue a delta (the run's ``on_text`` hook)."""
        self.items.append(text)
        self._wake()

    def close(self) -> None:
        """No more deltas will come."""
        self.done = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self, timeout: float) -> list[str] | None:
        """The deltas queued now ([] after ``timeout`` s of quiet), None at the end."""
        if not self.items and not self.done:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _quiet, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                timer.cancel()
        items, self.items = self.items, []
        if not items and self.done:
            return None
        return items


def _quiet(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
