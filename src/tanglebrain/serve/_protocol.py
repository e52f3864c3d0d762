"""The HTTP protocol ``serve`` speaks: uvicorn's, with a deadline for each request to arrive.

uvicorn closes a connection idle after a response (its keep-alive timeout), but that timer
stops at the first byte: a client that opens connections and sends nothing, or trickles a
request's head or body a byte at a time, holds each one, and its request task, for as long
as it likes. A few hundred such clients exhaust the file descriptors and lock everyone
else out ("slowloris"). Here every request must arrive whole (head and body) within
``request_timeout`` seconds, counted from when the connection opened or its previous
response ended (for the first request after it, or the idle wait for one). The time a
request takes to answer is not counted: a run may take minutes.

Past the deadline a connection that is mid-request gets a ``408`` (whose body is the
usual error object) and is closed; an idle one is just closed, and so is one whose late
body belongs to a request answered already (early, say with a 413). A request whose body
did not arrive in time is over for the app as well: it reads a disconnect.
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
    """uvicorn's httptools protocol with the request deadline (see the module docstring).

    One timer per connection, armed while the connection is idle or a request is arriving
    and nothing is being answered, stopped when the request is whole. A request
    pipelined behind one being answered is timed from the end of that answer: until
    then uvicorn does not read it (its own backpressure), and a deadline must never cut
    an answer short.
    """

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._arriving = False  # a request has begun and is not whole yet
        self._head_done = False  # ... and its head is in (it has a cycle, its app runs)

    def _answering(self) -> bool:
        """Whether a request is being answered, or waits in line to be."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

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
        if self._arriving and self._head_done:
            # The body is late. Its app, if still waiting for it, reads a disconnect; a 408
            # only if no answer has started (the app may have answered early, e.g. a 413).
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self.transport.write(_LATE)
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        elif self._arriving:
            self.transport.write(_LATE)  # the head is late; nothing else is being answered
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        answering = self._answering()  # before uvicorn's state for the new request
        super().on_message_begin()
        self._arriving, self._head_done = True, False
        if not answering:
            self._arm()  # (already running when the connection was idle before)

    def on_headers_complete(self) -> None:
        self._head_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._arriving = False
        self._disarm()
        super().on_message_complete()
        if not self._answering():
            self._arm()  # answered before its body was in (a 404, a 413): idle from now on

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts a pipelined request, if one is whole
        if self.transport.is_closing():
            return
        if self.pipeline:
            return  # a whole request waits in line: the deadline waits for its answer
        if not self._answering() or (self._arriving and self._head_done):
            # Idle, or a request arriving with nothing being answered, or the one now being
            # answered still sending its body: from now on it has its time. (A request
            # still arriving behind the one now answered is timed from the end of that.)
            self._arm()


def protocol(request_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with ``request_timeout`` (0: none)."""
    return type("DeadlinedHttpToolsProtocol", (_Deadlined,), {"request_timeout": request_timeout})
