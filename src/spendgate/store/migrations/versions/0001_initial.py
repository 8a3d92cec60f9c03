"""The first schema: budget buckets, reservations, events, quota usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_buckets",
        sa.Column("budget", sa.String(200), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("spent", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("overshoot", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("actual", sa.BigInteger),
        sa.Column("emergency", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("settled_at", sa.BigInteger),
        sa.Column("slots", sa.Text, nullable=False),
        sa.Column("labels", sa.Text),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_reservations_pending_expiry",
        "reservations",
        ["expires_at"],
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "events",
        # BIGINT on PostgreSQL; SQLite's INTEGER PRIMARY KEY is its 64-bit rowid already.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(200), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("cost", sa.BigInteger),
        sa.Column("paid", sa.Boolean, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("failure_reason", sa.Text),
        sa.Column("cache_hits", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("batch_processing", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("quality_score", sa.Float),
        sa.Column("processing_time", sa.Float),
        sa.Column("price_version", sa.String(250)),
        sa.Column("reservation_id", sa.String(200)),
        sa.Column("emergency", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_table(
        "quota_usage",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("unit", sa.String(100), primary_key=True),
        sa.Column("period", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("used", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_usage")
    op.drop_index("ix_events_ts", "events")
    op.drop_table("events")
    op.drop_index("ix_reservations_pending_expiry", "reservations")
    op.drop_table("reservations")
    op.drop_table("budget_buckets")
