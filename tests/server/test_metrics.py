"""`/metrics` a Prometheus user can sum (issue 19).

A seeded workload goes through the library and the HTTP API alike: events recorded, calls
authorized, held, committed, released and left open, for several services, on paid, free
and unpriced sources, until budgets refuse, degrade and take emergency calls. The test keeps
its own count of everything it did. Then one scrape, parsed as Prometheus parses it, must
agree: `sum by (service)` of every counter equals the test's count (decisions from both
faces, none counted twice), every budget gauge equals `gate.status()` and the test's own
sums, and `promtool check metrics` finds nothing to complain about.
"""

from __future__ import annotations

import random
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spendgate import BudgetExceededError, Gate
from spendgate.budgets import LEVELS
from spendgate.config import parse
from spendgate.server.metrics import collector
from spendgate.testing import FrozenClock
from tests.serving import Keys, app_for, bearer, make_keys

SEED = 19
STEPS = 300
NOW = datetime(2026, 3, 18, 12, tzinfo=UTC)
SERVICES = ("scraper", "enrichment", "geocoder")
PAID = ("maps", "search")
SOURCES = (*PAID, "osm", "legacy")
CONFIG = {
    "sources": {
        "maps": {"price": "0.005/request"},
        "search": {"price": "0.002/request"},
        "osm": {"price": "free"},
        "legacy": {"unpriced": "allow"},
    },
    "budgets": [
        {"name": "daily", "limit": "2.00", "emergency": "1.00"},
        {
            "name": "scraper_day",
            "limit": "0.60",
            "scope": "service:scraper",
            "thresholds": {"warn": 0.5, "degrade": 0.7, "stop": 0.9},
        },
        {"name": "geocoder_soft", "limit": "0.50", "scope": "service:geocoder", "hard": False},
    ],
}
SCOPES = {"daily": None, "scraper_day": "scraper", "geocoder_soft": "geocoder"}
"""Each budget's service (`None`: every service), for the test's own sums."""


@dataclass
class Count:
    """What the workload did, counted by the test as it went."""

    decisions: dict[str, Counter[tuple[str, str]]] = field(
        default_factory=lambda: {"library": Counter(), "api": Counter()}
    )
    """face -> (service, outcome) -> decisions."""
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(service, success | failure) -> events."""
    pricing: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(service, paid | free) -> events."""
    unpriced: Counter[str] = field(default_factory=Counter)
    spend: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    holds: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    """Reservations left open: id -> (service, amount)."""

    def decided(self, face: str, service: str, outcome: str) -> None:
        self.decisions[face][service, outcome] += 1

    def event(self, service: str, source: str, cost: Decimal | None, success: bool) -> None:
        self.requests[service, "success" if success else "failure"] += 1
        # An event is "paid" when its source charges or it was booked at a cost; an
        # unpriced one (no cost known) is not, and counts as unpriced besides.
        self.pricing[service, "paid" if cost else "free"] += 1
        if source == "legacy":
            self.unpriced[service] += 1
        else:
            self.spend[service] += cost or 0

    def in_scope(self, budget: str) -> tuple[Decimal, Decimal]:
        """The budget's spent and reserved, summed by the test (one day, one window)."""
        only = SCOPES[budget]
        spent = sum((v for s, v in self.spend.items() if only in (None, s)), Decimal(0))
        held = sum((a for s, a in self.holds.values() if only in (None, s)), Decimal(0))
        return spent, held


@dataclass
class Run:
    gate: Gate
    client: TestClient
    keys: Keys
    count: Count
    rng: random.Random


def cents(rng: random.Random) -> Decimal:
    """A paid call's cost: $0.001 to $0.060."""
    return Decimal(rng.randrange(1, 61)) / 1000


def step(run: Run) -> None:
    """One random thing done through the library or the HTTP API, counted."""
    rng, gate, count = run.rng, run.gate, run.count
    face = rng.choice(("library", "api"))
    service = rng.choice(SERVICES)
    kind = rng.choice(("record", "authorize", "reserve", "reserve", "spend"))
    options = {"emergency": rng.random() < 0.3, "priority": rng.random() < 0.3}
    write = bearer(run.keys.write)
    if kind == "record":
        source = rng.choice(SOURCES)
        cost = cents(rng) if source in PAID else None
        success = rng.random() < 0.85
        if face == "library":
            gate.record(service, source, cost=cost, success=success)
        else:
            body: dict[str, Any] = {"service": service, "source": source, "success": success}
            if cost is not None:
                body["cost"] = str(cost)
            assert run.client.post("/api/events", json=body, headers=write).status_code == 201
        count.event(service, source, cost, success)
        return
    source = rng.choice((*PAID, "osm")) if kind == "authorize" else rng.choice(PAID)
    amount = cents(rng)
    call = {"service": service, "source": source, "amount": str(amount), **options}
    if kind == "authorize":
        if face == "library":
            outcome = gate.authorize(service, source, amount, **options).status
        else:
            outcome = run.client.post("/api/authorize", json=call, headers=write).json()[
                "approval_status"
            ]
        count.decided(face, service, outcome)
        return
    actual = amount if rng.random() < 0.5 else amount / 2
    if kind == "spend" and face == "library":
        try:
            with gate.spend(service, source, amount, **options) as spending:
                spending.set_cost(actual)
        except BudgetExceededError:
            count.decided(face, service, "denied")
            return
        assert spending.decision is not None
        count.decided(face, service, spending.decision.status)
        count.event(service, source, actual, True)
        return
    # A hold, then a commit, a release, or nothing (left open).
    if face == "library":
        decision = gate.reserve(service, source, amount, **options)
        outcome, rid = decision.status, decision.reservation_id
    else:
        answer = run.client.post("/api/reservations", json=call, headers=write).json()
        outcome, rid = answer["approval_status"], answer.get("reservation_id")
    count.decided(face, service, outcome)
    if rid is None:
        return
    then = rng.choice(("commit", "commit", "release", "open"))
    success = rng.random() < 0.85
    if then == "commit":
        if face == "library":
            gate.commit(rid, actual, success=success)
        else:
            body = {"actual": str(actual), "success": success}
            r = run.client.post(f"/api/reservations/{rid}/commit", json=body, headers=write)
            assert r.status_code == 200, r.text
        count.event(service, source, actual, success)
    elif then == "release":
        if face == "library":
            gate.release(rid)
        else:
            r = run.client.post(f"/api/reservations/{rid}/release", headers=write)
            assert r.status_code == 200, r.text
    else:
        count.holds[rid] = (service, amount)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    gate = Gate.open("memory://", config=parse(CONFIG), clock=FrozenClock(NOW))
    keys = make_keys(gate)
    with TestClient(app_for(gate)) as client:
        done = Run(gate, client, keys, Count(), random.Random(SEED))
        for _ in range(STEPS):
            step(done)
        yield done
    gate.close()


@pytest.fixture(scope="module")
def scrape(run: Run) -> str:
    r = run.client.get("/metrics", headers=bearer(run.keys.read))
    assert r.status_code == 200, r.text
    return r.text


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a scrape, by sample name, as Prometheus reads the text format."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name].append((s.labels, s.value))
    return out


def sum_by(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """PromQL's `sum by (labels) (name)`."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for found, value in samples(text)[name]:
        out[tuple(found[label] for label in labels)] += value
    return dict(out)


def counted(counter: Counter[Any]) -> dict[Any, float]:
    """The test's count as Prometheus would hold it (floats; keys as tuples)."""
    return {k if isinstance(k, tuple) else (k,): float(v) for k, v in counter.items()}


def per_service(counter: Counter[tuple[str, str]]) -> Counter[str]:
    """A count by (service, something), summed by service."""
    out: Counter[str] = Counter()
    for (service, _), n in counter.items():
        out[service] += n
    return out


def without_zeros(sums: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    return {k: v for k, v in sums.items() if v}


# -- the workload did what the test needs ------------------------------------------------------


def test_the_workload_reaches_every_outcome_through_both_faces(run: Run) -> None:
    for face, decisions in run.count.decisions.items():
        assert {o for _, o in decisions} == {"approved", "emergency_approved", "denied"}, face
        assert {s for s, _ in decisions} == set(SERVICES), face
    assert run.count.unpriced
    assert run.count.holds


# -- sum by (service) of each counter is the test's count --------------------------------------


def test_decisions_from_the_library_and_the_api_are_each_counted_once(
    run: Run, scrape: str
) -> None:
    library, api = run.count.decisions["library"], run.count.decisions["api"]
    both = library + api
    by_outcome = sum_by(scrape, "spendgate_reservation_decisions_total", "service", "decision")
    assert without_zeros(by_outcome) == counted(both)
    by_service = sum_by(scrape, "spendgate_reservation_decisions_total", "service")
    assert by_service == counted(per_service(both))
    # Neither face alone, nor either twice: exactly the two together.
    assert sum(by_service.values()) == library.total() + api.total()
    assert library.total()
    assert api.total()
    assert run.gate.decisions().counts == both


def test_request_counters_sum_by_service_to_the_events_recorded(run: Run, scrape: str) -> None:
    count = run.count
    by_outcome = sum_by(scrape, "spendgate_requests_total", "service", "outcome")
    assert without_zeros(by_outcome) == counted(count.requests)
    by_pricing = sum_by(scrape, "spendgate_requests_by_pricing_total", "service", "pricing")
    assert without_zeros(by_pricing) == counted(count.pricing)
    events = per_service(count.requests)
    # Each family is a partition of the requests: sum by (service) of either is every event.
    for name in ("spendgate_requests_total", "spendgate_requests_by_pricing_total"):
        assert sum_by(scrape, name, "service") == counted(events), name
    unpriced = sum_by(scrape, "spendgate_unpriced_requests_total", "service")
    assert without_zeros(unpriced) == counted(count.unpriced)


def test_spend_sums_by_service_to_the_costs_booked(run: Run, scrape: str) -> None:
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for labels, value in samples(scrape)["spendgate_spend_total"]:
        assert labels["currency"] == "USD"
        spend[labels["service"]] += Decimal(repr(value))  # each series exact to 9 places
    assert {s: v for s, v in spend.items() if v} == {s: v for s, v in run.count.spend.items() if v}


# -- budget gauges are gate.status() and the test's own sums -----------------------------------


def test_budget_gauges_equal_the_gates_status(run: Run, scrape: str) -> None:
    found = samples(scrape)
    gauges = {
        name.removeprefix("spendgate_budget_"): {labels["budget"]: v for labels, v in series}
        for name, series in found.items()
        if name.startswith("spendgate_budget_") and name != "spendgate_budget_line"
    }
    statuses = run.gate.status()
    assert {s.budget.name for s in statuses} == set(SCOPES)
    for s in statuses:
        name = s.budget.name
        got = {gauge: by_budget[name] for gauge, by_budget in gauges.items()}
        assert got == {
            "limit": float(s.limit),
            "spent": float(s.spent),
            "reserved": float(s.reserved),
            "used": float(s.spent + s.reserved),
            "remaining": float(s.remaining),
            "used_ratio": s.used_nanos / s.budget.limit,
            "level": float(LEVELS.index(s.level)),
            "emergency_allowance": float(s.budget.emergency_amount),
            "emergency_used": float(s.emergency_used),
            "window_end_timestamp_seconds": s.window_end.timestamp(),
        }, name
        # The test's own sums of what it booked and left held agree with the store's.
        assert (s.spent, s.reserved) == run.count.in_scope(name), name
    # The workload pushed the budgets up their ladders (past stop; to degrade; a soft one
    # past its limit): the gauges are not all zeros.
    assert gauges["level"] == {"daily": 3.0, "scraper_day": 2.0, "geocoder_soft": 3.0}
    assert 0 < gauges["emergency_used"]["daily"] <= gauges["emergency_allowance"]["daily"]
    assert gauges["emergency_used"]["geocoder_soft"] == 0  # a soft budget never needs one


def test_ladder_lines_and_window_ends_are_the_rest_apis(run: Run, scrape: str) -> None:
    rest = run.client.get("/api/budgets/status", headers=bearer(run.keys.read)).json()
    lines: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for labels, value in samples(scrape)["spendgate_budget_line"]:
        lines[labels["budget"]][labels["rung"], labels["fraction"]] = value
    ends = {
        labels["budget"]: value
        for labels, value in samples(scrape)["spendgate_budget_window_end_timestamp_seconds"]
    }
    assert set(lines) == set(ends) == {b["name"] for b in rest}
    for b in rest:
        limit = Decimal(b["limit"])
        assert lines[b["name"]] == {
            (rung, fraction): float(limit * Decimal(fraction))
            for rung, fraction in b["thresholds"].items()
        }, b["name"]
        assert ends[b["name"]] == datetime.fromisoformat(b["window_end"]).timestamp()
    assert lines["scraper_day"] == {
        ("warn", "0.5"): 0.3,
        ("degrade", "0.7"): 0.42,
        ("stop", "0.9"): 0.54,
    }


def test_firing_alerts_are_counted_by_how_they_are_handled() -> None:
    clock = FrozenClock(NOW)
    config = {**CONFIG, "budgets": [{"name": "daily", "limit": "1.00", "alerts": [0.5, 0.8, 1.0]}]}
    gate = Gate.open("memory://", config=parse(config), clock=clock)
    keys = make_keys(gate)
    with gate, TestClient(app_for(gate)) as client:
        gate.record("scraper", "maps", cost=Decimal("0.90"))
        firing = client.get("/api/alerts?state=firing", headers=bearer(keys.read)).json()
        assert len(firing) == 2  # the 50% and 80% lines
        admin = bearer(keys.admin)
        ack, hush = (a["alert_id"] for a in firing)
        client.post(f"/api/alerts/{ack}/acknowledge", headers=admin).raise_for_status()
        r = client.post(f"/api/alerts/{hush}/silence", json={"seconds": 3600}, headers=admin)
        r.raise_for_status()
        gate.record("scraper", "maps", cost=Decimal("0.10"))  # the 100% line: a third
        scrape = client.get("/metrics", headers=bearer(keys.read)).text
        rest = client.get("/api/alerts?state=firing", headers=bearer(keys.read)).json()
        limited = client.get("/metrics", headers=bearer(keys.scraper)).text
    states = {
        (labels["rule"], labels["severity"], labels["state"]): value
        for labels, value in samples(scrape)["spendgate_alerts"]
    }
    assert sum(states.values()) == len(rest) == 3
    by_severity = Counter(a["severity"] for a in rest)
    for severity, count in by_severity.items():
        assert sum(v for (_, sv, _), v in states.items() if sv == severity) == count
    assert sorted(state for (_, _, state), v in states.items() for _ in range(int(v))) == [
        "acknowledged",
        "firing",
        "silenced",
    ]
    assert {rule for rule, _, _ in states} == {"budget"}
    # Alerts span every service: a key limited to some sees none (as /api/alerts refuses it).
    assert "spendgate_alerts" not in samples(limited)
    assert samples(limited)["spendgate_info"] == [({"currency": "USD"}, 1.0)]


# -- promtool ----------------------------------------------------------------------------------


def test_promtool_finds_nothing_to_complain_about(scrape: str, promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


# -- a library process exports the same figures ------------------------------------------------


def test_a_library_process_exports_what_the_server_shows(run: Run, scrape: str) -> None:
    everything = CollectorRegistry(auto_describe=False)
    everything.register(collector(run.gate))
    assert generate_latest(everything).decode() == scrape
    own = CollectorRegistry(auto_describe=False)
    own.register(collector(run.gate, store_figures=False))
    names = {
        family.name for family in text_string_to_metric_families(generate_latest(own).decode())
    }
    assert names == {"spendgate_store_writes_failing", "spendgate_reservation_decisions"}
