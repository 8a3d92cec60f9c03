"""Rollups: events summed per minute, hour and UTC day, service and source.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The events already stored are summed into the new table in the same migration, so a
database upgraded with history shows that history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STEPS = (60_000_000, 3_600_000_000, 86_400_000_000)  # minute, hour, day in µs


def _flag(column: str) -> str:
    return f"SUM(CASE WHEN {column} THEN 1 ELSE 0 END)"


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("step", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("service", sa.String(200), primary_key=True),
        sa.Column("source", sa.String(200), primary_key=True),
        *(
            sa.Column(name, sa.BigInteger, nullable=False)
            for name in (
                "requests",
                "cost",
                "unpriced",
                "paid",
                "successes",
                "free_successes",
                "cache_hits",
                "cached",
                "batched",
                "batched_cost",
            )
        ),
        sa.Column("quality_sum", sa.Float, nullable=False),
        sa.Column("quality_count", sa.BigInteger, nullable=False),
        sa.Column("time_sum", sa.Float, nullable=False),
        sa.Column("time_count", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    for step in _STEPS:
        op.execute(
            "INSERT INTO rollups (step, bucket, service, source, requests, cost, unpriced, paid, "
            "successes, free_successes, cache_hits, cached, batched, batched_cost, quality_sum, "
            "quality_count, time_sum, time_count) "
            f"SELECT {step}, ts - ts % {step}, service, source, COUNT(*), "
            "COALESCE(SUM(cost), 0), SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), "
            f"{_flag('paid')}, {_flag('success')}, {_flag('success AND NOT paid')}, "
            "SUM(cache_hits), SUM(CASE WHEN cache_hits > 0 THEN 1 ELSE 0 END), "
            f"{_flag('batch_processing')}, "
            "COALESCE(SUM(CASE WHEN batch_processing THEN cost ELSE 0 END), 0), "
            "COALESCE(SUM(quality_score), 0), "
            "COUNT(quality_score), COALESCE(SUM(processing_time), 0), COUNT(processing_time) "
            f"FROM events GROUP BY ts - ts % {step}, service, source"
        )


def downgrade() -> None:
    op.drop_table("rollups")
