"""Strict fakes of Anthropic's Messages API and Gemini's generateContent on 127.0.0.1.

Each speaks its provider's documented wire format and nothing else: a request whose path,
headers or body the provider would refuse is refused (400/401/404, in the provider's error
shape), so a test passes only when litellm sends what the real service expects. The usage
each reports is set by the test, in the provider's own field names:

- Anthropic (https://docs.anthropic.com/en/api/messages): ``POST /v1/messages`` with
  ``x-api-key`` and ``anthropic-version``; ``usage`` holds ``input_tokens`` (prompt tokens
  *not* read from or written to the cache), ``cache_read_input_tokens``,
  ``cache_creation_input_tokens`` and ``output_tokens``. Streamed: ``message_start``
  carries the input side of the usage, ``message_delta`` the final ``output_tokens``.
  ``system`` is a string or a list of text blocks; ``tools`` hold ``name`` and
  ``input_schema``; ``cache_control`` (https://docs.anthropic.com/en/docs/build-with-claude/
  prompt-caching) is ``{"type": "ephemeral"}`` (optionally with a ``ttl``) on at most 4
  blocks of a request.
- Gemini (https://ai.google.dev/api/generate-content): ``POST
  /v1beta/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``) with
  ``x-goog-api-key``; ``usageMetadata`` holds ``promptTokenCount`` (cached tokens
  included), ``cachedContentTokenCount``, ``candidatesTokenCount``, ``totalTokenCount``.

``Fake.fail`` makes either answer every request with that HTTP status and an error body
in the provider's shape (https://ai.google.dev/gemini-api/docs/troubleshooting: e.g. 429
``RESOURCE_EXHAUSTED``), with ``Fake.retry_after`` as its ``Retry-After`` header if set.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC_VERSION = "2023-06-01"
# The Messages API's request fields; anything else is refused ("Extra inputs are not
# permitted").
_ANTHROPIC_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream",
    "metadata", "stop_sequences", "temperature", "top_p", "top_k", "thinking",
    "service_tier", "cache_control",
})  # fmt: skip
_MAX_CACHE_BREAKPOINTS = 4
_GEMINI_PATH = re.compile(r"^/v1beta/models/([\w.-]+):(generateContent|streamGenerateContent)$")


class Refused(Exception):
    """A request the real provider would refuse."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Fake:
    """What the fake answers with and what it was sent."""

    key: str
    text: str = "fake reply"
    usage: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    fail: int | None = None  # answer every request with this HTTP error status
    retry_after: str | None = None


class Failed(Exception):
    """The error a test asked the fake to answer with (``Fake.fail``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"simulated failure {status}")
        self.status = status


def _require(ok: bool, status: int, message: str) -> None:
    if not ok:
        raise Refused(status, message)


def _cache_controls(value: Any) -> int:
    """How many ``cache_control`` markers ``value`` holds; refuses a malformed one."""
    if isinstance(value, list):
        return sum(_cache_controls(v) for v in value)
    if not isinstance(value, dict):
        return 0
    found = 0
    if "cache_control" in value:
        mark = value["cache_control"]
        _require(isinstance(mark, dict) and mark.get("type") == "ephemeral", 400,
                 "cache_control.type: Input should be 'ephemeral'")  # fmt: skip
        _require(set(mark) <= {"type", "ttl"} and mark.get("ttl", "5m") in ("5m", "1h"),
                 400, "cache_control: Extra inputs are not permitted")  # fmt: skip
        found = 1
    return found + sum(_cache_controls(v) for k, v in value.items() if k != "cache_control")


def _check_anthropic_body(body: dict[str, Any]) -> None:
    extra = sorted(set(body) - _ANTHROPIC_FIELDS)
    _require(not extra, 400, f"{extra}: Extra inputs are not permitted")
    _require(isinstance(body.get("model"), str), 400, "model: field required")
    _require(isinstance(body.get("max_tokens"), int), 400, "max_tokens: field required")
    messages = body.get("messages")
    _require(isinstance(messages, list) and bool(messages), 400, "messages: field required")
    _require(all(m.get("role") in ("user", "assistant") for m in messages), 400, "role")
    system = body.get("system", "")
    if isinstance(system, list):
        _require(all(isinstance(b, dict) and b.get("type") == "text"
                     and isinstance(b.get("text"), str) for b in system),
                 400, "system: a list of text blocks")  # fmt: skip
    else:
        _require(isinstance(system, str), 400, "system: a string or text blocks")
    for tool in body.get("tools", []):
        _require(isinstance(tool, dict) and isinstance(tool.get("name"), str)
                 and isinstance(tool.get("input_schema"), dict), 400,
                 "tools: name and input_schema required")  # fmt: skip
        _require(set(tool) <= {"name", "description", "input_schema", "cache_control", "type"},
                 400, "tools: Extra inputs are not permitted")  # fmt: skip
    marks = _cache_controls([system, body.get("tools", []), messages])
    _require(marks <= _MAX_CACHE_BREAKPOINTS, 400,
             f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
             f"provided. Found {marks}.")  # fmt: skip


def _anthropic(fake: Fake, path: str, headers: Any, body: Any) -> tuple[str, bytes]:
    _require(path == "/v1/messages", 404, f"no route {path}")
    _require(headers.get("x-api-key") == fake.key, 401, "invalid x-api-key")
    _require(headers.get("anthropic-version") == ANTHROPIC_VERSION, 400, "anthropic-version")
    _check_anthropic_body(body)
    if fake.fail is not None:
        raise Failed(fake.fail)
    usage = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **fake.usage}
    message = {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": fake.text}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": usage,
    }  # fmt: skip
    if not body.get("stream"):
        return "application/json", json.dumps(message).encode()
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": fake.text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": usage["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return "text/event-stream", sse.encode()


def _gemini(fake: Fake, path: str, headers: Any, body: Any) -> tuple[str, bytes]:
    route, _, query = path.partition("?")
    match = _GEMINI_PATH.match(route)
    _require(match is not None, 404, f"no route {route}")
    assert match is not None
    stream = match.group(2) == "streamGenerateContent"
    _require(not stream or query == "alt=sse", 400, "streamed without alt=sse")
    _require(headers.get("x-goog-api-key") == fake.key, 401, "API key not valid")
    contents = body.get("contents")
    _require(isinstance(contents, list) and bool(contents), 400, "contents is not specified")
    _require(all(c.get("role") in ("user", "model") for c in contents), 400, "role")
    _require(all(isinstance(c.get("parts"), list) for c in contents), 400, "parts")
    if fake.fail is not None:
        raise Failed(fake.fail)
    meta = dict(fake.usage)
    cached = meta.get("cachedContentTokenCount", 0)
    meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": meta["promptTokenCount"]}]
    if cached:
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    reply = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": fake.text}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": meta, "modelVersion": match.group(1), "responseId": "fake",
    }  # fmt: skip
    if not stream:
        return "application/json", json.dumps(reply).encode()
    return "text/event-stream", f"data: {json.dumps(reply)}\r\n\r\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake, answer = self.server.fake, self.server.answer
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            _require(self.headers.get_content_type() == "application/json", 400, "content-type")
            body = json.loads(raw)
            _require(isinstance(body, dict), 400, "body is not a JSON object")
            fake.requests.append({"path": self.path, "body": body})
            kind, data = answer(fake, self.path, self.headers, body)
            status = 200
        except (Refused, Failed, json.JSONDecodeError) as exc:
            status = exc.status if isinstance(exc, Refused | Failed) else 400
            kind, data = "application/json", json.dumps(self.server.error(status, exc)).encode()
        self.send_response(status)
        if status >= 400 and fake.retry_after is not None:
            self.send_header("Retry-After", fake.retry_after)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: Fake, answer: Any, error: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake, self.answer, self.error = fake, answer, error


def _anthropic_error(status: int, exc: Exception) -> dict[str, Any]:
    kind = {
        401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
        500: "api_error", 529: "overloaded_error",
    }.get(status, "invalid_request_error")  # fmt: skip
    return {"type": "error", "error": {"type": kind, "message": str(exc)}}


def _gemini_error(status: int, exc: Exception) -> dict[str, Any]:
    state = {
        401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
        503: "UNAVAILABLE",
    }.get(status, "INVALID_ARGUMENT")  # fmt: skip
    return {"error": {"code": status, "message": str(exc), "status": state}}


@contextmanager
def serve(provider: str, fake: Fake) -> Iterator[Fake]:
    """Run the fake ``provider`` ("anthropic" or "gemini") on 127.0.0.1 while in the block.

    ``fake.base_url`` is set to what the roster's ``api_base`` should be.
    """
    answer, error, root = {
        "anthropic": (_anthropic, _anthropic_error, ""),
        "gemini": (_gemini, _gemini_error, "/v1beta"),
    }[provider]
    server = _Server(fake, answer, error)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}{root}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
