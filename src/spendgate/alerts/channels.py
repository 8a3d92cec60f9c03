"""Where notifications go: apprise URLs (email over SMTP, Slack, Microsoft Teams, Discord,
Telegram, SMS services such as Twilio and the rest apprise supports), a Slack incoming
webhook with the seed's message, a generic JSON webhook signed with HMAC-SHA256, and the log.

The dashboard is not sent to: every server process's live feed reads alerts from the store,
so browsers on every process see them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from spendgate.config import AlertSettings, ChannelSettings
from spendgate.errors import SpendgateError, ValidationError

log = logging.getLogger("spendgate.alerts")
SIGNATURE_HEADER = "X-Spendgate-Signature"
KEY_HEADER = "Idempotency-Key"
TIMEOUT = 4.0
"""Seconds one step of a send may take (connecting, writing, reading): a send in flight when
the server stops ends well within its grace period, and a claim's sends fit its lease."""


class DeliveryError(SpendgateError):
    """A channel did not take a notification (it is tried again later)."""


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header's value: `sha256=<hex HMAC of the body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def validate(settings: AlertSettings) -> None:
    """Refuse, at configuration time, a channel whose URL apprise cannot use."""
    for channel in settings.channels:
        if channel.kind == "apprise":
            _apprise(channel)


def _apprise(channel: ChannelSettings) -> Any:
    import apprise

    sender = apprise.Apprise()
    if channel.url is None or not sender.add(channel.url):
        raise ValidationError(
            f"alerts.channels.{channel.name}.url",
            _redacted(channel.url),
            "a URL apprise supports, e.g. mailtos://user:pass@smtp.example.com?to=ops@example.com",
        )
    for service in sender:  # apprise waits up to 15 s for an SMTP server by default
        for name in ("socket_connect_timeout", "socket_read_timeout"):
            wait = getattr(service, name, None)
            if isinstance(wait, int | float):
                setattr(service, name, min(wait, TIMEOUT))
    return sender


def _redacted(url: str | None) -> str:
    """A URL with its credentials hidden (errors and logs never show secrets)."""
    if url is None or "@" not in url or "://" not in url:
        return str(url)
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def send(channel: ChannelSettings, payload: Mapping[str, Any]) -> None:
    """Deliver one notification; `DeliveryError` if the channel did not take it."""
    key = str(payload.get("key", ""))
    if channel.kind == "log":
        log.warning("alert %s: %s", key, payload.get("sms", ""))  # one line a notification
        return
    if channel.kind == "dashboard":
        return  # the live feeds read alerts from the store
    if channel.kind == "webhook":
        body = json.dumps(payload.get("data", {}), separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", KEY_HEADER: key}
        if channel.secret is not None:
            headers[SIGNATURE_HEADER] = signature(channel.secret, body)
        _post(channel, body, headers)
        return
    assert channel.url is not None
    if channel.url.startswith(("http://", "https://")) and "hooks.slack.com" in channel.url:
        body = json.dumps(payload.get("slack", {})).encode()
        _post(channel, body, {"Content-Type": "application/json", KEY_HEADER: key})
        return
    sender = _apprise(channel)
    sms = channel.name == "sms" or channel.severities == ("critical",)
    ok = sender.notify(
        title="" if sms else str(payload.get("subject", "")),
        body=str(payload.get("sms" if sms else "html", "")),
        body_format="text" if sms else "html",
    )
    if not ok:
        raise DeliveryError(f"channel {channel.name!r} ({_redacted(channel.url)}) refused it")


def _post(channel: ChannelSettings, body: bytes, headers: dict[str, str]) -> None:
    assert channel.url is not None
    try:
        response = httpx.post(channel.url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"channel {channel.name!r}: {type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise DeliveryError(f"channel {channel.name!r} answered {response.status_code}")
