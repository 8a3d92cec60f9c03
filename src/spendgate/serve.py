"""`spendgate serve`: the HTTP API, live feed and metrics on uvicorn, over one gate.

A shell, like the CLI: it reads settings, opens the gate, makes the first admin key on a new
store (printed once), prints the dashboard's one-time sign-in link, runs the server until it
is stopped, and closes the gate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fastapi import FastAPI

from spendgate.config import Config
from spendgate.gate import Gate
from spendgate.keys import create_key
from spendgate.server import ServerSettings, create_app
from spendgate.server.pages import SIGNIN_PATH
from spendgate.server.sessions import DEFAULT_SIGNIN_TTL
from spendgate.store.base import ApiKey
from spendgate.windows import to_micros

FIRST_KEY_NAME = "admin"
DASHBOARD_KEY_NAME = "dashboard"


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


def run(
    settings: ServerSettings,
    config: Config,
    *,
    echo: Callable[[str], None],
    gate: Gate | None = None,
    workload: Callable[[Gate, threading.Event], object] | None = None,
) -> None:
    """Serve until interrupted. `workload(gate, stop)` runs beside the server (the demo)."""
    import uvicorn

    gate = gate or Gate.open(settings.db, config=config)
    stop = threading.Event()
    worker = None
    try:
        token = first_admin_key(gate)
        app = create_app(gate, settings)
        echo(f"spendgate: serving {settings.db} on {settings.url}")
        if token is not None:
            echo(f"first start: an admin API key was made; it is shown this once: {token}")
            echo(f"try: curl -H 'Authorization: Bearer {token}' {settings.url}/api/cost/current")
        # On the first start the link signs in as the new admin key; later, as a read key.
        key_id = token.split("_")[1] if token is not None else dashboard_key(gate)
        echo(
            f"dashboard: {signin_link(app, settings, key_id)} "
            f"(sign-in link: works once, within {DEFAULT_SIGNIN_TTL / 60:.0f} minutes)"
        )
        if workload is not None:
            worker = threading.Thread(
                target=workload, args=(gate, stop), name="spendgate-demo", daemon=True
            )
            worker.start()
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=5)
        gate.close()
