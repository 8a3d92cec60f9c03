"""PostgreSQL beyond the contract suite: bad URLs and unreachable servers say what is wrong and
write nothing; a dropped connection is reconnected; two hosts share one budget; and
`?clock=database` expires holds by the server's clock.

Every test skips without a server (fails under CI=true): see `conftest.postgres_or_skip`.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from spendgate import Gate, to_nanos
from spendgate.errors import StoreError, ValidationError
from spendgate.store import open_store
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.conftest import POSTGRES_URL, postgres_or_skip, small_config, with_schema

TTL_US = 300_000_000  # small_config's reservation_ttl, the default 5 minutes


@pytest.fixture(autouse=True)
def _server() -> None:
    postgres_or_skip()


@pytest.fixture
def fresh_schema() -> Iterator[str]:
    """A schema name no one uses (not created); dropped at the end if something made it."""
    schema = f"sgpg_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def schema_exists(schema: str) -> bool:
    with psycopg.connect(POSTGRES_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema.lower(),)
        ).fetchone()
    return found is not None


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def server_url(
    *,
    user: str | None = None,
    password: str | None = None,
    port: int | str | None = None,
    dbname: str | None = None,
) -> str:
    """The test server's URL with another user, password, port or database (no query)."""
    parts = urlsplit(POSTGRES_URL)
    auth = user or parts.username or "postgres"
    if password is not None:
        auth = f"{auth}:{password}"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{auth}@{host}:{port if port is not None else parts.port or 5432}"
    path = f"/{dbname}" if dbname is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def server_now_us() -> int:
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute("SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::bigint").fetchone()
    assert row is not None
    return int(row[0])


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("schema=1bad;drop", "url schema", "1bad;drop"),
        ("schema=bad-name", "url schema", "bad-name"),
        (f"schema={'s' * 64}", "url schema", "s" * 64),
        ("pool_size=0", "url pool_size", "0"),
        ("pool_size=-3", "url pool_size", "-3"),
        ("pool_size=ten", "url pool_size", "ten"),
        ("clock=sundial", "url clock", "sundial"),
        ("nosuchoption=1", "url", None),
    ],
)
def test_a_malformed_url_names_the_field_and_touches_nothing(
    fresh_schema: str, query: str, field: str, value: str | None
) -> None:
    url = with_option(POSTGRES_URL, query)
    if not query.startswith("schema="):
        url = with_schema(url, fresh_schema)
    started = time.monotonic()
    with pytest.raises(ValidationError) as err:
        open_store(url)
    assert time.monotonic() - started < 1  # refused before any connection
    assert err.value.field == field
    if value is not None:
        assert err.value.value == value
    assert "expected" in str(err.value)
    assert not schema_exists(fresh_schema)


def test_a_malformed_url_hides_its_password() -> None:
    url = f"{server_url(password='hunter2')}?nosuch=1"
    with pytest.raises(ValidationError) as err:
        open_store(url)
    assert err.value.field == "url"
    assert "hunter2" not in str(err.value)


def test_a_port_that_is_not_a_number_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as err:
        open_store(server_url(port="notaport"))
    assert err.value.field.startswith("url")
    assert "port" in str(err.value)


def test_a_misspelt_migrate_option_is_refused_and_migrates_nothing(fresh_schema: str) -> None:
    with pytest.raises(ValidationError) as err:
        open_store(f"{with_schema(POSTGRES_URL, fresh_schema)}&migrate=flase")
    assert err.value.field == "url migrate"
    assert not schema_exists(fresh_schema)


# -- servers that cannot be used ------------------------------------------------------------------


def test_an_unreachable_server_says_what_to_check_quickly(fresh_schema: str) -> None:
    url = with_schema(f"{server_url(password='hunter2', port=1)}?connect_timeout=1", fresh_schema)
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert time.monotonic() - started < 5
    message = str(err.value)
    host = urlsplit(POSTGRES_URL).hostname
    assert f"cannot connect to postgresql://{host}:1/" in message
    assert "check that the server runs" in message
    assert "hunter2" not in message
    assert not schema_exists(fresh_schema)


def test_a_silent_server_times_out_as_the_url_says(fresh_schema: str) -> None:
    # A socket that completes the TCP handshake (the kernel's backlog) but never answers.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    url = with_schema(f"{server_url(port=port)}?connect_timeout=2", fresh_schema)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            open_store(url).close()
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        thread.join(4.5)  # connect_timeout=2, with room for a slow machine
        elapsed = time.monotonic() - started
    finally:
        silent.close()  # resets the pending connection: the thread ends now either way
        thread.join(15)
    assert elapsed < 4.5, "open_store() ignored the URL's connect_timeout"
    assert len(outcome) == 1
    assert isinstance(outcome[0], StoreError)
    assert "cannot connect" in str(outcome[0])


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (server_url(user="nosuchuser"), '"nosuchuser"'),
        (server_url(dbname="nosuchdb"), 'database "nosuchdb" does not exist'),
    ],
    ids=["unknown-user", "unknown-database"],
)
def test_wrong_credentials_are_refused_and_write_nothing(
    fresh_schema: str, url: str, said: str
) -> None:
    with pytest.raises(StoreError) as err:
        open_store(with_schema(url, fresh_schema))
    message = str(err.value)
    assert message.startswith("cannot connect to postgresql://")
    assert said in message
    assert "user and password" in message
    assert not schema_exists(fresh_schema)


# -- dropped connections --------------------------------------------------------------------------


@pytest.fixture
def app_name() -> str:
    """An application_name only this test's store uses, so only its sessions are killed."""
    return f"sgtest_{secrets.token_hex(6)}"


def drop_connections(app_name: str) -> int:
    """Terminate every server session of `app_name` (as a restart or idle timeout would) and
    wait until they are gone; returns how many were terminated."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (app_name,),
        ).fetchall()
    # False: a session that was already ending on its own (the migration's, say).
    return sum(bool(ok) for (ok,) in rows)


def sessions(app_name: str) -> int:
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_dropped_connection_is_reconnected_for_a_write(postgres_url: str, app_name: str) -> None:
    url = f"{postgres_url}&pool_size=1&application_name={app_name}"
    gate = Gate.open(url, config=small_config(), clock=FrozenClock())
    try:
        gate.record("svc", "paid_api", request_id="before")
        assert drop_connections(app_name) >= 1
        assert gate.record("svc", "paid_api", request_id="after").status == "created"

        assert drop_connections(app_name) >= 1
        held = gate.reserve("svc", "paid_api", "0.30")
        assert held.approved
        assert held.reservation_id is not None

        assert drop_connections(app_name) >= 1
        assert gate.commit(held.reservation_id, "0.25").cost == to_nanos("0.25")

        # Each write landed exactly once.
        assert {e.request_id for e in gate.events()} == {"before", "after", held.reservation_id}
        (status,) = gate.status()
        assert status.spent_nanos == to_nanos("0.27")
        assert status.reserved_nanos == 0
    finally:
        gate.close()


def test_a_dropped_connection_is_reconnected_for_a_read(postgres_url: str, app_name: str) -> None:
    url = f"{postgres_url}&pool_size=1&application_name={app_name}"
    gate = Gate.open(url, config=small_config(), clock=FrozenClock())
    try:
        gate.record("svc", "paid_api", request_id="before")
        assert drop_connections(app_name) >= 1
        (status,) = gate.status()
        assert status.spent_nanos == to_nanos("0.01")
        assert drop_connections(app_name) >= 1
        assert gate.authorize("svc", "paid_api").approved
    finally:
        gate.close()


def test_a_dropped_pool_of_several_connections_is_reconnected(
    postgres_url: str, app_name: str
) -> None:
    url = f"{postgres_url}&pool_size=4&application_name={app_name}"
    gate = Gate.open(url, config=small_config("100.00"), clock=FrozenClock())

    def hold_and_settle(barrier: threading.Barrier, rid: str) -> None:
        barrier.wait()
        decision = gate.reserve("svc", "paid_api", reservation_id=rid)
        assert decision.reservation_id == rid
        gate.commit(rid)

    try:
        # Concurrent callers grow the pool past one connection (in a burst or a few).
        for burst in range(20):
            barrier = threading.Barrier(4)
            threads = [
                threading.Thread(target=hold_and_settle, args=(barrier, f"busy-{burst}-{n}"))
                for n in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if sessions(app_name) >= 2:
                break
        assert drop_connections(app_name) >= 2
        assert gate.record("svc", "paid_api", request_id="after").status == "created"
    finally:
        gate.close()


# -- many hosts, one budget -----------------------------------------------------------------------


def test_two_hosts_share_one_budget(postgres_url: str) -> None:
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    a = Gate.open(postgres_url, config=small_config("1.00"), clock=FrozenClock(start))
    b = Gate.open(postgres_url, config=small_config("1.00"), clock=FrozenClock(start))
    try:
        held = a.reserve("svc", "paid_api", "0.60")
        assert held.approved
        assert held.reservation_id is not None
        (seen,) = b.status()
        assert (seen.reserved_nanos, seen.remaining_nanos) == (to_nanos("0.60"), to_nanos("0.40"))

        refused = b.reserve("svc", "paid_api", "0.50")
        assert not refused.approved
        assert refused.remaining == to_nanos("0.40")
        rest = b.reserve("svc", "paid_api", "0.40")
        assert rest.approved
        assert rest.reservation_id is not None
        assert not a.reserve("svc", "paid_api", "0.01").approved
        assert not a.authorize("svc", "paid_api").approved

        # One host settles the other's hold: the ledger is one.
        assert b.commit(held.reservation_id, "0.55").cost == to_nanos("0.55")
        a.release(rest.reservation_id)
        for gate in (a, b):
            (status,) = gate.status()
            assert (status.spent_nanos, status.reserved_nanos) == (to_nanos("0.55"), 0)
            assert [e.request_id for e in gate.events()] == [held.reservation_id]
    finally:
        a.close()
        b.close()


def test_two_hosts_respect_a_hard_limit_together(postgres_url: str) -> None:
    """16 threads on two hosts ask for 320 holds of $0.01 under $1.00: exactly 100 win."""
    hosts = [
        Gate.open(postgres_url, config=small_config("1.00"), clock=FrozenClock()) for _ in "ab"
    ]
    barrier = threading.Barrier(16)
    won: list[str] = []
    lock = threading.Lock()

    def ask(gate: Gate) -> None:
        barrier.wait()
        for _ in range(20):
            decision = gate.reserve("svc", "paid_api")
            if decision.reservation_id is not None:
                with lock:
                    won.append(decision.reservation_id)

    try:
        threads = [threading.Thread(target=ask, args=(hosts[n % 2],)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == len(set(won)) == 100
        for gate in hosts:
            (status,) = gate.status()
            assert (status.spent_nanos, status.reserved_nanos) == (0, to_nanos("1.00"))
        for n, rid in enumerate(won):
            hosts[n % 2].commit(rid)
        for gate in hosts:
            (status,) = gate.status()
            assert (status.spent_nanos, status.reserved_nanos) == (to_nanos("1.00"), 0)
            assert status.balance.overshoot == 0
    finally:
        for gate in hosts:
            gate.close()


# -- the database's clock -------------------------------------------------------------------------


def test_database_clock_times_holds_by_the_server(postgres_url: str) -> None:
    clock = FrozenClock(datetime(2040, 1, 1, 12, 0, tzinfo=UTC))  # years from the server's now
    gate = Gate.open(f"{postgres_url}&clock=database", config=small_config(), clock=clock)
    try:
        before = server_now_us()
        held = gate.reserve("svc", "paid_api", "0.30")
        after = server_now_us()
        assert held.reservation_id is not None
        info = gate.store.reservation(held.reservation_id)
        assert info is not None
        assert before - 1_000_000 <= info.created_at <= after + 1_000_000
        assert info.expires_at - info.created_at == TTL_US

        # The callers' clock running a day ahead expires nothing: the server's has not moved.
        clock.advance(timedelta(days=1))
        assert gate.expire() == 0
        info = gate.store.reservation(held.reservation_id)
        assert info is not None
        assert info.state == "pending"

        # Once the server's clock passes the hold's end, it expires, whatever the callers say.
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            schema = postgres_url.rpartition("schema=")[2]
            conn.execute(
                f"UPDATE {schema}.reservations SET expires_at = %s WHERE id = %s",
                (server_now_us() - 1_000_000, held.reservation_id),
            )
        assert gate.expire() == 1
        info = gate.store.reservation(held.reservation_id)
        assert info is not None
        assert info.state == "expired"
    finally:
        gate.close()


def test_callers_clock_times_holds_by_default(postgres_url: str) -> None:
    clock = FrozenClock(datetime(2040, 1, 1, 12, 0, tzinfo=UTC))
    gate = Gate.open(postgres_url, config=small_config(), clock=clock)
    try:
        held = gate.reserve("svc", "paid_api", "0.30")
        assert held.reservation_id is not None
        info = gate.store.reservation(held.reservation_id)
        assert info is not None
        assert info.created_at == to_micros(clock())
        assert info.expires_at == to_micros(clock()) + TTL_US
        clock.advance(timedelta(microseconds=TTL_US))
        assert gate.expire() == 1
    finally:
        gate.close()
