"""The HTTP protocol ``serve`` speaks: uvicorn's, with a deadline for each request to arrive.

uvicorn closes a connection idle after a response (its keep-alive timeout), but that timer
stops at the first byte: a client that opens connections and sends nothing, or trickles a
request's head or body a byte at a time, holds each one, and its request task, for as long
as it likes. A few hundred such clients exhaust the file descriptors and lock everyone
else out ("slowloris"). Here every request must arrive whole (head and body) within
``request_timeout`` seconds, counted from when the connection opened or its previous
response ended (or, for a request pipelined behind another, from its first byte). The time
a request takes to answer is not counted: a run may take minutes.

Past the deadline a connection that is mid-request gets a ``408`` (whose body is the
usual error object) and is closed; an idle one is just closed. A request whose body did
not arrive in time is over for the app as well: it reads a disconnect.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_REQUEST_TIMEOUT_S = 30.0

_BODY = json.dumps({"error": {
    "message": "the request did not arrive in time (its head and body must come within "
    "--request-timeout seconds)", "type": "invalid_request_error", "param": None,
    "code": "request_timeout",
}}).encode()  # fmt: skip
_LATE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class _Deadlined(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request deadline (see the module docstring)."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._arriving = False  # a request has begun and is not whole yet

    def _arm(self) -> None:
        if self._deadline is None and self.request_timeout > 0:
            self._deadline = self.loop.call_later(self.request_timeout, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._arriving:
            self.transport.write(_LATE)
            if self.cycle is not None and not self.cycle.response_complete:
                # The request's app is waiting for the rest of its body: it reads a disconnect.
                self.cycle.disconnected = True
                self.cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arriving = True
        self._arm()  # pipelined behind a request being answered: from its first byte

    def on_message_complete(self) -> None:
        self._arriving = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._arriving and not self.transport.is_closing():
            self._arm()  # idle until the next request, which must come whole in time


def protocol(request_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with ``request_timeout`` (0: none)."""
    return type("DeadlinedHttpToolsProtocol", (_Deadlined,), {"request_timeout": request_timeout})
