"""The `spendgate` command: a thin shell over the library. Parse, call, render.

Every command takes `--db URL` (env `SPENDGATE_DB`, default `sqlite:///spendgate.db`) and
`--config PATH` (env `SPENDGATE_CONFIG`; default `./spendgate.toml` if it exists, else the
seed's defaults). Errors print one line saying what is wrong and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spendgate import config as config_module
from spendgate import llm
from spendgate.clock import system_clock
from spendgate.config import Config
from spendgate.errors import NotFoundError, SpendgateError, StoreError, ValidationError
from spendgate.gate import BudgetStatus, Gate
from spendgate.money import format_money
from spendgate.store import DEFAULT_URL, migrate, open_store
from spendgate.store.sqlite import sqlalchemy_url
from spendgate.windows import EPOCH, from_micros, to_micros

app = typer.Typer(
    help="spendgate: budgets that refuse a paid API call before the money is spent.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
budgets_app = typer.Typer(help="Budgets from the configuration.", no_args_is_help=True)
prices_app = typer.Typer(help="Sources and their prices.", no_args_is_help=True)
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


@contextmanager
def failures() -> Iterator[None]:
    """Turn spendgate's errors into one line on stderr and exit status 2."""
    try:
        yield
    except SpendgateError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def main() -> None:
    """Entry point of the `spendgate` script."""
    app()


# -- status -------------------------------------------------------------------------------


@app.command()
def status(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show every budget: spent, reserved, remaining and level in its current window."""
    with failures(), Gate.open(db, config=load_config(config)) as gate:
        rows = gate.status()
        if as_json:
            console.print_json(json.dumps([r.to_dict() for r in rows]))
            return
        console.print(budget_table(rows, gate.config.currency))


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
        used = Decimal(r.balance.used) / Decimal(b.limit)
        table.add_row(
            b.name,
            str(b.scope),
            f"{b.window.kind} {b.window.reset_hour:02d}:00 {b.window.tz}",
            format_money(b.limit, currency),
            format_money(r.spent, currency),
            format_money(r.reserved, currency),
            format_money(r.remaining, currency),
            f"{used:.1%}",
            f"[{colour[r.level]}]{r.level}[/]",
        )
    return table


# -- analytics ----------------------------------------------------------------------------

DaysOption = Annotated[int, typer.Option("--days", help="Window in days (1 to 366).")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="One service only.")]


def _show(title: str, figures: dict[str, Any], as_json: bool) -> None:
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


def _flatten(figures: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(figures, dict):
        if set(figures) == {"value", "as_of"}:  # a live figure: its value (as_of is shown once)
            return _flatten(figures["value"], prefix)
        return [row for k, v in figures.items() for row in _flatten(v, f"{prefix}{k}.")]
    if isinstance(figures, list):
        if all(not isinstance(v, dict | list) for v in figures):
            return [(prefix.rstrip("."), ", ".join(str(v) for v in figures))]
        return [row for i, v in enumerate(figures) for row in _flatten(v, f"{prefix}{i}.")]
    if isinstance(figures, float):
        return [(prefix.rstrip("."), f"{figures:.4g}")]
    return [(prefix.rstrip("."), "-" if figures is None else str(figures))]


@contextmanager
def analysis(db: str, config: Path | None) -> Iterator[Any]:
    """An `Analyst` on the store at `db`, with errors shown as one line."""
    with failures(), Gate.open(db, config=load_config(config)) as gate:
        yield _analyst(gate)


def _analyst(gate: Gate) -> Any:
    from spendgate.analytics import Analyst  # statsmodels loads only for the commands that use it

    return Analyst(gate)


@app.command()
def live(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Live metrics: today's spend, budget remaining, rates, projection, runway, status."""
    with analysis(db, config) as analyst:
        figures = analyst.live().to_dict()
        _show(f"Live metrics (as of {figures['as_of']})", figures, as_json)


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
        _show(
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
        _show(f"Day {day}", analyst.daily(day).to_dict(), as_json)


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
        _show(f"{service}: last {days} days", figures, as_json)


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
        _show("Weekly budget report", analyst.weekly_report(end).to_dict(), as_json)


@app.command()
def trends(
    days: DaysOption = 30,
    service: ServiceOption = None,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Trend lines (direction, strength, slope, r, p) over the last N complete days."""
    with analysis(db, config) as analyst:
        _show(f"Trends over {days} days", analyst.trends(days, service=service), as_json)


@app.command()
def forecast(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Month-end projections by three methods, the one chosen by backtest, the assessment."""
    with analysis(db, config) as analyst:
        figures = analyst.monthly_forecast().to_dict()
        _show(f"Forecast for {figures['month']} (as of {figures['as_of']})", figures, as_json)


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
        for name in ("kind", "saving", "a month", "what to do"):
            table.add_column(name, justify="right" if name in ("saving", "a month") else "left")
        for o in found:
            table.add_row(o["kind"], o["saving"], o["monthly_saving"], o["summary"])
        console.print(table if found else "no opportunities found in the window")


# -- reports ------------------------------------------------------------------------------

FormatsOption = Annotated[
    str, typer.Option("--format", help="Comma-separated formats: pdf, xlsx, csv, json.")
]
OutOption = Annotated[Path, typer.Option("--out", help="Folder to write to (created if missing).")]
ALL_FORMATS = "pdf,xlsx,csv,json"


@report_app.command("monthly")
def report_monthly(
    month: Annotated[str, typer.Argument(help="The month, YYYY-MM (up to the current one).")],
    formats: FormatsOption = ALL_FORMATS,
    out: OutOption = Path("."),
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """The monthly cost report: summary, days, services, optimization, trends, forecast."""
    _report(db, config, formats, out, lambda reporter: reporter.monthly(month))


@report_app.command("weekly")
def report_weekly(
    end: Annotated[
        str | None, typer.Option(help="Last day of the week, YYYY-MM-DD (default yesterday).")
    ] = None,
    formats: FormatsOption = ALL_FORMATS,
    out: OutOption = Path("."),
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """The weekly budget report: spend against budget, efficiency, opportunities, trends."""
    _report(db, config, formats, out, lambda reporter: reporter.weekly(end))


def _report(db: str, config: Path | None, formats: str, out: Path, build: Any) -> None:
    """Check the formats and folder, read and build the report, write it with a progress
    bar, and list the files written."""
    from spendgate import reports  # matplotlib and reportlab load only for reports

    with analysis(db, config) as analyst:
        chosen = reports.parse_formats(formats)
        reports.check_folder(out)
        report = build(reports.Reporter(analyst))
        with Progress(
            TextColumn("writing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(chosen[0], total=len(chosen) + 1)
            steps = [*chosen[1:], "files"]

            def advance(_: str) -> None:
                bar.update(task, advance=1, description=steps.pop(0) if steps else "")

            paths = reports.write(report, chosen, out, progress=advance)
    for path in paths:
        console.file.write(f"{path}\n")  # whole, never wrapped: scripts read these lines


# -- record -------------------------------------------------------------------------------


@app.command()
def record(
    service: Annotated[str, typer.Argument(help="The calling service, e.g. enrichment.")],
    source: Annotated[str, typer.Argument(help="The source used, e.g. google_maps_optimized.")],
    cost: Annotated[str | None, typer.Option(help="What the call cost (else priced).")] = None,
    unit: Annotated[list[str] | None, typer.Option("--unit", help="UNIT=QTY, repeatable.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE, repeatable.")
    ] = None,
    request_id: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    failed: Annotated[str | None, typer.Option(help="Record a failure with this reason.")] = None,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """Record one use of a source (idempotent by --request-id)."""
    with failures(), Gate.open(db, config=load_config(config)) as gate:
        result = gate.record(
            service,
            source,
            cost=cost,
            units=_pairs(unit, "--unit"),
            labels=_pairs(label, "--label"),
            request_id=request_id,
            success=failed is None,
            failure_reason=failed,
        )
        shown = (
            "unpriced" if result.cost is None else format_money(result.cost, gate.config.currency)
        )
        console.print(f"{result.status}: {result.request_id} ({shown})", highlight=False)


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            errors.print(f"[red]error:[/red] {option}: got {item!r}; expected KEY=VALUE")
            raise typer.Exit(2)
        out[key] = value
    return out


# -- budgets and prices --------------------------------------------------------------------


@budgets_app.command("list")
def budgets_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the configured budgets."""
    with failures():
        cfg = load_config(config)
    if as_json:
        console.print_json(json.dumps([b.to_dict() for b in cfg.budgets]))
        return
    table = Table("budget", "scope", "limit", "emergency", "window", "thresholds", "hard")
    for b in cfg.budgets:
        ladder = ", ".join(f"{t.action} {t.fraction:%}" for t in b.thresholds)
        table.add_row(
            b.name,
            str(b.scope),
            format_money(b.limit, cfg.currency),
            format_money(b.emergency, cfg.currency),
            f"{b.window.kind} {b.window.tz} {b.window.reset_hour:02d}:00",
            ladder,
            "yes" if b.hard else "no",
        )
    console.print(table)


@prices_app.command("list")
def prices_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the configured sources and their current prices."""
    with failures():
        cfg = load_config(config)
    rows: list[dict[str, Any]] = []
    for name, pricing in sorted(cfg.prices.sources.items()):
        for version in pricing.versions or (None,):
            rows.append(
                {
                    "source": name,
                    "effective_from": version.effective_from.isoformat() if version else None,
                    "price": _describe(version)
                    if version
                    else ("unpriced (allowed)" if pricing.allow_unpriced else "none"),
                }
            )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("source", "effective from", "price")
    for row in rows:
        table.add_row(row["source"], row["effective_from"] or "-", row["price"])
    console.print(table)


@prices_app.command("import-litellm")
def prices_import_litellm(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A litellm price table (default: the installed one)."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Only models matching, e.g. 'gpt-4o*'.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the TOML here.")] = None,
) -> None:
    """Print (or write) [sources] tables for LLMs, priced from litellm's table, offline."""
    with failures():
        sources = llm.litellm_prices(file, models=model)
        text = llm.to_toml(sources)
        if out is None:
            console.file.write(text)
            return
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(text)
            tmp.replace(out)  # whole or not at all
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{out}: cannot write ({exc.strerror})") from None
        errors.print(f"{len(sources)} models written to {out}", highlight=False)


def _describe(price: Any) -> str:
    if price.free:
        return "free"
    parts = []
    for rate in price.rates:
        if rate.flat:
            parts.append(f"{rate.tiers[0].rate.normalize():f}/{rate.unit}")
        else:
            steps = ", ".join(
                f"{t.rate.normalize():f} up to {t.up_to:,}"
                if t.up_to is not None
                else f"{t.rate.normalize():f} after"
                for t in rate.tiers
            )
            parts.append(f"{rate.unit}: {steps} per {rate.period.kind if rate.period else '?'}")
    return "; ".join(parts)


# -- database -----------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_URL) -> None:
    """Bring the database schema up to date."""
    with failures():
        if db.startswith(("postgresql://", "postgres://")):
            open_store(db).close()  # creates the schema and migrates it, one host at a time
            url = _sqlalchemy(db)
        else:
            url = _sqlalchemy(db)
            migrate.upgrade(url)
        console.print(f"schema at {migrate.current(url)} (head {migrate.head()})")


@db_app.command("current")
def db_current(db: DbOption = DEFAULT_URL) -> None:
    """Show the database's schema revision."""
    with failures():
        revision = migrate.current(_sqlalchemy(db, must_exist=True))
        console.print(f"{revision or 'none (empty database)'} (head {migrate.head()})")


def _sqlalchemy(url: str, *, must_exist: bool = False) -> str:
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        from spendgate.store.postgres import sqlalchemy_url as postgres_url

        return postgres_url(url)
    if scheme != "sqlite" or not sep:
        raise ValidationError(
            "--db", url, "a store URL such as sqlite:///spendgate.db or postgresql://HOST/DB"
        )
    path = Path(rest.removeprefix("/").split("?")[0])
    if not path.parent.is_dir():
        raise StoreError(f"{path}: folder {path.parent} does not exist")
    if must_exist and not path.exists():
        raise StoreError(f"{path}: no such database (spendgate db upgrade creates it)")
    return sqlalchemy_url(str(path))


# -- server -------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="SPENDGATE_HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(envvar="SPENDGATE_PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8765,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """Serve the REST API, the live WebSocket and /metrics (until Ctrl-C)."""
    from spendgate import serve as serving
    from spendgate.server import ServerSettings

    with failures():
        settings = ServerSettings(host=host, port=port, db=db)
        serving.run(settings, load_config(config), echo=_say)


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


ScopeOption = Annotated[str, typer.Option("--scope", help="read, write or admin.")]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. ci or enrichment.")],
    scope: ScopeOption = "read",
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Limit the key to this service (repeatable)."),
    ] = None,
    db: DbOption = DEFAULT_URL,
) -> None:
    """Make an API key. Its token is printed this once; the store keeps only a hash."""
    from spendgate.keys import create_key

    with failures():
        store = open_store(db)
        try:
            token, key = create_key(
                store, name, scope, services=service, actor="cli", now=to_micros(system_clock())
            )
        finally:
            store.close()
    errors.print(f"key {key.key_id} ({key.scope}) made; its token, shown this once:")
    console.file.write(token + "\n")


@keys_app.command("list")
def keys_list(db: DbOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """List API keys (ids, names, scopes, services; never secrets)."""
    from spendgate.store.base import key_record

    with failures():
        store = open_store(db)
        try:
            keys = store.keys()
        finally:
            store.close()
    rows = [key_record(k) for k in keys]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("key", "name", "scope", "services", "created", "revoked")
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            k.scope,
            ", ".join(k.services) if k.services is not None else "all",
            from_micros(k.created_at).strftime("%Y-%m-%d %H:%M"),
            "-" if k.revoked_at is None else from_micros(k.revoked_at).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see keys list).")],
    db: DbOption = DEFAULT_URL,
) -> None:
    """Revoke an API key: every request with it fails from then on."""
    with failures():
        store = open_store(db)
        try:
            key = store.revoke_key(key_id, actor="cli", at=to_micros(system_clock()))
        finally:
            store.close()
        if key is None:
            raise NotFoundError("key", key_id)
    console.print(f"key {key_id} revoked", highlight=False)


# -- alerts -------------------------------------------------------------------------------


@alerts_app.command("list")
def alerts_list(
    state: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Alert history, newest first: rule, scope, severity, state, when, notifications."""
    from spendgate.alerts.notices import alert_dict

    with failures(), Gate.open(db, config=load_config(config)) as gate:
        if state not in (None, "firing", "resolved"):
            raise ValidationError("--state", state, "firing or resolved")
        found = [alert_dict(a) for a in gate.store.alerts(state=state, limit=limit)]  # type: ignore[arg-type]
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table("fired", "severity", "state", "alert", "acknowledged", "sent", title="Alerts")
    for a in found:
        table.add_row(
            a["fired_at"][:19],
            a["severity"],
            a["state"],
            a["title"],
            a["acknowledged_by"] or "-",
            str(a["notifications_sent"]),
        )
    console.print(table if found else "no alerts")


@alerts_app.command("check")
def alerts_check(
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Also deliver due notifications.")
    ] = True,
) -> None:
    """Judge every alert rule once and deliver what is due (for cron, without a server)."""
    from spendgate.alerts import AlertEngine, Dispatcher, channels

    with failures(), Gate.open(db, config=load_config(config)) as gate:
        channels.validate(gate.config.alerts)
        outcome = AlertEngine(gate).evaluate()
        sent = Dispatcher(gate).run_once() if deliver else None
    console.print(
        f"fired {len(outcome.fired)}, resolved {len(outcome.resolved)}, "
        f"notifications queued {outcome.enqueued}"
        + (f", delivered {sent.delivered}, failed {sent.failed}" if sent else ""),
        highlight=False,
    )


@alerts_app.command("test")
def alerts_test(
    channel: Annotated[str, typer.Argument(help="A channel name from [alerts.channels].")],
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """Send a test notification through one channel, now."""
    from spendgate.alerts import channels
    from spendgate.alerts.notices import test_message

    with failures(), Gate.open(db, config=load_config(config)) as gate:
        settings = gate.config.alerts
        target = settings.channel(channel)
        channels.validate(settings)
        channels.send(target, test_message(target, settings, to_micros(gate.clock())))
    console.print(f"test notification delivered to {channel}", highlight=False)


# -- demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    db: Annotated[str, typer.Option("--db", help="Store URL (recreated each run).")] = (
        "sqlite:///spendgate-demo.db"
    ),
    requests: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Requests to simulate.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    serve_after: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then serve the API on the demo store, with live traffic, until Ctrl-C."
        ),
    ] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for --serve.")] = 8765,
) -> None:
    """Simulate the seed's five services, free sources first, against the embedded store."""
    from spendgate import demo as workload
    from spendgate.testing import FrozenClock

    path = db.partition("://")[2].removeprefix("/").split("?")[0] if db.startswith("sqlite") else ""
    if path and Path(path).exists() and not Path(path).name.startswith("spendgate-demo"):
        # The demo starts from an empty store; it only ever deletes files it named itself.
        errors.print(
            f"[red]error:[/red] --db: {path} exists; the demo needs a new file "
            "(or one named spendgate-demo*.db, which it recreates)"
        )
        raise typer.Exit(2)
    for suffix in ("", "-wal", "-shm", ".migrate-lock"):
        if path:
            Path(path + suffix).unlink(missing_ok=True)
    # Served afterwards, the simulated day ends now, and live traffic carries on from it.
    start = workload.start_of_today() if not serve_after else system_clock() - workload.DAY
    clock = FrozenClock(start)
    with failures(), Gate.open(db, config=workload.demo_config(), clock=clock) as gate:
        console.print(
            f"spendgate demo: {requests} requests from {len(workload.SERVICES)} services into {db}",
            highlight=False,
        )
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=requests)
            done = [0]

            def advance(n: int) -> None:
                bar.advance(task, n)
                done[0] += n
                if done[0] % 100 == 0:  # the figures as they change, read from the store
                    bar.update(task, description=_live_line(gate))

            tally = workload.run(gate, clock, requests, seed=seed, progress=advance)
        console.print(budget_table(gate.status(), gate.config.currency))
        console.print(service_table(gate))
        status = _analyst(gate).live().status()
        console.print(
            f"status: budget {status['budget_health']}, free sources "
            f"{status['free_source_performance']}, {status['cost_efficiency']}",
            highlight=False,
        )
        decisions = ", ".join(f"{k}: {v}" for k, v in sorted(tally.decisions.items()))
        console.print(f"paid-call decisions: {decisions}", highlight=False)
        if tally.stream is not None:
            s = tally.stream
            console.print(
                f"market-data stream: {s.events_processed:,} messages, "
                f"{s.bytes_processed / 2**20:.1f} MB, {s.runtime_hours:.1f} h connected, "
                f"{format_money(s.estimated_cost)}, level {s.level}; "
                f"levels: {'; '.join(tally.stream_levels) or 'normal throughout'}",
                highlight=False,
            )
        console.print("next: spendgate status --db " + db, highlight=False)
    if serve_after:
        from spendgate import serve as serving
        from spendgate.server import ServerSettings

        with failures():
            settings = ServerSettings(port=port, db=db)
            live_gate = Gate.open(db, config=workload.demo_config())
            serving.run(
                settings,
                live_gate.config,
                echo=_say,
                gate=live_gate,
                workload=workload.run_live,
            )


def _live_line(gate: Gate) -> str:
    """One line of budgets and levels for the demo's progress bar."""
    parts = [f"{s.budget.name} {format_money(s.spent)} ({s.level})" for s in gate.status()]
    return f"{gate.clock():%H:%M} " + " | ".join(parts)


def service_table(gate: Gate) -> Table:
    """Per-service requests, free-source success rate and spend, read from the rollups."""
    now = gate.clock()
    totals = _analyst(gate).summary(None, since=EPOCH, until=now + timedelta(days=1))
    as_of = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    table = Table(
        title=f"Services ({totals.total.requests} events, as of {as_of})", title_justify="left"
    )
    for name in (
        "service",
        "requests",
        "served free",
        "paid calls",
        "unpriced",
        "spend",
        "cost/request",
    ):
        table.add_column(name, justify="left" if name == "service" else "right")
    for service, t in totals.by_service().items():
        table.add_row(
            service,
            str(t.requests),
            f"{t.free_source_success_rate:.1%}",
            str(t.paid),
            str(t.unpriced),  # counted apart: an unpriced call is not a $0 call
            format_money(t.cost),
            format_money(t.cost_per_request, places=5),
        )
    return table


if __name__ == "__main__":  # pragma: no cover
    main()
