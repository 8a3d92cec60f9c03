"""How `spendgate serve` reads requests off its connections: each request's head (request
line and headers) must come whole, soon, and small, and its body whole and soon.

uvicorn bounds none of it: its protocols keep a connection that has not finished a head or
a body for as long as the client likes (its keep-alive timeout runs only between requests,
and the first byte cancels it), and httptools buffers a header line of any length.
`RequestGuard` is uvicorn's httptools protocol with these bounds:

- **Head time.** A client has `header_timeout` seconds to send a head whole, counted from
  when its connection opens or, on a kept-alive connection, from the first byte after an
  answer (until then the connection is idle, and uvicorn's keep-alive timeout, 5 s, closes
  it). Then the connection is closed without an answer (a browser may open a connection
  before it has a request for it: it must find it closed, not answered). Nothing the client
  sends restarts the clock, so a client trickling a byte at a time (slowloris) cannot
  stretch it. A head that comes in one read, the usual case, costs no timer at all.
- **Body time.** Once a head is complete, the client has `body_timeout` seconds to send its
  body whole (by Content-Length or chunked, until httptools sees the message's end); again
  nothing the client sends restarts the clock (a slow POST, "R.U.D.Y.", cannot stretch it).
  Then, if the request has no answer yet, it is answered 408 (a problem document) and the
  connection ends as after a 431 (below); the app's `receive()` wakes to `http.disconnect`
  and what it sends goes nowhere. A request already answering (or answered, by a route that
  did not read its body) has its connection closed. A clock that runs out while the server
  has paused reading (a pipelined request waiting its turn, or 64 KiB of body the app has
  yet to take) starts again: that wait was the server's, not the client's. A body that
  comes in its head's read, the usual small request, costs no timer; after an answer given
  before its body ended, the next head is owed from that body's end.
- **Size.** A head over `max_header_bytes` is answered 431 (a problem document) and the
  server reads no further request from the connection: what the client still sends is read
  and dropped until the head's time is up (after a 408, for `header_timeout` seconds) so it
  reads the answer, not a reset; then the connection closes. A head still arriving is
  counted as its bytes come, so a header line that never ends is refused once it passes the
  limit, not buffered; a head that arrives within one read is measured when it is complete.

Why httptools only: uvicorn would pick it anyway (it is installed with `uvicorn[standard]`)
and it serves about twice the requests of h11 (7k against 3.8k a second on the project's
machine); h11 bounds a head's size but not its time, and one protocol to guard is one place
to get right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from spendgate.server.problems import problem
from spendgate.server.settings import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_HEADER_BYTES,
    ServerSettings,
)

HEAD_TOO_LARGE = 431
BODY_TOO_SLOW = 408


class _HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head that is too large (httptools
    then raises its own error from `feed_data`, which uvicorn answers through
    `send_400_response`, where `RequestGuard` answers 431 instead)."""


class RequestGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with a time and a size limit on each request's head and
    a time limit on its body (see the module's notes). `http_protocol(settings)` gives one
    with the settings'."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_open = False
        """A head is owed or under way: from the connection's start, a response's end or a
        request's first byte (a pipelined one may begin while a request runs) until a head
        is complete."""
        self._body_open = False
        """A head is complete and its message is not: its body is still owed."""
        self._clock: asyncio.TimerHandle | None = None
        """The open head's or body's clock (they never overlap: a message ends before the
        next head is read) and, after a refusal, the connection's."""
        self._head_bytes = 0
        """Bytes of the open head counted so far (reads that carried nothing else)."""
        self._heads = 0
        """Heads completed on this connection."""
        self._too_large = False
        self._refused = False

    # -- the clock ---------------------------------------------------------------------

    def _open_head(self) -> None:
        if not self._head_open:
            self._head_open, self._head_bytes = True, 0

    def _start_clock(self, seconds: float, late: Callable[[], None]) -> None:
        """Start the clock, unless it already runs (nothing restarts it)."""
        if self._clock is None:
            self._clock = self.loop.call_later(seconds, late)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _end(self) -> None:
        """Time is up for a head (or for reading a refusal's answer): close."""
        self._clock = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_late(self) -> None:
        self._clock = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server has paused reading (a pipelined request waits its turn, or the app
            # has yet to take what came): that wait was not the client's.
            self._start_clock(self.body_timeout, self._body_late)
            return
        cycle = self.cycle
        if self.pipeline or cycle.response_started:
            # An answer now would come before another request's, or inside this one's.
            self.transport.close()
            return
        # The 408 is this request's answer: the app's receive() wakes to http.disconnect
        # and what it sends goes nowhere.
        cycle.disconnected = cycle.response_complete = True
        cycle.message_event.set()
        self._answer_and_end(
            BODY_TOO_SLOW,
            f"the request body did not arrive within {self.body_timeout:g} s",
        )

    # -- uvicorn's protocol, with the limits ------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._open_head()
        self._start_clock(self.header_timeout, self._end)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped until the clock closes the connection
        was_open, heads = self._head_open, self._heads
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if self._body_open:
            # A body is left incomplete: its clock starts with this read (a head and its
            # whole body in one read, the usual small request, cost no timer).
            self._start_clock(self.body_timeout, self._body_late)
            return
        if not self._head_open:
            return
        # A head is left incomplete: its clock starts with this read, the first of it on a
        # kept-alive connection (a head that comes in one read, the usual case, costs no
        # timer; a pipelined head left incomplete while a request runs gets its clock
        # too). A read that finished a head is not counted: that head was measured whole
        # in `on_headers_complete`, and the rest of the read may be a body or the start of
        # a pipelined head (which later reads count).
        self._start_clock(self.header_timeout, self._end)
        if was_open and self._heads == heads:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._open_head()

    def on_headers_complete(self) -> None:
        if self._head_size() > self.max_header_bytes:
            self._too_large = True
            raise _HeadTooLargeError
        self._heads += 1
        self._head_open = False
        self._stop_clock()
        # Its body, if any, is owed now (an upgraded connection is the WebSocket's).
        self._body_open = not (self.parser.should_upgrade() and self._should_upgrade())
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_open:
            self._body_open = False
            self._stop_clock()
            if self.cycle.response_complete:
                # Answered before its body ended (a route that did not read it): the next
                # head is owed from here.
                self._open_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive, with no request of its own waiting (a pipelined one would be running
        # now): the next head is owed. Until its first byte the connection is idle, which
        # uvicorn's keep-alive timeout bounds; that byte cancels it and starts the clock.
        # A body still arriving (the route did not read it) owes it from that body's end.
        if not self.transport.is_closing() and self.cycle.response_complete and not self._body_open:
            self._open_head()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    # -- the refusal ---------------------------------------------------------------------

    def _head_size(self) -> int:
        """The complete head's size as written (request line, header lines and the blank
        line; optional spaces around header values aside)."""
        line = len(self.parser.get_method()) + 1 + len(self.url) + len(b" HTTP/1.1\r\n")
        return line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def _refuse(self) -> None:
        """Answer 431 and read no further request from this connection."""
        self._refused = True
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head, while a request runs: an answer now would come before that
            # request's, so the connection closes without one (as uvicorn's own 400 does).
            self.transport.close()
            return
        self._answer_and_end(
            HEAD_TOO_LARGE,
            f"the request line and headers exceed {self.max_header_bytes} bytes",
        )

    def _answer_and_end(self, status: int, detail: str) -> None:
        """Answer `status` with a problem document and read no further request: what the
        client still sends is read and dropped until the clock (the head's, if it runs, or
        a head's time from now) closes the connection, so it reads the answer, not a reset."""
        self._refused = True
        answer = problem(status, detail)
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, *answer.raw_headers]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", answer.body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._start_clock(self.header_timeout, self._end)
        else:
            self.transport.close()


def http_protocol(settings: ServerSettings) -> type[RequestGuard]:
    """The protocol class for `uvicorn.Config(http=...)`, with `settings`' limits."""

    class Configured(RequestGuard):
        header_timeout = settings.header_timeout
        body_timeout = settings.body_timeout
        max_header_bytes = settings.max_header_bytes

    return Configured
