"""Events keep where they were made: `events.location`, the first of an event's `location`
and `region` labels, and an index of only the events that have one (a report's geography
reads those, never the period's every event). Existing events get theirs from the labels in
their `detail` JSON.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LABELS = ("location", "region")  # written out: the step stays what it was


def upgrade() -> None:
    op.add_column("events", sa.Column("location", sa.Text))
    if op.get_bind().dialect.name == "sqlite":
        values = [f"json_extract(detail, '$.labels.{key}')" for key in _LABELS]
    else:
        values = [f"(detail::jsonb -> 'labels' ->> '{key}')" for key in _LABELS]
    op.execute(
        f"UPDATE events SET location = COALESCE({', '.join(values)}) WHERE detail IS NOT NULL"
    )
    located = sa.text("location IS NOT NULL")
    op.create_index(
        "ix_events_located", "events", ["ts"], sqlite_where=located, postgresql_where=located
    )


def downgrade() -> None:
    op.drop_index("ix_events_located", table_name="events")
    op.drop_column("events", "location")
