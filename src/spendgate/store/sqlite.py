"""The embedded SQLite store (`sqlite:///spendgate.db`, the default).

Each contract method is one `BEGIN IMMEDIATE` transaction: SQLite admits one writer at a time
across every thread and process on the file, so reads inside the transaction stay true until
it commits. Holds are taken by a conditional upsert (`… DO UPDATE … WHERE spent + reserved +
amount <= cap RETURNING …`): a hold that would break a cap touches no row. WAL journal,
`synchronous=FULL` by default, so a method that returned survives `kill -9` and power loss.

URL options: `?synchronous=normal` (faster commits; a power cut may lose the last ones, a
killed process does not), `?timeout=30` (seconds to wait for the write lock),
`?migrate=false` (refuse an old schema instead of upgrading it).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

from spendgate.errors import (
    ConflictError,
    ReservationStateError,
    StoreClosedError,
    StoreError,
    StoreFailure,
    UnstorableError,
    ValidationError,
)
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import MAX_TOTAL, Nanos
from spendgate.rollups import rollup_rows
from spendgate.store import migrate
from spendgate.store.alerting import Alerting, Crossings
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
    InFlight,
    Notification,
    NotificationState,
    QuotaUse,
    ReservationInfo,
    ReservationState,
    ReservationWrite,
    ReserveResult,
    Settlement,
    Slot,
    Store,
    TallyRow,
    check_room,
    cost_with_quota,
    drawn_plan,
    hold_limit,
    overshoot_of,
    url_flag,
    usage_limit_error,
)
from spendgate.store.rows import (
    EVENT_COLUMNS,
    ControlPlane,
    event_row,
    json_slots,
    rollup_refused,
    rollup_upsert,
    row_event,
    slots_json,
    tallies_query,
    tally_rows,
)
from spendgate.windows import to_micros

P = ParamSpec("P")
T = TypeVar("T")

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "FULL"
DEFAULT_TIMEOUT = 30.0
_IN_CHUNK = 500  # request ids per IN (...) lookup, well under SQLite's variable limit

_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_INSERT_EVENT_ONCE = _INSERT_EVENT + " ON CONFLICT (request_id) DO NOTHING"
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
_USAGE = (
    "SELECT COALESCE(SUM(spent + reserved), 0) FROM budget_buckets "
    "WHERE budget = ? AND bucket BETWEEN ? AND ?"
)
# The hold on a calendar window: one statement that creates the bucket or adds to it, each
# branch only if the limit still holds (the cap, within `MAX_TOTAL`: `base.hold_limit`), so
# no row ever goes over its cap.
_HOLD = (
    "INSERT INTO budget_buckets (budget, bucket, spent, reserved, overshoot) "
    "SELECT :budget, :bucket, 0, :amount, 0 WHERE :amount <= :limit "
    "ON CONFLICT (budget, bucket) DO UPDATE SET reserved = reserved + excluded.reserved "
    "WHERE spent + reserved + excluded.reserved <= :limit "
    "RETURNING spent + reserved"
)
_ENSURE_BUCKET = "INSERT INTO budget_buckets (budget, bucket) VALUES (?, ?) ON CONFLICT DO NOTHING"
# The hold on a rolling window: the cap applies to the sum over the window's buckets. SQLite
# admits one writer at a time, so the sum cannot change under this statement; a backend with
# concurrent writers (PostgreSQL) must lock the budget first, or two holds in different
# buckets could both pass.
_HOLD_ROLLING = (
    "UPDATE budget_buckets SET reserved = reserved + :amount "
    "WHERE budget = :budget AND bucket = :bucket AND "
    "(SELECT SUM(spent + reserved) FROM budget_buckets "
    " WHERE budget = :budget AND bucket BETWEEN :span AND :bucket) + :amount <= :limit"
)
_SETTLE = (
    "UPDATE budget_buckets SET reserved = reserved - ?, spent = spent + ?, "
    "overshoot = overshoot + ? WHERE budget = ? AND bucket = ?"
)
_UNHOLD = "UPDATE budget_buckets SET reserved = reserved - ? WHERE budget = ? AND bucket = ?"
_CHARGE = (
    "UPDATE budget_buckets SET spent = spent + ?, overshoot = overshoot + ? "
    "WHERE budget = ? AND bucket = ?"
)
# Spend no hold covered, on a calendar window, in one statement: the same rule as
# `base.overshoot_of`, applied to the row as it stood (SET reads the old values). A row
# whose usage would pass `MAX_TOTAL` is left alone and nothing is returned.
_CHARGE_CALENDAR = (
    "INSERT INTO budget_buckets (budget, bucket, spent, reserved, overshoot) "
    "VALUES (:budget, :bucket, :amount, 0, :first) "
    "ON CONFLICT (budget, bucket) DO UPDATE SET spent = spent + excluded.spent, "
    "overshoot = overshoot + max(0, spent + reserved + excluded.spent - :cap) "
    "- max(0, spent + reserved - :cap) "
    f"WHERE spent + reserved + excluded.spent <= {MAX_TOTAL} "
    # RETURNING sees the row after the update: the part of this charge above the cap, and
    # the usage after it.
    "RETURNING max(0, spent + reserved - :cap) - max(0, spent + reserved - :amount - :cap), "
    "spent + reserved"
)
_ROLLUP = rollup_upsert("?")
# Control-plane writes number their revisions inside `BEGIN IMMEDIATE`, which admits one
# writer at a time: revisions are unique and commit in order with no further lock.
_CONTROL = ControlPlane("?")
# Alerts and the outbox: a claim needs no row locks, as `BEGIN IMMEDIATE` admits one writer.
_ALERTS = Alerting("?")
_ANY_EXPIRED = "SELECT 1 FROM reservations WHERE state = 'pending' AND expires_at <= ? LIMIT 1"


def sqlalchemy_url(path: str) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


# SQLite's primary result codes (an extended code's low byte) and what kind of failure each is.
_FAILURES: dict[int, StoreFailure] = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_BUSY: "store busy",
    sqlite3.SQLITE_LOCKED: "store busy",
    sqlite3.SQLITE_CANTOPEN: "store unreachable",
}


def _failure(message: str, exc: sqlite3.Error) -> StoreError:
    """SQLite's error as a `StoreError` that says which kind of failure it is."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return StoreError(message, reason=_FAILURES.get(code, "store error"))


def _store_errors(
    method: Callable[Concatenate[SQLiteStore, P], T],
) -> Callable[Concatenate[SQLiteStore, P], T]:
    """A contract method whose SQLite errors (a locked or broken file) come out as `StoreError`,
    counted in flight so that `close()` never closes a connection under it."""

    def run(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        calls = self._calls
        calls.enter()
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _failure(f"{self.path}: {exc}", exc) from exc
        finally:
            calls.exit()

    functools.update_wrapper(run, method)
    return run


@contextmanager
def _translated(path: str) -> Iterator[None]:
    """SQLite's own errors become `StoreError`s that say which file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _failure(f"{path}: {exc}", exc) from exc


class SQLiteStore(Store):
    """The contract on one SQLite file, shared safely by threads and processes."""

    batched = True

    def __init__(
        self,
        url: str,
        *,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        timeout: float = DEFAULT_TIMEOUT,
        migrate_schema: bool = True,
    ) -> None:
        parts = urlsplit(url)
        path = (parts.netloc + parts.path).removeprefix("/") if parts.netloc else parts.path[1:]
        if not path:
            raise ValidationError("url", url, "sqlite:///FILE such as sqlite:///spendgate.db")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        synchronous = options.pop("synchronous", synchronous).upper()
        if synchronous not in SYNCHRONOUS:
            raise ValidationError(
                "url synchronous", synchronous, f"one of {', '.join(SYNCHRONOUS)}"
            )
        try:
            timeout = float(options.pop("timeout", timeout))
        except ValueError:
            raise ValidationError("url timeout", parts.query, "seconds, e.g. timeout=30") from None
        migrate_schema = url_flag(options.pop("migrate", str(migrate_schema)), "url migrate")
        if options:
            raise ValidationError("url", url, "options synchronous, timeout and migrate only")
        self.url = url
        self.path = self.where = str(Path(path))
        self.synchronous = synchronous
        self._timeout = timeout
        parent = Path(self.path).resolve().parent
        if not parent.is_dir():
            raise StoreError(
                f"cannot open {self.path}: folder {parent} does not exist",
                reason="store unreachable",
            )
        self._calls = InFlight(self.where, self._release)
        self._after_fork()
        _LIVE.add(self)
        with _translated(self.path), _migration_lock(self.path):
            # Switching a new file to WAL takes it exclusively, without waiting on the busy
            # timeout: several processes opening one new file at once must take turns.
            self._conn().execute("PRAGMA journal_mode = WAL")
            migrate.ensure_current(sqlalchemy_url(self.path), migrate=migrate_schema)

    def _after_fork(self) -> None:
        # A forked child must not touch its parent's connections (SQLite forbids carrying
        # them across fork): it starts with none and opens its own. (`InFlight` resets
        # itself: the child has no calls in flight.)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    # -- connections and transactions --------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._calls.closed:
            # A call in flight when `close()` began may finish with its own connection,
            # but opens no new one.
            raise StoreClosedError(self.path)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # One connection per thread (and per process after a fork): sqlite3 connections are
        # not safe to share, and one per thread costs nothing.
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _failure(f"cannot open {self.path}: {exc}", exc) from exc
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken at once (`BEGIN IMMEDIATE`), so reads inside are stable.

        Whatever fails (a statement, or the COMMIT itself), the transaction is rolled back so
        the connection is clean for the next one, and the first error is the one raised.
        """
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse new calls, wait up to `timeout` seconds for those in flight, close the
        connections (see `InFlight`). Safe from any thread, and more than once."""
        self._calls.close(timeout)

    def _release(self) -> None:
        """Close every thread's connection; no call is in flight (`InFlight` sees to it)."""
        with self._all_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):  # closing is best effort
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- helpers inside a transaction ---------------------------------------------------------

    @staticmethod
    def _used(conn: sqlite3.Connection, slot: Slot) -> Nanos:
        row = conn.execute(_USAGE, (slot.budget, slot.span_start, slot.bucket)).fetchone()
        return int(row[0])

    def _charge(self, conn: sqlite3.Connection, slot: Slot, amount: Nanos) -> tuple[Nanos, Nanos]:
        """Book spend no hold covered; what lands above the cap counts as overshoot. Returns
        the overshoot and the window's usage after. `CounterLimitError` if the usage would
        pass `MAX_TOTAL` (the caller's transaction rolls back)."""
        check_room(slot, 0, amount)  # a batch's total, before it reaches a statement
        if slot.span_start == slot.bucket and slot.cap is not None:
            # A calendar window: one upsert, with `overshoot_of` written out in SQL.
            params = {"budget": slot.budget, "bucket": slot.bucket, "amount": amount,
                      "cap": slot.cap, "first": overshoot_of(0, amount, slot.cap)}  # fmt: skip
            row = conn.execute(_CHARGE_CALENDAR, params).fetchone()
            if row is None:
                raise usage_limit_error(slot, amount)
            return int(row[0]), int(row[1])
        conn.execute(_ENSURE_BUCKET, (slot.budget, slot.bucket))
        used = self._used(conn, slot)
        check_room(slot, used, amount)  # exact: `BEGIN IMMEDIATE` admits one writer
        over = overshoot_of(used, amount, slot.cap)
        conn.execute(_CHARGE, (amount, over, slot.budget, slot.bucket))
        return over, used + amount

    def _book(self, conn: sqlite3.Connection, crossings: Crossings) -> None:
        """Raise the alerts of the lines this transaction's changes crossed. `BEGIN
        IMMEDIATE` admits one writer, so usage before and after are exact and no other
        transaction can cross the same line at the same time."""
        if crossings:
            read = {(s.budget, s.bucket): self._used(conn, s) for s in crossings.unknown()}
            _ALERTS.book(conn, crossings.alerts(read))

    @staticmethod
    def _cost(conn: sqlite3.Connection, write: EventWrite) -> Nanos | None:
        def used_before(q: QuotaUse) -> Decimal:
            row = conn.execute(
                "SELECT used FROM quota_usage WHERE source = ? AND unit = ? AND period = ?",
                (q.source, q.unit, q.period),
            ).fetchone()
            return Decimal(row[0]) if row else Decimal(0)

        cost, counters = cost_with_quota(write, used_before)
        for q, used in counters:
            conn.execute(
                "INSERT INTO quota_usage (source, unit, period, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (source, unit, period) DO UPDATE SET used = excluded.used",
                (q.source, q.unit, q.period, str(used)),
            )
        return cost

    @staticmethod
    def _expire_in(conn: sqlite3.Connection, now: int) -> int:
        rows = conn.execute(
            "SELECT id, amount, slots FROM reservations "
            "WHERE state = 'pending' AND expires_at <= ?",
            (now,),
        ).fetchall()
        for rid, amount, slots in rows:
            conn.executemany(_UNHOLD, [(amount, s.budget, s.bucket) for s in json_slots(slots)])
            conn.execute(
                "UPDATE reservations SET state = 'expired', settled_at = ? WHERE id = ?", (now, rid)
            )
        return len(rows)

    @staticmethod
    def _open_reservation(
        conn: sqlite3.Connection, reservation_id: str, action: str
    ) -> tuple[ReservationState, Nanos, tuple[Slot, ...]]:
        row = conn.execute(
            "SELECT state, amount, slots FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            raise ReservationStateError(reservation_id, "unknown", action)
        state, amount, slots = row
        if state in ("committed", "released"):
            raise ReservationStateError(reservation_id, state, action)
        return state, amount, json_slots(slots)

    # -- the contract -------------------------------------------------------------------------

    @_store_errors
    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        conn = self._conn()
        return [self._used(conn, s) for s in slots]

    @_store_errors
    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        result = self._try_reserve(write, now)
        if result.status == "denied" and self._conn().execute(_ANY_EXPIRED, (now,)).fetchone():
            # A leaked hold must not block a paying caller: sweep what expired, try once more.
            self.expire(now)
            result = self._try_reserve(write, now)
        if result.status == "denied":
            return ReserveResult("denied", tuple(self.usage(write.slots, now)), result.refused)
        return result

    def _try_reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        for i, slot in enumerate(write.slots):
            if slot.cap is not None and write.amount > slot.cap:
                return ReserveResult("denied", refused=i)
        try:
            return self._hold_all(write, now)
        except _RefusedError as refused:  # rolled back: no hold was taken on any slot
            return ReserveResult("denied", refused=refused.index)

    def _hold_all(self, write: ReservationWrite, now: int) -> ReserveResult:
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO reservations (id, state, fingerprint, service, source, amount, "
                "emergency, created_at, expires_at, slots, labels) "
                "VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    write.reservation_id,
                    write.fingerprint,
                    write.service,
                    write.source,
                    write.amount,
                    write.emergency,
                    write.created_at,
                    write.expires_at,
                    slots_json(write.slots),
                    json.dumps(dict(write.labels)) if write.labels else None,
                ),
            ).rowcount
            if not inserted:
                fp, state = conn.execute(
                    "SELECT fingerprint, state FROM reservations WHERE id = ?",
                    (write.reservation_id,),
                ).fetchone()
                return ReserveResult(
                    "exists" if fp == write.fingerprint else "conflict", state=state
                )
            used: list[Nanos] = []
            crossings = Crossings(write.slots)
            for i, slot in enumerate(write.slots):
                after = self._hold(conn, slot, write.amount)
                if after is None:
                    raise _RefusedError(i)
                used.append(after)
                crossings.move((slot,), write.amount, now)
                crossings.seen(slot, after)
            self._book(conn, crossings)
            return ReserveResult("created", tuple(used))

    def _hold(self, conn: sqlite3.Connection, slot: Slot, amount: Nanos) -> Nanos | None:
        """Add `amount` to the slot's reserved if its cap allows; its usage after, or None."""
        limit = hold_limit(slot.cap)
        if slot.span_start == slot.bucket:
            row = conn.execute(
                _HOLD,
                {"budget": slot.budget, "bucket": slot.bucket, "amount": amount, "limit": limit},
            ).fetchone()
            if row is not None:
                return int(row[0])
        else:
            conn.execute(_ENSURE_BUCKET, (slot.budget, slot.bucket))
            params = {
                "budget": slot.budget,
                "bucket": slot.bucket,
                "span": slot.span_start,
                "amount": amount,
                "limit": limit,
            }
            if conn.execute(_HOLD_ROLLING, params).rowcount:
                return self._used(conn, slot)
        if limit != slot.cap:  # refused by the bound of every total, not by the budget
            raise usage_limit_error(slot, amount)
        return None

    @_store_errors
    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        with self._write() as conn:
            state, held, slots = self._open_reservation(conn, reservation_id, "commit")
            cost = self._cost(conn, write)
            event = write.event
            if not conn.execute(_INSERT_EVENT_ONCE, _with_cost(event, cost)).rowcount:
                raise ConflictError("event", event.request_id)
            _roll(conn, rollup_rows([(event, cost)]))
            amount = cost or 0
            expired = state == "expired"
            plan = Settlement.plan(slots, write.slots, expired=expired)
            overshoot = 0 if expired else max(0, amount - held)
            crossings = Crossings(write.slots)
            crossings.move(plan.settle, amount - held, now)
            crossings.move(plan.unhold, -held, now)
            self._settle(conn, plan.settle, held, amount, overshoot)
            conn.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in plan.unhold])
            for slot in plan.charge:
                crossings.move((slot,), amount, now)
                over, used = self._charge(conn, slot, amount)
                crossings.seen(slot, used)
                overshoot = max(overshoot, over)
            self._book(conn, crossings)
            conn.execute(
                "UPDATE reservations SET state = 'committed', actual = ?, settled_at = ? "
                "WHERE id = ?",
                (cost, now, reservation_id),
            )
        return CommitResult(reservation_id, event.request_id, cost, overshoot, expired)

    @_store_errors
    def release(self, reservation_id: str, now: int) -> ReservationState:
        with self._write() as conn:
            state, held, slots = self._open_reservation(conn, reservation_id, "release")
            if state == "pending":
                conn.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in slots])
            conn.execute(
                "UPDATE reservations SET state = 'released', settled_at = ? WHERE id = ?",
                (now, reservation_id),
            )
        return "expired" if state == "expired" else "released"

    @_store_errors
    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        try:
            with self._write() as conn:
                row = conn.execute(
                    "SELECT state, amount, slots FROM reservations WHERE id = ?", (reservation_id,)
                ).fetchone()
                if row is None:
                    raise ReservationStateError(reservation_id, "unknown", "adjust")
                state, amount, text = row
                if state != "pending":
                    return ReserveResult("exists", state=state)
                slots = json_slots(text)
                delta = max(delta, -amount)
                if delta > 0:
                    used = []
                    crossings = Crossings(slots)
                    for i, slot in enumerate(slots):
                        after = self._hold(conn, slot, delta)
                        if after is None:
                            raise _RefusedError(i)
                        used.append(after)
                        crossings.move((slot,), delta, now)
                        crossings.seen(slot, after)
                    self._book(conn, crossings)
                else:
                    conn.executemany(_UNHOLD, [(-delta, s.budget, s.bucket) for s in slots])
                    used = [self._used(conn, s) for s in slots]
                conn.execute(
                    "UPDATE reservations SET amount = amount + ?, expires_at = ? WHERE id = ?",
                    (delta, expires_at, reservation_id),
                )
                return ReserveResult("created", tuple(used))
        except _RefusedError as refused:  # rolled back: nothing changed
            return ReserveResult("denied", tuple(self.usage(slots, now)), refused.index)

    @_store_errors
    def expire(self, now: int) -> int:
        # A cheap read first: readers (status, authorize) must not queue for the write lock
        # when nothing has expired, which is nearly always.
        if not self._conn().execute(_ANY_EXPIRED, (now,)).fetchone():
            return 0
        with self._write() as conn:
            return self._expire_in(conn, now)

    @_store_errors
    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        if not writes:
            return []
        try:
            if not any(w.quota or w.draw for w in writes):
                try:
                    return self._record_new(writes)
                except sqlite3.IntegrityError:
                    pass  # rolled back whole: a retry or a conflict is in the batch
            return self._record_checked(writes)
        except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeError) as exc:
            # A value the file cannot hold, not a file that fails: not a `StoreError`, so a
            # group commit writes the other callers' events again without this one.
            raise _unstorable(writes, exc) from exc

    def _record_new(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """The common case, all new events: a handful of statements for the whole batch.

        The plain INSERT fails on any request id already stored (or repeated in the batch),
        which rolls the batch back for `_record_checked()` to sort out. Each statement is one
        trip out of Python, and the writer thread pays for each trip by waiting for the GIL
        behind every caller it has just woken; so the batch goes in as few statements as
        possible.
        """
        rows = [_with_cost(w.event, w.event.cost) for w in writes]
        charges: dict[Slot, Nanos] = {}
        for w in writes:
            if w.event.cost:
                for slot in w.slots:
                    charges[slot] = charges.get(slot, 0) + w.event.cost
        crossings = Crossings(charges)
        if crossings:
            for w in writes:
                crossings.move(w.slots, w.event.cost or 0, to_micros(w.event.time))
        with self._write() as conn:
            for chunk in _chunks(rows):
                conn.execute(_insert_events(len(chunk)), [v for row in chunk for v in row])
            _roll(conn, rollup_rows((w.event, w.event.cost) for w in writes))
            self._charge_all(conn, charges, crossings)
        return [RecordResult(w.event.request_id, "created", w.event.cost) for w in writes]

    def _record_checked(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Record a batch that may hold retries, conflicts or tiered prices, one by one."""
        results: list[RecordResult] = []
        crossings = Crossings(s for w in writes for s in w.slots)
        with self._write() as conn:
            known = self._fingerprints(conn, [w.event.request_id for w in writes])
            rows = []
            written: list[tuple[Event, Nanos | None]] = []
            charges: dict[Slot, Nanos] = {}
            for write in writes:
                event = write.event
                found = known.get(event.request_id)
                if found is not None:
                    fp, cost = found
                    status: RecordStatus = "exists" if fp == event.fingerprint else "conflict"
                    results.append(RecordResult(event.request_id, status, cost))
                    continue
                cost = self._cost(conn, write)
                known[event.request_id] = (event.fingerprint, cost)
                rows.append(_with_cost(event, cost))
                written.append((event, cost))
                targets = write.slots
                if write.draw is not None:
                    targets = self._settle_draw(conn, write, cost or 0, crossings)
                if cost:
                    crossings.move(targets, cost, to_micros(event.time))
                    for slot in targets:
                        charges[slot] = charges.get(slot, 0) + cost
                results.append(RecordResult(event.request_id, "created", cost))
            conn.executemany(_INSERT_EVENT, rows)
            _roll(conn, rollup_rows(written))
            self._charge_all(conn, charges, crossings)
        return results

    def _charge_all(
        self, conn: sqlite3.Connection, charges: Mapping[Slot, Nanos], crossings: Crossings
    ) -> None:
        """Charge a batch's spend, each slot once with its total (overshoot telescopes over
        a sum), then raise the alerts of the lines it crossed."""
        for slot, amount in charges.items():
            _, used = self._charge(conn, slot, amount)
            if slot.span_start == slot.bucket:
                # A calendar window is its own row, charged whole here. A rolling window's
                # sum may still move with a charge on another of its buckets: read at the end.
                crossings.seen(slot, used)
        self._book(conn, crossings)

    @staticmethod
    def _settle(
        conn: sqlite3.Connection, slots: Sequence[Slot], held: Nanos, amount: Nanos, over: Nanos
    ) -> None:
        """Move `held` out of reserved and `amount` into spent (`over` of it overshoot) on
        each slot; `CounterLimitError` if a window's usage would pass `MAX_TOTAL`. Only an
        actual above its hold adds to usage, and only then is there anything to check."""
        if amount > held:
            for slot in slots:
                check_room(slot, SQLiteStore._used(conn, slot), amount - held)
        conn.executemany(_SETTLE, [(held, amount, over, s.budget, s.bucket) for s in slots])

    @staticmethod
    def _settle_draw(
        conn: sqlite3.Connection, write: EventWrite, amount: Nanos, crossings: Crossings
    ) -> tuple[Slot, ...]:
        """Move a drawn call's hold out of its leases and its cost into spent where a lease
        held it; the slots left to charge as unreserved spend."""
        assert write.draw is not None
        held = write.draw.held
        leases: dict[str, Slot] = {}
        for lease_id in write.draw.leases:
            row = conn.execute(
                "UPDATE reservations SET amount = amount - ? WHERE id = ? AND state = 'pending' "
                "RETURNING slots",
                (held, lease_id),
            ).fetchone()
            if row is not None:
                leases.update((s.budget, s) for s in json_slots(row[0]))
        plan = drawn_plan(leases, write.slots)
        over = max(0, amount - held)
        at = to_micros(write.event.time)
        crossings.move(plan.settle, amount - held, at)
        crossings.move(plan.unhold, -held, at)
        SQLiteStore._settle(conn, plan.settle, held, amount, over)
        conn.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in plan.unhold])
        return plan.charge

    @staticmethod
    def _fingerprints(
        conn: sqlite3.Connection, request_ids: list[str]
    ) -> dict[str, tuple[str, Nanos | None]]:
        found: dict[str, tuple[str, Nanos | None]] = {}
        unique = list(dict.fromkeys(request_ids))
        for i in range(0, len(unique), _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for rid, fp, cost in conn.execute(
                f"SELECT request_id, fingerprint, cost FROM events WHERE request_id IN ({marks})",
                chunk,
            ):
                found[rid] = (fp, cost)
        return found

    @_store_errors
    def balance(self, slot: Slot) -> Balance:
        row = (
            self._conn()
            .execute(
                "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0), "
                "COALESCE(SUM(overshoot), 0) FROM budget_buckets "
                "WHERE budget = ? AND bucket BETWEEN ? AND ?",
                (slot.budget, slot.span_start, slot.bucket),
            )
            .fetchone()
        )
        return Balance(int(row[0]), int(row[1]), int(row[2]))

    @_store_errors
    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        rows = (
            self._conn()
            .execute(
                f"{_SELECT_EVENTS} WHERE ts >= ? AND ts < ? ORDER BY ts, id LIMIT ?",
                (
                    since if since is not None else -(2**62),
                    until if until is not None else 2**62,
                    limit if limit is not None else -1,
                ),
            )
            .fetchall()
        )
        return [row_event(r) for r in rows]

    @_store_errors
    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        sql, params = tallies_query(pieces, "?")
        try:
            return tally_rows(self._conn().execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
        # Sums past 64 bits (many buckets near their bound): the exact, wider query.
        sql, params = tallies_query(pieces, "?", wide=True)
        return tally_rows(self._conn().execute(sql, params).fetchall(), wide=True)

    @_store_errors
    def event(self, request_id: str) -> Event | None:
        row = (
            self._conn().execute(f"{_SELECT_EVENTS} WHERE request_id = ?", (request_id,)).fetchone()
        )
        return None if row is None else row_event(row)

    @_store_errors
    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        row = (
            self._conn()
            .execute(
                "SELECT state, amount, service, source, created_at, expires_at, emergency, "
                "actual, labels FROM reservations WHERE id = ?",
                (reservation_id,),
            )
            .fetchone()
        )
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

    # -- the control plane --------------------------------------------------------------------

    @_store_errors
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
        with self._write() as conn:
            return _CONTROL.define(
                conn, kind, name, spec, expected=expected, action=action, actor=actor, at=at
            )

    @_store_errors
    def definitions(self) -> list[Definition]:
        return _CONTROL.definitions(self._conn())

    @_store_errors
    def revision(self) -> int:
        return _CONTROL.revision(self._conn())

    @_store_errors
    def probe_write(self, at: int) -> None:
        with self._write() as conn:
            _CONTROL.probe_write(conn, at)

    @_store_errors
    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        return _CONTROL.audit(self._conn(), limit, before)

    @_store_errors
    def add_key(self, key: ApiKey) -> AuditEntry:
        with self._write() as conn:
            return _CONTROL.add_key(conn, key)

    @_store_errors
    def keys(self) -> list[ApiKey]:
        return _CONTROL.keys(self._conn())

    @_store_errors
    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        with self._write() as conn:
            return _CONTROL.revoke_key(conn, key_id, actor, at)

    # -- alerts, the outbox, heartbeats -----------------------------------------------------

    @_store_errors
    def fire(self, alert: Alert) -> bool:
        with self._write() as conn:
            return _ALERTS.fire(conn, alert)

    @_store_errors
    def alert(self, alert_id: str) -> Alert | None:
        return _ALERTS.alert(self._conn(), alert_id)

    @_store_errors
    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        return _ALERTS.alerts(self._conn(), state, limit, before)

    @_store_errors
    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        with self._write() as conn:
            return _ALERTS.resolve(conn, alert_id, at, value)

    @_store_errors
    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        with self._write() as conn:
            return _ALERTS.acknowledge(conn, alert_id, actor, at)

    @_store_errors
    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        with self._write() as conn:
            return _ALERTS.silence(conn, alert_id, until, actor, at)

    @_store_errors
    def enqueue(
        self,
        alert_id: str,
        round: int,
        notifications: Sequence[Notification],
        at: int,
    ) -> bool:
        with self._write() as conn:
            return _ALERTS.enqueue(conn, alert_id, round, notifications, at)

    @_store_errors
    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        with self._write() as conn:
            return _ALERTS.claim(conn, worker, now, until, limit)

    @_store_errors
    def delivered(self, key: str, worker: str, at: int) -> bool:
        with self._write() as conn:
            return _ALERTS.delivered(conn, key, worker, at)

    @_store_errors
    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        with self._write() as conn:
            return _ALERTS.failed(conn, key, worker, error, retry_at)

    @_store_errors
    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        with self._write() as conn:
            return _ALERTS.dead(conn, key, worker, at, reason)

    @_store_errors
    def release_claims(self, worker: str) -> int:
        with self._write() as conn:
            return _ALERTS.release_claims(conn, worker)

    @_store_errors
    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        return _ALERTS.notifications(self._conn(), alert_id, state, limit)

    @_store_errors
    def heartbeat(self, service: str, at: int) -> None:
        with self._write() as conn:
            _ALERTS.heartbeat(conn, service, at)

    @_store_errors
    def heartbeats(self) -> dict[str, int]:
        return _ALERTS.heartbeats(self._conn())


def _roll(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Add rows of `rollup_rows()` to the rollups; `CounterLimitError` if a sum would pass
    `MAX_TOTAL` (the upsert leaves such a row out, so it changes fewer rows than given)."""
    if conn.executemany(_ROLLUP, rows).rowcount != len(rows):
        raise rollup_refused(conn, rows, "?")


def _unstorable(writes: Sequence[EventWrite], exc: Exception) -> UnstorableError:
    """A batch of events the database refused for what they hold (not for being down)."""
    ids = [w.event.request_id for w in writes]
    what = f"event {ids[0]!r}" if len(ids) == 1 else f"one of {len(ids)} events"
    return UnstorableError(what, ids[0] if len(ids) == 1 else ids[:3], f"SQLite: {exc}")


def _insert_events(n: int) -> str:
    """A multi-row INSERT of `n` events (sizes are powers of two: few distinct statements)."""
    sql = _INSERT_SIZES.get(n)
    if sql is None:
        one = f"({', '.join('?' for _ in EVENT_COLUMNS)})"
        sql = _INSERT_SIZES[n] = (
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES {', '.join([one] * n)}"
        )
    return sql


_INSERT_SIZES: dict[int, str] = {}
_MAX_ROWS = 512  # 512 x 17 parameters stays under SQLite's 32,766


def _chunks(rows: list[tuple[object, ...]]) -> list[list[tuple[object, ...]]]:
    """Split rows into chunks whose sizes are powers of two, largest first."""
    out = []
    i = 0
    while i < len(rows):
        size = min(_MAX_ROWS, 1 << ((len(rows) - i).bit_length() - 1))
        out.append(rows[i : i + size])
        i += size
    return out


_LIVE: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for store in list(_LIVE):
        store._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


@contextmanager
def _migration_lock(path: str) -> Iterator[None]:
    """One process at a time brings a new file's schema up (the others then find it done)."""
    with open(f"{path}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _RefusedError(Exception):
    """A slot refused the hold; raised to roll the whole reservation back."""

    def __init__(self, index: int) -> None:
        self.index = index


def _with_cost(event: Event, cost: Nanos | None) -> tuple[object, ...]:
    row = event_row(event)
    return row if cost == event.cost else (*row[:5], cost, *row[6:])
