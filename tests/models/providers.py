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
- Gemini (https://ai.google.dev/api/generate-content): ``POST
  /v1beta/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse``) with
  ``x-goog-api-key``; ``usageMetadata`` holds ``promptTokenCount`` (cached tokens
  included), ``cachedContentTokenCount``, ``candidatesTokenCount``, ``totalTokenCount``.
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


def _require(ok: bool, status: int, message: str) -> None:
    if not ok:
        raise Refused(status, message)


def _anthropic(fake: Fake, path: str, headers: Any, body: Any) -> tuple[str, bytes]:
    _require(path == "/v1/messages", 404, f"no route {path}")
    _require(headers.get("x-api-key") == fake.key, 401, "invalid x-api-key")
    _require(headers.get("anthropic-version") == ANTHROPIC_VERSION, 400, "anthropic-version")
    _require(isinstance(body.get("model"), str), 400, "model: field required")
    _require(isinstance(body.get("max_tokens"), int), 400, "max_tokens: field required")
    messages = body.get("messages")
    _require(isinstance(messages, list) and bool(messages), 400, "messages: field required")
    _require(all(m.get("role") in ("user", "assistant") for m in messages), 400, "role")
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
        except (Refused, json.JSONDecodeError) as exc:
            status = exc.status if isinstance(exc, Refused) else 400
            kind, data = "application/json", json.dumps(self.server.error(status, exc)).encode()
        self.send_response(status)
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
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        status, "invalid_request_error"
    )
    return {"type": "error", "error": {"type": kind, "message": str(exc)}}


def _gemini_error(status: int, exc: Exception) -> dict[str, Any]:
    state = {401: "UNAUTHENTICATED", 404: "NOT_FOUND"}.get(status, "INVALID_ARGUMENT")
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
