"""Alembic migrations build exactly the schema the code declares, and old or new databases
are handled with a clear word."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from spendgate.errors import StoreError
from spendgate.store import migrate, open_store
from spendgate.store.schema import metadata


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
