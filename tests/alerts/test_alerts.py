"""Alerts: rules, state, outbox and channels, against a real SMTP server (aiosmtpd) and a
real HTTP receiver on loopback. Time is a frozen clock; nothing sleeps for time to pass."""

from __future__ import annotations

import email
import email.header
import hashlib
import hmac
import json
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from spendgate import Gate
from spendgate.alerts import AlertEngine, Dispatcher, channels
from spendgate.alerts.dispatcher import Round
from spendgate.alerts.notices import due
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.money import to_nanos
from spendgate.rollups import Tally
from spendgate.server import create_app
from spendgate.settings import parse_alerts
from spendgate.store import open_store
from spendgate.testing import FrozenClock
from tests.serving import bearer, free_port, make_keys

SECRET = "a-shared-secret-of-some-length"


class Receiver:
    """A local HTTP endpoint: answers `status`, records what it accepted."""

    def __init__(self) -> None:
        self.status = 200
        self.accepted: list[tuple[str, bytes, str | None]] = []
        self.refused = 0
        self.block_after: int | None = None
        self.blocked = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if (
                    receiver.block_after is not None
                    and len(receiver.accepted) >= receiver.block_after
                ):
                    receiver.blocked.set()
                    receiver.release.wait(30)  # held in flight until the test says
                    return
                if receiver.status >= 300:
                    receiver.refused += 1
                else:
                    receiver.accepted.append(
                        (
                            self.headers["Idempotency-Key"],
                            body,
                            self.headers.get("X-Spendgate-Signature"),
                        )
                    )
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self) -> Counter[str]:
        return Counter(k for k, _, _ in self.accepted)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 - aiosmtpd calls it so
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def config(channels_: dict[str, Any], **alerts: Any) -> Any:
    """One paid and one free source, a $10 daily budget; only the rules a test turns on
    beyond the budget lines (the forecast and offline rules would add their own alerts)."""
    alerts = {
        "forecast_fraction": False,
        "service_offline_after": False,
        "allow_private_destinations": True,  # the receivers here listen on 127.0.0.1
        **alerts,
    }
    return parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}, "free_api": {"price": "free"}},
            "budgets": [{"name": "daily", "limit": "10.00"}],
            "alerts": {
                "channels": {"log": False, **channels_},
                "dashboard_url": "http://dash.example/",
                **alerts,
            },
        }
    )


def webhook(url: str) -> dict[str, Any]:
    return {
        "hook": {
            "kind": "webhook",
            "url": url,
            "secret": SECRET,
            "severities": ["info", "warning", "critical"],
        }
    }


def gate_on(tmp_path: Path, cfg: Any, clock: FrozenClock, name: str = "alerts.db") -> Gate:
    return Gate.open(f"sqlite:///{tmp_path / name}", config=cfg, clock=clock)


def run(gate: Gate) -> None:
    AlertEngine(gate).evaluate()
    Dispatcher(gate).run_once()


# -- channels ---------------------------------------------------------------------------------


def test_the_seeds_email_reaches_a_real_smtp_server_at_80_percent(
    tmp_path: Path, clock: FrozenClock, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    url = f"mailto://127.0.0.1:{port}?from=spendgate@example.com&to=dev-team@example.com&mode=insecure"
    gate = gate_on(tmp_path, config({"email": url}), clock)
    try:
        gate.record("scraper", "paid_api", cost="8.25")  # 82.5% of $10
        run(gate)
        assert len(box.messages) == 1
        mail = box.messages[0]
        subject = str(email.header.make_header(email.header.decode_header(mail["Subject"])))
        assert "82.5%" in subject
        html = (
            next(p for p in mail.walk() if p.get_content_type() == "text/html")
            .get_payload(decode=True)
            .decode()
        )
        for figure in (
            "$10.00",
            "$8.25",
            "$1.75",
            "82.5%",
            "Recommended Actions",
            "http://dash.example/",
        ):
            assert figure in html, figure
        run(gate)  # nothing new: it arrives once
        assert len(box.messages) == 1
    finally:
        gate.close()


def test_the_webhook_is_signed(tmp_path: Path, clock: FrozenClock, receiver: Receiver) -> None:
    gate = gate_on(tmp_path, config(webhook(receiver.url)), clock)
    try:
        gate.record("scraper", "paid_api", cost="10.00")  # crosses 0.8 and 1.0 at once
        run(gate)
        assert len(receiver.accepted) == 2
        for key, body, sig in receiver.accepted:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert sig == expected
            data = json.loads(body)
            assert data["key"] == key
            assert data["rule"] == "budget"
        severities = sorted(json.loads(b)["severity"] for _, b, _ in receiver.accepted)
        assert severities == ["critical", "warning"]
    finally:
        gate.close()


def test_a_budget_alerts_amounts_are_decimal_text_with_the_currency_on_every_face(
    store_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    """$0.081 spent of a $0.10 budget crosses its 80% line ($0.08): Python, the REST API,
    the WebSocket's first state and the webhook all say "0.081" and "0.08", in USD, never
    nano-units."""
    cfg = config(webhook(receiver.url))
    cfg = replace(cfg, budgets=(replace(cfg.budgets[0], limit=to_nanos("0.10")),))
    gate = Gate.open(store_url, config=cfg, clock=clock)
    try:
        gate.record("scraper", "paid_api", cost="0.081")
        (status,) = gate.status()
        assert (status.spent, status.reserved, status.remaining, status.limit) == (
            Decimal("0.081"),
            Decimal(0),
            Decimal("0.019"),
            Decimal("0.1"),
        )
        assert status.currency == "USD"
        (stored,) = gate.store.alerts()
        assert (stored.value, stored.threshold) == ("0.081", "0.08")

        run(gate)
        (sent,) = [json.loads(body) for _, body, _ in receiver.accepted]
        assert (sent["value"], sent["threshold"], sent["limit"]) == ("0.081", "0.08", "0.1")
        assert (sent["unit"], sent["currency"]) == ("USD", "USD")
        assert "81.0%" in sent["title"]

        keys = make_keys(gate)
        client = TestClient(create_app(gate))  # no lifespan: only the test dispatches
        (shown,) = client.get("/api/alerts", headers=bearer(keys.read)).json()
        assert (shown["value"], shown["threshold"]) == ("0.081", "0.08")
        assert (shown["unit"], shown["currency"]) == ("USD", "USD")
        (budget,) = client.get("/api/budgets/status", headers=bearer(keys.read)).json()
        assert (budget["spent"], budget["remaining"], budget["limit"]) == ("0.081", "0.019", "0.1")
        assert budget["currency"] == "USD"
        with client.websocket_connect(f"/ws/cost-monitoring?token={keys.read}") as ws:
            first = ws.receive_json()
        assert first["type"] == "cost_state"
        state = first["data"]
        assert state["currency"] == "USD"
        (live_alert,) = state["alerts"]
        assert (live_alert["value"], live_alert["currency"]) == ("0.081", "USD")
        assert state["budgets"][0]["spent"] == "0.081"
    finally:
        gate.close()


def test_every_rules_value_says_its_unit(clock: FrozenClock) -> None:
    """Amounts in the currency; rates as fractions, outages in seconds, counts as counts:
    and never in exponent form, however large a quota."""
    from spendgate.alerts.notices import unit_of
    from spendgate.alerts.rules import Snapshot, findings
    from spendgate.pricing import RateLimit

    assert [unit_of(r, "EUR") for r in ("budget", "forecast", "cost_spike", "anomaly")] == [
        "EUR"
    ] * 4
    assert unit_of("free_source_rate") == "fraction"
    assert unit_of("store_unreachable") == unit_of("service_offline") == "seconds"
    assert unit_of("test") is None
    settings = parse_alerts({"rate_limit_fraction": 0.8})
    quota = RateLimit(20_000_000, timedelta(days=1))
    snap = Snapshot(clock(), 0, Tally(), source_requests={"maps": (17_000_000, quota)})
    (found,) = [f for f in findings(snap, settings) if f.rule == "rate_limit"]
    assert (found.value, found.threshold) == ("17000000", "16000000")


def test_bad_channels_and_rules_are_refused_at_configuration_time() -> None:
    for spec, field in (
        ({"channels": {"email": "notascheme://x"}}, "alerts.channels.email.url"),
        (
            {"channels": {"hook": {"kind": "webhook", "url": "ftp://x/y"}}},
            "alerts.channels.hook.url",
        ),
        ({"budget_fractions": [0]}, "alerts.budget_fractions[0]"),
        ({"budget_fractions": [11]}, "alerts.budget_fractions[0]"),
        ({"no_such_rule": 1}, "alerts.no_such_rule"),
        ({"free_source_rate_below": 1.5}, "alerts.free_source_rate_below"),
    ):
        with pytest.raises(ValidationError) as refused:
            channels.validate(parse_alerts(spec))
        assert refused.value.field == field


# -- delivery that survives outages and restarts ------------------------------------------------


def test_a_receiver_down_for_five_minutes_gets_everything_once_after(
    tmp_path: Path, clock: FrozenClock, receiver: Receiver
) -> None:
    gate = gate_on(tmp_path, config(webhook(receiver.url)), clock)
    try:
        receiver.status = 503
        for i in range(3):  # three budgets' worth of alerts: 0.8 then 1.0, then a new day
            gate.record("scraper", "paid_api", cost="4.50", request_id=f"r{i}")
            AlertEngine(gate).evaluate()
        start = clock()
        while clock() - start < timedelta(minutes=5):
            Dispatcher(gate).run_once()
            clock.advance(timedelta(seconds=10))
        assert receiver.refused > 0
        assert receiver.accepted == []
        receiver.status = 200
        clock.advance(timedelta(minutes=5))  # the longest backoff
        for _ in range(3):
            Dispatcher(gate).run_once()
        expected = {n.key for n in gate.store.notifications(limit=1000) if n.channel == "hook"}
        assert len(expected) == 2
        assert receiver.keys() == Counter(dict.fromkeys(expected, 1))
        assert all(n.delivered_at for n in gate.store.notifications(limit=1000))
    finally:
        gate.close()


def _dispatch_forever(url: str, start_iso: str, name: str) -> None:
    from datetime import datetime

    clock = FrozenClock(datetime.fromisoformat(start_iso))
    gate = Gate.open(url, config=config(webhook(os.environ["RECEIVER"])), clock=clock)
    dispatcher = Dispatcher(gate, worker=name)
    while True:
        if dispatcher.run_once().delivered == 0:
            clock.advance(timedelta(seconds=1))


@pytest.mark.slow
def test_a_dispatcher_killed_mid_round_loses_nothing_and_sends_each_key_once(
    tmp_path: Path, clock: FrozenClock, receiver: Receiver
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    cfg = config(
        webhook(receiver.url), budget_fractions=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    )
    gate = Gate.open(url, config=cfg, clock=clock)
    gate.record("scraper", "paid_api", cost="10.00")
    AlertEngine(gate).evaluate()
    expected = {n.key for n in gate.store.notifications(limit=1000) if n.channel == "hook"}
    assert len(expected) == 10
    os.environ["RECEIVER"] = receiver.url
    receiver.block_after = 4
    ctx = multiprocessing.get_context("fork")
    first = ctx.Process(target=_dispatch_forever, args=(url, clock().isoformat(), "first"))
    first.start()
    assert receiver.blocked.wait(30)  # the fifth request is in flight
    os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
    first.join()
    receiver.block_after = None
    receiver.release.set()
    later = (clock() + timedelta(minutes=2)).isoformat()  # past the dead one's claims
    second = ctx.Process(target=_dispatch_forever, args=(url, later, "second"))
    second.start()
    try:
        deadline = threading.Event()
        for _ in range(300):
            if set(receiver.keys()) == expected:
                break
            deadline.wait(0.1)  # waiting for another process's work, not for time to pass
    finally:
        second.kill()
        second.join()
        gate.close()
    assert receiver.keys() == Counter(dict.fromkeys(expected, 1))


# -- dead letters: a deleted channel's notifications end, visibly -------------------------------


def test_a_deleted_channels_notifications_end_once_as_dead_letters_shown_in_the_api(
    store_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    channels_ = {**webhook(receiver.url), "pager": {**webhook(receiver.url)["hook"]}}
    gate = Gate.open(store_url, config=config(channels_), clock=clock)
    try:
        admin = bearer(make_keys(gate).admin)
        client = TestClient(create_app(gate))  # no lifespan: only the test dispatches
        gate.record("scraper", "paid_api", cost="8.50")  # past 80% of $10
        AlertEngine(gate).evaluate()
        (alert,) = gate.store.alerts()
        receiver.status = 503
        # The dashboard channel takes it; both webhooks refuse: pending, to be retried.
        assert Dispatcher(gate).run_once() == Round(delivered=1, failed=2)
        configure = {"notification_channels": {"pager": False}}
        r = client.post("/api/cost/alerts/configure", json=configure, headers=admin)
        assert r.status_code == 200, r.text
        assert "pager" not in r.json()["settings"]["channels"]

        receiver.status = 200
        clock.advance(timedelta(minutes=5))  # past the retry
        assert Dispatcher(gate).run_once() == Round(delivered=1, dead=1)
        for _ in range(3):  # never tried again, however long
            clock.advance(timedelta(days=1))
            assert Dispatcher(gate).run_once() == Round()
        assert set(receiver.keys()) == {f"{alert.alert_id}/1/hook"}

        why = "channel 'pager' was deleted: not delivered, not tried again"
        r = client.get(f"/api/alerts/{alert.alert_id}/notifications", headers=admin)
        assert r.status_code == 200, r.text
        rows = {n["channel"]: n for n in r.json()}
        assert rows["hook"]["state"] == "delivered"
        dead = rows["pager"]
        assert (dead["state"], dead["attempts"], dead["delivered_at"]) == ("dead", 2, None)
        assert dead["last_error"] == why
        assert dead["dead_at"] == (clock() - timedelta(days=3)).isoformat()
        r = client.get("/api/notifications", params={"state": "dead"}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json() == [dead]
        pending = client.get("/api/notifications?state=pending", headers=admin)
        assert pending.json() == []
        bad = client.get("/api/notifications?state=lost", headers=admin)
        assert bad.status_code == 422, bad.text

        # The channel back under its old name: a dead letter stays dead.
        configure = {"notification_channels": {"pager": webhook(receiver.url)["hook"]}}
        r = client.post("/api/cost/alerts/configure", json=configure, headers=admin)
        assert r.status_code == 200, r.text
        assert Dispatcher(gate).run_once() == Round()
        assert [n.state for n in gate.store.notifications(state="dead")] == ["dead"]
    finally:
        gate.close()


def test_a_channel_added_over_another_servers_api_a_moment_ago_is_not_taken_for_deleted(
    tmp_path: Path, clock: FrozenClock, receiver: Receiver
) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    here = Gate.open(url, config=config(webhook(receiver.url)), clock=clock)
    # Another server on the same store, which has not looked for changes since it started.
    there = Gate(open_store(url), here.base_config, clock=clock, refresh_every=3600)
    try:
        admin = bearer(make_keys(here).admin)
        configure = {"notification_channels": {"pager": webhook(receiver.url)["hook"]}}
        r = TestClient(create_app(here)).post(
            "/api/cost/alerts/configure", json=configure, headers=admin
        )
        assert r.status_code == 200, r.text
        here.record("scraper", "paid_api", cost="8.50")
        AlertEngine(here).evaluate()  # this one knows the new channel: it enqueues for it
        assert there.config.alerts.find("pager") is None  # not looked for changes yet
        assert Dispatcher(there).run_once() == Round(delivered=3)  # and the dashboard
        assert {key.rsplit("/", 1)[1] for key, _, _ in receiver.accepted} == {"hook", "pager"}
    finally:
        there.close()
        here.close()


# -- no spam ----------------------------------------------------------------------------------


def test_ten_thousand_events_hovering_at_a_threshold_fire_once_and_resolve_once(
    tmp_path: Path, clock: FrozenClock, receiver: Receiver
) -> None:
    # Only the budget lines: this traffic is also (rightly) a cost spike and all paid.
    cfg = config(webhook(receiver.url), cost_per_request_above=False, free_source_rate_below=False)
    gate = gate_on(tmp_path, cfg, clock)
    try:
        gate.record("scraper", "paid_api", cost="7.99")
        for i in range(10_000):
            # Each hold takes usage over 80%, each release back under: the line flaps.
            decision = gate.reserve("scraper", "paid_api", "0.02")
            if i % 2:
                gate.release(decision.reservation_id)  # type: ignore[arg-type]
            else:
                gate.commit(decision.reservation_id, "0")  # type: ignore[arg-type]
            if i % 1000 == 0:
                run(gate)
        run(gate)
        alerts = gate.store.alerts(limit=100)
        assert [(a.rule, a.detail.get("fraction"), a.state) for a in alerts] == [
            ("budget", "0.8", "firing")
        ]
        clock.advance(timedelta(days=1))  # the window ends: resolved, once
        run(gate)
        run(gate)
        kinds = Counter(json.loads(b)["kind"] for _, b, _ in receiver.accepted)
        assert kinds == Counter({"firing": 1, "resolved": 1})
    finally:
        gate.close()


def test_a_rate_flapping_inside_the_band_does_not_re_fire(
    tmp_path: Path, clock: FrozenClock
) -> None:
    gate = gate_on(tmp_path, config({}, free_source_rate_below=0.85, min_requests=10), clock)
    try:
        engine = AlertEngine(gate)
        fired = []
        for minute in range(120):
            free = 8 if minute % 2 else 9  # 80% / 90%, then inside the band
            for i in range(10):
                source = "free_api" if i < free else "paid_api"
                gate.record("scraper", source, success=True)
            fired += engine.evaluate().fired
            clock.advance(timedelta(minutes=1))
        assert len([f for f in fired if f.startswith("free_source_rate")]) == 1
    finally:
        gate.close()


def test_repeats_stop_when_acknowledged_and_silence_holds(
    tmp_path: Path, clock: FrozenClock
) -> None:
    gate = gate_on(tmp_path, config({}), clock)
    try:
        gate.record("scraper", "paid_api", cost="9.00")
        AlertEngine(gate).evaluate()
        (alert,) = gate.store.alerts()
        assert alert.rounds == 1
        repeat = gate.config.alerts.repeat_every
        now = alert.fired_at + int(repeat.total_seconds() * 1_000_000) - 1
        assert due(alert, now, repeat) is None  # not until repeat_every has passed
        clock.advance(repeat)
        AlertEngine(gate).evaluate()
        assert gate.store.alert(alert.alert_id).rounds == 2  # type: ignore[union-attr]
        gate.store.acknowledge(alert.alert_id, actor="ops", at=0)
        clock.advance(repeat)  # still the same day: no repeat once acknowledged
        AlertEngine(gate).evaluate()
        assert gate.store.alert(alert.alert_id).rounds == 2  # type: ignore[union-attr]
    finally:
        gate.close()


def test_a_service_that_goes_quiet_is_reported_and_its_heartbeat_resolves_it(
    tmp_path: Path, clock: FrozenClock
) -> None:
    gate = gate_on(tmp_path, config({}, service_offline_after="15m"), clock)
    try:
        gate.record("scraper", "free_api")
        engine = AlertEngine(gate)
        assert engine.evaluate().fired == ()
        clock.advance(timedelta(minutes=16))
        fired = engine.evaluate().fired
        assert [f.split(":")[:2] for f in fired] == [["service_offline", "scraper"]]
        from spendgate.windows import to_micros

        gate.store.heartbeat("scraper", to_micros(clock()))
        assert len(engine.evaluate().resolved) == 1
    finally:
        gate.close()


def _dispatch_until_empty(url: str, start_iso: str, name: str, hook: str) -> None:
    from datetime import datetime

    clock = FrozenClock(datetime.fromisoformat(start_iso))
    hooks = {
        f"hook{i}": {"kind": "webhook", "url": hook, "severities": ["warning", "critical"]}
        for i in range(3)
    }
    gate = Gate.open(url, config=config(hooks), clock=clock)
    dispatcher = Dispatcher(gate, worker=name)
    idle = 0
    while idle < 3:  # a few empty rounds in a row: the other took the rest
        idle = idle + 1 if dispatcher.run_once().delivered == 0 else 0
    gate.close()


@pytest.mark.slow
def test_two_dispatchers_on_one_postgresql_outbox_send_each_notification_once(
    postgres_url: str, clock: FrozenClock, receiver: Receiver
) -> None:
    hooks = {
        f"hook{i}": {"kind": "webhook", "url": receiver.url, "severities": ["warning", "critical"]}
        for i in range(3)
    }
    fractions = [round(0.05 * i, 2) for i in range(1, 21)]
    gate = Gate.open(postgres_url, config=config(hooks, budget_fractions=fractions), clock=clock)
    try:
        gate.record("scraper", "paid_api", cost="10.00")
        AlertEngine(gate).evaluate()
        found = gate.store.notifications(limit=1000)
        expected = {n.key for n in found if n.channel.startswith("hook")}
    finally:
        gate.close()
    assert len(expected) == 60
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(
            target=_dispatch_until_empty,
            args=(postgres_url, clock().isoformat(), f"d{i}", receiver.url),
        )
        for i in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert receiver.keys() == Counter(dict.fromkeys(expected, 1))


def test_a_store_that_stopped_answering_is_reported_once_it_answers(
    tmp_path: Path, clock: FrozenClock
) -> None:
    from spendgate.errors import StoreError

    down = Gate.open("memory://", config=config({}), clock=clock)
    engine = AlertEngine(down)
    down.store.close()  # the store stops answering
    with pytest.raises(StoreError):
        engine.evaluate()
    assert engine.unreachable is not None
    up = gate_on(tmp_path, config({}), clock)
    try:
        engine.gate = up  # the same evaluator, its store answering again
        clock.advance(timedelta(minutes=3))
        fired = engine.evaluate().fired
        assert [f.split(":")[0] for f in fired] == ["store_unreachable"]
        (alert,) = up.store.alerts()
        assert alert.severity == "critical"
        assert alert.value == "180s"
        assert alert.rounds == 1  # notified
        assert engine.evaluate().resolved == (alert.alert_id,)
    finally:
        up.close()
        down.close()
