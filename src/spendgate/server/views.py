"""What the dashboard's charts and streams panel show, read from the rollups and the gate.

`charts(ctx)` gives spend over time (today by minute, the last 30 days by day, a day before
the first event without figures) with the month's forecast; `streams(ctx)` each streamed
source's usage today, its budget level and whether its market is open. Each carries its
`as_of`. The page's other figures come from the seed's routes (`/cost/dashboard/live` and
the per-service ones).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from spendgate.errors import SpendgateError
from spendgate.markets import MarketHours, trading_days
from spendgate.money import money_text
from spendgate.rollups import Tally, ceil_minute, total
from spendgate.server.context import Context
from spendgate.streams import usage_history
from spendgate.windows import from_micros, to_micros

HISTORY_DAYS = 30
STREAM_UNITS = frozenset({"hour", "minute", "second"})
"""A source priced by connected time is a stream (the second seed's market-data feed)."""


def charts(ctx: Context, service: str | None = None) -> dict[str, Any]:
    """Today by minute and the last `HISTORY_DAYS` days by day (one store read), and, for
    all services, the month's forecast of the days left with its interval."""
    now = ctx.now()
    today_start, _ = ctx.analyst.days.bounds(now)
    end = from_micros(ceil_minute(to_micros(now) + 1))
    minutes = []
    at = today_start
    while at < end:
        minutes.append((at, at + timedelta(minutes=1)))
        at += timedelta(minutes=1)
    days = [
        ctx.analyst.days.bounds(today_start - timedelta(days=k) + timedelta(hours=12))
        for k in range(HISTORY_DAYS - 1, -1, -1)
    ]
    spans = minutes + days
    cells: list[list[Tally]] = [[] for _ in spans]
    rows = ctx.gate.store.tallies([(to_micros(a), to_micros(b)) for a, b in spans])
    for i, sv, _, tally in rows:
        if service is None or sv == service:
            cells[i].append(tally)
    sums = [total(c) for c in cells]
    first = ctx.analyst.first_day(service)  # after the tallies: see `Analyst._series`
    local = ctx.analyst.days.zone
    dates = [a.astimezone(local).date() for a, _ in days]
    return {
        "as_of": now.isoformat(),
        "service": service,
        "scope": "all" if service is None else f"service:{service}",
        "budget": ctx.analyst.budget.name if ctx.analyst.budget else None,
        "today": [
            _point(a.astimezone(local).strftime("%H:%M"), t)
            for (a, _), t in zip(minutes, sums, strict=False)
        ],
        "days": [
            _point(day.isoformat(), t, first is not None and day >= first)
            for day, t in zip(dates, sums[len(minutes) :], strict=True)
        ],
        "forecast": _forecast(ctx, now) if service is None else None,
    }


def _point(label: str, tally: Tally, data: bool = True) -> dict[str, Any]:
    """A point of a chart; a day before the first event (`data` false) has no figures
    (`None`), not $0."""
    if not data:
        return {"t": label, "data": False, **dict.fromkeys(("cost", "requests", "free", "paid"))}
    return {
        "t": label,
        "cost": money_text(tally.cost),
        "requests": tally.requests,
        "free": tally.free_successes,
        "paid": tally.paid,
    }


def _forecast(ctx: Context, now: datetime) -> dict[str, Any] | None:
    """The month's forecast as every face shows it (`MonthlyAssessment.forecast`: projected
    total, interval, method, confidence and why), with the chosen method's path over the
    month's remaining days (today first); `None` before there is history to forecast from."""
    assessment = ctx.analyst.monthly_forecast()
    best = assessment.outlook.best
    headline = assessment.forecast
    if best is None or headline is None:
        return None
    first = ctx.analyst.days.bounds(now)[0].astimezone(ctx.analyst.days.zone).date()
    return {
        "as_of": assessment.as_of.isoformat(),
        **headline.to_dict(),
        "path": [
            # Today's point is never below what today has spent, as in the projection.
            {"t": (first + timedelta(days=i)).isoformat(), "cost": round(v, 9)}
            for i, v in enumerate((max(best.path[0], assessment.today_nanos / 1e9), *best.path[1:]))
        ],
        "monthly_budget": None
        if assessment.monthly_budget_nanos is None
        else money_text(assessment.monthly_budget_nanos),
        "monthly_budget_from": None if assessment.budget is None else assessment.budget.to_dict(),
    }


def stream_sources(ctx: Context) -> list[str]:
    """Sources priced by connected time, in name order."""
    return sorted(
        name
        for name, pricing in ctx.gate.config.prices.sources.items()
        if any(r.unit in STREAM_UNITS for v in pricing.versions for r in v.rates)
    )


@functools.lru_cache(maxsize=4)
def _market(calendar: str, weekend: bool) -> MarketHours:
    return MarketHours(calendar, weekend_streaming=weekend)  # loading a calendar takes a while


def market_state(ctx: Context, now: datetime) -> dict[str, Any]:
    """Whether the streams' market is open now: `open`, `closed`, `always` (no calendar) or
    `unknown` (with the reason)."""
    settings = ctx.gate.config.streams
    if settings.calendar is None:
        return {"state": "always", "calendar": None, "as_of": now.isoformat()}
    try:
        market = _market(settings.calendar, settings.weekend_streaming)
    except SpendgateError as exc:
        return {"state": "unknown", "calendar": settings.calendar, "reason": str(exc),
                "as_of": now.isoformat()}  # fmt: skip
    state = market.state(now)
    word = "open" if state.open else state.reason.split(":", 1)[0]
    return {
        "state": word,  # open, closed, or unknown (beyond the installed calendar)
        "calendar": settings.calendar,
        "reason": state.reason,
        "as_of": now.isoformat(),
    }


def streams(ctx: Context) -> dict[str, Any]:
    """Each streamed source on today's trading day: bytes, messages, connected hours, cost,
    and the level of the tightest budget scoped to it; and whether the market is open."""
    now = ctx.now()
    statuses = ctx.gate.status(now)
    order = ("normal", "warn", "degrade", "stop")
    out = []
    day = trading_days(ctx.gate.config.streams).trading_date(now)  # the meters' trading day
    for source in stream_sources(ctx):
        rows = usage_history(ctx.gate, source, days=1)
        today = rows[0] if rows and rows[0].date == day else None
        scoped = [
            s
            for s in statuses
            if s.budget.scope.kind == "source" and s.budget.scope.value == source
        ]
        level = max((s.level for s in scoped), key=order.index, default="normal")
        out.append(
            {
                "source": source,
                "date": day.isoformat(),
                "events_processed": today.events_processed if today else 0,
                "data_bytes": today.data_bytes if today else 0,
                "connection_hours": today.connection_hours if today else 0.0,
                "estimated_cost": money_text(today.estimated_cost if today else 0),
                "level": level,
                "budgets": [s.budget.name for s in scoped],
            }
        )
    return {"as_of": now.isoformat(), "market": market_state(ctx, now), "streams": out}
