"""Savings that are savings: each optimization rule fires where what it recommends can be done,
with its exact amount over its window and over 7 and 30 days at one rate, and stays silent
where it cannot (a source not cacheable, no free source of the same capability, a budget
running out); the "savings vs traditional" figure exists only when its cost is configured,
on every face that shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.analytics.opportunities import MONTH, WEEK, Opportunity, Phrase
from spendgate.cli import app
from spendgate.config import parse
from spendgate.demo import demo_config
from spendgate.money import to_nanos
from spendgate.reports import Reporter
from spendgate.settings import Config
from spendgate.testing import FrozenClock
from tests.serving import app_for, bearer, make_keys

NOW = datetime(2026, 10, 20, 17, 42, tzinfo=UTC)
YESTERDAY = NOW - timedelta(days=1)


def rules_config(
    *,
    cacheable: bool = True,
    free: dict[str, Any] | None = None,
    traditional: str | None = None,
) -> Config:
    """A paid imagery source ($0.01 a request), a free one (`free` replaces its table), a
    live stream, and a $1 day."""
    analytics = {} if traditional is None else {"traditional_cost_per_request": traditional}
    return parse(
        {
            "sources": {
                "google_maps": {
                    "price": "0.01/request",
                    "capability": "imagery",
                    "cacheable": cacheable,
                },
                "osm_tiles": free or {"price": "free", "capability": "imagery"},
                "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
            },
            "budgets": [{"name": "day", "limit": "1.00", "window": "day", "timezone": "UTC"}],
            "analytics": analytics,
        }
    )


@pytest.fixture
def open_gate(store_url: str) -> Iterator[Any]:
    """Opens gates on the test's store at NOW; closes them after the test."""
    opened: list[Gate] = []

    def make(config: Config) -> Gate:
        gate = Gate.open(store_url, config=config, clock=FrozenClock(NOW))
        opened.append(gate)
        return gate

    yield make
    for gate in opened:
        gate.close()


def events(source: str, n: int, at: datetime = YESTERDAY, **fields: object) -> list[dict]:
    return [{"service": "scraper", "source": source, "time": at, **fields} for _ in range(n)]


def kinds(analyst: Analyst, days: int = 7) -> dict[str, Opportunity]:
    return {o.kind: o for o in analyst.opportunities(days)}


def assert_horizons_agree(o: Opportunity) -> None:
    """Every amount is the one rate over its horizon, rounded once: 30 days never save less
    than 7, and each is within a nano-unit of the exact figure."""
    assert o.monthly_saving_nanos >= o.weekly_saving_nanos
    for horizon, nanos in ((WEEK, o.weekly_saving_nanos), (MONTH, o.monthly_saving_nanos)):
        micros = timedelta(microseconds=1)
        exact = o.exact_saving * Fraction(horizon // micros, o.window // micros)
        assert abs(nanos - exact) <= Fraction(1, 2)
    d = o.to_dict()
    assert (d["saving"], d["weekly_saving"], d["monthly_saving"]) == (
        str(o.saving),
        str(o.weekly_saving),
        str(o.monthly_saving),
    )
    assert d["window_days"] == o.window / timedelta(days=1)
    for amount, nanos in (
        (o.saving, o.saving_nanos),
        (o.weekly_saving, o.weekly_saving_nanos),
        (o.monthly_saving, o.monthly_saving_nanos),
    ):
        assert isinstance(amount, Decimal)
        assert amount == Decimal(nanos).scaleb(-9)


# -- free source available -------------------------------------------------------------------


def test_a_free_source_of_the_same_capability_fires_with_its_exact_saving(open_gate: Any) -> None:
    gate = open_gate(rules_config(cacheable=False))
    gate.record_many(
        events("osm_tiles", 28)
        + events("osm_tiles", 2, success=False)  # answered 28 of 30: 93%
        + events("google_maps", 10)  # $0.10
    )
    analyst = Analyst(gate)
    o = kinds(analyst)["free_source_available"]
    assert (o.source, o.detail["free_source"], o.detail["capability"]) == (
        "google_maps",
        "osm_tiles",
        "imagery",
    )
    # $0.10 x 28/30 over the 7 days; the same rate over 30 days is exactly $0.40 (a rounded
    # week scaled up would be $0.399999998).
    assert o.exact_saving == Fraction(to_nanos("0.10") * 28, 30)
    assert (o.saving_nanos, o.weekly_saving_nanos) == (93_333_333, 93_333_333)
    assert o.monthly_saving_nanos == to_nanos("0.40")
    assert o.to_dict()["monthly_saving"] == "0.4"
    assert "$0.093333333 in 7 days ($0.4 in 30 days)" in o.summary
    assert_horizons_agree(o)
    # Over a 30-day window the same events are a slower rate: $0.093333333 a month, and a
    # week of it is 7/30 of that.
    o30 = kinds(analyst, 30)["free_source_available"]
    assert (o30.saving_nanos, o30.monthly_saving_nanos) == (93_333_333, 93_333_333)
    assert o30.weekly_saving_nanos == 21_777_778  # 0.0933... x 7 / 30 = 0.021777777...8
    assert_horizons_agree(o30)


@pytest.mark.parametrize(
    "free",
    [
        {"price": "free", "capability": "geocoding"},  # free, but answers something else
        {"price": "free"},  # free, capability unknown
        # Of the same capability, $0 so far, but only within a quota: not a free source.
        {
            "tiers": {"request": [{"up_to": 1000, "price": "0"}, {"price": "0.005"}]},
            "capability": "imagery",
        },
        # Of the same capability and free in the window, but charged for since today.
        {
            "price": "free",
            "capability": "imagery",
            "versions": [{"effective_from": "2026-10-20T00:00:00Z", "price": "0.005"}],
        },
    ],
    ids=["other-capability", "no-capability", "free-only-within-a-quota", "no-longer-free"],
)
def test_no_free_source_of_the_same_capability_no_free_source_opportunity(
    open_gate: Any, free: dict[str, Any]
) -> None:
    gate = open_gate(rules_config(cacheable=False, free=free))
    gate.record_many(events("osm_tiles", 30) + events("google_maps", 10))
    assert kinds(Analyst(gate)) == {}


# -- caching ---------------------------------------------------------------------------------


def cache_traffic() -> list[dict]:
    """20 google_maps requests ($0.20), 2 of them served from cache: 10%."""
    return events("google_maps", 18) + events("google_maps", 2, cache_hits=1)


def test_a_cacheable_source_rarely_served_from_cache_fires(open_gate: Any) -> None:
    gate = open_gate(rules_config(cacheable=True))
    gate.record_many(cache_traffic())
    o = kinds(Analyst(gate))["low_cache_hit_rate"]
    assert o.source == "google_maps"
    # $0.20 x (50% - 10%) = $0.08 over the 7 days; $0.08 x 30/7 = $0.342857142857...
    assert (o.saving_nanos, o.weekly_saving_nanos) == (to_nanos("0.08"), to_nanos("0.08"))
    assert o.monthly_saving_nanos == 342_857_143
    assert_horizons_agree(o)


def test_a_source_not_marked_cacheable_is_never_told_to_cache(open_gate: Any) -> None:
    gate = open_gate(rules_config(cacheable=False))
    gate.record_many(cache_traffic())
    assert "low_cache_hit_rate" not in kinds(Analyst(gate))


def test_a_live_stream_is_never_told_to_cache(open_gate: Any) -> None:
    """The stream is all the cost and never cached, but live data cannot be."""
    gate = open_gate(rules_config())
    gate.record_many(events("databento_mbo", 30, units={"MB": 10, "hour": 0}))
    assert gate.config.prices.pricing("databento_mbo").cacheable is False
    assert kinds(Analyst(gate)) == {}


def test_the_demo_marks_the_images_cacheable_and_never_the_stream() -> None:
    config = demo_config()
    cacheable = {name for name, s in config.prices.sources.items() if s.cacheable}
    assert cacheable == {"google_maps_optimized", "mapbox_satellite"}
    # The demo plays the seed's example: it configures the seed's traditional cost.
    assert config.analytics.traditional_cost == to_nanos("2.40")


# -- batching and a cost per request that rose ----------------------------------------------


def test_unbatched_traffic_and_a_rising_cost_per_request(open_gate: Any) -> None:
    gate = open_gate(rules_config(cacheable=False))
    gate.record_many(
        events("google_maps", 20, at=NOW - timedelta(days=10))  # the week before: $0.01 each
        + events("google_maps", 20, cost="0.03")  # now 20 single calls at $0.03...
        + events("google_maps", 10, batch_processing=True)  # ...and 10 batched at $0.01
    )
    found = kinds(Analyst(gate))
    batch = found["batchable_not_batched"]
    assert batch.saving_nanos == to_nanos("0.40")  # 20 x ($0.03 - $0.01)
    assert batch.monthly_saving_nanos == 1_714_285_714  # $0.40 x 30/7
    assert_horizons_agree(batch)
    rose = found["cost_per_request_rose"]
    assert rose.service == "scraper"
    # $0.70 for 30 requests now; at the old $0.01 they would cost $0.30.
    assert rose.saving_nanos == to_nanos("0.40")
    assert rose.weekly_saving_nanos == to_nanos("0.40")
    assert_horizons_agree(rose)
    # No caching advice: the source is not cacheable.
    assert list(found) == ["batchable_not_batched", "cost_per_request_rose"]


# -- a budget running out is an alert, not a saving ------------------------------------------


def test_a_budget_that_runs_out_is_no_opportunity(open_gate: Any) -> None:
    gate = open_gate(rules_config(cacheable=False))
    gate.record_many(
        [
            {"service": "scraper", "source": "google_maps", "time": NOW - timedelta(minutes=m)}
            for m in range(10)
            for _ in range(5)
        ]
    )  # $0.50 in ten minutes against a $1.00 day
    analyst = Analyst(gate)
    live = analyst.live().to_dict()["live_figures"]
    assert live["runs_out_before_reset"]["value"] is True  # the live metrics say so
    assert analyst.opportunities() == []
    assert analyst.opportunities(1) == []
    assert analyst.opportunities_between(NOW - timedelta(days=1), NOW) == []
    assert analyst.weekly_report(NOW.date()).to_dict()["optimization_opportunities"] == []


# -- horizons agree --------------------------------------------------------------------------


def test_a_month_long_window_states_its_days_and_its_horizons_agree() -> None:
    """The issue's $7.11 over a 31-day month (a monthly report's window) beside "$6.88 a
    month": it is 31 days' saving, said so, and a week of it is less than 30 days of it."""
    o = Opportunity("k", Phrase("do it"), Fraction(to_nanos("7.11")), timedelta(days=31))
    d = o.to_dict()
    assert (d["saving"], d["window_days"]) == ("7.11", 31.0)
    assert d["weekly_saving"] == "1.605483871"  # 7.11 x 7/31 = 1.6054838709...
    assert d["monthly_saving"] == "6.880645161"  # 7.11 x 30/31 = 6.8806451612...
    assert_horizons_agree(o)
    # A window that is not whole days (a month with a change of clocks): the same rule.
    dst = Opportunity("k", Phrase("do it"), Fraction(to_nanos("7.11")), timedelta(days=31, hours=1))
    assert dst.to_dict()["window_days"] == pytest.approx(31 + 1 / 24)
    assert_horizons_agree(dst)


def test_the_monthly_report_states_each_recommendation_s_window_and_horizons(
    tmp_path: Path,
) -> None:
    gate = Gate.open(
        f"sqlite:///{tmp_path / 'r.db'}", config=rules_config(), clock=FrozenClock(NOW)
    )
    try:
        gate.record_many(cache_traffic())
        report = Reporter(gate).monthly("2026-10")
        (row,) = [r for r in report.to_dict()["recommendations"] if r["kind"] != "budget"]
        window = datetime(2026, 11, 1, tzinfo=UTC) - datetime(2026, 10, 1, tzinfo=UTC)
        o = Opportunity("k", Phrase(""), Fraction(to_nanos("0.08")), window)
        assert row["window_days"] == 31.0
        assert (row["saving"], row["weekly_saving"], row["monthly_saving"]) == (
            "0.08",
            str(o.weekly_saving),
            str(o.monthly_saving),
        )
        assert row["weekly_saving"] == "0.018064516"  # 0.08 x 7/31
    finally:
        gate.close()


# -- savings vs traditional: only when configured, on every face -----------------------------


@pytest.fixture(params=[None, "0.02"], ids=["not-configured", "configured"])
def traditional(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def priced_gate(tmp_path: Path, traditional: str | None) -> Iterator[Gate]:
    """One $0.01 request today, one the day before yesterday (in the weekly report's week)."""
    gate = Gate.open(
        f"sqlite:///{tmp_path / 's.db'}",
        config=rules_config(cacheable=False, traditional=traditional),
        clock=FrozenClock(NOW),
    )
    gate.record_many(
        events("google_maps", 1, at=NOW - timedelta(minutes=1))
        + events("google_maps", 1, at=NOW - timedelta(days=2))
    )
    yield gate
    gate.close()


def test_savings_vs_traditional_only_when_configured_on_every_face(
    priced_gate: Gate, traditional: str | None
) -> None:
    # $0.01 a request against $0.02: 50% saved; not configured, no figure anywhere.
    percent = None if traditional is None else 50.0
    line = None if traditional is None else "50.0% savings vs traditional"
    analyst = Analyst(priced_gate)
    assert analyst.traditional_cost == (None if traditional is None else to_nanos(traditional))
    assert analyst.live().status()["cost_efficiency"] == line
    week = analyst.weekly_report().to_dict()["cost_efficiency"]
    assert week["savings_vs_traditional"] == percent
    reporter = Reporter(priced_gate)
    monthly = reporter.monthly("2026-10").to_dict()["executive_summary"]
    assert monthly["cost_savings_vs_traditional"] == percent
    weekly = reporter.weekly().to_dict()["cost_efficiency"]
    assert weekly["savings_vs_traditional"] == percent
    keys = make_keys(priced_gate)
    with TestClient(app_for(priced_gate)) as client:
        h = bearer(keys.read)
        current = client.get("/api/cost/current", headers=h).json()
        assert current["status"]["cost_efficiency"] == line
        dashboard = client.get("/cost/dashboard/live", headers=h).json()
        assert dashboard["status"]["cost_efficiency"] == line


def test_a_configured_traditional_cost_with_nothing_priced_says_no_data(open_gate: Any) -> None:
    analyst = Analyst(open_gate(rules_config(traditional="2.40")))
    assert analyst.live().status()["cost_efficiency"] == "no data"
    assert analyst.weekly_report().to_dict()["cost_efficiency"]["savings_vs_traditional"] is None


@pytest.mark.parametrize(("configured", "shown"), [(False, None), (True, "no data")])
def test_the_cli_shows_savings_vs_traditional_only_when_configured(
    tmp_path: Path, configured: bool, shown: str | None
) -> None:
    cfg = tmp_path / "spendgate.toml"
    text = '[sources.maps]\nprice = "0.01"\n'
    cfg.write_text(text + ('[analytics]\ntraditional_cost_per_request = "2.40"\n' * configured))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(app, ["live", "--json", "--db", db, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"]["cost_efficiency"] == shown
