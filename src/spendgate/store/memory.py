"""The in-memory store (`memory://`): the contract in plain Python under one lock.

For tests and for single-process use where nothing needs to survive a restart. It is also
the reference the SQL backends are checked against by the contract suite.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from spendgate.accounting import (
    Settlement,
    Slot,
    check_room,
    cost_with_quota,
    drawn_plan,
    hold_limit,
    overshoot_of,
    usage_limit_error,
)
from spendgate.errors import ChangedError, ConflictError, ReservationStateError, StoreClosedError
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import MAX_TOTAL, Nanos
from spendgate.rollups import (
    BOUNDED,
    RollupKey,
    Tally,
    bounded_sums,
    merge,
    rollup_limit_error,
    rollup_rows,
)
from spendgate.store.alerting import Crossings, alert_limit, fired_in_window
from spendgate.store.base import (
    CLOSE_WAIT,
    Alert,
    AlertState,
    ApiKey,
    AuditEntry,
    Balance,
    CommitResult,
    Definition,
    EventWrite,
    Notification,
    NotificationState,
    ReservationInfo,
    ReservationState,
    ReservationWrite,
    ReserveResult,
    Store,
    TallyRow,
    key_record,
)
from spendgate.store.rows import audit_limit, json_spec, spec_json
from spendgate.windows import to_micros


@dataclass(slots=True)
class _Reservation:
    write: ReservationWrite
    state: ReservationState = "pending"
    actual: Nanos | None = None
    amount: Nanos = 0  # held now (a lease's changes as it is topped up and drawn from)
    expires_at: int = 0

    def __post_init__(self) -> None:
        self.amount, self.expires_at = self.write.amount, self.write.expires_at


@dataclass(frozen=True, slots=True)
class _Saved:
    """What a write may change, as it stood before: budget rows (`None`: none yet), quota
    counters, leases' amounts, and the request ids it may add."""

    rows: dict[tuple[str, int], list[int] | None]
    quota: dict[tuple[str, str, int], Decimal | None]
    leases: dict[str, Nanos]
    new_events: set[str]


@dataclass(slots=True)
class _Queued:
    """A row of the outbox: the notification and who holds it until when."""

    notification: Notification
    claimed_by: str | None = None
    claimed_until: int | None = None


class MemoryStore(Store):
    """Everything in dictionaries; one lock makes each method one transaction."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = self.where = url
        self._lock = threading.Lock()
        # budget -> bucket -> [spent, reserved, overshoot]
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._events: dict[str, Event] = {}
        self._quota: dict[tuple[str, str, int], Decimal] = {}
        self._rollups: dict[RollupKey, Tally] = {}
        self._definitions: dict[tuple[str, str], Definition] = {}
        self._audit: list[AuditEntry] = []  # revision r at index r - 1
        self._keys: dict[str, ApiKey] = {}
        self._alerts: dict[str, Alert] = {}
        self._outbox: dict[str, _Queued] = {}
        self._heartbeats: dict[str, int] = {}
        self._closed = False

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse later calls. Under the lock: a call in flight (microseconds) finishes first,
        and every call checks inside the lock, so none runs after `close()` returns."""
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        # Called with the lock held (see `close()`).
        if self._closed:
            raise StoreClosedError(self.where)

    # -- budget arithmetic (caller holds the lock) -------------------------------------------

    def _row(self, slot: Slot) -> list[int]:
        buckets = self._buckets.setdefault(slot.budget, {})
        row = buckets.get(slot.bucket)
        if row is None:
            row = buckets[slot.bucket] = [0, 0, 0]
        return row

    def _used(self, slot: Slot) -> Nanos:
        buckets = self._buckets.get(slot.budget)
        if not buckets:
            return 0
        if slot.span_start == slot.bucket:
            row = buckets.get(slot.bucket)
            return row[0] + row[1] if row else 0
        return sum(r[0] + r[1] for b, r in buckets.items() if slot.span_start <= b <= slot.bucket)

    def _charge(self, slot: Slot, amount: Nanos) -> Nanos:
        """Book spend no reservation covered, counting what lands above the cap as overshoot;
        `CounterLimitError` if the window's usage would pass `MAX_TOTAL`."""
        used = self._used(slot)
        check_room(slot, used, amount)
        over = overshoot_of(used, amount, slot.cap)
        row = self._row(slot)
        row[0] += amount
        row[2] += over
        return over

    def _expire_locked(self, now: int) -> int:
        expired = [
            r for r in self._reservations.values() if r.state == "pending" and r.expires_at <= now
        ]
        for r in expired:
            for slot in r.write.slots:
                self._row(slot)[1] -= r.amount
            r.state = "expired"
        return len(expired)

    def _book(self, crossings: Crossings) -> None:
        """Raise the alerts of the lines a transaction's changes crossed (caller holds the
        lock), with the SQL backends' rules: once per window, and on a rolling window once
        per its length."""
        if not crossings:
            return
        read = {(s.budget, s.bucket): self._used(s) for s in crossings.unknown()}
        for slot, alert in crossings.alerts(read):
            earlier = [
                (a.alert_id, a.window_start)
                for a in self._alerts.values()
                if a.rule == "budget" and a.scope == slot.budget
            ]
            if not fired_in_window(slot, alert, earlier):
                self._alerts.setdefault(alert.alert_id, alert)

    def _check_settle(self, slots: Sequence[Slot], held: Nanos, amount: Nanos) -> None:
        """Refuse a settle that would carry a window's usage past `MAX_TOTAL` (only an actual
        above its hold adds to usage)."""
        if amount > held:
            for slot in slots:
                check_room(slot, self._used(slot), amount - held)

    def _hold_refused(self, slot: Slot, used: Nanos, amount: Nanos) -> bool:
        """Whether the slot's cap refuses a hold of `amount` on usage `used`;
        `CounterLimitError` if only `MAX_TOTAL` does."""
        limit = hold_limit(slot.cap)
        if used + amount <= limit:
            return False
        if limit != slot.cap:
            raise usage_limit_error(slot, amount)
        return True

    def _saved(self, writes: Sequence[EventWrite], extra: Sequence[Slot] = ()) -> _Saved:
        """What a write of `writes` may change, as it stands: a write that fails half way
        is put back (`_restore`), as the SQL backends roll their transaction back."""
        slots = [*extra, *(s for w in writes for s in w.slots)]
        leases: dict[str, Nanos] = {}
        for w in writes:
            for lease_id in w.draw.leases if w.draw is not None else ():
                lease = self._reservations.get(lease_id)
                if lease is not None:
                    leases[lease_id] = lease.amount
                    slots.extend(lease.write.slots)
        rows = {}
        for slot in slots:
            row = self._buckets.get(slot.budget, {}).get(slot.bucket)
            rows[(slot.budget, slot.bucket)] = None if row is None else list(row)
        quota = {
            (q.source, q.unit, q.period): self._quota.get((q.source, q.unit, q.period))
            for w in writes
            for q in w.quota
        }
        new = {w.event.request_id for w in writes if w.event.request_id not in self._events}
        return _Saved(rows, quota, leases, new)

    def _restore(self, saved: _Saved) -> None:
        """Put back what `_saved()` kept."""
        for (budget, bucket), row in saved.rows.items():
            buckets = self._buckets.setdefault(budget, {})
            if row is None:
                buckets.pop(bucket, None)
            else:
                buckets[bucket] = row
        for key, used in saved.quota.items():
            if used is None:
                self._quota.pop(key, None)
            else:
                self._quota[key] = used
        for lease_id, amount in saved.leases.items():
            self._reservations[lease_id].amount = amount
        for request_id in saved.new_events:
            self._events.pop(request_id, None)

    def _cost(self, write: EventWrite) -> Nanos | None:
        """The event's cost; for tiered prices, from the quota counters, which it advances."""
        cost, counters = cost_with_quota(
            write.event,
            write.price,
            write.quota,
            lambda q: self._quota.get((q.source, q.unit, q.period), Decimal(0)),
        )
        for q, used in counters:
            self._quota[(q.source, q.unit, q.period)] = used
        return cost

    # -- the contract -------------------------------------------------------------------------

    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        with self._lock:
            self._check_open()
            return [self._used(s) for s in slots]

    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        with self._lock:
            self._check_open()
            existing = self._reservations.get(write.reservation_id)
            if existing is not None:
                same = existing.write.fingerprint == write.fingerprint
                return ReserveResult("exists" if same else "conflict", state=existing.state)
            result = self._try_hold(write, now)
            if result.status == "denied" and self._expire_locked(now):
                result = self._try_hold(write, now)
            return result

    def _try_hold(self, write: ReservationWrite, now: int) -> ReserveResult:
        used = [self._used(s) for s in write.slots]
        for i, (slot, u) in enumerate(zip(write.slots, used, strict=True)):
            if self._hold_refused(slot, u, write.amount):
                return ReserveResult("denied", tuple(used), refused=i)
        crossings = Crossings(write.slots)
        for slot in write.slots:
            self._row(slot)[1] += write.amount
        crossings.move(write.slots, write.amount, now)
        self._book(crossings)
        self._reservations[write.reservation_id] = _Reservation(write)
        return ReserveResult("created", tuple(u + write.amount for u in used))

    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        with self._lock:
            self._check_open()
            r = self._open_reservation(reservation_id, "commit")
            event = write.event
            if event.request_id in self._events:
                raise ConflictError("event", event.request_id)
            saved = self._saved([write], r.write.slots)
            try:
                return self._commit(r, write, now)
            except BaseException:
                self._restore(saved)
                raise

    def _commit(self, r: _Reservation, write: EventWrite, now: int) -> CommitResult:
        """`commit()`, with the lock held and the reservation open."""
        event = write.event
        cost = self._cost(write)
        amount, held = cost or 0, r.amount
        expired = r.state == "expired"
        plan = Settlement.plan(r.write.slots, write.slots, expired=expired)
        self._check_settle(plan.settle, held, amount)
        overshoot = 0 if expired else max(0, amount - held)
        crossings = Crossings(write.slots)
        crossings.move(plan.settle, amount - held, now)
        crossings.move(plan.unhold, -held, now)
        crossings.move(plan.charge, amount, now)
        for slot in plan.settle:
            row = self._row(slot)
            row[0] += amount
            row[1] -= held
            row[2] += overshoot
        for slot in plan.unhold:
            self._row(slot)[1] -= held
        for slot in plan.charge:
            overshoot = max(overshoot, self._charge(slot, amount))
        self._events[event.request_id] = replace(event, cost=cost)
        self._roll([(event, cost)])  # the last step that may refuse: alerts come after
        self._book(crossings)
        r.state, r.actual = "committed", cost
        return CommitResult(r.write.reservation_id, event.request_id, cost, overshoot, expired)

    def release(self, reservation_id: str, now: int) -> ReservationState:
        with self._lock:
            self._check_open()
            r = self._open_reservation(reservation_id, "release")
            if r.state == "expired":
                r.state = "released"
                return "expired"
            for slot in r.write.slots:
                self._row(slot)[1] -= r.amount
            r.state = "released"
            return "released"

    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        with self._lock:
            self._check_open()
            r = self._reservations.get(reservation_id)
            if r is None:
                raise ReservationStateError(reservation_id, "unknown", "adjust")
            if r.state != "pending":
                return ReserveResult("exists", state=r.state)
            used = [self._used(s) for s in r.write.slots]
            if delta > 0:
                for i, (slot, u) in enumerate(zip(r.write.slots, used, strict=True)):
                    if self._hold_refused(slot, u, delta):
                        return ReserveResult("denied", tuple(used), refused=i)
            delta = max(delta, -r.amount)
            crossings = Crossings(r.write.slots)
            for slot in r.write.slots:
                self._row(slot)[1] += delta
            crossings.move(r.write.slots, delta, now)
            self._book(crossings)
            r.amount += delta
            r.expires_at = expires_at
            return ReserveResult("created", tuple(u + delta for u in used))

    def _open_reservation(self, reservation_id: str, action: str) -> _Reservation:
        r = self._reservations.get(reservation_id)
        if r is None:
            raise ReservationStateError(reservation_id, "unknown", action)
        if r.state in ("committed", "released"):
            raise ReservationStateError(reservation_id, r.state, action)
        return r

    def expire(self, now: int) -> int:
        with self._lock:
            self._check_open()
            return self._expire_locked(now)

    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        with self._lock:
            self._check_open()
            saved = self._saved(writes)
            try:
                return self._record(writes)
            except BaseException:
                self._restore(saved)
                raise

    def _record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """`record()`, with the lock held."""
        results = []
        written: list[tuple[Event, Nanos | None]] = []
        crossings = Crossings(s for w in writes for s in w.slots)
        for write in writes:
            event = write.event
            found = self._events.get(event.request_id)
            if found is not None:
                status: RecordStatus = (
                    "exists" if found.fingerprint == event.fingerprint else "conflict"
                )
                results.append(RecordResult(event.request_id, status, found.cost))
                continue
            cost = self._cost(write)
            if write.draw is None:
                crossings.move(write.slots, cost or 0, to_micros(event.time))
                for slot in write.slots:
                    self._charge(slot, cost or 0)
            else:
                self._settle_draw(write, cost or 0, crossings)
            self._events[event.request_id] = replace(event, cost=cost)
            written.append((event, cost))
            results.append(RecordResult(event.request_id, "created", cost))
        self._roll(written)  # the last step that may refuse: alerts come after
        self._book(crossings)
        return results

    def _roll(self, written: list[tuple[Event, Nanos | None]]) -> None:
        """Add new events to the rollups, as the SQL backends do in the same transaction:
        all of them, or none if a bounded sum would pass `MAX_TOTAL`."""
        new: dict[RollupKey, Tally] = {}
        for step, bucket, service, source, *sums in rollup_rows(written):
            key = (step, bucket, service, source)
            found = self._rollups.get(key)
            had = (0, 0) if found is None else (found.cost, found.cache_hits)
            for name, stored, adding in zip(BOUNDED, had, bounded_sums(sums), strict=True):
                if stored + adding > MAX_TOTAL:
                    raise rollup_limit_error(key, name, adding)
            new[key] = Tally(*sums) if found is None else found + Tally(*sums)
        self._rollups.update(new)

    def _settle_draw(self, write: EventWrite, amount: Nanos, crossings: Crossings) -> None:
        """Move a drawn call's hold out of its leases and its cost into spent."""
        assert write.draw is not None
        held = write.draw.held
        leases: dict[str, Slot] = {}
        for lease_id in write.draw.leases:
            lease = self._reservations.get(lease_id)
            if lease is not None and lease.state == "pending":
                lease.amount -= held
                for slot in lease.write.slots:
                    leases[slot.budget] = slot
        plan = drawn_plan(leases, write.slots)
        self._check_settle(plan.settle, held, amount)
        at = to_micros(write.event.time)
        crossings.move(plan.settle, amount - held, at)
        crossings.move(plan.unhold, -held, at)
        crossings.move(plan.charge, amount, at)
        for slot in plan.settle:
            row = self._row(slot)
            row[0] += amount
            row[1] -= held
            row[2] += max(0, amount - held)
        for slot in plan.unhold:
            self._row(slot)[1] -= held
        for slot in plan.charge:
            self._charge(slot, amount)

    def balance(self, slot: Slot) -> Balance:
        with self._lock:
            self._check_open()
            rows = [
                r
                for b, r in self._buckets.get(slot.budget, {}).items()
                if slot.span_start <= b <= slot.bucket
            ]
            return Balance(
                sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows)
            )

    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        with self._lock:
            self._check_open()
            chosen = [
                e
                for e in self._events.values()
                if (since is None or to_micros(e.time) >= since)
                and (until is None or to_micros(e.time) < until)
            ]
        chosen.sort(key=lambda e: e.time)
        return chosen[:limit] if limit is not None else chosen

    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        with self._lock:
            self._check_open()
            rows = [
                ((i, service, source), tally)
                for (step, bucket, service, source), tally in self._rollups.items()
                for i, piece_step, lo, hi in pieces
                if step == piece_step and lo <= bucket < hi
            ]
        return [(*key, tally) for key, tally in merge(rows).items()]

    def event(self, request_id: str) -> Event | None:
        with self._lock:
            self._check_open()
            return self._events.get(request_id)

    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        with self._lock:
            self._check_open()
            r = self._reservations.get(reservation_id)
            if r is None:
                return None
            w = r.write
            return ReservationInfo(
                reservation_id,
                r.state,
                r.amount,
                w.service,
                w.source,
                w.created_at,
                r.expires_at,
                w.emergency,
                r.actual,
                dict(w.labels),
            )

    # -- the control plane ----------------------------------------------------------------------
    # Specs go in and come out as copies through JSON, as the SQL backends store them: a
    # caller's later change to its dict never reaches the store, and what reads back is what
    # they would read back.

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
    ) -> AuditEntry:
        after = _copy(spec)
        with self._lock:
            self._check_open()
            found = self._definitions.get((kind, name))
            revision = 0 if found is None else found.revision
            if revision != expected:
                raise ChangedError(f"{kind} {name!r}", expected, revision)
            before = None if found is None else found.spec
            entry = self._log(
                AuditEntry(self._next(), at, actor, action, kind, name, before, after)
            )
            self._definitions[(kind, name)] = Definition(
                kind, name, after, entry.revision, at, actor
            )
            return entry

    def _next(self) -> int:
        """The revision the next change takes (caller holds the lock)."""
        return len(self._audit) + 1

    def _log(self, entry: AuditEntry) -> AuditEntry:
        """Append the next entry (caller holds the lock); a copy of it for the caller."""
        self._audit.append(entry)
        return _fresh(entry)

    def definitions(self) -> list[Definition]:
        with self._lock:
            self._check_open()
            found = sorted(self._definitions.values(), key=lambda d: d.revision)
        return [replace(d, spec=_copy(d.spec)) for d in found]

    def revision(self) -> int:
        self._check_open()
        return len(self._audit)

    def probe_write(self, at: int) -> None:
        with self._lock:  # memory always takes a write
            self._check_open()

    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        audit_limit(limit)
        with self._lock:
            self._check_open()
            # Revision r sits at index r - 1: those below `before` end at index before - 1.
            end = len(self._audit) if before is None else max(0, min(before - 1, len(self._audit)))
            chosen = self._audit[max(0, end - limit) : end]
        return [_fresh(e) for e in reversed(chosen)]

    def add_key(self, key: ApiKey) -> AuditEntry:
        with self._lock:
            self._check_open()
            if key.key_id in self._keys:
                raise ConflictError("api key", key.key_id)
            self._keys[key.key_id] = key
            record = key_record(key)
            return self._log(
                AuditEntry(
                    self._next(),
                    key.created_at,
                    key.created_by,
                    "key.create",
                    "key",
                    key.key_id,
                    None,
                    record,
                )
            )

    def keys(self) -> list[ApiKey]:
        with self._lock:
            self._check_open()
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        with self._lock:
            self._check_open()
            old = self._keys.get(key_id)
            if old is None or old.revoked_at is not None:
                return old
            new = self._keys[key_id] = replace(old, revoked_at=at)
            before, after = key_record(old), key_record(new)
            self._log(
                AuditEntry(self._next(), at, actor, "key.revoke", "key", key_id, before, after)
            )
            return new

    # -- alerts, the outbox, heartbeats -----------------------------------------------------
    # Alerts and notifications are frozen values; their mappings go in and come out as
    # JSON copies, as the SQL backends store them.

    def fire(self, alert: Alert) -> bool:
        alert = replace(alert, detail=_copy(alert.detail) or {})
        with self._lock:
            self._check_open()
            if any(
                a.state == "firing" and a.rule == alert.rule and a.scope == alert.scope
                for a in self._alerts.values()
            ):
                return False
            return self._alerts.setdefault(alert.alert_id, alert) is alert

    def alert(self, alert_id: str) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
        return None if found is None else _fresh_alert(found)

    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            chosen = [
                a
                for a in self._alerts.values()
                if (state is None or a.state == state) and (before is None or a.fired_at < before)
            ]
        chosen.sort(key=lambda a: (a.fired_at, a.alert_id), reverse=True)
        return [_fresh_alert(a) for a in chosen[:limit]]

    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None or found.state != "firing":
                return None
            kept = found.value if value is None else value
            new = replace(found, state="resolved", resolved_at=at, value=kept)
            return _fresh_alert(self._put(new))

    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None:
                return None
            return _fresh_alert(self._put(_acknowledged(found, actor, at)))

    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None:
                return None
            new = replace(_acknowledged(found, actor, at), silenced_until=until)
            return _fresh_alert(self._put(new))

    def _put(self, alert: Alert) -> Alert:
        self._alerts[alert.alert_id] = alert
        return alert

    def enqueue(
        self, alert_id: str, round: int, notifications: Sequence[Notification], at: int
    ) -> bool:
        copies = [replace(n, payload=_copy(n.payload) or {}) for n in notifications]
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None or found.rounds != round - 1:
                return False
            self._put(replace(found, rounds=round, notified_at=at))
            for n in copies:
                self._outbox.setdefault(n.key, _Queued(n))
            return True

    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            due = [
                q
                for q in self._outbox.values()
                if q.notification.state == "pending"
                and q.notification.next_attempt_at <= now
                and (q.claimed_until is None or q.claimed_until <= now)
            ]
            due.sort(key=lambda q: _due_order(q.notification))
            taken = []
            for q in due[:limit]:
                q.claimed_by, q.claimed_until = worker, until
                q.notification = replace(q.notification, attempts=q.notification.attempts + 1)
                taken.append(q.notification)
        return [_fresh_notification(n) for n in taken]

    def delivered(self, key: str, worker: str, at: int) -> bool:
        with self._lock:
            self._check_open()
            q = self._claimed(key, worker)
            if q is None:
                return False
            q.notification = replace(q.notification, delivered_at=at)
            q.claimed_by = q.claimed_until = None
            return True

    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        with self._lock:
            self._check_open()
            q = self._claimed(key, worker)
            if q is None:
                return False
            q.notification = replace(q.notification, last_error=error, next_attempt_at=retry_at)
            q.claimed_by = q.claimed_until = None
            return True

    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        with self._lock:
            self._check_open()
            q = self._claimed(key, worker)
            if q is None:
                return False
            q.notification = replace(q.notification, dead_at=at, last_error=reason)
            q.claimed_by = q.claimed_until = None
            return True

    def release_claims(self, worker: str) -> int:
        with self._lock:
            self._check_open()
            held = [
                q
                for q in self._outbox.values()
                if q.claimed_by == worker and q.notification.delivered_at is None
            ]
            for q in held:
                attempts = max(q.notification.attempts - 1, 0)
                q.notification = replace(q.notification, attempts=attempts)
                q.claimed_by = q.claimed_until = None
            return len(held)

    def _claimed(self, key: str, worker: str) -> _Queued | None:
        """The pending outbox row `worker` holds (caller holds the lock)."""
        q = self._outbox.get(key)
        if q is None or q.claimed_by != worker or q.notification.state != "pending":
            return None
        return q

    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            chosen = [
                q.notification
                for q in self._outbox.values()
                if (alert_id is None or q.notification.alert_id == alert_id)
                and (state is None or q.notification.state == state)
            ]
        chosen.sort(key=lambda n: (n.created_at, n.key), reverse=True)
        return [_fresh_notification(n) for n in chosen[:limit]]

    def heartbeat(self, service: str, at: int) -> None:
        with self._lock:
            self._check_open()
            self._heartbeats[service] = max(at, self._heartbeats.get(service, at))

    def heartbeats(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            return dict(self._heartbeats)


def _due_order(n: Notification) -> tuple[int, int, str]:
    return (n.next_attempt_at, n.created_at, n.key)


def _acknowledged(alert: Alert, actor: str, at: int) -> Alert:
    """The alert acknowledged by `actor` at `at`, unless it was already (the first stands)."""
    if alert.acknowledged_at is not None:
        return alert
    return replace(alert, acknowledged_at=at, acknowledged_by=actor)


def _fresh_alert(alert: Alert) -> Alert:
    """An alert whose detail the caller may change without changing the store."""
    return replace(alert, detail=_copy(alert.detail) or {})


def _fresh_notification(n: Notification) -> Notification:
    """A notification whose payload the caller may change without changing the store."""
    return replace(n, payload=_copy(n.payload) or {})


def _copy(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of a spec, as storing it as JSON keeps it."""
    return json_spec(spec_json(value))


def _fresh(entry: AuditEntry) -> AuditEntry:
    """An audit entry whose values the caller may change without changing the store."""
    return replace(entry, before=_copy(entry.before), after=_copy(entry.after))
