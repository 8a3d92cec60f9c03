"""`spendgate status` and the figures: live, summary, daily, performance, weekly, trends,
forecast, opportunities."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from spendgate.cli.shell import (
    ConfigOption,
    DaysOption,
    DbOption,
    JsonOption,
    ServiceOption,
    analysis,
    app,
    budget_table,
    console,
    open_gate,
    show,
)
from spendgate.store import DEFAULT_URL

# -- status -------------------------------------------------------------------------------


@app.command()
def status(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show every budget: spent, reserved, remaining and level in its current window."""
    with open_gate(db, config) as gate:
        rows = gate.status()
        if as_json:
            console.print_json(json.dumps([r.to_dict() for r in rows]))
            return
        console.print(budget_table(rows, gate.config.currency))


# -- analytics ----------------------------------------------------------------------------


@app.command()
def live(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Live metrics: today's spend, budget remaining, rates, projection, runway, status."""
    with analysis(db, config) as analyst:
        figures = analyst.live().to_dict()
        show(f"Live metrics (as of {figures['as_of']})", figures, as_json)


@app.command()
def summary(
    period: Annotated[str, typer.Argument(help="today, week or month.")] = "today",
    since: Annotated[str | None, typer.Option(help="First day of a range (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Day after the range (YYYY-MM-DD).")] = None,
    service: ServiceOption = None,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cost, requests, free-source and cache-hit rates, cost by source: for a period or range."""
    with analysis(db, config) as analyst:
        ranged = since is not None or until is not None
        s = analyst.summary(None if ranged else period, since=since, until=until, service=service)
        figures = s.to_dict()
        show(
            f"Summary {figures['period']['start']} to {figures['period']['end']}", figures, as_json
        )


@app.command()
def daily(
    day: Annotated[str, typer.Argument(metavar="DATE", help="The day, YYYY-MM-DD.")],
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One day's breakdown: totals, services, sources and each hour."""
    with analysis(db, config) as analyst:
        show(f"Day {day}", analyst.daily(day).to_dict(), as_json)


@app.command()
def performance(
    service: Annotated[str, typer.Argument(help="The service.")],
    days: DaysOption = 7,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """A service's cost performance over its last N days, with trends."""
    with analysis(db, config) as analyst:
        figures = analyst.service_performance(service, days).to_dict()
        show(f"{service}: last {days} days", figures, as_json)


@app.command()
def weekly(
    end: Annotated[
        str | None, typer.Option(help="Last day of the week (default yesterday).")
    ] = None,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The weekly budget report: spend against budget, efficiency, opportunities, trends."""
    with analysis(db, config) as analyst:
        show("Weekly budget report", analyst.weekly_report(end).to_dict(), as_json)


PeriodOption = Annotated[
    str,
    typer.Option(
        "--days",
        "--time-period",
        help="Window: days (1 to 366) or the seed's period: 3_months, 2_weeks, 90_days.",
    ),
]
StableRuleOption = Annotated[
    str,
    typer.Option(
        "--stable-rule",
        help="relative (spendgate's, unit-free) or seed (|slope| < 0.01 per day).",
    ),
]


@app.command()
def trends(
    days: PeriodOption = "30",
    service: ServiceOption = None,
    stable_rule: StableRuleOption = "relative",
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Trend lines (direction, strength, slope, correlation, p) over the last N complete
    days, with the seed's predictions (next month's cost from the forecast)."""
    with analysis(db, config) as analyst:
        found = analyst.trends(days, service=service, stable_rule=stable_rule)
        show(f"Trends over {found['days']} days", found, as_json)


@app.command()
def forecast(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """The month-end forecast (method, confidence, interval, why), each method beside it, the
    assessment against the monthly budget."""
    with analysis(db, config) as analyst:
        figures = analyst.monthly_forecast().to_dict()
        show(f"Forecast for {figures['month']} (as of {figures['as_of']})", figures, as_json)


@app.command()
def opportunities(
    days: DaysOption = 7,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ways to spend less, each with the saving it names, largest first."""
    with analysis(db, config) as analyst:
        found = [o.to_dict() for o in analyst.opportunities(days)]
        if as_json:
            console.print_json(json.dumps(found))
            return
        table = Table(title=f"Optimization opportunities (last {days} days)", title_justify="left")
        amounts = (f"saving in {days} days", "a week", "a month")  # one rate, three horizons
        for name in ("kind", *amounts, "what to do"):
            table.add_column(name, justify="right" if name in amounts else "left")
        for o in found:
            row = (o["saving"], o["weekly_saving"], o["monthly_saving"])
            table.add_row(o["kind"], *row, o["summary"])
        console.print(table if found else "no opportunities found in the window")
