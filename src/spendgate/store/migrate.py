"""Schema migrations with Alembic: `spendgate db upgrade` and `spendgate db current`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from spendgate.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(sqlalchemy_url: str) -> Config:
    """An Alembic configuration for spendgate's migrations on `sqlalchemy_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    return config


def head() -> str:
    """The newest schema revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def current(sqlalchemy_url: str) -> str | None:
    """The schema revision of the database at `sqlalchemy_url` (`None` if it has none yet)."""
    engine = create_engine(sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot read the schema revision: {exc.__class__.__name__}: {exc}"
        ) from exc
    finally:
        engine.dispose()


def known(revision: str) -> bool:
    """Whether this code's migrations include `revision`."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return any(r.revision == revision for r in script.walk_revisions())


def ensure_current(sqlalchemy_url: str, *, migrate: bool) -> None:
    """Bring the schema to this code's head, or say what to do.

    A database at a revision this code does not know (written by a newer spendgate) is
    refused rather than touched.
    """
    revision = current(sqlalchemy_url)
    latest = head()
    if revision == latest:
        return
    if revision is not None and not known(revision):
        raise StoreError(
            f"the database is at schema revision {revision!r}, newer than this spendgate "
            f"knows (its newest is {latest!r}): upgrade spendgate"
        )
    if not migrate:
        raise StoreError(
            f"the database is at schema revision {revision or 'none'}, this spendgate needs "
            f"{latest!r}: run `spendgate db upgrade`"
        )
    upgrade(sqlalchemy_url)


def upgrade(sqlalchemy_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    try:
        command.upgrade(alembic_config(sqlalchemy_url), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade the schema: {exc.__class__.__name__}: {exc}") from exc
