"""The dispatcher: delivers the outbox, at least once, with retries and exponential backoff.

Each round claims due notifications for a while (`lease`), so several dispatchers (server
processes, hosts) never send the same one at once, and one that dies mid-round leaves its
claims to expire and be taken by another. One asked to stop (`stop`, checked between sends;
each send is bounded by the channels' timeout) gives back what it claimed and did not send,
so the next dispatcher sends it at once rather than after the claim lapses. A notification
the channel accepted is marked delivered and never sent again; one it refused is tried
again later, its delay doubling from `base_delay` up to `max_delay`. Each message carries a
key stable per (alert, round, channel) so a receiver can drop the repeat a crash between
sending and marking may cause.

A notification whose channel was deleted (from `spendgate.toml`, or set to `false` over the
API) can never be delivered: it ends as a dead letter (`Store.dead()`, "channel 'NAME' was
deleted"), visible in the outbox, and is never tried again. This is decided here, when it
is due, not when the channel is deleted: a channel removed from the file is known only to
the processes that read the file again, and a channel added a moment ago over another
server's API is looked for once more (`Gate.refresh()`) before a row is given up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from spendgate.alerts import channels
from spendgate.alerts.channels import DeliveryError
from spendgate.errors import ValidationError
from spendgate.gate import Gate
from spendgate.redaction import redact
from spendgate.settings import ChannelSettings
from spendgate.store.base import OutboxStore
from spendgate.windows import duration_micros, to_micros

log = logging.getLogger("spendgate.alerts")
DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_BASE_DELAY = timedelta(seconds=5)
DEFAULT_MAX_DELAY = timedelta(minutes=5)
BATCH = 50
DEAD = "not delivered, not tried again"
Sender = Callable[[ChannelSettings, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Round:
    """What one dispatch round did."""

    delivered: int = 0
    failed: int = 0
    released: int = 0
    """Claimed but not sent, because the dispatcher was asked to stop: given back."""
    dead: int = 0
    """Ended undelivered (dead letters): their channels were deleted."""


def backoff(attempts: int, base: timedelta, most: timedelta) -> timedelta:
    """The wait before attempt `attempts + 1`: `base` doubled per failed attempt, capped."""
    wait: timedelta = base * 2 ** max(attempts - 1, 0)
    return min(wait, most)


class Dispatcher:
    """Delivers a gate's store's outbox through the configured channels."""

    def __init__(
        self,
        gate: Gate,
        *,
        worker: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        base_delay: timedelta = DEFAULT_BASE_DELAY,
        max_delay: timedelta = DEFAULT_MAX_DELAY,
        send: Sender = channels.send,
    ) -> None:
        self.gate = gate
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = lease
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.send = send

    @property
    def _outbox(self) -> OutboxStore:
        """All of the gate's store a dispatcher uses (the gate gives its clock, channels and
        configuration)."""
        return self.gate.store

    def run_once(self, stop: threading.Event | None = None) -> Round:
        """Claim what is due, send it, and mark each delivered or failed. Once `stop` is set
        no further send starts: what is left of the claim is given back, due at once."""
        if stop is not None and stop.is_set():
            return Round()
        store = self._outbox
        now = to_micros(self.gate.clock())
        until = now + duration_micros(self.lease)
        # No more than can be sent within the claim, each send taking up to its timeout:
        # a claim never runs out mid-round, so no other dispatcher sends the same one.
        most = max(1, min(BATCH, int(self.lease.total_seconds() // channels.TIMEOUT)))
        claimed = store.claim(self.worker, now=now, until=until, limit=most)
        delivered = failed = dead = 0
        refreshed = False
        for item in claimed:
            if stop is not None and stop.is_set():
                released = store.release_claims(self.worker)
                return Round(delivered, failed, released, dead)
            channel = self.gate.config.alerts.find(item.channel)
            if channel is None and not refreshed:  # added elsewhere a moment ago?
                refreshed = True
                self.gate.refresh()
                channel = self.gate.config.alerts.find(item.channel)
            if channel is None:
                reason = f"channel {item.channel!r} was deleted: {DEAD}"
                store.dead(item.key, self.worker, at=to_micros(self.gate.clock()), reason=reason)
                log.warning("notification %s ended undelivered: %s", item.key, reason)
                dead += 1
                continue
            try:
                self.send(channel, item.payload)
            except Exception as exc:  # any failure is retried, never lost
                wait = backoff(item.attempts, self.base_delay, self.max_delay)
                at = to_micros(self.gate.clock())
                store.failed(
                    item.key,
                    self.worker,
                    error=_shown(item.channel, exc),
                    retry_at=at + duration_micros(wait),
                )
                log.warning(
                    "notification %s not delivered (attempt %d): %s",
                    item.key,
                    item.attempts,
                    _detail(exc),
                )
                failed += 1
            else:
                store.delivered(item.key, self.worker, to_micros(self.gate.clock()))
                delivered += 1
        return Round(delivered, failed, dead=dead)


def _shown(channel: str, exc: Exception) -> str:
    """The outbox's `last_error`, which admins read over HTTP: that it was not delivered
    (never what answered), or which channel setting is wrong."""
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return redact(str(exc))
    return f"channel {channel!r}: {channels.NOT_DELIVERED}"


def _detail(exc: Exception) -> str:
    """Why it failed, for the server's log, with URLs redacted."""
    if isinstance(exc, DeliveryError):
        return f"{exc}: {exc.detail}"
    return redact(f"{type(exc).__name__}: {exc}")
