"""The demo workload: the seed's five services, free sources first, paid ones through the gate.

Each simulated request goes through a `FreeFirstRouter`: the free image sources in order,
each with a realistic success rate, then the paid ones (Mapbox, then Google) only if the
budget allows. When the budget refuses, the request ends with the seed's
`use_free_sources_only`. Every request becomes one event, so the figures shown afterwards come
from the store. Beside them a market-data stream (`DemoStream`) is connected while the
configured market trades and its budget allows: it disconnects at the close (and at its
budget's stop line) and connects again at the next open.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from spendgate.config import parse
from spendgate.gate import Gate
from spendgate.router import FreeFirstRouter
from spendgate.settings import SEED_SOURCES, Config
from spendgate.streams import DailyUsage, MarketHours, StreamMeter, UsageStats
from spendgate.testing import FrozenClock

SERVICES = ("scraper", "enrichment", "image_processor", "lead_generator", "ml_inference")
FREE_SOURCES = {
    # source: chance it serves a request
    "extended_cache": 0.35,
    "openstreetmap_tiles": 0.30,
    "local_super_resolution": 0.20,
    "geographic_batch": 0.15,
    "synthetic_generation": 0.10,
}
PAID_SOURCES = ("mapbox_satellite", "google_maps_optimized")  # cheapest first
PAID_SUCCESS = 0.97
PIPELINE = {"pipeline": "property"}  # the image pipeline's calls; the daily budget's scope
STREAM_MESSAGES = 20  # market-data messages per simulated request
DAY = timedelta(hours=14)
"""The simulated working day: it ends when the demo is run, and never writes the future."""


@dataclass(frozen=True, slots=True)
class SimulatedDay:
    """The simulated day that ends at `end` (the moment the demo is run), and the UTC hour
    at which the demo's daily budgets reset so that the whole day falls in one window.

    The story must not depend on the hour: the stream's budget is spent by the hour
    connected, so the day cannot be shortened to fit since midnight (run at 00:05, it would
    never reach its levels); and a day crossing the budgets' reset would restart them
    halfway. So the budgets reset at midnight when the day fits since then, and otherwise at
    the hour the day starts in (yesterday evening, run early in the morning).

    >>> day = SimulatedDay.ending(datetime(2026, 5, 1, 9, 30, tzinfo=UTC))
    >>> day.start.isoformat(), day.reset_hour
    ('2026-04-30T19:30:00+00:00', 19)
    """

    start: datetime
    end: datetime
    reset_hour: int

    @classmethod
    def ending(cls, now: datetime) -> SimulatedDay:
        """The day of `DAY` that ends at `now`."""
        end = now.astimezone(UTC)
        start = end - DAY
        return cls(start, end, 0 if start.date() == end.date() else start.hour)


def demo_config(reset_hour: int = 0) -> Config:
    """The seed's sources and small daily budgets (resetting at `reset_hour` UTC), so a
    short run shows every decision; savings are shown against the seed's traditional cost."""
    window = {"window": "day", "timezone": "UTC", "reset_hour": reset_hour}
    return parse(
        {
            "sources": SEED_SOURCES,
            # The demo plays the seed's example, so it configures the seed's $2.40 a request
            # "traditionally" (before free-first): without it no savings figure is shown.
            "analytics": {"traditional_cost_per_request": "2.40"},
            "budgets": [
                {
                    "name": "daily",
                    "limit": "0.60",
                    "emergency": "0.20",
                    "scope": "label:pipeline=property",
                    "thresholds": {"warn": 0.8, "stop": 1.0},
                    **window,
                },
                {
                    "name": "streaming",
                    "limit": "15.00",
                    "scope": "source:databento_mbo",
                    "thresholds": {"warn": 0.6, "degrade": 0.7, "stop": 0.8},
                    **window,
                },
                {
                    "name": "enrichment",
                    "limit": "0.10",
                    "scope": "service:enrichment",
                    "thresholds": {"warn": 0.6, "degrade": 0.7, "stop": 1.0},
                    **window,
                },
            ],
        }
    )


@dataclass
class Tally:
    """What the demo saw happen, counted independently of the store."""

    decisions: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    stream_levels: list[str] = field(default_factory=list)
    stream: UsageStats | None = None
    stream_days: list[DailyUsage] = field(default_factory=list)  # by trading day, stored
    stream_market: MarketHours | None = None  # the market the stream followed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, decision: str | None, served_by: str) -> None:
        """Count one request's outcome."""
        with self.lock:
            if decision is not None:
                self.decisions[decision] += 1
            self.served_by[served_by] += 1


class DemoStream:
    """The demo's market-data stream (the second seed's MBO feed) on a gate: connected while
    the market trades and the budget allows, as the seed's `should_start_streaming()` and
    `should_continue_streaming()` say. On the demo's own clock, `advance()` disconnects it
    exactly at the market's close, so no connected time is booked while the market is shut."""

    def __init__(self, gate: Gate, tally: Tally, clock: FrozenClock | None = None) -> None:
        self.market = MarketHours.from_config(gate.config.streams)
        self.clock = clock
        self.meter = StreamMeter(
            gate,
            "mbo_stream",
            "databento_mbo",
            market=self.market,
            on_level_change=lambda old, new: tally.stream_levels.append(
                f"{gate.clock():%H:%M} {old} -> {new}"
            ),
        )
        self._lock = threading.Lock()
        self._closes_at: datetime | None = None

    def messages(self, rng: random.Random, count: int = STREAM_MESSAGES) -> None:
        """Connect if the market is open and the budget allows, then take `count` messages
        while the stream may continue (disconnecting when it may not)."""
        with self._lock:
            meter = self.meter
            if not meter.connected and meter.should_start():
                meter.start()
                now = meter.gate.clock()
                self._closes_at = None if self.market is None else self.market.next_change(now)
            for _ in range(count if meter.connected else 0):
                if not meter.should_continue():  # the seed's stop at 80%, or the close
                    meter.stop()
                    break
                meter.record(rng.randint(200, 600))

    def advance(self, step: timedelta) -> None:
        """Move the demo's clock on by `step`; a connected stream disconnects at the close
        it meets on the way."""
        assert self.clock is not None, "a stream on the gate's own clock does not move it"
        with self._lock:
            target = self.clock() + step
            closes = self._closes_at
            if self.meter.connected and closes is not None and closes <= target:
                self.clock.set(max(closes, self.clock()))
                self.meter.stop()
            self.clock.set(target)

    def stop(self) -> UsageStats:
        """Disconnect; the stream's statistics."""
        with self._lock:
            self.meter.stop()
            return self.meter.usage_stats()


class SimulatedSource:
    """An upstream that answers with a given chance (drawn from the request's own generator)."""

    def __init__(self, name: str, chance: float) -> None:
        self.name = name
        self.chance = chance

    def __call__(self, rng: random.Random) -> dict[str, object]:
        if rng.random() >= self.chance:
            raise LookupError(f"{self.name}: no imagery for this location")
        return {"source": self.name, "quality": round(rng.uniform(0.7, 0.97), 2)}


def routers(gate: Gate) -> dict[str, FreeFirstRouter]:
    """One free-first router per service, over the seed's image sources."""
    routes = [(name, SimulatedSource(name, chance)) for name, chance in FREE_SOURCES.items()]
    routes += [(name, SimulatedSource(name, PAID_SUCCESS)) for name in PAID_SOURCES]
    return {
        service: FreeFirstRouter(gate, service, routes, quality=lambda r: r["quality"])
        for service in SERVICES
    }


def one_request(
    routed: dict[str, FreeFirstRouter], rng: random.Random, tally: Tally, n: int
) -> None:
    """Serve one request free-first; pay only if the budget allows."""
    service = SERVICES[n % len(SERVICES)]
    outcome = routed[service](
        rng, priority=n % 7 == 0, emergency=rng.random() < 0.02, labels=PIPELINE
    )
    decision = outcome.decision.status if outcome.decision is not None else None
    tally.add(decision, outcome.served_by or outcome.status)


def run(
    gate: Gate,
    clock: FrozenClock,
    requests: int,
    *,
    seed: int = 7,
    workers: int = 8,
    progress: Callable[[int], Any] | None = None,
) -> Tally:
    """Run `requests` simulated requests on `workers` threads, moving the clock as they go:
    a working day compressed, from the clock's time to `DAY` later at most."""
    tally = Tally()
    step = DAY // max(requests, 1)  # rounded down: the day never runs past its end
    routed = routers(gate)
    stream = DemoStream(gate, tally, clock)

    def job(n: int) -> None:
        rng = random.Random(seed * 1_000_003 + n)
        one_request(routed, rng, tally, n)
        stream.messages(rng)
        stream.advance(step)
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(job, range(requests)))
    tally.stream = stream.stop()
    tally.stream_days = stream.meter.history(days=2)
    tally.stream_market = stream.market
    return tally


def run_live(gate: Gate, stop: threading.Event, *, rate: float = 5.0, seed: int = 7) -> Tally:
    """Serve simulated requests on the gate's own clock, `rate` a second, until `stop` is set:
    the live traffic `spendgate demo --serve` shows on the dashboard."""
    tally = Tally()
    routed = routers(gate)
    stream = DemoStream(gate, tally)
    rng = random.Random(seed)
    n = 0
    while not stop.wait(1 / rate):
        n += 1
        one_request(routed, rng, tally, n)
        stream.messages(rng)
    tally.stream = stream.stop()
    return tally
