"""Alembic migrations build exactly the schema the code declares, and old or new databases
are handled with a clear word: on SQLite, and on PostgreSQL (each test in a schema of its
own, dropped at the end)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from spendgate.cli import app
from spendgate.errors import StoreError
from spendgate.store import migrate, open_store
from spendgate.store.schema import VIEWS, metadata
from tests.conftest import POSTGRES_URL, postgres_or_skip, with_schema


def test_migrations_build_the_declared_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []
    assert migrate.current(url) == migrate.head()


def test_open_creates_the_schema_on_a_new_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    store.close()
    assert migrate.current(f"sqlite:///{tmp_path / 'new.db'}") == migrate.head()


def test_a_database_from_a_newer_spendgate_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer than this spendgate"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)


def test_migrate_false_refuses_an_old_schema_with_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="spendgate db upgrade"):
        open_store(f"sqlite:///{tmp_path / 'old.db'}?migrate=false")


def test_bad_urls_say_what_is_valid(tmp_path: Path) -> None:
    from spendgate.errors import ValidationError

    with pytest.raises(ValidationError, match=r"sqlite:///spendgate\.db or memory://"):
        open_store("spendgate.db")
    with pytest.raises(ValidationError, match="scheme is one of"):
        open_store("mysql://x/y")
    with pytest.raises(ValidationError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}?synchronous=sometimes")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")


def _old_alerts(url: str) -> None:
    """Alerts as spendgate wrote them before revision 0007: a budget crossing in nano-units
    (0.081 of usage past a 0.08 line), a forecast in currency units, an outage in seconds."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for aid, rule, value, threshold in (
            ("budget:daily:0.8:0", "budget", "81000000", "80000000"),
            ("budget:daily:1:0", "budget", "100000000000", "10000000000"),
            ("forecast:daily:0", "forecast", "19.43", "8"),
            ("store_unreachable:all:0", "store_unreachable", "120s", "0s"),
        ):
            conn.execute(
                text(
                    "INSERT INTO alerts (alert_id, rule, scope, severity, state, fired_at, "
                    "value, threshold, detail, rounds) VALUES (:a, :r, 'daily', 'warning', "
                    "'firing', 1, :v, :t, '{}', 0)"
                ),
                {"a": aid, "r": rule, "v": value, "t": threshold},
            )
    engine.dispose()


def _alert_figures(store_url: str) -> dict[str, tuple[str | None, str | None]]:
    store = open_store(store_url)
    try:
        return {a.alert_id: (a.value, a.threshold) for a in store.alerts()}
    finally:
        store.close()


MIGRATED = {
    "budget:daily:0.8:0": ("0.081", "0.08"),
    "budget:daily:1:0": ("100", "10"),
    "forecast:daily:0": ("19.43", "8"),
    "store_unreachable:all:0": ("120s", "0s"),
}


def test_budget_alerts_stored_in_nano_units_read_as_decimal_amounts_after_upgrade(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0006")
    _old_alerts(url)
    assert _alert_figures(url) == MIGRATED  # opening it upgrades it
    command.downgrade(migrate.alembic_config(url), "0006")
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT alert_id, value FROM alerts")).all())
    engine.dispose()
    assert rows["budget:daily:0.8:0"] == "81000000"  # and back, for an older spendgate
    assert rows["forecast:daily:0"] == "19.43"


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema name no one uses yet (not created); dropped at the end if something made it."""
    postgres_or_skip()
    schema = f"sgmig_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pg_sqlalchemy_url(schema: str) -> str:
    """The SQLAlchemy URL of the test server, working in `schema` (by its search_path)."""
    parts = urlsplit(POSTGRES_URL)
    query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


def pg_schema_at(schema: str, revision: str) -> str:
    """`schema` created and migrated to `revision`: its SQLAlchemy URL."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_sqlalchemy_url(schema)
    migrate.upgrade(url, revision)
    return url


def pg_tables(schema: str) -> set[str]:
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {name for (name,) in rows}


def pg_schema_exists(schema: str) -> bool:
    with psycopg.connect(POSTGRES_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return found is not None


def pg_revision(schema: str) -> str:
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute(f"SELECT version_num FROM {schema}.alembic_version").fetchone()
    assert row is not None
    return str(row[0])


def test_postgres_migrations_build_the_declared_schema(pg_schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
    url = pg_sqlalchemy_url(pg_schema)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []
    assert migrate.current(url) == migrate.head()
    # Everything landed in the named schema: the declared tables and Alembic's own.
    assert pg_tables(pg_schema) == {*metadata.tables, *VIEWS, "alembic_version"}


def test_postgres_open_creates_and_migrates_a_named_schema(pg_schema: str) -> None:
    assert not pg_schema_exists(pg_schema)
    open_store(with_schema(POSTGRES_URL, pg_schema)).close()
    assert pg_tables(pg_schema) == {*metadata.tables, *VIEWS, "alembic_version"}
    assert migrate.current(pg_sqlalchemy_url(pg_schema)) == migrate.head()
    open_store(with_schema(POSTGRES_URL, pg_schema)).close()  # a current schema: left as is
    assert pg_revision(pg_schema) == migrate.head()


def test_postgres_database_from_a_newer_spendgate_is_refused_untouched(pg_schema: str) -> None:
    url = with_schema(POSTGRES_URL, pg_schema)
    store = open_store(url)
    store.close()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.alembic_version SET version_num = '9999'")
    for options in ("", "&migrate=false"):
        with pytest.raises(StoreError, match="newer than this spendgate") as err:
            open_store(url + options)
        assert "upgrade spendgate" in str(err.value)
        assert "'9999'" in str(err.value)
    assert pg_revision(pg_schema) == "9999"
    assert pg_tables(pg_schema) == {*metadata.tables, *VIEWS, "alembic_version"}


def test_postgres_migrate_false_refuses_an_empty_schema_with_what_to_run(pg_schema: str) -> None:
    with pytest.raises(StoreError, match="spendgate db upgrade"):
        open_store(f"{with_schema(POSTGRES_URL, pg_schema)}&migrate=false")
    assert pg_tables(pg_schema) == set()


def test_postgres_migrate_false_creates_nothing(pg_schema: str) -> None:
    with pytest.raises(StoreError, match="spendgate db upgrade"):
        open_store(f"{with_schema(POSTGRES_URL, pg_schema)}&migrate=false")
    assert not pg_schema_exists(pg_schema)


def test_postgres_migrate_false_opens_a_current_schema(pg_schema: str) -> None:
    url = with_schema(POSTGRES_URL, pg_schema)
    open_store(url).close()
    store = open_store(f"{url}&migrate=false")
    store.close()
    assert pg_revision(pg_schema) == migrate.head()


def test_postgres_cli_db_upgrade_and_current(pg_schema: str) -> None:
    runner = CliRunner()
    url = with_schema(POSTGRES_URL, pg_schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
    before = runner.invoke(app, ["db", "current", "--db", url])
    assert before.exit_code == 0, before.output
    assert before.output.startswith("none (empty database)")
    up = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert up.exit_code == 0, up.output
    assert f"schema at {migrate.head()}" in up.output
    assert pg_tables(pg_schema) == {*metadata.tables, *VIEWS, "alembic_version"}
    after = runner.invoke(app, ["db", "current", "--db", url])
    assert after.exit_code == 0, after.output
    assert after.output.startswith(migrate.head())
    # The store now opens without migrating anything itself.
    open_store(f"{url}&migrate=false").close()


def test_postgres_budget_alerts_in_nano_units_read_as_decimal_amounts_after_upgrade(
    pg_schema: str,
) -> None:
    url = pg_schema_at(pg_schema, "0006")
    _old_alerts(url)
    assert _alert_figures(with_schema(POSTGRES_URL, pg_schema)) == MIGRATED


def _old_stream_events(url: str) -> None:
    """Stream settlements as spendgate wrote them before revision 0009 (no trading date), and
    a request that is no stream usage."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for rid, ts, cost, detail in (
            (
                "s1",
                1_765_144_800_000_000,
                1_500_000_000,
                '{"units":{"bytes":"1000","seconds":"3600.5","events":"10"}}',
            ),  # 2025-12-07T22:00:00Z
            (
                "s2",
                1_765_152_000_000_001,
                250_000_000,
                '{"units":{"bytes":"5000","seconds":"1800","events":"5"}}',
            ),  # 2025-12-08T00:00:00.000001Z
            ("r1", 1_765_144_800_000_000, 2_000_000, None),
        ):
            conn.execute(
                text(
                    "INSERT INTO events (request_id, fingerprint, ts, service, source, cost, "
                    "paid, success, cache_hits, batch_processing, emergency, detail) VALUES "
                    "(:r, 'f', :ts, 'mbo_stream', 'databento_mbo', :c, true, true, 0, false, "
                    "false, :d)"
                ),
                {"r": rid, "ts": ts, "c": cost, "d": detail},
            )
    engine.dispose()


STREAM_DAYS = [
    ("2025-12-08", 5, 5000, 250_000_000, 0.5, "2025-12-08T00:00:00.000001+00:00"),
    ("2025-12-07", 10, 1000, 1_500_000_000, 3600.5 / 3600, "2025-12-07T22:00:00+00:00"),
]


def _stream_days(store_url: str) -> list[tuple[object, ...]]:
    store = open_store(store_url)  # opening it upgrades it
    try:
        return [
            (d.date, d.events_processed, d.data_bytes, d.cost, d.connection_time,
             d.created_at.isoformat())
            for d in store.stream_days("2025-01-01", "databento_mbo", "mbo_stream")
        ]  # fmt: skip
    finally:
        store.close()


def test_stream_events_written_before_the_view_are_in_it_by_utc_date(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0007")
    _old_stream_events(url)
    assert _stream_days(url) == STREAM_DAYS
    command.downgrade(migrate.alembic_config(url), "0007")  # and back: the view is dropped
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'").fetchall() == []


def test_postgres_stream_events_written_before_the_view_are_in_it(pg_schema: str) -> None:
    url = pg_schema_at(pg_schema, "0007")
    _old_stream_events(url)
    assert _stream_days(with_schema(POSTGRES_URL, pg_schema)) == STREAM_DAYS
