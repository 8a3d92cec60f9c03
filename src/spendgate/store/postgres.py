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
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from spendgate.errors import (
    OutcomeUnknownError,
    StoreClosedError,
    StoreError,
    StoreFailure,
    StoreUnreachableError,
)
from spendgate.store import migrate
from spendgate.store.alerting import Alerting
from spendgate.store.base import TallyRow
from spendgate.store.inflight import InFlight
from spendgate.store.postgres_url import Options, conninfo_url, first_line
from spendgate.store.rows import EVENT_COLUMNS, ControlPlane, tallies_query, tally_rows
from spendgate.store.sql import RetryError, SQLStore
from spendgate.store.statements import Statements

T = TypeVar("T")

Conn = psycopg.Connection[tuple[Any, ...]]

_PROBE_WAIT = 0.25
"""Seconds a call waits for a connection after calls found the server unreachable: enough
for a server that is back to be handed over by the pool's next attempt, and no more."""
_ATTEMPTS = 8  # tries of a transaction that lost a deadlock or serialization race

_COPY_EVENTS = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
# Serializes the holds of one rolling budget (its cap is a sum over several rows).
_LOCK_BUDGET = "SELECT pg_advisory_xact_lock(hashtextextended('spendgate:' || %s, 0))"

# Serializes control-plane writes, taken first in each. A writer numbers its change the newest
# revision plus one; only once the writer before it has committed is that number unique and
# committed after every smaller one, so a poller that saw revision N never later finds a new
# change below N. One key for every schema on the server: these writes are rare, and a key
# that does not depend on how a store names its schema cannot be missed.
_LOCK_CONTROL = "SELECT pg_advisory_xact_lock(hashtextextended('spendgate-control', 0))"
_DB_NOW = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"


class _CommitLostError(Exception):
    """The connection was lost during COMMIT: the transaction may or may not be stored.
    `result` is what the call would have answered had the COMMIT been acknowledged."""

    def __init__(self, result: object, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.result: Any = result
        self.cause = cause

    def unknown(self, where: str, also: BaseException | None = None) -> OutcomeUnknownError:
        """The error to raise when the outcome cannot be found out now."""
        after = f"; looking it up failed too: {first_line(also)}" if also is not None else ""
        return OutcomeUnknownError(
            f"{where}: the connection was lost while committing, the outcome is unknown "
            f"(the same call again with the same id finds out): {first_line(self.cause)}"
            f"{after}"
        )


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


class PostgresStore(SQLStore[Conn]):
    """The contract on one PostgreSQL database, shared by every process on every host."""

    sql = Statements("%s", greatest="GREATEST", for_update="FOR UPDATE")
    control_sql = ControlPlane("%s")
    # A claim locks the rows it takes and skips those another claim holds, in one statement.
    alerts_sql = Alerting("%s", "FOR UPDATE SKIP LOCKED")
    lock_order = True
    driver_errors = (psycopg.Error, PoolClosed, PoolTimeout)
    duplicate_error = pg_errors.UniqueViolation
    unstorable_errors = (psycopg.DataError, psycopg.IntegrityError)

    def __init__(self, url: str) -> None:
        """Open the database `url` names, with the options it carries (see the module)."""
        options = Options.read(url)
        self.url = url
        self.where = options.where
        self.schema = options.schema
        self.database_clock = options.database_clock
        self._conninfo = options.conninfo
        self._pool_conninfo = options.pool_conninfo
        self._pool_size = options.pool_size
        self._timeout = options.timeout
        self._pools: dict[int, ConnectionPool[Conn]] = {}
        self._pools_lock = threading.Lock()
        self._calls = InFlight(self.where, self._release)
        self._start_ledger()
        self._failing = False  # the last call found the server unreachable (see `_run`)
        self._prepare_schema(options.migrate)

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
                f"cannot connect to {self.where}: {first_line(exc)} "
                "(check that the server runs, and the host, port, user and password in the URL)"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot prepare {self.where}: {first_line(exc)}") from exc

    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL of this database (and schema), for Alembic."""
        return conninfo_url(self._conninfo)

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
                        raise RetryError() from None
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
                                f"was lost): {first_line(exc)}"
                            ) from exc
                        continue  # the next try takes another connection
                if self._failing:
                    self._failing = False
                return result
            except RetryError:
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

    def _release(self) -> None:
        with self._pools_lock:
            pool = self._pools.pop(os.getpid(), None)
        if pool is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                pool.close()

    def _control(self, work: Callable[[Conn], T]) -> T:
        """Run a control-plane write in one transaction, under the control-plane lock."""

        def locked(conn: Conn) -> T:
            conn.execute(_LOCK_CONTROL)
            return work(conn)

        return self._transaction(locked)

    def _lock_ledger(self, conn: Conn) -> None:
        # Writers that touched these tables are waited for; later ones wait for this one.
        conn.execute("LOCK TABLE budget_buckets, reservations IN SHARE ROW EXCLUSIVE MODE")

    def _lock_budget(self, conn: Conn, budget: str) -> None:
        conn.execute(_LOCK_BUDGET, (budget,))

    def _many(self, conn: Conn, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
            return cur.rowcount

    def _insert_new(self, conn: Conn, rows: Sequence[Sequence[Any]]) -> None:
        with conn.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
            for row in rows:
                copy.write_row(row)

    def _tally(self, conn: Conn, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        sql, params = tallies_query(pieces, "%s", "::bigint")
        return tally_rows(conn.execute(sql, params).fetchall())

    def _store_error(self, exc: BaseException) -> Exception:
        """A driver or pool error as a `StoreError` naming the server and the kind of failure."""
        if isinstance(exc, PoolClosed):
            return StoreClosedError(self.where)
        if isinstance(exc, PoolTimeout):
            return StoreError(
                f"{self.where}: the store is unreachable (no connection within "
                f"{self._timeout:g} s): {exc}",
                reason="store unreachable",
            )
        assert isinstance(exc, psycopg.Error)
        reason = _failure(exc)
        if reason == "store unreachable":
            message = f"{self.where}: the store is unreachable: {first_line(exc)}"
        else:
            message = f"{self.where}: {exc.__class__.__name__}: {first_line(exc)}"
        return StoreError(message, reason=reason)

    def _refused_by(self, exc: BaseException) -> str:
        return f"PostgreSQL: {exc.__class__.__name__}: {first_line(exc)}"
