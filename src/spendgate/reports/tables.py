"""A report laid out for people: sections with human titles, tables with human column names,
notes and paragraphs. What the PDF, the workbook and the CSV files show.

Pure. The JSON export keeps the seed's schema (`Report.to_dict()`); this is its reading for
a finance reader: an executive summary first (spend against budget, the forecast, the change
on the previous period, the top services and sources, free sources and what they saved, the
period's alerts, the recommendations worth most), then a section for each part of the story,
and the report's particulars last (`About this report`).

Every cell is a value of the JSON report, typed so each export shows it its own way: `Money`
(to the cent in the PDF; exact in the workbook and CSV), `UnitPrice` (what one request costs:
the digits it needs), `Share`, `Name`, dates, counts and text. The one figure derived here is
the top sources' and services' share of the period's spend (their spend over its total), so
every export agrees with the JSON by construction; the tests check it on the files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from spendgate.reports.model import Report, period_label
from spendgate.reports.values import Money, Name, Share, UnitPrice, Value, cents

TOP = 5  # services and sources on the summary page
TOP_ALERTS = 5  # alerts on the summary page
TOP_RECOMMENDATIONS = 3
UNIT_PRICE_NOTE = (
    "Cost per request is a unit price, shown with the digits it needs; every other amount is "
    "rounded to the cent. The workbook and the CSV files carry every amount exactly."
)
STATUS = {"under_budget": "under budget", "over_budget": "over budget", None: "no budget"}


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of cells under named columns; `note` is said under it, `empty` instead of it
    when it has no rows."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]
    note: str = ""
    empty: str = "None in this period."


@dataclass(frozen=True, slots=True)
class Paragraph:
    """Text between tables (a list of points when `points`), under its `title` if any."""

    text: str
    points: tuple[str, ...] = ()
    title: str = ""


Block = Table | Paragraph


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the report: a PDF chapter, a workbook sheet. `charts` names the report's
    charts drawn with it."""

    key: str
    title: str
    blocks: tuple[Block, ...]
    charts: tuple[str, ...] = ()

    @property
    def tables(self) -> tuple[Table, ...]:
        return tuple(b for b in self.blocks if isinstance(b, Table))


# -- words ------------------------------------------------------------------------------------


def report_zone(report: Report) -> ZoneInfo:
    """The zone the report's days are local days of."""
    return ZoneInfo(report.sections["report_metadata"]["timezone"])


def report_days(report: Report) -> tuple[date, date]:
    """The first and last local day a report covers."""
    days = report.sections["daily_breakdown"]
    return date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])


def report_period(report: Report) -> str:
    """The report's period in words, `1-20 October 2026 (month to date)` for a month that
    is not over."""
    label = period_label(*report_days(report))
    complete = report.sections["report_metadata"]["complete"]
    if report.kind == "monthly" and not complete:
        return f"{label} (month to date)"
    return label


def _unit(value: Value) -> Value:
    return UnitPrice(value.nanos) if isinstance(value, Money) else value


def _when(text: str | None) -> Value:
    return None if text is None else datetime.fromisoformat(text)


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _sentence(text: Value) -> Value:
    """Text that opens with a capital letter (a `Phrase` is worded by each export)."""
    return text[:1].upper() + text[1:] if isinstance(text, str) else text


def _words(trend: Mapping[str, Any]) -> str:
    """`weak increasing` from a trend line's figures."""
    if trend.get("points", 0) < 2:
        return "too few days"
    return f"{trend['strength']} {trend['trend']}"


# -- the summary ------------------------------------------------------------------------------


def _ranked(
    key: str, title: str, column: str, spend: Mapping[str, tuple[Money, int | None]], total: Money
) -> Table:
    """The `TOP` largest of `spend` (name: spend, requests), dearest first."""
    rows = sorted(spend.items(), key=lambda item: (-item[1][0].nanos, item[0]))[:TOP]
    return Table(
        key,
        title,
        (column, "Spend", "Share of spend", "Requests"),
        tuple(
            (Name(name), cost, Share(cost.nanos / total.nanos if total.nanos else 0.0), n)
            for name, (cost, n) in rows
        ),
        empty="Nothing was spent in this period.",
    )


def _top_services(report: Report) -> Table:
    services = report.sections["service_analysis"]
    total = Money(report.total.cost)
    spend: dict[str, tuple[Money, int | None]] = {
        n: (f["total_cost"], f["total_requests"]) for n, f in services.items()
    }
    return _ranked("top_services", "Top services by spend", "Service", spend, total)


def _source_spend(report: Report) -> dict[str, tuple[Money, int | None]]:
    """Spend by source (the report's cost-by-source chart) and, where the report counts them,
    requests by source (its cache figures)."""
    chart = next(c for c in report.charts if c.name == "cost_by_source")
    optimization = report.sections.get("cost_optimization_analysis", {})
    rows = optimization.get("cache_efficiency", {}).get("by_source", ())
    counts = {r["source"]: r["requests"] for r in rows}
    return {
        source: (cost, counts.get(source))
        for source, cost in zip(chart.categories, chart.series[0].values, strict=True)
        if isinstance(cost, Money)
    }


def _top_sources(report: Report) -> Table:
    spend = _source_spend(report)
    total = Money(report.total.cost)
    table = _ranked("top_sources", "Top sources by spend", "Source", spend, total)
    if report.kind == "weekly":  # the weekly report has no request counts by source
        return Table(table.key, table.title, table.columns[:3], tuple(r[:3] for r in table.rows))
    return table


def alerts_table(report: Report, limit: int | None = None) -> Table:
    """The period's alerts, newest first (the first `limit`, with a note of the rest)."""
    alerts = report.sections["alerts"]
    shown = alerts if limit is None else alerts[:limit]
    rest = len(alerts) - len(shown)
    return Table(
        "alerts",
        "Alerts",
        ("Fired", "Severity", "Alert", "State"),
        tuple(
            (_when(a["fired_at"]), a["severity"], a["description"] or a["title"], a["state"])
            for a in shown
        ),
        note=f"And {rest} more: see Alerts." if rest else "",
        empty="No alert fired in this period.",
    )


def recommendations_table(report: Report, limit: int | None = None) -> Table:
    """What to do, largest saving first."""
    rows = report.sections.get("recommendations") or report.sections.get(
        "optimization_opportunities", []
    )
    rows = rows if limit is None else rows[:limit]
    saving = "Saving this month" if report.kind == "monthly" else "Saving this week"
    return Table(
        "recommendations",
        "Recommendations",
        ("Recommendation", saving, "Saving per 30 days"),
        tuple((_sentence(r["summary"]), r["saving"], r["monthly_saving"]) for r in rows),
        note=""
        if limit is not None  # the summary's short list: the full one says it
        else "Savings are what the period would have cost less, and the same rate over 30 days.",
        empty="Nothing to recommend in this period.",
    )


def _change(figures: Mapping[str, Any], currency: str) -> tuple[str, Value, str]:
    previous = figures["previous_period"]
    change = figures["change_vs_previous_period"]
    if previous is None:
        return ("Change on the previous period", None, "no previous period")
    label = period_label(_day(previous["start_date"]), _day(previous["end_date"]))
    return (
        "Change on the previous period",
        None if change is None else Share(change.value, signed=True),
        f"{label}: {cents(previous['total_cost'].nanos, currency)}",
    )


def _efficiency(per_request: Money, figures: Mapping[str, Any]) -> list[tuple[str, Value, str]]:
    """Cost per request, the free-source rate and what free sources saved."""
    return [
        ("Cost per request", _unit(per_request), "unit price, over priced requests"),
        (
            "Free-source rate",
            figures["free_source_success_rate"],
            "requests a free source answered",
        ),
        (
            "Saved by free sources",
            figures["free_source_savings"],
            f"estimate: {figures['free_source_answers']:,} answers at the average paid "
            "request's cost",
        ),
    ]


def _figures(key: str, title: str, rows: Sequence[tuple[str, Value, str]], note: str = "") -> Table:
    if not any(detail for _, _, detail in rows):  # a figure, its value: nothing more to say
        return Table(key, title, ("Figure", "Value"), tuple(r[:2] for r in rows), note)
    return Table(key, title, ("Figure", "Value", "Detail"), tuple(rows), note)


def monthly_key_figures(report: Report) -> Table:
    """Page 1's figures: spend against budget, the forecast, the change, free sources."""
    e = report.sections["executive_summary"]
    f = report.sections["month_end_forecast"]
    cur = report.currency
    rows: list[tuple[str, Value, str]] = [
        ("Spend", e["total_monthly_cost"], report_period(report)),
        ("Budget", e["monthly_budget"], e["monthly_budget_basis"] or "no budget configured"),
        ("Budget used", e["budget_utilization"], ""),
        ("Budget remaining", e["budget_remaining"], ""),
    ]
    if f["method"] is not None:
        rows.append(
            (
                "Month-end forecast",
                f["projected_total"],
                f"{f['level'].value:.0%} interval {cents(f['interval_low'].nanos, cur)} to "
                f"{cents(f['interval_high'].nanos, cur)}; {f['confidence']} confidence",
            )
        )
    else:
        rows.append(("Month-end forecast", f["projected_total"], f["status"]))
    rows += [
        ("Forecast against budget", f["projected_vs_budget"], ""),
        _change(e, cur),
        (
            "Requests",
            e["total_requests_processed"],
            f"{e['paid_requests']:,} paid, {e['free_requests']:,} free, "
            f"{e['unpriced_requests']:,} unpriced",
        ),
        *_efficiency(e["cost_per_request"], e),
        (
            "Savings against traditional cost",
            None
            if e["cost_savings_vs_traditional"] is None
            else Share(e["cost_savings_vs_traditional"] / 100),
            "per request" if e["cost_savings_vs_traditional"] is not None else "not configured",
        ),
    ]
    return _figures("key_figures", "Key figures", rows, UNIT_PRICE_NOTE)


def weekly_key_figures(report: Report) -> Table:
    """The weekly report's first figures: spend against the daily budget, the change on the
    week before, free sources."""
    b = report.sections["budget_performance"]
    c = report.sections["cost_efficiency"]
    days = report.sections["period"]["days_analyzed"]
    services = report.sections["service_analysis"]
    requests = sum(f["total_requests"] for f in services.values())
    rows: list[tuple[str, Value, str]] = [
        ("Spend", b["total_spent"], report_period(report)),
        ("Daily average", b["daily_average"], f"over {b['days_with_data']} days with data"),
        ("Daily budget", b["daily_budget"], "" if b["daily_budget"] else "no budget configured"),
        ("Budget used", b["budget_utilization"], f"of the daily budget over {days} days"),
        ("Days over budget", b["days_over_budget"], f"{b['days_under_budget']} under budget"),
        _change(b, report.currency),
        ("Requests", requests, ""),
        *_efficiency(c["cost_per_request"], c),
        (
            "Cheapest service per request",
            None
            if c["most_cost_effective_service"] is None
            else Name(c["most_cost_effective_service"]),
            "",
        ),
        (
            "Highest-spend service",
            None if c["highest_cost_service"] is None else Name(c["highest_cost_service"]),
            "",
        ),
    ]
    return _figures("key_figures", "Key figures", rows, UNIT_PRICE_NOTE)


def _summary(report: Report) -> Section:
    figures = monthly_key_figures if report.kind == "monthly" else weekly_key_figures
    return Section(
        "summary",
        "Executive summary",
        (
            figures(report),
            _top_services(report),
            _top_sources(report),
            alerts_table(report, TOP_ALERTS),
            recommendations_table(report, TOP_RECOMMENDATIONS),
        ),
    )


# -- the sections -----------------------------------------------------------------------------


def _forecast(report: Report) -> Section:
    f = report.sections["month_end_forecast"]
    rows: list[tuple[str, Value, str]] = [("Status", f["status"], "")]
    if f["method"] is not None:
        rows += [
            ("Projected total", f["projected_total"], ""),
            ("Interval low", f["interval_low"], ""),
            ("Interval high", f["interval_high"], ""),
            ("Probability", f["level"], "that the month's total falls in the interval"),
            ("Confidence", f["confidence"], ""),
            ("Method", f["method"], f["chosen_because"]),
        ]
    else:
        rows.append(("Month's total", f["projected_total"], ""))
    rows += [
        ("Budget", f["monthly_budget"], f["monthly_budget_basis"] or "no budget configured"),
        ("Projected against budget", f["projected_vs_budget"], ""),
    ]
    return Section(
        "forecast",
        "Month-end forecast",
        (_figures("forecast", "Month-end forecast", rows),),
        ("forecast",),
    )


def daily_table(report: Report) -> Table:
    """A row a local day, its date first."""
    return Table(
        "daily",
        "Daily spend",
        (
            "Date",
            "Spend",
            "Requests",
            "Paid",
            "Free",
            "Unpriced",
            "Free-source rate",
            "Cost per request",
            "Budget status",
        ),
        tuple(
            (
                _day(d["date"]),
                d["total_cost"] if d["data"] else None,
                d["requests"] if d["data"] else None,
                d["paid_requests"],
                d["free_requests"],
                d["unpriced_requests"],
                d["free_source_rate"] if d["data"] else None,
                _unit(d["cost_per_request"]) if d["data"] else None,
                STATUS.get(d["budget_status"], d["budget_status"]) if d["data"] else "no data",
            )
            for d in report.sections["daily_breakdown"]
        ),
        note=UNIT_PRICE_NOTE,
    )


def _daily(report: Report) -> Section:
    budget = report.sections["daily_breakdown"][0]["daily_budget"]
    cur = report.currency
    said = (
        Paragraph("No daily budget is configured.")
        if budget is None
        else Paragraph(
            f"Each day is measured against the daily budget of {cents(budget.nanos, cur)}."
        )
    )
    return Section(
        "daily", "Daily spend", (said, daily_table(report)), ("daily_cost", "free_vs_paid")
    )


def services_table(report: Report) -> Table:
    """A row a service, dearest first."""
    services = report.sections["service_analysis"]
    rows = sorted(services.items(), key=lambda item: (-item[1]["total_cost"].nanos, item[0]))
    return Table(
        "services",
        "Services",
        (
            "Service",
            "Spend",
            "Share of spend",
            "Requests",
            "Paid",
            "Free-source rate",
            "Cost per request",
            "Spend trend",
        ),
        tuple(
            (
                Name(name),
                f["total_cost"],
                f["share_of_cost"],
                f["total_requests"],
                f["paid_requests"],
                f["free_source_success_rate"],
                _unit(f["average_cost_per_request"]),
                f["cost_trend"],
            )
            for name, f in rows
        ),
        note=UNIT_PRICE_NOTE,
        empty="No service made a request in this period.",
    )


def _service_sources(report: Report) -> Table:
    raw = report.sections.get("appendices", {}).get("raw_data")
    if raw is not None:
        return Table(
            "service_sources",
            "Spend by service and source",
            ("Service", "Source", "Spend", "Requests", "Paid", "Cost per request"),
            tuple(
                (
                    Name(r["service"]),
                    Name(r["source"]),
                    r["total_cost"],
                    r["total_requests"],
                    r["paid_requests"],
                    _unit(r["average_cost_per_request"]),
                )
                for r in raw
            ),
            empty="No request in this period.",
        )
    services = report.sections["service_analysis"]
    return Table(
        "service_sources",
        "Spend by service and source",
        ("Service", "Source", "Spend"),
        tuple(
            (Name(name), Name(source), cost)
            for name, f in sorted(services.items())
            for source, cost in f["cost_by_source"].items()
        ),
        empty="No request in this period.",
    )


def _services(report: Report) -> Section:
    return Section(
        "services",
        "Services",
        (services_table(report), _service_sources(report)),
        ("cost_by_service",),
    )


def _sources(report: Report) -> Section:
    o = report.sections["cost_optimization_analysis"]
    free, cache, batch = (
        o["free_sources_performance"],
        o["cache_efficiency"],
        o["batch_processing_usage"],
    )
    return Section(
        "sources",
        "Free sources, cache and batches",
        (
            Table(
                "free_sources",
                "Free sources",
                ("Source", "Requests", "Success rate", "Free-source success rate"),
                tuple(
                    (
                        Name(r["source"]),
                        r["requests"],
                        r["success_rate"],
                        r["free_source_success_rate"],
                    )
                    for r in free["by_source"]
                ),
                note=f"Free sources answered {free['free_share'].value:.1%} of all requests.",
                empty="No free source answered a request in this period.",
            ),
            Table(
                "cache",
                "Cache",
                ("Source", "Requests", "Cache hits", "Cache-hit rate", "Spend"),
                tuple(
                    (
                        Name(r["source"]),
                        r["requests"],
                        r["cache_hits"],
                        r["cache_hit_rate"],
                        r["total_cost"],
                    )
                    for r in cache["by_source"]
                ),
            ),
            _figures(
                "batches",
                "Batches",
                [
                    ("Requests in batches", batch["batched_requests"], ""),
                    ("Share of requests", batch["batched_share"], ""),
                    ("Spend in batches", batch["batched_cost"], ""),
                    ("Cost per request in a batch", _unit(batch["batched_cost_per_request"]), ""),
                    ("Cost per request alone", _unit(batch["unbatched_cost_per_request"]), ""),
                ],
            ),
        ),
        ("cost_by_source",),
    )


def _geography(report: Report) -> Section:
    geo = report.sections["cost_optimization_analysis"]["geographic_optimization"]
    if not geo["available"]:
        return Section("geography", "Where the money goes", (Paragraph(geo["reason"]),))
    cheapest, dearest = (geo[k] for k in ("cheapest_location", "dearest_location"))
    said = Paragraph(
        f"{geo['located_requests']:,} requests said where they were made "
        f"({geo['located_share'].value:.1%} of all)"
        + (
            f"; the cheapest place per request was {Name(cheapest).words}, the dearest "
            f"{Name(dearest).words}."
            if cheapest is not None and dearest is not None
            else "."
        )
    )
    table = Table(
        "geography",
        "Spend by location",
        ("Location", "Requests", "Spend", "Cost per request", "Paid", "Free share"),
        tuple(
            (
                Name(r["location"]),
                r["requests"],
                r["total_cost"],
                _unit(r["cost_per_request"]),
                r["paid_requests"],
                r["free_share"],
            )
            for r in geo["by_location"]
        ),
        note=UNIT_PRICE_NOTE,
    )
    return Section("geography", "Where the money goes", (said, table))


TREND_NAMES = {
    "cost_trend": "Spend",
    "volume_trend": "Requests",
    "efficiency_trend": "Cost per request",
    "quality_trend": "Quality score",
    "free_source_trend": "Free-source rate",
}


def _trends(report: Report) -> Section:
    lines = report.sections["trend_analysis"]
    table = Table(
        "trends",
        "Trends",
        ("Measure", "Trend", "Fit (r)", "p-value", "Days"),
        tuple(
            (
                TREND_NAMES.get(key, key),
                _words(t),
                t.get("r"),
                t.get("p_value"),
                t.get("points"),
            )
            for key, t in lines.items()
        ),
        note="Least-squares lines through the complete days; r near 0 is no trend.",
    )
    return Section("trends", "Trends", (table,))


def _about(report: Report) -> Section:
    meta = report.sections["report_metadata"]
    title = "Monthly cost report" if report.kind == "monthly" else "Weekly budget report"
    rows: list[tuple[str, Value, str]] = [
        ("Report", title, ""),
        ("Period", report_period(report), ""),
        ("Generated at", _when(meta["generated_at"]), ""),
        ("Complete", meta["complete"], "" if meta["complete"] else "the period is not over"),
        ("Store", meta["store"], ""),
        ("Time zone", meta["timezone"], "days run from the reset hour in this zone"),
        ("Currency", meta["currency"], ""),
        ("Schema version", meta["schema_version"], "of the JSON report"),
    ]
    blocks: list[Block] = [_figures("about", "About this report", rows)]
    appendices = report.sections.get("appendices")
    if appendices is not None:
        blocks += [
            Paragraph(appendices["methodology"], title="Methodology"),
            Paragraph(
                "Every figure is read from:", tuple(appendices["data_sources"]), "Data sources"
            ),
        ]
    return Section("about", "About this report", tuple(blocks))


def sections(report: Report) -> list[Section]:
    """The report laid out: the executive summary, then its parts, then its particulars."""
    parts: list[Callable[[Report], Section]]
    if report.kind == "monthly":
        parts = [_summary, _forecast, _daily, _services, _sources, _geography, _trends]
    else:
        parts = [_summary, _daily, _services]
    out = [part(report) for part in parts]
    out += [
        Section("recommendations", "Recommendations", (recommendations_table(report),)),
        Section("alerts", "Alerts", (alerts_table(report),)),
        _about(report),
    ]
    return out


# -- exact text (CSV) -------------------------------------------------------------------------


def text(value: Any) -> str:
    """A cell as exact, machine-readable text (CSV): money as decimal text, shares as
    fractions, dates and times ISO 8601, a phrase in its exact words, nothing as an empty
    string."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, Share):
        return repr(value.value)
    if isinstance(value, date):  # and datetime
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
