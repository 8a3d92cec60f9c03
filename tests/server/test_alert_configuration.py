"""`POST /api/cost/alerts/configure` with the seed's body, word for word: the transports set
once (`smtp_url`, `slack_webhook`, `sms_url`), then `email` as a list of addresses, `slack` as
a channel name, `sms` as a number, `dashboard: true`. Real parts: the app over a real socket,
every backend, an SMTP server (aiosmtpd) and HTTP receivers on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock
from tests.alerts.test_alerts import Receiver
from tests.alerts.test_recipients import SEED_EMAIL, smtp_server
from tests.serving import app_for, bearer, make_keys, running

# Seed 000, `CostAlertSystem.__init__`, as `update_configuration` receives it.
SEED_BODY: dict[str, Any] = {
    "alert_thresholds": {
        "daily_budget_80_percent": 0.8,
        "daily_budget_100_percent": 1.0,
        "free_source_success_below_85": 0.85,
        "cost_per_request_spike": 0.01,
        "service_offline": True,
        "api_rate_limit_approaching": 0.9,
    },
    "notification_channels": {
        "email": ["dev-team@fishmouth.io", "ops@fishmouth.io"],
        "slack": "#cost-alerts",
        "dashboard": True,
        "sms": "+1234567890",
    },
}
ROUTE = "/api/cost/alerts/configure"


@pytest.fixture
def served(store_url: str, clock: FrozenClock) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """The app on a real socket over a fresh store (every backend); the file allows the
    loopback receivers and keeps the log out of the way."""
    cfg = parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}},
            "budgets": [{"name": "daily", "limit": "10.00"}],
            "alerts": {"allow_private_destinations": True, "channels": {"log": False}},
        }
    )
    gate = Gate.open(store_url, config=cfg, clock=clock)
    try:
        admin = bearer(make_keys(gate).admin)
        with running(app_for(gate)) as base, httpx.Client(base_url=base, timeout=30) as http:
            yield http, admin
    finally:
        gate.close()


@pytest.fixture
def receivers() -> Iterator[dict[str, Any]]:
    """A real SMTP server and two HTTP receivers (Slack, the SMS gateway) on loopback."""
    slack, sms = Receiver(), Receiver()
    try:
        with smtp_server() as (box, smtp_url):
            yield {
                "inbox": box,
                "slack": slack,
                "sms": sms,
                "transports": {
                    "smtp_url": smtp_url,
                    "slack_webhook": slack.url,
                    "sms_url": sms.url,
                },
            }
    finally:
        slack.close()
        sms.close()


def posted(http: httpx.Client, admin: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return http.post(ROUTE, json=body, headers=admin)


def test_the_seeds_body_is_accepted_once_the_transports_are_set_and_answered_in_its_shapes(
    served: tuple[httpx.Client, dict[str, str]], receivers: dict[str, Any]
) -> None:
    http, admin = served
    before = http.get(ROUTE, headers=admin).json()

    # Recipients with no transport: refused, saying which key to set; nothing changes.
    refused = posted(http, admin, SEED_BODY)
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == "notification_channels.email"
    assert "set [alerts] smtp_url first" in error["message"]
    assert http.get(ROUTE, headers=admin).json() == before

    # The transports, set once by an admin; credentials never shown back, nor audited.
    secret = {"smtp_url": "mailtos://mailer:s3cret@smtp.example.com:587?from=a@example.com"}
    hidden = posted(http, admin, secret)
    assert hidden.status_code == 200, hidden.text
    assert hidden.json()["settings"]["smtp_url"] == "mailtos://***@smtp.example.com:587/***"
    set_up = posted(http, admin, receivers["transports"])
    assert set_up.status_code == 200, set_up.text
    settings = set_up.json()["settings"]
    assert settings["smtp_url"].startswith("mailto://127.0.0.1:")
    assert settings["slack_webhook"] == receivers["slack"].url.replace("/hook", "/***")
    assert settings["sms_url"] == receivers["sms"].url.replace("/hook", "/***")

    # The seed's body, word for word.
    answer = posted(http, admin, SEED_BODY)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["alert_thresholds"] == SEED_BODY["alert_thresholds"]
    assert shown["notification_channels"] == SEED_BODY["notification_channels"]
    assert http.get(ROUTE, headers=admin).json() == shown
    # spendgate's richer view beside the seed's.
    channels = shown["settings"]["channels"]
    assert channels["email"] == {
        "kind": "email",
        "severities": ["warning", "critical"],
        "to": SEED_EMAIL,
    }
    assert channels["sms"] == {"kind": "sms", "severities": ["critical"], "to": ["+1234567890"]}
    assert shown["settings"]["cost_per_request_above"] == "0.01"

    audit = http.get("/api/audit", headers=admin)
    assert audit.status_code == 200
    assert "s3cret" not in audit.text
    assert "#cost-alerts" in audit.text

    # A test notification through each: both addresses get the mail, Slack the seed's
    # channel, the SMS gateway the number and the text.
    for name in ("email", "slack", "sms", "dashboard"):
        sent = http.post("/api/alerts/test", json={"channel": name}, headers=admin).json()
        assert sent == {"channel": name, "delivered": True, "error": None}
    assert receivers["inbox"].recipients() == sorted(SEED_EMAIL)
    (slack,) = [json.loads(body) for _, body, _ in receivers["slack"].accepted]
    assert slack["channel"] == "#cost-alerts"
    assert "spendgate test notification" in json.dumps(slack["attachments"])
    (sms,) = [json.loads(body) for _, body, _ in receivers["sms"].accepted]
    assert sms["to"] == ["+1234567890"]
    assert "spendgate test notification" in sms["text"]


BAD: list[tuple[dict[str, Any], str, str]] = [
    (
        {"notification_channels": {"email": ["dev-team@fishmouth.io", "ops@"]}},
        "notification_channels.email[1]",
        "email address",
    ),
    ({"notification_channels": {"email": []}}, "notification_channels.email", "a list of 1"),
    (
        {"notification_channels": {"email": ["dev-team@fishmouth.io", 5]}},
        "notification_channels.email[1]",
        "email address",
    ),
    (
        {"notification_channels": {"slack": "cost alerts"}},
        "notification_channels.slack",
        "#cost-alerts",
    ),
    ({"notification_channels": {"sms": "call me"}}, "notification_channels.sms", "+15551234567"),
    (
        {"notification_channels": {"sms": ["+1234567890", "+1"]}},
        "notification_channels.sms[1]",
        "+15551234567",
    ),
    ({"notification_channels": {"pager": "+1234567890"}}, "notification_channels.pager", "kind"),
    (
        {"notification_channels": {"email": {"kind": "email", "url": "mailto://x.example.com"}}},
        "notification_channels.email.url",
        "smtp_url",
    ),
    ({"smtp_url": "https://smtp.example.com"}, "smtp_url", "mailto"),
    ({"smtp_url": "mailto://u:p@smtp.example.com?to=a@example.com"}, "smtp_url", "without to="),
    ({"slack_webhook": "slack://A/B/C"}, "slack_webhook", "http"),
    ({"smtp_url": False}, "notification_channels.email", "set [alerts] smtp_url first"),
    ({"sms_url": False}, "notification_channels.sms", "set [alerts] sms_url first"),
]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_each_bad_shape_is_a_422_naming_the_field_and_changes_nothing(
    served: tuple[httpx.Client, dict[str, str]], receivers: dict[str, Any]
) -> None:
    http, admin = served
    assert posted(http, admin, receivers["transports"]).status_code == 200
    assert posted(http, admin, SEED_BODY).status_code == 200
    before = http.get(ROUTE, headers=admin).json()
    for body, field, words in BAD:
        r = posted(http, admin, body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        error = r.json()["errors"][0]
        assert (error["field"], words in error["message"]) == (field, True), (body, error)
    assert http.get(ROUTE, headers=admin).json() == before
