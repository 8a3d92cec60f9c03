"""The report model: the seed's monthly and weekly reports as frozen values, built from what
the `Analyst` read (summaries, days, trends, the monthly assessment, opportunities).

Pure: values in, a `Report` out. Money stays integer nano-units, wrapped in `Money`; shares
of a whole in `Share` (see `values`).

A report's `sections` is a tree of plain mappings and lists whose leaves are `str`, `int`,
`float`, `bool`, `None`, `Money` or `Share`, in the seed's order and with the seed's names;
`to_dict()` writes it as JSON-ready values (the documented schema, see docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from spendgate.analytics.opportunities import Opportunity
from spendgate.analytics.summaries import (
    Day,
    MonthlyAssessment,
    Summary,
    free_source_savings,
    merge_cells,
    savings_vs_traditional,
    series_trends,
)
from spendgate.analytics.summaries import recommendations as budget_actions
from spendgate.analytics.trends import trend
from spendgate.events import LOCATION_LABELS
from spendgate.money import Nanos
from spendgate.reports.charts import forecast_chart, report_charts
from spendgate.reports.values import Chart, Money, Share, plain, typed
from spendgate.rollups import Tally

SCHEMA_VERSION = 1
METHODOLOGY = (
    "Every figure is read from spendgate's rollups: events summed, as they are written and in "
    "the same transaction, by minute, hour and UTC day, per service and source; a period is "
    "tiled by the coarsest whole buckets that fit, so no figure comes from a scan of the raw "
    "events and none is sampled. Money is summed exactly in integer nano-units (10^-9) of the "
    "currency. Cost per request is the cost over priced requests (unpriced requests are "
    "counted apart, never as zero). The free-source success rate is the share of all requests "
    "answered successfully by a free source; the cache-hit rate the share served with at least "
    "one cache hit. Savings vs traditional compare the cost per request with the configured "
    "traditional cost per request (no figure is shown when no such cost is configured). Days "
    "are local days of the reporting time zone from its "
    "reset hour. Days before the first event are no data, not $0 days: they have no figures, "
    "and averages, days under budget and trend lines leave them out. "
    "Trends are least-squares lines through the complete days' values "
    "(scipy.stats.linregress). The month-end forecast says how much it knows: under three "
    "weeks of days it is a run rate, low confidence, with an interval widened for what so few "
    "days cannot show; from there a damped-trend or seasonal exponential smoothing or the run "
    "rate is used only if it beat the seasonal-naive forecast in a rolling-origin backtest "
    "(MASE) on this store, and seasonal-naive otherwise; its interval is the range the "
    "month's total falls in with the stated probability."
)
DATA_SOURCES = (
    "rollups: per-minute, per-hour and per-day sums of events by service and source",
    "budgets: the configured budget the report measures against",
    "prices: the configured sources, their prices and capabilities",
)
NO_LABELS = (
    "not available: no event in the period carries a `location` or `region` label (record "
    "calls with labels={'location': ...} to see where the money goes)"
)


@dataclass(frozen=True, slots=True)
class Report:
    """A report ready to export: its sections (the seed's, in order) and its charts.

    `stem` names its files (`monthly_cost_report_2026-10.pdf`); `total` is everything the
    period counted, the figure every export's totals are checked against.
    """

    kind: Literal["monthly", "weekly"]
    title: str
    stem: str
    since: datetime
    until: datetime
    generated_at: datetime
    currency: str
    total: Tally
    sections: Mapping[str, Any]
    charts: tuple[Chart, ...]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values: money as exact decimal strings, shares as
        fractions, then the charts' data under `visualizations`."""
        out: dict[str, Any] = plain(self.sections)
        out["visualizations"] = [c.to_dict() for c in self.charts]
        return out


def period_label(first: date, last: date) -> str:
    """Local days in words: `1-31 October 2026`, `28 September - 4 October 2026`,
    `29 December 2026 - 4 January 2027` (with en dashes)."""
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}\u2013{last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%B} \u2013 {last.day} {last:%B %Y}"
    return f"{first.day} {first:%B %Y} \u2013 {last.day} {last:%B %Y}"


def _share(part: int, whole: int) -> Share:
    return Share(part / whole if whole else 0.0)


@dataclass(frozen=True, slots=True)
class Previous:
    """The period a report compares itself with: the local days `first` to `last` and what
    they cost (the month before over as many days, the week before)."""

    first: date
    last: date
    cost: Nanos


@dataclass(frozen=True, slots=True)
class Setting:
    """Where a report's figures come from and what it compares them with: the `store`
    (`LedgerStore.where`, credentials never shown), the `previous` period, and the `alerts`
    fired in the period (as `alert_dict()` shows them, newest first)."""

    store: str = ""
    previous: Previous | None = None
    alerts: Sequence[Mapping[str, Any]] = ()


def _metadata(
    kind: str,
    period: str,
    since: datetime,
    until: datetime,
    generated_at: datetime,
    *,
    setting: Setting,
    **more: Any,
) -> dict[str, Any]:
    return {
        "period": period,
        "period_start": since.isoformat(),
        "period_end": until.isoformat(),
        "generated_at": generated_at.isoformat(),
        "report_type": kind,
        **more,
        "store": setting.store,
        "schema_version": SCHEMA_VERSION,
    }


def comparison(t: Tally, previous: Previous | None) -> dict[str, Any]:
    """The period's spend against the previous period's: the days compared, their cost, and
    the change as a share (`None` when the previous period cost nothing)."""
    if previous is None:
        return {"previous_period": None, "change_vs_previous_period": None}
    return {
        "previous_period": {
            "start_date": previous.first.isoformat(),
            "end_date": previous.last.isoformat(),
            "total_cost": Money(previous.cost),
        },
        "change_vs_previous_period": Share((t.cost - previous.cost) / previous.cost)
        if previous.cost
        else None,
    }


def free_savings(t: Tally) -> dict[str, Any]:
    """Requests free sources answered, and what they saved at the paid rate
    (`free_source_savings`)."""
    saved = free_source_savings(t)
    return {
        "free_source_answers": t.free_successes,
        "free_source_savings": None if saved is None else Money(saved),
    }


def alert_rows(alerts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The period's alerts, newest first: when each fired, how severe, what it is about."""
    return [
        {
            "fired_at": a["timestamp"],
            "severity": a["severity"],
            "type": a["type"],
            "title": a["title"],
            "description": a["description"],
            "state": a["state"],
        }
        for a in alerts
    ]


def daily_rows(days: Sequence[Day], limit: Nanos | None) -> list[dict[str, Any]]:
    """The seed's daily breakdown, with each day's free, paid and unpriced requests (a day
    before the first event: `data` false and no figures)."""
    rows = []
    for d in days:
        row = typed(d.to_dict(limit))
        row.setdefault("budget_status", None)  # no budget to measure against
        t = d.total
        row["paid_requests"] = t.paid if d.data else None
        row["free_requests"] = t.free if d.data else None
        row["unpriced_requests"] = t.unpriced if d.data else None
        row["daily_budget"] = None if limit is None else Money(limit)
        rows.append(row)
    return rows


def service_analysis(summary: Summary, days: Sequence[Day]) -> dict[str, Any]:
    """Every service seen in the period: its figures, share of the cost, cost by source and
    its cost and volume trend over the days."""
    spent = summary.total.cost
    out: dict[str, Any] = {}
    for service, t in summary.by_service().items():
        lines = series_trends(days, service)
        out[service] = {
            **typed(t.to_dict()),
            "share_of_cost": _share(t.cost, spent),
            "cost_by_source": {
                so: Money(c.cost) for (sv, so), c in sorted(summary.cells.items()) if sv == service
            },
            "cost_trend": lines["cost_trend"].summary,
            "volume_trend": lines["request_volume_trend"].summary,
        }
    return out


def cost_optimization(
    summary: Summary, locations: Mapping[str, Tally] | None = None
) -> dict[str, Any]:
    """Free sources, cache and batch use from the rollups; geography from the events'
    location labels (`locations`, see `Analyst.by_location()`)."""
    t = summary.total
    sources = summary.by_source()
    unbatched = t.priced - t.batched
    return {
        "free_sources_performance": {
            "free_requests": t.free,
            "free_share": _share(t.free, t.requests),
            "free_source_success_rate": Share(t.free_source_success_rate),
            "by_source": [
                {
                    "source": name,
                    "requests": s.requests,
                    "success_rate": Share(s.success_rate),
                    "free_source_success_rate": Share(s.free_source_success_rate),
                }
                for name, s in sources.items()
                if s.requests and not s.paid
            ],
        },
        "cache_efficiency": {
            "cache_hit_rate": Share(t.cache_hit_rate),
            "cached_requests": t.cached,
            "cache_hits": t.cache_hits,
            "by_source": [
                {
                    "source": name,
                    "requests": s.requests,
                    "cache_hit_rate": Share(s.cache_hit_rate),
                    "cache_hits": s.cache_hits,
                    "total_cost": Money(s.cost),
                }
                for name, s in sources.items()
            ],
        },
        "batch_processing_usage": {
            "batched_requests": t.batched,
            "batched_share": _share(t.batched, t.requests),
            "batched_cost": Money(t.batched_cost),
            "batched_cost_per_request": Money(t.batched_cost // t.batched if t.batched else 0),
            "unbatched_cost_per_request": Money(
                (t.cost - t.batched_cost) // unbatched if unbatched > 0 else 0
            ),
        },
        "geographic_optimization": geographic(locations or {}, t.requests),
    }


def geographic(locations: Mapping[str, Tally], requests: int) -> dict[str, Any]:
    """The seed's geographic analysis of a period of `requests`: spend by location, dearest
    first, and where a priced request costs least and most; unavailable (with why) when no
    event says where."""
    placed = {name: t for name, t in locations.items() if t.requests}
    if not placed:
        return {"available": False, "reason": NO_LABELS}
    located = sum(t.requests for t in placed.values())
    rows = sorted(placed.items(), key=lambda item: (-item[1].cost, item[0]))
    by_rate = sorted(
        ((name, t) for name, t in placed.items() if t.priced), key=lambda i: i[1].cost_per_request
    )
    return {
        "available": True,
        "labels": list(LOCATION_LABELS),
        "located_requests": located,
        "located_share": _share(located, requests),
        "unlocated_requests": requests - located,
        "by_location": [
            {
                "location": name,
                "requests": t.requests,
                "total_cost": Money(t.cost),
                "cost_per_request": Money(t.cost_per_request),
                "paid_requests": t.paid,
                "free_share": _share(t.free, t.requests),
                "free_source_success_rate": Share(t.free_source_success_rate),
                "cache_hit_rate": Share(t.cache_hit_rate),
                "batched_share": _share(t.batched, t.requests),
            }
            for name, t in rows
        ],
        "cheapest_location": by_rate[0][0] if by_rate else None,
        "dearest_location": by_rate[-1][0] if by_rate else None,
    }


def trend_analysis(days: Sequence[Day]) -> dict[str, Any]:
    """The seed's cost, volume, efficiency (cost per request) and quality trends, and the
    free-source trend, over complete days from the first event."""
    lines = series_trends(days)
    quality = [q for d in days if d.data and (q := d.total.average_quality) is not None]
    return {
        "cost_trend": lines["cost_trend"].to_dict(),
        "volume_trend": lines["request_volume_trend"].to_dict(),
        "efficiency_trend": lines["cost_per_request_trend"].to_dict(),
        "quality_trend": trend(quality).to_dict(),
        "free_source_trend": lines["free_source_success_trend"].to_dict(),
    }


def recommendation_rows(
    found: Sequence[Opportunity], actions: Sequence[str]
) -> list[dict[str, Any]]:
    """The opportunities (largest saving first: over their window of `window_days`, and at
    the same rate over 7 and 30 days), then what the budget position calls for."""
    rows: list[dict[str, Any]] = [
        {
            "priority": i + 1,
            "kind": o.kind,
            "summary": o.phrase(),
            "saving": Money(o.saving_nanos),
            "window_days": o.window_days,
            "weekly_saving": Money(o.weekly_saving_nanos),
            "monthly_saving": Money(o.monthly_saving_nanos),
        }
        for i, o in enumerate(found)
    ]
    for action in actions:
        rows.append(
            {
                "priority": len(rows) + 1,
                "kind": "budget",
                "summary": action,
                "saving": None,
                "window_days": None,
                "weekly_saving": None,
                "monthly_saving": None,
            }
        )
    return rows


def _raw_data(summary: Summary) -> list[dict[str, Any]]:
    """The period's rollup sums by service and source: what every figure was computed from."""
    return [
        {"service": sv, "source": so, **typed(t.to_dict())}
        for (sv, so), t in sorted(summary.cells.items())
    ]


# -- the reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budgets:
    """What the period is measured against: the daily share and the period's budget, and the
    traditional cost per request savings are counted against (nano-units; `None`, not
    configured: no savings figure)."""

    daily: Nanos | None
    period: Nanos | None
    traditional_cost: Nanos | None
    basis: str | None = None
    """Where the period's budget comes from, and its scope (`PeriodBudget.describe()`)."""


def monthly(
    month: date,
    summary: Summary,
    days: Sequence[Day],
    budgets: Budgets,
    found: Sequence[Opportunity],
    *,
    generated_at: datetime,
    currency: str,
    timezone: str,
    assessment: MonthlyAssessment | None = None,
    locations: Mapping[str, Tally] | None = None,
    setting: Setting = Setting(),
) -> Report:
    """The seed's monthly cost report over `summary`'s span (a local month) and its `days`.

    `assessment` is the current month's forecast (none for a month that is over); `found`
    the month's optimization opportunities; `locations` its events by location label.
    """
    t = summary.total
    budget = budgets.period
    complete = summary.until <= generated_at
    # Trends over complete days only: today's partial figures would bend every line down.
    today = assessment.local_day if assessment is not None else None
    closed = [d for d in days if today is None or d.day < today]
    executive = {
        "total_monthly_cost": Money(t.cost),
        "total_requests_processed": t.requests,
        "cost_per_request": Money(t.cost_per_request),
        "free_source_success_rate": Share(t.free_source_success_rate),
        "cost_savings_vs_traditional": savings_vs_traditional(t, budgets.traditional_cost),
        "budget_utilization": Share(t.cost / budget) if budget else None,
        "monthly_budget": None if budget is None else Money(budget),
        "monthly_budget_basis": budgets.basis,
        "budget_remaining": None if budget is None else Money(budget - t.cost),
        **comparison(t, setting.previous),
        **free_savings(t),
        "paid_requests": t.paid,
        "free_requests": t.free,
        "unpriced_requests": t.unpriced,
        "cache_hit_rate": Share(t.cache_hit_rate),
        "success_rate": Share(t.success_rate),
        "days_in_report": len(days),
        "days_with_data": sum(d.data for d in days),
    }
    if assessment is not None:
        # The forecast every face shows (`MonthlyAssessment.forecast`), as it is.
        headline = assessment.forecast
        projected = None if headline is None else headline.total_nanos
        forecast: dict[str, Any] = {
            "status": "month in progress",
            "method": None if headline is None else headline.method,
            "confidence": assessment.outlook.confidence,
            "chosen_because": assessment.outlook.reason if headline is None else headline.reason,
            "projected_total": None if projected is None else Money(projected),
            "interval_low": None if headline is None else Money(headline.low_nanos),
            "interval_high": None if headline is None else Money(headline.high_nanos),
            "level": None if headline is None else Share(headline.level),
            "monthly_budget": None if budget is None else Money(budget),
            "monthly_budget_basis": budgets.basis,
            "projected_vs_budget": Share(projected / budget)
            if budget and projected is not None
            else None,
        }
        actions = budget_actions(projected, budget, assessment.spent_nanos)
    else:
        forecast = {
            "status": "month complete" if complete else "no forecast",
            "method": None,
            "projected_total": Money(t.cost),
            "monthly_budget": None if budget is None else Money(budget),
            "monthly_budget_basis": budgets.basis,
            "projected_vs_budget": Share(t.cost / budget) if budget else None,
        }
        actions = _month_actions(t.cost, budget)
    sections = {
        "report_metadata": _metadata(
            "monthly_cost_analysis",
            month.strftime("%B %Y"),
            summary.since,
            summary.until,
            generated_at,
            setting=setting,
            currency=currency,
            timezone=timezone,
            complete=complete,
        ),
        "executive_summary": executive,
        "daily_breakdown": daily_rows(days, budgets.daily),
        "service_analysis": service_analysis(summary, closed or days),
        "cost_optimization_analysis": cost_optimization(summary, locations),
        "trend_analysis": trend_analysis(closed),
        "month_end_forecast": forecast,
        "recommendations": recommendation_rows(found, actions),
        "alerts": alert_rows(setting.alerts),
        "appendices": {
            "methodology": METHODOLOGY,
            "data_sources": list(DATA_SOURCES),
            "raw_data": _raw_data(summary),
        },
    }
    return Report(
        "monthly",
        f"Monthly cost report: {month:%B %Y}",
        f"monthly_cost_report_{month:%Y-%m}",
        summary.since,
        summary.until,
        generated_at,
        currency,
        t,
        sections,
        report_charts(summary, days, budgets.daily, [forecast_chart(days, budget, assessment)]),
    )


def _month_actions(spent: Nanos, budget: Nanos | None) -> list[str]:
    """What a month's spend against its budget calls for."""
    if budget is None:
        return ["set a monthly or daily budget to assess spend against"]
    ratio = spent / budget
    if ratio > 1:
        return [
            f"spent {ratio:.0%} of the monthly budget: lower the degrade threshold or move "
            "paid traffic to free sources before next month",
        ]
    return [f"spent {ratio:.0%} of the monthly budget"]


def weekly(
    weekly_figures: Mapping[str, Any],
    summary: Summary,
    days: Sequence[Day],
    budgets: Budgets,
    *,
    generated_at: datetime,
    currency: str,
    timezone: str,
    setting: Setting = Setting(),
    found: Sequence[Opportunity] = (),
) -> Report:
    """The seed's weekly budget report (`weekly_figures`: `WeeklyReport.to_dict()`), with the
    week's days, its services and charts. `summary` spans the same days."""
    first, last = days[0].day, days[-1].day
    sections = {
        "report_metadata": _metadata(
            "weekly_budget_report",
            f"{first.isoformat()} to {last.isoformat()}",
            summary.since,
            summary.until,
            generated_at,
            setting=setting,
            currency=currency,
            timezone=timezone,
            complete=summary.until <= generated_at,
        ),
        **{
            k: typed(weekly_figures[k], k)
            for k in (
                "period",
                "budget_performance",
                "cost_efficiency",
                "optimization_opportunities",
                "trend_analysis",
            )
        },
        "daily_breakdown": daily_rows(days, budgets.daily),
        "service_analysis": service_analysis(summary, days),
        "alerts": alert_rows(setting.alerts),
    }
    for row, o in zip(sections["optimization_opportunities"], found, strict=False):
        row["summary"] = o.phrase()  # the same words, its amounts for each face to show
    sections["budget_performance"].update(comparison(summary.total, setting.previous))
    sections["cost_efficiency"].update(free_savings(summary.total))
    return Report(
        "weekly",
        f"Weekly budget report: {period_label(first, last)}",
        f"weekly_budget_report_{last.isoformat()}",
        summary.since,
        summary.until,
        generated_at,
        currency,
        summary.total,
        sections,
        report_charts(summary, days, budgets.daily),
    )


def week_summary(days: Sequence[Day], as_of: datetime) -> Summary:
    """The summary of a series of days (their cells merged)."""
    return Summary(days[0].start, days[-1].end, as_of, merge_cells(d.cells for d in days))
