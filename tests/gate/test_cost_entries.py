"""The seed's `cost_entry`, word for word: its names (`timestamp`, `total_cost`), each
source's costs (`source_cost_breakdown`), its trackers' service fields, and its log line, on
every backend. The payloads are the seed's own (seeds/000), with its `.get()` defaults."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from spendgate import Gate, ValidationError
from spendgate.analytics import Analyst
from spendgate.config import parse
from spendgate.testing import FrozenClock


def seed_config() -> Any:
    """The image processor's `cost_per_source`, as prices."""
    free = {"price": "free"}
    return parse(
        {
            "sources": {
                "openstreetmap_tiles": free,
                "local_super_resolution": free,
                "extended_cache": free,
                "geographic_batch": free,
                "google_maps_optimized": {"price": "0.002/request"},
                "mapbox_satellite": {"price": "0.0015/request"},
                "synthetic_generation": free,
            },
            "budgets": [{"name": "daily", "limit": "25.00"}],
        }
    )


@pytest.fixture
def gate(store_url: str, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(store_url, config=seed_config(), clock=clock)
    yield g
    g.close()


def image_entry(clock: FrozenClock) -> dict[str, Any]:
    """`ImageProcessorCostTracker.track_image_processing_cost`'s entry for a property whose
    image came from Google after OpenStreetMap failed: the seed's dict, with the tracker's
    `request_id` and `timestamp` (its `track_request_cost`)."""
    source_costs = [
        {
            "source": "google_maps_optimized",
            "cost": 0.002,
            "success": True,
            "quality_contribution": 0.9,
        },
        {
            "source": "openstreetmap_tiles",
            "cost": 0.0,
            "success": False,
            "failure_reason": "tile unavailable",
        },
    ]
    return {
        "request_id": "property-123",
        "timestamp": clock(),
        "total_cost": 0.002,
        "sources_used": ["google_maps_optimized"],
        "source_cost_breakdown": source_costs,
        "processing_time": 1.5,
        "quality_score": 0.9,
        "image_resolution": "1024x1024",
        "enhancement_applied": True,
    }


IMAGE_BREAKDOWN_SHOWN = [
    {
        "source": "google_maps_optimized",
        "cost": "0.002",
        "success": True,
        "quality_contribution": 0.9,
    },
    {
        "source": "openstreetmap_tiles",
        "cost": "0",
        "success": False,
        "failure_reason": "tile unavailable",
    },
]
"""`image_entry()`'s breakdown as spendgate shows it: money as exact decimal text."""


def enrichment_entry(clock: FrozenClock) -> dict[str, Any]:
    """`EnrichmentServiceWithCostTracking`'s entry: free sources only."""
    return {
        "request_id": "property-456",
        "timestamp": clock(),
        "total_cost": 0.0,
        "sources_used": ["openstreetmap_tiles", "extended_cache"],
        "processing_time": 0.4,
        "completeness_score": 0.85,
        "free_sources_success_rate": 1.0,
    }


def satellite_entry(clock: FrozenClock) -> dict[str, Any]:
    """`ImageProcessorWithCostTracking`'s entry: from the cache, so `cache_hit` is true."""
    sources = ["extended_cache"]
    return {
        "request_id": "property-789",
        "timestamp": clock(),
        "total_cost": 0.0,
        "sources_used": sources,
        "processing_time": 0.2,
        "quality_score": 0.8,
        "cache_hit": "cache" in sources[0],
        "batch_processing": False,
    }


def test_the_seeds_entries_are_stored_with_every_field(gate: Gate, clock: FrozenClock) -> None:
    gate.record("image_processor", **image_entry(clock))
    gate.record("enrichment_service", **enrichment_entry(clock))
    gate.record("image_processor", **satellite_entry(clock))

    image = gate.event("property-123")
    assert image is not None
    entry = image.to_dict()
    assert entry["timestamp"] == clock().isoformat()
    assert entry["total_cost"] == "0.002"
    assert entry["source"] == "google_maps_optimized"  # the one that cost money
    assert entry["source_cost_breakdown"] == IMAGE_BREAKDOWN_SHOWN
    assert (entry["image_resolution"], entry["enhancement_applied"]) == ("1024x1024", True)

    enrichment = gate.event("property-456")
    assert enrichment is not None
    assert enrichment.source == "openstreetmap_tiles"  # the first it used
    assert (enrichment.completeness_score, enrichment.free_sources_success_rate) == (0.85, 1.0)
    assert enrichment.to_dict()["completeness_score"] == 0.85

    cached = gate.event("property-789")
    assert cached is not None
    assert (cached.cache_hit, cached.cache_hits) == (True, 1)  # counted as a hit

    assert gate.status()[0].spent == Decimal("0.002")
    day = Analyst(gate).daily(clock().date()).to_dict()
    assert day["total_cost"] == "0.002"
    assert day["total_requests"] == 3


def test_the_total_is_the_sum_of_the_sources_costs(gate: Gate, clock: FrozenClock) -> None:
    """Given only the breakdown, the cost is its sum; a total that disagrees is refused."""
    parts = [
        {"source": "google_maps_optimized", "cost": 0.002, "success": True},
        {"source": "mapbox_satellite", "cost": 0.0015, "success": True},
    ]
    gate.record(
        "image_processor",
        "google_maps_optimized",
        request_id="both",
        sources_used=["google_maps_optimized", "mapbox_satellite"],
        source_cost_breakdown=parts,
    )
    event = gate.event("both")
    assert event is not None
    assert event.to_dict()["total_cost"] == "0.0035"
    with pytest.raises(ValidationError, match=r"sum of source_cost_breakdown's costs, 0\.0035"):
        gate.record(
            "image_processor",
            "google_maps_optimized",
            total_cost=0.002,
            source_cost_breakdown=parts,
        )
    # Two sources that cost money and no `source`: which budget pays is the caller's to say.
    with pytest.raises(ValidationError, match=r"source: .*google_maps_optimized, mapbox"):
        gate.record("image_processor", source_cost_breakdown=parts)
    assert gate.status()[0].spent == Decimal("0.0035")


def test_the_seeds_names_and_ours_must_agree(gate: Gate, clock: FrozenClock) -> None:
    earlier = clock() - timedelta(minutes=5)
    gate.record(
        "svc",
        "google_maps_optimized",
        request_id="same",
        time=earlier,
        timestamp=earlier,
        cost="0.002",
        total_cost=0.002,
    )
    event = gate.event("same")
    assert event is not None
    assert (event.time, event.cost) == (earlier, 2_000_000)
    # The seed writes `datetime.utcnow()`: a timestamp without a zone is UTC.
    gate.record("svc", "extended_cache", request_id="naive", timestamp=earlier.replace(tzinfo=None))
    naive = gate.event("naive")
    assert naive is not None
    assert naive.time == earlier
    with pytest.raises(ValidationError) as err:
        gate.record("svc", "google_maps_optimized", time=earlier, timestamp=clock())
    assert err.value.field == "time/timestamp"
    with pytest.raises(ValidationError) as err:
        gate.record("svc", "google_maps_optimized", cost="0.002", total_cost=0.003)
    assert err.value.field == "cost/total_cost"
    with pytest.raises(ValidationError) as err:
        gate.record("svc", "extended_cache", cache_hit=True, cache_hits=0)
    assert err.value.field == "cache_hit/cache_hits"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"source_cost_breakdown": [{"source": "x", "cost": -1}]}, "source_cost_breakdown[0].cost"),
        (
            {"source_cost_breakdown": [{"source": "x", "costs": 1}]},
            "source_cost_breakdown[0].costs",
        ),
        (
            {"source_cost_breakdown": [{"source": "x", "success": "yes"}]},
            "source_cost_breakdown[0].success",
        ),
        ({"image_resolution": ["1024", "1024"]}, "image_resolution"),
        ({"enhancement_applied": "yes"}, "enhancement_applied"),
        ({"completeness_score": -0.1}, "completeness_score"),
        ({"free_sources_success_rate": 94}, "free_sources_success_rate"),
        ({"cache_hit": 1}, "cache_hit"),
    ],
)
def test_a_bad_seed_field_is_named(gate: Gate, fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        gate.record("svc", "extended_cache", **fields)
    assert err.value.field == named
    assert gate.events() == []


def test_a_retry_of_a_seed_entry_is_the_same_event(gate: Gate, clock: FrozenClock) -> None:
    assert gate.record("image_processor", **image_entry(clock)).status == "created"
    assert gate.record("image_processor", **image_entry(clock)).status == "exists"
    results = gate.record_many([{"service": "image_processor", **image_entry(clock)}])
    assert [r.status for r in results] == ["exists"]
    changed = {**image_entry(clock), "enhancement_applied": False}
    assert gate.record_many([{"service": "image_processor", **changed}])[0].status == "conflict"


def test_each_recorded_entry_logs_the_seeds_line(
    gate: Gate, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spendgate.costs")
    gate.record("image_processor", **image_entry(clock))
    gate.record_many([{"service": "enrichment_service", **enrichment_entry(clock)}])
    lines = [r.getMessage() for r in caplog.records if r.name == "spendgate.costs"]
    assert lines == [
        "cost incurred: 0.002 USD for image_processor on google_maps_optimized, "
        "request property-123",
        "FREE: enrichment_service on openstreetmap_tiles, request property-456",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "spendgate.costs")
    caplog.clear()
    gate.record("image_processor", **image_entry(clock))  # a retry: nothing new to log
    assert [r for r in caplog.records if r.name == "spendgate.costs"] == []
