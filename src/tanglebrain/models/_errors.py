"""What a failed backend call raised, as one short ``BackendError``.

Both transports end here. litellm and the OpenAI SDK nest their messages ("XError:
OpenAIException - …"), quote whole HTML or JSON error bodies and echo credentials; the
native transport raises ``HTTPStatusError`` with the server's status, headers and body.
This module turns any of that into a reason a user can read in one line, an error kind
(``errors.ErrorKind``), a retryable flag and the ``Retry-After`` delay. It knows
litellm's exceptions by name and attributes only, so it does not import litellm.

Key values are masked in the whole message *before* it is shortened: a key cut in half
by the shortening would no longer match.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

from tanglebrain.errors import BackendError
from tanglebrain.models._types import CONNECT_TIMEOUT_S
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
        kind=err.kind,
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
# How OpenAI-compatible servers word a prompt over the context window in a 400.
_CONTEXT = re.compile(
    r"context.length|context.window|maximum context|too many tokens|exceeds the context", re.I
)


def to_backend_error(
    backend_id: str,
    exc: BaseException,
    timeout: float,
    secrets: Iterable[str | None] = (),
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> BackendError:
    """Map any exception raised while calling a backend to a short ``BackendError``.

    Args:
        backend_id: the backend that was called.
        exc: what the call raised.
        timeout: the per-attempt timeout, for the "timed out" reason.
        connect_timeout: the limit on making the connection, for its reason.
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
    chain = causes(exc)
    if no_connection_in_time(chain):
        return not_connected(backend_id, min(timeout, connect_timeout))
    if isinstance(exc, TimeoutError) or name == "Timeout":
        return BackendError(backend_id, f"timed out after {timeout:g}s", kind="timeout")
    if _disconnected(chain):
        reason = f"connection failed: {connection_problem(chain)}"
        return BackendError(backend_id, reason, kind="connect", retryable=True)
    wire = status is not None and from_the_wire(chain)
    if any(isinstance(e, json.JSONDecodeError | UnicodeDecodeError) for e in chain) or (
        status == 500 and not wire
    ):
        # The backend answered 200, but with something that is not a completion (HTML, bad
        # UTF-8, JSON without choices), and the library made up a status (500) for it.
        # Not worth a retry on the same backend: another one may do better.
        return BackendError(
            backend_id, "malformed response: the reply is not a completion", kind="malformed"
        )
    retry_after = _retry_after(exc)
    detail = _short(exc, mask)
    if _MALFORMED.search(detail) and not wire:  # a server's words about the request's JSON
        return BackendError(
            backend_id, "malformed response: the body is not valid JSON", kind="malformed"
        )
    if name == "APIConnectionError" or _DISCONNECT.search(detail):
        reason = f"connection failed: {connection_problem(chain)}"
        return BackendError(backend_id, reason, kind="connect", retryable=True)
    return _by_status(backend_id, name, status, detail, retry_after) or (
        BackendError(backend_id, f"malformed response: {detail}", kind="malformed")
        if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | AttributeError)
        else BackendError(backend_id, f"{name}: {detail}")
    )


def _by_status(
    backend_id: str, name: str, status: int | None, detail: str, retry_after: float | None
) -> BackendError | None:
    """The error for an HTTP status (or the litellm exception named after one)."""
    if name == "RateLimitError" or status == 429:
        return BackendError(
            backend_id, "rate limited", kind="rate_limit", status=429, retryable=True,
            retry_after=retry_after,
        )  # fmt: skip
    if name == "AuthenticationError" or status == 401:
        return BackendError(
            backend_id, "authentication failed: check the API key", kind="auth",
            status=status or 401,
        )  # fmt: skip
    if name == "PermissionDeniedError" or status == 403:
        return BackendError(backend_id, detail, kind="auth", status=status or 403)
    if name == "NotFoundError" or status == 404:
        return BackendError(
            backend_id, f"not found: check the model name ({detail})", kind="not_found",
            status=status or 404,
        )  # fmt: skip
    if name == "ContextWindowExceededError" or (status == 400 and _CONTEXT.search(detail)):
        return BackendError(
            backend_id, "prompt exceeds the model's context window", kind="context",
            status=status,
        )  # fmt: skip
    if status is not None and status >= 500:
        return BackendError(
            backend_id, f"server error: {detail}", kind="server", status=status,
            retryable=True, retry_after=retry_after,
        )  # fmt: skip
    if status is not None:
        return BackendError(backend_id, detail, kind="client", status=status)
    return None


def no_connection_in_time(chain: list[BaseException]) -> bool:
    """Whether ``chain`` says the connection was not made within its connect timeout.

    By name: the native transport's ``ConnectTimeout`` and httpx's (under litellm).
    """
    return any(type(e).__name__ == "ConnectTimeout" for e in chain)


def not_connected(backend_id: str, limit: float) -> BackendError:
    """The error for a connection not made within ``limit`` s: retryable, like a refused one."""
    reason = f"connection failed: no connection within {limit:g}s"
    return BackendError(backend_id, reason, kind="connect", retryable=True)


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


def connection_problem(chain: list[BaseException]) -> str:
    """What went wrong with a connection, in the same words whichever client raised it."""
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "host not found"
    ssl = sys.modules.get("ssl")  # no TLS connection without it imported: not imported here
    if ssl is not None and any(isinstance(e, ssl.SSLError) for e in chain):
        return "TLS handshake failed"
    return "the connection broke before the reply was complete"


def from_the_wire(chain: list[BaseException]) -> bool:
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
    except AttributeError:
        return None
    return retry_after_seconds(value)


def retry_after_seconds(value: object, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks for: delay-seconds or an HTTP-date."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:  # "inf", "nan" or "1e400" say nothing a client could wait for
        return max(0.0, seconds) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime  # rare: dates are seldom sent

    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
