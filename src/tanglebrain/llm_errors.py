"""What a failed backend call raised, as one short ``BackendError``.

litellm and the OpenAI SDK nest their messages ("XError: OpenAIException - …"), quote whole
HTML or JSON error bodies and echo credentials. This module turns any of that into a
reason a user can read in one line, a retryable flag and the ``Retry-After`` delay. It
knows those exceptions by name and attributes only, so it does not import litellm.

Key values are masked in the whole message *before* it is shortened: a key cut in half
by the shortening would no longer match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from tanglebrain.errors import BackendError
from tanglebrain.redact import Redactor


def scrub(err: BackendError, key: str | None) -> BackendError:
    """``err`` with every run of 8 or more characters of ``key`` masked.

    Providers echo credentials. Prefer ``to_backend_error(..., secrets=[key])``, which
    masks before shortening; this is for errors built elsewhere.
    """
    return _masked(err, Redactor([key]))


def _masked(err: BackendError, mask: Redactor) -> BackendError:
    reason = mask(err.reason)
    if reason == err.reason:
        return err
    return BackendError(
        err.backend,
        reason,
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


def to_backend_error(
    backend_id: str,
    exc: BaseException,
    timeout: float,
    secrets: Iterable[str | None] = (),
) -> BackendError:
    """Map any exception raised while calling a backend to a short ``BackendError``.

    Args:
        backend_id: the backend that was called.
        exc: what the call raised.
        timeout: the per-attempt timeout, for the "timed out" reason.
        secrets: key values to mask (runs of 8 or more of their characters), before the
            message is shortened.

    Returns:
        One short, masked ``BackendError``.
    """
    mask = Redactor(secrets)
    if isinstance(exc, BackendError):
        return _masked(exc, mask)
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) and status >= 400 else None
    if isinstance(exc, TimeoutError) or name == "Timeout":
        return BackendError(backend_id, f"timed out after {timeout:g}s")
    chain = causes(exc)
    if _disconnected(chain):
        return BackendError(backend_id, f"connection failed: {_short(exc, mask)}", retryable=True)
    if any(isinstance(e, json.JSONDecodeError | UnicodeDecodeError) for e in chain) or (
        status == 500 and not _from_the_wire(chain)
    ):
        # The backend answered 200, but with something that is not a completion (HTML, bad
        # UTF-8, JSON without choices), and the library made up a status (500) for it.
        # Not worth a retry on the same backend: another one may do better.
        return BackendError(backend_id, "malformed response: the reply is not a completion")
    retry_after = _retry_after(exc)
    detail = _short(exc, mask)
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
            backend_id, f"not found: check the model name ({detail})", status=status or 404
        )
    if name == "ContextWindowExceededError":
        return BackendError(backend_id, "prompt exceeds the model's context window", status=status)
    if status is not None and status >= 500:
        return BackendError(
            backend_id,
            f"server error: {detail}",
            status=status,
            retryable=True,
            retry_after=retry_after,
        )
    if status is not None:
        return BackendError(backend_id, detail, status=status)
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | AttributeError):
        return BackendError(backend_id, f"malformed response: {detail}")
    return BackendError(backend_id, f"{name}: {detail}", retryable=False)


def causes(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


# What the HTTP clients under litellm raise when a connection breaks (httpx, aiohttp, the SDK).
_CONNECTION = frozenset({
    "APIConnectionError", "TransportError", "ClientConnectionError", "ClientPayloadError",
})  # fmt: skip


def _disconnected(chain: list[BaseException]) -> bool:
    """Whether the connection broke, judged by the exception types in ``chain``."""
    for e in chain:
        if isinstance(e, OSError) and not isinstance(e, TimeoutError):
            return True
        if any(c.__name__ in _CONNECTION for c in type(e).__mro__):
            return True
    return False


def _from_the_wire(chain: list[BaseException]) -> bool:
    """Whether an HTTP error status in ``chain`` was really sent by the server.

    httpx raises ``HTTPStatusError`` and the OpenAI SDK its ``APIStatusError`` family for
    statuses on the wire; litellm's own exceptions subclass the SDK's, so only those raised
    by the SDK's own module count.
    """
    for e in chain:
        cls = type(e)
        if cls.__name__ == "HTTPStatusError":
            return True
        sdk = cls.__module__.split(".")[0] == "openai"
        if sdk and any(c.__name__ == "APIStatusError" for c in cls.__mro__):
            return True
    return False


def _short(exc: BaseException, mask: Redactor, limit: int = 160) -> str:
    text = mask(str(exc) or type(exc).__name__)  # first: a shortened key would not match
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
