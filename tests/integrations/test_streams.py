"""Stream meters (the second seed): levels, leases, history and market hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spendgate import BudgetExceededError, Gate, ValidationError, to_nanos
from spendgate.config import parse
from spendgate.streams import MarketHours, StreamMeter
from spendgate.testing import FrozenClock
from tests.integrations.conftest import paid_gate

MB = 2**20


STREAM_LADDER = {"warn": 0.6, "degrade": 0.7, "stop": 0.8}


def stream_gate(
    clock: FrozenClock, url: str = "memory://", hour: str | None = "1.00", **budget: object
) -> Gate:
    price = {"MB": "0.01"} | ({"hour": hour} if hour else {})
    return Gate.open(
        url,
        config=parse(
            {
                "sources": {"databento_mbo": {"price": price}, "maps": {"price": "0.002"}},
                "budgets": [
                    {
                        "name": "streaming",
                        "limit": "10",
                        "scope": "source:databento_mbo",
                        "thresholds": STREAM_LADDER,  # the meter follows it
                        **budget,
                    }
                ],
            }
        ),
        clock=clock,
    )


def spend_mb(meter: StreamMeter, megabytes: int) -> None:
    for _ in range(megabytes):
        meter.record(MB)
    meter.flush()


def test_levels_rise_at_their_fractions_and_stop_at_080(store_url: str, clock: FrozenClock) -> None:
    changes: list[tuple[str, str]] = []
    with stream_gate(clock, store_url, hour=None) as gate:
        meter = StreamMeter(
            gate,
            "mbo_stream",
            "databento_mbo",
            on_level_change=lambda old, new: changes.append((old, new)),
        )
        meter.start()
        spend_mb(meter, 599)  # $5.99
        assert meter.level == "normal"
        spend_mb(meter, 1)  # $6.00: 60%
        assert meter.level == "warn"
        spend_mb(meter, 100)  # $7.00
        assert meter.level == "degraded"
        assert meter.should_continue()
        spend_mb(meter, 100)  # $8.00: the stop line; no further lease
        assert meter.level == "stopped"
        assert not meter.should_continue()
        meter.assert_budget_safe()  # the seed's check is at the limit, not the stop line
        assert changes == [("normal", "warn"), ("warn", "degraded"), ("degraded", "stopped")]
        (status,) = gate.status()
        assert status.spent_nanos == to_nanos("8.00")
        assert status.reserved_nanos == 0
        spend_mb(meter, 200)  # a caller that ignored should_continue(): booked, to $10.00
        with pytest.raises(BudgetExceededError) as raised:
            meter.assert_budget_safe()
        assert str(raised.value) == (
            "DAY BUDGET EXCEEDED: $10 >= $10 (budget 'streaming', scope source:databento_mbo)"
        )


def test_usage_never_passes_the_stop_line_while_the_caller_obeys(clock: FrozenClock) -> None:
    with stream_gate(clock) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        messages = 0
        while meter.should_continue() and messages < 100_000:
            meter.record(100_000)
            messages += 1
            if messages % 500 == 0:
                clock.advance(30)
        meter.stop()
        (status,) = gate.status()
        # Every settlement drew on a lease the budget granted. The clock jumps 30 s at a time
        # here, so the last settlement may carry up to one jump of connected time past its
        # lease: that part is booked truthfully and counted as overshoot, never hidden.
        assert status.spent_nanos - status.balance.overshoot <= to_nanos("8.00")
        assert status.balance.overshoot < to_nanos("0.0084")  # 30 s at $1.00 an hour
        assert status.spent_nanos >= to_nanos("7.80")


def test_two_meters_share_a_budget_without_a_false_stop(clock: FrozenClock) -> None:
    with paid_gate(clock) as gate:
        a = StreamMeter(gate, "a", "databento_mbo", lease="0.60")
        b = StreamMeter(gate, "b", "databento_mbo", lease="0.60")
        a.start()
        b.start()  # a holds 0.60 of the 0.80 stop line: b gets the 0.20 left
        assert (a.level, b.level) == ("normal", "normal")
        assert a.should_continue()
        assert b.should_continue()
        a.stop()  # a's lease comes back
        b.flush()
        assert b.should_continue()
        assert b.level == "normal"
        assert gate.status()[0].spent_nanos == 0


def test_hysteresis_restores_normal_only_below_030(clock: FrozenClock) -> None:
    changes: list[tuple[str, str]] = []
    with stream_gate(clock, hour=None, window="rolling", length="1h", granularity="1m") as gate:
        meter = StreamMeter(
            gate,
            "mbo_stream",
            "databento_mbo",
            on_level_change=lambda old, new: changes.append((old, new)),
        )
        meter.start()
        spend_mb(meter, 250)  # $2.50 in the first minute
        clock.advance(timedelta(minutes=30))
        spend_mb(meter, 400)  # $6.50 in the hour: warn
        assert meter.level == "warn"
        clock.advance(timedelta(minutes=31))  # the first $2.50 ages out: $4.00, 40%
        meter.flush()
        assert meter.level == "warn"  # inside the band: no flapping back to normal
        clock.advance(timedelta(minutes=31))  # everything aged out: 0%
        meter.flush()
        assert meter.level == "normal"
        assert changes == [("normal", "warn"), ("warn", "normal")]


def test_connected_time_is_charged_and_stats_follow_the_seed(clock: FrozenClock) -> None:
    with stream_gate(clock) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        for _ in range(50):
            meter.record(MB)
        clock.advance(timedelta(hours=2))
        stats = meter.usage_stats()
        assert stats.estimated_cost == to_nanos("2.50")  # 50 MB x $0.01 + 2 h x $1.00
        assert stats.events_processed == 50
        assert stats.bytes_processed == 50 * MB
        assert stats.runtime_hours == 2.0
        assert stats.to_dict()["cost_per_event"] == "0.05"
        meter.stop()
        assert gate.status()[0].spent_nanos == to_nanos("2.50")


def test_leases_settle_before_their_ttl(clock: FrozenClock) -> None:
    ttl = timedelta(minutes=5)
    lease = to_nanos("0.50")
    with paid_gate(clock) as gate:
        assert gate.config.reservation_ttl == ttl
        meter = StreamMeter(gate, "s", "databento_mbo", lease="0.50")
        meter.start()
        assert gate.status()[0].reserved_nanos == lease  # the first lease is held
        meter.record(100)
        clock.advance(ttl / 2)
        meter.record(100)  # half the TTL has passed: settled and renewed, not left to expire
        (status,) = gate.status()
        # Settled: 200 bytes at $0.01/MB and 150 s connected at $1.00/hour (within a
        # nano-unit of the exact figure, whichever way it rounds); renewed: a lease held.
        exact = Decimal(200) / 2**20 * Decimal("0.01") + Decimal(150) / 3600
        assert abs(status.spent_nanos - exact * 10**9) <= 1
        assert status.reserved_nanos == lease
        clock.advance(ttl / 2 + timedelta(seconds=1))
        # The first lease's time ran out: it was settled, so nothing is left to expire...
        assert gate.expire() == 0
        assert gate.status()[0].reserved_nanos == lease
        clock.advance(ttl / 2)
        # ...while the renewed one, not settled by its end (the meter saw no message),
        # expires and is counted: expire() does see a lease left to run out.
        assert gate.expire() == 1
        assert gate.status()[0].reserved_nanos == 0


def test_daily_history_sums_to_the_recorded_usage(store_url: str, clock: FrozenClock) -> None:
    with stream_gate(clock, store_url) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        for day in range(3):
            for _ in range(10 + day):
                meter.record(MB)
            clock.advance(timedelta(hours=1))
            meter.flush()
            clock.advance(timedelta(hours=23))
            meter.flush()
        meter.stop()
        history = meter.history(days=7)
        assert [h.date.isoformat() for h in history] == [
            "2026-01-08",
            "2026-01-07",
            "2026-01-06",
            "2026-01-05",
        ]
        assert sum(h.events_processed for h in history) == 33
        assert sum(h.data_bytes for h in history) == 33 * MB
        assert sum(h.estimated_cost for h in history) == sum(
            e.cost or 0 for e in gate.events() if e.source == "databento_mbo"
        )
        assert round(sum(h.connection_hours for h in history), 6) == 72.0


@pytest.mark.parametrize(
    ("when", "weekend_streaming", "open_"),
    [
        (datetime(2026, 11, 24, 15, 0, tzinfo=UTC), False, True),  # a Tuesday session
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), False, False),  # Saturday
        (datetime(2026, 12, 25, 15, 0, tzinfo=UTC), False, False),  # Christmas: CME closed
        (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), False, False),  # Sunday evening, no weekends
        (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), True, True),  # Globex opens Sunday 17:00 CT
        (datetime(2026, 11, 24, 22, 30, tzinfo=UTC), False, False),  # 16:30 CT: the daily halt
        (datetime(2026, 11, 24, 21, 59, tzinfo=UTC), False, True),  # 15:59 CT: before it
        (datetime(2026, 11, 24, 23, 0, tzinfo=UTC), False, True),  # 17:00 CT: open again
    ],
)
def test_market_hours(when: datetime, weekend_streaming: bool, open_: bool) -> None:
    assert MarketHours("CMES", weekend_streaming=weekend_streaming).is_open(when) is open_


def test_market_states_say_why() -> None:
    market = MarketHours("CMES")
    assert market.state(datetime(2026, 11, 24, 22, 30, tzinfo=UTC)).reason == (
        "closed: the daily halt, 16:00-17:00 America/Chicago"
    )
    assert market.state(datetime(2026, 11, 28, 15, 0, tzinfo=UTC)).reason.startswith(
        "closed: weekend"
    )
    # Beyond the installed calendar: an explained answer, not an exception.
    far = market.state(datetime(2040, 1, 3, 15, 0, tzinfo=UTC))
    assert far.open is False
    assert far.reason.startswith("unknown: 2040-01-03T15:00:00+00:00 is beyond the installed")


def test_a_running_meter_stops_at_the_close_and_may_resume_at_the_next_open() -> None:
    """The demo streamed 14 hours on a Sunday while the dashboard said the market was closed."""
    clock = FrozenClock(datetime(2026, 12, 4, 21, 0, tzinfo=UTC))  # Friday 15:00 CT
    with stream_gate(clock) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo", market=MarketHours())
        assert meter.should_start()
        meter.start()
        meter.record(1000)
        assert meter.should_continue()
        clock.set(datetime(2026, 12, 4, 22, 0, tzinfo=UTC))  # Friday 16:00 CT: the close
        assert not meter.should_continue()
        meter.stop()
        clock.set(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))  # Sunday morning: closed
        assert not meter.should_start()
        clock.set(datetime(2026, 12, 7, 15, 0, tzinfo=UTC))  # Monday 09:00 CT: open
        assert meter.should_start()
        meter.start()
        assert meter.should_continue()
        meter.stop()


def test_should_start_combines_market_budget_and_auth() -> None:
    clock = FrozenClock(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    with stream_gate(clock) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo", market=MarketHours())
        meter.start()
        assert meter.should_start(lambda: True)
        assert not meter.should_start(lambda: False)
        clock.set(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))
        assert not meter.should_start()


def test_market_hours_refuse_bad_input() -> None:
    with pytest.raises(ValidationError, match="calendar"):
        MarketHours(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timezone-aware"):
        MarketHours().is_open(datetime(2026, 11, 24, 15, 0))


def test_bad_input_is_refused(clock: FrozenClock) -> None:
    with stream_gate(clock) as gate:
        with pytest.raises(ValidationError, match="calendar"):
            MarketHours("NOPE")
        with pytest.raises(ValidationError, match="priced per MB"):
            StreamMeter(gate, "svc", "maps")
        with pytest.raises(ValidationError, match="thresholds"):
            StreamMeter(gate, "svc", "databento_mbo", thresholds=(0.8, 0.7, 0.9))  # type: ignore[arg-type]
        meter = StreamMeter(gate, "svc", "databento_mbo")
        with pytest.raises(ValidationError, match="start"):
            meter.flush()
        meter.start()
        for bad in (-1, 1.5, True, "10"):
            with pytest.raises(ValidationError, match="nbytes"):
                meter.record(bad)  # type: ignore[arg-type]
        assert meter.usage_stats().events_processed == 0
        assert gate.events() == []


def test_stop_disconnects_once_and_time_stops_counting(clock: FrozenClock) -> None:
    with stream_gate(clock) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        clock.advance(timedelta(hours=1))
        meter.stop()
        clock.advance(timedelta(hours=5))
        meter.stop()  # harmless
        assert gate.status()[0].spent_nanos == to_nanos("1.00")
        assert meter.usage_stats().runtime_hours == 1.0
        meter.record(MB)  # a message that raced the stop is still booked, with no time
        assert gate.status()[0].spent_nanos == to_nanos("1.01")


def test_callbacks_may_call_the_meter_and_start_twice_is_refused(clock: FrozenClock) -> None:
    seen = []
    with paid_gate(clock) as gate:
        meter = StreamMeter(
            gate,
            "s",
            "databento_mbo",
            on_level_change=lambda old, new: seen.append(meter.usage_stats().level),
        )
        meter.start()
        with pytest.raises(ValidationError, match="stop"):
            meter.start()
        for _ in range(85):
            meter.record(2**20)  # $0.85 of a $1.00 budget: past its ladder's warn line, 80%
        meter.flush()
        assert seen  # the callback ran, and could read the meter
        meter.stop()
        meter.record(10)  # a late message: booked, no new lease taken
        assert gate.status()[0].reserved_nanos == 0


@pytest.mark.parametrize(
    ("ladder", "expected"),
    [
        # The case: warn 0.5, stop 0.9 was replaced by 0.6 / 0.7 / 0.8, and the meter
        # stopped at 80% while the budget said "warn".
        ({"warn": 0.5, "stop": 0.9}, [(45, "normal"), (55, "warn"), (85, "warn"), (95, "stopped")]),
        # The seed's streaming budget: warn 0.6, stop 0.8.
        ({"warn": 0.6, "stop": 0.8}, [(55, "normal"), (65, "warn"), (75, "warn"), (85, "stopped")]),
    ],
    ids=["warn-0.5-stop-0.9", "the-seeds-0.6-0.8"],
)
def test_the_meter_follows_its_budgets_own_ladder(
    clock: FrozenClock, ladder: dict[str, float], expected: list[tuple[int, str]]
) -> None:
    with stream_gate(clock, hour=None, limit="1.00", thresholds=ladder) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        spent = 0
        for cents, level in expected:
            spend_mb(meter, cents - spent)  # $0.01 a MB
            spent = cents
            assert meter.level == level, cents
            (status,) = gate.status()
            said = status.budget.level(status.spent_nanos)  # the budget's ladder, spend alone
            assert said == {"stopped": "stop"}.get(level, level), cents
        assert not meter.should_continue()


def test_should_start_answers_before_start_in_the_seeds_order(clock: FrozenClock) -> None:
    """The seed asks should_start_streaming() before it starts: market, budget, auth."""
    with stream_gate(clock, hour=None) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        assert meter.should_start() is True
        assert meter.should_start(lambda: False) is False
        gate.record("other", "databento_mbo", cost="8.00")  # the budget's stop line: 80%
        assert meter.should_start() is False
