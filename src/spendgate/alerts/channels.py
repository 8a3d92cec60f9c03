"""Where notifications go: apprise URLs (email over SMTP, Slack, Microsoft Teams, Discord,
Telegram, SMS services such as Twilio and the rest apprise supports), a Slack incoming
webhook with the seed's message, a generic JSON webhook signed with HMAC-SHA256, and the log;
and the seed's recipients through the transports `[alerts]` sets once: email addresses
through `smtp_url`, a Slack channel (the message's `channel`) through `slack_webhook`, SMS
numbers through `sms_url` (an apprise service, or a JSON gateway that gets `{to, text, key}`).

The dashboard is not sent to: every server process's live feed reads alerts from the store,
so browsers on every process see them.

No destination on loopback, link-local or private addresses is sent to unless the channel
allows it (`[alerts] allow_private_destinations`): the host is resolved at send time and
every address it resolves to is checked; a webhook then connects to the checked address
itself, so a name that resolves again elsewhere cannot redirect it. A failure tells the
caller only that the notification was not delivered (never what answered, which would make
a test send a port scanner); the log has the reason, with URLs redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from spendgate.alert_settings import TRANSPORTS, AlertSettings, ChannelSettings, gateway
from spendgate.destinations import channel_hosts, private_address
from spendgate.errors import SpendgateError, ValidationError
from spendgate.redaction import redact, redact_url

log = logging.getLogger("spendgate.alerts")
SIGNATURE_HEADER = "X-Spendgate-Signature"
KEY_HEADER = "Idempotency-Key"
TIMEOUT = 4.0
"""Seconds one step of a send may take (connecting, writing, reading): a send in flight when
the server stops ends well within its grace period, and a claim's sends fit its lease."""


NOT_DELIVERED = "delivery failed (not delivered)"
"""All that a caller is told of a failed send, whatever the reason."""


class DeliveryError(SpendgateError):
    """A channel did not take a notification (it is tried again later).

    Its text says only that (`NOT_DELIVERED`); `detail` says why, URLs redacted, for the
    server's log.
    """

    def __init__(self, channel: str, detail: str) -> None:
        self.channel = channel
        self.detail = redact(detail)
        super().__init__(f"channel {channel!r}: {NOT_DELIVERED}")


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header's value: `sha256=<hex HMAC of the body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


_PROBES = {"email": "alerts@example.com", "sms": "+15555550100"}
"""A recipient to check a transport with before any channel names its own."""


def validate(settings: AlertSettings) -> None:
    """Refuse, at configuration time, a channel or transport whose URL apprise cannot use."""
    for kind, recipient in _PROBES.items():
        url = getattr(settings, TRANSPORTS[kind])
        if url is not None and not (kind == "sms" and gateway(url)):
            _apprise(ChannelSettings(kind, kind, url, to=(recipient,)))  # type: ignore[arg-type]
    for channel in settings.channels:
        if channel.kind in ("apprise", "email") or (
            channel.kind == "sms" and not gateway(channel.url)
        ):
            _apprise(channel)


def _apprise(channel: ChannelSettings) -> Any:
    import apprise

    sender = apprise.Apprise()
    url = channel.target()
    if url is None or not sender.add(url):
        transport = TRANSPORTS.get(channel.kind)
        shown = channel.url if transport else url
        raise ValidationError(
            f"alerts.{transport}" if transport else f"alerts.channels.{channel.name}.url",
            None if shown is None else redact_url(shown),
            "a URL apprise supports, e.g. mailtos://user:pass@smtp.example.com?to=ops@example.com"
            if transport is None
            else "a URL apprise supports with recipients added as to=, e.g. "
            + (
                "mailtos://user:pass@smtp.example.com"
                if channel.kind == "email"
                else "twilio://SID:TOKEN@+15551234567"
            ),
        )
    for service in sender:  # apprise waits up to 15 s for an SMTP server by default
        for name in ("socket_connect_timeout", "socket_read_timeout"):
            wait = getattr(service, name, None)
            if isinstance(wait, int | float):
                setattr(service, name, min(wait, TIMEOUT))
    return sender


def addresses(host: str, port: int) -> list[str]:
    """The IP addresses `host` resolves to (empty if it resolves to none)."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def checked(channel: ChannelSettings, host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, if the channel may send to all of them;
    `DeliveryError` if it resolves to none, or to a private one that is not allowed."""
    found = addresses(host, port)
    if not found:
        raise DeliveryError(channel.name, f"{host!r} does not resolve")
    refused = [a for a in found if private_address(a)]
    if refused and not channel.allow_private:
        raise DeliveryError(
            channel.name,
            f"{host!r} resolves to {', '.join(refused)}: a private address "
            "(allowed only by [alerts] allow_private_destinations = true)",
        )
    return found


def _apprise_hosts(channel: ChannelSettings, sender: Any) -> list[tuple[str, int]]:
    """Where apprise will connect for the channel: an email's SMTP server, a self-hosted
    service's host; nothing to check for hosted services (Slack, Telegram...), which go to
    their provider's public hosts."""
    if channel.url is None or not channel_hosts(channel.url):
        return []
    out = []
    for service in sender:
        host = getattr(service, "smtp_host", None) or getattr(service, "host", None)
        port = getattr(service, "port", None)
        out.append((str(host or ""), port if isinstance(port, int) else 0))
    return out


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
    if channel.url is None:
        raise DeliveryError(channel.name, "no URL to send to")
    json_headers = {"Content-Type": "application/json", KEY_HEADER: key}
    if channel.kind == "slack" or (
        channel.url.startswith(("http://", "https://")) and "hooks.slack.com" in channel.url
    ):
        message = dict(payload.get("slack", {}))
        if channel.kind == "slack":
            message["channel"] = channel.to[0]  # the seed's `#cost-alerts`
        _post(channel, json.dumps(message).encode(), json_headers)
        return
    if channel.kind == "sms" and gateway(channel.url):
        text = {"to": list(channel.to), "text": str(payload.get("sms", "")), "key": key}
        _post(channel, json.dumps(text).encode(), json_headers)
        return
    sender = _apprise(channel)
    for host, port in _apprise_hosts(channel, sender):
        checked(channel, host, port)
    sms = channel.kind == "sms" or channel.name == "sms" or channel.severities == ("critical",)
    ok = sender.notify(
        title="" if sms else str(payload.get("subject", "")),
        body=str(payload.get("sms" if sms else "html", "")),
        body_format="text" if sms else "html",
    )
    if not ok:
        raise DeliveryError(channel.name, f"apprise ({redact_url(channel.url)}) did not send it")


def _post(channel: ChannelSettings, body: bytes, headers: dict[str, str]) -> None:
    """POST to the channel's URL, connecting to an address that was checked (the URL's
    host resolved once, here; the `Host` header and TLS name stay the URL's)."""
    assert channel.url is not None
    parts = urlsplit(channel.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = checked(channel, host, port)[0]
    literal = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{literal}:{port}" if userinfo else f"{literal}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    headers = {**headers, "Host": parts.netloc.rpartition("@")[2]}
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            request = client.build_request(
                "POST", pinned, content=body, headers=headers, extensions={"sni_hostname": host}
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        raise DeliveryError(channel.name, f"{type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise DeliveryError(channel.name, f"answered {response.status_code}")
