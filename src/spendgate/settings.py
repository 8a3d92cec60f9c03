"""Settings: `Config`, the setup every layer above the core reads (prices, budgets,
defaults), and its parts: the `[streams]`, `[analytics]` and `[alerts]` settings and the
alert channels, with their defaults; the seed's sources and budget. Pure values.

The tables that can also change at run time, a source and the `[alerts]` table, are read
here beside their values (as `budgets.budget_from_config` reads a budget's): `Config.overlay()`
lays stored definitions over a configuration without any file, and the API's alert
configuration is held to the same rules as the file's. Reading `spendgate.toml` itself (its
top level, `[streams]`, `[analytics]`) and the environment is `spendgate.config`'s.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from spendgate.budgets import Budget, budget_from_config
from spendgate.destinations import channel_hosts, private_host
from spendgate.errors import ValidationError
from spendgate.events import check_id, check_text
from spendgate.money import DEFAULT_CURRENCY, Nanos, money_text, number_text, to_nanos
from spendgate.pricing import Price, PriceBook, RateLimit, SourcePricing
from spendgate.redaction import redact_url
from spendgate.windows import EPOCH, Window, duration_text, parse_duration, require_aware

DEFAULT_RESERVATION_TTL = timedelta(minutes=5)
PRIVATE_ALLOWANCE = "allow_private_destinations"
"""The `[alerts]` key that lets channels send to private hosts (`spendgate.destinations`)."""
ALERTS_DEFINITION = "config"
"""The name of the `alerts` definition that run-time alert settings are stored under."""
SEED_SOURCES: Mapping[str, Mapping[str, Any]] = {
    # The seed's image sources: free first, then two paid APIs priced per request, whose
    # images of a place may be kept and served again (cacheable).
    "openstreetmap_tiles": {"price": "free"},
    "local_super_resolution": {"price": "free"},
    "extended_cache": {"price": "free"},
    "geographic_batch": {"price": "free"},
    "synthetic_generation": {"price": "free"},
    "google_maps_optimized": {"price": "0.002/request", "cacheable": True},
    "mapbox_satellite": {"price": "0.0015/request", "cacheable": True},
    # The second seed's market-data stream: per MB of data and per connected hour. Live
    # data: never cacheable.
    "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
}
SEED_BUDGETS: Sequence[Mapping[str, Any]] = (
    {
        # The first seed's API budget: every call but the second seed's stream, which has a
        # budget of its own (below), so each seed's thresholds hold as it states them.
        "name": "daily",
        "limit": "10.00",
        "scope": "not:source:databento_mbo",
        "emergency": "50.00",
        "window": "day",
        "timezone": "UTC",
        "reset_hour": 0,
        "thresholds": {"warn": 0.8, "stop": 1.0},
    },
    {
        # The second seed's: $25 a day of the market-data stream, a warning at 60% and the
        # emergency stop at 80% (DAILY_STREAMING_BUDGET and EMERGENCY_STOP_THRESHOLD set these).
        "name": "streaming",
        "limit": "25.00",
        "scope": "source:databento_mbo",
        "window": "day",
        "timezone": "UTC",
        "reset_hour": 0,
        "thresholds": {"warn": 0.6, "stop": 0.8},
    },
)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The `[streams]` table: how stream meters run (the second seed's settings)."""

    calendar: str | None = "CMES"
    weekend_streaming: bool = False
    monitoring: bool = True
    lease: Decimal = Decimal("0.10")


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """The `[analytics]` table: what live metrics, summaries and forecasts measure against.

    `budget` names the budget whose remaining amount, runway and assessment are shown (by
    default the first budget over everything, else the first budget). Days are counted in
    `timezone` from `reset_hour` (by default that budget's). Savings vs traditional are
    shown against `traditional_cost` a request (nano-units) only when it is configured:
    `None` (the default) shows no such figure rather than one against an invented cost.
    """

    budget: str | None = None
    timezone: str | None = None
    reset_hour: int | None = None
    traditional_cost: Nanos | None = None


ChannelKind = Literal["apprise", "webhook", "log", "dashboard"]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Where alerts of some severities go: an apprise URL (email, Slack, Teams, Discord,
    Telegram, SMS...), a JSON webhook signed with HMAC, the log, or the dashboard."""

    name: str
    kind: ChannelKind
    url: str | None = None
    severities: tuple[Severity, ...] = SEVERITIES
    secret: str | None = None
    """The webhook's HMAC-SHA256 key."""
    allow_private: bool = False
    """May it send to loopback, link-local and private addresses (`[alerts]
    allow_private_destinations`)? Checked again at send time, after DNS resolution."""

    def to_spec(self) -> dict[str, Any]:
        """The channel as its `[alerts.channels.NAME]` table, with its URL's credentials and
        tokens hidden and its secret not shown."""
        spec: dict[str, Any] = {"kind": self.kind, "severities": list(self.severities)}
        if self.url is not None:
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

    def to_spec(self) -> dict[str, Any]:
        """The settings as their `[alerts]` table."""
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
            "channels": {c.name: c.to_spec() for c in self.channels},
            "allow_private_destinations": self.allow_private_destinations,
        }
        return spec


def _seconds(span: timedelta | None) -> str | None:
    return None if span is None else duration_text(span)


@dataclass(frozen=True, slots=True)
class Config:
    """A validated setup: prices, budgets and defaults. `spendgate.config` reads one from
    `spendgate.toml` (and offers it too: `from spendgate.config import Config`)."""

    prices: PriceBook = field(default_factory=PriceBook)
    budgets: tuple[Budget, ...] = ()
    currency: str = DEFAULT_CURRENCY
    reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL
    streams: StreamSettings = field(default_factory=StreamSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    defaults: bool = field(default=False, compare=False)
    """Made by `seed()`, not written by anyone: it seeds only a store with no budgets or
    sources yet, and never stands in for those a store holds (see `binding.Bindings.seed`)."""

    def __post_init__(self) -> None:
        names = [b.name for b in self.budgets]
        if self.analytics.budget is not None and self.analytics.budget not in names:
            raise ValidationError(
                "analytics.budget",
                self.analytics.budget,
                f"one of {', '.join(names) or 'no budgets'}",
            )
        for name in names:
            if names.count(name) > 1:
                raise ValidationError("budgets.name", name, "a name used by one budget only")
        for b in self.budgets:
            named = b.scope.left_out or b.scope
            if named.kind == "source" and named.value not in self.prices.sources:
                raise ValidationError(
                    f"budgets.{b.name}.scope", str(b.scope), "a source defined under [sources]"
                )

    @classmethod
    def seed(cls) -> Config:
        """The seeds' sources and stream, a $10 daily budget with $50 for emergencies, and the
        stream's own $25 a day (warning at 60%, stop at 80%)."""
        sources = {name: parse_source(name, spec) for name, spec in SEED_SOURCES.items()}
        budgets = tuple(budget_from_config(spec["name"], spec) for spec in SEED_BUDGETS)
        return cls(PriceBook(sources), budgets, defaults=True)

    def overlay(self, changes: Iterable[tuple[str, str, Mapping[str, Any] | None]]) -> Config:
        """This configuration with definitions made at run time applied in order.

        Each change is `(kind, name, spec)`: kind `budget` or `source` (others belong to other
        readers and are passed over), `spec` the table `spendgate.toml` would hold, or `None`
        to remove the name. A replaced budget keeps its place; new ones come after. The result
        is validated whole, so a change that would leave a budget scoped to a removed source
        is refused.
        """
        budgets = {b.name: b for b in self.budgets}
        sources = dict(self.prices.sources)
        alerts = self.alerts
        for kind, name, spec in changes:
            if kind == "alerts" and name == ALERTS_DEFINITION:
                # The allowance of private destinations is the file's alone.
                stored = {k: v for k, v in (spec or {}).items() if k != PRIVATE_ALLOWANCE}
                alerts = self.alerts if spec is None else parse_alerts(stored, self.alerts)
            if kind == "budget":
                if spec is None:
                    budgets.pop(name, None)
                else:
                    budgets[name] = budget_from_config(name, spec)
            elif kind == "source":
                if spec is None:
                    sources.pop(name, None)
                else:
                    sources[name] = parse_source(name, spec)
        return replace(
            self, prices=PriceBook(sources), budgets=tuple(budgets.values()), alerts=alerts
        )

    def budget(self, name: str) -> Budget:
        """The budget called `name`."""
        for b in self.budgets:
            if b.name == name:
                return b
        raise ValidationError("budget", name, f"one of {', '.join(b.name for b in self.budgets)}")


_SOURCE_KEYS = {
    "price",
    "tiers",
    "quota_period",
    "quota_timezone",
    "unpriced",
    "versions",
    "capability",
    "cacheable",
    "description",
    "rate_limit",
}
_VERSION_KEYS = {"price", "tiers", "effective_from", "quota_period", "quota_timezone"}


def parse_source(name: str, spec: object) -> SourcePricing:
    """Build a source's pricing from its `[sources.NAME]` table."""
    where = f"sources.{name}"
    if not isinstance(spec, Mapping):
        raise ValidationError(where, spec, "a [sources.NAME] table")
    check_keys(spec, _SOURCE_KEYS, where)
    unpriced = spec.get("unpriced", "refuse")
    if unpriced not in ("refuse", "allow"):
        raise ValidationError(f"{where}.unpriced", unpriced, "'refuse' (the default) or 'allow'")
    versions: list[Price] = []
    if "price" in spec or "tiers" in spec:
        versions.append(_price(name, spec, EPOCH, where))
    listed = spec.get("versions", ())
    if isinstance(listed, str) or not isinstance(listed, Sequence):
        raise ValidationError(f"{where}.versions", listed, "a list of [[...versions]] tables")
    for i, version in enumerate(listed):
        at = f"{where}.versions[{i}]"
        if not isinstance(version, Mapping):
            raise ValidationError(at, version, "a table with effective_from and price")
        check_keys(version, _VERSION_KEYS, at)
        versions.append(_price(name, version, _effective(version.get("effective_from"), at), at))
    versions.sort(key=lambda p: p.effective_from)
    for a, b in itertools.pairwise(versions):
        if a.effective_from == b.effective_from:
            raise ValidationError(f"{where}.versions", b.version, "one price per effective_from")
    rate_limit = _rate_limit(spec.get("rate_limit"), f"{where}.rate_limit")
    capability = spec.get("capability")
    if capability is not None:
        check_id(capability, f"{where}.capability")
    cacheable = spec.get("cacheable", False)
    if not isinstance(cacheable, bool):
        raise ValidationError(f"{where}.cacheable", cacheable, "true or false")
    if "description" in spec:  # shown in listings only, but kept: bounded like other text
        check_text(spec["description"], f"{where}.description")
    return SourcePricing(
        name,
        tuple(versions),
        allow_unpriced=unpriced == "allow",
        capability=capability,
        rate_limit=rate_limit,
        cacheable=cacheable,
    )


def _rate_limit(spec: object, where: str) -> RateLimit | None:
    """A source's quota: `{requests = 1000, per = "1h"}` (for the rate-limit alert)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) != {"requests", "per"}:
        raise ValidationError(where, spec, '{requests = 1000, per = "1h"}')
    requests = spec["requests"]
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValidationError(f"{where}.requests", requests, "a whole number above zero")
    return RateLimit(requests, parse_duration(spec["per"], f"{where}.per"))


def _price(name: str, spec: Mapping[str, Any], effective_from: datetime, where: str) -> Price:
    tiers = spec.get("tiers")
    if tiers is not None and not isinstance(tiers, Mapping):
        raise ValidationError(f"{where}.tiers", tiers, "a table of unit = [{up_to, price}, ...]")
    period = None
    if tiers:
        kind = spec.get("quota_period", "month")
        if kind not in ("day", "week", "month"):
            raise ValidationError(f"{where}.quota_period", kind, "day, week or month")
        try:
            period = Window(kind, tz=spec.get("quota_timezone", "UTC"))
        except ValidationError as exc:
            raise ValidationError(f"{where}.quota_timezone", exc.value, exc.expected) from None
    return Price.parse(
        name, spec.get("price"), effective_from=effective_from, tiers=tiers, period=period
    )


def _effective(value: object, where: str) -> datetime:
    field_name = f"{where}.effective_from"
    at = value
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            at = None
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValidationError(
            field_name, value, "a date-time with a zone, e.g. 2026-01-01T00:00:00Z"
        )
    # In range before it is moved to UTC: 0001-01-01T00:00+14:00 has no UTC time at all.
    return require_aware(at, field_name).astimezone(UTC)


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
    "channels",
    PRIVATE_ALLOWANCE,
}
_CHANNEL_KEYS = {"kind", "url", "severities", "secret"}


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
    channels = out.channels
    if "channels" in spec:
        channels = _channels(spec["channels"], out.channels, allow)
    changes["channels"] = tuple(replace(c, allow_private=allow) for c in channels)
    return replace(out, **changes)


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
    """`[alerts.channels]`: NAME = true/false (the dashboard and log), an apprise URL, or a
    table `{kind, url, severities, secret}`. Names not given keep their settings. URLs that
    name a private host are refused unless `allow_private`."""
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
                    where, value, "a URL or table (true is for dashboard and log)"
                )
            channels[name] = ChannelSettings(name, name)  # type: ignore[arg-type]
            continue
        table: Mapping[str, Any] = {"url": value} if isinstance(value, str) else value
        if not isinstance(table, Mapping):
            raise ValidationError(where, value, "an apprise URL or a table {url = ..., ...}")
        check_keys(table, _CHANNEL_KEYS, where)
        url = table.get("url")
        kind = table.get("kind")
        if kind is None:
            kind = name if name in ("dashboard", "log") else "apprise"
        if kind not in ("apprise", "webhook", "log", "dashboard"):
            raise ValidationError(f"{where}.kind", kind, "apprise, webhook, log or dashboard")
        if kind in ("apprise", "webhook") and (not isinstance(url, str) or not url.strip()):
            raise ValidationError(
                f"{where}.url", redact_url(url) if isinstance(url, str) else url, "the URL"
            )
        if kind == "webhook" and not str(url).startswith(("http://", "https://")):
            raise ValidationError(
                f"{where}.url", redact_url(str(url)), "an http:// or https:// URL"
            )
        if kind in ("apprise", "webhook") and not allow_private:
            for host in channel_hosts(str(url)):
                if private_host(host):
                    raise ValidationError(
                        f"{where}.url",
                        redact_url(str(url)),
                        "a URL whose host is public: loopback, link-local and private "
                        f"addresses and localhost need [alerts] {PRIVATE_ALLOWANCE} = true "
                        "in spendgate.toml",
                    )
        default: tuple[Severity, ...] = ("critical",) if name == "sms" else SEVERITIES
        if kind in ("apprise", "webhook") and name != "sms":
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
            raise ValidationError(
                f"{where}.secret", "(hidden)", "a secret of 16 characters or more"
            )
        channels[name] = ChannelSettings(
            name,
            kind,  # type: ignore[arg-type]
            url,
            tuple(dict.fromkeys(severities)),
            secret,
        )
    return tuple(channels.values())


def check_keys(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse a table with a key it may not have, naming the first and the keys it may."""
    unknown = sorted(set(spec) - allowed)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValidationError(
            key, spec[unknown[0]], f"one of the keys {', '.join(sorted(allowed))}"
        )
