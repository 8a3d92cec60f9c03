"""The seed's `cost_entry` over REST, as its trackers would send it (JSON of the seed's own
dicts): accepted on the single and batch routes, stored with every field, shown by the day's
figures; the seed's names beside spendgate's, and a clear 422 when the two disagree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.testing import FrozenClock
from tests.gate.test_cost_entries import (
    IMAGE_BREAKDOWN_SHOWN,
    enrichment_entry,
    image_entry,
    satellite_entry,
    seed_config,
)
from tests.serving import Keys, app_for, bearer, make_keys


@pytest.fixture
def gate(tmp_path: Path, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(f"sqlite:///{tmp_path / 'seed.db'}", config=seed_config(), clock=clock)
    yield g
    g.close()


@pytest.fixture
def keys(gate: Gate) -> Keys:
    return make_keys(gate)


@pytest.fixture
def client(gate: Gate) -> Iterator[TestClient]:
    with TestClient(app_for(gate)) as c:
        yield c


def as_json(entry: dict[str, Any], service: str) -> dict[str, Any]:
    """The entry as the seed's tracker would serialize it: `datetime.utcnow().isoformat()`,
    a time without a zone."""
    return {
        **entry,
        "service": service,
        "timestamp": entry["timestamp"].replace(tzinfo=None).isoformat(),
    }


def test_the_seeds_entries_are_accepted_and_shown(
    client: TestClient, keys: Keys, gate: Gate, clock: FrozenClock
) -> None:
    h = bearer(keys.write)
    one = client.post("/api/events", json=as_json(image_entry(clock), "image_processor"), headers=h)
    assert one.status_code == 201, one.text
    assert one.json() == {
        "status": "created",
        "request_id": "property-123",
        "cost": "0.002",
        "currency": "USD",
        "budget_day": clock().date().isoformat(),  # the seed's record_expense name
    }
    batch = [
        as_json(enrichment_entry(clock), "enrichment_service"),
        as_json(satellite_entry(clock), "image_processor"),
    ]
    many = client.post("/api/events/batch", json={"events": batch}, headers=h)
    assert many.status_code == 200, many.text
    assert many.json()["created"] == 2

    image = gate.event("property-123")
    assert image is not None
    assert image.time == clock()
    assert image.source == "google_maps_optimized"
    assert [p.to_dict() for p in image.source_cost_breakdown] == IMAGE_BREAKDOWN_SHOWN
    assert (image.image_resolution, image.enhancement_applied) == ("1024x1024", True)
    enrichment = gate.event("property-456")
    assert enrichment is not None
    assert (enrichment.completeness_score, enrichment.free_sources_success_rate) == (0.85, 1.0)
    cached = gate.event("property-789")
    assert cached is not None
    assert (cached.cache_hit, cached.cache_hits) == (True, 1)

    day = client.get(f"/api/cost/daily/{clock().date()}", headers=bearer(keys.read)).json()
    assert (day["total_cost"], day["total_requests"]) == ("0.002", 3)
    service = client.get("/cost/services/image_processor/metrics", headers=bearer(keys.read))
    shown = service.json()
    assert (shown["total_cost"], shown["cache_hit_rate"]) == ("0.002", 0.5)  # cache_hit counted
    assert shown["cost_by_source"] == {"extended_cache": "0", "google_maps_optimized": "0.002"}


def test_the_seeds_nulls_are_accepted(client: TestClient, keys: Keys, gate: Gate) -> None:
    """The seed sends `processing_result.get('image_resolution')`: null when unknown."""
    entry = {
        "service": "image_processor",
        "request_id": "p-null",
        "total_cost": 0.0,
        "sources_used": ["openstreetmap_tiles"],
        "image_resolution": None,
        "enhancement_applied": False,
    }
    r = client.post("/api/events", json=entry, headers=bearer(keys.write))
    assert r.status_code == 201, r.text
    event = gate.event("p-null")
    assert event is not None
    assert (event.image_resolution, event.enhancement_applied) == (None, False)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"time": "2026-01-01T00:00:00Z", "timestamp": "2026-01-02T00:00:00Z"}, "time/timestamp"),
        ({"cost": "0.002", "total_cost": 0.003}, "cost/total_cost"),
        (
            {
                "total_cost": 0.001,
                "source_cost_breakdown": [{"source": "google_maps_optimized", "cost": 0.002}],
            },
            "total_cost",
        ),
        (
            {"source_cost_breakdown": [{"source": "x", "cost": 0.1, "extra": 1}]},
            "source_cost_breakdown[0].extra",
        ),
        ({"free_sources_success_rate": 94}, "free_sources_success_rate"),
        ({"cache_hit": "true"}, "cache_hit"),
    ],
)
def test_disagreeing_or_bad_seed_fields_are_a_422_naming_them(
    client: TestClient, keys: Keys, gate: Gate, fields: dict[str, Any], named: str
) -> None:
    entry = {"service": "svc", "source": "google_maps_optimized", **fields}
    for path, body, prefix in (
        ("/api/events", entry, ""),
        ("/api/events/batch", {"events": [entry]}, "events[0]."),
    ):
        r = client.post(path, json=body, headers=bearer(keys.write))
        assert r.status_code == 422, r.text
        assert prefix + named in [e["field"] for e in r.json()["errors"]]
    assert gate.events() == []
