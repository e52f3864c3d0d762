"""The mapping of what a backend call raised to one short ``BackendError``.

The real path (litellm over HTTP to the simulator's failure modes) is in test_llm.py; these
cases pin the shapes of messages that the simulator cannot produce.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanglebrain.errors import BackendError
from tanglebrain.models._errors import scrub, to_backend_error
from tanglebrain.models._http1 import HTTPStatusError


def raised(name: str, message: str, **attrs: Any) -> Exception:
    """An exception of class ``name`` (errors are known by name, not by import)."""
    exc: Exception = type(name, (Exception,), {})(message)
    for key, value in attrs.items():
        setattr(exc, key, value)
    return exc


@pytest.mark.parametrize(
    ("exc", "reason", "status", "retryable", "retry_after"),
    [
        (TimeoutError(), "timed out after 5s", None, False, None),
        (raised("Timeout", "litellm.Timeout: took too long"), "timed out after 5s", None, False,
         None),
        (raised("APIConnectionError", "Connection error."),
         "connection failed: the connection broke before the reply was complete", None, True, None),
        (raised("ClientError", "peer closed connection without sending complete message body"),
         "connection failed: the connection broke before the reply was complete",
         None, True, None),
        (raised("RateLimitError", "slow down", status_code=429, headers={"retry-after": "2"}),
         "rate limited", 429, True, 2.0),
        (raised("AuthenticationError", "Incorrect API key", status_code=401),
         "authentication failed: check the API key", 401, False, None),
        (raised("NotFoundError", "litellm.NotFoundError: OpenAIException - no such model",
                status_code=404),
         "not found: check the model name (no such model)", 404, False, None),
        (raised("ContextWindowExceededError", "too long", status_code=400),
         "prompt exceeds the model's context window", 400, False, None),
        (raised("InternalServerError",
                "litellm.InternalServerError: OpenAIException - <html><h1>502 Bad Gateway</h1>"
                "</html>", status_code=502),
         "server error: 502 Bad Gateway", 502, True, None),
        (raised("BadRequestError",
                'Error code: 400 - {"error": {"message": "max_tokens is too large"}}',
                status_code=400),
         "max_tokens is too large", 400, False, None),
        (raised("APIError", "Expecting value: line 1 column 1 (char 0)"),
         "malformed response: the body is not valid JSON", None, False, None),
        (KeyError("choices"), "malformed response: 'choices'", None, False, None),
        # A server's own error about the request's JSON is a status on the wire, not a
        # reply that failed to parse (llama.cpp's words; Python servers quote json's).
        (HTTPStatusError(500, {}, b'{"error": {"message": "Failed to parse tool call arguments'
                         b' as JSON: Expecting value: line 1 column 1 (char 0)"}}'),
         "server error: Failed to parse tool call arguments as JSON: Expecting value: line 1 "
         "column 1 (char 0)", 500, True, None),
        (HTTPStatusError(400, {}, b'{"error": {"message": "Extra data: line 1 column 5"}}'),
         "Extra data: line 1 column 5", 400, False, None),
        (raised("Weird", "something else"), "Weird: something else", None, False, None),
    ],
)  # fmt: skip
def test_errors_map_to_short_reasons(
    exc: Exception, reason: str, status: int | None, retryable: bool, retry_after: float | None
) -> None:
    err = to_backend_error("b", exc, timeout=5)
    assert (err.backend, err.reason, err.status) == ("b", reason, status)
    assert (err.retryable, err.retry_after) == (retryable, retry_after)


def test_a_backend_error_passes_through_and_keys_are_scrubbed() -> None:
    original = BackendError("b", "denied for key sk-secret-123", status=403)
    assert to_backend_error("b", original, timeout=5) is original
    masked = scrub(original, "sk-secret-123")
    assert masked.reason == "denied for key [redacted]" and masked.status == 403
    assert scrub(original, None) is original and scrub(original, "abc") is original


@given(st.text(max_size=2000), st.sampled_from(["RuntimeError", "InternalServerError"]))
def test_any_message_becomes_one_short_line(message: str, name: str) -> None:
    exc = raised(name, message, status_code=500 if name == "InternalServerError" else None)
    reason = to_backend_error("b", exc, timeout=5).reason
    assert "\n" not in reason and "\r" not in reason
    assert len(reason) <= len(name) + 2 + 160  # "Name: " + at most 160 characters
