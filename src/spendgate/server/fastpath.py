"""The fast path of the hottest route: `POST /api/events` with a Bearer key and a valid body.

The route is declared as usual (`ingest.record_event`: its document, its validation, its
errors). This ASGI layer, outermost, answers the common case itself: a write key for the
event's service, a body that validates, an event recorded. It skips the framework's layers
(error middleware, routing through every router, dependency solving, response validation),
which cost a single-event request more than the event itself (bench/bench_server.py).

Anything else (no key or a wrong one, a cookie session, a body that does not validate, an
event the gate refuses, a browser's `Origin`, a body without a length or over the limit)
goes to the full application with the body replayed, untouched: nothing was written, so the
full path answers exactly as it would have, problem details included.
"""

from __future__ import annotations

import json

from pydantic import ValidationError as BodyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spendgate.errors import SpendgateError, StoreError
from spendgate.keys import KeyRing, allows
from spendgate.server import problems
from spendgate.server.context import Context
from spendgate.server.ingest import record_out
from spendgate.server.schemas import EventIn

PATH = "/api/events"
_JSON = [(b"content-type", b"application/json")]


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
        auth = headers.get(b"authorization", b"")
        kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if (
            len(headers) != len(raw)  # a repeated header: the full route decides
            or kind != b"application/json"
            or length is None
            or not length.isdigit()
            or int(length) > self.limit
            or b"origin" in headers
            or auth[:7].lower() != b"bearer "
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.limit)
        if body is None:
            return  # the client went away (the declared length keeps it under the limit)
        token = auth[7:].decode("latin-1").strip()
        if not await self._answer(body, token, scope, receive, send):
            await self.app(scope, replay(body, receive), send)

    async def _answer(
        self, body: bytes, token: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Record the event and answer; `False` (nothing written) for the full path."""
        try:
            key = self.ring.verify(token)
        except StoreError:
            return False  # the keys could not be read: the full route answers 503
        if key is None or not allows(key.scope, "write"):
            return False
        try:
            event = EventIn.model_validate_json(body)
        except BodyError:
            return False
        if key.services is not None and event.service not in key.services:
            return False
        try:
            result = await self.ctx.gate.arecord(**event.arguments())
        except StoreError as exc:
            # Its outcome may be unknown: never tried again here, answered as the full path would.
            await problems.from_error(exc)(scope, receive, send)
            return True
        except SpendgateError:
            return False  # refused before anything was written: the full path says why
        if result.status == "conflict":
            return False
        answer = json.dumps(record_out(result)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201 if result.status == "created" else 200,
                "headers": [*_JSON, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})
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
