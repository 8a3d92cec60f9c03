"""The seed's monthly report, as its `export_report_formats` names and fills it: its undated
file names beside spendgate's dated ones (the same bytes), and `geographic_optimization`
from the events' location labels, on every backend, adding up to the month's totals."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.config import parse
from spendgate.reports import Reporter, write
from spendgate.rollups import total
from spendgate.testing import FrozenClock

NOW = datetime(2026, 10, 20, 17, 42, tzinfo=UTC)
SEED_FILES = {
    "monthly_cost_report.pdf": "monthly_cost_report_2026-10.pdf",
    "monthly_cost_data.xlsx": "monthly_cost_report_2026-10.xlsx",
    "monthly_cost_report.json": "monthly_cost_report_2026-10.json",
    "monthly_cost_summary.csv": "monthly_cost_report_2026-10_summary.csv",
}


def config() -> Any:
    return parse(
        {
            "sources": {
                "google_maps": {"price": "0.01/request"},
                "osm_tiles": {"price": "free"},
                "legacy": {"unpriced": "allow"},
            },
            "budgets": [{"name": "main", "limit": "50.00"}],
        }
    )


@pytest.fixture
def gate(store_url: str) -> Iterator[Gate]:
    g = Gate.open(store_url, config=config(), clock=FrozenClock(NOW))
    yield g
    g.close()


def test_the_seeds_file_names_beside_the_dated_ones(tmp_path: Path) -> None:
    g = Gate.open("memory://", config=config(), clock=FrozenClock(NOW))
    try:
        g.record("scraper", "google_maps", time=NOW - timedelta(days=2))
        reporter = Reporter(g)
        written = {
            p.name for p in write(reporter.monthly("2026-10"), "pdf,xlsx,csv,json", tmp_path)
        }
        for seed, dated in SEED_FILES.items():
            assert {seed, dated} <= written
            assert (tmp_path / seed).read_bytes() == (tmp_path / dated).read_bytes()
        # Only the formats asked for; the weekly report has no seed names.
        weekly = tmp_path / "weekly"
        names = {p.name for p in write(reporter.weekly(), "json,csv", weekly)}
        assert not names & set(SEED_FILES)
        only_csv = {p.name for p in write(reporter.monthly("2026-10"), "csv", tmp_path / "csv")}
        assert "monthly_cost_summary.csv" in only_csv
        assert not only_csv & {"monthly_cost_data.xlsx", "monthly_cost_report.pdf"}
    finally:
        g.close()


def test_geography_from_location_labels(gate: Gate) -> None:
    rng = random.Random(20)
    places = ["us-east", "eu-west", "ap-south"]
    expected: dict[str | None, list[int]] = {}
    for i in range(120):
        key = rng.choice(["location", "region", None])
        place = rng.choice(places) if key else None
        source = rng.choice(["google_maps", "osm_tiles", "legacy"])
        labels = {key: place} if key and place else {"team": "a"}
        when = NOW - timedelta(days=rng.randint(0, 18), minutes=rng.randint(0, 600))
        gate.record("scraper", source, time=when, labels=labels, request_id=f"e{i}")
        row = expected.setdefault(place, [0, 0])
        row[0] += 1
        row[1] += 10_000_000 if source == "google_maps" else 0
    # Outside the month: never counted.
    gate.record(
        "scraper",
        "google_maps",
        time=datetime(2026, 9, 30, tzinfo=UTC),
        labels={"location": "us-east"},
    )

    report = Reporter(gate).monthly("2026-10").to_dict()
    geo = report["cost_optimization_analysis"]["geographic_optimization"]
    assert geo["available"] is True
    shown = {r["location"]: r for r in geo["by_location"]}
    assert set(shown) == {p for p in expected if p is not None}
    for place, (requests, cost) in expected.items():
        if place is None:
            assert geo["unlocated_requests"] == requests
            continue
        assert shown[place]["requests"] == requests
        assert Decimal(shown[place]["total_cost"]) == Decimal(cost) / 10**9
    costs = [Decimal(r["total_cost"]) for r in geo["by_location"]]
    assert costs == sorted(costs, reverse=True)  # dearest first

    # Nothing lost, nothing counted twice: the groups add up to the rollups' month.
    a = Analyst(gate)
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    groups = a.by_location(start, end)
    located = total(groups.values())
    month = a.summary(None, since=start, until=end).total
    assert located.requests + geo["unlocated_requests"] == month.requests == 120
    assert located.cost == sum(cost for place, (_, cost) in expected.items() if place)
    assert month.cost - located.cost == expected.get(None, [0, 0])[1]


def test_no_labels_is_said_not_guessed(gate: Gate) -> None:
    gate.record("scraper", "google_maps", time=NOW - timedelta(hours=3))
    report = Reporter(gate).monthly("2026-10").to_dict()
    geo = report["cost_optimization_analysis"]["geographic_optimization"]
    assert geo["available"] is False
    assert "location" in geo["reason"]


def test_events_stored_before_0008_get_their_place(tmp_path: Path) -> None:
    """A store written before `events.location` existed: upgrading reads each event's place
    from its labels, so its old months' geography is right."""
    from spendgate.store import migrate

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with Gate.open(url, config=config(), clock=FrozenClock(NOW)) as g:
        for i, labels in enumerate([{"location": "us-east"}, {"region": "eu"}, {"team": "x"}]):
            g.record("scraper", "google_maps", request_id=f"old{i}", labels=labels)
    command.downgrade(migrate.alembic_config(url), "0007")
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    assert "location" not in columns
    with Gate.open(url, config=config(), clock=FrozenClock(NOW)) as g:  # opening upgrades
        places = Analyst(g).by_location(NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert {p: t.requests for p, t in places.items()} == {"us-east": 1, "eu": 1}
