"""Health tells the truth (issue 16): `/healthz`, `Gate.check_health()` and `/metrics` say
when writes fail, on a real full disk (a small tmpfs of the test's own, SQLite) and on a
real read-only PostgreSQL database, and when they work again; a health check never grows
the database."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.errors import StoreError
from spendgate.health import WRITE_PROBE_EVERY
from spendgate.server import create_app
from spendgate.store import open_store
from spendgate.store.base import Store
from spendgate.testing import FrozenClock
from tests.conftest import POSTGRES_URL, postgres_or_skip, small_config
from tests.serving import Keys, bearer, make_keys

DISK_SIZE = "4m"
"""The small disk's size: room for the schema and some events, filled in moments."""
BATCH = [{"service": "scraper", "source": "free_api", "labels": {"note": "x" * 200}}] * 100


# -- a real full disk -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK_SIZE` mounted for this test (mounting needs root), unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs a tmpfs of the test's own: mount(8) as root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left; the file (remove it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012 - until full
            while True:
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC
    return filler


def sizes(folder: Path) -> dict[str, int]:
    """Every file's size in `folder` (the database, its WAL and shared memory)."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


@pytest.fixture
def full_disk_app(
    small_disk: Path, clock: FrozenClock
) -> Iterator[tuple[TestClient, Gate, Keys, Path]]:
    """An app on a SQLite store on the small disk (no background threads: nothing writes
    but the test), with keys."""
    gate = Gate.open(f"sqlite:///{small_disk / 'spendgate.db'}", config=small_config(), clock=clock)
    try:
        keys = make_keys(gate)
        yield TestClient(create_app(gate)), gate, keys, small_disk
    finally:
        gate.close()


def health(client: TestClient, status: int) -> dict[str, Any]:
    r = client.get("/healthz")
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def writes_failing_gauge(client: TestClient, keys: Keys) -> str:
    r = client.get("/metrics", headers=bearer(keys.read))
    assert r.status_code == 200, r.text
    return next(line for line in r.text.splitlines() if line.startswith("spendgate_store_"))


def write_until_full(client: TestClient, keys: Keys) -> dict[str, Any]:
    """Post batches of events until one is refused: the 503 problem it got."""
    for _ in range(200):
        r = client.post("/api/events/batch", json={"events": BATCH}, headers=bearer(keys.write))
        if not r.is_success:
            assert r.status_code == 503, r.text
            problem: dict[str, Any] = r.json()
            return problem
    raise AssertionError("200 batches of 100 events fit on a full disk")


def test_healthz_says_writes_fail_on_a_full_disk_and_ok_once_a_write_succeeds(
    full_disk_app: tuple[TestClient, Gate, Keys, Path], clock: FrozenClock
) -> None:
    client, gate, keys, disk = full_disk_app
    ok = health(client, 200)
    assert ok["status"] == "ok"
    assert (ok["writes"], ok["last_write_error_at"], ok["last_write_error"]) == ("ok", None, None)
    assert writes_failing_gauge(client, keys) == "spendgate_store_writes_failing 0.0"

    filler = fill(disk)
    problem = write_until_full(client, keys)
    assert "disk is full" in problem["detail"]
    failed_at = clock().isoformat()
    for _ in range(3):  # reads still work: the ping alone would say "ok"
        body = health(client, 503)
        assert body == {
            "status": "degraded",
            "store": "ok",
            "writes": "failing",
            "last_write_error_at": failed_at,
            "last_write_error": "disk full",
            "as_of": failed_at,
        }
    assert str(disk) not in client.get("/healthz").text
    assert gate.check_health().writes.error == "disk full"
    assert writes_failing_gauge(client, keys) == "spendgate_store_writes_failing 1.0"

    filler.unlink()
    clock.advance(1)
    assert health(client, 503)["writes"] == "failing"  # no write has succeeded yet
    one = [{"service": "scraper", "source": "free_api"}]
    r = client.post("/api/events/batch", json={"events": one}, headers=bearer(keys.write))
    assert r.status_code == 200, r.text
    back = health(client, 200)
    assert (back["status"], back["writes"]) == ("ok", "ok")
    assert (back["last_write_error_at"], back["last_write_error"]) == (failed_at, "disk full")
    assert writes_failing_gauge(client, keys) == "spendgate_store_writes_failing 0.0"


def test_with_no_writes_coming_a_rate_limited_probe_tells_when_writes_work_again(
    full_disk_app: tuple[TestClient, Gate, Keys, Path], clock: FrozenClock
) -> None:
    client, _, keys, disk = full_disk_app
    filler = fill(disk)
    write_until_full(client, keys)
    # A probe every second for 100 s: the health check tries a write at most every 10 s,
    # and a failed try is the latest failed write.
    failures = set()
    for _ in range(100):
        clock.advance(1)
        body = health(client, 503)
        assert (body["writes"], body["last_write_error"]) == ("failing", "disk full")
        failures.add(body["last_write_error_at"])
    seconds = WRITE_PROBE_EVERY.total_seconds()
    assert 100 / seconds <= len(failures) <= 100 / seconds + 1, sorted(failures)

    filler.unlink()
    assert health(client, 503)["writes"] == "failing"  # the next try is not due yet
    clock.advance(WRITE_PROBE_EVERY)
    assert health(client, 200)["writes"] == "ok"  # the health check's own write worked


def test_a_hundred_health_probes_write_nothing(
    full_disk_app: tuple[TestClient, Gate, Keys, Path], clock: FrozenClock
) -> None:
    client, _, keys, disk = full_disk_app
    r = client.post("/api/events/batch", json={"events": BATCH}, headers=bearer(keys.write))
    assert r.status_code == 200, r.text
    before = sizes(disk)
    for _ in range(100):
        clock.advance(1)
        health(client, 200)
    assert sizes(disk) == before


# -- the write probe grows nothing, on every backend ----------------------------------------


def test_the_write_probe_replaces_one_row(store: Store, store_url: str) -> None:
    for at in range(1, 101):
        store.probe_write(at)
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT id, at FROM write_probe").fetchall() == [(1, 100)]
    elif store_url.startswith("postgresql"):
        with psycopg.connect(POSTGRES_URL) as conn:
            schema = store_url.rpartition("schema=")[2]
            rows = conn.execute(f"SELECT id, at FROM {schema}.write_probe").fetchall()
            assert rows == [(1, 100)]
            pages = conn.execute(
                "SELECT pg_relation_size(%s)", (f"{schema}.write_probe",)
            ).fetchone()
            assert pages is not None
            assert pages[0] <= 8192  # one page, however many probes


# -- a read-only PostgreSQL database ---------------------------------------------------------


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of the test's own on the test server (a database-wide setting is changed
    below), dropped at the end."""
    postgres_or_skip()
    name = f"sghealth_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_read_only_postgresql_database_is_reported_until_it_takes_writes(
    pg_database: str, clock: FrozenClock
) -> None:
    url = POSTGRES_URL.rpartition("/")[0] + f"/{pg_database}"
    open_store(url).close()  # the schema, while the database takes writes
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {pg_database} SET default_transaction_read_only = on")
        gate = Gate.open(url, config=small_config(), clock=clock)
        try:
            assert gate.check_health().ok
            with pytest.raises(StoreError) as refused:
                gate.record("scraper", "free_api")
            assert refused.value.reason == "read-only"
            report = gate.check_health()
            assert (report.store, report.status) == ("ok", "degraded")
            assert (report.writes.state, report.writes.error) == ("failing", "read-only")
            assert report.writes.error_at == clock()
            clock.advance(WRITE_PROBE_EVERY)
            probed = gate.check_health()  # its own write is refused too
            assert (probed.writes.failing, probed.writes.error_at) == (True, clock())

            # The database takes writes again; the sessions that began read-only end (as
            # in a failover), and the pool connects again.
            admin.execute(f"ALTER DATABASE {pg_database} RESET default_transaction_read_only")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (pg_database,),
            )
            assert gate.check_health().writes.failing  # not probed again yet
            clock.advance(WRITE_PROBE_EVERY)
            again = gate.check_health()
            assert again.ok
            assert again.writes.state == "ok"
            assert gate.record("scraper", "free_api").created
        finally:
            gate.close()
