"""The storage contract: few, coarse methods, each one transaction.

Every backend implements `Store` with its own atomic primitive, and one contract test suite
runs against all of them. Times are integer microseconds since the Unix epoch (UTC); money is
integer nano-units. What a store counts per budget window, and the invariant it keeps, are
`spendgate.accounting`'s.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from threading import Thread
from typing import Any, ClassVar, Literal

from spendgate.accounting import QuotaUse, Recount, Slot
from spendgate.errors import ValidationError
from spendgate.events import Event, RecordResult
from spendgate.money import Nanos
from spendgate.pricing import Price
from spendgate.rollups import Tally, tiles
from spendgate.settings import Severity
from spendgate.store.stream_days import StreamDay

TallyRow = tuple[int, str, str, Tally]
"""(span index, service, source, tally): one row of `Store.tallies()`."""
MAX_SPANS = 2000

ReserveStatus = Literal["created", "exists", "conflict", "denied"]
KeyScope = Literal["read", "write", "admin"]
KEY_SCOPES: tuple[KeyScope, ...] = ("read", "write", "admin")
"""API key scopes, each including the ones before it."""
ReservationState = Literal["pending", "committed", "released", "expired"]


@dataclass(frozen=True, slots=True)
class Draw:
    """The part of leases a call held: `held` on each of `leases` (one per leased budget).

    Settling it moves `held` out of each lease and the cost into spent, in the event's
    transaction; a lease that is no longer pending (it expired) covers nothing, and the cost
    is booked as unreserved spend.
    """

    leases: tuple[str, ...]
    held: Nanos


@dataclass(frozen=True, slots=True)
class EventWrite:
    """An event to store, the budget slots its cost counts against, and (for tiered prices)
    the price and quota counters its cost depends on: the store computes such a cost inside
    its transaction, from the counters as they stand. `draw` is set for a call whose hold was
    taken from leases; `budget_day` the local day its cost counts in (see `RecordResult`)."""

    event: Event
    slots: tuple[Slot, ...] = ()
    price: Price | None = None
    quota: tuple[QuotaUse, ...] = ()
    draw: Draw | None = None
    budget_day: date | None = None


@dataclass(frozen=True, slots=True)
class ReservationWrite:
    """A hold of `amount` on every slot, all or nothing, until `expires_at`."""

    reservation_id: str
    fingerprint: str
    slots: tuple[Slot, ...]
    amount: Nanos
    created_at: int
    expires_at: int
    service: str
    source: str
    emergency: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """What `reserve()` did.

    `used` is each slot's usage (spent + reserved over its window): after the hold when
    `created`, as it stands when `denied` (then `refused` is the index of the slot that
    refused). `exists` means the same reservation was already taken (`state` says where it is
    now); `conflict` means the id was taken with a different payload.
    """

    status: ReserveStatus
    used: tuple[Nanos, ...] = ()
    refused: int | None = None
    state: ReservationState | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """A settled reservation: the event written, its cost, and how far it overshot."""

    reservation_id: str
    request_id: str
    cost: Nanos | None
    overshoot: Nanos
    hold_expired: bool


@dataclass(frozen=True, slots=True)
class Balance:
    """A budget's figures over one window (nano-units)."""

    spent: Nanos = 0
    reserved: Nanos = 0
    overshoot: Nanos = 0

    @property
    def used(self) -> Nanos:
        """Spent plus reserved: what counts against the limit."""
        return self.spent + self.reserved


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """A stored reservation, as read back."""

    reservation_id: str
    state: ReservationState
    amount: Nanos
    service: str
    source: str
    created_at: int
    expires_at: int
    emergency: bool
    actual: Nanos | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: its public id and the hash of its secret, never the secret.

    `services` limits the key to those services (`None`: every service). A revoked key has
    `revoked_at` set and authenticates nothing.
    """

    key_id: str
    name: str
    scope: KeyScope
    services: tuple[str, ...] | None
    secret_hash: str
    created_at: int
    created_by: str
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class Definition:
    """A budget, source or other setting defined at run time (over the API), as stored.

    `spec` is the same mapping a `spendgate.toml` table holds; `None` marks a deletion (which
    also hides a definition of that name in the file). `revision` is the audit entry that
    last changed it.
    """

    kind: str
    name: str
    spec: Mapping[str, Any] | None
    revision: int
    changed_at: int
    changed_by: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to definitions or keys: who, when, what, and the value before and after.

    `revision` numbers changes in the order they committed, from 1.
    """

    revision: int
    at: int
    actor: str
    action: str
    kind: str
    name: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


AlertState = Literal["firing", "resolved"]
NotificationState = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a rule that fired for a scope, and where it stands.

    `alert_id` is stable for what it is about (`budget:daily:0.8:<window start>` fires once a
    window), so every process that sees the same condition names the same alert. `rounds`
    counts the notification rounds enqueued for it (the firing, each repeat, the resolve):
    an evaluator enqueues round N only if the alert is still at N - 1, so several
    evaluators never notify twice.
    """

    alert_id: str
    rule: str
    scope: str
    severity: Severity
    state: AlertState
    fired_at: int
    value: str | None = None
    threshold: str | None = None
    window_start: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    resolved_at: int | None = None
    acknowledged_at: int | None = None
    acknowledged_by: str | None = None
    silenced_until: int | None = None
    rounds: int = 0
    notified_at: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to deliver through one channel (a row of the outbox).

    `key` is stable per alert, round and channel (`<alert_id>/<round>/<channel>`): it is
    sent with the message so receivers can drop a repeat. Delivery is at least once; a
    notification marked delivered is never sent again.
    """

    key: str
    alert_id: str
    channel: str
    payload: Mapping[str, Any]
    created_at: int
    attempts: int = 0
    next_attempt_at: int = 0
    delivered_at: int | None = None
    last_error: str | None = None
    dead_at: int | None = None
    """When it ended undelivered, a dead letter (its channel was deleted; `last_error`
    says so): never tried again."""

    @property
    def state(self) -> NotificationState:
        """`pending` (to be tried, again), `delivered`, or `dead`: both are final."""
        if self.delivered_at is not None:
            return "delivered"
        return "dead" if self.dead_at is not None else "pending"


CLOSE_WAIT = 10.0
"""Seconds `close()` waits for the calls in flight before it leaves the closing to the last of
them (a SQLite call waits at most its busy timeout for the write lock; most take microseconds)."""


class LedgerStore(ABC):
    """The ledger: holds on budget windows, their settlement, events, and what they add up to.

    What the gate writes on every paid call, and what its leases (`reserve`, `adjust`,
    `release`, `usage`) and the readers of figures (`tallies`, `balance`: analytics, metrics,
    the dashboard, the alert evaluator's snapshot) use. Writers never see each other
    half-way: a reservation holds on all its slots or on none, and an event is stored with its
    budget charges or not at all.
    """

    @abstractmethod
    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        """Each slot's usage (spent + reserved over its window) as it stands."""

    @abstractmethod
    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        """Hold `write.amount` on every slot if each stays within its cap, atomically.

        Idempotent by `reservation_id`. A refusal caused by holds that have expired sweeps
        them and tries again, so a leaked hold never blocks a paying caller.
        """

    @abstractmethod
    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        """Settle a reservation with its actual cost and store its event.

        Raises `ReservationStateError` for an unknown, committed or released reservation.
        A reservation whose hold expired is still booked, truthfully, as unreserved spend.
        """

    @abstractmethod
    def release(self, reservation_id: str, now: int) -> ReservationState:
        """Return a pending hold. Returns `released`, or `expired` if it had expired already.

        Raises `ReservationStateError` for an unknown, committed or released reservation.
        """

    async def areserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        """`reserve()` for asyncio code: the task waits, its event loop does not. Here on a
        worker thread; the SQL stores queue it for their group commit instead, the in-memory
        store answers at once (it waits for nothing)."""
        return await asyncio.to_thread(self.reserve, write, now)

    async def acommit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        """`commit()` for asyncio code (see `areserve()`)."""
        return await asyncio.to_thread(self.commit, reservation_id, write, now)

    async def arelease(self, reservation_id: str, now: int) -> ReservationState:
        """`release()` for asyncio code (see `areserve()`)."""
        return await asyncio.to_thread(self.release, reservation_id, now)

    @abstractmethod
    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        """Grow (`delta > 0`, only within every cap) or shrink a pending hold, and move its
        expiry to `expires_at`: how a lease is topped up, renewed and partly returned.

        `created` with the usage after; `denied` (nothing changed) when a cap refuses;
        `exists` with `state` when the hold is no longer pending. Raises
        `ReservationStateError` for an unknown reservation.
        """

    @abstractmethod
    def expire(self, now: int) -> int:
        """Return every hold whose time ran out; how many there were."""

    @abstractmethod
    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Store events and charge their costs, idempotently by request id, in one transaction.

        An event with a `draw` settles its lease holds (see `Draw`) in the same transaction.
        """

    @abstractmethod
    def balance(self, slot: Slot) -> Balance:
        """A budget's spent, reserved and overshoot over the window of `slot`."""

    @abstractmethod
    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with `since <= time < until`, oldest first."""

    def tallies(self, spans: Sequence[tuple[int, int]]) -> list[TallyRow]:
        """The rollups summed over each `[since, until)` span (rounded out to whole minutes),
        by service and source: `(span index, service, source, tally)` for each that has any.

        All spans in one read, so a series of days costs one round trip.
        """
        if not spans:
            return []
        if len(spans) > MAX_SPANS:
            raise ValidationError("spans", len(spans), f"at most {MAX_SPANS} spans in one read")
        pieces = [
            (i, *tile) for i, (since, until) in enumerate(spans) for tile in tiles(since, until)
        ]
        return self._tallies(pieces) if pieces else []

    @abstractmethod
    def location_tallies(self, since: int, until: int) -> dict[str, Tally]:
        """The events in `[since, until)` that say where they were made (`Event.location`),
        summed by place. Places are not rolled up: this reads those events themselves (an
        index holds only them), so it is for reports, never the hot path."""

    @abstractmethod
    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        """Sum the rollups over `(span index, step, first bucket, end)` pieces, by span,
        service and source."""

    @abstractmethod
    def first_minutes(self) -> dict[str, int]:
        """Each service's first event, as the start of the minute it is in: where the
        service's series of days begins (a day before it has no data; it is not a $0 day).

        One read of the rollups, bounded by their day rows and one day's minute rows per
        service, however many events there are. An event recorded later with an earlier
        time moves it.
        """

    @abstractmethod
    def stream_days(self, since: str, source: str, service: str | None) -> list[StreamDay]:
        """The second seed's `usage_monitoring` rows of `source` (and `service`) dated
        `since` (YYYY-MM-DD) or later, newest first: the SQL backends read their view, the
        memory backend applies the same rule (see `spendgate.store.stream_days`)."""

    @abstractmethod
    def event(self, request_id: str) -> Event | None:
        """The stored event with this request id, or `None`."""

    @abstractmethod
    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        """A stored reservation, or `None`."""


class ControlStore(ABC):
    """The control plane: definitions made at run time, their audit, API keys.

    What `Control`, the gate's configuration refresh (`binding.Bindings`) and the key ring
    (`keys.py`) use. Rare writes, each one transaction that also appends its audit entry.
    Revisions commit in order (backends with concurrent writers serialize these writes), so a
    reader that saw revision N has seen every change up to N.
    """

    @abstractmethod
    def define(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any] | None,
        *,
        expected: int,
        action: str,
        actor: str,
        at: int,
        recount: Recount | None = None,
    ) -> AuditEntry:
        """Write (`spec`) or delete (`None`) a definition, if its revision is still
        `expected` (0: no definition of that kind and name yet), and append the audit entry.

        With `recount` (a budget created, or its scope or window changed), the budget's
        counter is counted again from the ledger in the same transaction (see
        `accounting.Recount`): a store whose ledger is elsewhere raises `NotImplementedError`.
        Raises `ChangedError` when another change got there first; nothing is written then.
        """

    @abstractmethod
    def definitions(self) -> list[Definition]:
        """Every stored definition, deletions included, in revision order."""

    @abstractmethod
    def revision(self) -> int:
        """The newest audit revision (0 before the first change): cheap, for polling."""

    @abstractmethod
    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first: up to `limit` with revision below `before`."""

    @abstractmethod
    def add_key(self, key: ApiKey) -> AuditEntry:
        """Store a new API key (its id must be new) and audit it (`key.create`, by
        `key.created_by`; the entry shows the key's public fields, never its hash)."""

    @abstractmethod
    def keys(self) -> list[ApiKey]:
        """Every API key, revoked ones included, oldest first."""

    @abstractmethod
    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        """Revoke a key (audited as `key.revoke`); `None` for an unknown id. Revoking a
        revoked key changes nothing and returns it as it is."""


class AlertStore(ABC):
    """Alerts, the notification rounds enqueued for them, and services' heartbeats.

    What the alert evaluator (`alerts/engine.py`) and the alert routes use. Budget lines are
    not fired through this: a ledger method raises them in the transaction that crosses them
    (see `Slot.lines`), every line once per window (a rolling window: once per its length),
    none missed, whatever the concurrency. Other rules fire from an evaluator; `enqueue()`
    lets several evaluators share the work without notifying twice.
    """

    @abstractmethod
    def fire(self, alert: Alert) -> bool:
        """Store `alert` unless an alert with its id exists or one of the same rule and scope
        is firing (so evaluators judging in different periods never raise one condition
        twice); whether it was new. Budget crossings are raised by the spending transactions
        themselves, not through this."""

    @abstractmethod
    def alert(self, alert_id: str) -> Alert | None:
        """The stored alert with this id, or `None`."""

    @abstractmethod
    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        """Alerts (in `state`, if given), newest fired first: up to `limit` (1 to 10,000)
        fired before `before`."""

    @abstractmethod
    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        """Resolve a firing alert at `at` (with the value that cleared it; `None` keeps its
        last); the alert as it is now, or `None` if it was not firing."""

    @abstractmethod
    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        """Record that `actor` saw the alert (the first acknowledgement stands); `None` for
        an unknown id."""

    @abstractmethod
    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        """Hold the alert's repeats back until `until` (acknowledging it for `actor`, if no
        one had); `None` for an unknown id."""

    @abstractmethod
    def enqueue(
        self, alert_id: str, round: int, notifications: Sequence[Notification], at: int
    ) -> bool:
        """If the alert has had `round - 1` rounds, add the notifications (each unless its
        key is queued already) and count the round, notified at `at`; whether it did. Of
        evaluators enqueueing the same round, exactly one does."""

    @abstractmethod
    def heartbeat(self, service: str, at: int) -> None:
        """Record that `service` was alive at `at` (a later time than the stored one wins)."""

    @abstractmethod
    def heartbeats(self) -> dict[str, int]:
        """The last time each service was seen alive."""


class OutboxStore(ABC):
    """The outbox: notifications claimed, delivered, retried or given up, by dispatchers.

    What the dispatcher (`alerts/dispatcher.py`) uses; `claim()` lets several dispatchers
    share the work without sending a notification twice.
    """

    @abstractmethod
    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        """Take up to `limit` (1 to 10,000) due notifications for `worker` until `until`:
        pending (neither delivered nor dead), `next_attempt_at <= now`, and not held by a
        claim still running. Each counts an attempt; no two claims running at once take the
        same notification."""

    @abstractmethod
    def delivered(self, key: str, worker: str, at: int) -> bool:
        """Mark a notification `worker` holds delivered (it is never claimed again);
        whether it held it."""

    @abstractmethod
    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        """Give back a notification `worker` holds, to be tried again at `retry_at`;
        whether it held it."""

    @abstractmethod
    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        """End a notification `worker` holds undelivered at `at`, a dead letter that is
        never claimed again (`reason`, its `last_error`, says why: its channel was deleted);
        whether it held it."""

    @abstractmethod
    def release_claims(self, worker: str) -> int:
        """Give back every notification `worker` still holds unsent (a dispatcher that
        stops): each is due again at once for any dispatcher, its claim not counted as an
        attempt; how many."""

    @abstractmethod
    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        """Queued notifications (of one alert, in one state, if given), newest first, up to
        `limit`."""


class Store(LedgerStore, ControlStore, AlertStore, OutboxStore):
    """The storage contract every backend implements: every role, and the store's own
    lifecycle.

    Each method is one transaction, and a method that returned has reached durable storage
    (where the backend has any). A consumer that needs only one role says so in its types
    (`LedgerStore`, `ControlStore`, `AlertStore`, `OutboxStore`); the gate holds the whole.
    """

    url: str
    where: str
    """The store as messages name it (a file, or a server without its password)."""
    batched: ClassVar[bool] = False
    """Whether concurrent `record()` callers gain from sharing one transaction."""

    @abstractmethod
    def probe_write(self, at: int) -> None:
        """Commit one small write that grows nothing (the single row of `write_probe`,
        replaced), to learn whether the store takes writes now; raise `StoreError` (its
        `reason` saying why) if not. For health checks after a write failed: a store that
        answers reads may still refuse every write (a full disk, a read-only file or server).
        """

    def admit_only(self, threads: Collection[Thread]) -> None:
        """Refuse calls from every thread but `threads` from now on, as `close()` would (a
        gate closing: its writer still writes what is queued). A store whose calls cannot
        starve others (memory: microseconds under one lock) need not."""

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Release connections and background resources.

        Safe from any thread, at any time, and more than once: calls already in flight
        finish (or raise `StoreClosedError` if they need the store again), later calls raise
        `StoreClosedError`, and no connection is closed under a call that is using it.
        Waits at most `timeout` seconds for the calls in flight; any still running then
        close the connections themselves as the last of them ends.
        """


def url_flag(value: str, field: str) -> bool:
    """A yes/no URL option (`true`/`false`, `yes`/`no`, `1`/`0`); anything else is refused,
    so a typo never turns on what it meant to turn off."""
    flag = value.strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    raise ValidationError(field, value, "true or false")


def key_record(key: ApiKey) -> dict[str, Any]:
    """A key's public fields, as audit entries and listings show them (never the hash)."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scope": key.scope,
        "services": None if key.services is None else list(key.services),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "revoked_at": key.revoked_at,
    }
