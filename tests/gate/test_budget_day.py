"""The seed's `record_expense` carries `budget_day`: the local day an expense counts in, by
the calendar of the budget over it (its zone and reset hour), on every backend; a retry
answers the day its stored event counts in, not the retry's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock
from tests.serving import app_for, bearer, make_keys

# 10:30 UTC on 2 March is 05:30 in New York: before the 06:00 reset, so still 1 March's day.
BEFORE_RESET = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


def config() -> Any:
    return parse(
        {
            "sources": {
                "maps": {"price": "0.002/request"},
                "stream": {"price": "0.001/request"},
                "loose": {"price": "0.001/request"},
            },
            "budgets": [
                # A rolling budget says nothing of days: the calendar is the next one's.
                {"name": "hourly", "limit": "5", "window": "rolling", "length": "1h"},
                {
                    "name": "daily",
                    "limit": "25.00",
                    "timezone": "America/New_York",
                    "reset_hour": 6,
                    "scope": "source:maps",
                },
                {
                    "name": "monthly",
                    "limit": "500",
                    "window": "month",
                    "timezone": "Asia/Tokyo",
                    "scope": "source:stream",
                },
            ],
        }
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(BEFORE_RESET)


@pytest.fixture
def gate(store_url: str, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(store_url, config=config(), clock=clock)
    yield g
    g.close()


def test_the_day_is_the_budgets_local_day(gate: Gate, clock: FrozenClock) -> None:
    assert gate.record("mapper", "maps", request_id="a").budget_day == date(2026, 3, 1)
    # A month budget's days are its zone's: 19:30 in Tokyo.
    assert gate.record("feed", "stream", request_id="b").budget_day == date(2026, 3, 2)
    # No calendar budget over it: the UTC date.
    assert gate.record("misc", "loose", request_id="c").budget_day == date(2026, 3, 2)
    clock.advance(timedelta(hours=1))  # 06:30 in New York: the next day began
    assert gate.record("mapper", "maps", request_id="d").budget_day == date(2026, 3, 2)
    # An event dated earlier counts in its own day.
    early = gate.record("mapper", "maps", request_id="e", time=BEFORE_RESET - timedelta(days=3))
    assert early.budget_day == date(2026, 2, 26)


def test_a_retry_answers_the_stored_events_day(gate: Gate, clock: FrozenClock) -> None:
    first = gate.record("mapper", "maps", request_id="r1")
    assert (first.status, first.budget_day) == ("created", date(2026, 3, 1))
    clock.advance(timedelta(days=1))
    again = gate.record("mapper", "maps", request_id="r1")
    assert (again.status, again.budget_day) == ("exists", date(2026, 3, 1))
    [batch] = gate.record_many([{"service": "mapper", "source": "maps", "request_id": "r1"}])
    assert (batch.status, batch.budget_day) == ("exists", date(2026, 3, 1))


def test_arecord_answers_the_day_too(gate: Gate, clock: FrozenClock) -> None:
    created = asyncio.run(gate.arecord("mapper", "maps", request_id="x"))
    clock.advance(timedelta(days=2))
    retried = asyncio.run(gate.arecord("mapper", "maps", request_id="x"))
    assert created.budget_day == retried.budget_day == date(2026, 3, 1)


def test_rest_answers_budget_day(tmp_path: Any, clock: FrozenClock) -> None:
    g = Gate.open(f"sqlite:///{tmp_path / 'day.db'}", config=config(), clock=clock)
    keys = make_keys(g)
    try:
        with TestClient(app_for(g)) as client:
            body = {"service": "mapper", "source": "maps", "request_id": "h1"}
            one = client.post("/api/events", json=body, headers=bearer(keys.write))
            assert one.status_code == 201, one.text
            assert one.json()["budget_day"] == "2026-03-01"
            batch = client.post(
                "/api/events/batch",
                json={"events": [body, {**body, "request_id": "h2"}]},
                headers=bearer(keys.write),
            )
            assert batch.status_code == 200, batch.text
            days = [(r["status"], r["budget_day"]) for r in batch.json()["results"]]
            assert days == [("exists", "2026-03-01"), ("created", "2026-03-01")]
    finally:
        g.close()
