"""The contract on a SQL database, written once for SQLite and PostgreSQL.

All the control flow the two backends share is here: reserve, commit, release, adjust,
record, expire, draws from leases, alert crossings (and, through `sql_control.SQLControl`,
the control plane and the outbox). Every statement it runs is written once, in
`statements.Statements` (one text per dialect, differing only in the driver's placeholder
and a few spellings). Each contract method hands its work to
`_transaction(work)` or `_read(work)`, which a backend implements: how a transaction begins
(SQLite's `BEGIN IMMEDIATE`, PostgreSQL's READ COMMITTED with retries), and where the
connection comes from.

A backend supplies only what truly differs: those two, the rolling-window lock
(`_lock_budget`), the bulk insert of new events (`_insert_new`) and `executemany`
(`_many`), the clock holds expire by (`_now`), the order rows are locked in (`lock_order`),
and one mapping from its driver's errors to `StoreError` (`_store_error`), which every
contract method applies (see `_guarded`).
"""

from __future__ import annotations

import functools
import json
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from spendgate.accounting import (
    QuotaUse,
    Settlement,
    Slot,
    check_room,
    cost_with_quota,
    drawn_plan,
    hold_limit,
    overshoot_of,
    usage_limit_error,
)
from spendgate.errors import ConflictError, ReservationStateError, UnstorableError
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import Nanos
from spendgate.rollups import rollup_rows
from spendgate.store.alerting import Crossings
from spendgate.store.base import (
    CLOSE_WAIT,
    Balance,
    CommitResult,
    EventWrite,
    InFlight,
    ReservationInfo,
    ReservationState,
    ReservationWrite,
    ReserveResult,
    Store,
    TallyRow,
)
from spendgate.store.rows import (
    event_row,
    json_slots,
    rollup_refused,
    row_event,
    slots_json,
)
from spendgate.store.sql_control import C, SQLControl
from spendgate.store.statements import Statements
from spendgate.windows import to_micros

T = TypeVar("T")

_NO_LIMIT = 2**62  # above any row count: `events()` without `limit`


class RetryError(Exception):
    """The transaction lost a race the database resolves by aborting one side (or found a
    concurrent writer's row it must not count on): the backend runs it again, whole."""


class _RefusedError(Exception):
    """A slot refused the hold; raised to roll the whole reservation back."""

    def __init__(self, index: int) -> None:
        self.index = index


class SQLStore(SQLControl[C], Store):
    """The contract on a SQL database with connections of type `C`; see the module."""

    batched = True
    sql: ClassVar[Statements]
    lock_order: ClassVar[bool] = False
    """Whether holds lock their rows in one global order (budget, bucket); a backend whose
    writers take turns holds in the caller's order, which names the first slot refused."""
    driver_errors: ClassVar[tuple[type[BaseException], ...]]
    """What `_store_error` maps: the driver's errors, and the pool's."""
    duplicate_error: ClassVar[type[BaseException]]
    """What the bulk insert of new events raises on a request id already stored."""
    unstorable_errors: ClassVar[tuple[type[BaseException], ...]]
    """A value the database cannot hold (see `record`)."""
    database_clock = False
    _calls: InFlight

    # -- what a backend supplies --------------------------------------------------------------

    @abstractmethod
    def _many(self, conn: C, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """`executemany`; the rows it changed."""

    @abstractmethod
    def _insert_new(self, conn: C, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows of `EVENT_COLUMNS` in bulk; `duplicate_error` on an id stored already."""

    @abstractmethod
    def _tally(self, conn: C, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        """The rows of `rows.tallies_query()` in this dialect."""

    @abstractmethod
    def _store_error(self, exc: BaseException) -> Exception:
        """One of `driver_errors` as the `StoreError` callers see."""

    @abstractmethod
    def _refused_by(self, exc: BaseException) -> str:
        """Why the database refused a value (one of `unstorable_errors`), naming it."""

    def _lock_budget(self, conn: C, budget: str) -> None:
        """Keep a rolling window's sum from changing under this transaction until it ends."""

    def _now(self, conn: C, now: int) -> int:
        """The time holds expire by."""
        return now

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse new calls, wait up to `timeout` seconds for those in flight, then close the
        connections (see `InFlight`). Safe from any thread, and more than once."""
        self._calls.close(timeout)

    # -- reservations -------------------------------------------------------------------------

    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        return self._read(lambda conn: [self._used(conn, s) for s in slots])

    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        result = self._try_reserve(write, now)
        if result.status == "denied" and self.expire(now):
            # A leaked hold must not block a paying caller: sweep what expired, try once more.
            result = self._try_reserve(write, now)
        if result.status == "denied":
            return ReserveResult("denied", tuple(self.usage(write.slots, now)), result.refused)
        return result

    def _try_reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        for i, slot in enumerate(write.slots):
            if slot.cap is not None and write.amount > slot.cap:
                return ReserveResult("denied", refused=i)
        sql = self.sql

        def work(conn: C) -> ReserveResult:
            created, expires = write.created_at, write.expires_at
            if self.database_clock:
                at = self._now(conn, now)
                created, expires = at, at + (write.expires_at - write.created_at)
            labels = json.dumps(dict(write.labels)) if write.labels else None
            params = (write.reservation_id, write.fingerprint, write.service, write.source,
                      write.amount, write.emergency, created, expires, slots_json(write.slots),
                      labels)  # fmt: skip
            if not conn.execute(sql.insert_reservation, params).rowcount:
                row = conn.execute(sql.reservation_fingerprint, (write.reservation_id,)).fetchone()
                same = row[0] == write.fingerprint
                return ReserveResult("exists" if same else "conflict", state=row[1])
            used = self._hold_all(conn, write.slots, write.amount, now)
            return ReserveResult("created", tuple(used))

        def landed(conn: C, lost: ReserveResult) -> ReserveResult:
            # The same reservation again: if the lost one was stored, the id finds it.
            again = work(conn)
            if lost.status == "created" and again.status == "exists" and again.state == "pending":
                return lost
            return again

        try:
            return self._transaction(work, landed=landed)
        except _RefusedError as refused:  # rolled back: no hold was taken on any slot
            return ReserveResult("denied", refused=refused.index)

    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        sql = self.sql

        def work(conn: C) -> CommitResult:
            at = self._now(conn, now)
            state, held, slots = self._open_reservation(conn, reservation_id, "commit")
            cost = self._cost(conn, write)
            event = write.event
            if not conn.execute(sql.insert_event_once, _with_cost(event, cost)).rowcount:
                raise ConflictError("event", event.request_id)
            amount = cost or 0
            expired = state == "expired"
            plan = Settlement.plan(slots, write.slots, expired=expired)
            crossings = Crossings(write.slots)
            cover = 0 if expired else held
            overshoot = self._settle(conn, plan, held, amount, cover, crossings=crossings, now=now)
            self._book(conn, crossings)
            self._roll(conn, [(event, cost)])
            conn.execute(sql.committed, (cost, at, reservation_id))
            return CommitResult(reservation_id, event.request_id, cost, overshoot, expired)

        def landed(conn: C, lost: CommitResult) -> CommitResult:
            state, _, _ = self._open_reservation(conn, reservation_id, "commit", any_state=True)
            if state != "committed":
                return work(conn)  # the lost COMMIT was not stored: commit now
            stored = self._stored(conn, write.event.request_id)
            if stored is not None and stored[0] == write.event.fingerprint:
                return lost  # stored, with this very event
            raise ReservationStateError(reservation_id, state, "commit")

        return self._transaction(work, landed=landed)

    def release(self, reservation_id: str, now: int) -> ReservationState:
        def work(conn: C) -> ReservationState:
            at = self._now(conn, now)
            state, held, slots = self._open_reservation(conn, reservation_id, "release")
            if state == "pending":
                self._many(conn, self.sql.unhold, [(held, s.budget, s.bucket) for s in slots])
            conn.execute(self.sql.released, (at, reservation_id))
            return "expired" if state == "expired" else "released"

        def landed(conn: C, lost: ReservationState) -> ReservationState:
            state, _, _ = self._open_reservation(conn, reservation_id, "release", any_state=True)
            return lost if state == "released" else work(conn)

        return self._transaction(work, landed=landed)

    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        slots: tuple[Slot, ...] = ()

        def work(conn: C) -> ReserveResult:
            nonlocal slots
            state, amount, slots = self._open_reservation(conn, reservation_id, "adjust", True)
            if state != "pending":
                return ReserveResult("exists", state=state)
            change = max(delta, -amount)
            if change > 0:
                used = self._hold_all(conn, slots, change, now)
            else:
                self._many(conn, self.sql.unhold, [(-change, s.budget, s.bucket) for s in slots])
                used = [self._used(conn, s) for s in slots]
            at = self._now(conn, now)
            conn.execute(self.sql.adjusted, (change, at + (expires_at - now), reservation_id))
            return ReserveResult("created", tuple(used))

        try:
            return self._transaction(work)
        except _RefusedError as refused:  # rolled back: nothing changed
            return ReserveResult("denied", tuple(self.usage(slots, now)), refused.index)

    def expire(self, now: int) -> int:
        def any_expired(conn: C) -> bool:
            return (
                conn.execute(self.sql.any_expired, (self._now(conn, now),)).fetchone() is not None
            )

        # A cheap read first: readers (status, authorize) must not queue for the write lock
        # when nothing has expired, which is nearly always.
        if not self._read(any_expired):
            return 0
        return self._transaction(lambda conn: self._expire_in(conn, self._now(conn, now)))

    def _expire_in(self, conn: C, now: int) -> int:
        rows = conn.execute(self.sql.expire, (now, now)).fetchall()
        unholds = sorted(
            (s.budget, s.bucket, amount) for amount, slots in rows for s in json_slots(slots)
        )
        self._many(conn, self.sql.unhold, [(amount, b, bucket) for b, bucket, amount in unholds])
        return len(rows)

    def _open_reservation(
        self, conn: C, reservation_id: str, action: str, any_state: bool = False
    ) -> tuple[ReservationState, Nanos, tuple[Slot, ...]]:
        row = conn.execute(self.sql.open_reservation, (reservation_id,)).fetchone()
        if row is None:
            raise ReservationStateError(reservation_id, "unknown", action)
        state, amount, slots = row
        if state in ("committed", "released") and not any_state:
            raise ReservationStateError(reservation_id, state, action)
        return state, amount, json_slots(slots)

    # -- holds, charges, settlements ----------------------------------------------------------

    def _used(self, conn: C, slot: Slot) -> Nanos:
        row = conn.execute(self.sql.usage, (slot.budget, slot.span_start, slot.bucket)).fetchone()
        return int(row[0])

    def _hold_all(self, conn: C, slots: Sequence[Slot], amount: Nanos, now: int) -> list[Nanos]:
        """Hold on every slot (in lock order, if the backend has one); `_RefusedError` if one
        refuses, and the caller's transaction rolls back, so no slot keeps a hold. Then raise
        the alerts of the lines the holds crossed."""
        used: dict[int, Nanos] = {}
        crossings = Crossings(slots)
        order: Iterable[int] = range(len(slots))
        if self.lock_order:
            order = sorted(order, key=lambda i: (slots[i].budget, slots[i].bucket))
        for i in order:
            after = self._hold(conn, slots[i], amount)
            if after is None:
                raise _RefusedError(i)
            used[i] = after
            crossings.move(slots[i : i + 1], amount, now)
            crossings.seen(slots[i], after)
        self._book(conn, crossings)
        return [used[i] for i in range(len(slots))]

    def _hold(self, conn: C, slot: Slot, amount: Nanos) -> Nanos | None:
        """Add `amount` to the slot's reserved if its cap allows; its usage after, or None."""
        limit = hold_limit(slot.cap)
        budget, bucket = slot.budget, slot.bucket
        if slot.span_start == bucket:
            row = conn.execute(
                self.sql.hold, (budget, bucket, amount, amount, limit, limit)
            ).fetchone()
            if row is not None:
                return int(row[0])
        else:
            if slot.cap is not None or slot.lines:
                self._lock_budget(conn, budget)
            conn.execute(self.sql.ensure_bucket, (budget, bucket))
            span = (budget, slot.span_start, bucket)
            if conn.execute(
                self.sql.hold_rolling, (amount, budget, bucket, *span, amount, limit)
            ).rowcount:
                return self._used(conn, slot)
        if limit != slot.cap:  # refused by the bound of every total, not by the budget
            raise usage_limit_error(slot, amount)
        return None

    def _charge(self, conn: C, slot: Slot, amount: Nanos) -> tuple[Nanos, Nanos | None]:
        """Book spend no hold covered; what lands above the cap counts as overshoot. Returns
        the overshoot and, where the statement returned it, the window's usage after.

        Elsewhere the usage read before the update may be stale by the time it runs where
        writers run concurrently (a settle does not take the budget lock): the caller reads
        it afterwards.

        `CounterLimitError` if the usage would pass `MAX_TOTAL`: exactly for the bucket's row
        (its statement checks it), and for a rolling window's sum as this transaction reads
        it (concurrent writers may pass that by their own amounts, which 64 bits absorb)."""
        check_room(slot, 0, amount)  # a batch's total, before it reaches a statement
        budget, bucket, cap = slot.budget, slot.bucket, slot.cap
        if slot.span_start == bucket and cap is not None:
            first = overshoot_of(0, amount, cap)
            params = (budget, bucket, amount, first, cap, cap, cap, amount, cap)
            row = conn.execute(self.sql.charge_calendar, params).fetchone()
            if row is None:
                raise usage_limit_error(slot, amount)
            return int(row[0]), int(row[1])
        if cap is not None or (slot.lines and slot.span_start < bucket):
            self._lock_budget(conn, budget)
        conn.execute(self.sql.ensure_bucket, (budget, bucket))
        used = self._used(conn, slot)
        check_room(slot, used, amount)
        over = overshoot_of(used, amount, cap)
        if not conn.execute(self.sql.charge, (amount, over, budget, bucket, amount)).rowcount:
            raise usage_limit_error(slot, amount)
        return over, None

    def _charge_all(self, conn: C, charges: Mapping[Slot, Nanos], crossings: Crossings) -> None:
        """Charge a batch's spend, each slot once with its total (overshoot telescopes over
        a sum) in lock order, then raise the alerts of the lines it crossed."""
        for slot in sorted(charges, key=_slot_order):
            _, used = self._charge(conn, slot, charges[slot])
            if used is not None:  # a calendar window's row, charged whole by this statement
                crossings.seen(slot, used)
        self._book(conn, crossings)

    def _settle(
        self,
        conn: C,
        plan: Settlement,
        held: Nanos,
        amount: Nanos,
        cover: Nanos,
        *,
        crossings: Crossings,
        now: int,
    ) -> Nanos:
        """Move money as `plan` says: `held` leaves reserved, `amount` becomes spent; `cover`
        is what the hold approved (nothing once it expired). Returns the overshoot; tells
        `crossings` each change, at `now`."""
        overshoot = max(0, amount - cover) if plan.settle or plan.unhold else 0
        crossings.move(plan.settle, amount - held, now)
        crossings.move(plan.unhold, -held, now)
        self._settle_rows(conn, plan.settle, held, amount, overshoot)
        self._many(conn, self.sql.unhold, [(held, s.budget, s.bucket) for s in plan.unhold])
        for slot in plan.charge:
            crossings.move((slot,), amount, now)
            over, used = self._charge(conn, slot, amount)
            if used is not None:
                crossings.seen(slot, used)
            overshoot = max(overshoot, over)
        return overshoot

    def _settle_rows(
        self, conn: C, slots: Sequence[Slot], held: Nanos, amount: Nanos, over: Nanos
    ) -> None:
        """Move `held` out of reserved and `amount` into spent (`over` of it overshoot) on each
        slot. Only an actual above its hold adds to usage, and only then is there anything to
        check: each row within `MAX_TOTAL` by its statement, a rolling window's sum as read."""
        sql = self.sql
        if amount <= held:
            self._many(conn, sql.settle, [(held, amount, over, s.budget, s.bucket) for s in slots])
            return
        for slot in slots:
            if slot.span_start < slot.bucket:
                check_room(slot, self._used(conn, slot), amount - held)
            params = (held, amount, over, slot.budget, slot.bucket, amount - held)
            if (
                not conn.execute(sql.settle_bounded, params).rowcount
                and conn.execute(sql.bucket_exists, (slot.budget, slot.bucket)).fetchone()
            ):
                raise usage_limit_error(slot, amount - held)

    def _book(self, conn: C, crossings: Crossings) -> None:
        """Raise the alerts of the lines this transaction's changes crossed.

        Why concurrent writers neither miss a crossing nor count one twice. A calendar
        window is one row, and every change to it (hold, charge, settle) locks the row until
        commit: the usage returned or read after this transaction's changes is the last
        writer's committed value plus its own, so before = after - its net change is what
        the previous writer of the row left. Successive writers see adjoining intervals,
        whose union covers every rise. A rolling window spans rows: each transaction that
        raised it reads the sum after its own changes under the budget's lock (taken by the
        hold or charge in budget order, or here), held to commit, so its writers too see
        adjoining intervals; changes made without the lock only lower usage (release,
        expiry, returned holds), which can only make a later crossing a repeat. The
        once-per-length check of a rolling window reads under that same lock. A line
        crossed again in one window names the same alert id, which the insert skips; a
        concurrent insert of the same id waits for the first to commit, then skips it. (On
        SQLite, whose writers take turns, all of this holds trivially.)
        """
        if not crossings:
            return
        read = {}
        for slot in crossings.unknown():
            if slot.span_start < slot.bucket:
                self._lock_budget(conn, slot.budget)
            read[(slot.budget, slot.bucket)] = self._used(conn, slot)
        self.alerts_sql.book(conn, crossings.alerts(read))

    def _cost(self, conn: C, write: EventWrite) -> Nanos | None:
        """The event's cost, counting its units against their quotas (whose counters it
        moves). Each counter is created if need be, then locked: two writers of one period
        queue."""
        sql = self.sql

        def used_before(q: QuotaUse) -> Decimal:
            conn.execute(sql.quota_create, (q.source, q.unit, q.period))
            return Decimal(conn.execute(sql.quota_used, (q.source, q.unit, q.period)).fetchone()[0])

        cost, counters = cost_with_quota(write.event, write.price, write.quota, used_before)
        for q, used in counters:
            conn.execute(sql.quota_set, (str(used), q.source, q.unit, q.period))
        return cost

    # -- recording events ---------------------------------------------------------------------

    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        if not writes:
            return []

        def landed(conn: C, lost: list[RecordResult]) -> list[RecordResult]:
            # Idempotent by request id: what the lost COMMIT stored is found as `exists`.
            again = self._record_checked(conn, writes)
            return [
                was if was.status == "created" and now_.status == "exists" else now_
                for was, now_ in zip(lost, again, strict=True)
            ]

        try:
            if not any(w.quota or w.draw for w in writes):
                try:
                    return self._transaction(
                        lambda conn: self._record_new(conn, writes), landed=landed
                    )
                except self.duplicate_error:
                    pass  # rolled back whole: a retry or a conflict is in the batch
            return self._transaction(lambda conn: self._record_checked(conn, writes), landed=landed)
        except self.unstorable_errors as exc:
            # A value the database cannot hold, not a database that fails: not a
            # `StoreError`, so a group commit writes the other callers' events again
            # without this one.
            ids = [w.event.request_id for w in writes]
            what = f"event {ids[0]!r}" if len(ids) == 1 else f"one of {len(ids)} events"
            raise UnstorableError(
                what, ids[0] if len(ids) == 1 else ids[:3], self._refused_by(exc)
            ) from exc

    def _record_new(self, conn: C, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """The common case, all new events: one bulk insert, one statement per budget.

        The insert fails on any request id already stored (or repeated in the batch), which
        rolls the batch back for `_record_checked()` to sort out.
        """
        self._insert_new(conn, [event_row(w.event) for w in writes])
        charges: dict[Slot, Nanos] = {}
        for w in writes:
            if w.event.cost:
                for slot in w.slots:
                    charges[slot] = charges.get(slot, 0) + w.event.cost
        crossings = Crossings(charges)
        if crossings:
            for w in writes:
                crossings.move(w.slots, w.event.cost or 0, to_micros(w.event.time))
        self._charge_all(conn, charges, crossings)
        self._roll(conn, [(w.event, w.event.cost) for w in writes])
        return [RecordResult(w.event.request_id, "created", w.event.cost) for w in writes]

    def _record_checked(self, conn: C, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Record a batch that may hold retries, conflicts, draws or tiered prices, one by
        one."""
        results: list[RecordResult] = []
        written: list[tuple[Event, Nanos | None]] = []
        charges: dict[Slot, Nanos] = {}
        crossings = Crossings(s for w in writes for s in w.slots)
        for write in writes:
            event = write.event
            found = self._stored(conn, event.request_id)
            if found is None:
                cost = self._cost(conn, write)
                found = self._stored(conn, event.request_id, _with_cost(event, cost))
                if found is not None and write.quota:
                    # Another writer stored it first and our quota counters moved for
                    # nothing: roll back and run the batch again.
                    raise RetryError()
            if found is not None:
                fp, stored_cost = found
                status: RecordStatus = "exists" if fp == event.fingerprint else "conflict"
                results.append(RecordResult(event.request_id, status, stored_cost))
                continue
            targets = write.slots
            if write.draw is not None:
                targets = self._settle_draw(conn, write, cost or 0, crossings)
            if cost:
                crossings.move(targets, cost, to_micros(event.time))
                for slot in targets:
                    charges[slot] = charges.get(slot, 0) + cost
            written.append((event, cost))
            results.append(RecordResult(event.request_id, "created", cost))
        self._charge_all(conn, charges, crossings)
        self._roll(conn, written)
        return results

    def _settle_draw(
        self, conn: C, write: EventWrite, amount: Nanos, crossings: Crossings
    ) -> tuple[Slot, ...]:
        """Move a drawn call's hold out of its leases and its cost into spent where a lease
        held it; the slots left to charge as unreserved spend."""
        assert write.draw is not None
        held = write.draw.held
        leases: dict[str, Slot] = {}
        for lease_id in sorted(write.draw.leases):
            row = conn.execute(self.sql.draw, (held, lease_id)).fetchone()
            if row is not None:
                leases.update((s.budget, s) for s in json_slots(row[0]))
        plan = drawn_plan(leases, write.slots)
        over = max(0, amount - held)
        at = to_micros(write.event.time)
        crossings.move(plan.settle, amount - held, at)
        crossings.move(plan.unhold, -held, at)
        self._settle_rows(conn, plan.settle, held, amount, over)
        self._many(conn, self.sql.unhold, [(held, s.budget, s.bucket) for s in plan.unhold])
        return plan.charge

    def _stored(
        self, conn: C, request_id: str, row: tuple[object, ...] | None = None
    ) -> tuple[str, Nanos | None] | None:
        """The stored (fingerprint, cost) of a request id; with `row`, insert it first and
        answer `None` if it went in (a concurrent writer of the same id waits for ours)."""
        if row is not None and conn.execute(self.sql.insert_event_once, row).rowcount:
            return None
        found = conn.execute(self.sql.stored, (request_id,)).fetchone()
        return None if found is None else (found[0], found[1])

    def _roll(self, conn: C, written: Sequence[tuple[Event, Nanos | None]]) -> None:
        """Add new events to the rollups, in the events' transaction. Rollup rows are locked
        last and in key order, after every budget row, so two writers never wait on each other
        in a circle. `CounterLimitError` if a sum would pass `MAX_TOTAL` (the upsert leaves
        such a row out, so it changes fewer rows than given)."""
        if written:
            rows = rollup_rows(written)
            rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
            if self._many(conn, self.sql.rollup, rows) != len(rows):
                raise rollup_refused(conn, rows, self.sql.mark)

    # -- reads --------------------------------------------------------------------------------

    def balance(self, slot: Slot) -> Balance:
        params = (slot.budget, slot.span_start, slot.bucket)
        row = self._read(lambda conn: conn.execute(self.sql.balance, params).fetchone())
        return Balance(int(row[0]), int(row[1]), int(row[2]))

    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        params = (
            since if since is not None else -(2**62),
            until if until is not None else 2**62,
            limit if limit is not None else _NO_LIMIT,
        )
        rows = self._read(lambda conn: conn.execute(self.sql.events, params).fetchall())
        return [row_event(r) for r in rows]

    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        return self._read(lambda conn: self._tally(conn, pieces))

    def event(self, request_id: str) -> Event | None:
        row = self._read(lambda conn: conn.execute(self.sql.event, (request_id,)).fetchone())
        return None if row is None else row_event(row)

    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        sql = self.sql.reservation
        row = self._read(lambda conn: conn.execute(sql, (reservation_id,)).fetchone())
        if row is None:
            return None
        state, amount, service, source, created, expires, emergency, actual, labels = row
        return ReservationInfo(
            reservation_id,
            state,
            amount,
            service,
            source,
            created,
            expires,
            bool(emergency),
            actual,
            json.loads(labels) if labels else {},
        )


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """A contract method whose driver errors come out as `StoreError`s, counted in flight so
    that `close()` never closes a connection under it. (The `except` clause's names are
    looked up only when something is raised: the call costs what a plain wrapper does.)"""

    def run(self: SQLStore[Any], /, *args: Any, **kwargs: Any) -> T:
        calls = self._calls
        calls.enter()
        try:
            return method(self, *args, **kwargs)
        except self.driver_errors as exc:
            raise self._store_error(exc) from exc
        finally:
            calls.exit()

    return functools.update_wrapper(run, method)


# Every method of the contract, guarded once here rather than by hand in each backend.
for _name in sorted(Store.__abstractmethods__):
    setattr(SQLStore, _name, _guarded(getattr(SQLStore, _name)))


def _slot_order(slot: Slot) -> tuple[str, int]:
    return (slot.budget, slot.bucket)


def _with_cost(event: Event, cost: Nanos | None) -> tuple[object, ...]:
    """The event's row, with the cost the store worked out (tiered prices, quotas)."""
    row = event_row(event)
    return row if cost == event.cost else (*row[:5], cost, *row[6:])
