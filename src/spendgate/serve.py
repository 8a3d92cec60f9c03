"""`spendgate serve`: the HTTP API, live feed and metrics on uvicorn, over one gate.

A shell, like the CLI: it reads settings, takes the listening socket and opens the gate
(either failing is one line and exit status 2, before anything is promised), makes the first
admin key on a new store (printed once), prints the dashboard's one-time sign-in link, runs
the server until it is stopped, and closes the gate.

Stopping: the first SIGTERM or SIGINT stops accepting connections, lets requests in flight
finish, stops the background threads (alert evaluator, dispatcher, report writer) and the
live feed and waits for them, then closes the gate (returning its budget leases): all within
the settings' `shutdown_grace` (10 s), after which what is left is cut off. A second signal
exits at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from spendgate.errors import ValidationError
from spendgate.gate import Gate
from spendgate.keys import create_key
from spendgate.server import ServerSettings, create_app
from spendgate.server.background import Background
from spendgate.server.connections import http_protocol
from spendgate.server.pages import SIGNIN_PATH
from spendgate.server.sessions import DEFAULT_SIGNIN_TTL
from spendgate.settings import Config
from spendgate.store.base import CLOSE_WAIT, ApiKey
from spendgate.windows import to_micros

FIRST_KEY_NAME = "admin"
DASHBOARD_KEY_NAME = "dashboard"
SIGNALS = (signal.SIGTERM, signal.SIGINT)
BACKLOG = 2048  # uvicorn's default
CLOSE_RESERVE = 1.0
"""Seconds of the shutdown grace kept for closing the gate and exiting (half the grace
when it is under two seconds): requests and background work get the rest."""

log = logging.getLogger("spendgate.server")


def first_admin_key(gate: Gate) -> str | None:
    """On a store with no API key at all, make an admin key and return its token (shown
    once); otherwise `None`."""
    if gate.store.keys():
        return None
    return _make_key(gate, FIRST_KEY_NAME, "admin", "first start")[0]


def _make_key(gate: Gate, name: str, scope: str, why: str) -> tuple[str, ApiKey]:
    return create_key(
        gate.store, name, scope, actor=f"spendgate serve ({why})", now=to_micros(gate.clock())
    )


def dashboard_key(gate: Gate) -> str:
    """The id of the key a later start's sign-in link acts as: a read key for every service
    named `dashboard`, made once per store. Its token is never shown (sessions are bound to
    key ids); revoking it ends every session it signed in."""
    for key in gate.store.keys():  # noqa: SIM118 - a method
        if (
            key.name == DASHBOARD_KEY_NAME
            and key.scope == "read"
            and key.services is None
            and key.revoked_at is None
        ):
            return key.key_id
    return _make_key(gate, DASHBOARD_KEY_NAME, "read", "dashboard sign-in")[1].key_id


def signin_link(app: FastAPI, settings: ServerSettings, key_id: str) -> str:
    """The dashboard's URL with a one-time sign-in token for `key_id` (never the key)."""
    return f"{settings.url}{SIGNIN_PATH}?token={app.state.signins.mint(key_id)}"


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on `host:port` (every address the host name stands for, as uvicorn
    would), for uvicorn to serve on; `ValidationError` naming the setting when they cannot
    be had (a port in use, an address not of this machine)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValidationError(
            "host", host, f"an address of this machine to listen on ({exc.strerror})"
        ) from None
    taken: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(found):
        sock = socket.socket(family, kind, proto)
        taken.append(sock)
        try:
            # As uvicorn does: a restart need not wait for the last run's connections to end.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" and "0.0.0.0" side by side, as asyncio does
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError as exc:
            for made in taken:
                made.close()
            if exc.errno == errno.EADDRINUSE:
                raise ValidationError(
                    "port", port, f"a free port on {host}: this one is in use (another server?)"
                ) from None
            raise ValidationError(
                "host", host, f"an address this machine can listen on ({exc.strerror})"
            ) from None
    return taken


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: `Stop` handles the signals, because
    uvicorn's raises SIGTERM again once it has served, which ended the process before
    `run()` could close the gate."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Stop:
    """What SIGTERM and SIGINT do to `spendgate serve`: the first asks for a graceful stop
    within `grace` seconds, a second exits at once (status 128 + the signal's number)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.signal: int | None = None
        self.at: float | None = None
        self.server: uvicorn.Server | None = None
        self.background: Background | None = None
        self.workload = threading.Event()
        """Set when the demo's workload must stop."""

    @property
    def work_time(self) -> float:
        """Seconds requests in flight and background work get."""
        return self.grace - min(CLOSE_RESERVE, self.grace / 2)

    def deadline(self) -> float:
        """When everything but closing must be done (`time.monotonic()`)."""
        start = self.at if self.at is not None else time.monotonic()
        return start + self.work_time

    def close_time(self) -> float:
        """Seconds closing the gate may take: what is left of the grace period once a signal
        came (at least the reserve kept for it), else the store's own default."""
        if self.at is None:
            return CLOSE_WAIT
        left = self.at + self.grace - time.monotonic()
        return max(left, min(CLOSE_RESERVE, self.grace / 2))

    def __call__(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signal is not None:
            os.write(2, f"spendgate: {signal.Signals(signum).name} again: exiting now\n".encode())
            os._exit(128 + signum)
        # Only flags are set here (a handler interrupts the main thread anywhere): the
        # server's loop and the background threads see them and stop.
        self.signal, self.at = signum, time.monotonic()
        self.workload.set()
        if self.server is not None:
            self.server.should_exit = True
        if self.background is not None:
            self.background.stop(self.deadline())

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM and SIGINT while inside (in the main thread only: elsewhere, as in
        tests that run a server in a thread, signals are not this process's to take)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(
    settings: ServerSettings,
    config: Config,
    *,
    echo: Callable[[str], None],
    gate: Gate | None = None,
    workload: Callable[[Gate, threading.Event], object] | None = None,
) -> None:
    """Serve until stopped (see the module's notes). `workload(gate, stop)` runs beside the
    server (the demo). The listening socket is taken and the store opened before any key
    is made or shown, so a start that cannot serve promises nothing."""
    stop = Stop(settings.shutdown_grace)
    try:
        sockets = listen(settings.host, settings.port)
    except BaseException:
        if gate is not None:
            gate.close()
        raise
    worker = None
    with contextlib.ExitStack() as held:
        for sock in sockets:
            held.enter_context(sock)
        held.enter_context(stop.installed())
        gate = gate or Gate.open(settings.db, config=config)
        try:
            app = create_app(gate, settings)
            server = _Server(
                uvicorn.Config(
                    app,
                    log_level="warning",
                    lifespan="on",
                    # Each request's head must come whole, soon and small (`connections`).
                    http=http_protocol(settings),
                    # Any number of seconds works (it is an asyncio timeout).
                    timeout_graceful_shutdown=stop.work_time,  # type: ignore[arg-type]
                )
            )
            stop.server, stop.background = server, app.state.background
            token = first_admin_key(gate)
            echo(f"spendgate: serving {gate.store.where} on {settings.url}")
            if token is not None:
                echo(f"first start: an admin API key was made; it is shown this once: {token}")
                echo(
                    f"try: curl -H 'Authorization: Bearer {token}' {settings.url}/api/cost/current"
                )
            # On the first start the link signs in as the new admin key; later, as a read key.
            key_id = token.split("_")[1] if token is not None else dashboard_key(gate)
            echo(
                f"dashboard: {signin_link(app, settings, key_id)} "
                f"(sign-in link: works once, within {DEFAULT_SIGNIN_TTL / 60:.0f} minutes)"
            )
            if workload is not None:
                worker = threading.Thread(
                    target=workload, args=(gate, stop.workload), name="spendgate-demo", daemon=True
                )
                worker.start()
            if stop.signal is None:  # a signal during start-up: nothing to serve
                server.run(sockets=sockets)
        finally:
            stop.workload.set()
            if worker is not None:
                worker.join(max(0.0, stop.deadline() - time.monotonic()))
            gate.close(timeout=stop.close_time())
    if stop.signal is not None:
        assert stop.at is not None
        name = signal.Signals(stop.signal).name
        echo(f"spendgate: stopped ({name}) in {time.monotonic() - stop.at:.1f} s")
        _leave_stragglers(stop.at + stop.grace)


def _leave_stragglers(deadline: float) -> None:
    """Exit now, by the grace period's end, if a thread that would hold the interpreter's
    exit (a request's worker stuck in a call) is still running then: nothing it does can be
    acknowledged any more, as the gate is closed."""
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
    if left:
        log.error("still running at the end of the shutdown grace period: %s", ", ".join(left))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
