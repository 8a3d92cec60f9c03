"""What every `spendgate` command shares: the Typer app and its groups, the consoles,
the common options, configuration loading, one-line errors, and the tables several
commands print."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spendgate import config as config_module
from spendgate.budgets import BudgetStatus
from spendgate.clock import Clock, system_clock
from spendgate.errors import SpendgateError
from spendgate.gate import Gate
from spendgate.money import format_money, plain_number
from spendgate.settings import Config

app = typer.Typer(
    help="spendgate: budgets that refuse a paid API call before the money is spent.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
budgets_app = typer.Typer(help="Budgets in effect on a store.", no_args_is_help=True)
prices_app = typer.Typer(
    help="Sources and their prices in effect on a store.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys for the server.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts: history, a check for cron, test notifications.")
app.add_typer(db_app, name="db")
app.add_typer(alerts_app, name="alerts")
app.add_typer(keys_app, name="keys")
app.add_typer(budgets_app, name="budgets")
report_app = typer.Typer(
    help="Reports for finance: monthly and weekly, as PDF, Excel, CSV and JSON.",
    no_args_is_help=True,
)
app.add_typer(prices_app, name="prices")
app.add_typer(report_app, name="report")

# Piped or captured output (make, CI, logs) gets room for the tables' columns; a terminal
# keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, soft_wrap=True)  # one line per error, never broken

DbOption = Annotated[
    str, typer.Option("--db", envvar="SPENDGATE_DB", help="Store URL.", show_default=True)
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="SPENDGATE_CONFIG",
        help="spendgate.toml to read (default: ./spendgate.toml if present, else the seed's).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def load_config(path: Path | None) -> Config:
    """The configuration the command runs with: the file, then the seed's environment
    variables (DAILY_STREAMING_BUDGET, EMERGENCY_STOP_THRESHOLD, WEEKEND_STREAMING,
    COST_MONITORING_ENABLED) on top."""
    if path is not None:
        config = config_module.load(path)
    else:
        default = Path(config_module.DEFAULT_PATH)
        config = config_module.load(default) if default.is_file() else Config.seed()
    return config_module.apply_environment(config, os.environ)


clock: Clock = system_clock
"""The clock of every command's gate (`open_gate()`). Tests that run the CLI in-process
put a `FrozenClock` here (`monkeypatch.setattr(shell, "clock", clock)`), so that its
figures are read at the instant the test's other faces are."""


@contextmanager
def open_gate(db: str, config: Path | None) -> Iterator[Gate]:
    """The gate a command works through: on the store at `db`, with the configuration at
    `config` (see `load_config()`) and the CLI's `clock`; errors shown as one line."""
    with failures(), Gate.open(db, config=load_config(config), clock=clock) as gate:
        yield gate


@contextmanager
def failures() -> Iterator[None]:
    """Turn spendgate's errors into one line on stderr and exit status 2."""
    try:
        yield
    except SpendgateError as exc:
        # The message is text, not markup: "[[budgets]]" in it must print as it is.
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def main() -> None:
    """Entry point of the `spendgate` script."""
    app()


DaysOption = Annotated[int, typer.Option("--days", help="Window in days (1 to 366).")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="One service only.")]


def budget_table(rows: list[BudgetStatus], currency: str) -> Table:
    """The budgets as a Rich table, with the time the figures are as of."""
    as_of = rows[0].as_of.strftime("%Y-%m-%d %H:%M:%S UTC") if rows else "now"
    table = Table(title=f"Budgets (as of {as_of})", title_justify="left", expand=False)
    for name in (
        "budget",
        "scope",
        "window",
        "limit",
        "spent",
        "reserved",
        "remaining",
        "used",
        "level",
    ):
        table.add_column(
            name,
            justify="right"
            if name in ("limit", "spent", "reserved", "remaining", "used")
            else "left",
        )
    colour = {"normal": "green", "warn": "yellow", "degrade": "dark_orange", "stop": "red"}
    for r in rows:
        b = r.budget
        table.add_row(
            b.name,
            str(b.scope),
            f"{b.window.kind} {b.window.reset_hour:02d}:00 {b.window.tz}",
            format_money(b.limit, currency),
            format_money(r.spent_nanos, currency),
            format_money(r.reserved_nanos, currency),
            format_money(r.remaining_nanos, currency),
            f"{r.used_percent}%",
            f"[{colour[r.level]}]{r.level}[/]",
        )
    return table


def show(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """Print figures as JSON, or as a two-column table of their (flattened) keys."""
    if as_json:
        console.print_json(json.dumps(figures))
        return
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in _flatten(figures):
        table.add_row(key, value)
    console.print(table)


def _scoped(value: str, figure: dict[str, Any]) -> str:
    """A live figure's value with what it counts: a budget and its scope, or a scope."""
    if figure.get("budget"):
        return f"{value} (budget {figure['budget']}, scope {figure.get('scope')})"
    if figure.get("scope"):
        return f"{value} (scope {figure['scope']})"
    return value


def _flatten(figures: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(figures, dict):
        if {"value", "as_of"} <= set(figures):  # a live figure (as_of is shown once)
            return [
                (key, _scoped(value, figures)) for key, value in _flatten(figures["value"], prefix)
            ]
        return [row for k, v in figures.items() for row in _flatten(v, f"{prefix}{k}.")]
    if isinstance(figures, list):
        if all(not isinstance(v, dict | list) for v in figures):
            shown = ("-" if v is None else str(v) for v in figures)  # None: a day without data
            return [(prefix.rstrip("."), ", ".join(shown))]
        return [row for i, v in enumerate(figures) for row in _flatten(v, f"{prefix}{i}.")]
    if isinstance(figures, float):
        return [(prefix.rstrip("."), plain_number(figures, grouped=True))]
    return [(prefix.rstrip("."), "-" if figures is None else str(figures))]


@contextmanager
def analysis(db: str, config: Path | None) -> Iterator[Any]:
    """An `Analyst` on the store at `db`, with errors shown as one line."""
    with open_gate(db, config) as gate:
        yield analyst_of(gate)


def analyst_of(gate: Gate) -> Any:
    from spendgate.analytics import Analyst  # statsmodels loads only for the commands that use it

    return Analyst(gate)


def parse_pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            errors.print(f"[red]error:[/red] {option}: got {item!r}; expected KEY=VALUE")
            raise typer.Exit(2)
        out[key] = value
    return out


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)
