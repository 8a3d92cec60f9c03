"""The seed's alert shape (seed 000's `create_budget_alert`, `send_budget_alert`, its email
and Slack templates, the WebSocket's `send_cost_alert`) on every face, and budget alerts that
follow the budget's threshold ladder (seed 004: warn at 60% notifies). Real stores (memory,
SQLite, PostgreSQL), a real HTTP receiver; a frozen clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.accounting import AlertLine
from spendgate.alerts.engine import _alert
from spendgate.alerts.notices import TYPES, alert_dict, render
from spendgate.alerts.rules import BudgetStanding, Snapshot, findings
from spendgate.binding import alert_lines
from spendgate.budgets import STREAM_LADDER, Budget
from spendgate.config import parse
from spendgate.control import Control
from spendgate.money import to_nanos
from spendgate.pricing import RateLimit
from spendgate.rollups import Tally
from spendgate.server import create_app
from spendgate.settings import parse_alerts
from spendgate.store.base import Alert
from spendgate.store.rows import json_slots
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.alerts.test_alerts import Receiver, config, receiver, run, webhook
from tests.serving import bearer, make_keys

__all__ = ["receiver"]  # the receiver fixture, shared with test_alerts

SEED_KEYS = (
    "alert_id",
    "type",
    "severity",
    "timestamp",
    "title",
    "description",
    "data",
    "recommended_actions",
    "notification_channels",
)
"""The seed's alert keys (`CostAlertSystem.create_budget_alert`)."""
SHARED_KEYS = (*SEED_KEYS, "rule", "scope", "value", "threshold", "unit", "currency", "limit")


def same(alert: dict[str, Any]) -> dict[str, Any]:
    """What every face of one alert must say alike (its state and rounds move on)."""
    return {k: alert[k] for k in SHARED_KEYS}


def seed_email_lines(alert: dict[str, Any]) -> list[str]:
    """The seed's `budget_warning_email` figures, formatted as the seed does."""
    data = alert["data"]
    return [
        f"Daily Budget {data['usage_percentage'] * 100:.1f}% Used",
        f"Daily Budget: ${data['daily_budget']:.2f}",
        f"Current Usage: ${data['current_usage']:.2f}",
        f"Remaining: ${data['remaining_budget']:.2f}",
        f"Time: {alert['timestamp']}",
        f"Severity: {alert['severity'].upper()}",
    ]


def test_a_budget_alert_has_the_seeds_shape_alike_on_every_face(
    store_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    """82.5% of a $10 daily budget is the seed's `high_usage`; $10.25 is `budget_exceeded`
    with its `overage`: the webhook's body, `GET /api/alerts`, `GET /api/alerts/{id}`,
    the dashboard's `alerts_and_warnings` and the WebSocket's first state say it alike,
    and the seed's own templates format its `data`."""
    gate = Gate.open(store_url, config=config(webhook(receiver.url)), clock=clock)
    try:
        gate.record("scraper", "paid_api", cost="8.25")
        run(gate)
        clock.advance(timedelta(minutes=1))
        gate.record("scraper", "paid_api", cost="2.00")
        run(gate)
        sent = {d["alert_id"]: d for d in (json.loads(b) for _, b, _ in receiver.accepted)}
        assert len(sent) == len(receiver.accepted) == 2

        keys = make_keys(gate)
        client = TestClient(create_app(gate))  # no lifespan: only the test dispatches
        listed = client.get("/api/alerts", headers=bearer(keys.read)).json()
        current = client.get("/cost/dashboard/live", headers=bearer(keys.read)).json()["data"]
        with client.websocket_connect(f"/ws/cost-monitoring?token={keys.read}") as ws:
            live = ws.receive_json()["data"]["alerts"]
        faces = {
            "webhook": sent,
            "list": {a["alert_id"]: a for a in listed},
            "current": {a["alert_id"]: a for a in current["alerts_and_warnings"]},
            "websocket": {a["alert_id"]: a for a in live},
        }
        faces["one"] = {
            aid: client.get(f"/api/alerts/{aid}", headers=bearer(keys.read)).json() for aid in sent
        }
        python = {a.alert_id: alert_dict(a, gate.config) for a in gate.store.alerts()}
        for name, face in faces.items():
            assert {aid: same(a) for aid, a in face.items()} == {
                aid: same(python[aid]) for aid in sent
            }, name

        by_type = {a["type"]: a for a in python.values()}
        high, over = by_type["high_usage"], by_type["budget_exceeded"]
        assert (high["severity"], over["severity"]) == ("warning", "critical")
        assert high["data"]["usage_percentage"] == 0.825
        assert (high["data"]["current_usage"], high["data"]["daily_budget"]) == (8.25, 10.0)
        assert high["data"]["remaining_budget"] == 1.75
        assert "overage" not in high["data"]
        assert seed_email_lines(high)[:4] == [
            "Daily Budget 82.5% Used",
            "Daily Budget: $10.00",
            "Current Usage: $8.25",
            "Remaining: $1.75",
        ]
        assert over["data"]["usage_percentage"] == 1.025
        assert (over["data"]["current_usage"], over["data"]["overage"]) == (10.25, 0.25)
        assert over["data"]["remaining_budget"] == -0.25
        for alert in (high, over):
            data = alert["data"]
            # Which budget, its window and scope: `daily_budget` is its limit for that window.
            assert (data["budget"], data["window"], data["scope"]) == ("daily", "day", "all")
            assert alert["timestamp"] == alert["fired_at"]
            assert alert["description"].endswith(".")
            assert "$10.00" in alert["description"]
            assert alert["recommended_actions"]
            assert all(isinstance(a, str) for a in alert["recommended_actions"])
            assert alert["notification_channels"] == ["dashboard", "hook"]
            # The exact text stays in spendgate's own fields, beside the numbers.
            assert (alert["limit"], alert["unit"], alert["currency"]) == ("10", "USD", "USD")
        assert (high["value"], high["threshold"]) == ("8.25", "8")
        assert (over["value"], over["threshold"]) == ("10.25", "10")
        assert "Monitor free source success rates" in high["recommended_actions"]
    finally:
        gate.close()


def test_an_alert_keeps_the_limit_it_crossed_when_the_budget_changes_later(
    tmp_path: Any, clock: FrozenClock
) -> None:
    cfg = config({})
    gate = Gate.open(f"sqlite:///{tmp_path / 'kept.db'}", config=cfg, clock=clock)
    try:
        gate.record("scraper", "paid_api", cost="8.50")
        Control(gate).patch("budget", "daily", {"limit": "20.00"}, actor="test")
        (alert,) = gate.store.alerts()
        shown = alert_dict(alert, gate.config)
        assert shown["data"]["daily_budget"] == 10.0  # the limit it crossed, not $20 now
        assert shown["data"]["usage_percentage"] == 0.85
        assert shown["limit"] == "10"
    finally:
        gate.close()


def streaming_config(hook_url: str) -> Any:
    """The second seed's stream budget: $25 a day, warn 0.6, degrade 0.7, stop 0.8, with
    no `alerts` of its own (its ladder and the `[alerts]` defaults raise them)."""
    cfg = config(webhook(hook_url))
    stream = Budget(
        "streaming", to_nanos("25"), thresholds=STREAM_LADDER, scope=cfg.budgets[0].scope
    )
    return replace(cfg, budgets=(stream,))


def test_a_streaming_budgets_warn_rung_notifies_at_60_percent_once_a_window(
    store_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    gate = Gate.open(store_url, config=streaming_config(receiver.url), clock=clock)

    def sent() -> list[dict[str, Any]]:
        return [json.loads(b) for _, b, _ in receiver.accepted]

    try:
        gate.record("mbo_stream", "paid_api", cost="14.00")  # 56%: below every line
        run(gate)
        assert sent() == []
        gate.record("mbo_stream", "paid_api", cost="1.10")  # 60.4%: the warn rung
        run(gate)
        (warned,) = sent()
        assert (warned["type"], warned["severity"]) == ("high_usage", "warning")
        assert (warned["data"]["rung"], warned["data"]["fraction"]) == ("warn", 0.6)
        assert warned["data"]["usage_percentage"] == 0.604
        for _ in range(3):  # more spend under the next rung, more evaluations: no repeat
            gate.record("mbo_stream", "paid_api", cost="0.10")
            clock.advance(timedelta(minutes=5))
            run(gate)
        assert len(sent()) == 1
        gate.record("mbo_stream", "paid_api", cost="2.20")  # 70.4%: degrade, a warning
        gate.record("mbo_stream", "paid_api", cost="2.50")  # 80.4%: stop, critical
        run(gate)
        rungs = [(d["data"]["rung"], d["severity"], d["type"]) for d in sent()]
        assert rungs == [
            ("warn", "warning", "high_usage"),
            ("degrade", "warning", "high_usage"),
            ("stop", "critical", "high_usage"),
        ]
        clock.advance(timedelta(days=1))  # a new window: its warn rung notifies once more
        gate.record("mbo_stream", "paid_api", cost="15.10")
        run(gate)
        run(gate)
        firing = [d for d in sent() if d["kind"] == "firing"]
        assert [d["data"]["rung"] for d in firing] == ["warn", "degrade", "stop", "warn"]
        assert firing[3]["alert_id"] != firing[0]["alert_id"]
        # The first window's alerts ended with it: each resolution announced once.
        resolved = sorted(d["data"]["rung"] for d in sent() if d["kind"] == "resolved")
        assert resolved == ["degrade", "stop", "warn"]
        assert len(receiver.keys()) == len(receiver.accepted)  # no key twice
    finally:
        gate.close()


def test_a_budgets_alert_lines_are_its_ladder_and_the_defaults_or_exactly_its_own() -> None:
    defaults = (Decimal("0.8"), Decimal("1.0"))

    def lines(budget: Budget) -> list[tuple[str, str | None, str]]:
        return [(x.fraction, x.rung, x.severity) for x in alert_lines(budget, defaults)]

    seed = Budget("daily", to_nanos("10"))  # the default ladder: warn 0.8, stop 1.0
    assert lines(seed) == [("0.8", "warn", "warning"), ("1", "stop", "critical")]
    stream = Budget("streaming", to_nanos("25"), thresholds=STREAM_LADDER)
    assert lines(stream) == [
        ("0.6", "warn", "warning"),
        ("0.7", "degrade", "warning"),
        ("0.8", "stop", "critical"),  # calls are refused here: critical
        ("1", None, "critical"),
    ]
    assert [x.line for x in alert_lines(stream, defaults)] == [
        to_nanos(n) for n in ("15", "17.5", "20", "25")
    ]
    assert {x.limit for x in alert_lines(stream, defaults)} == {to_nanos("25")}
    own = replace(stream, alerts=(Decimal("0.5"), Decimal("0.9")))
    assert lines(own) == [("0.5", None, "warning"), ("0.9", None, "critical")]
    # A pending hold's slots stored by an earlier spendgate: lines of two items still read.
    (slot,) = json_slots('[["daily", 0, 0, null, [["0.8", 8], ["1", 10]]]]')
    assert [(x.fraction, x.severity) for x in slot.lines] == [
        ("0.8", "warning"),
        ("1", "critical"),
    ]
    assert slot.lines[0] == AlertLine("0.8", 8)


def test_every_rule_has_a_seed_type_description_figures_and_actions(clock: FrozenClock) -> None:
    """The scheduled rules' alerts, as the rules raise them: each has its seed-like `type`, a
    sentence, its figures as numbers in `data`, and something to do."""
    settings = parse_alerts({"rate_limit_fraction": 0.8, "min_requests": 1})
    budget = Budget("daily", to_nanos("10"))
    snap = Snapshot(
        clock(),
        to_micros(clock()),
        Tally(requests=40, cost=to_nanos("0.8"), paid=30, successes=40, free_successes=10),
        hour_cost=to_nanos("2"),
        hour_fraction=0.5,
        baseline=[to_nanos("0.1")] * 7,
        budgets=[BudgetStanding(budget, to_nanos("6"), 0, clock() + timedelta(hours=6), 5e5)],
        last_seen={"scraper": clock() - timedelta(hours=1)},
        source_requests={"maps": (17_000_000, RateLimit(20_000_000, timedelta(days=1)))},
        unpriced_recent=3,
        fail_open=2,
    )
    cfg = replace(parse({"budgets": [{"name": "daily", "limit": "10"}]}), alerts=settings)
    active = [_alert(f, to_micros(clock())) for f in findings(snap, settings)]
    active = [a for a in active if a.rule != "store_unreachable"]  # raised by the engine
    active.append(
        Alert(
            "store_unreachable:all:1",
            "store_unreachable",
            "all",
            "critical",
            "firing",
            to_micros(clock()),
            "120s",
            "0s",
            detail={"denied": 4, "approved_unchecked": 0},
        )
    )
    shown = {a.rule: alert_dict(a, cfg) for a in active}
    assert set(shown) == {
        "forecast",
        "free_source_rate",
        "cost_spike",
        "anomaly",
        "service_offline",
        "rate_limit",
        "unpriced_usage",
        "fail_open",
        "store_unreachable",
    }
    for rule, alert in shown.items():
        assert alert["type"] == TYPES[rule]
        assert alert["description"].endswith("."), rule
        assert alert["recommended_actions"], rule
        assert alert["timestamp"] == alert["fired_at"]
        assert alert["notification_channels"] == ["dashboard", "log"]
    data = {rule: alert["data"] for rule, alert in shown.items()}
    assert data["free_source_rate"]["free_source_success_rate"] == 0.25
    assert data["free_source_rate"]["threshold"] == 0.85
    assert data["cost_spike"]["cost_per_request"] == 0.02
    assert data["rate_limit"]["requests"] == 17_000_000
    assert data["rate_limit"]["source"] == "maps"
    assert data["service_offline"]["silent_seconds"] == 3600
    assert data["service_offline"]["service"] == "scraper"
    assert data["store_unreachable"]["outage_seconds"] == 120
    assert data["unpriced_usage"]["unpriced_calls"] == 3
    assert data["fail_open"]["approved_unchecked"] == 2
    forecast = data["forecast"]
    assert (forecast["budget"], forecast["window"]) == ("daily", "day")
    assert (forecast["current_usage"], forecast["daily_budget"]) == (6.0, 10.0)
    assert forecast["usage_percentage"] == 0.6
    assert forecast["projected_usage"] > forecast["forecast_line"] == 10.0
    assert "25.0%" in shown["free_source_rate"]["description"]
    # The notification's data (the webhook's body) is the same dict, with its round.
    channel = settings.channels[0]
    for alert in active:
        message = render(alert, "firing", 1, channel, cfg)
        body = message.data
        assert (body["kind"], body["round"]) == ("firing", 1)
        assert {k: body[k] for k in SHARED_KEYS} == same(alert_dict(alert, cfg))
