"""`spendgate report monthly|weekly`: reports for finance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spendgate.cli.shell import (
    ConfigOption,
    DbOption,
    analysis,
    console,
    report_app,
)
from spendgate.store import DEFAULT_URL

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
