"""The in-memory store (`memory://`): the contract in plain Python under one lock.

For tests and for single-process use where nothing needs to survive a restart. It is also
the reference the SQL backends are checked against by the contract suite. The ledger is
here; the control plane, alerts and outbox are `memory_control.MemoryControl`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import NamedTuple

from spendgate.accounting import (
    Pending,
    Recount,
    Settlement,
    Slot,
    check_room,
    cost_with_quota,
    drawn_plan,
    hold_limit,
    overshoot_of,
    usage_limit_error,
)
from spendgate.errors import ConflictError, ReservationStateError
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import MAX_TOTAL, Nanos
from spendgate.rollups import (
    BOUNDED,
    MINUTE,
    RollupKey,
    Tally,
    bounded_sums,
    merge,
    rollup_limit_error,
    rollup_rows,
    tally_of,
)
from spendgate.store.alerting import Crossings, fired_in_window
from spendgate.store.base import (
    CLOSE_WAIT,
    Balance,
    CommitResult,
    EventWrite,
    ReservationInfo,
    ReservationState,
    ReservationWrite,
    ReserveResult,
    Store,
    TallyRow,
)
from spendgate.store.memory_control import MemoryControl
from spendgate.store.stream_days import StreamDay, stream_days
from spendgate.windows import to_micros

_UNROLLED_MAX = 4096  # events whose adding to the rollups waits, at most (see `_roll`)


def _costed(event: Event, cost: Nanos | None) -> Event:
    """The event as stored: with the cost the store booked (a tiered price's is the store's)."""
    return event if event.cost == cost else replace(event, cost=cost)


@dataclass(slots=True)
class _Reservation:
    write: ReservationWrite
    amount: Nanos  # held now (a lease's changes as it is topped up and drawn from)
    expires_at: int
    state: ReservationState = "pending"
    actual: Nanos | None = None


class _Saved(NamedTuple):
    """What a write may change, as it stood before: budget rows (`None`: none yet), quota
    counters, leases' amounts, and the request ids it may add."""

    rows: dict[tuple[str, int], list[int] | None]
    quota: dict[tuple[str, str, int], Decimal | None]
    leases: dict[str, Nanos]
    new_events: set[str]


class MemoryStore(MemoryControl, Store):
    """Everything in dictionaries; one lock makes each method one transaction. The ledger is
    here; the control plane, alerts and outbox are `MemoryControl`'s."""

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.url = self.where = url
        # budget -> bucket -> [spent, reserved, overshoot]
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._events: dict[str, Event] = {}
        self._quota: dict[tuple[str, str, int], Decimal] = {}
        self._rollups: dict[RollupKey, Tally] = {}
        # Events not yet added to the rollups (`_roll`), and what every event rolled or
        # queued adds at most to any one bounded sum: (cost, cache hits).
        self._unrolled: list[tuple[Event, Nanos | None]] = []
        self._rolled_bound = (0, 0)

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse later calls. Under the lock: a call in flight (microseconds) finishes first,
        and every call checks inside the lock, so none runs after `close()` returns."""
        with self._lock:
            self._closed = True

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
        if not crossings.rose:
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
        slots = list(extra)
        leases: dict[str, Nanos] = {}
        quota: dict[tuple[str, str, int], Decimal | None] = {}
        new = set()
        for w in writes:
            slots += w.slots
            for lease_id in w.draw.leases if w.draw is not None else ():
                lease = self._reservations.get(lease_id)
                if lease is not None:
                    leases[lease_id] = lease.amount
                    slots += lease.write.slots
            for q in w.quota:
                key = (q.source, q.unit, q.period)
                quota[key] = self._quota.get(key)
            if w.event.request_id not in self._events:
                new.add(w.event.request_id)
        rows = {}
        for slot in slots:
            row = self._buckets.get(slot.budget, {}).get(slot.bucket)
            rows[(slot.budget, slot.bucket)] = None if row is None else list(row)
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
        if not write.quota:  # every other event keeps the cost it came with
            return write.event.cost
        cost, counters = cost_with_quota(
            write.event,
            write.price,
            write.quota,
            lambda q: self._quota.get((q.source, q.unit, q.period), Decimal(0)),
        )
        for q, used in counters:
            self._quota[(q.source, q.unit, q.period)] = used
        return cost

    def _recount_locked(self, recount: Recount) -> None:
        start, end = recount.span()
        pending = [
            Pending(
                rid,
                r.write.service,
                r.write.source,
                r.write.labels,
                r.amount,
                r.write.created_at,
                r.write.emergency,
                r.write.slots,
            )
            for rid, r in self._reservations.items()
            if r.state == "pending"
        ]
        events = (e for e in self._events.values() if start <= to_micros(e.time) < end)
        counted = recount.counted(events, pending)
        buckets = self._buckets.setdefault(recount.budget.name, {})
        for bucket in [b for b in buckets if b >= start]:
            del buckets[bucket]
        buckets.update((b, list(row)) for b, row in counted.rows.items())
        for rid, slots in counted.holds.items():
            r = self._reservations[rid]
            r.write = replace(r.write, slots=slots)

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
        for slot in write.slots:
            self._row(slot)[1] += write.amount
        crossings = Crossings.of_hold(write.slots, used, write.amount, now)
        if crossings is not None:
            self._book(crossings)
        held = _Reservation(write, write.amount, write.expires_at)
        self._reservations[write.reservation_id] = held
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
        # Usage rises only by an actual above its hold, or a charge: else no line is crossed.
        crossings = None
        if amount > held or plan.charge:
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
        self._events[event.request_id] = _costed(event, cost)
        self._roll([(event, cost)])  # the last step that may refuse: alerts come after
        if crossings is not None:
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

    # Each method is microseconds under a lock, with no I/O: asyncio callers call it directly.

    async def areserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        return self.reserve(write, now)

    async def acommit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        return self.commit(reservation_id, write, now)

    async def arelease(self, reservation_id: str, now: int) -> ReservationState:
        return self.release(reservation_id, now)

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
            self._events[event.request_id] = _costed(event, cost)
            written.append((event, cost))
            results.append(RecordResult(event.request_id, "created", cost, write.budget_day))
        self._roll(written)  # the last step that may refuse: alerts come after
        self._book(crossings)
        return results

    def _roll(self, written: list[tuple[Event, Nanos | None]]) -> None:
        """Add new events to the rollups, as the SQL backends do in the same transaction:
        all of them, or none if a bounded sum would pass `MAX_TOTAL`.

        The adding itself is put off until the rollups are read (or `_UNROLLED_MAX` events
        wait): while the positive amounts of every event ever rolled sum to no more than
        `MAX_TOTAL`, no bucket's sum can pass it, and there is nothing to refuse."""
        cost, hits = self._rolled_bound
        for event, c in written:
            if c is not None and c > 0:
                cost += c
            if event.cache_hits:
                hits += event.cache_hits
        if cost <= MAX_TOTAL and hits <= MAX_TOTAL:
            self._rolled_bound = (cost, hits)
            self._unrolled += written
            if len(self._unrolled) >= _UNROLLED_MAX:
                self._fold()
            return
        # Near the bound: each bucket checked against what it holds, then added at once.
        self._fold()
        for step, bucket, service, source, *sums in rollup_rows(written):
            key = (step, bucket, service, source)
            found = self._rollups.get(key)
            had = (0, 0) if found is None else (found.cost, found.cache_hits)
            for name, stored, adding in zip(BOUNDED, had, bounded_sums(sums), strict=True):
                if stored + adding > MAX_TOTAL:
                    raise rollup_limit_error(key, name, adding)
        self._unrolled = list(written)
        self._fold()
        self._rolled_bound = (cost, hits)

    def _fold(self) -> None:
        """Add the events `_roll` put off to the rollups (caller holds the lock): their
        sums were bounded when they were written, so nothing here refuses."""
        if not self._unrolled:
            return
        rollups = self._rollups
        for step, bucket, service, source, *sums in rollup_rows(self._unrolled):
            key = (step, bucket, service, source)
            found = rollups.get(key)
            rollups[key] = Tally(*sums) if found is None else found + Tally(*sums)
        self._unrolled = []

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

    def location_tallies(self, since: int, until: int) -> dict[str, Tally]:
        groups: dict[str, list[tuple[Event, Nanos | None]]] = {}
        for event in self.events(since=since, until=until):
            if event.location is not None:
                groups.setdefault(event.location, []).append((event, event.cost))
        return {place: tally_of(written) for place, written in groups.items()}

    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        with self._lock:
            self._check_open()
            self._fold()
            rows = [
                ((i, service, source), tally)
                for (step, bucket, service, source), tally in self._rollups.items()
                for i, piece_step, lo, hi in pieces
                if step == piece_step and lo <= bucket < hi
            ]
        return [(*key, tally) for key, tally in merge(rows).items()]

    def first_minutes(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            self._fold()
            out: dict[str, int] = {}
            for step, bucket, service, _ in self._rollups:
                if step == MINUTE and bucket < out.get(service, bucket + 1):
                    out[service] = bucket
        return out

    def stream_days(self, since: str, source: str, service: str | None) -> list[StreamDay]:
        with self._lock:
            self._check_open()
            numbered = list(enumerate(self._events.values(), start=1))
        return stream_days(numbered, since, source, service)

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

    def probe_write(self, at: int) -> None:
        with self._lock:  # memory always takes a write
            self._check_open()
