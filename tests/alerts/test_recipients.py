"""The seed's `notification_channels`: `email` as a list of addresses, `slack` as a channel
name, `sms` as numbers, each sent through the transport `[alerts]` sets once (`smtp_url`,
`slack_webhook`, `sms_url`). Real parts: an SMTP server (aiosmtpd) and HTTP receivers on
loopback; a frozen clock."""

from __future__ import annotations

import contextlib
import email
import email.header
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.alerts import AlertEngine, Dispatcher, channels, notices
from spendgate.cli import app
from spendgate.config import load
from spendgate.errors import ValidationError
from spendgate.redaction import redact_alerts
from spendgate.settings import parse_alerts
from spendgate.testing import FrozenClock
from tests.alerts.test_alerts import Mailbox, Receiver, config
from tests.serving import free_port

SEED_EMAIL = ["dev-team@fishmouth.io", "ops@fishmouth.io"]
TWILIO = "twilio://AC1234567890abcdef1234567890abcdef:abcdef1234567890abcdef1234567890@+15551234567"


class Envelopes(Mailbox):
    """An SMTP server's inbox that also keeps whom each message was sent to."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_to: list[list[str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 - aiosmtpd calls it so
        self.sent_to.append(list(envelope.rcpt_tos))
        return await super().handle_DATA(server, session, envelope)

    def recipients(self) -> list[str]:
        return sorted(r for tos in self.sent_to for r in tos)

    def subjects(self) -> list[str]:
        return [
            str(email.header.make_header(email.header.decode_header(m["Subject"])))
            for m in self.messages
        ]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Envelopes, str]]:
    """A real SMTP server on loopback, and the `smtp_url` that sends through it."""
    box, port = Envelopes(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, f"mailto://127.0.0.1:{port}?from=spendgate@example.com&mode=insecure"
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Iterator[tuple[Envelopes, str]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def hooks() -> Iterator[tuple[Receiver, Receiver]]:
    """Two real HTTP receivers on loopback: the Slack webhook and the SMS gateway."""
    slack, sms = Receiver(), Receiver()
    yield slack, sms
    slack.close()
    sms.close()


def seed_config(transports: dict[str, str]) -> Any:
    """`test_alerts.config()` with the seed's channels and the dashboard, through
    `transports`."""
    seed = {"email": SEED_EMAIL, "slack": "#cost-alerts", "sms": "+1234567890"}
    return config({"dashboard": True, **seed}, **transports)


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body, _ in receiver.accepted]


# -- reading ----------------------------------------------------------------------------------


def test_the_seeds_channels_read_from_spendgate_toml(tmp_path: Path) -> None:
    path = tmp_path / "spendgate.toml"
    path.write_text(
        f"""
[alerts]
smtp_url = "mailtos://alerts:s3cret@smtp.example.com:587?from=alerts@example.com"
slack_webhook = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
sms_url = "{TWILIO}"

[alerts.channels]
email = ["dev-team@fishmouth.io", "ops@fishmouth.io"]
slack = "#cost-alerts"
dashboard = true
sms = "+1234567890"
oncall = {{ kind = "sms", to = ["+15557654321", "+15557654322"], severities = ["warning"] }}
"""
    )
    alerts = load(path).alerts
    channels.validate(alerts)  # apprise takes each transport with the recipients added
    mail, slack, sms, oncall = (alerts.channel(n) for n in ("email", "slack", "sms", "oncall"))
    assert (mail.kind, mail.to, mail.severities) == (
        "email",
        tuple(SEED_EMAIL),
        ("warning", "critical"),
    )
    assert mail.target() == (
        "mailtos://alerts:s3cret@smtp.example.com:587?from=alerts@example.com"
        "&to=dev-team@fishmouth.io,ops@fishmouth.io"
    )
    assert (slack.kind, slack.to, slack.url) == (
        "slack",
        ("#cost-alerts",),
        "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
    )
    # SMS is the seed's "Emergency only": critical alone, unless the channel says otherwise.
    assert (sms.kind, sms.severities) == ("sms", ("critical",))
    assert sms.target() == f"{TWILIO}?to=%2B1234567890"  # `+` kept whole in the query
    assert oncall.severities == ("warning",)
    assert oncall.to == ("+15557654321", "+15557654322")
    # Shown back without credentials: the transports redacted, the recipients as given.
    shown = json.dumps(alerts.to_spec())
    for secret in ("s3cret", "XXXXXXXX", "abcdef1234567890abcdef1234567890"):
        assert secret not in shown
    spec = alerts.to_spec()
    assert spec["smtp_url"] == "mailtos://***@smtp.example.com:587/***"
    assert spec["channels"]["email"] == {
        "kind": "email",
        "severities": ["warning", "critical"],
        "to": SEED_EMAIL,
    }
    # A channel shown is a table the file takes back.
    again = parse_alerts({"channels": {"email": spec["channels"]["email"]}}, alerts)
    assert again.channel("email") == mail


def test_a_url_is_still_an_apprise_channel_and_a_transport_change_reaches_every_channel() -> None:
    base = parse_alerts(
        {
            "smtp_url": "mailtos://u:p@smtp.example.com",
            "channels": {
                "email": SEED_EMAIL,
                "ops": "mailtos://u:p@mail.example.com?to=a@example.com",
            },
        }
    )
    assert base.channel("ops").kind == "apprise"
    moved = parse_alerts({"smtp_url": "mailtos://u:p@smtp2.example.com"}, base)
    assert moved.channel("email").url == "mailtos://u:p@smtp2.example.com"
    assert moved.channel("email").to == tuple(SEED_EMAIL)


@pytest.mark.parametrize(
    ("channels_", "field", "expected"),
    [
        (
            {"email": ["dev-team@fishmouth.io", "not an address"]},
            "alerts.channels.email[1]",
            "email address",
        ),
        ({"email": "ops@"}, "alerts.channels.email", "email address"),
        ({"email": []}, "alerts.channels.email", "a list of 1 to 50"),
        ({"email": ["a@example.com", 7]}, "alerts.channels.email[1]", "email address"),
        ({"email": {"to": ["a@example.com", "b"]}}, "alerts.channels.email.to[1]", "email address"),
        ({"slack": "cost alerts"}, "alerts.channels.slack", "#cost-alerts"),
        ({"slack": ["#a", "#b"]}, "alerts.channels.slack", "#cost-alerts"),
        ({"sms": "12"}, "alerts.channels.sms", "+15551234567"),
        ({"sms": ["+1234567890", "call me"]}, "alerts.channels.sms[1]", "+15551234567"),
        ({"pager": "+1234567890"}, "alerts.channels.pager", 'kind = "email"'),
        ({"pager": ["a@example.com"]}, "alerts.channels.pager", 'kind = "email"'),
        (
            {"email": {"kind": "email", "url": "mailto://u:p@x.example.com", "to": "a@x.io"}},
            "alerts.channels.email.url",
            "smtp_url",
        ),
        (
            {"hook": {"kind": "webhook", "url": "https://x.example.com/h", "to": ["a@x.io"]}},
            "alerts.channels.hook.to",
            "email, slack or sms",
        ),
        ({"email": {"kind": "fax", "to": "a@x.io"}}, "alerts.channels.email.kind", "email"),
    ],
)
def test_each_bad_recipient_is_refused_naming_it(
    channels_: dict[str, Any], field: str, expected: str
) -> None:
    transports = {
        "smtp_url": "mailtos://u:p@smtp.example.com",
        "slack_webhook": "https://hooks.slack.com/services/T/B/X",
        "sms_url": "https://sms.example.com/send",
    }
    with pytest.raises(ValidationError) as refused:
        parse_alerts({**transports, "channels": channels_})
    assert refused.value.field == field
    assert expected in refused.value.expected


@pytest.mark.parametrize(
    ("channels_", "key"),
    [
        ({"email": SEED_EMAIL}, "smtp_url"),
        ({"slack": "#cost-alerts"}, "slack_webhook"),
        ({"sms": "+1234567890"}, "sms_url"),
        ({"team": {"kind": "email", "to": ["a@example.com"]}}, "smtp_url"),
    ],
)
def test_recipients_without_their_transport_say_which_key_to_set(
    channels_: dict[str, Any], key: str
) -> None:
    name = next(iter(channels_))
    with pytest.raises(ValidationError) as refused:
        parse_alerts({"channels": channels_})
    assert refused.value.field == f"alerts.channels.{name}"
    assert f"set [alerts] {key} first" in refused.value.expected
    # Unsetting the transport later is refused the same way while a channel needs it.
    with_it = parse_alerts(
        {
            "smtp_url": "mailto://smtp.example.com",
            "slack_webhook": "https://x.example.com/h",
            "sms_url": TWILIO,
            "channels": channels_,
        }
    )
    with pytest.raises(ValidationError, match=f"set \\[alerts\\] {key} first"):
        parse_alerts({key: False}, with_it)


@pytest.mark.parametrize(
    ("key", "url", "expected"),
    [
        ("smtp_url", "https://smtp.example.com", "mailto or mailtos"),
        ("smtp_url", "smtp.example.com", "a URL"),
        ("smtp_url", "mailtos://u:pw@smtp.example.com?to=a@example.com", "without to="),
        ("slack_webhook", "slack://TokenA/TokenB/TokenC", "http or https"),
        ("slack_webhook", 42, "a URL"),
        ("sms_url", f"{TWILIO}?to=+15550000000", "without to="),
        ("sms_url", "http://10.0.0.7/sms", "allow_private_destinations"),
        ("smtp_url", "mailto://u:pw@localhost", "allow_private_destinations"),
    ],
)
def test_a_bad_transport_is_refused_naming_its_key(key: str, url: object, expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_alerts({key: url})
    assert refused.value.field == f"alerts.{key}"
    assert expected in refused.value.expected
    assert "pw@" not in str(refused.value)  # credentials never shown back


def test_an_smtp_url_apprise_cannot_use_is_refused_before_any_channel_uses_it() -> None:
    settings = parse_alerts({"smtp_url": "mailtos://u:pw@smtp.example.com?mode=bogus"})
    with pytest.raises(ValidationError) as refused:
        channels.validate(settings)
    assert refused.value.field == "alerts.smtp_url"
    assert refused.value.value == "mailtos://***@smtp.example.com/***"


def test_the_audit_log_shows_transports_redacted_and_recipients_as_given() -> None:
    shown = redact_alerts(
        {
            "smtp_url": "mailtos://alerts:s3cret@smtp.example.com",
            "slack_webhook": "https://hooks.slack.com/services/T/B/SECRET",
            "sms_url": TWILIO,
            "channels": {"email": SEED_EMAIL, "slack": "#cost-alerts", "sms": "+1234567890"},
        }
    )
    assert shown == {
        "smtp_url": "mailtos://***@smtp.example.com",
        "slack_webhook": "https://hooks.slack.com/***",
        "sms_url": "twilio://***",
        "channels": {"email": SEED_EMAIL, "slack": "#cost-alerts", "sms": "+1234567890"},
    }


# -- delivery ---------------------------------------------------------------------------------


def test_the_seeds_channels_deliver_by_severity_to_real_receivers(
    tmp_path: Path,
    clock: FrozenClock,
    inbox: tuple[Envelopes, str],
    hooks: tuple[Receiver, Receiver],
) -> None:
    box, smtp_url = inbox
    slack, sms = hooks
    cfg = seed_config({"smtp_url": smtp_url, "slack_webhook": slack.url, "sms_url": sms.url})
    gate = Gate.open(f"sqlite:///{tmp_path / 'alerts.db'}", config=cfg, clock=clock)
    try:
        gate.record("scraper", "paid_api", cost="8.25")  # 82.5%: a warning
        AlertEngine(gate).evaluate()
        Dispatcher(gate).run_once()
        # Email to both addresses, Slack to the seed's channel; no SMS for a warning.
        assert box.recipients() == sorted(SEED_EMAIL)
        assert all("82.5%" in subject for subject in box.subjects())
        (message,) = bodies(slack)
        assert message["channel"] == "#cost-alerts"
        assert message["attachments"]  # the seed's Slack message
        assert sms.accepted == []

        gate.record("scraper", "paid_api", cost="2.00")  # 102.5%: critical, SMS too
        AlertEngine(gate).evaluate()
        Dispatcher(gate).run_once()
        assert len(box.messages) == 4
        assert [m["channel"] for m in bodies(slack)] == ["#cost-alerts", "#cost-alerts"]
        (text,) = bodies(sms)
        assert text["to"] == ["+1234567890"]
        assert "critical" in text["text"].lower()
        key, _, _ = sms.accepted[0]
        assert text["key"] == key  # the Idempotency-Key header, in the body as well

        Dispatcher(gate).run_once()  # nothing new: each arrives once
        assert (len(box.messages), len(slack.accepted), len(sms.accepted)) == (4, 2, 1)
    finally:
        gate.close()


def test_spendgate_alerts_test_sends_to_every_address_of_the_seeds_email_list(
    tmp_path: Path, inbox: tuple[Envelopes, str], hooks: tuple[Receiver, Receiver]
) -> None:
    box, smtp_url = inbox
    _, sms = hooks
    path = tmp_path / "spendgate.toml"
    path.write_text(
        f"""
[alerts]
allow_private_destinations = true
smtp_url = "{smtp_url}"
sms_url = "{sms.url}"

[alerts.channels]
email = ["dev-team@fishmouth.io", "ops@fishmouth.io"]
sms = ["+15551234567", "+15557654321"]
"""
    )
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    for channel in ("email", "sms"):
        result = CliRunner().invoke(
            app, ["alerts", "test", channel, "--db", db, "--config", str(path)]
        )
        assert result.exit_code == 0, result.output
        assert f"delivered to {channel}" in result.output
    assert box.recipients() == sorted(SEED_EMAIL)
    assert all("test notification" in subject for subject in box.subjects())
    (text,) = bodies(sms)
    assert text["to"] == ["+15551234567", "+15557654321"]


def test_a_test_send_through_each_seed_channel(
    inbox: tuple[Envelopes, str], hooks: tuple[Receiver, Receiver]
) -> None:
    box, smtp_url = inbox
    slack, sms = hooks
    settings = seed_config(
        {"smtp_url": smtp_url, "slack_webhook": slack.url, "sms_url": sms.url}
    ).alerts
    for name in ("email", "slack", "sms"):
        channel = settings.channel(name)
        channels.send(channel, notices.test_message(channel, settings, 0, "USD"))
    assert box.recipients() == sorted(SEED_EMAIL)
    assert bodies(slack)[0]["channel"] == "#cost-alerts"
    assert bodies(sms)[0]["to"] == ["+1234567890"]
