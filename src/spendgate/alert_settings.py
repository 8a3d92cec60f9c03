"""The `[alerts]` table: the rules (the seed's thresholds are the defaults), how alerts
repeat and settle, the transports set once (the SMTP server, the Slack workspace's webhook,
the SMS provider) and the channels alerts go to. Pure values, and their reader, shared by
`spendgate.toml` and `POST /api/cost/alerts/configure` (`Config.overlay()` lays the API's over
the file's), so that both are held to the same rules.

A channel is an apprise URL, a signed JSON webhook, the log, the dashboard, or (the seed's
`notification_channels`) recipients sent through a transport: `email` addresses through
`smtp_url`, a Slack channel name such as `#cost-alerts` through `slack_webhook`, `sms`
numbers through `sms_url`. Text with `://` is a URL; other text, or a list, is recipients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from spendgate.destinations import channel_hosts, private_host
from spendgate.errors import ValidationError, check_keys
from spendgate.money import Nanos, money_text, number_text, to_nanos
from spendgate.redaction import redact_url
from spendgate.windows import duration_text, parse_duration

PRIVATE_ALLOWANCE = "allow_private_destinations"
"""The `[alerts]` key that lets channels send to private hosts (`spendgate.destinations`)."""
ALERTS_DEFINITION = "config"
"""The name of the `alerts` definition that run-time alert settings are stored under."""

ChannelKind = Literal["apprise", "webhook", "log", "dashboard", "email", "slack", "sms"]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
TRANSPORTS: Mapping[str, str] = {"email": "smtp_url", "slack": "slack_webhook", "sms": "sms_url"}
"""The channel kinds that name recipients only, and the `[alerts]` key of the transport each is
sent through (set once, for every channel of the kind)."""
_HOW = {
    "smtp_url": "the SMTP server, e.g. mailtos://user:pass@smtp.example.com:587?from=alerts@example.com",
    "slack_webhook": "the workspace's incoming webhook, https://hooks.slack.com/services/...",
    "sms_url": "the SMS provider: an apprise URL such as twilio://SID:TOKEN@+15551234567, or "
    "an http(s) gateway that takes JSON {to, text}",
}


def with_recipients(url: str, recipients: Sequence[str]) -> str:
    """An apprise URL with `recipients` added as its `to=` targets (how apprise's email and
    SMS services take them).

    >>> with_recipients("mailtos://u:p@smtp.example.com?from=a@example.com", ["x@example.com"])
    'mailtos://u:p@smtp.example.com?from=a@example.com&to=x@example.com'
    """
    # Quoted so that the query keeps them whole: `+` would read as a space.
    targets = quote(",".join(recipients), safe="@,")
    return f"{url}{'&' if '?' in url else '?'}to={targets}"


def gateway(url: str | None) -> bool:
    """Is this SMS transport a JSON HTTP gateway (rather than an apprise service URL)?"""
    return url is not None and url.lower().startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Where alerts of some severities go: an apprise URL (email, Slack, Teams, Discord,
    Telegram, SMS...), a JSON webhook signed with HMAC, the log, the dashboard, or the seed's
    recipients (`email` addresses, a `slack` channel name, `sms` numbers) sent through the
    transport `[alerts]` sets for their kind (`TRANSPORTS`), which is then `url`."""

    name: str
    kind: ChannelKind
    url: str | None = None
    severities: tuple[Severity, ...] = SEVERITIES
    secret: str | None = None
    """The webhook's HMAC-SHA256 key."""
    allow_private: bool = False
    """May it send to loopback, link-local and private addresses (`[alerts]
    allow_private_destinations`)? Checked again at send time, after DNS resolution."""
    to: tuple[str, ...] = ()
    """An `email`, `slack` or `sms` channel's recipients: addresses, one channel name, numbers."""

    def target(self) -> str | None:
        """The URL a notification is sent to: the channel's own, or its transport's with the
        recipients added (`with_recipients`) for email and an apprise SMS service."""
        if self.url is not None and self.to and self.kind in ("email", "sms"):
            return self.url if gateway(self.url) else with_recipients(self.url, self.to)
        return self.url

    def to_spec(self) -> dict[str, Any]:
        """The channel as its `[alerts.channels.NAME]` table, with its URL's credentials and
        tokens hidden and its secret not shown (a recipients' channel shows `to`, its
        transport being `[alerts]`'s)."""
        spec: dict[str, Any] = {"kind": self.kind, "severities": list(self.severities)}
        if self.kind in TRANSPORTS:
            spec["to"] = list(self.to)
        elif self.url is not None:
            spec["url"] = redact_url(self.url)
        if self.secret is not None:
            spec["secret"] = "(set)"
        return spec


DEFAULT_CHANNELS = (ChannelSettings("dashboard", "dashboard"), ChannelSettings("log", "log"))


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The `[alerts]` table: the seed's rules (its thresholds are the defaults), how alerts
    repeat and settle, and the channels they go to. A rule set to `None` is off."""

    budget_fractions: tuple[Decimal, ...] = (Decimal("0.8"), Decimal("1.0"))
    forecast_fraction: Decimal | None = Decimal("1.0")
    free_source_rate_below: float | None = 0.85
    cost_per_request_above: Nanos | None = 10_000_000  # the seed's $0.01
    anomaly_factor: float | None = 3.0
    service_offline_after: timedelta | None = timedelta(minutes=15)
    rate_limit_fraction: float | None = 0.9
    window: timedelta = timedelta(hours=1)
    """How far back the rate rules (free-source rate, cost per request) look."""
    min_requests: int = 20
    """Requests a rate rule needs in its window before it judges."""
    hysteresis: float = 0.05
    """How far past its threshold a value must come back before its alert resolves."""
    repeat_every: timedelta = timedelta(hours=4)
    evaluate_every: timedelta = timedelta(minutes=1)
    dashboard_url: str | None = None
    smtp_url: str | None = None
    """The SMTP server `email` channels send through: a `mailto://` or `mailtos://` URL with
    host, port, user, password and `from`, no recipients."""
    slack_webhook: str | None = None
    """The Slack workspace's incoming webhook that `slack` channels post to."""
    sms_url: str | None = None
    """The SMS provider `sms` channels send through: an apprise URL (the numbers are added as
    its targets), or an http(s) gateway that gets `{"to": [...], "text": ...}` as JSON."""
    channels: tuple[ChannelSettings, ...] = DEFAULT_CHANNELS
    allow_private_destinations: bool = False
    """May channels send to loopback, link-local and private addresses? Only
    `spendgate.toml` sets it (never a change made over the API), for teams whose receivers run
    on their own network."""

    def channel(self, name: str) -> ChannelSettings:
        """The channel called `name`."""
        found = self.find(name)
        if found is None:
            raise ValidationError(
                "channel", name, f"one of {', '.join(c.name for c in self.channels) or 'none'}"
            )
        return found

    def find(self, name: str) -> ChannelSettings | None:
        """The channel called `name`, or `None` if there is none (it was deleted)."""
        return next((c for c in self.channels if c.name == name), None)

    def transports(self) -> dict[str, str | None]:
        """The transports by `[alerts]` key (`smtp_url`, `slack_webhook`, `sms_url`)."""
        return {key: getattr(self, key) for key in TRANSPORTS.values()}

    def to_spec(self) -> dict[str, Any]:
        """The settings as their `[alerts]` table (URLs without their credentials)."""
        spec: dict[str, Any] = {
            "budget_fractions": [str(f) for f in self.budget_fractions],
            "forecast_fraction": None
            if self.forecast_fraction is None
            else str(self.forecast_fraction),
            "free_source_rate_below": self.free_source_rate_below,
            "cost_per_request_above": None
            if self.cost_per_request_above is None
            else money_text(self.cost_per_request_above),
            "anomaly_factor": self.anomaly_factor,
            "service_offline_after": _seconds(self.service_offline_after),
            "rate_limit_fraction": self.rate_limit_fraction,
            "window": _seconds(self.window),
            "min_requests": self.min_requests,
            "hysteresis": self.hysteresis,
            "repeat_every": _seconds(self.repeat_every),
            "evaluate_every": _seconds(self.evaluate_every),
            "dashboard_url": self.dashboard_url,
            **{
                key: None if url is None else redact_url(url)
                for key, url in self.transports().items()
            },
            "channels": {c.name: c.to_spec() for c in self.channels},
            "allow_private_destinations": self.allow_private_destinations,
        }
        return spec


def _seconds(span: timedelta | None) -> str | None:
    return None if span is None else duration_text(span)


_ALERT_KEYS = {
    "budget_fractions",
    "forecast_fraction",
    "free_source_rate_below",
    "cost_per_request_above",
    "anomaly_factor",
    "service_offline_after",
    "rate_limit_fraction",
    "window",
    "min_requests",
    "hysteresis",
    "repeat_every",
    "evaluate_every",
    "dashboard_url",
    *TRANSPORTS.values(),
    "channels",
    PRIVATE_ALLOWANCE,
}
_CHANNEL_KEYS = {"kind", "url", "severities", "secret", "to"}
_KINDS = ("apprise", "webhook", "log", "dashboard", *TRANSPORTS)
_EMAIL = re.compile(
    r"[A-Za-z0-9._+'-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_SLACK_CHANNEL = re.compile(r"[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_PHONE = re.compile(r"\+?[0-9]{7,15}")
_RECIPIENTS = {
    "email": (_EMAIL, 50, "an email address such as dev-team@example.com"),
    "slack": (_SLACK_CHANNEL, 1, "a Slack channel name such as #cost-alerts"),
    "sms": (_PHONE, 20, "a phone number in international form such as +15551234567"),
}
"""Each recipients' kind: the form of one recipient, how many a channel may name, and the
words for it."""


def _off(raw: object) -> bool:
    """Whether a rule's setting turns it off: `false`, `"off"` or none (never `0`, which
    equals `False` in Python but is a number, to be judged as one)."""
    return raw is None or raw is False or raw == "off"


def parse_alerts(spec: object, base: AlertSettings | None = None) -> AlertSettings:
    """The `[alerts]` table over `base` (the defaults): keys given replace those of `base`;
    a rule given as `false` (or `"off"`) is turned off."""
    if not isinstance(spec, Mapping):
        raise ValidationError("alerts", spec, "an [alerts] table")
    check_keys(spec, _ALERT_KEYS, "alerts")
    out = base or AlertSettings()
    changes: dict[str, Any] = {}
    allow = spec.get(PRIVATE_ALLOWANCE, out.allow_private_destinations)
    if not isinstance(allow, bool):
        raise ValidationError(f"alerts.{PRIVATE_ALLOWANCE}", allow, "true or false")
    changes[PRIVATE_ALLOWANCE] = allow
    if "budget_fractions" in spec:
        raw = spec["budget_fractions"]
        if isinstance(raw, str) or not isinstance(raw, Sequence):
            raise ValidationError("alerts.budget_fractions", raw, "a list such as [0.8, 1.0]")
        fractions = sorted(
            {_alert_fraction(f, f"alerts.budget_fractions[{i}]") for i, f in enumerate(raw)}
        )
        changes["budget_fractions"] = tuple(fractions)
    if "forecast_fraction" in spec:
        raw = spec["forecast_fraction"]
        changes["forecast_fraction"] = (
            None if _off(raw) else _alert_fraction(raw, "alerts.forecast_fraction")
        )
    for key in ("free_source_rate_below", "rate_limit_fraction"):
        if key in spec:
            raw = spec[key]
            changes[key] = None if _off(raw) else _share_of_one(raw, f"alerts.{key}")
    if "cost_per_request_above" in spec:
        raw = spec["cost_per_request_above"]
        amount = None if _off(raw) else to_nanos(raw, "alerts.cost_per_request_above")
        if amount is not None and amount <= 0:
            raise ValidationError("alerts.cost_per_request_above", raw, "an amount above zero")
        changes["cost_per_request_above"] = amount
    if "anomaly_factor" in spec:
        raw = spec["anomaly_factor"]
        if not _off(raw) and (
            isinstance(raw, bool) or not isinstance(raw, int | float) or not 1 < raw <= 1000
        ):
            raise ValidationError("alerts.anomaly_factor", raw, "a factor above 1, e.g. 3")
        changes["anomaly_factor"] = None if _off(raw) else float(raw)
    for key in ("service_offline_after", "window", "repeat_every", "evaluate_every"):
        if key in spec:
            raw = spec[key]
            if _off(raw) and key == "service_offline_after":
                changes[key] = None
            else:
                changes[key] = parse_duration(raw, f"alerts.{key}")
    if "min_requests" in spec:
        raw = spec["min_requests"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 1_000_000:
            raise ValidationError("alerts.min_requests", raw, "a whole number from 1")
        changes["min_requests"] = raw
    if "hysteresis" in spec:
        raw = spec["hysteresis"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw < 1:
            raise ValidationError("alerts.hysteresis", raw, "a fraction from 0 to below 1")
        changes["hysteresis"] = float(raw)
    if "dashboard_url" in spec:
        raw = spec["dashboard_url"]
        if raw is not None and (
            not isinstance(raw, str) or not raw.startswith(("http://", "https://"))
        ):
            raise ValidationError("alerts.dashboard_url", raw, "an http:// or https:// URL")
        changes["dashboard_url"] = raw
    for key in TRANSPORTS.values():
        if key in spec:
            raw = spec[key]
            changes[key] = None if _off(raw) else _transport(key, raw, allow)
    channels = out.channels
    if "channels" in spec:
        channels = _channels(spec["channels"], out.channels, allow)
    transports = {key: changes.get(key, getattr(out, key)) for key in TRANSPORTS.values()}
    changes["channels"] = tuple(_sent_through(c, transports, allow) for c in channels)
    return replace(out, **changes)


def _sent_through(
    channel: ChannelSettings, transports: Mapping[str, str | None], allow: bool
) -> ChannelSettings:
    """The channel with the current transport of its kind (a recipients' channel follows its
    transport when that changes), and the allowance of private destinations."""
    key = TRANSPORTS.get(channel.kind)
    if key is None:
        return replace(channel, allow_private=allow)
    url = transports[key]
    if url is None:
        raise ValidationError(
            f"alerts.channels.{channel.name}",
            _given(channel.to),
            f"set [alerts] {key} first ({_HOW[key]}): the {channel.kind} channel's "
            "recipients are sent through it",
        )
    return replace(channel, url=url, allow_private=allow)


def _given(recipients: Sequence[str]) -> str | list[str]:
    return recipients[0] if len(recipients) == 1 else list(recipients)


def _public(url: str, where: str, allow_private: bool) -> None:
    """Refuse a URL that names a private host as a server to send to, unless allowed."""
    if allow_private:
        return
    for host in channel_hosts(url):
        if private_host(host):
            raise ValidationError(
                where,
                redact_url(url),
                "a URL whose host is public: loopback, link-local and private "
                f"addresses and localhost need [alerts] {PRIVATE_ALLOWANCE} = true "
                "in spendgate.toml",
            )


def _transport(key: str, raw: object, allow_private: bool) -> str:
    """`smtp_url`, `slack_webhook` or `sms_url`: a URL with no recipients of its own."""
    where = f"alerts.{key}"
    if not isinstance(raw, str) or "://" not in raw or len(raw) > 2000:
        shown = redact_url(raw) if isinstance(raw, str) else raw
        raise ValidationError(where, shown, f"a URL: {_HOW[key]}")
    scheme = raw.partition("://")[0].lower()
    schemes = {"smtp_url": ("mailto", "mailtos"), "slack_webhook": ("http", "https")}
    if key in schemes and scheme not in schemes[key]:
        raise ValidationError(
            where, redact_url(raw), f"a {' or '.join(schemes[key])} URL: {_HOW[key]}"
        )
    try:
        query = parse_qs(urlsplit(raw).query)
    except ValueError:
        raise ValidationError(where, redact_url(raw), f"a URL: {_HOW[key]}") from None
    if "to" in query and key != "slack_webhook":
        raise ValidationError(
            where,
            redact_url(raw),
            "a URL without to=: the recipients are each channel's (notification_channels)",
        )
    _public(raw, where, allow_private)
    return raw


def _alert_fraction(raw: object, field_name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise ValidationError(field_name, raw, "a fraction of the budget in (0, 10], e.g. 0.8")
    if isinstance(raw, str):
        value = number_text(raw, field_name)
    else:
        value = Decimal(repr(raw) if isinstance(raw, float) else raw)
    if not value.is_finite() or not 0 < value <= 10:
        raise ValidationError(field_name, raw, "a fraction of the budget in (0, 10], e.g. 0.8")
    return value.normalize()


def _share_of_one(raw: object, field_name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 1:
        raise ValidationError(field_name, raw, "a fraction above 0 and at most 1, e.g. 0.85")
    return float(raw)


def _channels(
    spec: object, base: tuple[ChannelSettings, ...], allow_private: bool
) -> tuple[ChannelSettings, ...]:
    """`[alerts.channels]`: NAME = true/false (the dashboard and log), an apprise URL, the
    seed's recipients (`email = [addresses]`, `slack = "#channel"`, `sms = "+1..."`), or a
    table `{kind, url, to, severities, secret}`. Names not given keep their settings. URLs
    that name a private host are refused unless `allow_private`."""
    if not isinstance(spec, Mapping):
        raise ValidationError("alerts.channels", spec, "a table of NAME = URL or {url = ...}")
    channels = {c.name: c for c in base}
    for name, value in spec.items():
        where = f"alerts.channels.{name}"
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ValidationError("alerts.channels", name, "channel names of 1 to 100 characters")
        if value is False or value is None:
            channels.pop(name, None)
            continue
        if value is True:
            if name not in ("dashboard", "log"):
                raise ValidationError(
                    where, value, "a URL, recipients or a table (true is for dashboard and log)"
                )
            channels[name] = ChannelSettings(name, name)  # type: ignore[arg-type]
            continue
        channels[name] = _channel(name, value, where, allow_private)
    return tuple(channels.values())


def _channel(name: str, value: object, where: str, allow_private: bool) -> ChannelSettings:
    """One channel of `[alerts.channels]` (not `true` or `false`)."""
    listed_at = f"{where}.to"
    if isinstance(value, str) and "://" in value:
        table: Mapping[str, Any] = {"url": value}
    elif isinstance(value, str) or (isinstance(value, Sequence) and not isinstance(value, bytes)):
        table, listed_at = {"to": value}, where  # the seed's form: the recipients alone
    elif isinstance(value, Mapping):
        table = value
    else:
        raise ValidationError(where, value, "an apprise URL, recipients or a table {url = ...}")
    check_keys(table, _CHANNEL_KEYS, where)
    url = table.get("url")
    kind = table.get("kind")
    if kind is None:
        if "to" in table and "url" not in table:
            if name not in TRANSPORTS:
                raise ValidationError(
                    where,
                    table["to"],
                    "a URL (scheme://...), or recipients in a table that names their kind: "
                    '{kind = "email", to = [...]} (likewise "slack", "sms"); only the '
                    "channels named email, slack and sms take recipients alone",
                )
            kind = name
        else:
            kind = name if name in ("dashboard", "log") else "apprise"
    if kind not in _KINDS:
        raise ValidationError(f"{where}.kind", kind, ", ".join(_KINDS))
    to: tuple[str, ...] = ()
    if kind in TRANSPORTS:
        if url is not None:
            raise ValidationError(
                f"{where}.url",
                redact_url(url) if isinstance(url, str) else url,
                f"no url: a {kind} channel is sent through [alerts] {TRANSPORTS[kind]}; "
                "give its recipients as to",
            )
        to = _recipients(kind, table.get("to"), listed_at)
    elif "to" in table:
        raise ValidationError(
            f"{where}.to", table["to"], "recipients only in an email, slack or sms channel"
        )
    if kind in ("apprise", "webhook") and (not isinstance(url, str) or not url.strip()):
        raise ValidationError(
            f"{where}.url", redact_url(url) if isinstance(url, str) else url, "the URL"
        )
    if kind == "webhook" and not str(url).startswith(("http://", "https://")):
        raise ValidationError(f"{where}.url", redact_url(str(url)), "an http:// or https:// URL")
    if kind in ("apprise", "webhook"):
        _public(str(url), f"{where}.url", allow_private)
    default: tuple[Severity, ...] = SEVERITIES
    if name == "sms" or kind == "sms":
        default = ("critical",)  # the seed's: "Emergency only"
    elif kind not in ("dashboard", "log"):
        default = ("warning", "critical")
    severities = table.get("severities", list(default))
    if (
        isinstance(severities, str)
        or not isinstance(severities, Sequence)
        or not severities
        or any(s not in SEVERITIES for s in severities)
    ):
        raise ValidationError(
            f"{where}.severities", severities, "a list of info, warning, critical"
        )
    secret = table.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise ValidationError(f"{where}.secret", "(hidden)", "a secret of 16 characters or more")
    return ChannelSettings(
        name,
        kind,  # type: ignore[arg-type]  # one of _KINDS, checked above
        url,
        tuple(dict.fromkeys(severities)),
        secret,
        to=to,
    )


def _recipients(kind: str, raw: object, where: str) -> tuple[str, ...]:
    """An email, Slack or SMS channel's recipients: one as text, or a list (`where[i]` names
    the one that is wrong)."""
    form, most, words = _RECIPIENTS[kind]
    if isinstance(raw, str):
        items: list[tuple[str, object]] = [(where, raw)]
    elif isinstance(raw, Sequence) and not isinstance(raw, bytes) and 0 < len(raw) <= most:
        items = [(f"{where}[{i}]", item) for i, item in enumerate(raw)]
    else:
        many = "one" if most == 1 else f"one, or a list of 1 to {most}"
        raise ValidationError(where, raw, f"{many}: {words}")
    for at, item in items:
        if not isinstance(item, str) or form.fullmatch(item) is None or len(item) > 254:
            raise ValidationError(at, item, words)
    return tuple(dict.fromkeys(str(item) for _, item in items))
