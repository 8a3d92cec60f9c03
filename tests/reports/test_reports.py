"""Reports: every export, read back from its file, carries the analytics' totals for the same
period; the PDF renders to images and the workbook opens in LibreOffice where they are
installed; bad input is refused with the field named and nothing written."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import pypdf
import pytest
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.cli import app
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.money import format_money, money_text
from spendgate.reports import FORMATS, Report, Reporter, write
from spendgate.reports.writer import SEED_NAMES
from spendgate.settings import Config
from spendgate.testing import FrozenClock
from tests.conftest import random_event

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
ZONE = "America/New_York"
NOW = datetime(2026, 10, 20, 17, 42, tzinfo=UTC)  # 13:42 in New York
SERVICES = ("scraper", "enrichment", "image_processor")
SECTIONS = [
    "report_metadata",
    "executive_summary",
    "daily_breakdown",
    "service_analysis",
    "cost_optimization_analysis",
    "trend_analysis",
    "month_end_forecast",
    "recommendations",
    "alerts",
    "appendices",
    "visualizations",
]
WEEKLY_SECTIONS = [
    "report_metadata",
    "period",
    "budget_performance",
    "cost_efficiency",
    "optimization_opportunities",
    "trend_analysis",
    "daily_breakdown",
    "service_analysis",
    "alerts",
    "visualizations",
]
runner = CliRunner()


CONFIG = f"""
[sources.google_maps]
price = "0.01/request"
capability = "imagery"

[sources.osm_tiles]
price = "free"
capability = "imagery"

[sources.legacy]
unpriced = "allow"

[[budgets]]
name = "main"
limit = "5.00"
window = "day"
timezone = "{ZONE}"
"""


def config() -> Config:
    """A paid and a free source for imagery, an unpriced one, $5 a New York day."""
    return parse(tomllib.loads(CONFIG))


def events(n: int, days: int, seed: int, services: tuple[str, ...] = SERVICES) -> list[dict]:
    """`n` random events over the `days` days before NOW; explicit costs down to the
    nano-unit."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = NOW - timedelta(seconds=rng.randrange(days * 86400))
        e = random_event(rng, f"e{seed}-{i}", at, services)
        if "cost" in e:
            e["cost"] = "0.0123456789"[: rng.randrange(6, 13)]
        out.append(e)
    return out


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    """50 days of random traffic up to NOW in a SQLite store; the clock stands at NOW."""
    db = tmp_path_factory.mktemp("store") / "spendgate.db"
    g = Gate.open(f"sqlite:///{db}", config=config(), clock=FrozenClock(NOW))
    g.record_many(events(1500, 50, 45))
    yield g
    g.close()


def month_summary(gate: Gate, first: date, last: date) -> dict:
    """The analytics summary of the local days `first`..`last`, the figure every export is
    checked against."""
    until = date.fromordinal(last.toordinal() + 1)
    return Analyst(gate).summary(None, since=first, until=until).to_dict()


@pytest.fixture(scope="module")
def october(gate: Gate, tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, list[Path]]:
    """This month's report (to date, with its forecast) in every format."""
    report = Reporter(gate).monthly("2026-10")
    out = tmp_path_factory.mktemp("october")
    return report, write(report, FORMATS, out)


def by_suffix(paths: list[Path], suffix: str) -> Path:
    """The dated file (not its copy under the seed's name) ending with `suffix`."""
    seed_names = {n for names in SEED_NAMES.values() for n in names.values()}
    (found,) = [p for p in paths if p.name.endswith(suffix) and p.name not in seed_names]
    return found


def test_json_carries_the_summary_totals(gate: Gate, october: tuple[Report, list[Path]]) -> None:
    _, paths = october
    expected = month_summary(gate, date(2026, 10, 1), date(2026, 10, 31))
    doc = json.loads(by_suffix(paths, ".json").read_text())
    assert list(doc) == SECTIONS
    summary = doc["executive_summary"]
    assert summary["total_monthly_cost"] == expected["total_cost"]
    assert summary["total_requests_processed"] == expected["total_requests"]
    assert summary["cost_per_request"] == expected["average_cost_per_request"]
    assert summary["free_source_success_rate"] == expected["free_source_success_rate"]
    assert summary["unpriced_requests"] == expected["unpriced_requests"]
    days = doc["daily_breakdown"]
    assert [d["date"] for d in days] == [f"2026-10-{d:02d}" for d in range(1, 21)]
    assert sum(Decimal(d["total_cost"]) for d in days) == Decimal(expected["total_cost"])
    assert sum(d["requests"] for d in days) == expected["total_requests"]
    services = doc["service_analysis"]
    assert sorted(services) == sorted(expected["services"])
    for name, figures in services.items():
        assert figures["total_cost"] == expected["services"][name]["total_cost"]
        by_source = figures["cost_by_source"].values()
        assert sum(Decimal(c) for c in by_source) == Decimal(figures["total_cost"])
    raw = doc["appendices"]["raw_data"]
    assert sum(Decimal(r["total_cost"]) for r in raw) == Decimal(expected["total_cost"])
    assert doc["report_metadata"]["period"] == "October 2026"
    assert doc["report_metadata"]["currency"] == "USD"
    assert doc["report_metadata"]["generated_at"] == NOW.isoformat()
    geo = doc["cost_optimization_analysis"]["geographic_optimization"]
    assert geo["available"] is False
    assert "labels" in geo["reason"]
    assert {"cost_trend", "volume_trend", "efficiency_trend", "quality_trend"} <= set(
        doc["trend_analysis"]
    )
    assert doc["month_end_forecast"]["status"] == "month in progress"
    charts = {c["name"]: c for c in doc["visualizations"]}
    assert set(charts) == {
        "daily_cost",
        "cost_by_service",
        "cost_by_source",
        "free_vs_paid",
        "forecast",
    }
    daily_cost = charts["daily_cost"]["series"][0]["values"]
    assert sum(Decimal(v) for v in daily_cost) == Decimal(expected["total_cost"])


def test_csv_files_carry_the_summary_totals(gate: Gate, october: tuple[Report, list[Path]]) -> None:
    _, paths = october
    expected = month_summary(gate, date(2026, 10, 1), date(2026, 10, 31))
    total = Decimal(expected["total_cost"])

    def rows(suffix: str) -> list[dict[str, str]]:
        with by_suffix(paths, suffix).open(newline="") as f:
            return list(csv.DictReader(f))

    summary = {r["Figure"]: r["Value"] for r in rows("_summary.csv")}
    assert summary["Spend"] == expected["total_cost"]
    assert int(summary["Requests"]) == expected["total_requests"]
    daily = rows("_daily.csv")
    assert len(daily) == 20
    assert [r["Date"] for r in daily] == [f"2026-10-{d:02d}" for d in range(1, 21)]
    assert sum(Decimal(r["Spend"]) for r in daily) == total
    assert sum(int(r["Requests"]) for r in daily) == expected["total_requests"]
    services = rows("_services.csv")
    assert {r["Service"] for r in services} == set(expected["services"])
    assert sum(Decimal(r["Spend"]) for r in services) == total


def test_excel_has_real_numbers_formats_charts_and_the_totals(
    gate: Gate, october: tuple[Report, list[Path]]
) -> None:
    _, paths = october
    expected = month_summary(gate, date(2026, 10, 1), date(2026, 10, 31))
    total = float(Decimal(expected["total_cost"]))
    book = openpyxl.load_workbook(by_suffix(paths, ".xlsx"))
    assert book.sheetnames[:3] == ["Executive summary", "Month-end forecast", "Daily spend"]
    summary = book["Executive summary"]
    assert summary.freeze_panes == "A2"
    assert [c.value for c in summary[1]][:3] == ["Figure", "Value", "Detail"]
    cells = {r[0].value: r[1] for r in summary.iter_rows(min_row=2, max_row=14)}
    assert cells["Spend"].value == pytest.approx(total, abs=1e-9)
    assert isinstance(cells["Spend"].value, float)
    assert '"$"' in cells["Spend"].number_format
    assert cells["Requests"].value == expected["total_requests"]
    assert cells["Free-source rate"].number_format.endswith("%")
    daily = book["Daily spend"]
    assert daily.freeze_panes == "A2"
    header = [c.value for c in daily[1]]
    assert header[:2] == ["Date", "Spend"]
    rows = list(daily.iter_rows(min_row=2, max_row=21, values_only=True))
    assert [r[0].date() for r in rows] == [date(2026, 10, d) for d in range(1, 21)]
    assert sum(r[1] for r in rows) == pytest.approx(total, abs=1e-9)
    services = book["Services"]
    header = [c.value for c in services[1]]
    spend = [r[header.index("Spend")] for r in services.iter_rows(min_row=2, values_only=True)]
    assert sum(spend[: len(expected["services"])]) == pytest.approx(total, abs=1e-9)
    assert len(book["Charts"]._charts) == 5  # native Excel charts, read back


def pdf_text(path: Path) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def test_pdf_cover_carries_the_totals_and_pages_are_numbered(
    gate: Gate, october: tuple[Report, list[Path]]
) -> None:
    _, paths = october
    expected = month_summary(gate, date(2026, 10, 1), date(2026, 10, 31))
    pages = pdf_text(by_suffix(paths, ".pdf"))
    cover = pages[0]
    assert "Monthly cost report: October 2026" in cover
    total = Decimal(expected["total_cost"])
    assert format_money(int(total * 10**9)) in cover
    assert f"{expected['total_requests']:,}" in cover
    for i, page in enumerate(pages, 1):
        assert f"page {i} of {len(pages)}" in page
    assert "Daily spend" in "".join(pages)


def test_pdf_tables_break_across_pages_with_their_header(tmp_path: Path) -> None:
    """Forty services: the service table runs over several pages, each repeating its header."""
    clock = FrozenClock(NOW)
    with Gate.open("memory://", config=config(), clock=clock) as g:
        many = tuple(f"service_{i:02d}" for i in range(40))
        g.record_many(events(200, 8, 7, services=many))
        (pdf,) = write(Reporter(g).weekly(), "pdf", tmp_path)
    pages = pdf_text(pdf)
    first = next(i for i, p in enumerate(pages) if "Services\nService\n" in p)
    rows = [p for p in pages[first:] if "\nService 0" in p or "\nService 1" in p]
    assert len(rows) >= 2  # the table, over several pages
    for page in rows:  # on every page, the header row comes before the first row
        head = re.split(r"\nService [0-9]", page)[0].split("\n")
        assert "Service" in head, page[:80]


def test_workbook_opens_in_libreoffice(october: tuple[Report, list[Path]], tmp_path: Path) -> None:
    office = shutil.which("libreoffice") or shutil.which("soffice")
    if office is None:
        pytest.skip("LibreOffice is not installed: the workbook was not opened in it")
    _, paths = october
    done = subprocess.run(
        [
            office,
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(by_suffix(paths, ".xlsx")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / by_suffix(paths, ".xlsx").with_suffix(".pdf").name).stat().st_size > 0


def test_a_past_month_is_complete_and_has_no_forecast(gate: Gate, tmp_path: Path) -> None:
    report = Reporter(gate).monthly("2026-09")
    paths = write(report, "json,csv", tmp_path)
    doc = json.loads(by_suffix(paths, ".json").read_text())
    expected = month_summary(gate, date(2026, 9, 1), date(2026, 9, 30))
    assert doc["executive_summary"]["total_monthly_cost"] == expected["total_cost"]
    assert len(doc["daily_breakdown"]) == 30
    assert doc["report_metadata"]["complete"] is True
    assert doc["month_end_forecast"]["status"] == "month complete"
    assert doc["executive_summary"]["monthly_budget"] == "150"  # $5 a day, 30 days


def test_weekly_report_carries_the_week_totals(gate: Gate, tmp_path: Path) -> None:
    report = Reporter(gate).weekly()
    paths = write(report, FORMATS, tmp_path)
    expected = month_summary(gate, date(2026, 10, 13), date(2026, 10, 19))
    doc = json.loads(by_suffix(paths, ".json").read_text())
    assert list(doc) == WEEKLY_SECTIONS
    assert doc["period"] == {
        "start_date": "2026-10-13",
        "end_date": "2026-10-19",
        "days_analyzed": 7,
    }
    assert doc["budget_performance"]["total_spent"] == expected["total_cost"]
    assert sum(Decimal(c) for c in doc["trend_analysis"]["cost_trend"]) == Decimal(
        expected["total_cost"]
    )
    with by_suffix(paths, "_daily.csv").open(newline="") as f:
        daily = list(csv.DictReader(f))
    assert sum(Decimal(r["Spend"]) for r in daily) == Decimal(expected["total_cost"])
    book = openpyxl.load_workbook(by_suffix(paths, ".xlsx"))
    cells = {r[0].value: r[1].value for r in book["Executive summary"].iter_rows(min_row=2)}
    assert cells["Spend"] == pytest.approx(float(Decimal(expected["total_cost"])))
    cover = pdf_text(by_suffix(paths, ".pdf"))[0]
    assert format_money(int(Decimal(expected["total_cost"]) * 10**9)) in cover


def test_reports_of_a_store_that_begins_mid_week_count_only_the_days_with_data(
    tmp_path: Path,
) -> None:
    """Events begin on Thursday 15 October: in the week of Monday 12 to Sunday 18 and in
    October, the days before are "no data" (no figures, no budget status), not $0 days."""
    from zoneinfo import ZoneInfo

    def noon(day: int) -> datetime:
        return datetime(2026, 10, day, 12, tzinfo=ZoneInfo(ZONE)).astimezone(UTC)

    spend = {15: ("google_maps", 300), 16: ("google_maps", 600), 17: ("osm_tiles", 50),
             18: ("google_maps", 300)}  # fmt: skip
    with Gate.open(
        f"sqlite:///{tmp_path / 'young.db'}", config=config(), clock=FrozenClock(NOW)
    ) as g:
        g.record_many(
            {"service": "scraper", "source": source, "time": noon(day)}
            for day, (source, n) in spend.items()
            for _ in range(n)
        )
        weekly = Reporter(g).weekly("2026-10-18")
        monthly = Reporter(g).monthly("2026-10")
    paths = write(weekly, "json,csv", tmp_path / "out")
    doc = json.loads(by_suffix(paths, ".json").read_text())
    perf = doc["budget_performance"]
    assert (perf["total_spent"], perf["days_with_data"], perf["daily_average"]) == ("12", 4, "3")
    assert (perf["days_under_budget"], perf["days_over_budget"]) == (3, 1)
    assert perf["budget_utilization"] == pytest.approx(12 / 20)
    rows = doc["daily_breakdown"]
    assert [r["data"] for r in rows] == [False] * 3 + [True] * 4
    assert rows[0] == {
        "date": "2026-10-12",
        "data": False,
        "total_cost": None,
        "requests": None,
        "free_source_rate": None,
        "cost_per_request": None,
        "budget_status": None,
        "paid_requests": None,
        "free_requests": None,
        "unpriced_requests": None,
        "daily_budget": "5",
    }
    assert [r["budget_status"] for r in rows[3:]] == ["under_budget", "over_budget"] + [
        "under_budget"
    ] * 2
    charts = {c["name"]: c for c in doc["visualizations"]}
    assert charts["daily_cost"]["series"][0]["values"] == [None] * 3 + ["3", "6", "0", "3"]
    with by_suffix(paths, "_daily.csv").open(newline="") as f:
        daily = list(csv.DictReader(f))
    assert [r["Spend"] for r in daily] == ["", "", "", "3", "6", "0", "3"]
    assert [r["Budget status"] for r in daily] == ["no data"] * 3 + [
        "under budget",
        "over budget",
        "under budget",
        "under budget",
    ]

    month = monthly.to_dict()
    assert (month["executive_summary"]["days_in_report"],
            month["executive_summary"]["days_with_data"]) == (20, 6)  # fmt: skip
    assert [r["data"] for r in month["daily_breakdown"]] == [False] * 14 + [True] * 6
    # Trend lines over the complete days from the first event: 15 to 19 October.
    assert month["trend_analysis"]["cost_trend"]["points"] == 5
    # $3, $6, $0, $3, $0 falls; with fourteen $0 days before it, it rose.
    scraper = month["service_analysis"]["scraper"]["cost_trend"]
    assert scraper == "moderate decreasing trend (r=-0.567)"
    forecast = {c["name"]: c for c in month["visualizations"]}["forecast"]
    actual = forecast["series"][0]["values"]
    assert actual[:14] == [None] * 14
    assert actual[14:18] == ["3", "9", "9", "12"]


# -- bad input: the field named, nothing written ---------------------------------------------


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "oct", "2026-1", "26-10", "", "1969-12"])
def test_a_malformed_month_is_refused(gate: Gate, month: str) -> None:
    with pytest.raises(ValidationError) as err:
        Reporter(gate).monthly(month)
    assert err.value.field == "month"
    assert "YYYY-MM" in str(err.value)


@pytest.mark.parametrize("month", ["2026-11", "2027-01"])
def test_a_month_in_the_future_is_refused(gate: Gate, month: str) -> None:
    with pytest.raises(ValidationError) as err:
        Reporter(gate).monthly(month)
    assert err.value.field == "month"
    assert "2026-10" in str(err.value)


@pytest.mark.parametrize("end", ["2026-10-21", "2026-13-01", "yesterday"])
def test_a_bad_week_end_is_refused(gate: Gate, end: str) -> None:
    with pytest.raises(ValidationError) as err:
        Reporter(gate).weekly(end)
    assert err.value.field == "end"


@pytest.fixture(scope="module")
def september(gate: Gate) -> Report:
    return Reporter(gate).monthly("2026-09")


@pytest.mark.parametrize("formats", ["pdf,docx", "html", "", [], ["json", 3]])
def test_an_unknown_format_is_refused_and_nothing_written(
    september: Report, formats: object, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValidationError) as err:
        write(september, formats, out)  # type: ignore[arg-type]
    assert err.value.field == "format"
    assert "pdf, xlsx, csv, json" in str(err.value)
    assert not out.exists()


def test_a_folder_that_cannot_be_written_is_refused_and_nothing_written(
    september: Report, tmp_path: Path
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "below"):
        with pytest.raises(ValidationError) as err:
            write(september, "json,csv", out)
        assert err.value.field == "out_dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_folder_is_refused(september: Report, tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir(mode=0o500)
    with pytest.raises(ValidationError) as err:
        write(september, "json", out)
    assert err.value.field == "out_dir"
    assert list(out.iterdir()) == []


def test_a_failure_while_placing_files_leaves_none(september: Report, tmp_path: Path) -> None:
    """The last file's name is taken by a folder: the files placed before it are removed,
    and no temporary file stays."""
    (tmp_path / f"{september.stem}.json").mkdir()
    with pytest.raises(ValidationError) as err:
        write(september, "csv,json", tmp_path)
    assert err.value.field == "out_dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{september.stem}.json"]


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`--db` and `--config` options of a store with September 2026's events: a past month
    whatever the real clock says."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "spendgate.toml").write_text(CONFIG)
    db = f"sqlite:///{folder / 'cli.db'}"
    with Gate.open(db, config=config(), clock=FrozenClock(NOW)) as g:
        g.record_many([e for e in events(300, 50, 3) if e["time"].month == 9])
    return ["--db", db, "--config", str(folder / "spendgate.toml")]


def test_cli_writes_the_report_and_lists_the_files(cli_db: list[str], tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = runner.invoke(
        app,
        ["report", "monthly", "2026-09", "--format", "json,csv", "--out", str(out), *cli_db],
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        [
            *(
                f"monthly_cost_report_2026-09{s}"
                for s in (".json", "_summary.csv", "_daily.csv", "_services.csv")
            ),
            "monthly_cost_report.json",  # the seed's names beside the dated ones
            "monthly_cost_summary.csv",
        ]
    )
    for name in written:
        assert name in result.output
    doc = json.loads((out / "monthly_cost_report_2026-09.json").read_text())
    with Gate.open(cli_db[1], config=config(), clock=FrozenClock(NOW)) as g:
        assert doc["executive_summary"]["total_monthly_cost"] == money_text(
            Analyst(g).summary(None, since="2026-09-01", until="2026-10-01").total.cost
        )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["monthly", "2026-13"], "month"),
        (["monthly", "oct"], "month"),
        (["monthly", "2999-01"], "month"),
        (["monthly", "2026-09", "--format", "pdf,doc"], "format"),
        (["weekly", "--end", "19/10/2026"], "end"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(
    cli_db: list[str], tmp_path: Path, args: list[str], field: str
) -> None:
    out = tmp_path / "reports"
    result = runner.invoke(app, ["report", *args, "--out", str(out), *cli_db])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {field}: got"), result.output
    assert not out.exists()


def test_cli_unwritable_folder_is_one_line_exit_2(cli_db: list[str], tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("")
    result = runner.invoke(
        app, ["report", "monthly", "2026-09", "--out", str(a_file / "x"), *cli_db]
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: out_dir: got")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
