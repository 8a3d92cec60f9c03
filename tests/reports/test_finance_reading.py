"""Reports a finance reader would sign: the PDF reads as words (no snake_case key, no ISO
timestamp, money to the cent but for unit prices), page 1 carries the headline, and every
figure the PDF, the workbook and the CSV files show equals the JSON report and the analytics
API for the same period. Every page is rendered to PNG under `artifacts/` to be looked at."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pypdf
import pytest

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.config import parse
from spendgate.money import to_nanos
from spendgate.reports import FORMATS, Reporter, write
from spendgate.reports.model import period_label
from spendgate.reports.values import Name, cents, spaced, unit_price
from spendgate.testing import FrozenClock
from tests.conftest import random_event

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
ZONE = "America/New_York"
NOW = datetime(2026, 10, 20, 17, 42, tzinfo=UTC)  # 13:42 in New York
SERVICES = ("image_processor", "data_enrichment", "scraper")
PLACES = ("us_east", "eu_west")

SNAKE = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")
ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:?\d{2}|Z)"
)
LONG_MONEY = re.compile(r"-?\$[\d,]*\.\d{3,}")
UNIT_PRICE_KEYS = {
    "cost_per_request",
    "average_cost_per_request",
    "batched_cost_per_request",
    "unbatched_cost_per_request",
}


def config() -> Any:
    return parse(
        {
            "sources": {
                "google_maps": {"price": "0.01/request", "capability": "imagery"},
                "osm_tiles": {"price": "free", "capability": "imagery"},
                "legacy": {"unpriced": "allow"},
            },
            "budgets": [{"name": "main", "limit": "2.00", "window": "day", "timezone": ZONE}],
        }
    )


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    """50 days of random traffic with location labels, and a day two days ago that crosses
    the $2 daily budget (so the period has alerts), in a SQLite store; the clock at NOW."""
    db = tmp_path_factory.mktemp("store") / "spendgate.db"
    clock = FrozenClock(NOW - timedelta(days=2))
    g = Gate.open(f"sqlite:///{db}", config=config(), clock=clock)
    rng = random.Random(21)
    traffic = []
    for i in range(1500):
        at = NOW - timedelta(seconds=rng.randrange(50 * 86400))
        event = random_event(rng, f"r{i}", at, SERVICES)
        if rng.random() < 0.6:
            event["labels"] = {"location": rng.choice(PLACES)}
        traffic.append(event)
    g.record_many(e for e in traffic if e["time"] <= clock())
    for _ in range(260):  # $2.60 on one day: past 80% and 100% of the daily budget
        g.record("image_processor", "google_maps", labels={"location": "us_east"})
    clock.advance(timedelta(days=2))
    g.record_many(e for e in traffic if e["time"] > clock() - timedelta(days=2))
    assert g.store.alerts(), "the day over budget raised alerts"
    yield g
    g.close()


@pytest.fixture(scope="module")
def written(gate: Gate, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """October to date and the week to yesterday, in every format: by kind, by suffix."""
    reporter = Reporter(gate)
    out: dict[str, dict[str, Path]] = {}
    for kind, report in (("monthly", reporter.monthly("2026-10")), ("weekly", reporter.weekly())):
        folder = tmp_path_factory.mktemp(kind)
        files = write(report, FORMATS, folder)
        out[kind] = {
            suffix: next(p for p in files if p.name == report.stem + suffix)
            for suffix in (".pdf", ".xlsx", ".json", "_summary.csv", "_daily.csv", "_services.csv")
        }
    return out


def pages(path: Path) -> list[str]:
    """Each page's text, its cells and lines joined by single spaces."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(path).pages]


def doc(files: dict[str, Path]) -> dict[str, Any]:
    return json.loads(files[".json"].read_text())


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def unit_prices(tree: Any) -> set[str]:
    """Every unit price in a JSON report, as the PDF shows it."""
    found: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in UNIT_PRICE_KEYS and isinstance(value, str):
                found.add(unit_price(to_nanos(value), "USD"))
            else:
                found |= unit_prices(value)
    elif isinstance(tree, list):
        for value in tree:
            found |= unit_prices(value)
    return found


def money(text: str | None) -> str:
    """A JSON amount as the PDF shows it, to the cent."""
    assert text is not None
    return cents(to_nanos(text), "USD")


# -- the PDF reads as words -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["monthly", "weekly"])
def test_the_pdf_has_no_keys_no_iso_times_and_money_to_the_cent(
    written: dict[str, dict[str, Path]], kind: str
) -> None:
    files = written[kind]
    text = "\n".join(pages(files[".pdf"]))
    assert SNAKE.findall(text) == []
    assert ISO_TIME.findall(text) == []
    allowed = unit_prices(doc(files))
    long = LONG_MONEY.findall(text)
    assert long, "the report shows unit prices, with their digits"
    assert set(long) <= allowed, set(long) - allowed
    assert "unit price" in text.lower()  # and says so


def test_page_one_carries_spend_budget_forecast_and_top_service(
    gate: Gate, written: dict[str, dict[str, Path]]
) -> None:
    files = written["monthly"]
    first = pages(files[".pdf"])[0]
    analyst = Analyst(gate)
    summary = analyst.summary(None, since=date(2026, 10, 1), until=date(2026, 11, 1))
    forecast = analyst.monthly_forecast().forecast
    assert forecast is not None
    budget = doc(files)["executive_summary"]["monthly_budget"]
    assert budget == "62"  # $2 a day, 31 days
    top = max(summary.by_service().items(), key=lambda item: item[1].cost)[0]
    assert "1\u201320 October 2026 (month to date)" in first
    assert f"Spend {cents(summary.total.cost, 'USD')}" in first
    assert "Budget $62.00" in first
    assert f"Month-end forecast {cents(forecast.total_nanos, 'USD')}" in first
    assert f"Service Spend Share of spend Requests {Name(top).words} " in first
    assert f"{Name(top).words} {cents(summary.by_service()[top].cost, 'USD')}" in first
    assert "Budget main (day window) has reached 100.0%" in first  # the period's alerts
    assert "Top sources by spend" in first
    assert "Recommendations" in first
    assert "Schema version" not in first  # the particulars go to the end
    assert "Schema version 1" in pages(files[".pdf"])[-1] or any(
        "Schema version 1" in p for p in pages(files[".pdf"])[-2:]
    )


def test_weekly_rows_are_dated(written: dict[str, dict[str, Path]]) -> None:
    files = written["weekly"]
    days = [date(2026, 10, 13) + timedelta(days=i) for i in range(7)]
    text = "\n".join(pages(files[".pdf"]))
    assert "Weekly budget report: 13\u201319 October 2026" in text
    for d in days:
        assert f"{d:%a} {d.day} {d:%b %Y}" in text
    assert [r["Date"] for r in rows(files["_daily.csv"])] == [d.isoformat() for d in days]


# -- every export agrees ----------------------------------------------------------------------


def test_key_figures_agree_in_every_export_and_with_the_api(
    gate: Gate, written: dict[str, dict[str, Path]]
) -> None:
    files = written["monthly"]
    report = doc(files)
    e, f = report["executive_summary"], report["month_end_forecast"]
    analyst = Analyst(gate)
    summary = analyst.summary(None, since=date(2026, 10, 1), until=date(2026, 11, 1))
    forecast = analyst.monthly_forecast().forecast
    assert forecast is not None
    # The JSON report against the analytics API.
    assert Decimal(e["total_monthly_cost"]) == Decimal(summary.to_dict()["total_cost"])
    assert e["total_requests_processed"] == summary.total.requests
    assert to_nanos(f["projected_total"]) == forecast.total_nanos
    zone = ZoneInfo(ZONE)  # month to date against September to the same day and hour
    before = analyst.summary(
        None,
        since=datetime(2026, 9, 1, tzinfo=zone),
        until=datetime(2026, 9, 20, 13, 42, tzinfo=zone),
    )
    assert e["previous_period"]["start_date"] == "2026-09-01"
    expected = {
        "Spend": e["total_monthly_cost"],
        "Budget": e["monthly_budget"],
        "Budget remaining": e["budget_remaining"],
        "Month-end forecast": f["projected_total"],
        "Requests": str(e["total_requests_processed"]),
        "Cost per request": e["cost_per_request"],
        "Saved by free sources": e["free_source_savings"],
    }
    assert Decimal(e["budget_remaining"]) == Decimal(e["monthly_budget"]) - Decimal(
        e["total_monthly_cost"]
    )
    change = (
        Decimal(e["total_monthly_cost"]) / Decimal(before.to_dict()["total_cost"]) - 1
    )  # the change on 1-20 September, as the API reads it
    assert e["change_vs_previous_period"] == pytest.approx(float(change), rel=1e-9)
    # The CSV summary: the same figures, exact.
    csv_figures = {r["Figure"]: r["Value"] for r in rows(files["_summary.csv"])}
    for figure, value in expected.items():
        assert csv_figures[figure] == value, figure
    # The workbook: the same figures, as numbers.
    sheet = openpyxl.load_workbook(files[".xlsx"])["Executive summary"]
    cells = {r[0]: r[1] for r in sheet.iter_rows(min_row=2, max_row=14, values_only=True)}
    for figure, value in expected.items():
        assert cells[figure] == pytest.approx(float(Decimal(value)), abs=1e-9), figure
    # The PDF: the same figures, to the cent (the unit price with its digits).
    first = pages(files[".pdf"])[0]
    for figure, value in expected.items():
        if figure == "Cost per request":
            shown = unit_price(to_nanos(value), "USD")
        elif figure == "Requests":
            shown = f"{int(value):,}"
        else:
            shown = money(value)
        assert f"{figure} {shown}" in first, figure


@pytest.mark.parametrize("kind", ["monthly", "weekly"])
def test_daily_and_service_tables_agree_in_every_export(
    written: dict[str, dict[str, Path]], kind: str
) -> None:
    files = written[kind]
    report = doc(files)
    days = report["daily_breakdown"]
    text = "\n".join(pages(files[".pdf"]))
    book = openpyxl.load_workbook(files[".xlsx"])
    daily_csv = rows(files["_daily.csv"])
    daily_sheet = list(book["Daily spend"].iter_rows(min_row=2, values_only=True))
    assert len(daily_csv) == len(days)
    for d, c, x in zip(days, daily_csv, daily_sheet, strict=False):
        assert c["Date"] == d["date"] == x[0].date().isoformat()
        assert c["Spend"] == (d["total_cost"] or "")
        assert c["Requests"] == str(d["requests"] if d["data"] else "")
        assert c["Cost per request"] == (d["cost_per_request"] or "")
        if d["data"]:
            assert x[1] == pytest.approx(float(Decimal(d["total_cost"])), abs=1e-9)
            day = date.fromisoformat(d["date"])
            shown = f"{day:%a} {day.day} {day:%b %Y} {money(d['total_cost'])} {d['requests']:,}"
            assert shown in text
    services = report["service_analysis"]
    service_csv = {r["Service"]: r for r in rows(files["_services.csv"])}
    assert set(service_csv) == set(services)
    for name, figures in services.items():
        assert service_csv[name]["Spend"] == figures["total_cost"]
        assert service_csv[name]["Requests"] == str(figures["total_requests"])
        assert float(service_csv[name]["Share of spend"]) == figures["share_of_cost"]
        assert f"{Name(name).words} {money(figures['total_cost'])}" in text
    total = sum(Decimal(r["Spend"]) for r in service_csv.values())
    assert total == sum(Decimal(d["total_cost"] or 0) for d in days)


# -- the words --------------------------------------------------------------------------------


def test_words_for_periods_names_and_amounts() -> None:
    assert period_label(date(2026, 12, 1), date(2026, 12, 31)) == "1\u201331 December 2026"
    assert period_label(date(2026, 9, 28), date(2026, 10, 4)) == (
        "28 September \u2013 4 October 2026"
    )
    assert period_label(date(2026, 12, 29), date(2027, 1, 4)) == (
        "29 December 2026 \u2013 4 January 2027"
    )
    assert Name("google_maps").words == "Google maps"
    assert Name("OSM").words == "OSM"
    assert spaced("budget not:source:databento_mbo") == "budget not:source:databento mbo"
    assert cents(to_nanos("1234.565"), "USD") == "$1,234.56"  # half to even
    assert cents(to_nanos("0.004"), "USD") == "under $0.01"
    assert cents(to_nanos("0.005"), "USD") == "under $0.01"
    assert cents(to_nanos("0.015"), "USD") == "$0.02"
    assert cents(-to_nanos("0.001"), "USD") == "over -$0.01"
    assert cents(0, "USD") == "$0.00"
    assert cents(to_nanos("3.1"), "EUR") == "\u20ac3.10"
    assert unit_price(to_nanos("0.004415898"), "USD") == "$0.004416"
    assert unit_price(to_nanos("0.0123"), "USD") == "$0.0123"
    assert unit_price(to_nanos("1.5"), "USD") == "$1.50"
    assert unit_price(to_nanos("0.000000001"), "USD") == "$0.000000001"
    assert unit_price(0, "USD") == "$0.00"


# -- the pages, to look at --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["monthly", "weekly"])
def test_every_page_renders_to_png(written: dict[str, dict[str, Path]], kind: str) -> None:
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        message = "pdftoppm not found: install poppler-utils to render the PDF report to images"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob(f"report-{kind}-page-*.png"):
        old.unlink()
    pdf = written[kind][".pdf"]
    done = subprocess.run(
        [pdftoppm, "-png", "-r", "80", str(pdf), str(ARTIFACTS / f"report-{kind}-page")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    images = sorted(ARTIFACTS.glob(f"report-{kind}-page-*.png"))
    assert len(images) == len(pypdf.PdfReader(pdf).pages)
    for image in images:
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
