"""Live metrics: what is being spent right now, and how long the budget lasts at this pace.

Pure: today's tally, the last minutes' tally and the budget's standing in, figures out, each
as of the time it was read and naming what it counts: `"scope": "all"` (every event of the
day) or the budget (`"budget"` and its `"scope"`), so that no face shows figures of two
scopes as one. Amounts read in Python are `Decimal`s of the deployment currency
(`LiveMetrics.daily_spend`, `BudgetView.remaining`); the nano-unit figures they come from
have `_nanos` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from spendgate.analytics.forecast import burn_rate
from spendgate.analytics.summaries import savings_vs_traditional
from spendgate.budgets import used_percent
from spendgate.money import DEFAULT_CURRENCY, Nanos, from_nanos, money_number, money_text
from spendgate.rollups import Tally

RATE_WINDOW = timedelta(minutes=15)
"""How far back requests per minute and the burn rate look."""
HEALTHY_REMAINING = 20.0  # % of the budget left above which it is "healthy" (the seed's 20)
EXCELLENT_FREE_RATE = 0.90  # the seed's bar for "excellent" free-source performance
MIN_INTRADAY_HOURS = timedelta(hours=6)
"""Data a day needs before its pace is extrapolated to the rest of it: before that, a burst
of one request would be projected over the whole day."""


@dataclass(frozen=True, slots=True)
class BudgetView:
    """The budget live metrics measure against, as it stands: `used` is its spent and
    reserved in its current window; `recent_cost` its own spend over the recent window
    (`None` when the rollups cannot tell, as for a label's scope)."""

    name: str
    scope: str
    limit_nanos: Nanos
    used_nanos: Nanos
    window_end: datetime
    recent_cost: Nanos | None = None

    @property
    def limit(self) -> Decimal:
        """The budget's limit, in currency units."""
        return from_nanos(self.limit_nanos)

    @property
    def used(self) -> Decimal:
        """Spent plus reserved in its window, in currency units."""
        return from_nanos(self.used_nanos)

    @property
    def remaining(self) -> Decimal:
        """The limit less spent and reserved, in currency units."""
        return from_nanos(self.remaining_nanos)

    @property
    def remaining_nanos(self) -> Nanos:
        """`remaining` in nano-units."""
        return self.limit_nanos - self.used_nanos

    @property
    def remaining_percent(self) -> float:
        """What is left, as a percentage of the limit: 100 less `budgets.used_percent()`
        (two decimals, as every face shows a budget's percentage)."""
        return float(100 - used_percent(self.used_nanos, self.limit_nanos))


@dataclass(frozen=True, slots=True)
class LiveMetrics:
    """The seed's live metrics, each as of `as_of`.

    `today` counts the current day since its start; `recent` the last `recent_window`.
    """

    as_of: datetime
    day_start: datetime
    day_end: datetime
    today: Tally
    recent: Tally
    recent_window: timedelta
    budget: BudgetView | None
    traditional_cost: Nanos | None  # None: not configured, no savings figure
    currency: str = DEFAULT_CURRENCY
    """The currency of every amount."""
    data_since: datetime | None = None
    """When the store's first event happened (`None`: no event yet)."""

    @property
    def hours_of_data(self) -> timedelta:
        """How long today has had data: since the day's start, or the first event if later."""
        if self.data_since is None or self.data_since > self.as_of:
            return timedelta(0)
        return self.as_of - max(self.day_start, self.data_since)

    @property
    def projection_method(self) -> str:
        """How `projected_daily_total` is made: "intraday_burn_rate" (today so far plus the
        recent pace over the rest of the day) once today has `MIN_INTRADAY_HOURS` of data,
        before that "spent_so_far (under 6 hours of today's data)": no extrapolation."""
        if self.hours_of_data >= MIN_INTRADAY_HOURS:
            return "intraday_burn_rate"
        return "spent_so_far (under 6 hours of today's data)"

    @property
    def daily_spend(self) -> Decimal:
        """Today's spend so far, in currency units."""
        return from_nanos(self.today.cost)

    @property
    def cost_per_request(self) -> Decimal:
        """Today's average cost of a priced request, in currency units."""
        return from_nanos(self.today.cost_per_request)

    @property
    def burn_per_second(self) -> float:
        """Spend per second lately (nano-units), from the recent window."""
        seconds = min(self.recent_window, self.as_of - self.day_start).total_seconds()
        return self.recent.cost / seconds if seconds > 0 else 0.0

    @property
    def requests_per_minute(self) -> float:
        """Requests per minute over the recent window."""
        minutes = min(self.recent_window, self.as_of - self.day_start).total_seconds() / 60
        return self.recent.requests / minutes if minutes > 0 else 0.0

    @property
    def projected_daily_total(self) -> Decimal:
        """Today's spend so far plus the recent pace over what is left of the day, in
        currency units."""
        return from_nanos(self.projected_daily_total_nanos)

    @property
    def projected_daily_total_nanos(self) -> Nanos:
        """`projected_daily_total` in nano-units."""
        if self.hours_of_data < MIN_INTRADAY_HOURS:
            return self.today.cost
        elapsed = (self.as_of - self.day_start).total_seconds()
        period = (self.day_end - self.day_start).total_seconds()
        recent = min(self.recent_window.total_seconds(), elapsed)
        return round(
            burn_rate(
                float(self.today.cost),
                elapsed,
                period,
                recent_spent=float(self.recent.cost),
                recent_elapsed=recent,
            )
        )

    @property
    def runway(self) -> timedelta | None:
        """Time until the budget is spent at its own recent pace (spend in its scope): zero
        when it is already spent, `None` when nothing in its scope is being spent (or there
        is no budget, or its scope's pace is unknown)."""
        if self.budget is None:
            return None
        if self.budget.remaining_nanos <= 0:
            return timedelta(0)
        if self.budget.recent_cost is None:
            return None
        seconds = min(self.recent_window, self.as_of - self.day_start).total_seconds()
        rate = self.budget.recent_cost / seconds if seconds > 0 else 0.0
        return timedelta(seconds=self.budget.remaining_nanos / rate) if rate > 0 else None

    def status(self) -> dict[str, str | None]:
        """The seed's status block: budget health, free-source performance, cost efficiency
        (savings vs traditional: `None` when no traditional cost is configured, `"no data"`
        before today's first priced request)."""
        if self.budget is None:
            health = "no budget"
        elif self.budget.remaining_nanos <= 0:
            health = "exhausted"
        else:
            health = "healthy" if self.budget.remaining_percent > HEALTHY_REMAINING else "warning"
        if not self.today.requests:
            free = "no data"
        else:
            rate = self.today.free_source_success_rate
            free = "excellent" if rate > EXCELLENT_FREE_RATE else "good" if rate >= 0.5 else "poor"
        saved = savings_vs_traditional(self.today, self.traditional_cost)
        efficiency = None
        if self.traditional_cost is not None:
            efficiency = "no data" if saved is None else f"{saved:.1f}% savings vs traditional"
        return {
            "budget_health": health,
            "free_source_performance": free,
            "cost_efficiency": efficiency,
        }

    def seed_metrics(self) -> dict[str, Any]:
        """The seed's `get_live_cost_metrics()`: its seven names as plain JSON numbers (money
        in currency units, the runway in seconds, `None` where there is no figure), with
        `as_of` beside them, so that the seed's own `budget_remaining > 20` compares.

        Money is a number here only because the seed compares it: the exact amounts are
        the decimal text of the same figures in `to_dict()["live_figures"]`, and a number
        here is that text read as a float, never computed apart from it.
        """
        budget = self.budget
        runway = self.runway
        return {
            "as_of": self.as_of.isoformat(),
            "current_daily_spend": money_number(self.today.cost),
            "budget_remaining": None if budget is None else money_number(budget.remaining_nanos),
            "free_source_success_rate": self.today.free_source_success_rate,
            "requests_per_minute": self.requests_per_minute,
            "cost_per_request": money_number(self.today.cost_per_request),
            "projected_daily_total": money_number(self.projected_daily_total_nanos),
            "time_until_budget_exhausted": None if runway is None else runway.total_seconds(),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `live_metrics` in the seed's shape (`seed_metrics()`: numbers, with
        `as_of` beside them); `live_figures`, spendgate's figures of the same metrics and a
        few more, each as `{"value", "as_of", "scope", "budget", "since"}` with money as
        exact decimal text: a figure of every event today has scope `all` and the day's
        start as `since`; one of the measured budget its name and scope. Then the budget and
        the status block."""
        at = self.as_of.isoformat()
        budget = self.budget

        def everything(value: object) -> dict[str, Any]:
            """A figure of every event today (since `day_start`)."""
            return {
                "value": value,
                "as_of": at,
                "scope": "all",
                "budget": None,
                "since": self.day_start.isoformat(),
            }

        def of_budget(value: object) -> dict[str, Any]:
            """A figure of the measured budget, in its scope and current window."""
            return {
                "value": value,
                "as_of": at,
                "scope": None if budget is None else budget.scope,
                "budget": None if budget is None else budget.name,
                "since": None,  # the budget's own window: see `budget.resets_at`
            }

        runway = self.runway
        exhausted_at = None if runway is None else self.as_of + runway
        return {
            "as_of": at,
            "currency": self.currency,
            "live_metrics": self.seed_metrics(),
            "live_figures": {
                "current_daily_spend": everything(money_text(self.today.cost)),
                "budget_used": of_budget(None if budget is None else money_text(budget.used_nanos)),
                "budget_remaining": of_budget(
                    None if budget is None else money_text(budget.remaining_nanos)
                ),
                "budget_remaining_percent": of_budget(
                    None if budget is None else budget.remaining_percent
                ),
                "free_source_success_rate": everything(self.today.free_source_success_rate),
                "requests_per_minute": everything(self.requests_per_minute),
                "cost_per_request": everything(money_text(self.today.cost_per_request)),
                "projected_daily_total": {
                    **everything(money_text(self.projected_daily_total_nanos)),
                    "method": self.projection_method,
                },
                "time_until_budget_exhausted": of_budget(
                    None if runway is None else runway.total_seconds()
                ),
                "budget_exhausted_at": of_budget(
                    None if exhausted_at is None else exhausted_at.isoformat()
                ),
                "runs_out_before_reset": of_budget(
                    None
                    if exhausted_at is None or budget is None
                    else exhausted_at < budget.window_end
                ),
            },
            "budget": None
            if budget is None
            else {
                "name": budget.name,
                "scope": budget.scope,
                "limit": money_text(budget.limit_nanos),
                "used": money_text(budget.used_nanos),
                "remaining": money_text(budget.remaining_nanos),
                "resets_at": budget.window_end.isoformat(),
            },
            "unpriced_requests_today": self.today.unpriced,
            "status": self.status(),
        }
