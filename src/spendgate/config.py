"""Configuration: sources with their prices, budgets, defaults. Read from `spendgate.toml`.

Reading a file is the only I/O here (`load`); `parse` turns a mapping into a validated
`Config`, so a bad file is refused whole, with the key that is wrong and what would be valid.
With no file, `Config.seed()` gives the seed's sources, prices and $10 daily budget.

```toml
currency = "USD"
reservation_ttl = "5m"

[sources.openstreetmap_tiles]
price = "free"

[sources.google_maps_optimized]
price = "0.002/request"

[sources.databento_mbo]
price = { MB = "0.01", hour = "1.00" }

[[budgets]]
name = "daily"
limit = "10.00"
emergency = "50.00"
window = "day"
timezone = "UTC"
reset_hour = 0
thresholds = { warn = 0.8, stop = 1.0 }
```
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendgate.budgets import Budget, Threshold, budget_from_config, parse_ladder, validate_ladder
from spendgate.errors import ConfigError, ValidationError
from spendgate.money import DEFAULT_CURRENCY, Nanos, to_decimal, to_nanos
from spendgate.pricing import Price, PriceBook, SourcePricing
from spendgate.windows import EPOCH, Window, parse_duration, zone

DEFAULT_RESERVATION_TTL = timedelta(minutes=5)
DEFAULT_PATH = "spendgate.toml"

_TOP_KEYS = {"currency", "reservation_ttl", "sources", "budgets", "streams", "analytics"}
_ANALYTICS_KEYS = {"budget", "timezone", "reset_hour", "traditional_cost_per_request"}
DEFAULT_TRADITIONAL_COST = "2.40"
"""The seed's cost of a request before free-first (savings are shown against it)."""
_STREAM_KEYS = {"calendar", "weekend_streaming", "monitoring", "lease"}
STREAMING_BUDGET = "streaming"
"""The budget the seed's DAILY_STREAMING_BUDGET and EMERGENCY_STOP_THRESHOLD apply to."""
_SOURCE_KEYS = {
    "price",
    "tiers",
    "quota_period",
    "quota_timezone",
    "unpriced",
    "versions",
    "capability",
    "description",
}
_VERSION_KEYS = {"price", "tiers", "effective_from", "quota_period", "quota_timezone"}

SEED_SOURCES: Mapping[str, Mapping[str, Any]] = {
    # The seed's image sources: free first, then two paid APIs priced per request.
    "openstreetmap_tiles": {"price": "free"},
    "local_super_resolution": {"price": "free"},
    "extended_cache": {"price": "free"},
    "geographic_batch": {"price": "free"},
    "synthetic_generation": {"price": "free"},
    "google_maps_optimized": {"price": "0.002/request"},
    "mapbox_satellite": {"price": "0.0015/request"},
    # The second seed's market-data stream: per MB of data and per connected hour.
    "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
}
SEED_BUDGETS: Sequence[Mapping[str, Any]] = (
    {
        "name": "daily",
        "limit": "10.00",
        "emergency": "50.00",
        "window": "day",
        "timezone": "UTC",
        "reset_hour": 0,
        "thresholds": {"warn": 0.8, "stop": 1.0},
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
    `timezone` from `reset_hour` (by default that budget's). Savings are shown against
    `traditional_cost` a request (nano-units; the seed's $2.40).
    """

    budget: str | None = None
    timezone: str | None = None
    reset_hour: int | None = None
    traditional_cost: Nanos = 2_400_000_000  # DEFAULT_TRADITIONAL_COST in nano-units


@dataclass(frozen=True, slots=True)
class Config:
    """A validated setup: prices, budgets and defaults."""

    prices: PriceBook = field(default_factory=PriceBook)
    budgets: tuple[Budget, ...] = ()
    currency: str = DEFAULT_CURRENCY
    reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL
    streams: StreamSettings = field(default_factory=StreamSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)

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
            if b.scope.kind == "source" and b.scope.value not in self.prices.sources:
                raise ValidationError(
                    f"budgets.{b.name}.scope", str(b.scope), "a source defined under [sources]"
                )

    @classmethod
    def seed(cls) -> Config:
        """The seed's sources and stream, and a $10 daily budget with $50 for emergencies."""
        return parse({"sources": SEED_SOURCES, "budgets": SEED_BUDGETS})

    def budget(self, name: str) -> Budget:
        """The budget called `name`."""
        for b in self.budgets:
            if b.name == name:
                return b
        raise ValidationError("budget", name, f"one of {', '.join(b.name for b in self.budgets)}")


def load(path: str | Path) -> Config:
    """Read and validate a `spendgate.toml`."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file (create it, or leave out --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse(raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def parse(raw: Mapping[str, Any]) -> Config:
    """Validate a configuration mapping (the parsed TOML) into a `Config`."""
    _only(raw, _TOP_KEYS, "")
    sources = raw.get("sources", {})
    if not isinstance(sources, Mapping):
        raise ValidationError("sources", sources, "a table of [sources.NAME]")
    book = PriceBook({name: _source(name, spec) for name, spec in sources.items()})
    budgets = raw.get("budgets", ())
    if not isinstance(budgets, Sequence) or isinstance(budgets, str):
        raise ValidationError("budgets", budgets, "a list of [[budgets]] tables")
    parsed = []
    for i, spec in enumerate(budgets):
        if not isinstance(spec, Mapping):
            raise ValidationError(f"budgets[{i}]", spec, "a [[budgets]] table")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"budgets[{i}].name", name, "a non-empty name")
        parsed.append(budget_from_config(name, {k: v for k, v in spec.items() if k != "name"}))
    currency = raw.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValidationError("currency", currency, "a three-letter ISO 4217 code such as USD")
    ttl = parse_duration(raw.get("reservation_ttl", DEFAULT_RESERVATION_TTL), "reservation_ttl")
    return Config(
        book,
        tuple(parsed),
        currency.upper(),
        ttl,
        _streams(raw.get("streams", {})),
        _analytics(raw.get("analytics", {})),
    )


def _analytics(spec: object) -> AnalyticsSettings:
    if not isinstance(spec, Mapping):
        raise ValidationError("analytics", spec, "an [analytics] table")
    _only(spec, _ANALYTICS_KEYS, "analytics")
    budget = spec.get("budget")
    if budget is not None and not isinstance(budget, str):
        raise ValidationError("analytics.budget", budget, "the name of a budget")
    tz = spec.get("timezone")
    if tz is not None:
        zone(tz, "analytics.timezone")
    reset_hour = spec.get("reset_hour")
    if reset_hour is not None and (
        isinstance(reset_hour, bool) or not isinstance(reset_hour, int) or not 0 <= reset_hour <= 23
    ):
        raise ValidationError("analytics.reset_hour", reset_hour, "a whole hour from 0 to 23")
    raw_cost = spec.get("traditional_cost_per_request", DEFAULT_TRADITIONAL_COST)
    cost = to_nanos(raw_cost, "analytics.traditional_cost_per_request")
    if cost <= 0:
        raise ValidationError(
            "analytics.traditional_cost_per_request", raw_cost, "an amount above zero"
        )
    return AnalyticsSettings(budget, tz, reset_hour, cost)


def _streams(spec: object) -> StreamSettings:
    if not isinstance(spec, Mapping):
        raise ValidationError("streams", spec, "a [streams] table")
    _only(spec, _STREAM_KEYS, "streams")
    calendar = spec.get("calendar", "CMES")
    if calendar is not None and (not isinstance(calendar, str) or not calendar):
        raise ValidationError("streams.calendar", calendar, "an exchange calendar name, e.g. CMES")
    flags = {}
    for key, default in (("weekend_streaming", False), ("monitoring", True)):
        value = spec.get(key, default)
        if not isinstance(value, bool):
            raise ValidationError(f"streams.{key}", value, "true or false")
        flags[key] = value
    lease = to_decimal(spec.get("lease", "0.10"), "streams.lease")
    if lease <= 0:
        raise ValidationError("streams.lease", lease, "an amount above zero")
    return StreamSettings(calendar or None, flags["weekend_streaming"], flags["monitoring"], lease)


ENVIRONMENT = {
    "DAILY_STREAMING_BUDGET": "the limit of the 'streaming' budget, e.g. 25.0",
    "EMERGENCY_STOP_THRESHOLD": "the stop fraction of the 'streaming' budget, e.g. 0.8",
    "WEEKEND_STREAMING": "true or false: may streams run at weekends",
    "COST_MONITORING_ENABLED": "true or false: do stream meters track the budget",
}
"""The second seed's environment variables, which override `spendgate.toml`."""


def apply_environment(config: Config, environ: Mapping[str, str]) -> Config:
    """The configuration with the seed's environment variables applied on top.

    Pure: the caller passes the environment (the CLI and server pass `os.environ`). A bad
    value is a `ConfigError` naming the variable.
    """
    try:
        return _apply_environment(config, environ)
    except ValidationError as exc:
        raise ConfigError(f"{exc.field}: got {exc.value!r}; expected {exc.expected}") from exc


def _apply_environment(config: Config, environ: Mapping[str, str]) -> Config:
    streams = config.streams
    if "WEEKEND_STREAMING" in environ:
        streams = replace(
            streams, weekend_streaming=_flag("WEEKEND_STREAMING", environ["WEEKEND_STREAMING"])
        )
    if "COST_MONITORING_ENABLED" in environ:
        streams = replace(
            streams, monitoring=_flag("COST_MONITORING_ENABLED", environ["COST_MONITORING_ENABLED"])
        )
    budgets = list(config.budgets)
    limit, stop = environ.get("DAILY_STREAMING_BUDGET"), environ.get("EMERGENCY_STOP_THRESHOLD")
    if limit is not None or stop is not None:
        names = [b.name for b in budgets]
        if STREAMING_BUDGET not in names:
            raise ValidationError(
                "DAILY_STREAMING_BUDGET" if limit is not None else "EMERGENCY_STOP_THRESHOLD",
                limit if limit is not None else stop,
                f"a [[budgets]] table named {STREAMING_BUDGET!r} in spendgate.toml to apply it to",
            )
        i = names.index(STREAMING_BUDGET)
        budget = budgets[i]
        if limit is not None:
            budget = replace(budget, limit=to_nanos(limit, "DAILY_STREAMING_BUDGET"))
        if stop is not None:
            fraction = parse_ladder({"stop": stop}, "EMERGENCY_STOP_THRESHOLD")[0].fraction
            rungs = [t for t in budget.thresholds if t.action != "stop"]
            ladder = validate_ladder(
                sorted([*rungs, Threshold(fraction, "stop")], key=lambda t: t.fraction),
                "EMERGENCY_STOP_THRESHOLD",
            )
            budget = replace(budget, thresholds=ladder)
        budgets[i] = budget
    return replace(config, budgets=tuple(budgets), streams=streams)


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValidationError(name, value, "true or false")


def _only(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValidationError(
            key, spec[unknown[0]], f"one of the keys {', '.join(sorted(allowed))}"
        )


def _source(name: str, spec: object) -> SourcePricing:
    where = f"sources.{name}"
    if not isinstance(spec, Mapping):
        raise ValidationError(where, spec, "a [sources.NAME] table")
    _only(spec, _SOURCE_KEYS, where)
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
        _only(version, _VERSION_KEYS, at)
        versions.append(_price(name, version, _effective(version.get("effective_from"), at), at))
    versions.sort(key=lambda p: p.effective_from)
    for a, b in itertools.pairwise(versions):
        if a.effective_from == b.effective_from:
            raise ValidationError(f"{where}.versions", b.version, "one price per effective_from")
    capability = spec.get("capability")
    if capability is not None and not isinstance(capability, str):
        raise ValidationError(
            f"{where}.capability", capability, "a name such as 'satellite_imagery'"
        )
    return SourcePricing(
        name, tuple(versions), allow_unpriced=unpriced == "allow", capability=capability
    )


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
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    raise ValidationError(
        f"{where}.effective_from", value, "a date-time with a zone, e.g. 2026-01-01T00:00:00Z"
    )
