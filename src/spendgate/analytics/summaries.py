"""Summaries of where the money went: a period's figures by service and source, a day by the
hour, a series of days, the weekly budget report and the monthly assessment.

Pure: tallies in (read from the rollups by `Analyst`), frozen values out. Money stays integer
nano-units inside (a `Tally`'s `cost`); `to_dict()` writes it as exact decimal text of the
value's `currency`, which it names, and a Python read of an amount (`Summary.cost`) is a
`Decimal` of currency units (`Summary.cost`, `PeriodBudget.amount`, the
`MonthlyAssessment`'s figures), beside its `_nanos` name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from spendgate.analytics.forecast import MODELS, Forecast, Outlook, min_history
from spendgate.analytics.periods import PeriodBudget
from spendgate.analytics.trends import StableRule, Trend, trend
from spendgate.money import DEFAULT_CURRENCY, Nanos, from_nanos, money_text
from spendgate.rollups import Tally, merge, total

Cells = Mapping[tuple[str, str], Tally]
"""Tallies by (service, source)."""


def savings_vs_traditional(t: Tally, traditional: Nanos | None) -> float | None:
    """The seed's efficiency figure: % saved per request against the traditional cost per
    request, the one rule every face shows. `None` when no traditional cost is configured
    (the figure is absent, never computed from an invented one) or `t` has no priced
    request to compare."""
    if traditional is None or not t.priced:
        return None
    return (1 - t.cost_per_request / traditional) * 100


def free_source_savings(t: Tally) -> Nanos | None:
    """What free sources saved: each request a free source answered, at the period's average
    cost of a paid request (`None` without a paid request to price them by: nothing is
    invented). An estimate, and every face that shows it says so."""
    if not t.paid or not t.cost:
        return None
    return (t.cost * t.free_successes + t.paid // 2) // t.paid


SEED_PROJECTIONS = {
    "linear": ("linear", "linear_extrapolation"),
    "trend_based": ("trend", "trend_analysis"),
    "ml_forecast": ("seasonal", "holt_winters_ets"),
}
"""The seed's projection names: the spendgate method each one is, and its `method` word
("ml_forecast" is Holt-Winters exponential smoothing, not machine learning: its `model`
says so)."""


@dataclass(frozen=True, slots=True)
class Summary:
    """A span's figures: overall, by service and by source (the seed's cost summary)."""

    since: datetime
    until: datetime
    as_of: datetime
    cells: Cells = field(default_factory=dict)
    service: str | None = None
    currency: str = DEFAULT_CURRENCY

    @property
    def total(self) -> Tally:
        """Every event in the span (of `service`, when set); its `cost` is nano-units."""
        return total(self.cells)

    @property
    def cost(self) -> Decimal:
        """What the span's priced events cost, in currency units."""
        return from_nanos(self.total.cost)

    def by_service(self) -> dict[str, Tally]:
        """Tallies by service, services sorted by name."""
        return by_key(self.cells, 0)

    def by_source(self) -> dict[str, Tally]:
        """Tallies by source, sources sorted by name."""
        return by_key(self.cells, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the seed's summary fields, then the breakdowns."""
        sources = self.by_source()
        return {
            "period": {"start": self.since.isoformat(), "end": self.until.isoformat()},
            "as_of": self.as_of.isoformat(),
            "service": self.service,
            "scope": "all" if self.service is None else f"service:{self.service}",
            "currency": self.currency,
            **self.total.to_dict(),
            "cost_by_source": {s: money_text(t.cost) for s, t in sources.items()},
            "services": {s: t.to_dict() for s, t in self.by_service().items()},
            "sources": {s: t.to_dict() for s, t in sources.items()},
        }


@dataclass(frozen=True, slots=True)
class Day:
    """One local day of a series.

    `started` names the services whose first event is on or before the day. A day no
    service has started has no data: it is not a $0 day, and averages, days under budget and
    trend lines leave it out. A day after the first event with no events is data (a day
    nothing was spent), and so is a day of free calls only.
    """

    day: date
    start: datetime
    end: datetime
    cells: Cells
    started: frozenset[str]

    @property
    def total(self) -> Tally:
        """Everything the day counted."""
        return total(self.cells)

    @property
    def data(self) -> bool:
        """Whether the day is on or after the first event of the series."""
        return bool(self.started)

    def has_data(self, service: str | None = None) -> bool:
        """Whether the day is on or after `service`'s first event (any service's: `data`)."""
        return self.data if service is None else service in self.started

    def to_dict(self, daily_limit: Nanos | None = None) -> dict[str, Any]:
        """The seed's daily breakdown row: date, cost, requests, free-source rate, status;
        a day without data says `"data": false` and has no figures (`None`)."""
        if not self.data:
            out: dict[str, Any] = {"date": self.day.isoformat(), "data": False}
            out |= dict.fromkeys(("total_cost", "requests", "free_source_rate", "cost_per_request"))
            if daily_limit is not None:
                out["budget_status"] = None
            return out
        t = self.total
        out = {
            "date": self.day.isoformat(),
            "data": True,
            "total_cost": money_text(t.cost),
            "requests": t.requests,
            "free_source_rate": t.free_source_success_rate,
            "cost_per_request": money_text(t.cost_per_request),
        }
        if daily_limit is not None:
            out["budget_status"] = "over_budget" if t.cost > daily_limit else "under_budget"
        return out


@dataclass(frozen=True, slots=True)
class DailyBreakdown:
    """One day in detail: its summary and its hours."""

    summary: Summary
    day: date
    hours: Sequence[tuple[datetime, Tally]]
    budget: PeriodBudget | None
    data: bool = True  # False: a day before the first event (no data, not a $0 day)

    @property
    def daily_limit(self) -> Decimal | None:
        """The day's budget of total spend (see `period_budget()`) in currency units, or
        `None`."""
        return None if self.budget is None else self.budget.amount

    @property
    def daily_limit_nanos(self) -> Nanos | None:
        """`daily_limit` in nano-units."""
        return None if self.budget is None else self.budget.amount_nanos

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with each hour's cost and requests."""
        t = self.summary.total
        out = {"date": self.day.isoformat(), "data": self.data, **self.summary.to_dict()}
        out["hourly"] = [
            {"hour": at.isoformat(), "total_cost": money_text(h.cost), "requests": h.requests}
            for at, h in self.hours
        ]
        limit = self.daily_limit_nanos
        if self.budget is not None and limit is not None:
            out["daily_budget"] = money_text(limit)
            out["daily_budget_from"] = self.budget.to_dict()
            out["budget_utilization"] = t.cost / limit if limit and self.data else None
            out["budget_status"] = (
                None if not self.data else "over_budget" if t.cost > limit else "under_budget"
            )
        return out


def series_trends(
    days: Sequence[Day], service: str | None = None, *, rule: StableRule = "relative"
) -> dict[str, Trend]:
    """The seed's trend lines over the days of a series that have data (of one service,
    when given: its days from its first event), so a young series is fitted on its own
    days, never on zeros before them; "stable" by `rule` (see `trend()`)."""
    tallies = [
        total(t for (sv, _), t in d.cells.items() if service is None or sv == service)
        for d in days
        if d.has_data(service)
    ]
    return {
        "cost_trend": trend([t.cost / 1e9 for t in tallies], rule=rule),
        "free_source_success_trend": trend(
            [t.free_source_success_rate for t in tallies], rule=rule
        ),
        "request_volume_trend": trend([float(t.requests) for t in tallies], rule=rule),
        "cost_per_request_trend": trend([t.cost_per_request / 1e9 for t in tallies], rule=rule),
    }


def efficiency_outlook(lines: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The seed's `efficiency_forecast`, read from the trend lines (`to_dict()`s by name)
    rather than a new extrapolation: efficiency is "improving" when cost per request falls
    or the free-source success rate rises and neither moves the other way, "worsening" the
    reverse, "mixed" when they disagree, "stable" when neither moves, "insufficient_data"
    under two days."""
    cost = lines["cost_per_request_trend"]["trend"]
    free = lines["free_source_success_trend"]["trend"]

    def words(token: str) -> str:
        return token.replace("_", " ")

    if "insufficient_data" in (cost, free):
        outlook = "insufficient_data"
    else:
        better = cost == "decreasing" or free == "increasing"
        worse = cost == "increasing" or free == "decreasing"
        outlook = (
            "mixed"
            if better and worse
            else "improving"
            if better
            else "worsening"
            if worse
            else "stable"
        )
    return {
        "outlook": outlook,
        "cost_per_request_trend": cost,
        "free_source_success_trend": free,
        "summary": f"efficiency {words(outlook)}: cost per request {words(cost)}, "
        f"free-source success rate {words(free)}",
    }


@dataclass(frozen=True, slots=True)
class ServicePerformance:
    """A service over its last N days: totals, each day, and the trend lines."""

    service: str
    days: Sequence[Day]
    as_of: datetime
    currency: str = DEFAULT_CURRENCY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        t = total(d.total for d in self.days)
        return {
            "service": self.service,
            "days": len(self.days),
            "days_with_data": sum(d.data for d in self.days),
            "as_of": self.as_of.isoformat(),
            "currency": self.currency,
            **t.to_dict(),
            "daily": [d.to_dict() for d in self.days],
            "trends": {k: v.to_dict() for k, v in series_trends(self.days).items()},
        }


@dataclass(frozen=True, slots=True)
class WeeklyReport:
    """The seed's weekly budget analysis over seven local days."""

    days: Sequence[Day]
    budget: PeriodBudget | None
    traditional_cost: Nanos | None
    as_of: datetime
    opportunities: Sequence[Any] = ()
    currency: str = DEFAULT_CURRENCY

    @property
    def daily_limit(self) -> Decimal | None:
        """The day's budget of total spend (see `period_budget()`) in currency units, or
        `None`."""
        return None if self.budget is None else self.budget.amount

    @property
    def daily_limit_nanos(self) -> Nanos | None:
        """`daily_limit` in nano-units."""
        return None if self.budget is None else self.budget.amount_nanos

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the seed's sections."""
        t = total(d.total for d in self.days)
        n = len(self.days)
        # Days before the first event are no data: not $0 days, and not under budget.
        known = [d for d in self.days if d.data]
        k = len(known)
        limit = self.daily_limit_nanos
        services = by_key(merge_cells(d.cells for d in self.days), 0)
        spending = {s: v for s, v in services.items() if v.priced}
        cheapest = min(spending, key=lambda s: spending[s].cost_per_request, default=None)
        costliest = max(spending, key=lambda s: spending[s].cost, default=None)
        return {
            "period": {
                "start_date": self.days[0].day.isoformat() if n else None,
                "end_date": self.days[-1].day.isoformat() if n else None,
                "days_analyzed": n,
            },
            "as_of": self.as_of.isoformat(),
            "currency": self.currency,
            "budget_performance": {
                "total_spent": money_text(t.cost),
                "days_with_data": k,
                "daily_average": money_text(t.cost // k) if k else None,
                "daily_budget": None if limit is None else money_text(limit),
                "daily_budget_from": None if self.budget is None else self.budget.to_dict(),
                "budget_utilization": t.cost / (limit * k) if limit and k else None,
                "days_under_budget": None
                if limit is None
                else sum(d.total.cost <= limit for d in known),
                "days_over_budget": None
                if limit is None
                else sum(d.total.cost > limit for d in known),
            },
            "cost_efficiency": {
                "free_source_success_rate": t.free_source_success_rate,
                "cost_per_request": money_text(t.cost_per_request),
                "savings_vs_traditional": savings_vs_traditional(t, self.traditional_cost),
                "most_cost_effective_service": cheapest,
                "highest_cost_service": costliest,
            },
            "optimization_opportunities": [o.to_dict() for o in self.opportunities],
            "trend_analysis": {  # a value a day, `None` for a day without data
                "cost_trend": [money_text(d.total.cost) if d.data else None for d in self.days],
                "free_source_trend": [
                    d.total.free_source_success_rate if d.data else None for d in self.days
                ],
                "request_volume_trend": [d.total.requests if d.data else None for d in self.days],
            },
        }


@dataclass(frozen=True, slots=True)
class MonthlyAssessment:
    """The seed's monthly forecast and budget assessment.

    `spent` is the month so far; `base` the part of it in complete days; `today` what today
    has spent so far. Each method's projection is `base` plus its forecast of today and the
    days left (today's forecast never below what today has already spent). Each amount reads
    as a `Decimal` of currency units; its `_nanos` name holds the nano-units.
    """

    month_start: datetime
    month_end: datetime
    days_elapsed: int
    days_remaining: int
    spent_nanos: Nanos
    base_nanos: Nanos
    today_nanos: Nanos
    outlook: Outlook
    budget: PeriodBudget | None
    as_of: datetime
    local_day: date  # today, in the reporting zone
    currency: str = DEFAULT_CURRENCY
    intraday: timedelta | None = None  # the hours of data today, when they are all the history

    @property
    def spent(self) -> Decimal:
        """The month's spend so far, in currency units."""
        return from_nanos(self.spent_nanos)

    @property
    def base(self) -> Decimal:
        """The part of `spent` in the month's complete days, in currency units."""
        return from_nanos(self.base_nanos)

    @property
    def today(self) -> Decimal:
        """What today has spent so far, in currency units."""
        return from_nanos(self.today_nanos)

    @property
    def monthly_budget(self) -> Decimal | None:
        """The month's budget (see `period_budget()`) in currency units, or `None`."""
        return None if self.budget is None else self.budget.amount

    @property
    def monthly_budget_nanos(self) -> Nanos | None:
        """`monthly_budget` in nano-units."""
        return None if self.budget is None else self.budget.amount_nanos

    @property
    def forecast(self) -> MonthForecast | None:
        """The month-end forecast every face shows: the chosen method's projection with its
        interval, confidence and why; `None` before there is history enough for one."""
        found = self.projection_nanos()
        chosen = self.outlook.best
        if found is None or chosen is None:
            return None
        if self.intraday is None:
            method, reason = chosen.method, self.outlook.reason
        else:
            hours = self.intraday / timedelta(hours=1)
            method = "intraday_run_rate"
            reason = f"insufficient history: {hours:.1f} hours of data today; today's run rate"
        return MonthForecast(method, self.outlook.confidence, reason, *found, chosen.level)

    def projection(self, method: str | None = None) -> tuple[Decimal, Decimal, Decimal] | None:
        """The month's projected total and its interval, in currency units, by `method` (the
        chosen one by default); `None` when that method could not forecast."""
        found = self.projection_nanos(method)
        if found is None:
            return None
        mid, low, high = found
        return from_nanos(mid), from_nanos(low), from_nanos(high)

    def projection_nanos(self, method: str | None = None) -> tuple[Nanos, Nanos, Nanos] | None:
        """`projection()` in nano-units."""
        f = self.outlook.forecasts.get(method or self.outlook.chosen or "")
        if f is None:
            return None
        mid, low, high = from_today(f, self.today_nanos)
        return self.base_nanos + mid, self.base_nanos + low, self.base_nanos + high

    def cumulative(self) -> list[Decimal]:
        """The chosen projection's month-to-date spend at the end of today and of each day
        left, in currency units (today never below what it has already spent); empty
        without one."""
        return [from_nanos(n) for n in self.cumulative_nanos()]

    def cumulative_nanos(self) -> list[Nanos]:
        """`cumulative()` in nano-units."""
        f = self.outlook.best
        if f is None:
            return []
        out = []
        running = self.base_nanos
        for i, x in enumerate(f.path):
            running += max(round(x * 1e9), self.today_nanos) if i == 0 else round(x * 1e9)
            out.append(running)
        return out

    def crossing(self, fraction: float) -> date | None:
        """The day the chosen projection's month-to-date spend first reaches `fraction` of
        the monthly budget, or `None` (no budget, or not within the month)."""
        budget = self.monthly_budget_nanos
        if budget is None or self.outlook.best is None:
            return None
        line = budget * fraction
        if self.spent_nanos >= line:
            return self.local_day
        for i, running in enumerate(self.cumulative_nanos()):
            if running >= line:
                return date.fromordinal(self.local_day.toordinal() + i)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the seed's sections: `forecast` (the one every face shows) first,
        then every method's projection and the backtest behind the choice."""
        projections = {m: self._projection(m) for m in self.outlook.forecasts}
        # The seed's names beside them, always present (a method not fitted yet says why).
        for name, (method, word) in SEED_PROJECTIONS.items():
            projections[name] = self._projection(method) | {"method": word, "of": method}
        headline = self.forecast
        out: dict[str, Any] = {
            "month": self.month_start.strftime("%B %Y"),
            "as_of": self.as_of.isoformat(),
            "currency": self.currency,
            "days_elapsed": self.days_elapsed,
            "days_remaining": self.days_remaining,
            "current_spend": money_text(self.spent_nanos),
            "forecast": None if headline is None else headline.to_dict(),
            "history_days": 0 if self.intraday is not None else self.outlook.points,
            "confidence": self.outlook.confidence,
            "chosen_method": None if headline is None else headline.method,
            "chosen_because": self.outlook.reason if headline is None else headline.reason,
            "projections": projections,
            "backtest": {k: v.to_dict() for k, v in self.outlook.scores.items()},
        }
        budget = self.monthly_budget_nanos
        projected = None if headline is None else headline.total_nanos
        out["budget_assessment"] = {
            "monthly_budget": None if budget is None else money_text(budget),
            "monthly_budget_from": None if self.budget is None else self.budget.to_dict(),
            "projected_total": None if projected is None else money_text(projected),
            "projected_vs_budget": projected / budget if budget and projected is not None else None,
            "budget_status": None
            if budget is None or projected is None
            else ("over_budget" if projected > budget else "under_budget"),
            "recommended_actions": recommendations(projected, budget, self.spent_nanos),
        }
        return out

    def _projection(self, method: str) -> dict[str, Any]:
        """One method's month-end projection, model and confidence (`projected_total` and
        `interval` `None`, and `available` false, when it could not forecast)."""
        o = self.outlook
        p = self.projection_nanos(method)
        score = o.scores.get(method)
        out: dict[str, Any] = {
            "projected_total": None if p is None else money_text(p[0]),
            "interval": None if p is None else {"low": money_text(p[1]), "high": money_text(p[2])},
            "level": o.forecasts[method].level if method in o.forecasts else None,
            "method": method,
            "model": MODELS[method],
            "confidence": o.confidence_of(method),
            "available": p is not None,
            "min_history_days": min_history(method),
            "backtest_mase": None if score is None else score.mase,
        }
        if p is None:
            out["reason"] = (
                f"not fitted: {o.points} day{'' if o.points == 1 else 's'} of history, "
                f"it needs {min_history(method)}"
                if o.points < min_history(method)
                else "not fitted: the model does not fit this history"
            )
        return out


def from_today(f: Forecast, today: Nanos) -> tuple[Nanos, Nanos, Nanos]:
    """`f`'s total and interval (its path starting today) in nano-units, with today's share
    never below what today has already spent (`today`), and no bound below it."""
    first = f.path[0] if f.path else 0.0

    def shifted(x: float) -> Nanos:
        return max(round(x * 1e9), round((x - first) * 1e9) + today, today)

    return shifted(f.total), shifted(f.low), shifted(f.high)


@dataclass(frozen=True, slots=True)
class MonthForecast:
    """The month-end forecast: `total` projected by `method`, within `low`..`high` with
    probability `level`, trusted as far as `confidence` says ("low": insufficient history, a
    run rate; "medium": seasonal-naive; "high": a method that beat it in the backtest), and
    `reason` says why. Amounts are `Decimal`s of currency units (`_nanos`: nano-units)."""

    method: str
    confidence: str
    reason: str
    total_nanos: Nanos
    low_nanos: Nanos
    high_nanos: Nanos
    level: float

    @property
    def total(self) -> Decimal:
        """The projected month-end total, in currency units."""
        return from_nanos(self.total_nanos)

    @property
    def low(self) -> Decimal:
        """The interval's low end, in currency units."""
        return from_nanos(self.low_nanos)

    @property
    def high(self) -> Decimal:
        """The interval's high end, in currency units."""
        return from_nanos(self.high_nanos)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, money as decimal text."""
        return {
            "projected_total": money_text(self.total_nanos),
            "interval": {"low": money_text(self.low_nanos), "high": money_text(self.high_nanos)},
            "level": self.level,
            "method": self.method,
            "confidence": self.confidence,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class NextMonth:
    """The seed's `next_month_cost`: the forecast core's projection of the `days` local days
    from `start` (today) to `end`, with today's share never below what today has spent
    (`today_nanos`). `outlook` is `forecast.outlook()`'s answer on the same history the
    monthly forecast uses; `intraday` the hours of data today, when they are all of it."""

    start: datetime
    end: datetime
    days: int
    outlook: Outlook
    today_nanos: Nanos
    as_of: datetime
    currency: str = DEFAULT_CURRENCY
    intraday: timedelta | None = None

    def projection_nanos(self) -> tuple[Nanos, Nanos, Nanos] | None:
        """The projected total and its interval, in nano-units; `None` without a forecast."""
        f = self.outlook.best
        return None if f is None else from_today(f, self.today_nanos)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the projected total and interval as decimal text, the method,
        confidence and why (`projected_total` `None` before there is history enough)."""
        p = self.projection_nanos()
        o = self.outlook
        method = o.chosen if self.intraday is None or o.chosen is None else "intraday_run_rate"
        return {
            "projected_total": None if p is None else money_text(p[0]),
            "interval": None if p is None else {"low": money_text(p[1]), "high": money_text(p[2])},
            "level": None if o.best is None else o.best.level,
            "method": method,
            "confidence": o.confidence,
            "reason": o.reason,
            "days": self.days,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "as_of": self.as_of.isoformat(),
            "currency": self.currency,
        }


def recommendations(projected: Nanos | None, budget: Nanos | None, spent: Nanos) -> list[str]:
    """What to do about where the month is heading (`projected` `None`: no forecast yet)."""
    if budget is None:
        return ["set a monthly or daily budget to assess spend against"]
    if spent >= budget:
        return [
            "the monthly budget is spent: only emergency calls go through until it resets",
            "route remaining traffic to free sources",
        ]
    if projected is None:
        return ["too little history to project the month: it needs six hours of data"]
    ratio = projected / budget
    if ratio > 1:
        return [
            f"projected {ratio:.0%} of budget: lower the degrade threshold so paid sources "
            "serve priority callers only",
            "route to free sources first and raise cache use on the costliest source",
            "review the optimization opportunities for the largest savings",
        ]
    if ratio > 0.9:
        return [
            f"projected {ratio:.0%} of budget: watch daily spend; little headroom is left",
            "review the optimization opportunities",
        ]
    return [f"on track: projected {ratio:.0%} of budget"]


def merge_cells(cells: Iterable[Cells]) -> dict[tuple[str, str], Tally]:
    """Sum several tallies-by-(service, source) into one."""
    return merge(item for c in cells for item in c.items())


def by_key(cells: Cells, index: int) -> dict[str, Tally]:
    """Tallies summed by service (`index` 0) or source (1), sorted by name."""
    return dict(sorted(merge((key[index], t) for key, t in cells.items()).items()))
