"""Forecasts that know how much they know (issue 19's must-show).

Stores with 0, 1, 3, 7, 14 and 60 days of history, generated with a weekly rhythm and noise:

- every face that shows the month's forecast (Python, REST, the dashboard's JSON, the CLI,
  the monthly report) shows the same one, by the rules: no history, no projection; under
  three weeks of days a low-confidence run rate; from there seasonal-naive, or a method that
  beat it in its own backtest;
- calibration: over 200 seeded simulations per history length, the 80% interval of the
  forecast those faces show covers the realised total of the days left at least 80% of the
  time;
- on a steady series, no projection exceeds the budget by more than its interval allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.analytics.forecast import BASELINE, model_history, outlook
from spendgate.cli import shell
from spendgate.config import parse
from spendgate.reports import Reporter, jsonfile
from spendgate.testing import FrozenClock
from tests.serving import app_for, bearer, make_keys

HISTORIES = (0, 1, 3, 7, 14, 60)
SIMULATIONS = 200
LEVEL = 0.8
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)  # noon on 10 December: 22 days left
CONFIG = {
    "sources": {"api": {"price": "0.01/request"}},
    "budgets": [{"name": "month", "limit": "2000", "window": "month"}],
}


def daily_spend(rng: np.random.Generator, days: int) -> np.ndarray:
    """A plausible daily spend: a level drawn over two orders of magnitude, a weekly rhythm
    (quieter weekends, weekdays within 10%), multiplicative noise of 10-40%, from a random
    weekday."""
    level = float(np.exp(rng.normal(np.log(50), 1)))
    week = np.ones(7)
    week[5:] = rng.uniform(0.3, 1.0, 2)
    week[:5] *= rng.uniform(0.9, 1.1, 5)
    cv = rng.uniform(0.1, 0.4)
    t = np.arange(days) + rng.integers(7)
    series: np.ndarray = level * week[t % 7] * np.exp(rng.normal(-cv * cv / 2, cv, days))
    return series


# -- calibration --------------------------------------------------------------------------------


CHUNKS = {60: 4}
"""Histories whose simulations are split into chunks (each its own test, so they spread over
the workers and each stays far inside its timeout): 60 days fits and backtests ETS models,
about 0.7 s a simulation on an idle core."""
CASES = [(d, c) for d in HISTORIES for c in range(CHUNKS.get(d, 1))]


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("days", "chunk"), CASES, ids=[f"{d}-days-{c}" for d, c in CASES])
def test_the_interval_covers_the_realised_total_as_often_as_it_says(days: int, chunk: int) -> None:
    """The forecast `outlook` chooses (the one every face shows, see below) at its stated 80%
    level, against what the days left then really cost: covered in at least 80% of 200
    seeded simulations (in each chunk of them, where they are split). With no history there
    is no forecast at all, never a made-up one."""
    chunks = CHUNKS.get(days, 1)
    rng = np.random.default_rng([19_000 + days, chunk])
    covered, chosen, runs = 0, set(), SIMULATIONS // chunks
    for _ in range(runs):
        left = int(rng.integers(1, 31))
        series = daily_spend(rng, days + left)
        out = outlook(list(series[:days]), left, level=LEVEL)
        best = out.best
        if days == 0:
            assert best is None
            continue
        assert best is not None
        assert best.level == LEVEL
        chosen.add(out.chosen)
        covered += best.low <= float(series[days:].sum()) <= best.high
    if days == 0:
        return
    print(
        f"\n{days} days ({chunk + 1}/{chunks}): covered {covered}/{runs}, chosen {sorted(chosen)}"
    )
    assert covered / runs >= LEVEL
    if days < model_history():
        assert chosen == {"linear"}


def test_a_steady_series_is_not_projected_past_its_budget_beyond_the_interval() -> None:
    """A steady $10 a day with 5% noise, budgeted at exactly its month: whatever the history,
    the budget lies within the interval or above it, and the projection within 10% of it."""
    rng = np.random.default_rng(7)
    for days in HISTORIES[1:]:
        series = 10 * np.exp(rng.normal(0, 0.05, days))
        out = outlook(list(series), 30, level=LEVEL)
        best = out.best
        assert best is not None
        budget = 300.0
        assert best.low <= budget, days
        assert abs(best.total - budget) <= 0.1 * budget, (days, best.total)
        assert best.total - budget <= best.high - best.total


# -- every face, by the rules ---------------------------------------------------------------


@pytest.fixture(params=HISTORIES, ids=[f"{d}-days" for d in HISTORIES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gate, str, int]]:
    """A SQLite store with `days` complete days of history before NOW (one event a day at
    09:00 costing that day's spend; today's own spend at 09:00 too), read at NOW."""
    days: int = request.param
    url = f"sqlite:///{tmp_path / 'spendgate.db'}"
    gate = Gate.open(url, config=parse(CONFIG), clock=FrozenClock(NOW))
    rng = np.random.default_rng(days)
    series = daily_spend(rng, days + 1)
    midnight = NOW.replace(hour=0)
    events = [
        {
            "service": "svc",
            "source": "api",
            "cost": Decimal(f"{v:.6f}"),
            "time": midnight - timedelta(days=days - i) + timedelta(hours=9),
        }
        for i, v in enumerate(series)
        if days  # an empty store has nothing, today included
    ]
    gate.record_many(events)
    yield gate, url, days
    gate.close()


def same(doc: dict[str, Any] | None, expected: dict[str, Any] | None) -> None:
    """The forecast block of a face equals the Python one (the keys it carries)."""
    if expected is None:
        assert doc is None
        return
    assert doc is not None
    for key in ("projected_total", "interval", "level", "method", "confidence", "reason"):
        assert doc[key] == expected[key], key


def test_every_face_shows_the_same_forecast_by_the_rules(
    store: tuple[Gate, str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate, url, days = store
    assessment = Analyst(gate).monthly_forecast()
    forecast = assessment.forecast

    # The rules.
    if days == 0:
        assert forecast is None
        assert assessment.outlook.reason == "no history: nothing to project"
    else:
        assert forecast is not None
        assert forecast.total >= assessment.spent
        assert forecast.low <= forecast.total <= forecast.high
        if days < model_history():
            assert (forecast.method, forecast.confidence) == ("linear", "low")
            assert forecast.reason.startswith(f"insufficient history: {days} day")
        else:
            scores = assessment.outlook.scores
            if forecast.method == BASELINE:
                assert forecast.confidence == "medium"
                assert forecast.reason.endswith(": seasonal-naive")
            else:
                assert forecast.confidence == "high"
                score = scores[forecast.method]
                assert score.mase is not None
                assert score.baseline is not None
                assert score.origins >= 2
                assert score.mase < score.baseline
    expected = None if forecast is None else forecast.to_dict()
    assert assessment.to_dict()["forecast"] == expected

    # REST and the dashboard's JSON.
    keys = make_keys(gate)
    with TestClient(app_for(gate)) as client:
        got = client.get("/api/cost/forecast/monthly", headers=bearer(keys.read))
        assert got.status_code == 200, got.text
        same(got.json()["forecast"], expected)
        assessment_doc = got.json()["budget_assessment"]
        assert assessment_doc["projected_total"] == (
            None if expected is None else expected["projected_total"]
        )
        charts = client.get("/api/dashboard/charts", headers=bearer(keys.read))
        assert charts.status_code == 200, charts.text
        same(charts.json()["forecast"], expected)

    # The CLI, on the same store at the same instant, from a folder with no spendgate.toml.
    from spendgate.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shell, "clock", gate.clock)
    result = CliRunner().invoke(app, ["forecast", "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    same(json.loads(result.stdout)["forecast"], expected)

    # The monthly report (JSON: the PDF, workbook and CSV render this same model).
    (text,) = jsonfile.render(Reporter(gate).monthly(NOW.strftime("%Y-%m"))).values()
    section = json.loads(text)["month_end_forecast"]
    if expected is None:
        assert section["projected_total"] is None
        assert section["method"] is None
    else:
        assert Decimal(section["projected_total"]) == Decimal(expected["projected_total"])
        assert Decimal(section["interval_low"]) == Decimal(expected["interval"]["low"])
        assert Decimal(section["interval_high"]) == Decimal(expected["interval"]["high"])
        assert (section["method"], section["confidence"]) == (
            expected["method"],
            expected["confidence"],
        )
