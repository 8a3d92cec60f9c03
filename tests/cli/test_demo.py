"""The demo's workload (`spendgate demo`): its simulated day ends when it is run, never
writes the future, and tells the same story whatever the hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spendgate import Gate
from spendgate import demo as workload
from spendgate.cli import app, shell
from spendgate.markets import MarketHours
from spendgate.store import open_store
from spendgate.testing import FrozenClock


@pytest.mark.parametrize(
    "hour", [(0, 30), (9, 0), (13, 59), (23, 50)], ids=["00:30", "09:00", "13:59", "23:50"]
)
def test_the_simulated_day_ends_now_and_tells_its_story_at_any_hour(
    hour: tuple[int, int],
) -> None:
    now = datetime(2026, 5, 5, *hour, tzinfo=UTC)  # a Tuesday: the market trades all day
    day = workload.SimulatedDay.ending(now)
    assert day.end - day.start == workload.DAY
    clock = FrozenClock(day.start)
    with Gate.open("memory://", config=workload.demo_config(day.reset_hour), clock=clock) as gate:
        # Every budget's window holds the whole day: none resets halfway through the story.
        for budget in gate.config.budgets:
            assert budget.window.bounds(day.start) == budget.window.bounds(now), budget.name
        tally = workload.run(gate, clock, 1500)
        assert clock() <= now
        events = gate.events()
        assert events
        assert max(e.time for e in events) <= now
        assert min(e.time for e in events) >= day.start
        # The story: paid calls approved, then refused at the budget's stop; the stream
        # steps through its levels to its stop line.
        assert tally.decisions["approved"] > 0
        assert tally.decisions["denied"] > 0
        levels = " ".join(tally.stream_levels)
        assert "normal -> warn" in levels
        assert "degraded -> stopped" in levels
        assert tally.stream is not None
        assert tally.stream.level == "stopped"


def test_the_demo_command_writes_nothing_after_the_moment_it_is_run(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = CliRunner().invoke(app, ["demo", "--db", db, "--requests", "200"])
    assert result.exit_code == 0, result.output
    ran = datetime.now(UTC)
    store = open_store(db)
    try:
        events = store.events()
    finally:
        store.close()
    assert len(events) >= 200
    assert max(e.time for e in events) <= ran
    assert min(e.time for e in events) >= ran - workload.DAY - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("end", "streamed"),
    [
        (datetime(2026, 12, 6, 20, 0, tzinfo=UTC), False),  # Sunday 14:00 CT: closed all day
        (datetime(2026, 12, 7, 15, 0, tzinfo=UTC), True),  # Monday 09:00 CT: from midnight CT
        (datetime(2026, 12, 8, 3, 0, tzinfo=UTC), True),  # Monday night: across the halt
    ],
    ids=["sunday", "monday", "monday-night"],
)
def test_the_demo_streams_only_while_the_market_trades(end: datetime, streamed: bool) -> None:
    """The demo streamed 14 h on a Sunday while the dashboard said the market was closed."""
    day = workload.SimulatedDay.ending(end)
    clock = FrozenClock(day.start)
    market = MarketHours("CMES")  # the demo's: the configured calendar, no weekends
    with Gate.open("memory://", config=workload.demo_config(day.reset_hour), clock=clock) as gate:
        tally = workload.run(gate, clock, 600)
        stream = [e for e in gate.events() if e.source == "databento_mbo"]
        assert bool(stream) is streamed
        for e in stream:
            # Each settlement's connected time began while the market traded, and ended
            # before (or at) the market's next close.
            began = e.time - timedelta(seconds=float(e.units["seconds"]))
            assert market.is_open(began), (e.time, e.units)
            closes = market.next_change(began)
            assert closes is None or e.time <= closes, (e.time, closes)
            assert e.labels["trading_date"] == market.trading_date(began).isoformat()
        hours = sum(d.connection_hours for d in tally.stream_days)
        assert (hours > 0) is streamed
        assert hours <= workload.DAY / timedelta(hours=1)


def test_the_demo_command_on_a_sunday_says_the_stream_stayed_disconnected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "clock", FrozenClock(datetime(2026, 12, 6, 20, tzinfo=UTC)))
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = CliRunner().invoke(app, ["demo", "--db", db, "--requests", "200"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "market-data stream: not connected: the market (CMES) was closed" in said
    assert "weekend" in said
