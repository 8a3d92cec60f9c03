"""The day's and the month's budget of total spend: one rule (`period_budget()`) for which
budget total spend is measured against, and how its limit is scaled to the period, that every
face shows (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from spendgate.budgets import Budget
from spendgate.money import Nanos, from_nanos, money_text
from spendgate.windows import duration_micros

BudgetPeriod = Literal["day", "month"]
_DAY = timedelta(days=1)
_WHOLE_DAYS = {"day": 1, "week": 7}  # windows of whole days, scaled by whole days


@dataclass(frozen=True, slots=True)
class PeriodBudget:
    """The budget a day's or a month's total spend is measured against, and the budget it
    comes from: `amount` is `budget`'s limit, or its limit scaled to the period (`basis`
    says how), in currency units; `amount_nanos` the same in nano-units."""

    period: BudgetPeriod
    amount_nanos: Nanos
    budget: Budget
    basis: str

    @property
    def amount(self) -> Decimal:
        """The period's budget, in currency units."""
        return from_nanos(self.amount_nanos)

    def describe(self) -> str:
        """One line for people: where the amount comes from, and the scope it counts."""
        return f"{self.basis} (scope {self.budget.scope})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the amount as decimal text, the budget and scope it is derived from."""
        return {
            "amount": money_text(self.amount_nanos),
            "budget": self.budget.name,
            "scope": str(self.budget.scope),
            "window": self.budget.window.kind,
            "basis": self.basis,
        }


def period_budget(
    budgets: Sequence[Budget],
    named: str | None,
    period: BudgetPeriod,
    month: tuple[datetime, datetime],
) -> PeriodBudget | None:
    """The one rule for "the daily budget" and "the monthly budget" of total spend, which
    every face (the forecast, the dashboard, the reports, the CLI) shows.

    The budgets considered are the one `[analytics] budget` names, else those over
    everything (scope `all`: total spend is measured against a budget that counts all of
    it), else those over everything but one service or source (`not:source:X`, the first
    seed's API budget in the defaults, which leaves the second seed's stream to its own:
    total spend is measured against it, which overstates its use while that source spends,
    the safe side). Of those, one whose window is the period wins (its limit as it is); else
    the first, scaled: a day or week limit by whole days (a month of 31 days is 31 daily
    limits, 31/7 weekly ones), a month's limit to a day by the length of `month` (the
    `[start, end)` of the month in question), a rolling window's by its length.
    """
    if named is not None:
        candidates = [b for b in budgets if b.name == named]
    else:
        candidates = [b for b in budgets if b.scope.kind == "all"] or [
            b for b in budgets if b.scope.kind == "not"
        ]
    if not candidates:
        return None
    b = _in_period(candidates, period)
    amount, basis = _scaled(b, period, month)
    return PeriodBudget(period, amount, b, basis)


def _in_period(budgets: Sequence[Budget], period: BudgetPeriod) -> Budget:
    """The first budget whose window is the period, else the first."""
    return next((b for b in budgets if b.window.kind == period), budgets[0])


def _scaled(b: Budget, period: BudgetPeriod, month: tuple[datetime, datetime]) -> tuple[Nanos, str]:
    """`b`'s limit over one `period` (nano-units), and how it was found."""
    kind = b.window.kind
    if kind == period:
        return b.limit, f"the {kind} limit of budget {b.name}"
    start, end = month
    days = round((end - start) / _DAY)
    span_days = days if period == "month" else 1
    if kind in _WHOLE_DAYS:
        per = _WHOLE_DAYS[kind]
        ratio = f"{span_days}/{per}" if per > 1 else str(span_days)
        return b.limit * span_days // per, f"the {kind} limit of budget {b.name} x {ratio} days"
    window = end - start if kind == "month" else b.window.length
    assert window is not None
    target = end - start if period == "month" else _DAY
    amount = b.limit * duration_micros(target) // duration_micros(window)
    length = f"a {kind} window" if kind == "month" else f"its {kind} window"
    return amount, f"the limit of budget {b.name} over {length}, scaled to one {period}"
