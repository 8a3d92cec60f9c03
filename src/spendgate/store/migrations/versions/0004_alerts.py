"""Alerts, their notification outbox, and service heartbeats.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(300), primary_key=True),
        sa.Column("rule", sa.String(50), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("value", sa.String(64)),
        sa.Column("threshold", sa.String(64)),
        sa.Column("window_start", sa.BigInteger),
        sa.Column("detail", sa.Text),
        sa.Column("resolved_at", sa.BigInteger),
        sa.Column("acknowledged_at", sa.BigInteger),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("silenced_until", sa.BigInteger),
        sa.Column("rounds", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("notified_at", sa.BigInteger),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_alerts_rule_scope", "alerts", ["rule", "scope"])
    op.create_index("ix_alerts_fired_at", "alerts", ["fired_at"])
    op.create_table(
        "outbox",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("alert_id", sa.String(300), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claimed_until", sa.BigInteger),
        sa.Column("delivered_at", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text("delivered_at IS NULL"),
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_table(
        "heartbeats",
        sa.Column("service", sa.String(200), primary_key=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_alerts_fired_at", table_name="alerts")
    op.drop_index("ix_alerts_rule_scope", table_name="alerts")
    op.drop_table("alerts")
