"""A report's charts: their data (pure, from the days and summary a report is built of) and
their PNG images for the PDF, drawn by matplotlib.

matplotlib draws on its Agg canvas directly (no `pyplot`, no display, no global state), so
rendering is safe in a server thread and on a machine without a screen. Money is plotted in
currency units as floats: a picture has no exact amounts; the tables beside it do.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import date

from spendgate.analytics.summaries import Day, MonthlyAssessment, Summary
from spendgate.money import Nanos, currency_symbol, from_nanos
from spendgate.reports.values import Chart, Money, Name, Series
from spendgate.rollups import Tally

WIDTH_INCHES = 7.0
HEIGHT_INCHES = 3.0
DPI = 150
MAX_TICKS = 16  # date labels beyond this are thinned out


def _daily(days: Sequence[Day], limit: Nanos | None) -> list[Chart]:
    dates = tuple(d.day.isoformat() for d in days)
    cost = Series("cost", tuple(Money(d.total.cost) if d.data else None for d in days))
    budget = () if limit is None else (Series("daily budget", tuple(Money(limit) for _ in days)),)
    return [
        Chart("daily_cost", "Daily cost against budget", "line", dates, (cost, *budget), "cost"),
        Chart(
            "free_vs_paid",
            "Free and paid requests by day",
            "stacked_bar",
            dates,
            (
                Series("free", tuple(d.total.free if d.data else None for d in days)),
                Series("paid", tuple(d.total.paid if d.data else None for d in days)),
            ),
            "requests",
        ),
    ]


def _breakdown(name: str, title: str, tallies: Mapping[str, Tally]) -> Chart:
    return Chart(
        name,
        title,
        "bar",
        tuple(tallies),
        (Series("cost", tuple(Money(t.cost) for t in tallies.values())),),
        "cost",
    )


def forecast_chart(
    days: Sequence[Day], budget: Nanos | None, assessment: MonthlyAssessment | None
) -> Chart:
    """Month-to-date spend by day; with the current month's assessment, the projection from
    today to the month's end; the monthly budget as a line."""
    dates = [d.day.isoformat() for d in days]
    actual: list[Money | None] = []
    running = 0
    for d in days:
        running += d.total.cost
        actual.append(Money(running) if d.data else None)  # no line before the first event
    series = [Series("actual", tuple(actual))]
    if assessment is not None and (path := assessment.cumulative_nanos()):
        first = assessment.local_day.toordinal()
        known = [d for d in dates if date.fromisoformat(d).toordinal() < first]
        dates = known + [date.fromordinal(first + i).isoformat() for i in range(len(path))]
        actual = actual[: len(known)] + [None] * len(path)
        series = [
            Series("actual", tuple(actual)),
            Series("projected", tuple([None] * len(known) + [Money(v) for v in path])),
        ]
    if budget is not None:
        series.append(Series("monthly budget", tuple(Money(budget) for _ in dates)))
    return Chart(
        "forecast", "Month-to-date spend and forecast", "line", tuple(dates), tuple(series), "cost"
    )


def report_charts(
    summary: Summary, days: Sequence[Day], limit: Nanos | None, extra: Sequence[Chart] = ()
) -> tuple[Chart, ...]:
    """Daily cost against the budget, cost by service and by source, free and paid requests
    by day, then `extra`."""
    daily_cost, free_vs_paid = _daily(days, limit)
    return (
        daily_cost,
        _breakdown("cost_by_service", "Cost by service", summary.by_service()),
        _breakdown("cost_by_source", "Cost by source", summary.by_source()),
        free_vs_paid,
        *extra,
    )


# -- images -----------------------------------------------------------------------------------


def plotted(values: Sequence[Money | int | float | None]) -> list[float]:
    """A series' values as plot points: money in currency units, gaps as NaN."""
    out = []
    for v in values:
        if v is None:
            out.append(float("nan"))
        elif isinstance(v, Money):
            out.append(float(from_nanos(v.nanos)))  # presentation only: see the module doc
        else:
            out.append(float(v))
    return out


X_LABELS = {"cost_by_service": "Service", "cost_by_source": "Source"}


def tick(category: str) -> str:
    """A category as an axis label: a day as `1 Oct`, a name in words."""
    try:
        day = date.fromisoformat(category)
    except ValueError:
        return Name(category).words
    return f"{day.day} {day:%b}"


def png(chart: Chart, currency: str) -> bytes:
    """`chart` as a PNG image, `WIDTH_INCHES` x `HEIGHT_INCHES` at `DPI`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    x = list(range(len(chart.categories)))
    if chart.kind == "line":
        for s in chart.series:
            style = "--" if s.name in ("daily budget", "monthly budget") else "-"
            ax.plot(
                x,
                plotted(s.values),
                style,
                marker="." if len(x) < 40 else "",
                label=s.name.capitalize(),
            )
    else:
        width = 0.8 / (1 if chart.kind == "stacked_bar" else max(1, len(chart.series)))
        bottom = [0.0] * len(x)
        for i, s in enumerate(chart.series):
            ys = [0.0 if math.isnan(y) else y for y in plotted(s.values)]  # no value: 0
            if chart.kind == "stacked_bar":
                ax.bar(x, ys, width, bottom=bottom, label=s.name.capitalize())
                bottom = [a + b for a, b in zip(bottom, ys, strict=True)]
            else:
                ax.bar([p + i * width for p in x], ys, width, label=s.name.capitalize())
    ax.set_title(chart.title, fontsize=10)
    step = max(1, -(-len(x) // MAX_TICKS))
    labels = [tick(c) for c in chart.categories]
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel(X_LABELS.get(chart.name, "Day"), fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    if chart.y_label == "cost":
        symbol = currency_symbol(currency) or ""
        ax.set_ylabel(f"Spend ({currency})", fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{symbol}{v:,.2f}"))
    else:
        ax.set_ylabel(chart.y_label.capitalize(), fontsize=8)
    ax.set_ylim(bottom=0)
    if not x:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    elif len(chart.series) > 1:
        ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
