"""The embedded SQLite store (`sqlite:///spendgate.db`, the default).

Each contract method is one `BEGIN IMMEDIATE` transaction: SQLite admits one writer at a time
across every thread and process on the file, so reads inside the transaction stay true until
it commits (a rolling window needs no lock of its own, and no row order). Holds are taken by
a conditional upsert (`… DO UPDATE … WHERE spent + reserved + amount <= cap RETURNING …`): a
hold that would break a cap touches no row. WAL journal, `synchronous=FULL` by default, so a
method that returned survives `kill -9` and power loss. The statements and the control flow
are `store/sql.py`'s, shared with PostgreSQL; this module is the file, its connections and
transactions, and SQLite's errors.

URL options: `?synchronous=normal` (faster commits; a power cut may lose the last ones, a
killed process does not), `?timeout=30` (seconds to wait for the write lock),
`?migrate=false` (refuse an old schema instead of upgrading it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from spendgate.errors import StoreClosedError, StoreError, StoreFailure, ValidationError
from spendgate.store import migrate
from spendgate.store.alerting import Alerting
from spendgate.store.base import TallyRow, url_flag
from spendgate.store.inflight import InFlight
from spendgate.store.rows import EVENT_COLUMNS, ControlPlane, tallies_query, tally_rows
from spendgate.store.sql import SQLStore
from spendgate.store.statements import Statements

T = TypeVar("T")

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "FULL"
DEFAULT_TIMEOUT = 30.0


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


@contextmanager
def _translated(path: str) -> Iterator[None]:
    """SQLite's own errors become `StoreError`s that say which file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _failure(f"{path}: {exc}", exc) from exc


class SQLiteStore(SQLStore[sqlite3.Connection]):
    """The contract on one SQLite file, shared safely by threads and processes."""

    sql = Statements("?", greatest="max")
    # Control-plane writes number their revisions inside `BEGIN IMMEDIATE`, which admits one
    # writer at a time: revisions are unique and commit in order with no further lock.
    control_sql = ControlPlane("?")
    # Alerts and the outbox: a claim needs no row locks, as `BEGIN IMMEDIATE` admits one writer.
    alerts_sql = Alerting("?")
    driver_errors = (sqlite3.Error,)
    duplicate_error = sqlite3.IntegrityError
    unstorable_errors = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeError)

    def __init__(self, url: str) -> None:
        """Open (or create) the file `url` names, with the options it carries (see the module)."""
        parts = urlsplit(url)
        path = (parts.netloc + parts.path).removeprefix("/") if parts.netloc else parts.path[1:]
        if not path:
            raise ValidationError("url", url, "sqlite:///FILE such as sqlite:///spendgate.db")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        synchronous = options.pop("synchronous", DEFAULT_SYNCHRONOUS).upper()
        if synchronous not in SYNCHRONOUS:
            raise ValidationError(
                "url synchronous", synchronous, f"one of {', '.join(SYNCHRONOUS)}"
            )
        try:
            timeout = float(options.pop("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ValidationError("url timeout", parts.query, "seconds, e.g. timeout=30") from None
        migrate_schema = url_flag(options.pop("migrate", "true"), "url migrate")
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
        self._start_ledger()
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

    def _transaction(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        landed: Callable[[sqlite3.Connection, T], T] | None = None,
    ) -> T:
        """Run `work` in one write transaction, taken at once (`BEGIN IMMEDIATE`), so reads
        inside are stable. (A COMMIT that fails raises: the outcome is never unknown, and
        `landed` is not needed.)

        Whatever fails (a statement, or the COMMIT itself), the transaction is rolled back so
        the connection is clean for the next one, and the first error is the one raised.
        """
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return work(self._conn())

    def _many(self, conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return conn.executemany(sql, rows).rowcount

    def _insert_new(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Multi-row INSERTs. Each statement is one trip out of Python, and the writer thread
        pays for each trip by waiting for the GIL behind every caller it has just woken; so
        the batch goes in as few statements as possible."""
        for chunk in _chunks(rows):
            conn.execute(_insert_events(len(chunk)), [v for row in chunk for v in row])

    def _tally(
        self, conn: sqlite3.Connection, pieces: Sequence[tuple[int, int, int, int]]
    ) -> list[TallyRow]:
        sql, params = tallies_query(pieces, "?")
        try:
            return tally_rows(conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
        # Sums past 64 bits (many buckets near their bound): the exact, wider query.
        sql, params = tallies_query(pieces, "?", wide=True)
        return tally_rows(conn.execute(sql, params).fetchall(), wide=True)

    def _store_error(self, exc: BaseException) -> Exception:
        """A locked or broken file as a `StoreError` naming it."""
        assert isinstance(exc, sqlite3.Error)
        return _failure(f"{self.path}: {exc}", exc)

    def _refused_by(self, exc: BaseException) -> str:
        return f"SQLite: {exc}"

    def _release(self) -> None:
        """Close every thread's connection; no call is in flight (`InFlight` sees to it)."""
        with self._all_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):  # closing is best effort
                    conn.close()
            self._all.clear()
        self._local = threading.local()


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


def _chunks(rows: Sequence[Sequence[Any]]) -> list[Sequence[Sequence[Any]]]:
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
