"""Hostile input gets a 4xx (issue 16): dates at the ends of the calendar, money spelt some
other way, units a price does not have, booleans of another type and text past its bounds are
refused, naming the field and what would be valid, and nothing is stored.

Each rule holds for Python callers (the gate, the analyst, the reporter, the configuration)
and over HTTP (422 with a problem body), on the real app in process over a real SQLite file.
The boolean rule is checked against every request body of the OpenAPI document, so a new
boolean field is covered without a line here.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic import ValidationError as SchemaError

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.events import (
    MAX_ITEMS,
    MAX_KEY_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_TEXT_LENGTH,
)
from spendgate.llm import usage_from_openai
from spendgate.money import MONEY_PATTERN, MONEY_RULE, to_decimal, to_nanos
from spendgate.reports import Reporter
from spendgate.server import schemas
from spendgate.store import open_store
from spendgate.testing import FrozenClock
from spendgate.windows import DAY_RULE, FIRST_DAY, LAST_DAY, TIME_RULE, Window, parse_duration
from tests.serving import app_for, bearer, make_keys

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
SOURCES: dict[str, Any] = {
    # Every kind of price, and the units each has.
    "per_request": {"price": "0.01/request"},
    "per_page": {"price": {"page": "0.002"}},
    "tokens": {"price": {"input_token": "2.50/1M", "output_token": "10/1M"}},
    "tiered": {"tiers": {"request": [{"up_to": 100, "price": "0"}, {"price": "0.01"}]}},
    "stream": {"price": {"MB": "0.01", "hour": "1.00"}},
    "versioned": {
        "price": "0.01",
        "versions": [{"effective_from": "2025-06-01T00:00:00Z", "price": {"record": "0.001"}}],
    },
    "free": {"price": "free"},
    "legacy": {"unpriced": "allow"},  # no price: any units are kept, none priced
}


def config(**analytics: Any) -> Any:
    return parse(
        {
            "sources": SOURCES,
            "budgets": [{"name": "daily", "limit": "1000"}],
            "analytics": analytics,
        }
    )


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate.open(f"sqlite:///{tmp_path / 'hostile.db'}", config=config(), clock=FrozenClock(NOW))
    yield g
    g.close()


@pytest.fixture
def app(gate: Gate) -> FastAPI:
    return app_for(gate, alerting=False)  # nothing in the background writes to the store


@pytest.fixture
def http(app: FastAPI, gate: Gate) -> TestClient:
    """An admin's client (no lifespan: no background work; every write is the test's)."""
    return TestClient(app, headers=bearer(make_keys(gate).admin))


def stored(gate: Gate) -> tuple[Any, ...]:
    """What a refused call must not change: events, holds and spend, definitions."""
    return (
        [e.to_dict() for e in gate.events()],
        [(s.budget.name, s.balance) for s in gate.status()],
        gate.store.revision(),
    )


def refused(response: Any, field: str, *says: str) -> dict[str, Any]:
    """A 422 problem whose first error names `field` (or a part of it) and says `says`."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    first = body["errors"][0]
    assert first["field"].startswith(field), body
    for words in says:
        assert words in first["message"], body
    return body


@contextlib.contextmanager
def refuses(field: str, *says: str) -> Iterator[None]:
    """A `ValidationError` naming `field` and saying each of `says` must be raised."""
    with pytest.raises(ValidationError) as caught:
        yield
    assert caught.value.field == field, caught.value
    for words in says:
        assert words in caught.value.expected, caught.value


# -- dates and times at the ends of the calendar --------------------------------------------


DAY_ROUTES = [
    ("/api/reports/weekly?format=json&end={}", "end"),
    ("/api/cost/daily/{}", "date"),
]
FAR_DAYS = ["0001-01-01", "9999-12-31", "1970-01-01", "1970-12-31", "8999-01-01"]
FAR_TIMES = [
    "0001-01-01T00:00:00+14:00",  # no UTC time at all: before year 1
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59.999999-14:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59+00:00",
    "1969-12-31T23:59:59Z",
    "9000-01-01T00:00:00Z",
]


@pytest.mark.parametrize("day", FAR_DAYS)
@pytest.mark.parametrize(("route", "field"), DAY_ROUTES)
def test_a_day_outside_the_calendar_is_refused_naming_the_parameter(
    http: TestClient, gate: Gate, route: str, field: str, day: str
) -> None:
    before = stored(gate)
    refused(http.get(route.format(day)), field, DAY_RULE)
    assert stored(gate) == before


@pytest.mark.parametrize("month", ["0001-01", "9999-12", "1970-12", "8999-01", "2026-13"])
def test_a_month_outside_the_calendar_is_refused_naming_it(http: TestClient, month: str) -> None:
    refused(http.get(f"/api/reports/monthly/{month}?format=json"), "month", "1971-01 to 8998-12")


def test_the_first_and_last_days_are_answered(http: TestClient) -> None:
    for day in (FIRST_DAY, LAST_DAY):
        assert http.get(f"/api/cost/daily/{day}").status_code == 200
    assert http.get(f"/api/reports/weekly?format=json&end={FIRST_DAY}").status_code == 200
    assert http.get(f"/api/reports/monthly/{FIRST_DAY:%Y-%m}?format=json").status_code == 200


@pytest.mark.parametrize("when", FAR_TIMES)
def test_an_event_time_outside_the_calendar_is_refused(
    http: TestClient, gate: Gate, when: str
) -> None:
    before = stored(gate)
    event = {"service": "scraper", "source": "per_request", "time": when}
    refused(http.post("/api/events", json=event), "time", TIME_RULE)
    batch = {"events": [{"service": "scraper", "source": "per_request"}, event]}
    refused(http.post("/api/events/batch", json=batch), "events[1].time", TIME_RULE)
    assert stored(gate) == before


@pytest.mark.parametrize("when", FAR_TIMES[:4])
def test_a_price_version_outside_the_calendar_is_refused(
    http: TestClient, gate: Gate, when: str
) -> None:
    before = stored(gate)
    source = {"name": "maps", "price": "0.01", "versions": [{"effective_from": when, "price": "1"}]}
    refused(
        http.post("/api/prices", json=source), "sources.maps.versions[0].effective_from", TIME_RULE
    )
    assert stored(gate) == before
    spec = {k: v for k, v in source.items() if k != "name"}
    with refuses("sources.maps.versions[0].effective_from", TIME_RULE):
        parse({"sources": {"maps": spec}})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/budgets", {"name": "r", "limit": "5", "window": "rolling", "length": "3661d"},
         "budgets.r.length"),
        ("/api/budgets", {"name": "r", "limit": "5", "window": "rolling",
                          "length": "999999999d"}, "budgets.r.length"),
        ("/api/budgets", {"name": "l", "limit": "5", "lease": {"ttl": "999999999d"}},
         "budgets.l.lease.ttl"),
        ("/api/cost/alerts/configure", {"alert_thresholds": {"window": "999999999d"}},
         "alerts.window"),
        ("/api/cost/alerts/configure", {"alert_thresholds": {"repeat_every": 1e12}},
         "alerts.repeat_every"),
    ],
)  # fmt: skip
def test_a_duration_past_ten_years_is_refused(
    http: TestClient, gate: Gate, path: str, body: dict[str, Any], field: str
) -> None:
    """A rolling budget of a billion days was accepted, and then every call and every figure
    overflowed the calendar (500s): durations are bounded where they are read."""
    before = stored(gate)
    refused(http.post(path, json=body), field, "at most 3660d")
    assert stored(gate) == before
    assert http.get("/api/cost/current").status_code == 200


def test_python_callers_are_held_to_the_same_calendar(gate: Gate) -> None:
    far = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    with refuses("time", TIME_RULE):
        gate.record("scraper", "per_request", time=far)
    with refuses("since", TIME_RULE):
        gate.events(since=far)
    analyst, reporter = Analyst(gate), Reporter(gate)
    with refuses("date", DAY_RULE):
        analyst.daily("0001-01-01")
    with refuses("date", DAY_RULE):
        analyst.daily(date(9999, 12, 31))
    with refuses("since", DAY_RULE):
        analyst.summary(None, since="0001-01-01", until="2026-01-01")
    with refuses("end", DAY_RULE):
        reporter.weekly("9999-12-31")
    with refuses("month", "1971-01 to 8998-12"):
        reporter.monthly("9999-12")
    with refuses("month", "1971-01 to 8998-12"):
        reporter.monthly(date(1, 1, 1))
    with refuses("length", "at most 3660d"):
        Window("rolling", length=timedelta(days=999_999_999))
    assert gate.events() == []


@pytest.mark.parametrize("zone", ["Etc/GMT-14", "Etc/GMT+12"])  # UTC+14, UTC-12
def test_the_calendar_s_ends_are_reported_on_in_every_zone(tmp_path: Path, zone: str) -> None:
    """The range leaves room for any zone, reset hour, the week before a week and a month
    around a day: its first and last days are answered, not refused half-way."""
    url = f"sqlite:///{tmp_path / 'zones.db'}"
    with Gate.open(url, config=config(timezone=zone, reset_hour=23), clock=FrozenClock(NOW)) as g:
        g.record("scraper", "per_request")
        analyst = Analyst(g)
        reporter = Reporter(analyst)
        for day in (FIRST_DAY, LAST_DAY):
            assert analyst.daily(day).day == day
        assert analyst.summary(None, since=FIRST_DAY, until=FIRST_DAY + timedelta(days=1))
        assert reporter.weekly(FIRST_DAY).to_dict()
        assert reporter.monthly(FIRST_DAY).to_dict()


# -- money is ASCII digits and one point ------------------------------------------------------


BAD_MONEY = ["1_000", "１", "١٢", "۱", "1e3", "1E-3", "1 000", "0x10", "NaN", "Infinity", "+1"]


@pytest.mark.parametrize("text", BAD_MONEY)
def test_money_text_in_http_bodies_is_ascii_digits_and_one_point(
    http: TestClient, gate: Gate, text: str
) -> None:
    held = http.post("/api/reservations", json={"service": "s", "source": "per_request"})
    rid = held.json()["reservation_id"]
    before = stored(gate)
    call = {"service": "scraper", "source": "per_request"}
    refused(http.post("/api/events", json={**call, "cost": text}), "cost", MONEY_RULE)
    refused(http.post("/api/authorize", json={**call, "amount": text}), "amount", MONEY_RULE)
    refused(http.post("/api/reservations", json={**call, "amount": text}), "amount", MONEY_RULE)
    commit = http.post(f"/api/reservations/{rid}/commit", json={"actual": text})
    refused(commit, "actual", MONEY_RULE)
    page = {"service": "scraper", "source": "per_page", "units": {"page": text}}
    refused(http.post("/api/events", json=page), "units.page", "ASCII digits")
    refused(http.post("/api/budgets", json={"name": "d2", "limit": text}), "budgets.d2.limit")
    refused(http.post("/api/prices", json={"name": "m", "price": f"{text}/request"}), "sources.m")
    assert stored(gate) == before


@pytest.mark.parametrize(
    ("given", "cost"),
    [("$1.50", "1.5"), (" 2 ", "2"), (".5", "0.5"), ("0.002", "0.002"), (0.25, "0.25"), (3, "3")],
)
def test_money_as_people_write_it_and_json_numbers_are_taken(
    http: TestClient, given: object, cost: str
) -> None:
    event = {"service": "scraper", "source": "per_request", "cost": given}
    answer = http.post("/api/events", json=event)
    assert answer.status_code == 201, answer.text
    assert answer.json()["cost"] == cost


@pytest.mark.parametrize("text", BAD_MONEY)
def test_money_text_in_python_and_the_configuration_is_ascii_digits_and_one_point(
    gate: Gate, text: str
) -> None:
    with refuses("cost", MONEY_RULE):
        gate.record("scraper", "per_request", cost=text)
    with refuses("amount", MONEY_RULE):
        gate.authorize("scraper", "per_request", text)
    with refuses("estimate", MONEY_RULE):
        gate.reserve("scraper", "per_request", text)
    rid = gate.reserve("scraper", "per_request").reservation_id
    assert rid is not None
    with refuses("actual", MONEY_RULE):
        gate.commit(rid, text)
    with refuses("units.page", "ASCII digits"):
        gate.record("scraper", "per_page", units={"page": text})
    budget = {"name": "d", "limit": "10"}
    for key in ("limit", "emergency"):
        with refuses(f"budgets.d.{key}", MONEY_RULE):
            parse({"budgets": [{**budget, key: text}]})
    with refuses("sources.m.price"):
        parse({"sources": {"m": {"price": f"{text}/request"}}})
    with refuses("sources.m.price.page"):
        parse({"sources": {"m": {"price": {"page": text}}}})
    with refuses("sources.m.tiers.request[0].price"):
        parse({"sources": {"m": {"tiers": {"request": [{"price": text}]}}}})
    with refuses("alerts.cost_per_request_above", MONEY_RULE):
        parse({"alerts": {"cost_per_request_above": text}})
    assert [e.cost for e in gate.events()] == []


@pytest.mark.parametrize("text", ["1_0s", "１s", "١٢h", "1e3s", "0x10", "NaN", "inf"])
def test_a_duration_s_number_is_ascii_digits_and_one_point_too(text: str) -> None:
    with refuses("reservation_ttl", "a duration"):
        parse({"reservation_ttl": text})
    with refuses("url timeout", "seconds"):
        open_store(f"postgresql://postgres@127.0.0.1:1/test?timeout={text}")
    assert parse_duration("1.5h", "ttl") == timedelta(minutes=90)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789.$_eE-+x１١", max_size=8))
def test_the_openapi_pattern_for_money_is_the_rule_the_server_reads_by(text: str) -> None:
    """The pattern the document states matches exactly the text the server reads as an
    amount (too large an amount aside: the number's `maximum` says that)."""
    try:
        to_decimal(text, "amount")
        readable = True
    except ValidationError as exc:
        readable = exc.expected.startswith("an amount of at most")
    assert readable == bool(re.fullmatch(MONEY_PATTERN, text)), text


def test_the_openapi_document_states_the_money_rule(app: FastAPI) -> None:
    components = app.openapi()["components"]["schemas"]
    for model, field in [("EventIn", "cost"), ("CallIn", "amount"), ("CommitIn", "actual")]:
        text = json.dumps(components[model]["properties"][field])
        assert json.dumps(MONEY_PATTERN) in text, text


# -- units are the price's ------------------------------------------------------------------


KINDS = {
    # source: (units it does not have, what the error lists, units it does have)
    "per_request": ({"page": 1}, "(request)", {"requests": 2}),
    "per_page": ({"request": 1}, "(page)", {"page": 3}),
    "tokens": ({"input_token": 10, "tokens": 5}, "(input_token, output_token)",
               {"input_token": 1000, "output_token": 10}),
    "tiered": ({"MB": 1}, "(request)", {"request": 1}),
    "stream": ({"page": 1}, "(MB, hour, bytes, seconds, events)",
               {"bytes": 2048, "seconds": 60, "events": 3}),
    "versioned": ({"request": 1}, "(record)", {"record": 5}),
    "free": ({"request": 1}, "(none: 'free' is free)", {}),
}  # fmt: skip


@pytest.mark.parametrize("source", KINDS)
def test_a_unit_the_price_does_not_have_is_refused_in_python(gate: Gate, source: str) -> None:
    unknown, listed, known = KINDS[source]
    says = f"only units of {source!r} {listed}"
    held = gate.reserve("scraper", source, "0.50")
    assert held.reservation_id is not None
    before = stored(gate)
    with refuses("units", says):
        gate.record("scraper", source, units=unknown)
    with refuses("units", says):
        gate.record("scraper", source, cost="0.01", units=unknown)  # a cost given: still checked
    with refuses("units", says):
        gate.authorize("scraper", source, units=unknown)
    with refuses("units", says):
        gate.authorize("scraper", source, "0.01", units=unknown)
    with refuses("units", says):
        gate.reserve("scraper", source, "0.01", units=unknown)
    with refuses("units", says):
        gate.commit(held.reservation_id, units=unknown)
    with refuses("units", says):
        gate.commit(held.reservation_id, "0.02", units=unknown)
    assert stored(gate) == before
    # The units it has are taken: the hold commits with them, once.
    assert gate.commit(held.reservation_id, units=known or None).request_id
    assert gate.record("scraper", source, units=known or None).created


@pytest.mark.parametrize("source", KINDS)
def test_a_unit_the_price_does_not_have_is_refused_over_http(
    http: TestClient, gate: Gate, source: str
) -> None:
    unknown, listed, known = KINDS[source]
    says = f"only units of {source!r} {listed}"
    held = http.post("/api/reservations", json={"service": "s", "source": source, "amount": "1"})
    rid = held.json()["reservation_id"]
    before = stored(gate)
    call = {"service": "scraper", "source": source, "units": unknown}
    refused(http.post("/api/events", json=call), "units", says)
    refused(http.post("/api/events/batch", json={"events": [call]}), "events[0].units", says)
    refused(http.post("/api/authorize", json={**call, "amount": "0.01"}), "units", says)
    refused(http.post("/api/reservations", json=call), "units", says)
    refused(http.post(f"/api/reservations/{rid}/commit", json={"units": unknown}), "units", says)
    assert stored(gate) == before
    answer = http.post("/api/events", json={**call, "units": known})
    assert answer.status_code == 201, answer.text


def test_a_zero_of_a_unit_the_price_does_not_have_says_nothing_was_left_out(gate: Gate) -> None:
    """The LLM helpers give every kind of token, zeros included, whatever the model's price
    has: a zero is taken; any more of a unit the price does not have is refused."""
    units = usage_from_openai({"usage": {"prompt_tokens": 1000, "completion_tokens": 10}})
    assert units["cached_input_token"] == units["cache_write_token"] == 0
    assert gate.record("scraper", "tokens", units=units).cost == to_nanos("0.0026")
    with refuses("units", "only units of 'tokens' (input_token, output_token)"):
        gate.record("scraper", "tokens", units={**units, "cache_write_token": 1})


def test_a_source_with_no_price_keeps_any_units(gate: Gate) -> None:
    """An allowed-unpriced source has no units to compare with: what it is given is kept
    (bounded like every call's units), so that it can be priced later."""
    result = gate.record("scraper", "legacy", units={"page": 3, "MB": 1})
    assert result.cost is None
    assert gate.events()[0].units == {"page": 3, "MB": 1}


# -- booleans are booleans ------------------------------------------------------------------


NOT_BOOLEANS: list[object] = ["false", "true", 1, 0, "1", "yes", 1.0, [], {}]


def boolean_fields(document: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], set[str]]:
    """Every property of every request body (nested models too) that may be a boolean, by
    its model's name and its path: the other JSON types it may also be."""
    components = document["components"]["schemas"]
    found: dict[tuple[str, tuple[str, ...]], set[str]] = {}

    def kinds(schema: dict[str, Any]) -> list[dict[str, Any]]:
        if "anyOf" not in schema:
            return [schema]
        return [k for alternative in schema["anyOf"] for k in kinds(alternative)]

    def walk(model: str, ref: str, path: tuple[str, ...]) -> None:
        for name, schema in components[ref]["properties"].items():
            alternatives = kinds(schema)
            if any(k.get("type") == "boolean" or k.get("const") is False for k in alternatives):
                others = {k.get("type", "") for k in alternatives}
                found[(model, (*path, name))] = others - {"boolean", "null"}
            for alternative in alternatives:
                if "$ref" in alternative:
                    walk(model, alternative["$ref"].rsplit("/", 1)[1], (*path, name))

    for operations in document["paths"].values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                ref = body["schema"]["$ref"].rsplit("/", 1)[1]
                walk(ref, ref, ())
    return found


def with_value(path: tuple[str, ...], value: object) -> dict[str, Any]:
    body: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        body = {name: body}
    return body


def errors_at(model: type[BaseModel], body: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """The errors at `path` when `body` is read as FastAPI reads it (Python objects from
    json.loads) and as the fast path does (the raw JSON): they must agree."""
    found = []
    for read in (model.model_validate, lambda b: model.model_validate_json(json.dumps(b))):
        try:
            read(body)
        except SchemaError as exc:
            found.append([e for e in exc.errors() if tuple(e["loc"][: len(path)]) == path])
        else:
            found.append([])
    assert bool(found[0]) == bool(found[1]), found
    return found[0]


def test_every_boolean_of_every_request_body_is_a_json_boolean(app: FastAPI) -> None:
    fields = boolean_fields(app.openapi())
    assert {
        ("EventIn", ("emergency",)),
        ("CallIn", ("priority",)),
        ("CommitIn", ("success",)),
        ("AlertConfigIn", ("alert_thresholds", "service_offline")),
        ("AlertConfigIn", ("alert_thresholds", "forecast_fraction")),  # a number or false
    } <= set(fields)
    for (model_name, path), others in fields.items():
        model = getattr(schemas, model_name)
        assert not errors_at(model, with_value(path, False), path), (model_name, path)
        for value in NOT_BOOLEANS:
            json_type = {str: "string", int: "integer", float: "number"}.get(type(value))
            if json_type in others or (json_type == "integer" and "number" in others):
                continue  # a number (or text) is valid there in its own right
            assert errors_at(model, with_value(path, value), path), (model_name, path, value)


@pytest.mark.parametrize("value", ["false", "true", 1, 0])
def test_a_flag_that_is_not_a_boolean_is_refused_and_nothing_is_held(
    http: TestClient, gate: Gate, value: object
) -> None:
    rid = http.post("/api/reservations", json={"service": "s", "source": "per_request"}).json()[
        "reservation_id"
    ]
    before = stored(gate)
    call = {"service": "scraper", "source": "per_request"}
    for field in ("emergency", "success", "batch_processing"):
        refused(http.post("/api/events", json={**call, field: value}), field, "boolean")
    for field in ("emergency", "priority"):
        refused(http.post("/api/authorize", json={**call, field: value}), field, "boolean")
        refused(http.post("/api/reservations", json={**call, field: value}), field, "boolean")
    commit = http.post(f"/api/reservations/{rid}/commit", json={"success": value})
    refused(commit, "success", "boolean")
    alerts = {"alert_thresholds": {"service_offline": value}}
    refused(http.post("/api/cost/alerts/configure", json=alerts), "alert_thresholds")
    assert stored(gate) == before
    with refuses("emergency", "True or False"):
        gate.record("scraper", "per_request", emergency=value)
    with refuses("success", "true or false"):
        gate.record("scraper", "per_request", success=value)


def test_zero_is_a_number_not_the_word_off(http: TestClient) -> None:
    """`false` turns an alert rule off; `0` is a number (here out of range), never `false`."""
    off = http.post("/api/cost/alerts/configure", json={"alert_thresholds": {"anomaly_factor": 0}})
    refused(off, "alerts.anomaly_factor", "a factor above 1")
    with refuses("alerts.forecast_fraction"):
        parse({"alerts": {"forecast_fraction": 0}})
    assert parse({"alerts": {"forecast_fraction": False}}).alerts.forecast_fraction is None


# -- text has bounds ------------------------------------------------------------------------


def long(n: int) -> str:
    return "x" * n


BOUNDS: list[tuple[str, Callable[[int], dict[str, Any]], int, str]] = [
    # (field, the call's fields with n of something, the most allowed, what the error names)
    ("labels", lambda n: {"labels": {f"k{i}": "v" for i in range(n)}}, MAX_LABELS, "labels"),
    ("label key", lambda n: {"labels": {long(n): "v"}}, MAX_KEY_LENGTH, "labels"),
    ("label value", lambda n: {"labels": {"customer": long(n)}}, MAX_LABEL_LENGTH,
     "labels.customer"),
    ("failure_reason", lambda n: {"failure_reason": long(n)}, MAX_TEXT_LENGTH,
     "failure_reason"),
    ("sources_used", lambda n: {"sources_used": [f"s{i}" for i in range(n)]}, MAX_ITEMS,
     "sources_used"),
    ("fallbacks", lambda n: {"fallbacks_triggered": [[f"s{i}", "down"] for i in range(n)]},
     MAX_ITEMS, "fallbacks_triggered"),
    ("fallback reason", lambda n: {"fallbacks_triggered": [["osm", long(n)]]},
     MAX_TEXT_LENGTH, "fallbacks_triggered"),
    ("units", lambda n: {"source": "legacy", "units": {f"u{i}": 1 for i in range(n)}},
     MAX_ITEMS, "units"),
    ("unit name", lambda n: {"source": "legacy", "units": {long(n): 1}}, MAX_KEY_LENGTH,
     "units"),
]  # fmt: skip


@pytest.mark.parametrize("bound", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_text_past_its_bound_is_refused_and_at_it_taken(
    http: TestClient, gate: Gate, bound: tuple[str, Callable[[int], dict[str, Any]], int, str]
) -> None:
    _, fields, most, field = bound
    call = {"service": "scraper", "source": "per_request"}
    before = stored(gate)
    with pytest.raises(ValidationError) as caught:
        gate.record(**{**call, **fields(most + 1)})
    assert caught.value.field.startswith(field), caught.value
    assert f"at most {most}" in caught.value.expected
    refused(http.post("/api/events", json={**call, **fields(most + 1)}), field, f"at most {most}")
    assert stored(gate) == before
    assert gate.record(**{**call, **fields(most)}).created
    answer = http.post("/api/events", json={**call, **fields(most)})
    assert answer.status_code == 201, answer.text


def test_the_reported_flood_of_labels_is_refused(http: TestClient, gate: Gate) -> None:
    """The attack run's case: 64 labels of 100 KB each, once accepted."""
    labels = {f"k{i}": long(100_000) for i in range(64)}
    call = {"service": "scraper", "source": "per_request", "labels": labels}
    for path in ("/api/events", "/api/authorize", "/api/reservations"):
        refused(http.post(path, json=call), "labels")
    with refuses("labels", f"at most {MAX_LABELS}"):
        gate.authorize("scraper", "per_request", labels=labels)
    with refuses("labels", f"at most {MAX_LABELS}"):
        gate.reserve("scraper", "per_request", labels=labels)
    assert stored(gate)[0] == []


def test_a_source_s_free_text_is_bounded(http: TestClient, gate: Gate) -> None:
    before = stored(gate)
    source = {"name": "m", "price": "1", "description": long(MAX_TEXT_LENGTH + 1)}
    refused(http.post("/api/prices", json=source), "sources.m.description", "at most 1000")
    refused(
        http.post("/api/prices", json={"name": "m", "price": "1", "capability": long(201)}),
        "sources.m.capability",
    )
    assert stored(gate) == before


def test_the_openapi_document_states_the_bounds(app: FastAPI) -> None:
    event = app.openapi()["components"]["schemas"]["EventIn"]["properties"]

    def first(schema: dict[str, Any]) -> dict[str, Any]:
        return next(s for s in schema.get("anyOf", [schema]) if s.get("type") != "null")

    labels = first(event["labels"])
    assert labels["maxProperties"] == MAX_LABELS
    assert labels["propertyNames"]["maxLength"] == MAX_KEY_LENGTH
    assert labels["additionalProperties"]["maxLength"] == MAX_LABEL_LENGTH
    assert first(event["failure_reason"])["maxLength"] == MAX_TEXT_LENGTH
    assert first(event["sources_used"])["maxItems"] == MAX_ITEMS
    assert first(event["fallbacks_triggered"])["maxItems"] == MAX_ITEMS
    assert first(event["units"])["maxProperties"] == MAX_ITEMS
