"""Dead letters: an outbox row can end undelivered (its channel was deleted), never claimed
again; the index of due rows leaves such rows out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DUE = "delivered_at IS NULL AND dead_at IS NULL"
_UNDELIVERED = "delivered_at IS NULL"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("dead_at", sa.BigInteger))
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text(_DUE),
        postgresql_where=sa.text(_DUE),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text(_UNDELIVERED),
        postgresql_where=sa.text(_UNDELIVERED),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("dead_at")
