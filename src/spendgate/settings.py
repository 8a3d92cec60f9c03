"""Settings: `Config`, the setup every layer above the core reads (prices, budgets,
defaults), and its parts: the `[streams]` and `[analytics]` settings, with their defaults
(`[alerts]` and the alert channels are `spendgate.alert_settings`', re-exported here); the
seed's sources and budget. Pure values.

The tables that can also change at run time, a source and the `[alerts]` table, are read
beside their values (as `budgets.budget_from_config` reads a budget's): `Config.overlay()`
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
from typing import Any

from spendgate.alert_settings import (
    ALERTS_DEFINITION,
    PRIVATE_ALLOWANCE,
    SEVERITIES,
    AlertSettings,
    ChannelKind,
    ChannelSettings,
    Severity,
    parse_alerts,
)
from spendgate.budgets import Budget, budget_from_config
from spendgate.errors import ValidationError, check_keys
from spendgate.events import check_id, check_text
from spendgate.money import DEFAULT_CURRENCY, Nanos
from spendgate.pricing import Price, PriceBook, RateLimit, SourcePricing
from spendgate.windows import EPOCH, Window, parse_duration, require_aware

__all__ = [  # the alert settings are re-exported: every layer above reads them from here
    "ALERTS_DEFINITION",
    "DEFAULT_RESERVATION_TTL",
    "PRIVATE_ALLOWANCE",
    "SEED_BUDGETS",
    "SEED_SOURCES",
    "SEVERITIES",
    "AlertSettings",
    "AnalyticsSettings",
    "ChannelKind",
    "ChannelSettings",
    "Config",
    "Severity",
    "StreamSettings",
    "check_keys",
    "parse_alerts",
    "parse_source",
]

DEFAULT_RESERVATION_TTL = timedelta(minutes=5)
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
    "size_units",
    "size_tiers",
    "variants",
    "variant_hours",
    "unpriced",
    "versions",
    "capability",
    "cacheable",
    "description",
    "rate_limit",
}
_VERSION_KEYS = {
    "price",
    "tiers",
    "effective_from",
    "quota_period",
    "quota_timezone",
    "size_units",
    "size_tiers",
    "variants",
    "variant_hours",
}


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
        name,
        spec.get("price"),
        effective_from=effective_from,
        tiers=tiers,
        period=period,
        size_units=spec.get("size_units"),
        size_tiers=spec.get("size_tiers"),
        variants=spec.get("variants"),
        variant_hours=spec.get("variant_hours"),
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
