"""Regressions for what review found in the routing, stream and HTTP integrations."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest

from spendgate import Gate, ValidationError, to_nanos
from spendgate.config import parse
from spendgate.http import MeteredTransport, route_table
from spendgate.router import FreeFirstRouter
from spendgate.streams import MarketHours, StreamMeter
from spendgate.testing import FrozenClock


def paid_gate(clock: FrozenClock, **extra: object) -> Gate:
    return Gate.open(
        "memory://",
        clock=clock,
        config=parse(
            {
                "sources": {
                    "osm": {"price": "free"},
                    "maps": {"price": "0.002"},
                    "pricey": {"price": "0.003"},
                    "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
                },
                "budgets": [{"name": "daily", "limit": "1.00"}, *extra.get("budgets", [])],
            }
        ),
    )  # type: ignore[misc]


def test_a_router_retry_is_not_paid_twice(clock: FrozenClock) -> None:
    calls = []

    def maps(x: int) -> int:
        calls.append(x)
        return x

    def osm(x: int) -> int:
        raise LookupError("no tile")

    with paid_gate(clock) as gate:
        router = FreeFirstRouter(gate, "svc", [("osm", osm), ("maps", maps)])
        first = router(1, request_id="property-17")
        again = router(1, request_id="property-17")
        assert (first.status, again.status) == ("served", "already_recorded")
        assert calls == [1]
        (status,) = gate.status()
        assert (status.spent, status.reserved) == (to_nanos("0.002"), 0)


def test_an_unusable_quality_score_fails_the_source_before_paying(clock: FrozenClock) -> None:
    with paid_gate(clock) as gate:
        router = FreeFirstRouter(
            gate,
            "svc",
            [("osm", lambda: {"q": math.nan}), ("maps", lambda: {"q": 0.9})],
            quality=lambda r: r["q"],
            min_quality=0.5,
        )
        outcome = router()
        assert outcome.served_by == "maps"
        assert "unusable quality" in outcome.failures[0].reason
        assert gate.status()[0].reserved == 0


def test_a_sources_own_budget_moves_on_to_the_next_paid_source(clock: FrozenClock) -> None:
    cap = {"name": "maps-cap", "limit": "0.001", "scope": "source:maps"}
    with paid_gate(clock, budgets=[cap]) as gate:
        router = FreeFirstRouter(gate, "svc", [("maps", lambda: "m"), ("pricey", lambda: "p")])
        outcome = router()
        assert (outcome.status, outcome.served_by) == ("served", "pricey")


def test_leases_settle_before_their_ttl(clock: FrozenClock) -> None:
    ttl = timedelta(minutes=5)
    lease = to_nanos("0.50")
    with paid_gate(clock) as gate:
        assert gate.config.reservation_ttl == ttl
        meter = StreamMeter(gate, "s", "databento_mbo", lease="0.50")
        meter.start()
        assert gate.status()[0].reserved == lease  # the first lease is held
        meter.record(100)
        clock.advance(ttl / 2)
        meter.record(100)  # half the TTL has passed: settled and renewed, not left to expire
        (status,) = gate.status()
        # Settled: 200 bytes at $0.01/MB and 150 s connected at $1.00/hour (within a
        # nano-unit of the exact figure, whichever way it rounds); renewed: a lease held.
        exact = Decimal(200) / 2**20 * Decimal("0.01") + Decimal(150) / 3600
        assert abs(status.spent - exact * 10**9) <= 1
        assert status.reserved == lease
        clock.advance(ttl / 2 + timedelta(seconds=1))
        # The first lease's time ran out: it was settled, so nothing is left to expire...
        assert gate.expire() == 0
        assert gate.status()[0].reserved == lease
        clock.advance(ttl / 2)
        # ...while the renewed one, not settled by its end (the meter saw no message),
        # expires and is counted: expire() does see a lease left to run out.
        assert gate.expire() == 1
        assert gate.status()[0].reserved == 0


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
        for _ in range(70):
            meter.record(2**20)  # $0.70 of a $1.00 budget: warn, then degraded
        meter.flush()
        assert seen  # the callback ran, and could read the meter
        meter.stop()
        meter.record(10)  # a late message: booked, no new lease taken
        assert gate.status()[0].reserved == 0


def test_http_routes_must_be_bare_hosts_and_settleable(clock: FrozenClock) -> None:
    with paid_gate(clock) as gate:
        for key in ("https://maps.example.com", "maps.example.com:443"):
            with pytest.raises(ValidationError, match="no scheme, no port"):
                MeteredTransport(gate, "svc", {key: "maps"})
        with pytest.raises(ValidationError, match="priced per"):
            MeteredTransport(gate, "svc", {"feed.example.com": "databento_mbo"}, estimate="1")
    source_for = route_table({"api.example.com/v4": "maps"})
    assert source_for("api.example.com", "/v4/tiles") == "maps"
    assert source_for("api.example.com", "/v40/tiles") is None


def test_market_hours_refuse_bad_input() -> None:
    from datetime import datetime

    with pytest.raises(ValidationError, match="calendar"):
        MarketHours(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timezone-aware"):
        MarketHours().is_open(datetime(2026, 11, 24, 15, 0))


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
        assert gate.status()[0].spent == 0
