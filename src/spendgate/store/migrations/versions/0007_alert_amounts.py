"""Budget alerts hold amounts as decimal text of currency units, as every money alert does:
a budget crossing stored before wrote its `value` and `threshold` in nano-units
(`"81000000"` for 0.081), and is rewritten (`"0.081"`).

Every budget alert written before this revision is in nano-units (whole digits), and none
written after it is read by this step, so the rewrite needs no guess about a row's form.
The arithmetic is written out here, not imported, so that the step stays what it was
whatever later code does.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NANOS = 9  # decimal places of a nano-unit

_alerts = sa.table(
    "alerts",
    sa.column("alert_id", sa.String),
    sa.column("rule", sa.String),
    sa.column("value", sa.String),
    sa.column("threshold", sa.String),
)


def _amount(nanos: str | None) -> str | None:
    """`"81000000"` as `"0.081"` (exact, no exponent, no trailing zeros)."""
    if nanos is None or not nanos.isascii() or not nanos.isdigit():
        return nanos
    value = Decimal(nanos).scaleb(-_NANOS).normalize()
    return f"{value:f}"


def _nanos(amount: str | None) -> str | None:
    """`"0.081"` as `"81000000"` (the downgrade)."""
    if amount is None:
        return None
    try:
        return str(int(Decimal(amount).scaleb(_NANOS)))
    except ArithmeticError:
        return amount


def _rewrite(convert: Callable[[str | None], str | None]) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_alerts.c.alert_id, _alerts.c.value, _alerts.c.threshold).where(
            _alerts.c.rule == "budget"
        )
    ).all()
    for alert_id, value, threshold in rows:
        bind.execute(
            _alerts.update()
            .where(_alerts.c.alert_id == alert_id)
            .values(value=convert(value), threshold=convert(threshold))
        )


def upgrade() -> None:
    _rewrite(_amount)


def downgrade() -> None:
    _rewrite(_nanos)
