"""One truth for every figure: a seeded random workload over ten days and today, budgets of
four scopes and windows, holds left open, a budget created and a limit changed over the API
after spend began; then, at one frozen instant, every face reports for every budget and for
today the same spent, reserved, remaining, limit and percent, each naming its budget and
scope, equal to an independent sum of the events to the nano-dollar.

The faces: `status()` and the `Analyst` on a gate opened before the changes and on one opened
after; every CLI command's `--json` that shows these figures; every REST figure route; the
WebSocket's first state; `/metrics` (Prometheus floats, compared after rounding to 9 places);
the monthly report's JSON; the dashboard's DOM in Chromium (the page rounds money for show:
its text is compared with the model rounded as the page rounds it, and the exact figure each
tile and row carries in its `title`).

The model knows nothing of the store: it keeps the events and holds it made and sums them by
each budget's window bounds, computed here from the calendar (UTC, midnight resets, weeks
from Monday) and the rolling window's buckets.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.budgets import BudgetStatus
from spendgate.cli import shell
from spendgate.config import parse
from spendgate.money import from_nanos, to_nanos
from spendgate.reports import Reporter, jsonfile
from spendgate.testing import FrozenClock
from tests.server.test_api import SEED_LIVE  # the seed's seven live-metric names
from tests.server.test_dashboard import browser  # noqa: F401  (the module's Chromium)
from tests.serving import Keys, app_for, bearer, make_keys, running

NOW = datetime(2026, 3, 18, 15, 27, 41, 250_000, tzinfo=UTC)  # a Wednesday afternoon
"""When the workload ends; the faces are read `SETTLE` later."""
SETTLE = timedelta(seconds=2)
"""Past a gate's `refresh_every` (1 s of its clock): the gate opened before the API changes
has looked at the stored definitions again when the faces are read."""
SEED = 18
DAYS = 10
SERVICES = ("scraper", "enrichment", "geocoder")
SOURCES = ("maps", "search", "osm")
ROLLING_LENGTH = timedelta(hours=6)
ROLLING_STEP = timedelta(minutes=15)
NANO = Decimal("0.000000001")

CONFIG = {
    "sources": {
        "maps": {"price": "0.005/request"},
        "search": {"price": "0.002/request"},
        "osm": {"price": "free"},
    },
    "budgets": [
        {"name": "daily", "limit": "40.00", "window": "day"},
        {"name": "scraper_week", "limit": "60.00", "window": "week", "scope": "service:scraper"},
        {
            "name": "maps_6h",
            "limit": "12.50",
            "window": "rolling",
            "length": "6h",
            "granularity": "15m",
            "scope": "source:maps",
        },
    ],
}
CREATED = {"name": "team_a_month", "limit": "150.00", "window": "month", "scope": "label:team=a"}
"""The budget created over the API after spend began."""
PATCHED = ("scraper_week", "75.50")
"""The limit changed over the API."""


# -- the workload and its model ------------------------------------------------------------


@dataclass(frozen=True)
class Spend:
    """An event or a hold, as the model keeps it."""

    time: datetime
    service: str
    source: str
    labels: Mapping[str, str]
    nanos: int


@dataclass(frozen=True)
class Scope:
    text: str

    def matches(self, s: Spend) -> bool:
        kind, _, value = self.text.partition(":")
        if kind == "all":
            return True
        if kind == "service":
            return s.service == value
        if kind == "source":
            return s.source == value
        key, _, wanted = value.partition("=")
        return s.labels.get(key) == wanted


@dataclass
class Expected:
    """What every face must show for one budget."""

    name: str
    scope: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.spent - self.reserved

    @property
    def used_percent(self) -> Decimal:
        """Spent and reserved as a percentage of the limit, exact."""
        return (self.spent + self.reserved) * 100 / self.limit

    @property
    def level(self) -> int:
        """The rung of the default ladder (warn at 80%, stop at 100%) as /metrics numbers
        it: 0 normal, 1 warn, 3 stop."""
        return 3 if self.used_percent >= 100 else 1 if self.used_percent >= 80 else 0


@dataclass
class Model:
    events: list[Spend] = field(default_factory=list)
    holds: list[Spend] = field(default_factory=list)
    budgets: dict[str, tuple[str, str, Decimal]] = field(default_factory=dict)
    """name -> (scope, window, limit)."""

    def window(self, kind: str, at: datetime) -> tuple[datetime, datetime]:
        """`[start, end]` of the window at `at`, worked out from the calendar (UTC)."""
        midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if kind == "day":
            return midnight, at
        if kind == "week":
            return midnight - timedelta(days=at.weekday()), at
        if kind == "month":
            return midnight.replace(day=1), at
        # rolling: whole buckets of ROLLING_STEP, the oldest one holding `at - length`
        oldest = at - ROLLING_LENGTH
        step = ROLLING_STEP.total_seconds()
        floor = datetime.fromtimestamp(oldest.timestamp() // step * step, UTC)
        return floor, at

    def expected(self, at: datetime) -> dict[str, Expected]:
        out = {}
        for name, (scope, kind, limit) in self.budgets.items():
            start, end = self.window(kind, at)
            spent = self.total(self.events, Scope(scope), start, end)
            reserved = self.total(self.holds, Scope(scope), start, end)
            out[name] = Expected(name, scope, limit, spent, reserved)
        return out

    @staticmethod
    def total(items: list[Spend], scope: Scope, start: datetime, end: datetime) -> Decimal:
        """What `items` in `scope` between `start` and `end` (both included) add up to."""
        return from_nanos(
            sum(s.nanos for s in items if start <= s.time <= end and scope.matches(s))
        )

    def today(self, at: datetime) -> Decimal:
        """Every event since midnight (UTC), whatever its service."""
        start, _ = self.window("day", at)
        return from_nanos(sum(e.nanos for e in self.events if start <= e.time <= at))

    def month(self, at: datetime) -> Decimal:
        start, _ = self.window("month", at)
        return from_nanos(sum(e.nanos for e in self.events if start <= e.time <= at))


def random_events(rng: random.Random, count: int, since: datetime, until: datetime) -> list[Spend]:
    span = int((until - since).total_seconds())
    out = []
    for _ in range(count):
        labels = rng.choice(({"team": "a"}, {"team": "b"}, {"team": "a", "env": "prod"}, {}))
        out.append(
            Spend(
                since + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6)),
                rng.choice(SERVICES),
                rng.choice(SOURCES),
                labels,
                rng.randrange(1, 500_000_000),  # up to $0.50, any nano-dollar
            )
        )
    return out


def as_record(i: int, s: Spend) -> dict[str, Any]:
    return {
        "service": s.service,
        "source": s.source,
        "cost": str(from_nanos(s.nanos)),
        "time": s.time,
        "labels": dict(s.labels),
        "request_id": f"agree-{i}",
    }


@dataclass
class Workload:
    url: str
    clock: FrozenClock
    model: Model
    old: Gate
    """A gate opened before the API changes (with the configuration file's budgets)."""
    server: Gate
    keys: Keys
    tmp: Path

    @property
    def at(self) -> datetime:
        return self.clock()


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    tmp = tmp_path_factory.mktemp("agree")
    url = f"sqlite:///{tmp / 'spendgate.db'}"
    clock = FrozenClock(NOW - timedelta(minutes=10))
    rng = random.Random(SEED)
    model = Model()
    for b in CONFIG["budgets"]:
        model.budgets[b["name"]] = (b.get("scope", "all"), b["window"], Decimal(b["limit"]))

    old = Gate.open(url, config=parse(CONFIG), clock=clock)
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    history = random_events(rng, 260, midnight - timedelta(days=DAYS), midnight)
    today = random_events(rng, 70, midnight, clock())
    old.record_many(as_record(i, s) for i, s in enumerate(history + today))
    model.events += history + today

    # Holds left open today (in every budget's window; two of team a's).
    for service, source, labels, amount in (
        ("scraper", "maps", {"team": "a"}, "0.750000001"),
        ("enrichment", "search", {"team": "b"}, "0.333333333"),
        ("geocoder", "maps", {"team": "a", "env": "prod"}, "1.25"),
    ):
        d = old.reserve(service, source, amount, labels=labels, ttl="2h")
        assert d.approved, d
        model.holds.append(Spend(clock(), service, source, labels, to_nanos(amount)))

    # After spend began: a budget created and a limit changed over the API.
    server = Gate.open(url, clock=clock)
    keys = make_keys(server)
    with TestClient(app_for(server)) as client:
        created = client.post("/api/budgets", json=CREATED, headers=bearer(keys.admin))
        assert created.status_code in (200, 201), created.text
        name, limit = PATCHED
        patched = client.patch(
            f"/api/budgets/{name}", json={"limit": limit}, headers=bearer(keys.admin)
        )
        assert patched.status_code == 200, patched.text
    model.budgets[CREATED["name"]] = (
        CREATED["scope"],
        CREATED["window"],
        Decimal(CREATED["limit"]),
    )
    scope, kind, _ = model.budgets[name]
    model.budgets[name] = (scope, kind, Decimal(limit))

    # More spend after the changes, through the old gate once it has seen them.
    clock.set(NOW - SETTLE)
    late = random_events(rng, 20, midnight, clock())
    old.record_many(as_record(1000 + i, s) for i, s in enumerate(late))
    model.events += late
    clock.set(NOW + SETTLE)
    yield Workload(url, clock, model, old, server, keys, tmp)
    server.close()
    old.close()


# -- comparing ---------------------------------------------------------------------------------


def amount(value: object) -> Decimal:
    """A face's money: decimal text, or a `Decimal` (never nano-units)."""
    assert isinstance(value, str | Decimal), f"money as {type(value).__name__}: {value!r}"
    return Decimal(value)


def check_status(face: str, rows: list[BudgetStatus], expected: dict[str, Expected]) -> None:
    """Python `status()`: every budget, its scope and its figures."""
    assert {r.budget.name for r in rows} == set(expected), face
    for r in rows:
        e = expected[r.budget.name]
        assert str(r.budget.scope) == e.scope, (face, e.name)
        # The public reads are Decimals of the currency; the store's nano-units agree.
        got = (r.limit, r.spent, r.reserved, r.remaining)
        assert all(isinstance(x, Decimal) for x in got), (face, got)
        assert got == (e.limit, e.spent, e.reserved, e.remaining), (face, e.name, got, e)
        inside = (r.budget.limit, r.balance.spent, r.balance.reserved)
        assert tuple(map(from_nanos, inside)) == got[:3], (face, e.name)
        assert r.used_percent == round_percent(e.used_percent), (face, e.name)


def check_rows(face: str, rows: list[dict[str, Any]], expected: dict[str, Expected]) -> None:
    """A face's list of budgets as JSON (`BudgetStatus.to_dict()`)."""
    assert sorted(r["name"] for r in rows) == sorted(expected), face
    for r in rows:
        e = expected[r["name"]]
        assert r["scope"] == e.scope, (face, e.name)
        got = {k: amount(r[k]) for k in ("limit", "spent", "reserved", "remaining")}
        want = {
            "limit": e.limit,
            "spent": e.spent,
            "reserved": e.reserved,
            "remaining": e.remaining,
        }
        assert got == want, (face, e.name)
        assert Decimal(str(r["used_percent"])) == round_percent(e.used_percent), (face, e.name)


def round_percent(p: Decimal) -> Decimal:
    return p.quantize(Decimal("0.01"), ROUND_HALF_UP)


def check_live(
    face: str, live: dict[str, Any], expected: dict[str, Expected], today: Decimal
) -> None:
    """Live metrics as JSON: today's spend (scope all) and the measured budget's figures,
    as spendgate's figures and as the seed's plain numbers beside them."""
    seed, m = live["live_metrics"], live["live_figures"]
    assert set(seed) == {"as_of", *SEED_LIVE}, face
    assert seed["as_of"] == m["current_daily_spend"]["as_of"], face
    for key in SEED_LIVE:  # each the number of spendgate's figure of that name
        figure = m[key]["value"]
        assert seed[key] == (None if figure is None else float(figure)), (face, key)
    assert seed["current_daily_spend"] == float(today), face
    spend = m["current_daily_spend"]
    assert (spend["scope"], spend["budget"]) == ("all", None), face
    assert amount(spend["value"]) == today, face
    e = expected[m["budget_remaining"]["budget"]]
    for key in ("budget_used", "budget_remaining", "budget_remaining_percent"):
        assert (m[key]["budget"], m[key]["scope"]) == (e.name, e.scope), (face, key)
    assert amount(m["budget_used"]["value"]) == e.spent + e.reserved, face
    assert amount(m["budget_remaining"]["value"]) == e.remaining, face
    assert seed["budget_remaining"] == float(e.remaining), face
    assert Decimal(str(m["budget_remaining_percent"]["value"])) == round_percent(
        100 - e.used_percent
    ), face
    if "budget" not in live:  # the dashboard's data: the budget is among its budgets
        return
    b = live["budget"]
    assert (b["name"], b["scope"]) == (e.name, e.scope), face
    assert (amount(b["limit"]), amount(b["used"]), amount(b["remaining"])) == (
        e.limit,
        e.spent + e.reserved,
        e.remaining,
    ), face


def check_day(face: str, doc: dict[str, Any], today: Decimal) -> None:
    """A summary or day breakdown of today: every event (scope all) since midnight."""
    assert doc.get("scope", "all") == "all", face
    assert doc.get("service") is None, face
    assert amount(doc["total_cost"]) == today, face
    assert sum(amount(c) for c in doc["cost_by_source"].values()) == today, face


def check_month(face: str, doc: dict[str, Any], w: Workload) -> None:
    """The month's forecast: its spend to date, and the monthly budget (the daily budget,
    the one over everything, times the days of March)."""
    assert amount(doc["current_spend"]) == w.model.month(w.at), face
    assessment = doc["budget_assessment"]
    daily = w.model.expected(w.at)["daily"]
    assert amount(assessment["monthly_budget"]) == daily.limit * 31, face
    source = assessment["monthly_budget_from"]
    assert (source["budget"], source["scope"]) == ("daily", "all"), face


# -- the faces ---------------------------------------------------------------------------------


def test_python_faces_agree_with_the_events(workload: Workload) -> None:
    expected = workload.model.expected(workload.at)
    today = workload.model.today(workload.at)
    assert len(expected) == 4
    assert all(e.spent and e.reserved for e in expected.values()), expected
    with Gate.open(workload.url, clock=workload.clock) as new:
        for face, gate in (("old gate", workload.old), ("new gate", new)):
            check_status(f"{face} status()", gate.status(), expected)
            check_rows(f"{face} to_dict()", [s.to_dict() for s in gate.status()], expected)
            live = Analyst(gate).live()
            assert live.as_of == workload.at
            assert from_nanos(live.today.cost) == today, face
            check_live(f"{face} Analyst.live()", live.to_dict(), expected, today)


def cli_json(monkeypatch: pytest.MonkeyPatch, workload: Workload, *args: str) -> Any:
    """A command's `--json`, run in-process at the workload's instant."""
    from spendgate.cli import app

    monkeypatch.setattr(shell, "clock", workload.clock)
    result = CliRunner().invoke(app, [*args, "--db", workload.url, "--json"])
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


def test_cli_faces_agree_with_the_events(
    workload: Workload, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no spendgate.toml here: the store's definitions rule
    expected = workload.model.expected(workload.at)
    today = workload.model.today(workload.at)
    check_rows("spendgate status", cli_json(monkeypatch, workload, "status"), expected)
    check_live("spendgate live", cli_json(monkeypatch, workload, "live"), expected, today)
    listed = cli_json(monkeypatch, workload, "budgets", "list")
    assert {b["name"]: (b["scope"], amount(b["limit"])) for b in listed} == {
        e.name: (e.scope, e.limit) for e in expected.values()
    }
    day = workload.at.date().isoformat()
    check_day("spendgate summary today", cli_json(monkeypatch, workload, "summary"), today)
    check_day("spendgate daily", cli_json(monkeypatch, workload, "daily", day), today)
    check_month("spendgate forecast", cli_json(monkeypatch, workload, "forecast"), workload)


def metrics_of(text: str) -> dict[str, dict[str, Decimal]]:
    """The budget gauges of a Prometheus scrape: gauge -> budget -> value (9 places). Not
    the window ends, which are times (tests/server/test_metrics.py holds them to the REST
    API's `window_end`), nor the ladder lines, with more labels than `budget`."""
    out: dict[str, dict[str, Decimal]] = {}
    for line in text.splitlines():
        found = re.fullmatch(r'(spendgate_budget_\w+)\{budget="([^"]+)"\} (\S+)', line)
        if found and not found.group(1).endswith("_timestamp_seconds"):
            gauge, budget, value = found.groups()
            out.setdefault(gauge, {})[budget] = Decimal(value).quantize(NANO)
    return out


def test_server_faces_agree_with_the_events(workload: Workload) -> None:
    w = workload
    expected = w.model.expected(w.at)
    today = w.model.today(w.at)
    day = w.at.date().isoformat()
    read = bearer(w.keys.read)
    with TestClient(app_for(w.server)) as client:

        def get(path: str) -> Any:
            r = client.get(path, headers=read)
            assert r.status_code == 200, (path, r.text)
            return r.json()

        check_rows("GET /api/budgets/status", get("/api/budgets/status"), expected)
        check_live("GET /api/cost/current", get("/api/cost/current"), expected, today)
        board = get("/cost/dashboard/live")
        check_live("GET /cost/dashboard/live", board["data"], expected, today)
        check_rows("GET /cost/dashboard/live budgets", board["data"]["budgets"], expected)
        check_day("GET /cost/dashboard/live today", board["data"]["daily_summary"], today)
        check_day(f"GET /api/cost/daily/{day}", get(f"/api/cost/daily/{day}"), today)
        check_month("GET /api/cost/forecast/monthly", get("/api/cost/forecast/monthly"), w)
        charts = get("/api/dashboard/charts")
        assert (charts["scope"], charts["budget"]) == ("all", "daily")
        assert sum(amount(p["cost"]) for p in charts["today"]) == today
        assert (charts["days"][-1]["t"], amount(charts["days"][-1]["cost"])) == (day, today)

        with client.websocket_connect("/ws/cost-monitoring", headers=read) as ws:
            first = ws.receive_json()
        assert first["type"] == "cost_state"
        check_live("WebSocket cost_state", first["data"], expected, today)
        check_rows("WebSocket cost_state budgets", first["data"]["budgets"], expected)

        scrape = client.get("/metrics", headers=read)
        assert scrape.status_code == 200
        gauges = metrics_of(scrape.text)
        # Prometheus values are floats: compared with the model rounded to 9 places.
        for e in expected.values():
            got = {gauge: by_budget[e.name] for gauge, by_budget in gauges.items()}
            assert got == {
                "spendgate_budget_limit": e.limit.quantize(NANO),
                "spendgate_budget_used": (e.spent + e.reserved).quantize(NANO),
                "spendgate_budget_remaining": e.remaining.quantize(NANO),
                "spendgate_budget_used_ratio": (e.used_percent / 100).quantize(NANO),
                "spendgate_budget_spent": e.spent.quantize(NANO),
                "spendgate_budget_reserved": e.reserved.quantize(NANO),
                "spendgate_budget_level": Decimal(e.level).quantize(NANO),
                # No budget here has an emergency allowance (tests/server/test_metrics.py
                # has budgets that do).
                "spendgate_budget_emergency_allowance": Decimal(0).quantize(NANO),
                "spendgate_budget_emergency_used": Decimal(0).quantize(NANO),
            }, e.name


def test_the_monthly_report_agrees_with_the_events(workload: Workload) -> None:
    w = workload
    report = Reporter(w.old).monthly(w.at.date().isoformat()[:7])
    (text,) = jsonfile.render(report).values()
    doc = json.loads(text)
    summary = doc["executive_summary"]
    assert amount(summary["total_monthly_cost"]) == w.model.month(w.at)
    daily = w.model.expected(w.at)["daily"]
    assert amount(summary["monthly_budget"]) == daily.limit * 31
    (row,) = [d for d in doc["daily_breakdown"] if d["date"] == w.at.date().isoformat()]
    assert amount(row["total_cost"]) == w.model.today(w.at)
    assert amount(row["daily_budget"]) == daily.limit
    forecast = doc["month_end_forecast"]
    assert amount(forecast["monthly_budget"]) == daily.limit * 31
    assert "budget daily" in forecast["monthly_budget_basis"]
    assert "(scope all)" in forecast["monthly_budget_basis"]


def shown(value: Decimal) -> str:
    """Money as the dashboard's `money()` shows it: `toFixed` of the number (the exact value
    of the double, ties away from zero), two places from $1, four below."""
    n = float(value)
    places = Decimal("0.01") if abs(n) >= 1 else Decimal("0.0001")
    text = Decimal(abs(n)).quantize(places, ROUND_HALF_UP)
    return ("-$" if n < 0 else "$") + str(text)


def text(value: Decimal) -> str:
    """Decimal text as the server writes money (no trailing zeros, no exponent)."""
    return f"{value.normalize():f}"


def js_number(value: Decimal) -> str:
    """A JSON number as JavaScript writes it back (`63.5`, `100`)."""
    written = repr(float(value))
    return written.removesuffix(".0")


def fixed(value: float | Decimal, places: str = "0.1") -> str:
    """`Number(x).toFixed(1)`, as the page writes a percentage."""
    return str(Decimal(float(value)).quantize(Decimal(places), ROUND_HALF_UP))


def test_the_dashboard_shows_the_same_figures(workload: Workload, browser: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    w = workload
    expected = w.model.expected(w.at)
    today = w.model.today(w.at)
    app = app_for(w.server, ws_interval=0.05)
    with running(app) as url:
        context = browser.new_context()
        page = context.new_page()
        token = app.state.signins.mint(w.keys.read.split("_")[1])
        page.goto(f"{url}/signin?token={token}")
        spend = page.locator("#tile-current_daily_spend")
        expect(spend.locator(".value")).to_have_text(shown(today), timeout=10_000)
        expect(spend.locator(".value")).to_have_attribute("title", text(today))
        expect(spend.locator(".scope")).to_have_text("all spend today")
        daily = expected["daily"]
        left = page.locator("#tile-budget_remaining")
        expect(left.locator(".value")).to_have_text(shown(daily.remaining))
        expect(left.locator(".value")).to_have_attribute("title", text(daily.remaining))
        expect(left.locator(".scope")).to_have_text("budget daily · scope all")
        left_percent = fixed(100 - round_percent(daily.used_percent))
        used = shown(daily.spent + daily.reserved)
        expect(left.locator(".note")).to_have_text(f"{left_percent}% left · {used} used")
        expect(page.locator("#main-gauge .fill")).to_have_attribute(
            "style", f"width: {fixed(round_percent(daily.used_percent))}%;"
        )
        for e in expected.values():
            row = page.locator(f"#budgets [data-budget={e.name}]")
            spent = f"{shown(e.spent)} spent + {shown(e.reserved)} held of {shown(e.limit)}"
            expect(row.locator(".used")).to_have_text(spent)
            percent = js_number(round_percent(e.used_percent))
            exact = (
                f"{text(e.spent)} spent + {text(e.reserved)} held of {text(e.limit)} ({percent}%)"
            )
            expect(row.locator(".used")).to_have_attribute("title", exact)
            expect(row.locator(".left")).to_have_text(
                re.compile(rf"^{re.escape(shown(e.remaining))} left · \w+ · {re.escape(e.scope)}$")
            )
            expect(row.locator(".left")).to_have_attribute("title", f"{text(e.remaining)} left")
            width = fixed(min(round_percent(e.used_percent), Decimal(100)))
            expect(row.locator(".gauge .fill")).to_have_attribute("style", f"width: {width}%;")
        context.close()
