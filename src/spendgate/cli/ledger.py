"""Recording, and what the configuration and the database hold: `record`, `budgets`,
`prices`, `db`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from spendgate import llm
from spendgate.cli.shell import (
    ConfigOption,
    DbOption,
    JsonOption,
    app,
    budgets_app,
    console,
    db_app,
    errors,
    failures,
    open_gate,
    parse_pairs,
    prices_app,
)
from spendgate.errors import StoreError, ValidationError
from spendgate.money import format_money
from spendgate.settings import Config
from spendgate.store import DEFAULT_URL, migrate, open_store
from spendgate.store.sqlite import sqlalchemy_url

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
    with open_gate(db, config) as gate:
        result = gate.record(
            service,
            source,
            cost=cost,
            units=parse_pairs(unit, "--unit"),
            labels=parse_pairs(label, "--label"),
            request_id=request_id,
            success=failed is None,
            failure_reason=failed,
        )
        shown = (
            "unpriced" if result.cost is None else format_money(result.cost, gate.config.currency)
        )
        console.print(f"{result.status}: {result.request_id} ({shown})", highlight=False)


# -- budgets and prices --------------------------------------------------------------------


@budgets_app.command("list")
def budgets_list(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """List the budgets in effect on the store: the file's, with the definitions stored in
    the store (made over the API or by any process) on top."""
    cfg, where = _in_effect(db, config)
    if as_json:
        console.print_json(json.dumps([b.to_dict() for b in cfg.budgets]))
        return
    table = Table(
        "budget",
        "scope",
        "limit",
        "emergency",
        "window",
        "thresholds",
        "hard",
        title=f"Budgets in effect on {where}",
        title_justify="left",
    )
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
def prices_list(
    db: DbOption = DEFAULT_URL, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """List the sources in effect on the store and their prices: the file's, with the
    definitions stored in the store on top."""
    cfg, where = _in_effect(db, config)
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
    table = Table(
        "source", "effective from", "price", title=f"Sources on {where}", title_justify="left"
    )
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


def _in_effect(db: str, config: Path | None) -> tuple[Config, str]:
    """The configuration in effect on the store at `db` (what every other command and the
    server run with), and where the store is (its URL without secrets)."""
    with open_gate(db, config) as gate:
        return gate.config, gate.store.where


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
    for tier in price.size_tiers:
        rates = ", ".join(f"{rate.normalize():f}/{unit}" for unit, rate in tier.rates)
        parts.append(f"above {tier.above:,} {'+'.join(price.size_units)}: {rates}")
    if price.variants:
        parts.append(f"variants: {', '.join(price.variants)}")
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
        from spendgate.store.postgres_url import sqlalchemy_url as postgres_url

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
