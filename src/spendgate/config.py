"""Configuration: `spendgate.toml` read into a `Config`, and the environment over it.

Reading a file is the only I/O here (`load`); `parse` turns a mapping into a validated
`Config`, so a bad file is refused whole, with the key that is wrong and what would be valid.
With no file, `Config.seed()` gives the seed's sources, prices and $10 daily budget.

`Config`, its settings and the readers of the tables that can also change at run time
(sources, `[alerts]`) live in the core, `spendgate.settings`; `Config` is re-exported here
because users and the docs import it from `spendgate.config`.

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

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spendgate.budgets import Threshold, budget_from_config, parse_ladder, validate_ladder
from spendgate.errors import ConfigError, ValidationError
from spendgate.events import check_id
from spendgate.money import DEFAULT_CURRENCY, to_decimal, to_nanos
from spendgate.pricing import PriceBook
from spendgate.settings import (
    DEFAULT_RESERVATION_TTL,
    AnalyticsSettings,
    Config,
    StreamSettings,
    check_keys,
    parse_alerts,
    parse_source,
)
from spendgate.windows import parse_duration, zone

__all__ = [  # Config included: users import it from here (it lives in spendgate.settings)
    "DEFAULT_PATH",
    "ENVIRONMENT",
    "STREAMING_BUDGET",
    "Config",
    "apply_environment",
    "load",
    "parse",
]

DEFAULT_PATH = "spendgate.toml"

_TOP_KEYS = {
    "currency",
    "reservation_ttl",
    "sources",
    "budgets",
    "streams",
    "analytics",
    "alerts",
}
_ANALYTICS_KEYS = {"budget", "timezone", "reset_hour", "traditional_cost_per_request"}
_STREAM_KEYS = {"calendar", "weekend_streaming", "monitoring", "lease"}
STREAMING_BUDGET = "streaming"
"""The budget the seed's DAILY_STREAMING_BUDGET and EMERGENCY_STOP_THRESHOLD apply to."""


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
    check_keys(raw, _TOP_KEYS, "")
    sources = raw.get("sources", {})
    if not isinstance(sources, Mapping):
        raise ValidationError("sources", sources, "a table of [sources.NAME]")
    book = PriceBook({name: parse_source(name, spec) for name, spec in sources.items()})
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
        check_id(name, f"budgets[{i}].name")  # the store keeps it in every budget row
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
        parse_alerts(raw.get("alerts", {})),
    )


def _analytics(spec: object) -> AnalyticsSettings:
    if not isinstance(spec, Mapping):
        raise ValidationError("analytics", spec, "an [analytics] table")
    check_keys(spec, _ANALYTICS_KEYS, "analytics")
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
    # Not configured, no "savings vs traditional" figure: none is computed from a made-up cost.
    raw_cost = spec.get("traditional_cost_per_request")
    cost = None
    if raw_cost is not None:
        cost = to_nanos(raw_cost, "analytics.traditional_cost_per_request")
        if cost <= 0:
            raise ValidationError(
                "analytics.traditional_cost_per_request", raw_cost, "an amount above zero"
            )
    return AnalyticsSettings(budget, tz, reset_hour, cost)


def _streams(spec: object) -> StreamSettings:
    if not isinstance(spec, Mapping):
        raise ValidationError("streams", spec, "a [streams] table")
    check_keys(spec, _STREAM_KEYS, "streams")
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
