"""The in-memory store (`memory://`): the contract in plain Python under one lock.

For tests and for single-process use where nothing needs to survive a restart. It is also
the reference the SQL backends are checked against by the contract suite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from spendgate.errors import ConflictError, ReservationStateError, StoreError
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import Nanos
from spendgate.rollups import RollupKey, Tally, merge, rollup_rows
from spendgate.store.base import (
    Balance,
    CommitResult,
    EventWrite,
    ReservationInfo,
    ReservationState,
    ReservationWrite,
    ReserveResult,
    Settlement,
    Slot,
    Store,
    TallyRow,
    cost_with_quota,
    drawn_plan,
    overshoot_of,
)
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


class MemoryStore(Store):
    """Everything in dictionaries; one lock makes each method one transaction."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        # budget -> bucket -> [spent, reserved, overshoot]
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._events: dict[str, Event] = {}
        self._quota: dict[tuple[str, str, int], Decimal] = {}
        self._rollups: dict[RollupKey, Tally] = {}
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.url}: the store is closed")

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
        """Book spend no reservation covered, counting what lands above the cap as overshoot."""
        over = overshoot_of(self._used(slot), amount, slot.cap)
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

    def _cost(self, write: EventWrite) -> Nanos | None:
        """The event's cost; for tiered prices, from the quota counters, which it advances."""
        cost, counters = cost_with_quota(
            write, lambda q: self._quota.get((q.source, q.unit, q.period), Decimal(0))
        )
        for q, used in counters:
            self._quota[(q.source, q.unit, q.period)] = used
        return cost

    # -- the contract -------------------------------------------------------------------------

    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        self._check_open()
        with self._lock:
            return [self._used(s) for s in slots]

    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        self._check_open()
        with self._lock:
            existing = self._reservations.get(write.reservation_id)
            if existing is not None:
                same = existing.write.fingerprint == write.fingerprint
                return ReserveResult("exists" if same else "conflict", state=existing.state)
            result = self._try_hold(write)
            if result.status == "denied" and self._expire_locked(now):
                result = self._try_hold(write)
            return result

    def _try_hold(self, write: ReservationWrite) -> ReserveResult:
        used = [self._used(s) for s in write.slots]
        for i, (slot, u) in enumerate(zip(write.slots, used, strict=True)):
            if slot.cap is not None and u + write.amount > slot.cap:
                return ReserveResult("denied", tuple(used), refused=i)
        for slot in write.slots:
            self._row(slot)[1] += write.amount
        self._reservations[write.reservation_id] = _Reservation(write)
        return ReserveResult("created", tuple(u + write.amount for u in used))

    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        self._check_open()
        with self._lock:
            r = self._open_reservation(reservation_id, "commit")
            event = write.event
            if event.request_id in self._events:
                raise ConflictError("event", event.request_id)
            cost = self._cost(write)
            amount, held = cost or 0, r.amount
            expired = r.state == "expired"
            plan = Settlement.plan(r.write.slots, write.slots, expired=expired)
            overshoot = 0 if expired else max(0, amount - held)
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
            self._roll([(event, cost)])
            r.state, r.actual = "committed", cost
            return CommitResult(reservation_id, event.request_id, cost, overshoot, expired)

    def release(self, reservation_id: str, now: int) -> ReservationState:
        self._check_open()
        with self._lock:
            r = self._open_reservation(reservation_id, "release")
            if r.state == "expired":
                r.state = "released"
                return "expired"
            for slot in r.write.slots:
                self._row(slot)[1] -= r.amount
            r.state = "released"
            return "released"

    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        self._check_open()
        with self._lock:
            r = self._reservations.get(reservation_id)
            if r is None:
                raise ReservationStateError(reservation_id, "unknown", "adjust")
            if r.state != "pending":
                return ReserveResult("exists", state=r.state)
            used = [self._used(s) for s in r.write.slots]
            if delta > 0:
                for i, (slot, u) in enumerate(zip(r.write.slots, used, strict=True)):
                    if slot.cap is not None and u + delta > slot.cap:
                        return ReserveResult("denied", tuple(used), refused=i)
            delta = max(delta, -r.amount)
            for slot in r.write.slots:
                self._row(slot)[1] += delta
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
        self._check_open()
        with self._lock:
            return self._expire_locked(now)

    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        self._check_open()
        with self._lock:
            results = []
            written: list[tuple[Event, Nanos | None]] = []
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
                    for slot in write.slots:
                        self._charge(slot, cost or 0)
                else:
                    self._settle_draw(write, cost or 0)
                self._events[event.request_id] = replace(event, cost=cost)
                written.append((event, cost))
                results.append(RecordResult(event.request_id, "created", cost))
            self._roll(written)
            return results

    def _roll(self, written: list[tuple[Event, Nanos | None]]) -> None:
        """Add new events to the rollups, as the SQL backends do in the same transaction."""
        for step, bucket, service, source, *sums in rollup_rows(written):
            key = (step, bucket, service, source)
            found = self._rollups.get(key)
            self._rollups[key] = Tally(*sums) if found is None else found + Tally(*sums)

    def _settle_draw(self, write: EventWrite, amount: Nanos) -> None:
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
        self._check_open()
        with self._lock:
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
        self._check_open()
        with self._lock:
            chosen = [
                e
                for e in self._events.values()
                if (since is None or to_micros(e.time) >= since)
                and (until is None or to_micros(e.time) < until)
            ]
        chosen.sort(key=lambda e: e.time)
        return chosen[:limit] if limit is not None else chosen

    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        self._check_open()
        with self._lock:
            rows = [
                ((i, service, source), tally)
                for (step, bucket, service, source), tally in self._rollups.items()
                for i, piece_step, lo, hi in pieces
                if step == piece_step and lo <= bucket < hi
            ]
        return [(*key, tally) for key, tally in merge(rows).items()]

    def event(self, request_id: str) -> Event | None:
        self._check_open()
        with self._lock:
            return self._events.get(request_id)

    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        self._check_open()
        with self._lock:
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
