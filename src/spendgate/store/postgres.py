"""The PostgreSQL store (`postgresql://user@host/db`): one budget and one ledger for many hosts.

Each contract method is one READ COMMITTED transaction on a pooled psycopg 3 connection.
Holds are conditional upserts on the budget row (`… DO UPDATE … WHERE spent + reserved +
amount <= cap`): PostgreSQL locks the row and re-reads its newest version before the
condition, so two hosts can never both pass on the same last dollar and no update is lost.
A rolling window's cap spans several rows, so a hold there first takes a transaction lock on
its budget. Rows are always locked in one order (budget, bucket), and the rare deadlock or
serialization failure is retried whole.

URL options (the rest go to libpq as they are, e.g. `sslmode`, `connect_timeout`):
`?schema=NAME` (tables in that schema, created if missing), `?pool_size=10` (connections per
process), `?migrate=false` (refuse an old schema instead of upgrading it), `?clock=database`
(expire holds by the database server's clock instead of the callers'; see docs/storage.md),
`?timeout=1.5` (seconds a call waits for a connection before the store counts as unreachable).

A server that is down costs a call at most `timeout` (and the calls after it far less, see
`_run`): waiting for a connection is bounded by it and not retried, and the pool gives a lost
connection up quickly, so that the next call's wait is what reconnects (see `_pool`). A write
whose connection is lost during COMMIT is looked up again on a fresh connection before the
call answers (see `_transaction`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from spendgate.errors import (
    ConflictError,
    OutcomeUnknownError,
    ReservationStateError,
    StoreClosedError,
    StoreError,
    StoreFailure,
    StoreUnreachableError,
    UnstorableError,
    ValidationError,
)
from spendgate.events import Event, RecordResult, RecordStatus
from spendgate.money import MAX_TOTAL, Nanos, number_text
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

Conn = psycopg.Connection[tuple[Any, ...]]

DEFAULT_POOL_SIZE = 10
DEFAULT_TIMEOUT = 1.5
"""Seconds a call waits for a connection (from the pool, or a new one) before it gives up
and the store counts as unreachable: `authorize()` and `reserve()` then fail closed."""
MAX_TIMEOUT = 600.0
_PROBE_WAIT = 0.25
"""Seconds a call waits for a connection after calls found the server unreachable: enough
for a server that is back to be handed over by the pool's next attempt, and no more."""
CLOCKS = ("caller", "database")
_ATTEMPTS = 8  # tries of a transaction that lost a deadlock or serialization race
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_IN_CHUNK = 1000

_COLUMNS = ", ".join(EVENT_COLUMNS)
_INSERT_EVENT_ONCE = (
    f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('%s' for _ in EVENT_COLUMNS)}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
_ROLLUP = rollup_upsert("%s")
_COPY_EVENTS = f"COPY events ({_COLUMNS}) FROM STDIN"
_SELECT_EVENTS = f"SELECT {_COLUMNS} FROM events"
_USAGE = (
    "SELECT COALESCE(SUM(spent + reserved), 0) FROM budget_buckets "
    "WHERE budget = %s AND bucket BETWEEN %s AND %s"
)
# A hold on a calendar window: create the row or add to it, each branch only within the
# limit (the cap, within `MAX_TOTAL`: `base.hold_limit`).
_HOLD = (
    "INSERT INTO budget_buckets AS b (budget, bucket, spent, reserved, overshoot) "
    "SELECT %(budget)s, %(bucket)s, 0, %(amount)s, 0 WHERE %(amount)s <= %(limit)s::bigint "
    "ON CONFLICT (budget, bucket) DO UPDATE SET reserved = b.reserved + excluded.reserved "
    "WHERE b.spent + b.reserved + excluded.reserved <= %(limit)s::bigint "
    "RETURNING b.spent + b.reserved"
)
_ENSURE_BUCKET = (
    "INSERT INTO budget_buckets (budget, bucket) VALUES (%s, %s) ON CONFLICT DO NOTHING"
)
# Serializes the holds of one rolling budget (its cap is a sum over several rows).
_LOCK_BUDGET = "SELECT pg_advisory_xact_lock(hashtextextended('spendgate:' || %s, 0))"
_HOLD_ROLLING = (
    "UPDATE budget_buckets SET reserved = reserved + %(amount)s "
    "WHERE budget = %(budget)s AND bucket = %(bucket)s AND "
    "(SELECT SUM(spent + reserved) FROM budget_buckets "
    " WHERE budget = %(budget)s AND bucket BETWEEN %(span)s AND %(bucket)s) "
    " + %(amount)s <= %(limit)s::bigint"
)
_SETTLE = (
    "UPDATE budget_buckets SET reserved = reserved - %s, spent = spent + %s, "
    "overshoot = overshoot + %s WHERE budget = %s AND bucket = %s"
)
# A settle that adds to usage (an actual above its hold), only within `MAX_TOTAL`.
_SETTLE_BOUNDED = f"{_SETTLE} AND spent + reserved + %s <= {MAX_TOTAL}"
_BUCKET_EXISTS = "SELECT 1 FROM budget_buckets WHERE budget = %s AND bucket = %s"
_UNHOLD = "UPDATE budget_buckets SET reserved = reserved - %s WHERE budget = %s AND bucket = %s"
# Spend no hold covered, on a bucket row created beforehand, only within `MAX_TOTAL` (a row
# left alone changes no row).
_CHARGE = (
    "UPDATE budget_buckets SET spent = spent + %s, overshoot = overshoot + %s "
    f"WHERE budget = %s AND bucket = %s AND spent + reserved + %s <= {MAX_TOTAL}"
)
# Spend no hold covered, on a calendar window: `base.overshoot_of` written out in SQL.
_CHARGE_CALENDAR = (
    "INSERT INTO budget_buckets AS b (budget, bucket, spent, reserved, overshoot) "
    "VALUES (%(budget)s, %(bucket)s, %(amount)s, 0, %(first)s) "
    "ON CONFLICT (budget, bucket) DO UPDATE SET spent = b.spent + excluded.spent, "
    "overshoot = b.overshoot + GREATEST(0, b.spent + b.reserved + excluded.spent - %(cap)s) "
    "- GREATEST(0, b.spent + b.reserved - %(cap)s) "
    f"WHERE b.spent + b.reserved + excluded.spent <= {MAX_TOTAL} "  # else: no row returned
    "RETURNING GREATEST(0, b.spent + b.reserved - %(cap)s) "
    "- GREATEST(0, b.spent + b.reserved - %(amount)s - %(cap)s), b.spent + b.reserved"
)
_ANY_EXPIRED = "SELECT 1 FROM reservations WHERE state = 'pending' AND expires_at <= %s LIMIT 1"
_CONTROL = ControlPlane("%s")
# A claim locks the rows it takes and skips those another claim holds, in one statement.
_ALERTS = Alerting("%s", "FOR UPDATE SKIP LOCKED")
# Serializes control-plane writes, taken first in each. A writer numbers its change the newest
# revision plus one; only once the writer before it has committed is that number unique and
# committed after every smaller one, so a poller that saw revision N never later finds a new
# change below N. One key for every schema on the server: these writes are rare, and a key
# that does not depend on how a store names its schema cannot be missed.
_LOCK_CONTROL = "SELECT pg_advisory_xact_lock(hashtextextended('spendgate-control', 0))"
_DB_NOW = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"


class _RetryError(Exception):
    """The transaction lost a race PostgreSQL resolves by aborting one side: run it again."""


class _CommitLostError(Exception):
    """The connection was lost during COMMIT: the transaction may or may not be stored.
    `result` is what the call would have answered had the COMMIT been acknowledged."""

    def __init__(self, result: object, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.result: Any = result
        self.cause = cause

    def unknown(self, where: str, also: BaseException | None = None) -> OutcomeUnknownError:
        """The error to raise when the outcome cannot be found out now."""
        after = f"; looking it up failed too: {_first_line(also)}" if also is not None else ""
        return OutcomeUnknownError(
            f"{where}: the connection was lost while committing, the outcome is unknown "
            f"(the same call again with the same id finds out): {_first_line(self.cause)}"
            f"{after}"
        )


def _store_errors(
    method: Callable[Concatenate[PostgresStore, P], T],
) -> Callable[Concatenate[PostgresStore, P], T]:
    """A contract method whose driver errors come out as `StoreError`s naming the server,
    counted in flight so that `close()` never closes the pool under it."""

    def run(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        calls = self._calls
        calls.enter()
        try:
            return method(self, *args, **kwargs)
        except PoolClosed as exc:
            raise StoreClosedError(self.where) from exc
        except PoolTimeout as exc:
            raise StoreError(
                f"{self.where}: the store is unreachable (no connection within "
                f"{self._timeout:g} s): {exc}",
                reason="store unreachable",
            ) from exc
        except psycopg.Error as exc:
            reason = _failure(exc)
            if reason == "store unreachable":
                message = f"{self.where}: the store is unreachable: {_first_line(exc)}"
            else:
                message = f"{self.where}: {exc.__class__.__name__}: {_first_line(exc)}"
            raise StoreError(message, reason=reason) from exc
        finally:
            calls.exit()

    functools.update_wrapper(run, method)
    return run


def _seconds(text: str | None, default: float) -> float:
    """The `timeout` option: seconds above 0, at most `MAX_TIMEOUT`."""
    try:
        value = default if text is None else float(number_text(text, "url timeout"))
    except ValidationError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise ValidationError(
            "url timeout",
            text if text is not None else default,
            f"a number of seconds above 0 and at most {MAX_TIMEOUT:g}, such as 2",
        )
    return value


# SQLSTATEs, and classes of them (their first two characters), by the kind of failure.
_FAILURES: dict[str, StoreFailure] = {
    "53100": "disk full",  # disk_full
    "25006": "read-only",  # read_only_sql_transaction (a standby, or read-only by setting)
    "55P03": "store busy",  # lock_not_available
    "57014": "store busy",  # query_canceled (a statement timeout)
    "53300": "store unreachable",  # too_many_connections
    "08": "store unreachable",  # connection exceptions
    "57": "store unreachable",  # operator intervention: shutting down, starting up
}


def _failure(exc: psycopg.Error) -> StoreFailure:
    """What kind of failure a driver error is. An `OperationalError` with no state of the
    server's own is a connection that failed or was lost: the store is unreachable."""
    state = exc.sqlstate or ""
    found = _FAILURES.get(state) or _FAILURES.get(state[:2])
    if found is not None:
        return found
    if isinstance(exc, psycopg.OperationalError) and not state:
        return "store unreachable"
    return "store error"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a `postgresql://` URL into libpq's connection string and spendgate's options."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValidationError("url", url, "postgresql://USER@HOST[:PORT]/DATABASE")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("schema", "pool_size", "migrate", "clock", "timeout")}
    theirs = [(k, v) for k, v in query if k not in ours]
    libpq = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(theirs), ""))
    try:
        if "," not in parts.netloc:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValidationError(
            "url port", _hide_password(url), "a port number such as 5432"
        ) from None
    try:
        conninfo_to_dict(libpq)
    except psycopg.ProgrammingError as exc:
        raise ValidationError(
            "url", _hide_password(url), f"a valid postgresql:// URL ({_first_line(exc)})"
        ) from None
    return libpq, ours


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL (for Alembic) of a spendgate `postgresql://` URL, schema included."""
    conninfo, options = parse_url(url)
    schema = options.get("schema")
    if schema is not None:
        conninfo = make_conninfo(conninfo, options=f"-csearch_path={schema}")
    return _sqlalchemy_url(conninfo)


def _sqlalchemy_url(conninfo: str) -> str:
    info = conninfo_to_dict(conninfo)
    query = {
        k: str(v)
        for k, v in info.items()
        if k not in ("user", "password", "host", "port", "dbname")
    }
    user = quote(str(info.get("user", "")), safe="")
    password = info.get("password")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" * bool(user))
    host = str(info.get("host", ""))
    if "," in host or host.startswith("/"):
        query["host"] = host
        host = ""
    port = f":{info['port']}" if "port" in info and host else ""
    dbname = quote(str(info.get("dbname", "")), safe="")
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql+psycopg://{auth}{host}{port}/{dbname}{tail}"


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class PostgresStore(Store):
    """The contract on one PostgreSQL database, shared by every process on every host."""

    batched = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        migrate_schema: bool = True,
    ) -> None:
        conninfo, options = parse_url(url)
        schema = options.get("schema")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValidationError(
                "url schema", schema, "a name of letters, digits and _ (not starting with a digit)"
            )
        try:
            pool_size = int(options.get("pool_size", pool_size))
        except ValueError:
            pool_size = 0
        if pool_size < 1:
            raise ValidationError("url pool_size", options["pool_size"], "a whole number >= 1")
        timeout = _seconds(options.get("timeout"), timeout)
        clock = options.get("clock", "caller")
        if clock not in CLOCKS:
            raise ValidationError("url clock", clock, f"one of {', '.join(CLOCKS)}")
        migrate_schema = url_flag(options.get("migrate", str(migrate_schema)), "url migrate")
        self.url = url
        self.schema = schema
        self.database_clock = clock == "database"
        info = conninfo_to_dict(conninfo)
        self.where = (
            f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}"
        )
        if schema is not None:
            conninfo = make_conninfo(conninfo, options=f"-csearch_path={schema}")
        self._conninfo = conninfo
        # A connection attempt of the pool's takes no longer than a call waits for it (libpq
        # counts whole seconds, at least 2); the URL's own `connect_timeout` wins.
        self._pool_conninfo = conninfo
        if "connect_timeout" not in conninfo_to_dict(conninfo):
            self._pool_conninfo = make_conninfo(
                conninfo, connect_timeout=max(2, math.ceil(timeout))
            )
        self._pool_size = pool_size
        self._timeout = timeout
        self._pools: dict[int, ConnectionPool[Conn]] = {}
        self._pools_lock = threading.Lock()
        self._calls = InFlight(self.where, self._release)
        self._failing = False  # the last call found the server unreachable (see `_run`)
        self._prepare_schema(migrate_schema)

    # -- connections and transactions --------------------------------------------------------

    def _prepare_schema(self, migrate_schema: bool) -> None:
        """Create the schema if named, and bring it to this code's head under a lock."""
        try:
            conninfo = self._conninfo
            if "connect_timeout" not in conninfo_to_dict(conninfo):  # the URL's own wins
                conninfo = make_conninfo(conninfo, connect_timeout=10)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                if self.schema is not None and migrate_schema:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                # One process at a time migrates; the others then find the schema current.
                key = f"spendgate-migrate:{self.schema or 'public'}"
                conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
                try:
                    migrate.ensure_current(self.sqlalchemy_url(), migrate=migrate_schema)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"cannot connect to {self.where}: {_first_line(exc)} "
                "(check that the server runs, and the host, port, user and password in the URL)"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot prepare {self.where}: {_first_line(exc)}") from exc

    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL of this database (and schema), for Alembic."""
        return _sqlalchemy_url(self._conninfo)

    def _pool(self) -> ConnectionPool[Conn]:
        if self._calls.closed:
            raise StoreClosedError(self.where)
        pid = os.getpid()
        pool = self._pools.get(pid)
        if pool is not None:
            return pool
        with self._pools_lock:
            pool = self._pools.get(pid)
            if pool is None:
                # A forked child must not use its parent's sockets: it opens a pool of its own
                # (and leaves the parent's alone, which still serves the parent).
                pool = ConnectionPool(
                    self._pool_conninfo,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=self._timeout,
                    # Autocommit: reads need no transaction, and `transaction()` blocks
                    # send a plain BEGIN/COMMIT.
                    kwargs={"autocommit": True},
                    # A lost connection is reconnected in the background for no longer than
                    # a call waits. psycopg_pool's default keeps trying for 5 minutes with a
                    # delay that doubles (1, 2, 4 … 128 s), and a pool whose connections are
                    # all being retried opens no other: a server back after a minute's
                    # outage went unused for another minute or two. Given up, the next call
                    # that finds no connection makes the pool open one at once.
                    reconnect_timeout=self._timeout,
                    open=True,
                    name=f"spendgate-{pid}",
                )
                self._pools[pid] = pool
        return pool

    def _transaction(
        self, work: Callable[[Conn], T], *, landed: Callable[[Conn, T], T] | None = None
    ) -> T:
        """Run `work` in one READ COMMITTED transaction (see `_run`).

        A connection lost during COMMIT leaves the outcome unknown: the server may have
        committed before it went, or not. With `landed`, the call finds out before it
        answers: `landed(conn, result)` runs in a new transaction on a fresh connection,
        with `result` the answer the lost transaction would have given, and returns the
        true answer (the lost transaction's if it was stored, else what running the work
        again gives). It waits for the lost transaction if the server is still finishing
        it (it locks what that one locked). If that too fails, `OutcomeUnknownError`.
        """
        try:
            return self._run(work, transaction=True)
        except _CommitLostError as lost:
            if landed is None:
                raise lost.unknown(self.where) from lost.cause
            lost_result = lost.result
            try:
                return self._run(lambda conn: landed(conn, lost_result), transaction=True)
            except (StoreError, psycopg.Error, _CommitLostError) as exc:
                raise lost.unknown(self.where, exc) from lost.cause

    def _read(self, work: Callable[[Conn], T]) -> T:
        """Run `work` on a connection, outside any transaction (see `_run`)."""
        return self._run(work, transaction=False)

    def _run(self, work: Callable[[Conn], T], *, transaction: bool) -> T:
        """Run `work`, again if it lost a race or found its connection dead, within a time.

        A transaction that fails is rolled back whole: PostgreSQL aborts one side of a
        deadlock or serialization conflict, and that side's work is simply run again. A
        connection the server dropped (a restart, an idle timeout) fails before anything is
        written, and the pool may hold several such: each try takes another, until one is
        new. A connection lost during COMMIT leaves the outcome unknown: `_CommitLostError`
        (see `_transaction`).

        Time: the call gives up once `timeout` seconds have passed since it last heard from
        the server. Waiting for a connection is not retried: no connection within the time
        means the server is down or every pooled connection is busy, and either way the
        caller is better answered now (`authorize()` fails closed) than after minutes. After
        a call found the server unreachable, and until one succeeds, calls wait only
        `_PROBE_WAIT` (a wait still makes the pool try to connect): during an outage every
        call is answered at once, a key check then an authorize included. A pool that is
        merely busy soon has a call succeed, which ends the short waits.
        """
        deadline = time.monotonic() + self._timeout
        dropped = 0
        for attempt in range(_ATTEMPTS + self._pool_size):
            worked = False
            result: T
            try:
                wait = deadline - time.monotonic()
                if self._failing:
                    wait = min(wait, _PROBE_WAIT)
                with self._pool().connection(timeout=max(wait, 0.001)) as conn:
                    try:
                        if transaction:
                            with conn.transaction():
                                result = work(conn)
                                worked = True
                        else:
                            result = work(conn)
                    except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                        raise _RetryError() from None
                    except psycopg.OperationalError as exc:
                        if not conn.broken:
                            raise  # the server answered with an error: the link is fine
                        if worked:
                            raise _CommitLostError(result, exc) from exc
                        dropped += 1
                        if dropped > self._pool_size or time.monotonic() >= deadline:
                            self._failing = True
                            raise StoreUnreachableError(
                                f"{self.where}: the store is unreachable (the connection "
                                f"was lost): {_first_line(exc)}"
                            ) from exc
                        continue  # the next try takes another connection
                if self._failing:
                    self._failing = False
                return result
            except _RetryError:
                deadline = time.monotonic() + self._timeout  # the server answered
                time.sleep(0.001 * min(attempt + 1, 10))  # let the winner finish
            except PoolTimeout as exc:
                why = (
                    "no connection: the server did not answer the calls before this one "
                    "either, it is down or out of reach"
                    if self._failing
                    else f"no connection within {self._timeout:g} s: the server is down or "
                    "every pooled connection is busy"
                )
                self._failing = True
                raise StoreUnreachableError(
                    f"{self.where}: the store is unreachable ({why})"
                ) from exc
        raise StoreError(f"{self.where}: gave up after {_ATTEMPTS} deadlocks in a row")

    def _now(self, conn: Conn, now: int) -> int:
        """The time holds expire by: the caller's, or the database server's."""
        if not self.database_clock:
            return now
        row = conn.execute(_DB_NOW).fetchone()
        assert row is not None
        return int(row[0])

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Refuse new calls, wait up to `timeout` seconds for those in flight, close this
        process's pool (see `InFlight`). Safe from any thread, and more than once."""
        self._calls.close(timeout)

    def _release(self) -> None:
        with self._pools_lock:
            pool = self._pools.pop(os.getpid(), None)
        if pool is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                pool.close()

    # -- helpers inside a transaction ---------------------------------------------------------

    @staticmethod
    def _used(conn: Conn, slot: Slot) -> Nanos:
        row = conn.execute(_USAGE, (slot.budget, slot.span_start, slot.bucket)).fetchone()
        assert row is not None
        return int(row[0])

    def _charge(self, conn: Conn, slot: Slot, amount: Nanos) -> tuple[Nanos, Nanos | None]:
        """Book spend no hold covered; what lands above the cap counts as overshoot. Returns
        the overshoot and, where the statement returned it, the window's usage after.

        Elsewhere the usage read before the update may be stale by the time it runs (a
        concurrent settle does not take the budget lock): the caller reads it afterwards.

        `CounterLimitError` if the usage would pass `MAX_TOTAL`: exactly for the bucket's row
        (its statement checks it), and for a rolling window's sum as this transaction reads
        it (concurrent writers may pass that by their own amounts, which 64 bits absorb)."""
        check_room(slot, 0, amount)  # a batch's total, before it reaches a statement
        if slot.span_start == slot.bucket and slot.cap is not None:
            params = {
                "budget": slot.budget,
                "bucket": slot.bucket,
                "amount": amount,
                "cap": slot.cap,
                "first": overshoot_of(0, amount, slot.cap),
            }
            row = conn.execute(_CHARGE_CALENDAR, params).fetchone()
            if row is None:
                raise usage_limit_error(slot, amount)
            return int(row[0]), int(row[1])
        if slot.cap is not None or (slot.lines and slot.span_start < slot.bucket):
            conn.execute(_LOCK_BUDGET, (slot.budget,))
        conn.execute(_ENSURE_BUCKET, (slot.budget, slot.bucket))
        used = self._used(conn, slot)
        check_room(slot, used, amount)
        over = overshoot_of(used, amount, slot.cap)
        if not conn.execute(_CHARGE, (amount, over, slot.budget, slot.bucket, amount)).rowcount:
            raise usage_limit_error(slot, amount)
        return over, None

    def _book(self, conn: Conn, crossings: Crossings) -> None:
        """Raise the alerts of the lines this transaction's changes crossed.

        Why concurrent writers neither miss a crossing nor count one twice. A calendar
        window is one row, and every change to it (hold, charge, settle) locks the row until
        commit: the usage returned or read after this transaction's changes is the last
        writer's committed value plus its own, so before = after - its net change is what
        the previous writer of the row left. Successive writers see adjoining intervals,
        whose union covers every rise. A rolling window spans rows: each transaction that
        raised it reads the sum after its own changes under the budget's advisory lock
        (taken by the hold or charge in budget order, or here), held to commit, so its
        writers too see adjoining intervals; changes made without the lock only lower usage
        (release, expiry, returned holds), which can only make a later crossing a repeat.
        The once-per-length check of a rolling window reads under that same lock. A line
        crossed again in one window names the same alert id, which the insert skips; a
        concurrent insert of the same id waits for the first to commit, then skips it.
        """
        if not crossings:
            return
        read = {}
        for slot in crossings.unknown():
            if slot.span_start < slot.bucket:
                conn.execute(_LOCK_BUDGET, (slot.budget,))
            read[(slot.budget, slot.bucket)] = self._used(conn, slot)
        _ALERTS.book(conn, crossings.alerts(read))

    @staticmethod
    def _cost(conn: Conn, write: EventWrite) -> Nanos | None:
        def used_before(q: QuotaUse) -> Decimal:
            # Create the counter if need be, then lock it: two writers of one period queue.
            conn.execute(
                "INSERT INTO quota_usage (source, unit, period, used) VALUES (%s, %s, %s, '0') "
                "ON CONFLICT DO NOTHING",
                (q.source, q.unit, q.period),
            )
            row = conn.execute(
                "SELECT used FROM quota_usage WHERE source = %s AND unit = %s AND period = %s "
                "FOR UPDATE",
                (q.source, q.unit, q.period),
            ).fetchone()
            assert row is not None
            return Decimal(row[0])

        cost, counters = cost_with_quota(write, used_before)
        for q, used in counters:
            conn.execute(
                "UPDATE quota_usage SET used = %s WHERE source = %s AND unit = %s AND period = %s",
                (str(used), q.source, q.unit, q.period),
            )
        return cost

    @staticmethod
    def _expire_in(conn: Conn, now: int) -> int:
        # Claiming the rows and returning their holds is one step: a second sweeper running
        # at the same time waits on the row locks, then finds them no longer pending.
        rows = conn.execute(
            "UPDATE reservations SET state = 'expired', settled_at = %s "
            "WHERE state = 'pending' AND expires_at <= %s RETURNING amount, slots",
            (now, now),
        ).fetchall()
        unholds = sorted(
            (s.budget, s.bucket, amount) for amount, slots in rows for s in json_slots(slots)
        )
        with conn.cursor() as cur:
            cur.executemany(_UNHOLD, [(amount, b, bucket) for b, bucket, amount in unholds])
        return len(rows)

    @staticmethod
    def _open_reservation(
        conn: Conn, reservation_id: str, action: str, any_state: bool = False
    ) -> tuple[ReservationState, Nanos, tuple[Slot, ...]]:
        row = conn.execute(
            "SELECT state, amount, slots FROM reservations WHERE id = %s FOR UPDATE",
            (reservation_id,),
        ).fetchone()
        if row is None:
            raise ReservationStateError(reservation_id, "unknown", action)
        state, amount, slots = row
        if state in ("committed", "released") and not any_state:
            raise ReservationStateError(reservation_id, state, action)
        return state, amount, json_slots(slots)

    def _hold(self, conn: Conn, slot: Slot, amount: Nanos) -> Nanos | None:
        """Add `amount` to the slot's reserved if its cap allows; its usage after, or None."""
        limit = hold_limit(slot.cap)
        params = {"budget": slot.budget, "bucket": slot.bucket, "amount": amount, "limit": limit}
        if slot.span_start == slot.bucket:
            row = conn.execute(_HOLD, params).fetchone()
            if row is not None:
                return int(row[0])
        else:
            if slot.cap is not None or slot.lines:
                conn.execute(_LOCK_BUDGET, (slot.budget,))
            conn.execute(_ENSURE_BUCKET, (slot.budget, slot.bucket))
            if conn.execute(_HOLD_ROLLING, {**params, "span": slot.span_start}).rowcount:
                return self._used(conn, slot)
        if limit != slot.cap:  # refused by the bound of every total, not by the budget
            raise usage_limit_error(slot, amount)
        return None

    def _hold_all(self, conn: Conn, slots: Sequence[Slot], amount: Nanos, now: int) -> list[Nanos]:
        """Hold on every slot, locking rows in one global order; `_RefusedError` if one refuses.
        Then raise the alerts of the lines the holds crossed.

        The caller's transaction rolls back on refusal, so no slot keeps a hold.
        """
        used: dict[int, Nanos] = {}
        crossings = Crossings(slots)
        for i in sorted(range(len(slots)), key=lambda i: (slots[i].budget, slots[i].bucket)):
            after = self._hold(conn, slots[i], amount)
            if after is None:
                raise _RefusedError(i)
            used[i] = after
            crossings.move(slots[i : i + 1], amount, now)
            crossings.seen(slots[i], after)
        self._book(conn, crossings)
        return [used[i] for i in range(len(slots))]

    # -- the contract -------------------------------------------------------------------------

    @_store_errors
    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        return self._read(lambda conn: [self._used(conn, s) for s in slots])

    @_store_errors
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

        def work(conn: Conn) -> ReserveResult:
            at = self._now(conn, now)
            created, expires = write.created_at, write.expires_at
            if self.database_clock:
                created, expires = at, at + (write.expires_at - write.created_at)
            inserted = conn.execute(
                "INSERT INTO reservations (id, state, fingerprint, service, source, amount, "
                "emergency, created_at, expires_at, slots, labels) "
                "VALUES (%s, 'pending', %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    write.reservation_id,
                    write.fingerprint,
                    write.service,
                    write.source,
                    write.amount,
                    write.emergency,
                    created,
                    expires,
                    slots_json(write.slots),
                    json.dumps(dict(write.labels)) if write.labels else None,
                ),
            ).rowcount
            if not inserted:
                row = conn.execute(
                    "SELECT fingerprint, state FROM reservations WHERE id = %s",
                    (write.reservation_id,),
                ).fetchone()
                assert row is not None
                same = row[0] == write.fingerprint
                return ReserveResult("exists" if same else "conflict", state=row[1])
            used = self._hold_all(conn, write.slots, write.amount, now)
            return ReserveResult("created", tuple(used))

        def landed(conn: Conn, lost: ReserveResult) -> ReserveResult:
            # The same reservation again: if the lost one was stored, the id finds it.
            again = work(conn)
            if lost.status == "created" and again.status == "exists" and again.state == "pending":
                return lost
            return again

        try:
            return self._transaction(work, landed=landed)
        except _RefusedError as refused:  # rolled back: no hold was taken on any slot
            return ReserveResult("denied", refused=refused.index)

    @_store_errors
    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        def work(conn: Conn) -> CommitResult:
            at = self._now(conn, now)
            state, held, slots = self._open_reservation(conn, reservation_id, "commit")
            cost = self._cost(conn, write)
            event = write.event
            if not conn.execute(_INSERT_EVENT_ONCE, _with_cost(event, cost)).rowcount:
                raise ConflictError("event", event.request_id)
            amount = cost or 0
            expired = state == "expired"
            plan = Settlement.plan(slots, write.slots, expired=expired)
            crossings = Crossings(write.slots)
            cover = 0 if expired else held
            overshoot = self._settle(conn, plan, held, amount, cover, crossings=crossings, now=now)
            self._book(conn, crossings)
            _roll(conn, [(event, cost)])
            conn.execute(
                "UPDATE reservations SET state = 'committed', actual = %s, settled_at = %s "
                "WHERE id = %s",
                (cost, at, reservation_id),
            )
            return CommitResult(reservation_id, event.request_id, cost, overshoot, expired)

        def landed(conn: Conn, lost: CommitResult) -> CommitResult:
            state, _, _ = self._open_reservation(conn, reservation_id, "commit", any_state=True)
            if state != "committed":
                return work(conn)  # the lost COMMIT was not stored: commit now
            stored = self._stored(conn, write.event.request_id)
            if stored is not None and stored[0] == write.event.fingerprint:
                return lost  # stored, with this very event
            raise ReservationStateError(reservation_id, state, "commit")

        return self._transaction(work, landed=landed)

    def _settle(
        self,
        conn: Conn,
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
        _settle_rows(conn, plan.settle, held, amount, overshoot)
        with conn.cursor() as cur:
            cur.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in plan.unhold])
        for slot in plan.charge:
            crossings.move((slot,), amount, now)
            over, used = self._charge(conn, slot, amount)
            if used is not None:
                crossings.seen(slot, used)
            overshoot = max(overshoot, over)
        return overshoot

    @_store_errors
    def release(self, reservation_id: str, now: int) -> ReservationState:
        def work(conn: Conn) -> ReservationState:
            at = self._now(conn, now)
            state, held, slots = self._open_reservation(conn, reservation_id, "release")
            if state == "pending":
                with conn.cursor() as cur:
                    cur.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in slots])
            conn.execute(
                "UPDATE reservations SET state = 'released', settled_at = %s WHERE id = %s",
                (at, reservation_id),
            )
            return "expired" if state == "expired" else "released"

        def landed(conn: Conn, lost: ReservationState) -> ReservationState:
            state, _, _ = self._open_reservation(conn, reservation_id, "release", any_state=True)
            return lost if state == "released" else work(conn)

        return self._transaction(work, landed=landed)

    @_store_errors
    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        def work(conn: Conn) -> ReserveResult:
            state, amount, slots = self._open_reservation(conn, reservation_id, "adjust", True)
            if state != "pending":
                return ReserveResult("exists", state=state)
            change = max(delta, -amount)
            if change > 0:
                used = self._hold_all(conn, slots, change, now)
            else:
                with conn.cursor() as cur:
                    cur.executemany(_UNHOLD, [(-change, s.budget, s.bucket) for s in slots])
                used = [self._used(conn, s) for s in slots]
            at = self._now(conn, now)
            conn.execute(
                "UPDATE reservations SET amount = amount + %s, expires_at = %s WHERE id = %s",
                (change, at + (expires_at - now), reservation_id),
            )
            return ReserveResult("created", tuple(used))

        try:
            return self._transaction(work)
        except _RefusedError as refused:  # rolled back: nothing changed
            slots = json_slots(self._slots_of(reservation_id))
            return ReserveResult("denied", tuple(self.usage(slots, now)), refused.index)

    def _slots_of(self, reservation_id: str) -> str:
        row = self._read(
            lambda conn: conn.execute(
                "SELECT slots FROM reservations WHERE id = %s", (reservation_id,)
            ).fetchone()
        )
        assert row is not None
        return str(row[0])

    @_store_errors
    def expire(self, now: int) -> int:
        def any_expired(conn: Conn) -> bool:
            return conn.execute(_ANY_EXPIRED, (self._now(conn, now),)).fetchone() is not None

        if not self._read(any_expired):  # a cheap read first: nearly always nothing has
            return 0
        return self._transaction(lambda conn: self._expire_in(conn, self._now(conn, now)))

    @_store_errors
    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        if not writes:
            return []

        def landed(conn: Conn, lost: list[RecordResult]) -> list[RecordResult]:
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
                except pg_errors.UniqueViolation:
                    pass  # rolled back whole: a retry or a conflict is in the batch
            return self._transaction(lambda conn: self._record_checked(conn, writes), landed=landed)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # A value the database cannot hold, not a database that fails: not a
            # `StoreError`, so a group commit writes the other callers' events again
            # without this one.
            raise _unstorable(writes, exc) from exc

    def _record_new(self, conn: Conn, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """The common case, all new events: one COPY for the rows, one statement per budget.

        COPY fails on any request id already stored (or repeated in the batch), which rolls
        the batch back for `_record_checked()` to sort out.
        """
        charges: dict[Slot, Nanos] = {}
        with conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
            for w in writes:
                copy.write_row(event_row(w.event))
                if w.event.cost:
                    for slot in w.slots:
                        charges[slot] = charges.get(slot, 0) + w.event.cost
        crossings = Crossings(charges)
        if crossings:
            for w in writes:
                crossings.move(w.slots, w.event.cost or 0, to_micros(w.event.time))
        self._charge_all(conn, charges, crossings)
        _roll(conn, [(w.event, w.event.cost) for w in writes])
        return [RecordResult(w.event.request_id, "created", w.event.cost) for w in writes]

    def _record_checked(self, conn: Conn, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Record a batch that may hold retries, conflicts or tiered prices, one by one."""
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
                    raise _RetryError()
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
        _roll(conn, written)
        return results

    def _charge_all(self, conn: Conn, charges: Mapping[Slot, Nanos], crossings: Crossings) -> None:
        """Charge a batch's spend, each slot once with its total (overshoot telescopes over
        a sum) in lock order, then raise the alerts of the lines it crossed."""
        for slot in sorted(charges, key=_slot_order):
            _, used = self._charge(conn, slot, charges[slot])
            if used is not None:  # a calendar window's row, charged whole by this statement
                crossings.seen(slot, used)
        self._book(conn, crossings)

    @staticmethod
    def _settle_draw(
        conn: Conn, write: EventWrite, amount: Nanos, crossings: Crossings
    ) -> tuple[Slot, ...]:
        """Move a drawn call's hold out of its leases and its cost into spent where a lease
        held it; the slots left to charge as unreserved spend."""
        assert write.draw is not None
        held = write.draw.held
        leases: dict[str, Slot] = {}
        for lease_id in sorted(write.draw.leases):
            row = conn.execute(
                "UPDATE reservations SET amount = amount - %s "
                "WHERE id = %s AND state = 'pending' RETURNING slots",
                (held, lease_id),
            ).fetchone()
            if row is not None:
                leases.update((s.budget, s) for s in json_slots(row[0]))
        plan = drawn_plan(leases, write.slots)
        over = max(0, amount - held)
        at = to_micros(write.event.time)
        crossings.move(plan.settle, amount - held, at)
        crossings.move(plan.unhold, -held, at)
        _settle_rows(conn, plan.settle, held, amount, over)
        with conn.cursor() as cur:
            cur.executemany(_UNHOLD, [(held, s.budget, s.bucket) for s in plan.unhold])
        return plan.charge

    @staticmethod
    def _stored(
        conn: Conn, request_id: str, row: tuple[object, ...] | None = None
    ) -> tuple[str, Nanos | None] | None:
        """The stored (fingerprint, cost) of a request id; with `row`, insert it first and
        answer `None` if it went in (a concurrent writer of the same id waits for ours)."""
        if row is not None and conn.execute(_INSERT_EVENT_ONCE, row).rowcount:
            return None
        found = conn.execute(
            "SELECT fingerprint, cost FROM events WHERE request_id = %s", (request_id,)
        ).fetchone()
        return None if found is None else (found[0], found[1])

    @_store_errors
    def balance(self, slot: Slot) -> Balance:
        row = self._read(
            lambda conn: conn.execute(
                "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0), "
                "COALESCE(SUM(overshoot), 0) FROM budget_buckets "
                "WHERE budget = %s AND bucket BETWEEN %s AND %s",
                (slot.budget, slot.span_start, slot.bucket),
            ).fetchone()
        )
        assert row is not None
        return Balance(int(row[0]), int(row[1]), int(row[2]))

    @_store_errors
    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        rows = self._read(
            lambda conn: conn.execute(
                f"{_SELECT_EVENTS} WHERE ts >= %s AND ts < %s ORDER BY ts, id LIMIT %s",
                (
                    since if since is not None else -(2**62),
                    until if until is not None else 2**62,
                    limit,
                ),
            ).fetchall()
        )
        return [row_event(r) for r in rows]

    @_store_errors
    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        sql, params = tallies_query(pieces, "%s", "::bigint")
        return tally_rows(self._read(lambda conn: conn.execute(sql, params).fetchall()))

    @_store_errors
    def event(self, request_id: str) -> Event | None:
        row = self._read(
            lambda conn: conn.execute(
                f"{_SELECT_EVENTS} WHERE request_id = %s", (request_id,)
            ).fetchone()
        )
        return None if row is None else row_event(row)

    @_store_errors
    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        row = self._read(
            lambda conn: conn.execute(
                "SELECT state, amount, service, source, created_at, expires_at, emergency, "
                "actual, labels FROM reservations WHERE id = %s",
                (reservation_id,),
            ).fetchone()
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

    def _control(self, work: Callable[[Conn], T]) -> T:
        """Run a control-plane write in one transaction, under the control-plane lock."""

        def locked(conn: Conn) -> T:
            conn.execute(_LOCK_CONTROL)
            return work(conn)

        return self._transaction(locked)

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
        return self._control(
            lambda conn: _CONTROL.define(
                conn, kind, name, spec, expected=expected, action=action, actor=actor, at=at
            )
        )

    @_store_errors
    def definitions(self) -> list[Definition]:
        return self._read(_CONTROL.definitions)

    @_store_errors
    def revision(self) -> int:
        return self._read(_CONTROL.revision)

    @_store_errors
    def probe_write(self, at: int) -> None:
        self._transaction(lambda conn: _CONTROL.probe_write(conn, at))

    @_store_errors
    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        return self._read(lambda conn: _CONTROL.audit(conn, limit, before))

    @_store_errors
    def add_key(self, key: ApiKey) -> AuditEntry:
        return self._control(lambda conn: _CONTROL.add_key(conn, key))

    @_store_errors
    def keys(self) -> list[ApiKey]:
        return self._read(_CONTROL.keys)

    @_store_errors
    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        return self._control(lambda conn: _CONTROL.revoke_key(conn, key_id, actor, at))

    # -- alerts, the outbox, heartbeats -----------------------------------------------------

    @_store_errors
    def fire(self, alert: Alert) -> bool:
        # Serialized like the control plane: two evaluators never both pass the check.
        return self._control(lambda conn: _ALERTS.fire(conn, alert))

    @_store_errors
    def alert(self, alert_id: str) -> Alert | None:
        return self._read(lambda conn: _ALERTS.alert(conn, alert_id))

    @_store_errors
    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        return self._read(lambda conn: _ALERTS.alerts(conn, state, limit, before))

    @_store_errors
    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        return self._transaction(lambda conn: _ALERTS.resolve(conn, alert_id, at, value))

    @_store_errors
    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        return self._transaction(lambda conn: _ALERTS.acknowledge(conn, alert_id, actor, at))

    @_store_errors
    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        return self._transaction(lambda conn: _ALERTS.silence(conn, alert_id, until, actor, at))

    @_store_errors
    def enqueue(
        self, alert_id: str, round: int, notifications: Sequence[Notification], at: int
    ) -> bool:
        return self._transaction(
            lambda conn: _ALERTS.enqueue(conn, alert_id, round, notifications, at)
        )

    @_store_errors
    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        return self._transaction(lambda conn: _ALERTS.claim(conn, worker, now, until, limit))

    @_store_errors
    def delivered(self, key: str, worker: str, at: int) -> bool:
        return self._transaction(lambda conn: _ALERTS.delivered(conn, key, worker, at))

    @_store_errors
    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        return self._transaction(lambda conn: _ALERTS.failed(conn, key, worker, error, retry_at))

    @_store_errors
    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        return self._transaction(lambda conn: _ALERTS.dead(conn, key, worker, at, reason))

    @_store_errors
    def release_claims(self, worker: str) -> int:
        return self._transaction(lambda conn: _ALERTS.release_claims(conn, worker))

    @_store_errors
    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        return self._read(lambda conn: _ALERTS.notifications(conn, alert_id, state, limit))

    @_store_errors
    def heartbeat(self, service: str, at: int) -> None:
        self._transaction(lambda conn: _ALERTS.heartbeat(conn, service, at))

    @_store_errors
    def heartbeats(self) -> dict[str, int]:
        return self._read(_ALERTS.heartbeats)


def _roll(conn: Conn, written: Sequence[tuple[Event, Nanos | None]]) -> None:
    """Add new events to the rollups, in the events' transaction. Rollup rows are locked
    last and in key order, after every budget row, so two writers never wait on each other
    in a circle. `CounterLimitError` if a sum would pass `MAX_TOTAL` (the upsert leaves such
    a row out, so it changes fewer rows than given)."""
    if written:
        with conn.cursor() as cur:
            rows = rollup_rows(written)
            rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
            cur.executemany(_ROLLUP, rows)
            if cur.rowcount != len(rows):
                raise rollup_refused(conn, rows, "%s")


def _settle_rows(
    conn: Conn, slots: Sequence[Slot], held: Nanos, amount: Nanos, over: Nanos
) -> None:
    """Move `held` out of reserved and `amount` into spent (`over` of it overshoot) on each
    slot. Only an actual above its hold adds to usage, and only then is there anything to
    check: each row within `MAX_TOTAL` by its statement, a rolling window's sum as read."""
    if amount <= held:
        with conn.cursor() as cur:
            cur.executemany(_SETTLE, [(held, amount, over, s.budget, s.bucket) for s in slots])
        return
    for slot in slots:
        if slot.span_start < slot.bucket:
            check_room(slot, PostgresStore._used(conn, slot), amount - held)
        params = (held, amount, over, slot.budget, slot.bucket, amount - held)
        if (
            not conn.execute(_SETTLE_BOUNDED, params).rowcount
            and conn.execute(_BUCKET_EXISTS, (slot.budget, slot.bucket)).fetchone()
        ):
            raise usage_limit_error(slot, amount - held)


def _unstorable(writes: Sequence[EventWrite], exc: Exception) -> UnstorableError:
    """A batch of events the database refused for what they hold (not for being down)."""
    ids = [w.event.request_id for w in writes]
    what = f"event {ids[0]!r}" if len(ids) == 1 else f"one of {len(ids)} events"
    reason = f"PostgreSQL: {exc.__class__.__name__}: {_first_line(exc)}"
    return UnstorableError(what, ids[0] if len(ids) == 1 else ids[:3], reason)


def _slot_order(slot: Slot) -> tuple[str, int]:
    return (slot.budget, slot.bucket)


class _RefusedError(Exception):
    """A slot refused the hold; raised to roll the whole reservation back."""

    def __init__(self, index: int) -> None:
        self.index = index


def _with_cost(event: Event, cost: Nanos | None) -> tuple[object, ...]:
    row = event_row(event)
    return row if cost == event.cost else (*row[:5], cost, *row[6:])
