"""The server: keys on every route, the seed's endpoints and fields, ingestion, control,
problem details, limits, the live feed and /metrics. Real stores, real HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from spendgate import Gate
from spendgate.server.auth import PUBLIC_PATHS, api_routes, route_scope
from spendgate.server.live import Client
from spendgate.store.base import Alert
from spendgate.testing import FrozenClock
from tests.conftest import small_config
from tests.serving import Keys, app_for, bearer, make_keys, receive_until, running


@pytest.fixture
def gate(tmp_path: Path, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(f"sqlite:///{tmp_path / 'server.db'}", config=small_config(), clock=clock)
    yield g
    g.close()


@pytest.fixture
def keys(gate: Gate) -> Keys:
    return make_keys(gate)


@pytest.fixture
def app(gate: Gate) -> FastAPI:
    return app_for(gate, ws_interval=0.05)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def admin(keys: Keys) -> dict[str, str]:
    return bearer(keys.admin)


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# -- keys on every route ---------------------------------------------------------------------

LOWER = {"write": "read", "admin": "write"}


def routes(app: FastAPI) -> list[tuple[str, str, str | None]]:
    out = []
    for route in api_routes(app.routes):
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        out += [(m, path, route_scope(route)) for m in sorted(route.methods)]
    return out


def test_every_route_but_health_refuses_missing_wrong_revoked_and_lower_keys(
    client: TestClient, app: FastAPI, keys: Keys
) -> None:
    walked = routes(app)
    assert len(walked) >= 30  # the whole API, not an empty table
    tokens = {"read": keys.read, "write": keys.write, "admin": keys.admin}
    for method, path, scope in walked:
        if path in PUBLIC_PATHS:
            assert scope is None
            continue
        assert scope in tokens, f"{method} {path} has no scope"
        for headers in (
            {},
            bearer("sg_000000000000_" + "A" * 43),  # well formed, unknown
            bearer(keys.admin[:-1] + ("A" if keys.admin[-1] != "A" else "B")),  # wrong secret
            bearer("not a key"),
            bearer(keys.revoked),
            {"Authorization": f"Basic {keys.admin}"},
        ):
            r = client.request(method, path, headers=headers, json={})
            problem_of(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
        if scope in LOWER:
            r = client.request(method, path, headers=bearer(tokens[LOWER[scope]]), json={})
            problem_of(r, 403)
        r = client.request(method, path, headers=bearer(tokens[scope]), json={})
        assert r.status_code not in (401, 403), (method, path, r.text)


def test_health_is_public_and_unknown_routes_are_json_404(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["store"] == "ok"
    problem_of(client.get("/no/such/route"), 404)
    problem_of(client.get("/no/such/route", headers={"Authorization": "Bearer x"}), 404)
    problem_of(client.delete("/healthz"), 405)


def test_a_service_limited_key_acts_only_for_its_services(client: TestClient, keys: Keys) -> None:
    mine = {"service": "scraper", "source": "paid_api"}
    theirs = {"service": "enrichment", "source": "paid_api"}
    assert client.post("/api/events", json=mine, headers=bearer(keys.scraper)).status_code == 201
    problem_of(client.post("/api/events", json=theirs, headers=bearer(keys.scraper)), 403)
    batch = {"events": [mine, theirs]}
    problem_of(client.post("/api/events/batch", json=batch, headers=bearer(keys.scraper)), 403)
    problem_of(client.get("/api/cost/current", headers=bearer(keys.scraper)), 403)
    assert client.get("/cost/services/scraper/metrics", headers=bearer(keys.scraper)).is_success
    problem_of(client.get("/cost/services/enrichment/metrics", headers=bearer(keys.scraper)), 403)
    held = client.post("/api/reservations", json=theirs, headers=bearer(keys.write)).json()
    rid = held["reservation_id"]
    problem_of(client.post(f"/api/reservations/{rid}/release", headers=bearer(keys.scraper)), 403)
    assert client.post(f"/api/reservations/{rid}/release", headers=bearer(keys.write)).is_success
    # Only the events of its own service were written.
    assert [e.service for e in client.app.state.context.gate.events()] == ["scraper"]  # type: ignore[attr-defined]


def test_keys_are_shown_once_stored_as_hashes_and_revoked_at_once(
    client: TestClient, keys: Keys, gate: Gate
) -> None:
    r = client.post("/api/keys", json={"name": "ci", "scope": "write"}, headers=admin(keys))
    assert r.status_code == 201
    token, key_id = r.json()["token"], r.json()["key"]["key_id"]
    assert token.startswith(f"sg_{key_id}_")
    listed = client.get("/api/keys", headers=admin(keys)).json()
    assert token not in json.dumps(listed)
    assert token.split("_", 2)[2] not in json.dumps(listed)
    stored = {k.key_id: k for k in gate.store.keys()}[key_id]  # noqa: SIM118
    assert token.split("_", 2)[2] not in stored.secret_hash
    event = {"service": "scraper", "source": "free_api"}
    assert client.post("/api/events", json=event, headers=bearer(token)).status_code == 201
    assert client.delete(f"/api/keys/{key_id}", headers=admin(keys)).json()["revoked_at"]
    problem_of(client.post("/api/events", json=event, headers=bearer(token)), 401)
    problem_of(client.delete("/api/keys/nosuchkey", headers=admin(keys)), 404)
    problem_of(
        client.post("/api/keys", json={"name": "x", "scope": "root"}, headers=admin(keys)), 422
    )
    actions = [e["action"] for e in client.get("/api/audit", headers=admin(keys)).json()]
    assert actions[:2] == ["key.revoke", "key.create"]


# -- the seed's endpoints, by field name ------------------------------------------------------

SEED_LIVE = {
    "current_daily_spend",
    "budget_remaining",
    "free_source_success_rate",
    "requests_per_minute",
    "cost_per_request",
    "projected_daily_total",
    "time_until_budget_exhausted",
}


def record_some(client: TestClient, keys: Keys) -> None:
    events = [
        {"service": "scraper", "source": "paid_api", "quality_score": 0.9, "processing_time": 1.2},
        {"service": "scraper", "source": "free_api", "cache_hits": 1},
        {"service": "enrichment", "source": "free_api", "success": False, "failure_reason": "404"},
    ]
    r = client.post("/api/events/batch", json={"events": events}, headers=bearer(keys.write))
    assert r.json()["created"] == 3


def test_the_seeds_endpoints_return_the_seeds_fields(client: TestClient, keys: Keys) -> None:
    record_some(client, keys)
    h = bearer(keys.read)
    live = client.get("/cost/dashboard/live", headers=h).json()
    assert live["success"] is True
    assert live["timestamp"]
    assert set(live["data"]) >= {
        "live_metrics",
        "daily_summary",
        "service_breakdown",
        "optimization_opportunities",
        "alerts_and_warnings",
        "historical_trends",
    }
    data = live["data"]
    assert set(data["live_metrics"]) == SEED_LIVE | {"as_of"}
    assert data["live_metrics"]["as_of"] == live["timestamp"]
    # The seed's own checks (FishMouthCostDashboard's status block), copied from its text:
    # they compare numbers. The server's `daily` budget is $1.00 with $0.01 spent.
    assert data["live_metrics"]["budget_remaining"] == 0.99
    budget_health = "healthy" if data["live_metrics"]["budget_remaining"] > 20 else "warning"
    assert budget_health == "warning"  # $0.99 left: the seed compares dollars
    free_source_performance = (
        "excellent" if data["live_metrics"]["free_source_success_rate"] > 0.90 else "good"
    )
    assert free_source_performance == "good"  # 1 of 2 free requests succeeded
    cost_efficiency = (
        f"{(1 - data['live_metrics']['cost_per_request'] / 2.40) * 100:.1f}% savings vs traditional"
    )
    assert cost_efficiency == "99.9% savings vs traditional"  # $0.01 over three requests
    exact = data["live_figures"]["cost_per_request"]["value"]
    assert data["live_metrics"]["cost_per_request"] == float(exact)
    assert data["live_metrics"]["current_daily_spend"] == 0.01
    assert set(data["live_figures"]) >= SEED_LIVE
    assert set(live["status"]) == {"budget_health", "free_source_performance", "cost_efficiency"}
    assert live["data"]["live_figures"]["current_daily_spend"] == {
        "value": "0.01",
        "as_of": live["timestamp"],
        "scope": "all",
        "budget": None,
        "since": "2026-01-05T00:00:00+00:00",
    }
    service = client.get("/cost/services/scraper/metrics", headers=h).json()
    assert set(service) >= {
        "total_cost",
        "total_requests",
        "free_source_success_rate",
        "cache_hit_rate",
        "average_cost_per_request",
        "cost_by_source",
        "quality_metrics",
        "performance_metrics",
    }
    assert service["total_cost"] == "0.01"
    assert service["total_requests"] == 2
    current = client.get("/api/cost/current", headers=h).json()
    assert set(current["live_metrics"]) == SEED_LIVE | {"as_of"}
    assert current["live_metrics"]["budget_remaining"] == 0.99
    assert current["live_figures"]["budget_remaining"]["value"] == "0.99"  # the exact text
    assert current["as_of"]
    day = client.get("/api/cost/daily/2026-01-05", headers=h).json()
    assert day["total_cost"] == "0.01"
    assert day["total_requests"] == 3
    perf = client.get("/api/cost/service/scraper/performance?days=7", headers=h).json()
    assert perf["service"] == "scraper"
    assert perf["days"] == 7
    forecast = client.get("/api/cost/forecast/monthly", headers=h).json()
    assert set(forecast) >= {"month", "days_elapsed", "days_remaining", "current_spend"}
    assert set(forecast["budget_assessment"]) >= {
        "monthly_budget",
        "projected_vs_budget",
        "budget_status",
        "recommended_actions",
    }
    found = client.get("/api/cost/optimization/opportunities", headers=h).json()
    assert isinstance(found["opportunities"], list)
    assert found["as_of"]
    alerts = client.get("/api/cost/alerts/configure", headers=h).json()
    assert set(alerts["alert_thresholds"]) == {
        "daily_budget_80_percent",
        "daily_budget_100_percent",
        "free_source_success_below_85",
        "cost_per_request_spike",
        "service_offline",
        "api_rate_limit_approaching",
    }


def test_the_day_chart_has_no_figures_before_the_first_event(
    client: TestClient, keys: Keys, clock: FrozenClock
) -> None:
    record_some(client, keys)  # the store's first events, today (5 January)
    h = bearer(keys.read)
    days = client.get("/api/dashboard/charts", headers=h).json()["days"]
    assert len(days) == 30
    before = [{"t": d["t"], "data": False, "cost": None, "requests": None, "free": None,
               "paid": None} for d in days[:-1]]  # fmt: skip
    assert days[:-1] == before
    assert days[-1] == {"t": "2026-01-05", "cost": "0.01", "requests": 3, "free": 1, "paid": 1}
    clock.advance(timedelta(days=1))
    days = client.get("/api/dashboard/charts", headers=h).json()["days"]
    # A day after the first event with nothing recorded is data: a $0 day.
    assert days[-1] == {"t": "2026-01-06", "cost": "0", "requests": 0, "free": 0, "paid": 0}
    assert days[-3]["data"] is False
    one = client.get("/api/dashboard/charts?service=enrichment", headers=h).json()["days"]
    assert one[-2] == {"t": "2026-01-05", "cost": "0", "requests": 1, "free": 0, "paid": 0}


def test_trends_have_a_route_in_the_seeds_names(client: TestClient, keys: Keys) -> None:
    record_some(client, keys)
    h = bearer(keys.read)
    # The seed's CostTrendAnalyzer over its default period, "3_months".
    trends = client.get("/api/cost/trends?time_period=3_months", headers=h).json()
    assert (trends["days"], trends["time_period"]) == (92, "3_months")
    assert set(trends) >= {
        "overall_cost_trend",
        "free_source_success_trend",
        "request_volume_trend",
        "cost_per_request_trend",
        "service_specific_trends",
        "predictions",
    }
    assert trends["overall_cost_trend"]["trend"] == "insufficient_data"  # today is not complete
    assert set(trends["predictions"]) == {
        "next_month_cost",
        "cost_optimization_opportunities",
        "efficiency_forecast",
    }
    forecast = client.get("/api/cost/forecast/monthly", headers=h).json()
    assert forecast["projections"]["linear"]["method"] == "linear_extrapolation"
    assert {"trend_based", "ml_forecast"} <= set(forecast["projections"])
    seven = client.get("/api/cost/trends?days=7&stable_rule=seed", headers=h).json()
    assert (seven["days"], seven["stable_rule"]) == (7, "seed")
    assert client.get("/api/cost/trends", headers=h).json()["days"] == 30
    body = problem_of(client.get("/api/cost/trends?time_period=3_moons", headers=h), 422)
    assert body["errors"][0]["field"] == "time_period"
    body = problem_of(client.get("/api/cost/trends?days=7&time_period=week", headers=h), 422)
    assert body["errors"][0]["field"] == "days"
    problem_of(client.get("/api/cost/trends?stable_rule=flat", headers=h), 422)


def test_bad_dates_days_and_services_are_named(client: TestClient, keys: Keys) -> None:
    h = bearer(keys.read)
    body = problem_of(client.get("/api/cost/daily/2026-13-01", headers=h), 422)
    assert body["errors"][0]["field"] == "date"
    body = problem_of(client.get("/api/cost/service/x/performance?days=0", headers=h), 422)
    assert body["errors"][0]["field"] == "days"
    problem_of(client.get("/cost/services/nobody/metrics", headers=h), 404)
    problem_of(client.get("/cost/services/scraper/metrics?period=year", headers=h), 422)


# -- ingestion --------------------------------------------------------------------------------


def test_events_are_idempotent_by_request_id(client: TestClient, keys: Keys, gate: Gate) -> None:
    h = bearer(keys.write)
    event = {"service": "scraper", "source": "paid_api", "request_id": "r-1", "cost": "0.003"}
    first = client.post("/api/events", json=event, headers=h)
    assert first.status_code == 201
    assert first.json() == {
        "status": "created",
        "request_id": "r-1",
        "cost": "0.003",
        "currency": "USD",
        "budget_day": gate.clock().date().isoformat(),  # the UTC day: the budget's calendar
    }
    again = client.post("/api/events", json=event, headers=h)
    assert again.status_code == 200
    assert again.json()["status"] == "exists"
    assert again.json()["budget_day"] == first.json()["budget_day"]
    problem_of(client.post("/api/events", json={**event, "cost": "0.004"}, headers=h), 409)
    assert gate.status()[0].spent_nanos == 3_000_000  # counted once


def test_a_batch_gives_one_result_each_and_a_bad_item_changes_nothing(
    client: TestClient, keys: Keys, gate: Gate
) -> None:
    h = bearer(keys.write)
    client.post(
        "/api/events", json={"service": "s", "source": "paid_api", "request_id": "a"}, headers=h
    )
    events = [
        {"service": "s", "source": "paid_api", "request_id": "a"},  # exists
        {"service": "s", "source": "paid_api", "request_id": "a2"},
        {"service": "s", "source": "paid_api", "request_id": "a3", "cost": "0.5"},
    ]
    r = client.post("/api/events/batch", json={"events": events}, headers=h).json()
    assert [x["status"] for x in r["results"]] == ["exists", "created", "created"]
    assert (r["created"], r["exists"], r["conflict"]) == (2, 1, 0)
    before = gate.status()[0].spent_nanos
    bad = [*events, {"service": "s", "source": "nowhere"}]
    body = problem_of(client.post("/api/events/batch", json={"events": bad}, headers=h), 422)
    assert body["errors"][0]["field"] == "events[3].source"
    unpriced = [{"service": "s", "source": "mystery", "request_id": "new"}]
    problem_of(client.post("/api/events/batch", json={"events": unpriced}, headers=h), 422)
    body = problem_of(
        client.post(
            "/api/events/batch",
            json={"events": [{"service": "s", "source": "paid_api", "cost": "abc"}]},
            headers=h,
        ),
        422,
    )
    assert body["errors"][0]["field"].startswith("events[0].cost")
    assert gate.status()[0].spent_nanos == before
    assert gate.event("new") is None
    problem_of(client.post("/api/events/batch", json={"events": []}, headers=h), 422)
    too_many = {"events": [{"service": "s", "source": "free_api"}] * 10_001}
    problem_of(client.post("/api/events/batch", json=too_many, headers=h), 422)


def test_an_event_dated_ahead_of_the_clock_is_refused(
    client: TestClient, keys: Keys, gate: Gate, clock: FrozenClock
) -> None:
    """Three days ahead was accepted: now a time past the clock's allowance is a 422 naming
    `time` and what the clock reads, alone or in a batch (refused whole), and nothing is
    written."""
    h = bearer(keys.write)
    ahead = {"service": "s", "source": "paid_api", "time": "2026-01-08T12:00:00Z"}
    body = problem_of(client.post("/api/events", json=ahead, headers=h), 422)
    (error,) = body["errors"]
    assert error["field"] == "time"
    assert "ahead of the clock, which reads 2026-01-05T12:00:00+00:00" in error["message"]
    batch = {"events": [{"service": "s", "source": "paid_api", "request_id": "ok"}, ahead]}
    body = problem_of(client.post("/api/events/batch", json=batch, headers=h), 422)
    assert body["errors"][0]["field"] == "events[1].time"
    assert gate.events() == []
    clock.advance(3 * 86400)  # once the clock gets there, the same event is taken
    assert client.post("/api/events", json=ahead, headers=h).status_code == 201


def test_bodies_are_checked(client: TestClient, keys: Keys) -> None:
    h = bearer(keys.write)
    body = problem_of(client.post("/api/events", json={"service": "s"}, headers=h), 422)
    assert body["errors"][0]["field"] == "source"
    body = problem_of(
        client.post(
            "/api/events", json={"service": "s", "source": "paid_api", "colour": 1}, headers=h
        ),
        422,
    )
    assert body["errors"][0]["field"] == "colour"
    naive = {"service": "s", "source": "paid_api", "time": "2026-01-05T10:00:00"}
    problem_of(client.post("/api/events", json=naive, headers=h), 422)
    problem_of(
        client.post(
            "/api/events", content=b"{not json", headers={**h, "content-type": "application/json"}
        ),
        422,
    )
    problem_of(
        client.post(
            "/api/authorize", json={"service": "s", "source": "paid_api", "amount": "-1"}, headers=h
        ),
        422,
    )


def test_the_seeds_requested_amount_is_the_amount(client: TestClient, keys: Keys) -> None:
    h = bearer(keys.write)
    call = {"service": "s", "source": "paid_api"}
    for path in ("/api/authorize", "/api/reservations"):
        seed = client.post(path, json={**call, "requested_amount": 0.25}, headers=h).json()
        assert seed["requested_amount"] == "0.25"
        both = client.post(
            path, json={**call, "amount": "0.25", "requested_amount": 0.25}, headers=h
        )
        assert both.json()["requested_amount"] == "0.25"
        body = problem_of(
            client.post(path, json={**call, "amount": "0.3", "requested_amount": 0.25}, headers=h),
            422,
        )
        assert body["errors"][0]["field"] == "amount/requested_amount"


def test_request_bodies_have_a_size_limit(gate: Gate, keys: Keys) -> None:
    app = app_for(gate, max_body_bytes=2048)
    with TestClient(app) as client:
        big = {
            "events": [
                {"service": "s", "source": "free_api", "request_id": f"{i:040d}"}
                for i in range(100)
            ]
        }
        problem_of(client.post("/api/events/batch", json=big, headers=bearer(keys.write)), 413)

        def chunks() -> Iterator[bytes]:  # no content-length: counted as it streams
            yield b'{"events": ['
            for _ in range(200):
                yield b'{"service": "s", "source": "free_api"},'
            yield b'{"service": "s", "source": "free_api"}]}'

        r = client.post(
            "/api/events/batch",
            content=chunks(),
            headers={**bearer(keys.write), "content-type": "application/json"},
        )
        problem_of(r, 413)
    assert gate.events() == []


def test_the_seeds_emergency_budget_is_a_budget_setting(client: TestClient, keys: Keys) -> None:
    h = admin(keys)
    r = client.patch("/api/budgets/daily", json={"emergency": "100"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["emergency_budget"] == "50"  # the seed's default
    # The seed's $60 emergency call: over its per-request bound, denied before any spend.
    call = {"service": "scraper", "source": "paid_api", "amount": "60", "emergency": True}
    denied = client.post("/api/authorize", json=call, headers=h).json()
    assert (denied["approval_status"], denied["remaining_budget"]) == ("denied", "1")
    bad = problem_of(
        client.patch("/api/budgets/daily", json={"emergency_budget": "-1"}, headers=h), 422
    )
    assert "emergency_budget" in json.dumps(bad)
    r = client.patch("/api/budgets/daily", json={"emergency_budget": "75"}, headers=h)
    assert r.json()["spec"]["emergency_budget"] == "75"
    approved = client.post("/api/authorize", json=call, headers=h).json()
    assert approved["approval_status"] == "emergency_approved"
    assert approved["emergency_budget_used"] is True
    assert approved["remaining_budget"] == "1"


def test_authorize_and_the_reservation_cycle(client: TestClient, keys: Keys, gate: Gate) -> None:
    h = bearer(keys.write)
    call = {"service": "scraper", "source": "paid_api", "amount": "0.60"}
    ok = client.post("/api/authorize", json=call, headers=h).json()
    assert ok["approval_status"] == "approved"
    assert ok["remaining_budget"] == "1"  # the room before the call
    held = client.post("/api/reservations", json=call, headers=h)
    assert held.status_code == 201
    assert held.json()["remaining_budget"] == "1"
    rid = held.json()["reservation_id"]
    refused = client.post("/api/reservations", json=call, headers=h)
    assert refused.status_code == 200
    assert refused.json()["approval_status"] == "denied"
    assert refused.json()["remaining_budget"] == "0.4"  # the hold counts now
    assert refused.json()["alternative_action"] == "use_free_sources_only"
    info = client.get(f"/api/reservations/{rid}", headers=bearer(keys.read)).json()
    assert info["state"] == "pending"
    assert info["amount"] == "0.6"
    done = client.post(f"/api/reservations/{rid}/commit", json={"actual": "0.70"}, headers=h)
    assert done.json()["cost"] == "0.7"
    assert done.json()["overshoot"] == "0.1"
    problem_of(client.post(f"/api/reservations/{rid}/commit", json={}, headers=h), 409)
    problem_of(client.post("/api/reservations/nope/release", headers=h), 409)
    problem_of(client.get("/api/reservations/nope", headers=h), 404)
    assert gate.status()[0].spent_nanos == 700_000_000
    decisions = client.get("/metrics", headers=bearer(keys.read)).text
    counted = 'spendgate_reservation_decisions_total{decision="%s",service="scraper"} %s'
    assert counted % ("approved", "2.0") in decisions  # the authorize and the hold
    assert counted % ("denied", "1.0") in decisions


# -- budgets and prices, audited --------------------------------------------------------------


def test_budgets_change_at_run_time_and_every_change_is_audited(
    client: TestClient, keys: Keys, gate: Gate
) -> None:
    h = admin(keys)
    assert [b["name"] for b in client.get("/api/budgets", headers=h).json()] == ["daily"]
    assert client.get("/api/budgets/daily", headers=h).json()["origin"] == "file"
    r = client.post(
        "/api/budgets",
        json={"name": "scraper-day", "limit": "0.02", "scope": "service:scraper"},
        headers=h,
    )
    assert r.status_code == 201
    assert r.json()["origin"] == "api"
    assert "key:" in r.json()["changed_by"]
    problem_of(
        client.post("/api/budgets", json={"name": "scraper-day", "limit": "1"}, headers=h), 409
    )
    call = {"service": "scraper", "source": "paid_api", "amount": "0.03"}
    refused = client.post("/api/authorize", json=call, headers=h).json()
    assert refused["approval_status"] == "denied"
    assert refused["budget"] == "scraper-day"
    r = client.patch("/api/budgets/scraper-day", json={"limit": "0.05"}, headers=h)
    assert r.json()["spec"]["limit"] == "0.05"
    assert r.json()["spec"]["scope"] == "service:scraper"
    assert (
        client.post("/api/authorize", json=call, headers=h).json()["approval_status"] == "approved"
    )
    # Another window is counted again from the ledger (tests/gate/test_recount.py).
    r = client.patch("/api/budgets/scraper-day", json={"window": "week"}, headers=h)
    assert r.json()["spec"]["window"] == "week"
    problem_of(client.put("/api/budgets/daily", json={"limit": "ten"}, headers=h), 422)
    problem_of(client.put("/api/budgets/nope", json={"limit": "1"}, headers=h), 404)
    problem_of(
        client.put("/api/budgets/daily", json={"name": "other", "limit": "1"}, headers=h), 422
    )
    assert client.delete("/api/budgets/scraper-day", headers=h).json()["action"] == "delete"
    problem_of(client.get("/api/budgets/scraper-day", headers=h), 404)
    # Back under its old name with any window and scope: counted from the ledger again.
    again = {"name": "scraper-day", "limit": "1"}
    assert client.post("/api/budgets", json=again, headers=h).status_code == 201
    audit = client.get("/api/audit", headers=h).json()
    assert [(e["action"], e["name"]) for e in audit[:5]] == [
        ("create", "scraper-day"),
        ("delete", "scraper-day"),
        ("update", "scraper-day"),
        ("update", "scraper-day"),
        ("create", "scraper-day"),
    ]
    assert audit[3]["before"]["limit"] == "0.02"
    assert audit[3]["after"]["limit"] == "0.05"
    assert all(e["actor"].startswith("key:") and e["at"] for e in audit[:5])
    problem_of(client.post("/api/budgets", json={"limit": "1"}, headers=bearer(keys.write)), 403)


def test_prices_change_at_run_time(client: TestClient, keys: Keys, gate: Gate) -> None:
    h = admin(keys)
    r = client.post("/api/prices", json={"name": "geo", "price": "0.25/request"}, headers=h)
    assert r.status_code == 201
    e = client.post("/api/events", json={"service": "s", "source": "geo"}, headers=h).json()
    assert e["cost"] == "0.25"
    client.put("/api/prices/geo", json={"price": "0.5"}, headers=h)
    assert (
        client.post("/api/events", json={"service": "s", "source": "geo"}, headers=h).json()["cost"]
        == "0.5"
    )
    body = problem_of(
        client.post("/api/prices", json={"name": "bad", "price": "cheap"}, headers=h), 422
    )
    assert body["errors"][0]["field"] == "sources.bad.price"
    bad = {"name": "bad", "price": "1", "cacheable": "yes"}
    body = problem_of(client.post("/api/prices", json=bad, headers=h), 422)
    assert body["errors"][0]["field"] == "sources.bad.cacheable"
    rates = {"input_token": "1", "batch_input_token": "0.5"}
    for variants, field in (
        ([["batch"]], "sources.bad.variants[0]"),
        ([{"a": 1}], "sources.bad.variants[0]"),
        ("batch", "sources.bad.variants"),
        (["flex"], "sources.bad.price.flex_input_token"),  # a variant without its rates
    ):
        bad = {"name": "bad", "price": rates, "variants": variants}
        body = problem_of(client.post("/api/prices", json=bad, headers=h), 422)
        assert body["errors"][0]["field"] == field, body
    bad = {"name": "bad", "price": rates | {"batch_extra": "1"}, "variants": ["batch"]}
    body = problem_of(client.post("/api/prices", json=bad, headers=h), 422)
    assert body["errors"][0]["field"] == "sources.bad.price.batch_extra"  # of no standard unit
    hours = {"off_peak": {"windows": [{"hours_utc": "25:00-01:00"}]}}
    bad = {"name": "bad", "price": rates, "variants": ["batch"], "variant_hours": hours}
    body = problem_of(client.post("/api/prices", json=bad, headers=h), 422)
    assert body["errors"][0]["field"] == "sources.bad.variant_hours.off_peak.windows[0].hours_utc"
    client.patch("/api/prices/geo", json={"cacheable": True}, headers=h)
    assert client.get("/api/prices/geo", headers=h).json()["spec"]["cacheable"] is True
    gate.refresh()
    assert gate.config.prices.pricing("geo").cacheable  # what the optimization rules read
    client.post(
        "/api/budgets", json={"name": "geo-day", "limit": "5", "scope": "source:geo"}, headers=h
    )
    body = problem_of(client.delete("/api/prices/geo", headers=h), 422)
    assert "geo-day" in body["detail"]
    listed = {p["name"]: p for p in client.get("/api/prices", headers=h).json()}
    assert listed["paid_api"]["spec"] == {"price": {"request": "0.01"}}
    assert listed["geo"]["origin"] == "api"


def test_a_limit_patched_over_the_api_reaches_every_figure_route_each_naming_its_scope(
    client: TestClient, keys: Keys, clock: FrozenClock
) -> None:
    """The budget's remaining, percentage and used (the tile), its row in the budget list
    (the gauge), the budget status route and the forecast's month budget: one limit, the
    new one, and every figure says which budget or scope it counts."""
    record_some(client, keys)  # $0.01 in all, by scraper
    h = bearer(keys.read)
    r = client.patch("/api/budgets/daily", json={"limit": "2.00"}, headers=admin(keys))
    assert r.status_code == 200, r.text
    clock.advance(1)
    current = client.get("/api/cost/current", headers=h).json()
    live = client.get("/cost/dashboard/live", headers=h).json()["data"]
    [row] = live["budgets"]
    assert (row["name"], row["scope"], row["limit"], row["spent"]) == ("daily", "all", "2", "0.01")
    for figures in (current["live_figures"], live["live_figures"]):
        for name, figure in figures.items():
            assert figure["as_of"], name
            assert figure["scope"] == "all", name
            assert figure["budget"] == (
                "daily" if name.startswith(("budget", "time", "runs")) else None
            ), name
        assert figures["budget_remaining"]["value"] == "1.99"
        assert figures["budget_used"]["value"] == "0.01"
        assert figures["budget_remaining_percent"]["value"] == 99.5
    assert current["budget"]["limit"] == "2"
    [status] = client.get("/api/budgets/status", headers=h).json()
    assert (status["limit"], status["remaining"]) == ("2", "1.99")
    forecast = client.get("/api/cost/forecast/monthly", headers=h).json()["budget_assessment"]
    assert forecast["monthly_budget"] == "62"  # January: 31 days of $2
    assert forecast["monthly_budget_from"] == {
        "amount": "62",
        "budget": "daily",
        "scope": "all",
        "window": "day",
        "basis": "the day limit of budget daily x 31 days",
    }
    charts = client.get("/api/dashboard/charts", headers=h).json()
    assert charts["budget"] == "daily"


def test_a_change_made_meanwhile_is_not_overwritten(gate: Gate, keys: Keys) -> None:
    from spendgate.errors import ChangedError

    seeded = {d.name: d.revision for d in gate.store.definitions() if d.kind == "budget"}
    read = seeded["daily"]  # the configuration seeded it: both writers read this revision
    gate.store.define(
        "budget", "daily", {"limit": "3"}, expected=read, action="update", actor="a", at=0
    )
    with pytest.raises(ChangedError):
        gate.store.define(
            "budget", "daily", {"limit": "4"}, expected=read, action="update", actor="b", at=0
        )
    gate.refresh()
    assert gate.config.budget("daily").limit == 3_000_000_000


def test_other_gates_on_the_store_see_a_change(
    tmp_path: Path, keys: Keys, client: TestClient, clock: FrozenClock
) -> None:
    other = Gate.open(f"sqlite:///{tmp_path / 'server.db'}", config=small_config(), clock=clock)
    try:
        assert other.authorize("s", "paid_api", "2.00").status == "denied"
        client.put("/api/budgets/daily", json={"limit": "5"}, headers=admin(keys))
        other.refresh()  # what the gate does by itself every second
        assert other.authorize("s", "paid_api", "2.00").status == "approved"
    finally:
        other.close()


SLACK = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXX"


def test_alert_configuration_is_validated_merged_and_audited(
    client: TestClient, keys: Keys
) -> None:
    h = admin(keys)
    r = client.post(
        "/api/cost/alerts/configure",
        json={
            "alert_thresholds": {"daily_budget_80_percent": 0.7},
            "notification_channels": {"slack": SLACK},
        },
        headers=h,
    ).json()
    assert r["alert_thresholds"]["daily_budget_80_percent"] == 0.7
    assert r["alert_thresholds"]["daily_budget_100_percent"] == 1.0
    # Shown without the webhook's token, to read keys and in the audit log alike.
    assert r["notification_channels"]["slack"]["url"] == "https://hooks.slack.com/***"
    assert "XXXXXXXX" not in json.dumps(client.get("/api/audit", headers=h).json())
    assert r["changed_by"].startswith("key:")
    for bad in (
        {"alert_thresholds": {"daily_budget_80_percent": 11}},
        {"alert_thresholds": {"daily_budget_80_percent": 0}},
        {"alert_thresholds": {"unknown_rule": 1}},
        {"notification_channels": {"email": "notascheme://x"}},
        {"notification_channels": {"hook": {"kind": "webhook", "url": "ftp://x/y"}}},
    ):
        problem_of(client.post("/api/cost/alerts/configure", json=bad, headers=h), 422)
    after = client.get("/api/cost/alerts/configure", headers=h).json()
    assert after["settings"] == r["settings"]  # refused changes changed nothing
    assert client.get("/api/audit", headers=h).json()[0]["kind"] == "alerts"


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_follow_prometheus_conventions(client: TestClient, keys: Keys, gate: Gate) -> None:
    record_some(client, keys)
    r = client.get("/metrics", headers=bearer(keys.read))
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'spendgate_spend_total{currency="USD",service="scraper",source="paid_api"} 0.01' in text
    failures = 'outcome="failure",service="enrichment",source="free_api"'
    assert f"spendgate_requests_total{{{failures}}} 1.0" in text
    assert "all" not in re.findall(r'(?:outcome|pricing)="(\w+)"', text)
    # Each family partitions the requests: sum() over either is the number recorded.
    families = {"spendgate_requests_total": 0.0, "spendgate_requests_by_pricing_total": 0.0}
    for line in text.splitlines():
        name = line.partition("{")[0]
        if name in families:
            families[name] += float(line.rsplit(" ", 1)[1])
    recorded = sum(t.requests for _, _, _, t in gate.store.tallies([(0, 2**62)]))
    assert families == dict.fromkeys(families, float(recorded))
    assert 'spendgate_budget_spent{budget="daily"} 0.01' in text
    assert 'spendgate_budget_reserved{budget="daily"} 0.0' in text
    assert 'spendgate_budget_remaining{budget="daily"} 0.99' in text
    assert "spendgate_free_source_success_ratio" in text
    assert "# TYPE spendgate_budget_used_ratio gauge" in text


# -- the live feed ----------------------------------------------------------------------------


def test_a_websocket_client_sees_a_rest_event_within_a_second(gate: Gate, keys: Keys) -> None:
    with running(app_for(gate, ws_interval=0.1)) as url:
        ws_url = url.replace("http", "ws") + "/ws/cost-monitoring"
        with connect(ws_url, additional_headers=bearer(keys.read)) as ws:
            first = json.loads(ws.recv(timeout=5))
            assert first["type"] == "cost_state"
            assert first["data"]["live_figures"]["current_daily_spend"]["value"] == "0"
            start = time.monotonic()
            event = {"service": "scraper", "source": "paid_api"}
            assert (
                httpx.post(f"{url}/api/events", json=event, headers=bearer(keys.write)).status_code
                == 201
            )
            receive_until(
                ws,
                lambda m: (
                    m["type"] == "cost_update"
                    and m["data"]["live_figures"]["current_daily_spend"]["value"] == "0.01"
                ),
                seconds=1.0,
            )
            assert time.monotonic() - start < 1.0
            ws.send("request_current_metrics")
            reply = receive_until(ws, lambda m: m["type"] == "current_metrics")
            assert reply["data"]["live_figures"]["current_daily_spend"]["value"] == "0.01"


def test_a_budget_reaching_a_rung_is_pushed_as_an_alert_once(gate: Gate, keys: Keys) -> None:
    with running(app_for(gate, ws_interval=0.05)) as url:
        ws_url = url.replace("http", "ws") + f"/ws/cost-monitoring?token={keys.read}"
        with connect(ws_url) as ws:
            ws.recv(timeout=5)
            event = {"service": "scraper", "source": "paid_api", "cost": "0.85"}
            httpx.post(f"{url}/api/events", json=event, headers=bearer(keys.write))
            # The budget's own alert (the forecast rule, judged meanwhile, may announce too).
            m = receive_until(
                ws, lambda m: m["type"] == "cost_alert" and m["alert"]["rule"] == "budget"
            )
            alert = m["alert"]
            assert (alert["rule"], alert["scope"]) == ("budget", "daily")
            assert alert["detail"] == {"fraction": "0.8", "limit": "1", "rung": "warn"}
            # The seed's shape (`send_cost_alert`'s `alert`), the same dict the API shows.
            assert (alert["type"], alert["severity"]) == ("high_usage", "warning")
            data = alert["data"]
            assert (data["usage_percentage"], data["current_usage"]) == (0.85, 0.85)
            assert (data["daily_budget"], data["remaining_budget"]) == (1.0, 0.15)
            assert (data["budget"], data["window"]) == ("daily", "day")
            shown = httpx.get(
                f"{url}/api/alerts/{alert['alert_id']}", headers=bearer(keys.read)
            ).json()
            assert {k: v for k, v in shown.items() if k not in ("state", "notifications_sent")} == {
                k: v for k, v in alert.items() if k not in ("state", "notifications_sent")
            }
            more = {"service": "scraper", "source": "paid_api", "cost": "0.01"}
            httpx.post(f"{url}/api/events", json=more, headers=bearer(keys.write))
            # Updates arrive; the same rung is not announced again (other rules, such as the
            # forecast the server evaluates meanwhile, may announce their own).
            seen = [json.loads(ws.recv(timeout=2)) for _ in range(3)]
            assert any(s["type"] == "cost_update" for s in seen)
            again = [s for s in seen if s["type"] == "cost_alert"]
            assert all(s["alert"]["alert_id"] != m["alert"]["alert_id"] for s in again)


def test_revoking_a_key_ends_its_live_feed(gate: Gate, keys: Keys) -> None:
    from websockets.exceptions import ConnectionClosed

    app = app_for(gate, ws_interval=0.02)
    with running(app) as url:
        token, key = app.state.keys.create("watcher", "read", actor="test", now=0)
        ws_url = url.replace("http", "ws") + f"/ws/cost-monitoring?token={token}"
        with connect(ws_url) as ws:
            ws.recv(timeout=5)
            app.state.keys.revoke(key.key_id, actor="test", now=0)

            def drain() -> None:  # until the server closes the feed (else fails)
                receive_until(ws, lambda m: False)

            with pytest.raises(ConnectionClosed) as closed:
                drain()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008


def test_the_websocket_refuses_bad_tokens(gate: Gate, keys: Keys) -> None:
    with running(app_for(gate)) as url:
        ws_url = url.replace("http", "ws") + "/ws/cost-monitoring"
        for headers in ({}, bearer("sg_bad"), bearer(keys.revoked), bearer(keys.scraper)):
            with (
                pytest.raises(InvalidStatus) as refused,
                connect(ws_url, additional_headers=headers),
            ):
                pass
            assert refused.value.response.status_code == 403


def test_dead_clients_are_dropped_without_affecting_others(gate: Gate, keys: Keys) -> None:
    app = app_for(gate, ws_interval=0.05)
    with running(app) as url:
        ws_url = url.replace("http", "ws") + f"/ws/cost-monitoring?token={keys.read}"
        with connect(ws_url) as alive, connect(ws_url) as dead:
            alive.recv(timeout=5)
            dead.recv(timeout=5)
            dead.socket.close()  # gone without a goodbye
            post = {"service": "s", "source": "paid_api"}
            httpx.post(f"{url}/api/events", json=post, headers=bearer(keys.write))
            assert json.loads(alive.recv(timeout=2))["type"] == "cost_update"
            deadline = time.monotonic() + 5
            while len(app.state.hub.clients) != 1 and time.monotonic() < deadline:
                post = {"service": "s", "source": "free_api"}
                httpx.post(f"{url}/api/events", json=post, headers=bearer(keys.write))
                alive.recv(timeout=2)
            assert len(app.state.hub.clients) == 1


def test_a_slow_client_holds_one_update_and_a_bounded_queue_of_alerts() -> None:
    client = Client(websocket=None, queue_size=3)  # type: ignore[arg-type]
    for i in range(10_000):
        client.offer_update({"type": "cost_update", "n": i})
    assert client.update == {"type": "cost_update", "n": 9_999}
    for i in range(3):
        client.offer_alert({"type": "cost_alert", "n": i})
    assert not client.dropped
    assert len(client.alerts) == 3
    client.offer_alert({"type": "cost_alert", "n": 3})
    assert client.dropped
    assert len(client.alerts) == 3


# -- money on the wire ------------------------------------------------------------------------


def test_money_is_exact_decimal_text(client: TestClient, keys: Keys) -> None:
    h = bearer(keys.write)
    for cost in ("0.000000001", "123456.789012345", 0.1):
        r = client.post(
            "/api/events", json={"service": "s", "source": "paid_api", "cost": cost}, headers=h
        )
        assert Decimal(r.json()["cost"]) == Decimal(str(cost))


# -- reports ----------------------------------------------------------------------------------


def test_monthly_and_weekly_reports_download_in_every_format(
    client: TestClient, keys: Keys, gate: Gate
) -> None:
    import io
    import zipfile

    record_some(client, keys)
    h = bearer(keys.read)
    r = client.get("/api/reports/monthly/2026-01?format=json", headers=h)
    assert r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    summary = r.json()["executive_summary"]
    assert Decimal(summary["total_monthly_cost"]) == Decimal("0.01")
    pdf = client.get("/api/reports/monthly/2026-01?format=pdf", headers=h)
    assert pdf.content.startswith(b"%PDF")
    xlsx = client.get("/api/reports/monthly/2026-01?format=xlsx", headers=h)
    assert zipfile.is_zipfile(io.BytesIO(xlsx.content))
    csv = client.get("/api/reports/monthly/2026-01?format=csv", headers=h)
    assert csv.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(csv.content)).namelist()
    assert len(names) >= 2
    assert all(n.endswith(".csv") for n in names)
    weekly = client.get("/api/reports/weekly?format=json&end=2026-01-04", headers=h)
    assert weekly.status_code == 200
    for bad in ("2026-13", "2027-01", "oct"):
        problem_of(client.get(f"/api/reports/monthly/{bad}?format=pdf", headers=h), 422)
    problem_of(client.get("/api/reports/monthly/2026-01?format=docx", headers=h), 422)


def test_the_server_writes_each_months_report_once_and_announces_it(
    app: FastAPI, gate: Gate, tmp_path: Path
) -> None:
    from spendgate.server.reports import write_monthly

    ctx = app.state.context
    written = write_monthly(ctx, tmp_path / "reports", "log")
    assert {p.suffix for p in written} == {".pdf", ".xlsx", ".csv", ".json"}
    assert all(p.parent.name == "2025-12" for p in written)
    assert write_monthly(ctx, tmp_path / "reports", "log") == []  # once
    (alert,) = gate.store.alerts()
    assert alert.alert_id == "report:2025-12:monthly"
    assert alert.state == "resolved"
    (notice,) = gate.store.notifications(alert_id=alert.alert_id)
    assert notice.channel == "log"
    assert str(written[0]) in json.dumps(notice.payload)


def test_names_with_a_slash_are_addressable_percent_encoded(
    client: TestClient, keys: Keys, gate: Gate
) -> None:
    """Budgets, sources, services and reservations may be named `team/a`: every route that
    names one in its path finds it when the slash is written `%2F` (found by the hostile
    schemathesis run: PATCH /api/budgets/%2F answered 405)."""
    h = admin(keys)
    budget = {"name": "team/a", "limit": "5", "scope": "service:team/a"}
    assert client.post("/api/budgets", json=budget, headers=h).status_code == 201
    assert client.get("/api/budgets/team%2Fa", headers=h).json()["name"] == "team/a"
    r = client.patch("/api/budgets/team%2Fa", json={"limit": "6"}, headers=h)
    assert r.json()["spec"]["limit"] == "6"
    assert client.post("/api/prices", json={"name": "geo/v2", "price": "0.25"}, headers=h)
    assert client.get("/api/prices/geo%2Fv2", headers=h).json()["name"] == "geo/v2"
    call = {"service": "team/a", "source": "geo/v2", "reservation_id": "job/1"}
    assert client.post("/api/reservations", json=call, headers=h).status_code == 201
    assert client.get("/api/reservations/job%2F1", headers=h).json()["service"] == "team/a"
    committed = client.post("/api/reservations/job%2F1/commit", json={}, headers=h).json()
    assert committed["cost"] == "0.25"
    metrics = client.get("/cost/services/team%2Fa/metrics", headers=h).json()
    assert metrics["service"] == "team/a"
    assert client.get("/services/team%2Fa", headers=h).status_code == 200
    alert = Alert("budget:team/a", "budget", "service:team/a", "warning", "firing", 1)
    gate.store.fire(alert)
    for path in ("", "/notifications"):
        assert client.get(f"/api/alerts/budget:team%2Fa{path}", headers=h).status_code == 200
    acknowledged = client.post("/api/alerts/budget:team%2Fa/acknowledge", headers=h).json()
    assert acknowledged["alert_id"] == "budget:team/a"
    assert client.delete("/api/budgets/team%2Fa", headers=h).json()["name"] == "team/a"
    problem_of(client.patch("/api/budgets/%2F", json={"limit": "1"}, headers=h), 404)
    # DELETE /api/keys/%2F answered 405, which the schema does not list (the fuzzer again).
    problem_of(client.delete("/api/keys/%2F", headers=h), 404)


def test_no_budget_may_be_named_status(client: TestClient, keys: Keys) -> None:
    # GET /api/budgets/status is every budget's standing: a budget named "status" could never
    # be read back at /api/budgets/{name} (the schema fuzzer found the two answers disagreeing).
    h = admin(keys)
    refused = client.post("/api/budgets", json={"name": "status", "limit": "1"}, headers=h)
    assert refused.status_code == 422, refused.text
    assert "name" in refused.text
    assert [b["name"] for b in client.get("/api/budgets", headers=h).json()] == ["daily"]
    assert isinstance(client.get("/api/budgets/status", headers=h).json(), list)
    pattern = re.compile(
        client.app.openapi()["paths"]["/api/budgets/{name}"]["get"]["parameters"][0]["schema"][
            "pattern"
        ]
    )
    assert not pattern.match("status")
    for name in ("daily", "s", "st", "statu", "statuses", "stats", "a/status", "Status"):
        assert pattern.match(name), name
    for name in ("stat", "statu", "statuses"):
        created = client.post("/api/budgets", json={"name": name, "limit": "1"}, headers=h)
        assert created.status_code == 201, created.text
        assert client.get(f"/api/budgets/{name}", headers=h).json()["name"] == name
