"""The live feed: `/ws/cost-monitoring` sends the current state on connect, then
`cost_update` messages when the figures change and `cost_alert` messages when an alert
fires, resolves, or is acknowledged or silenced.

One task per server process watches the store (a few cheap rollup reads a second, only while
clients are connected), so events recorded through any process (or any library user on the
same store) reach the clients of every process. Updates are coalesced: a client is sent the
newest state at most once per `ws_interval`, and a slow client only ever has one pending
update plus a bounded queue of alerts; one that falls further behind is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from spendgate.alerts.notices import alert_dict
from spendgate.errors import SpendgateError
from spendgate.keys import KeyRing
from spendgate.server.auth import declare, websocket_key
from spendgate.server.context import Context

log = logging.getLogger("spendgate.server")
router = APIRouter()
SEND_TIMEOUT = 10.0  # seconds a client may take to take one message before it is dropped
CLOSE_TIMEOUT = 1.0  # seconds the clients may take to take the close when the server stops
REFRESH_EVERY = 20  # ticks: figures with an `as_of` are sent again now and then unchanged
REQUEST_METRICS = "request_current_metrics"
ALERTS_SHOWN = 50  # the newest alerts each look reads
KEY_CHECK_EVERY = 8  # ticks between checks that the clients' keys are still live


def current_state(ctx: Context) -> dict[str, Any]:
    """What a client is sent: live metrics and every budget's standing, as of now."""
    standing = ctx.gate.status()  # one reading for the live figures and the budgets
    live = ctx.analyst.live(standing).to_dict()
    live["budgets"] = [s.to_dict() for s in standing]
    recent = [alert_dict(a, ctx.gate.config) for a in ctx.gate.store.alerts(limit=ALERTS_SHOWN)]
    live["recent_alerts"] = recent
    live["alerts"] = [a for a in recent if a["state"] == "firing"]
    return live


def _alert_mark(alert: dict[str, Any]) -> tuple[Any, ...]:
    """What about an alert is news to a client."""
    return (alert["state"], alert["acknowledged_at"], alert["silenced_until"])


def _fingerprint(state: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when money moves or a budget is redefined (not the clock): spend,
    requests and budgets."""
    figures = state["live_figures"]
    return (
        figures["current_daily_spend"]["value"],
        figures["free_source_success_rate"]["value"],
        state.get("unpriced_requests_today"),
        tuple(
            (b["name"], b["scope"], b["window"], b["limit"], b["spent"], b["reserved"], b["level"])
            for b in state["budgets"]
        ),
    )


@dataclass(eq=False, slots=True)
class Client:
    """One connected WebSocket: its newest pending update and its queued alerts."""

    websocket: WebSocket
    queue_size: int
    update: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False
    key_id: str | None = None
    """The key the client signed in with: revoking it ends the feed."""
    revoked: bool = False

    def offer_update(self, message: dict[str, Any]) -> None:
        """Replace any update not yet sent: a slow client skips to the newest state."""
        self.update = message
        self.ready.set()

    def offer_alert(self, message: dict[str, Any]) -> None:
        """Queue an alert; a client this far behind is dropped instead."""
        if len(self.alerts) >= self.queue_size:
            self.dropped = True
        else:
            self.alerts.append(message)
        self.ready.set()


class Hub:
    """The connected clients of one server process, and the task that feeds them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.clients: set[Client] = set()
        self._alerts: dict[str, tuple[Any, ...]] | None = None
        self._last: tuple[Any, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (from the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching and close every client, all at once (one that does not take the
        close within `CLOSE_TIMEOUT` is left to the server's own shutdown: no client holds
        up the stop)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        closing = [
            asyncio.wait_for(client.websocket.close(code=1001), CLOSE_TIMEOUT)
            for client in list(self.clients)
        ]
        await asyncio.gather(*closing, return_exceptions=True)

    async def state(self) -> dict[str, Any]:
        """The current state, read off the event loop."""
        return await run_in_threadpool(current_state, self.ctx)

    async def _watch(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.ctx.settings.ws_interval)
            if not self.clients:
                continue
            tick += 1
            try:
                if tick % KEY_CHECK_EVERY == 0:
                    await run_in_threadpool(self._drop_revoked)
                state = await self.state()
            except SpendgateError as exc:  # the store is down: try again next tick
                log.warning("live feed: %s", exc)
                continue
            except Exception:  # a bug must not stop the feed for good: logged, tried again
                log.exception("live feed")
                continue
            self._alerts_changed(state["recent_alerts"])
            key = _fingerprint(state)
            if key != self._last or tick % REFRESH_EVERY == 0:
                self._last = key
                self.publish({"type": "cost_update", "timestamp": state["as_of"], "data": state})

    def _alerts_changed(self, alerts: list[dict[str, Any]]) -> None:
        """Announce alerts that are new or changed (fired, resolved, acknowledged,
        silenced) since the last look: read from the store, so every process's clients see
        every alert, whichever process raised it."""
        seen = self._alerts
        self._alerts = {a["alert_id"]: _alert_mark(a) for a in alerts}
        if seen is None:
            return  # the first look: what exists now was in each client's first state
        for alert in reversed(alerts):  # oldest first
            if seen.get(alert["alert_id"]) != self._alerts[alert["alert_id"]]:
                self.publish({"type": "cost_alert", "alert": alert})

    def publish(self, message: dict[str, Any]) -> None:
        """Offer a message to every client (never waits on any of them)."""
        for client in list(self.clients):
            if message["type"] == "cost_update":
                client.offer_update(message)
            else:
                client.offer_alert(message)

    def _drop_revoked(self) -> None:
        """Close the feed of every client whose key was revoked (or is gone) since."""
        live = {k.key_id for k in self.ctx.keys.keys() if k.revoked_at is None}  # noqa: SIM118
        for client in list(self.clients):
            if client.key_id is not None and client.key_id not in live:
                client.dropped = True
                client.revoked = True
                client.ready.set()

    async def serve(self, websocket: WebSocket, key_id: str | None = None) -> None:
        """One client's connection, from the first state to the disconnect."""
        client = Client(websocket, self.ctx.settings.ws_queue, key_id=key_id)
        state = await self.state()
        if self._alerts is None:
            # The watcher's first look must not take an alert raised after this state was
            # read (and so unknown to this client) as one the client already has.
            self._alerts = {a["alert_id"]: _alert_mark(a) for a in state["recent_alerts"]}
        await websocket.send_json(
            {"type": "cost_state", "timestamp": state["as_of"], "data": state}
        )
        self.clients.add(client)
        sender = asyncio.get_running_loop().create_task(self._send(client))
        try:
            while not client.dropped:
                text = await websocket.receive_text()
                if _asks_for_metrics(text):
                    metrics = await run_in_threadpool(self.ctx.analyst.live)
                    client.offer_update(
                        {"type": "current_metrics", "timestamp": metrics.as_of.isoformat(),
                         "data": metrics.to_dict()}
                    )  # fmt: skip
        except WebSocketDisconnect:
            pass
        finally:
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send(self, client: Client) -> None:
        try:
            while True:
                await client.ready.wait()
                client.ready.clear()
                if client.revoked:
                    await client.websocket.close(code=1008, reason="the key was revoked")
                    return
                if client.dropped:
                    await client.websocket.close(code=1013, reason="too slow: reconnect")
                    return
                pending, client.alerts = client.alerts, []
                if client.update is not None:
                    pending.append(client.update)
                    client.update = None
                for message in pending:
                    await asyncio.wait_for(client.websocket.send_json(message), SEND_TIMEOUT)
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
            # A dead or stuck client: forget it; the others are not affected.
            client.dropped = True
            self.clients.discard(client)
            with contextlib.suppress(Exception):
                await client.websocket.close(code=1011)


def _asks_for_metrics(text: str) -> bool:
    if text.strip() == REQUEST_METRICS:
        return True
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == REQUEST_METRICS


@router.websocket("/ws/cost-monitoring")
@declare("read", services="all")  # every service's figures: a limited key is refused
async def cost_monitoring(websocket: WebSocket) -> None:
    """The live feed. Authenticate with `Authorization: Bearer …`, `?token=…` or the
    dashboard's session cookie (read scope, a key for every service)."""
    keys: KeyRing = websocket.app.state.keys
    key = websocket_key(websocket, keys)
    if key is None or key.services is not None:
        # Refused before the handshake completes: the client sees HTTP 403.
        await websocket.close(code=1008, reason="a valid API key for all services is required")
        return
    await websocket.accept()
    hub: Hub = websocket.app.state.hub
    await hub.serve(websocket, key.key_id)
