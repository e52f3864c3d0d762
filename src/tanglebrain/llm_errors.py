"""What a failed backend call raised, as one short ``BackendError``.

litellm and the OpenAI SDK nest their messages ("XError: OpenAIException - …"), quote whole
HTML or JSON error bodies and echo credentials. This module turns any of that into a
reason a user can read in one line, a retryable flag and the ``Retry-After`` delay. It
knows those exceptions by name and attributes only, so it does not import litellm.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tanglebrain.errors import BackendError


def scrub(err: BackendError, key: str | None) -> BackendError:
    """``err`` with every occurrence of ``key`` masked: providers echo credentials."""
    if not key or len(key) < 4 or key not in err.reason:
        return err
    return BackendError(
        err.backend,
        err.reason.replace(key, "[redacted]"),
        status=err.status,
        retryable=err.retryable,
        retry_after=err.retry_after,
    )


_PREFIX = re.compile(r"^((litellm\.)?[A-Za-z]+(Error|Exception|Timeout)(:| -)\s*)+")
_MALFORMED = re.compile(r"Expecting value|JSONDecodeError|Unterminated string|Extra data")
_DISCONNECT = re.compile(
    r"Connection error|payload is not completed|disconnected|Connection reset|"
    r"RemoteProtocolError|incomplete chunked read|peer closed",
    re.I,
)
_HTML = re.compile(r"<[^>]+>")


def to_backend_error(backend_id: str, exc: BaseException, timeout: float) -> BackendError:
    """Map any exception raised while calling a backend to a short ``BackendError``."""
    if isinstance(exc, BackendError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) and status >= 400 else None
    if isinstance(exc, TimeoutError) or name == "Timeout":
        return BackendError(backend_id, f"timed out after {timeout:g}s")
    retry_after = _retry_after(exc)
    detail = _short(exc)
    if _MALFORMED.search(detail):
        return BackendError(backend_id, "malformed response: the body is not valid JSON")
    if name == "APIConnectionError" or _DISCONNECT.search(detail):
        return BackendError(backend_id, f"connection failed: {detail}", retryable=True)
    if name == "RateLimitError" or status == 429:
        return BackendError(
            backend_id, "rate limited", status=429, retryable=True, retry_after=retry_after
        )
    if name == "AuthenticationError" or status == 401:
        return BackendError(
            backend_id, "authentication failed: check the API key", status=status or 401
        )
    if name == "NotFoundError" or status == 404:
        return BackendError(
            backend_id, f"not found: check the model name ({_short(exc)})", status=status or 404
        )
    if name == "ContextWindowExceededError":
        return BackendError(backend_id, "prompt exceeds the model's context window", status=status)
    if status is not None and status >= 500:
        return BackendError(
            backend_id,
            f"server error: {_short(exc)}",
            status=status,
            retryable=True,
            retry_after=retry_after,
        )
    if status is not None:
        return BackendError(backend_id, _short(exc), status=status)
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | AttributeError):
        return BackendError(backend_id, f"malformed response: {_short(exc)}")
    return BackendError(backend_id, f"{name}: {_short(exc)}", retryable=False)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc) or type(exc).__name__
    text = text.split(" Original exception:")[0].split("\nReceived Model Group")[0]
    text = _PREFIX.sub("", text.strip())  # litellm nests "XError: OpenAIException - ..."
    text = _HTML.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    # A JSON error body: keep its message, not the whole document.
    m = re.search(r'"message"\s*:\s*"([^"]{1,200})"', text)
    if m:
        text = m.group(1)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "headers", None)
    response = getattr(exc, "response", None)
    if not headers and response is not None:
        headers = getattr(response, "headers", None)
    if not headers:
        headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
