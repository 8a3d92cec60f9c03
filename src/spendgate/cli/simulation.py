"""`spendgate demo`: the seed's five services, free first, then (with --serve) live."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spendgate.cli import shell
from spendgate.cli.shell import (
    analyst_of,
    app,
    budget_table,
    console,
    errors,
    failures,
    say,
)
from spendgate.gate import Gate
from spendgate.money import format_money
from spendgate.windows import EPOCH

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
    # The simulated day ends now (served afterwards, live traffic carries on from it), on
    # budgets whose window holds all of it, whatever the hour. Now is the CLI's clock, which
    # a test pins (the stream follows the market: a Sunday streams nothing).
    day = workload.SimulatedDay.ending(shell.clock())
    config = workload.demo_config(day.reset_hour)
    clock = FrozenClock(day.start)
    with failures(), Gate.open(db, config=config, clock=clock) as gate:
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
        status = analyst_of(gate).live().status()
        efficiency = status["cost_efficiency"]  # none without a configured traditional cost
        console.print(
            f"status: budget {status['budget_health']}, free sources "
            f"{status['free_source_performance']}" + (f", {efficiency}" if efficiency else ""),
            highlight=False,
        )
        decisions = ", ".join(f"{k}: {v}" for k, v in sorted(tally.decisions.items()))
        console.print(f"paid-call decisions: {decisions}", highlight=False)
        market = tally.stream_market
        if tally.stream is not None and not tally.stream_days and market is not None:
            console.print(
                f"market-data stream: not connected: the market ({market.name}) was closed "
                f"all the demo's day ({market.state(day.end).reason})",
                highlight=False,
            )
        elif tally.stream is not None:
            s = tally.stream
            console.print(
                f"market-data stream: {s.events_processed:,} messages, "
                f"{s.bytes_processed / 2**20:.1f} MB, "
                f"{sum(d.connection_hours for d in tally.stream_days):.1f} h connected "
                "(while the market traded), "
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
            live_gate = Gate.open(db, config=config)
            serving.run(
                settings,
                live_gate.config,
                echo=say,
                gate=live_gate,
                workload=workload.run_live,
            )


def _live_line(gate: Gate) -> str:
    """One line of budgets and levels for the demo's progress bar."""
    parts = [
        f"{s.budget.name} {format_money(s.spent_nanos, s.currency)} ({s.level})"
        for s in gate.status()
    ]
    return f"{gate.clock():%H:%M} " + " | ".join(parts)


def service_table(gate: Gate) -> Table:
    """Per-service requests, free-source success rate and spend, read from the rollups."""
    now = gate.clock()
    totals = analyst_of(gate).summary(None, since=EPOCH, until=now + timedelta(days=1))
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
