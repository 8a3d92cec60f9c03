"""Free-first routing: free sources first, paid only within budget, one event a request."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import Counter
from decimal import Decimal

import pytest

from spendgate import BudgetExceededError, Gate, UnpricedSourceError, ValidationError, to_nanos
from spendgate.config import parse
from spendgate.router import FreeFirstRouter
from spendgate.testing import FrozenClock
from tests.integrations.conftest import paid_gate

CONFIG = {
    "sources": {
        "extended_cache": {"price": "free"},
        "openstreetmap_tiles": {"price": "free"},
        "google_maps_optimized": {"price": "0.002/request"},
        "mapbox_satellite": {"price": "0.0015/request"},
        "legacy": {"unpriced": "allow"},
        "mystery": {},
    },
    "budgets": [{"name": "daily", "limit": "0.01"}],
}


def make_gate(store_url: str, clock: FrozenClock, **budget: object) -> Gate:
    cfg = dict(CONFIG)
    cfg["budgets"] = [{**CONFIG["budgets"][0], **budget}]  # type: ignore[index]
    return Gate.open(store_url, config=parse(cfg), clock=clock)


class Source:
    """A fake upstream that counts its calls and fails when told to."""

    def __init__(self, name: str, fails: bool = False, quality: float = 0.9) -> None:
        self.name = name
        self.fails = fails
        self.quality = quality
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, tile: str) -> dict[str, object]:
        with self.lock:
            self.calls += 1
        if self.fails:
            raise RuntimeError(f"{self.name}: no imagery for {tile}")
        return {"tile": tile, "by": self.name, "quality": self.quality}


def sources(**failing: bool) -> dict[str, Source]:
    names = ("extended_cache", "openstreetmap_tiles", "google_maps_optimized", "mapbox_satellite")
    return {n: Source(n, failing.get(n, False)) for n in names}


def router(gate: Gate, srcs: dict[str, Source], **options: object) -> FreeFirstRouter:
    return FreeFirstRouter(gate, "image_processor", list(srcs.items()), **options)  # type: ignore[arg-type]


def test_free_sources_keep_their_order_and_paid_ones_go_cheapest_first(
    store_url: str, clock: FrozenClock
) -> None:
    with make_gate(store_url, clock) as gate:
        r = router(gate, sources())
        assert r.order == (
            "extended_cache",
            "openstreetmap_tiles",
            "mapbox_satellite",
            "google_maps_optimized",
        )


def test_a_free_source_serves_and_nothing_is_paid(store_url: str, clock: FrozenClock) -> None:
    srcs = sources(extended_cache=True)
    with make_gate(store_url, clock) as gate:
        outcome = router(gate, srcs)("z/1/2", request_id="p-1")
        assert (outcome.status, outcome.served_by, outcome.cost) == (
            "served",
            "openstreetmap_tiles",
            0,
        )
        assert outcome.failures[0].source == "extended_cache"
        assert srcs["mapbox_satellite"].calls == 0
        (event,) = gate.events()
        assert event.request_id == "p-1"
        assert event.source == "openstreetmap_tiles"
        assert event.free_sources_attempted == ("extended_cache", "openstreetmap_tiles")
        assert event.fallbacks_triggered[0].reason == "extended_cache: no imagery for z/1/2"
        assert not event.paid


def test_paid_only_after_free_fails_and_the_actual_cost_is_committed(
    store_url: str, clock: FrozenClock
) -> None:
    srcs = sources(extended_cache=True, openstreetmap_tiles=True, mapbox_satellite=True)
    with make_gate(store_url, clock) as gate:
        outcome = router(gate, srcs)("z/1/2")
        assert outcome.served_by == "google_maps_optimized"
        assert outcome.cost == to_nanos("0.002")
        assert [f.source for f in outcome.failures] == [
            "extended_cache",
            "openstreetmap_tiles",
            "mapbox_satellite",
        ]
        (event,) = gate.events()
        assert event.paid_apis_used == ("mapbox_satellite", "google_maps_optimized")
        assert gate.status()[0].spent_nanos == to_nanos("0.002")
        assert gate.status()[0].reserved_nanos == 0  # mapbox's hold was released when it failed


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
        assert (status.spent_nanos, status.reserved_nanos) == (to_nanos("0.002"), 0)


def test_low_quality_counts_as_a_failure(store_url: str, clock: FrozenClock) -> None:
    srcs = sources()
    srcs["extended_cache"].quality = 0.3
    with make_gate(store_url, clock) as gate:
        r = router(gate, srcs, min_quality=0.5, quality=lambda res: res["quality"])
        outcome = r("t")
        assert outcome.served_by == "openstreetmap_tiles"
        assert "quality 0.3 below 0.5" in outcome.failures[0].reason
        assert gate.events()[0].quality_score == 0.9


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
        assert gate.status()[0].reserved_nanos == 0


def test_a_refused_budget_ends_free_only_and_never_pays(store_url: str, clock: FrozenClock) -> None:
    srcs = sources(extended_cache=True, openstreetmap_tiles=True)
    with make_gate(store_url, clock, limit="0.001") as gate:
        outcome = router(gate, srcs)("t")
        assert outcome.status == "budget_exhausted"
        assert outcome.to_dict()["alternative_action"] == "use_free_sources_only"
        assert srcs["mapbox_satellite"].calls == srcs["google_maps_optimized"].calls == 0
        (event,) = gate.events()
        assert not event.success
        assert "paid refused" in (event.failure_reason or "")
        with pytest.raises(BudgetExceededError):
            router(gate, srcs, raise_on_exhausted=True)("t")


def test_a_sources_own_budget_moves_on_to_the_next_paid_source(clock: FrozenClock) -> None:
    cap = {"name": "maps-cap", "limit": "0.001", "scope": "source:maps"}
    with paid_gate(clock, budgets=[cap]) as gate:
        router = FreeFirstRouter(gate, "svc", [("maps", lambda: "m"), ("pricey", lambda: "p")])
        outcome = router()
        assert (outcome.status, outcome.served_by) == ("served", "pricey")


def test_every_source_failing_is_one_failed_event(store_url: str, clock: FrozenClock) -> None:
    names = ("extended_cache", "openstreetmap_tiles", "mapbox_satellite", "google_maps_optimized")
    srcs = sources(**dict.fromkeys(names, True))
    with make_gate(store_url, clock) as gate:
        outcome = router(gate, srcs)("t")
        assert outcome.status == "all_failed"
        assert len(outcome.failures) == 4
        assert [e.success for e in gate.events()] == [False]
        assert gate.status()[0].balance.used == 0


@pytest.mark.parametrize(
    ("mode", "served"), [("priority_only", None), ("cheapest_only", "mapbox_satellite")]
)
def test_degrade_keeps_paid_sources_for_priority_callers(
    store_url: str, clock: FrozenClock, mode: str, served: str | None
) -> None:
    srcs = sources(extended_cache=True, openstreetmap_tiles=True)
    ladder = {"warn": 0.5, "degrade": 0.7, "stop": 1.0}
    with make_gate(store_url, clock, thresholds=ladder) as gate:
        gate.record("other", "google_maps_optimized", cost="0.007")
        r = router(gate, srcs, degrade=mode)
        assert r("t").served_by == served
        assert r("t", priority=True).served_by == "mapbox_satellite"


@pytest.mark.parametrize(
    ("routes", "error"),
    [
        ([], ValidationError),
        ([("extended_cache", "not callable")], ValidationError),
        ([("legacy", print)], ValidationError),
        ([("mystery", print)], UnpricedSourceError),
        ([("extended_cache", print), ("extended_cache", print)], ValidationError),
    ],
)
def test_bad_routers_are_refused(
    store_url: str, clock: FrozenClock, routes: list[object], error: type[Exception]
) -> None:
    with make_gate(store_url, clock) as gate:
        with pytest.raises(error):
            FreeFirstRouter(gate, "svc", routes)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="degrade"):
            FreeFirstRouter(gate, "svc", [("extended_cache", print)], degrade="maybe")  # type: ignore[arg-type]
        assert gate.events() == []


def test_threads_never_spend_past_the_limit_and_the_store_agrees(tmp_path: object) -> None:
    """Free sources fail at a set rate; 8 threads route 400 requests against $0.15."""
    from pathlib import Path

    url = f"sqlite:///{Path(str(tmp_path)) / 'router.db'}"
    limit = Decimal("0.15")
    gate = Gate.open(
        url, config=parse({**CONFIG, "budgets": [{"name": "daily", "limit": str(limit)}]})
    )
    rng = random.Random(11)
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    served_by: Counter[str] = Counter()

    class Flaky:
        def __init__(self, name: str, rate: float) -> None:
            self.name, self.rate = name, rate

        def __call__(self, n: int) -> int:
            with lock:
                fail = rng.random() < self.rate
            if fail:
                raise TimeoutError(f"{self.name} timed out")
            return n

    r = FreeFirstRouter(
        gate,
        "image_processor",
        [
            ("extended_cache", Flaky("cache", 0.7)),
            ("openstreetmap_tiles", Flaky("osm", 0.6)),
            ("mapbox_satellite", Flaky("mapbox", 0.1)),
            ("google_maps_optimized", Flaky("gm", 0.0)),
        ],
    )

    def work(t: int) -> None:
        for i in range(50):
            o = r(i, request_id=f"{t}-{i}")
            with lock:
                outcomes[o.status] += 1
                if o.served_by:
                    served_by[o.served_by] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (status,) = gate.status()
    events = gate.events()
    gate.close()
    assert status.spent_nanos + status.reserved_nanos <= limit * 10**9
    assert outcomes["budget_exhausted"] > 0  # the budget did run out
    assert len(events) == 400  # one event per request, whatever became of it
    assert sum(e.cost or 0 for e in events) == status.spent_nanos
    # Figures from the store equal the independent count.
    free_ok = sum(1 for e in events if e.success and not e.paid)
    assert free_ok == served_by["extended_cache"] + served_by["openstreetmap_tiles"]
    paid_served = sum(1 for e in events if e.success and e.paid)
    assert paid_served == served_by["mapbox_satellite"] + served_by["google_maps_optimized"]
    expected = served_by["mapbox_satellite"] * to_nanos("0.0015") + served_by[
        "google_maps_optimized"
    ] * to_nanos("0.002")
    assert status.spent_nanos == expected
    assert status.spent_nanos // len(events) == expected // 400  # cost per request


def test_async_routing_and_cancellation(store_url: str, clock: FrozenClock) -> None:
    async def slow_free(tile: str) -> str:
        raise ConnectionError("osm down")

    async def paid(tile: str) -> str:
        await asyncio.sleep(0)
        return f"paid {tile}"

    async def hanging(tile: str) -> str:
        started.set()  # the hold is taken and the paid call is under way
        await asyncio.Event().wait()  # the API never answers
        return tile

    with make_gate(store_url, clock) as gate:
        r = FreeFirstRouter(
            gate, "svc", [("openstreetmap_tiles", slow_free), ("mapbox_satellite", paid)]
        )
        stuck = FreeFirstRouter(gate, "svc", [("mapbox_satellite", hanging)])

        started = asyncio.Event()

        async def main() -> None:
            outcome = await r.acall("t")
            assert (outcome.served_by, outcome.result) == ("mapbox_satellite", "paid t")
            task = asyncio.create_task(stuck.acall("t"))
            await started.wait()
            assert gate.status()[0].reserved_nanos == to_nanos("0.0015")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert gate.status()[0].reserved_nanos == 0
        assert gate.status()[0].spent_nanos == to_nanos("0.0015")
