"""The fast path of the hottest route: `POST /api/events` with a Bearer key and a valid body.

The route is declared as usual (`ingest.record_event`: its document, its validation, its
errors). This ASGI layer, outermost, answers the common case itself: a write key for the
event's service, a body that validates, an event recorded. It skips the framework's layers
(error middleware, routing through every router, dependency solving, response validation),
which cost a single-event request more than the event itself (bench/bench_server.py).

The key is checked by `auth.authenticate()`, the full route's own check, and the event's
service by `Principal.may_use()`: a rule on keys is written once and holds on both paths.
Anything else (no key or a wrong one, a cookie session, a body that does not validate, an
event the gate refuses, a browser's `Origin`, a body without a length or over the limit)
goes to the full application with the body replayed, untouched: nothing was written, so the
full path answers exactly as it would have, problem details included
(tests/server/test_fastpath_parity.py holds the two to the same answers).
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError as BodyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spendgate.errors import SpendgateError, StoreError
from spendgate.keys import KeyRing
from spendgate.server import problems
from spendgate.server.auth import authenticate
from spendgate.server.context import Context
from spendgate.server.ingest import record_out
from spendgate.server.schemas import EventIn

PATH = "/api/events"


class EventFastPath:
    """Answer a plain, valid `POST /api/events` without the framework; pass the rest on."""

    def __init__(self, app: ASGIApp, *, ring: KeyRing, ctx: Context, limit: int) -> None:
        self.app = app
        self.ring = ring
        self.ctx = ctx
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = scope["headers"]
        headers = dict(raw)
        length = headers.get(b"content-length")
        auth = headers.get(b"authorization")
        kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if (
            len(headers) != len(raw)  # a repeated header: the full route decides
            or kind != b"application/json"
            or length is None
            or not length.isdigit()
            or int(length) > self.limit
            or b"origin" in headers
            or auth is None  # a cookie session (or none): the full route decides
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.limit)
        if body is None:
            return  # the client went away (the declared length keeps it under the limit)
        # Headers are latin-1, as Starlette decodes them for the full route.
        if not await self._answer(body, auth.decode("latin-1"), scope, receive, send):
            await self.app(scope, replay(body, receive), send)

    async def _answer(
        self, body: bytes, header: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Record the event and answer; `False` (nothing written) for the full path."""
        try:
            who = authenticate(header, self.ring, "write")  # the full route's `Writer`
        except HTTPException:
            return False  # refused: the full route says why
        except StoreError:
            return False  # the keys could not be read: the full route answers 503
        try:
            event = EventIn.model_validate_json(body)
        except BodyError:
            return False
        if not who.may_use(event.service):
            return False
        try:
            result = await self.ctx.gate.arecord(**event.arguments())
        except StoreError as exc:
            # Its outcome may be unknown: never tried again here, answered as the full path would.
            await problems.from_error(exc)(scope, receive, send)
            return True
        except SpendgateError:
            # Refused before anything was written (a reused id with another payload too:
            # `arecord` raises `ConflictError`): the full path says why.
            return False
        # The full route's own response class: the same bytes and headers.
        answer = JSONResponse(
            record_out(result, self.ctx.gate.config.currency),
            201 if result.status == "created" else 200,
        )
        await answer(scope, receive, send)
        return True


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """A request's whole body, or `None` if the client went away or sent more than `limit`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the connection's own."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
