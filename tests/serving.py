"""Helpers for server tests: an app over a fresh store with keys of every scope, and a real
uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from spendgate import Gate
from spendgate.keys import create_key
from spendgate.server import ServerSettings, create_app
from spendgate.server.connections import http_protocol


@dataclass
class Keys:
    """A token of each scope, one limited to a service, and one revoked."""

    admin: str
    write: str
    read: str
    scraper: str
    revoked: str


def make_keys(gate: Gate) -> Keys:
    def key(name: str, scope: str, **options: object) -> str:
        return create_key(gate.store, name, scope, actor="test", now=0, **options)[0]  # type: ignore[arg-type]

    revoked = key("old", "admin")
    gate.store.revoke_key(revoked.split("_")[1], actor="test", at=1)
    return Keys(
        admin=key("admin", "admin"),
        write=key("writer", "write"),
        read=key("reader", "read"),
        scraper=key("scraper-only", "write", services=["scraper"]),
        revoked=revoked,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


STOP_WITHIN = 30.0
"""Seconds a test server may take to stop (its lifespan waits up to the settings' shutdown
grace, 10 s, for its background threads): longer is a hang, and fails the test."""


@contextlib.contextmanager
def running(
    app: FastAPI,
    port: int | None = None,
    *,
    stop_within: float = STOP_WITHIN,
    settings: ServerSettings | None = None,
) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread, reading requests as `spendgate serve` does
    (with `settings`' limits, by default those `create_app` was given); yields its base
    URL. On the way out the server must stop, and with it its background threads (see
    `create_app`), within `stop_within` seconds, or the test fails: a server still running
    would use a gate the test closes."""
    port = port or free_port()
    context = getattr(app.state, "context", None)  # an app of create_app's: its settings
    settings = settings or (context.settings if context is not None else ServerSettings())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            # As `spendgate serve` reads requests (head and body timeouts, head size limit).
            http=http_protocol(settings),
            # Connections still open (a live feed, a slow client) are cut after this.
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # start-up, not a wait for time to pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_within)
        if thread.is_alive():
            raise AssertionError(f"the server thread did not stop within {stop_within} s")
        background = getattr(app.state, "background", None)
        left = background.alive() if background is not None else []
        if left:
            raise AssertionError(f"the server stopped but its threads did not: {left}")


def receive_until(
    ws: Any, wanted: Callable[[dict[str, Any]], bool], seconds: float = 5.0
) -> dict[str, Any]:
    """The first message `wanted` accepts, within `seconds` (updates keep arriving, so a
    receive timeout alone would never end the wait); fails the test otherwise."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message: dict[str, Any] = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if wanted(message):
            return message
    raise AssertionError(f"no wanted message within {seconds} s")


def app_for(gate: Gate, **settings: object) -> FastAPI:
    return create_app(gate, ServerSettings(**settings))  # type: ignore[arg-type]
