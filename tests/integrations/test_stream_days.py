"""Stream usage by trading day (the second seed's `usage_monitoring`): the rule, the meter's
settlements split at the session change, and every face of the history agreeing with the
store's view, which the seed's own SQL reads unchanged."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.markets import UTC_DAYS, MarketHours, trading_days
from spendgate.money import money_text
from spendgate.settings import StreamSettings
from spendgate.store.stream_days import TRADING_DATE
from spendgate.streams import DailyUsage, StreamMeter
from spendgate.testing import FrozenClock
from tests.conftest import POSTGRES_URL
from tests.integrations.test_streams import stream_gate
from tests.serving import app_for, bearer, make_keys

CHICAGO = ZoneInfo("America/Chicago")
CME = MarketHours("CMES")


def ct(*parts: int) -> datetime:
    """A Chicago wall time, as UTC."""
    return datetime(*parts, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("at", "trading_date"),
    [
        (ct(2026, 12, 7, 18, 0), date(2026, 12, 8)),  # Monday 18:00 CT: Tuesday's session
        (ct(2026, 12, 7, 16, 30), date(2026, 12, 7)),  # the daily halt: still Monday's
        (ct(2026, 12, 7, 9, 0), date(2026, 12, 7)),
        (ct(2026, 12, 4, 18, 0), date(2026, 12, 5)),  # Friday evening, no session: the rule
        (ct(2026, 12, 5, 12, 0), date(2026, 12, 5)),  # Saturday (weekend streaming)
        (ct(2026, 12, 6, 17, 30), date(2026, 12, 7)),  # Sunday's Globex open: Monday
        (ct(2026, 12, 24, 18, 0), date(2026, 12, 25)),  # Christmas Eve, closed: the rule
        (ct(2040, 1, 2, 18, 0), date(2040, 1, 3)),  # beyond the installed calendar: the rule
        (ct(2026, 7, 6, 17, 0), date(2026, 7, 7)),  # summer time: still 17:00 Chicago
    ],
)
def test_cme_trading_dates(at: datetime, trading_date: date) -> None:
    assert CME.trading_date(at) == trading_date


def test_other_calendars_and_none() -> None:
    nyse = MarketHours("XNYS")
    evening = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # Monday 20:00 New York
    assert nyse.trading_date(evening) == date(2026, 12, 7)
    assert nyse.trading_day_end(evening) == datetime(2026, 12, 8, 5, 0, tzinfo=UTC)
    assert UTC_DAYS.trading_date(evening) == date(2026, 12, 8)
    assert UTC_DAYS.trading_day_end(evening) == datetime(2026, 12, 9, tzinfo=UTC)
    assert trading_days(StreamSettings(calendar=None)) is UTC_DAYS
    assert trading_days(StreamSettings(calendar="NOPE")) is UTC_DAYS  # the tile says why
    assert isinstance(trading_days(StreamSettings()), MarketHours)


@pytest.mark.parametrize(
    ("at", "end"),
    [
        (ct(2026, 12, 7, 9, 0), ct(2026, 12, 7, 17, 0)),
        (ct(2026, 12, 7, 17, 0), ct(2026, 12, 8, 17, 0)),
        (ct(2026, 12, 4, 18, 0), ct(2026, 12, 5, 17, 0)),  # Friday night to Saturday 17:00
        (ct(2040, 1, 2, 9, 0), ct(2040, 1, 2, 17, 0)),  # beyond the calendar
        (ct(2026, 11, 1, 9, 0), ct(2026, 11, 1, 17, 0)),  # the day summer time ends
    ],
)
def test_a_trading_day_ends_where_the_next_begins(at: datetime, end: datetime) -> None:
    assert CME.trading_day_end(at) == end
    assert CME.trading_date(end) != CME.trading_date(at)
    assert CME.trading_date(end - timedelta(microseconds=1)) == CME.trading_date(at)


def recent_monday() -> datetime:
    """16:00 Chicago time on a Monday a week or two before now: within the seed's SQL's
    `date('now', '-30 days')`, which reads the real clock."""
    today = datetime.now(CHICAGO).date() - timedelta(days=8)
    monday = today - timedelta(days=today.weekday())
    return ct(monday.year, monday.month, monday.day, 16, 0)


def stream_across_the_session_change(gate: Gate, clock: FrozenClock) -> StreamMeter:
    """Monday 16:00-16:30 CT and on to 17:00 CT connected, ten messages of 1000 bytes; then
    five more at 17:30 CT, stopped at 18:30 CT: 1 h on Monday, 1.5 h on Tuesday."""
    meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
    meter.start()
    for _ in range(10):
        meter.record(1000)
    clock.advance(timedelta(minutes=30))
    meter.flush()
    clock.advance(timedelta(hours=1))  # 17:30 CT: the day ended at 17:00 CT
    for _ in range(5):
        meter.record(1000)
    clock.advance(timedelta(hours=1))
    meter.stop()
    return meter


def seed_rows(store_url: str, schema: str | None) -> list[tuple[str, float, int, float]]:
    """The seed's `get_cost_history(30)` on the store: its SQL unchanged on SQLite, the same
    question in PostgreSQL's words there."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            return conn.execute(
                """
            SELECT date, estimated_cost, events_processed, connection_time
            FROM usage_monitoring
            WHERE date >= date('now', '-{} days')
            ORDER BY date DESC
        """.format(30)  # noqa: UP032 - the seed's own text
            ).fetchall()
    with psycopg.connect(POSTGRES_URL, options=f"-csearch_path={schema}") as pg:
        return pg.execute(
            "SELECT date, estimated_cost, events_processed, connection_time "
            "FROM usage_monitoring WHERE date >= to_char((now() AT TIME ZONE 'UTC') "
            "- interval '30 days', 'YYYY-MM-DD') ORDER BY date DESC"
        ).fetchall()


def view_ids(store_url: str, schema: str | None) -> list[tuple[int, str, str]]:
    query = "SELECT id, created_at, source FROM usage_monitoring ORDER BY date DESC"
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(POSTGRES_URL, options=f"-csearch_path={schema}") as pg:
        return pg.execute(query).fetchall()


def test_history_is_kept_by_trading_day_and_the_view_agrees(store_url: str) -> None:
    start = recent_monday()
    clock = FrozenClock(start)
    monday, tuesday = start.astimezone(CHICAGO).date(), start.astimezone(CHICAGO).date()
    tuesday += timedelta(days=1)
    with stream_gate(clock, store_url) as gate:
        meter = stream_across_the_session_change(gate, clock)
        history = meter.history(days=30)
        assert [(h.date, h.events_processed, h.data_bytes) for h in history] == [
            (tuesday, 5, 5000),
            (monday, 10, 10000),
        ]
        assert [round(h.connection_hours, 9) for h in history] == [1.5, 1.0]
        costs = [e.cost or 0 for e in gate.events()]
        assert sum(h.estimated_cost for h in history) == sum(costs)  # nothing lost or doubled
        # Every settlement carries its trading day; none spans two.
        assert {e.labels[TRADING_DATE] for e in gate.events()} == {
            monday.isoformat(),
            tuesday.isoformat(),
        }
        assert history[1].created_at == start + timedelta(minutes=30)  # its first settlement
        if store_url.startswith("memory"):
            return
        schema = store_url.rpartition("schema=")[2] if "schema=" in store_url else None
        # The seed's SQL, unchanged, reads the same rows: REAL currency units and hours.
        assert seed_rows(store_url, schema) == [
            (h.date.isoformat(), h.estimated_cost / 1e9, h.events_processed, h.connection_hours)
            for h in history
        ]
        assert view_ids(store_url, schema) == [
            (h.id, h.created_at.isoformat(timespec="microseconds"), "databento_mbo")
            for h in history
        ]


def test_rest_rows_carry_the_seeds_names(tmp_path: Path) -> None:
    clock = FrozenClock(ct(2026, 12, 7, 16, 0))
    with stream_gate(clock, f"sqlite:///{tmp_path}/rest.db") as gate:
        meter = stream_across_the_session_change(gate, clock)
        history: list[DailyUsage] = meter.history()
        token = make_keys(gate).read
        with TestClient(app_for(gate)) as client:
            response = client.get(
                "/api/streams/usage",
                params={"source": "databento_mbo", "service": "mbo_stream"},
                headers=bearer(token),
            )
            tile = client.get("/api/dashboard/streams", headers=bearer(token))
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [r["date"] for r in rows] == ["2026-12-08", "2026-12-07"]
    assert set(rows[0]) >= {
        "id",
        "date",
        "events_processed",
        "data_bytes",
        "estimated_cost",
        "connection_time",
        "created_at",
    }
    assert [r["id"] for r in rows] == [h.id for h in history]
    assert rows[1]["created_at"] == "2026-12-07T22:30:00.000000+00:00"
    assert [r["estimated_cost"] for r in rows] == [money_text(h.estimated_cost) for h in history]
    assert tile.status_code == 200, tile.text  # the dashboard's tile: today's trading day
    (stream,) = tile.json()["streams"]
    assert (stream["date"], stream["events_processed"]) == ("2026-12-08", 5)


def test_an_idle_stream_books_each_trading_day_its_own_connected_time(store_url: str) -> None:
    clock = FrozenClock(ct(2026, 12, 7, 12, 0))  # Monday noon, Chicago
    with stream_gate(clock, store_url) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        clock.set(ct(2026, 12, 9, 12, 0))  # Wednesday noon, not a message in between
        meter.flush()
        meter.stop()
        history = meter.history(days=5)
    assert [(h.date.isoformat(), round(h.connection_hours, 9)) for h in history] == [
        ("2026-12-09", 19.0),  # from Tuesday 17:00
        ("2026-12-08", 24.0),
        ("2026-12-07", 5.0),  # to Monday 17:00
    ]
