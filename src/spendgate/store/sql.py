"""The contract on a SQL database, written once for SQLite and PostgreSQL.

All the control flow the two backends share is here: reserve, commit, release, adjust,
record, expire, the ledger's reads (with, from `sql_budgets.SQLBudgets`, how each moves money
on budget rows: holds, charges, settlements, draws from leases, alert crossings; and from
`sql_control.SQLControl`, the control plane, alerts and the outbox). Every statement it runs
is written once, in `statements.Statements` (one text per dialect, differing only in the
driver's placeholder and a few spellings). Each contract method hands its work to
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

import asyncio
import functools
import json
import os
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast

from spendgate.accounting import Pending, Recount, Settlement, Slot
from spendgate.errors import ConflictError, ReservationStateError, StoreError, UnstorableError
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import Nanos
from spendgate.rollups import Tally, rollup_rows
from spendgate.store.alerting import Crossings
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
from spendgate.store.batching import Failed, GroupCommitter
from spendgate.store.inflight import InFlight
from spendgate.store.rows import event_row, json_slots, rollup_refused, row_event, slots_json
from spendgate.store.sql_budgets import RefusedError, SQLBudgets
from spendgate.store.sql_control import C, SQLControl
from spendgate.store.stream_days import StreamDay, earliest, row_day
from spendgate.store.stream_days import select as stream_select
from spendgate.windows import to_micros

T = TypeVar("T")

_NO_LIMIT = 2**62  # above any row count: `events()` without `limit`


class LedgerOp(NamedTuple, Generic[C, T]):
    """One reserve, commit or release, as the work of a transaction: `work(conn)` does it,
    `landed(conn, lost)` finds out whether a transaction whose COMMIT was lost stored it (see
    `_transaction`), `refused(index)` answers a hold the budget on slot `index` refused."""

    work: Callable[[C], T]
    landed: Callable[[C, T], T]
    refused: Callable[[int], T] | None = None


class RetryError(Exception):
    """The transaction lost a race the database resolves by aborting one side (or found a
    concurrent writer's row it must not count on): the backend runs it again, whole."""


class SQLStore(SQLControl[C], SQLBudgets[C], Store):
    """The contract on a SQL database with connections of type `C`; see the module."""

    batched = True
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

    def _now(self, conn: C, now: int) -> int:
        """The time holds expire by."""
        return now

    def admit_only(self, threads: Collection[threading.Thread]) -> None:
        self._calls.admit_only(threads)

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse new calls, wait up to `timeout` seconds for those in flight, then close the
        connections (see `InFlight`); then stop the group commit of holds (the calls waited
        for were answered by it). Safe from any thread, and more than once."""
        self._calls.close(timeout)
        if self._ledger_committer is not None:
            self._ledger_committer.close(timeout)

    def probe_write(self, at: int) -> None:
        self._transaction(lambda conn: self.control_sql.probe_write(conn, at))

    # -- reservations -------------------------------------------------------------------------

    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        return self._read(lambda conn: [self._used(conn, s) for s in slots])

    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        return self._after_hold(write, now, self._try_reserve(write, now))

    async def areserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        """`reserve()` for asyncio: queued for the group commit, whatever else is under way
        (a transaction of its own would hold up the loop); a refusal's sweep of expired
        holds and its figures are read on a worker thread."""
        result = _refused_by_cap(write)
        if result is None:
            result = await self._aledger(self._reserve_op(write, now))
        if result.status != "denied":
            return result
        return await asyncio.to_thread(self._as_call, self._after_hold, write, now, result)

    def _as_call(self, run: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`run(*args, **kwargs)` as a call of the contract: counted in flight, so that
        `close()` never closes a connection under it, its driver errors as `StoreError`s.
        (The `except` clause's names are looked up only when something is raised.)"""
        calls = self._calls
        calls.enter()
        try:
            return run(*args, **kwargs)
        except self.driver_errors as exc:
            raise self._store_error(exc) from exc
        finally:
            calls.exit()

    def _after_hold(
        self, write: ReservationWrite, now: int, result: ReserveResult
    ) -> ReserveResult:
        """A hold's answer: a refusal sweeps expired holds and tries once more (a leaked hold
        must not block a paying caller), and is answered with the usage that refused it."""
        if result.status == "denied" and self.expire(now):
            result = self._try_reserve(write, now)
        if result.status == "denied":
            return ReserveResult("denied", tuple(self.usage(write.slots, now)), result.refused)
        return result

    def _try_reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        return _refused_by_cap(write) or self._ledger(self._reserve_op(write, now))

    def _reserve_op(self, write: ReservationWrite, now: int) -> LedgerOp[C, ReserveResult]:
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

        def refused(index: int) -> ReserveResult:  # rolled back: no hold on any slot
            return ReserveResult("denied", refused=index)

        return LedgerOp(work, landed, refused)

    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        return self._ledger(self._commit_op(reservation_id, write, now))

    async def acommit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        return await self._aledger(self._commit_op(reservation_id, write, now))

    def _commit_op(
        self, reservation_id: str, write: EventWrite, now: int
    ) -> LedgerOp[C, CommitResult]:
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
            self._roll_later(conn, [(event, cost)])
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

        return LedgerOp(work, landed)

    def release(self, reservation_id: str, now: int) -> ReservationState:
        return self._ledger(self._release_op(reservation_id, now))

    async def arelease(self, reservation_id: str, now: int) -> ReservationState:
        return await self._aledger(self._release_op(reservation_id, now))

    def _release_op(self, reservation_id: str, now: int) -> LedgerOp[C, ReservationState]:
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

        return LedgerOp(work, landed)

    # -- group commit of holds ----------------------------------------------------------------

    _ledger_lock: threading.Lock
    _ledger_busy: int
    _deferred: _Deferred
    _ledger_committer: GroupCommitter[LedgerOp[C, Any], Any] | None

    def _start_ledger(self) -> None:
        """Ready the group commit of holds (called by a backend when it opens)."""
        self._ledger_after_fork()
        self._ledger_committer = GroupCommitter(
            self._ledger_batch, name="spendgate-holds", where=self.where
        )
        _LEDGERS.add(self)

    def _ledger_after_fork(self) -> None:
        # A forked child has none of its parent's calls under way, and must not inherit a
        # lock another thread held at the fork. (The committer resets itself.)
        self._ledger_lock = threading.Lock()
        self._ledger_busy = 0
        self._deferred = _Deferred()

    def _ledger(self, op: LedgerOp[C, T]) -> T:
        """Run a reserve, commit or release: alone, in its own transaction, when no other is
        under way (a lone caller pays nothing more than that); else queued for the group
        commit, where concurrent ones share one transaction and its disk flush, each decided
        in arrival order against the balances as the ones before it left them (so a refusal
        is as exact as alone), each caller answered once the transaction is durable."""
        with self._ledger_lock:
            alone = self._ledger_busy == 0
            self._ledger_busy += 1
        try:
            if alone or self._ledger_committer is None:
                try:
                    return self._transaction(op.work, landed=op.landed)
                except RefusedError as refused:  # rolled back whole
                    if op.refused is None:
                        raise
                    return op.refused(refused.index)
            return cast(T, self._ledger_committer.submit(op))
        finally:
            with self._ledger_lock:
                self._ledger_busy -= 1

    async def _aledger(self, op: LedgerOp[C, T]) -> T:
        """`_ledger()` for asyncio callers: always through the group commit (the caller's
        task waits for its batch; the event loop runs on), counted as under way so that
        threads calling meanwhile join the batches too."""
        committer = self._ledger_committer
        if committer is None:
            return await asyncio.to_thread(self._ledger, op)
        # In flight, as a thread's call is, until its batch is over: `close()` waits for it
        # on the writer's thread, never on this loop (which may be the one closing).
        calls = self._calls
        calls.enter()
        with self._ledger_lock:
            self._ledger_busy += 1

        def finished() -> None:
            with self._ledger_lock:
                self._ledger_busy -= 1
            calls.exit()

        return cast(T, await committer.asubmit(op, finished=finished))

    def _ledger_batch(self, ops: list[LedgerOp[C, Any]]) -> list[Any]:
        """The group commit's write: every op in one transaction, in order.

        First all together, as if none could fail: no savepoints, and the events of the
        commits added to the rollups once, at the end (one statement per bucket for the
        batch, not per commit). If an op fails (refused, a state conflict, a value the
        database cannot hold), that transaction is rolled back whole and the batch runs
        again with each op in a savepoint, so the one that fails is rolled back alone and
        its caller gets its own answer. A failure of the store itself fails the batch, and
        every caller hears it."""

        def together(conn: C) -> list[Any]:
            rolls: list[tuple[Event, Nanos | None]] = []
            self._deferred.rolls = rolls
            try:
                results = [op.work(conn) for op in ops]
            finally:
                self._deferred.rolls = None
            self._roll(conn, rolls)
            return results

        def work(conn: C) -> list[Any]:
            return [self._in_savepoint(conn, op.work, op) for op in ops]

        def landed(conn: C, lost: list[Any]) -> list[Any]:
            # An op that failed changed nothing: its answer stands; the others find out.
            return [
                r if isinstance(r, Failed) else self._in_savepoint(conn, _landing(op, r), op)
                for op, r in zip(ops, lost, strict=True)
            ]

        try:
            try:
                return self._transaction(together, landed=landed)
            except (StoreError, RetryError):
                raise
            except self.driver_errors as exc:
                if not isinstance(exc, self.unstorable_errors):
                    raise
            except Exception:  # an op's own failure: each op in its savepoint, below
                pass
            return self._transaction(work, landed=landed)
        except self.driver_errors as exc:
            raise self._store_error(exc) from exc

    def _roll_later(self, conn: C, written: Sequence[tuple[Event, Nanos | None]]) -> None:
        """`_roll()`, or, inside a batch written together, with the batch's other events
        at its end."""
        later = self._deferred.rolls
        if later is None:
            self._roll(conn, written)
        else:
            later.extend(written)

    def _in_savepoint(self, conn: C, run: Callable[[C], T], op: LedgerOp[C, T]) -> T | Failed:
        """`run(conn)` in a savepoint: its result; or, rolled back to the savepoint, its
        answer to a refusal or what it failed with. A failure of the store (or a race the
        database resolves by aborting) is raised: the whole transaction fails, or runs again."""
        conn.execute("SAVEPOINT spendgate_op")
        outcome: T | Failed
        try:
            outcome = run(conn)
        except RetryError:
            raise
        except self.driver_errors as exc:
            if not isinstance(exc, self.unstorable_errors):
                raise
            outcome = Failed(self._store_error(exc))  # this op's value, not the store
        except RefusedError as refused:
            outcome = Failed(refused) if op.refused is None else op.refused(refused.index)
        except Exception as exc:  # the op's own error, for its caller
            outcome = Failed(exc)
        else:
            conn.execute("RELEASE SAVEPOINT spendgate_op")
            return outcome
        conn.execute("ROLLBACK TO SAVEPOINT spendgate_op")
        conn.execute("RELEASE SAVEPOINT spendgate_op")
        return outcome

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
        except RefusedError as refused:  # rolled back: nothing changed
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
        return [
            RecordResult(w.event.request_id, "created", w.event.cost, w.budget_day) for w in writes
        ]

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
            results.append(RecordResult(event.request_id, "created", cost, write.budget_day))
        self._charge_all(conn, charges, crossings)
        self._roll(conn, written)
        return results

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

    def _lock_ledger(self, conn: C) -> None:
        """Keep every ledger writer out until this transaction ends (a recount's)."""

    def _recount_in(self, conn: C, recount: Recount) -> None:
        sql, name = self.sql, recount.budget.name
        self._lock_ledger(conn)
        start, end = recount.span()
        pending = [
            Pending(
                rid,
                service,
                source,
                json.loads(labels) if labels else {},
                amount,
                created,
                bool(emergency),
                json_slots(slots),
            )
            for rid, service, source, labels, amount, created, emergency, slots in conn.execute(
                sql.pending
            ).fetchall()
        ]
        events = map(row_event, conn.execute(sql.events, (start, end, _NO_LIMIT)).fetchall())
        counted = recount.counted(events, pending)
        conn.execute(sql.drop_buckets, (name, start))
        self._many(conn, sql.put_bucket, [(name, b, *row) for b, row in counted.rows.items()])
        self._many(conn, sql.reslot, [(slots_json(s), rid) for rid, s in counted.holds.items()])

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

    def location_tallies(self, since: int, until: int) -> dict[str, Tally]:
        sql = self.sql.location_tallies
        rows = self._read(lambda conn: conn.execute(sql, (since, until)).fetchall())
        return {place: Tally.from_row(sums) for place, *sums in rows}

    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        return self._read(lambda conn: self._tally(conn, pieces))

    def first_minutes(self) -> dict[str, int]:
        rows = self._read(lambda conn: conn.execute(self.sql.first_minutes).fetchall())
        return {service: int(minute) for service, minute in rows}

    def stream_days(self, since: str, source: str, service: str | None) -> list[StreamDay]:
        statement = stream_select(self.sql.mark, service=service is not None)
        bounds = (earliest(since), since, source)
        params = bounds if service is None else (*bounds, service)
        rows = self._read(lambda conn: conn.execute(statement, params).fetchall())
        return [row_day(tuple(r)) for r in rows]

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
    """A contract method as a call of the contract (`SQLStore._as_call`)."""

    def run(self: SQLStore[Any], /, *args: Any, **kwargs: Any) -> T:
        return self._as_call(method, self, *args, **kwargs)

    return functools.update_wrapper(run, method)


# Every method of the contract, guarded once here rather than by hand in each backend.
for _name in sorted(Store.__abstractmethods__):
    setattr(SQLStore, _name, _guarded(getattr(SQLStore, _name)))


_LEDGERS: weakref.WeakSet[SQLStore[Any]] = weakref.WeakSet()


def _ledgers_after_fork() -> None:
    for store in list(_LEDGERS):
        store._ledger_after_fork()


os.register_at_fork(after_in_child=_ledgers_after_fork)


class _Deferred(threading.local):
    """What the ops of a batch written together leave to its end (this thread's batch)."""

    rolls: list[tuple[Event, Nanos | None]] | None = None


def _refused_by_cap(write: ReservationWrite) -> ReserveResult | None:
    """A hold larger than a slot's whole cap, refused before the store is asked."""
    for i, slot in enumerate(write.slots):
        if slot.cap is not None and write.amount > slot.cap:
            return ReserveResult("denied", refused=i)
    return None


def _landing(op: LedgerOp[Any, T], lost: T) -> Callable[[Any], T]:
    """`op.landed` for the answer `lost`, as the work of a transaction."""
    return lambda conn: op.landed(conn, lost)


def _with_cost(event: Event, cost: Nanos | None) -> tuple[object, ...]:
    """The event's row, with the cost the store worked out (tiered prices, quotas)."""
    row = event_row(event)
    return row if cost == event.cost else (*row[:5], cost, *row[6:])
