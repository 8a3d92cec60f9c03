"""Budgets, their threshold ladders, and where one stands in its window. Pure: values in,
values out (`decisions.py` combines their checks of a call into one answer).

A budget limits spend over a window for a scope. Its ladder says what happens as usage
(spent + reserved) climbs: `warn` only reports, `degrade` keeps paid calls for priority
callers, `stop` refuses them. A hard budget turns the ladder into caps that the store checks
atomically; a soft one never refuses.

>>> b = Budget("daily", limit=to_nanos("10.00"), window=Window("day"), emergency=to_nanos(50))
>>> b.cap(priority=True, emergency=False) == to_nanos("10.00")
True
>>> b.level(to_nanos("8.50"))
'warn'
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol

from spendgate.errors import ValidationError
from spendgate.money import (
    DEFAULT_CURRENCY,
    MAX_AMOUNT,
    MAX_NANOS,
    Nanos,
    decimal_to_nanos,
    exact,
    from_nanos,
    money_text,
    number_text,
    to_nanos,
)
from spendgate.windows import WEEKDAYS, Window, duration_text, parse_duration

Action = Literal["warn", "degrade", "stop"]
Level = Literal["normal", "warn", "degrade", "stop"]
LEVELS: tuple[Level, ...] = ("normal", "warn", "degrade", "stop")
"""The levels in ladder order: a level's index is its number (`/metrics` shows 0 to 3)."""
ACTIONS: tuple[Action, ...] = ("warn", "degrade", "stop")
ScopeKind = Literal["all", "service", "source", "label", "not"]
SCOPE_KINDS: tuple[ScopeKind, ...] = ("all", "service", "source", "label", "not")
MAX_FRACTION = Decimal(10)
DEFAULT_EMERGENCY_BUDGET_TEXT = "50.00"
DEFAULT_EMERGENCY_BUDGET = to_nanos(DEFAULT_EMERGENCY_BUDGET_TEXT)
"""The seed's `emergency_budget`: the most one emergency call may ask for ($50)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a budget counts: everything, one service, one source, calls with one label, or
    everything but one service or source.

    Written `all`, `service:enrichment`, `source:google_maps`, `label:customer=acme` or
    `not:source:databento_mbo` (everything but that source: kind `not`, `value` the service
    or source scope it leaves out, as written).
    """

    kind: ScopeKind = "all"
    value: str | None = None
    label_value: str | None = None

    @classmethod
    def parse(cls, text: str, field_name: str = "scope") -> Scope:
        """Read the written form of a scope."""
        kind, _, value = text.strip().partition(":")
        if kind == "all" and not value:
            return cls()
        if kind in ("service", "source") and value:
            return cls(kind, value)  # type: ignore[arg-type]
        if kind == "label":
            key, eq, label_value = value.partition("=")
            if key and eq and label_value:
                return cls("label", key, label_value)
        if kind == "not":
            inner, _, name = value.partition(":")
            if inner in ("service", "source") and name:
                return cls("not", f"{inner}:{name}")
        raise ValidationError(
            field_name,
            text,
            "'all', 'service:NAME', 'source:NAME', 'label:KEY=VALUE' or 'not:source:NAME' "
            "(or 'not:service:NAME')",
        )

    @property
    def left_out(self) -> Scope | None:
        """What a `not:` scope leaves out (`source:databento_mbo`); `None` for the others."""
        if self.kind != "not" or self.value is None:
            return None
        inner, _, name = self.value.partition(":")
        return Scope(inner, name)  # type: ignore[arg-type]

    def matches(self, service: str, source: str, labels: Mapping[str, str] | None = None) -> bool:
        """Whether a call by `service` to `source` with `labels` counts against this scope."""
        if self.kind == "all":
            return True
        if self.kind == "service":
            return service == self.value
        if self.kind == "source":
            return source == self.value
        if self.kind == "not":
            inner, _, name = (self.value or "").partition(":")
            return (service if inner == "service" else source) != name
        return labels is not None and labels.get(self.value or "") == self.label_value

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "label":
            return f"label:{self.value}={self.label_value}"
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """One rung of a ladder: at `fraction` of the limit, take `action`."""

    fraction: Decimal
    action: Action


DEFAULT_LADDER = (Threshold(Decimal("0.8"), "warn"), Threshold(Decimal("1.0"), "stop"))
"""The seed's daily budget: alert at 80%, refuse at 100%."""
STREAM_LADDER = (
    Threshold(Decimal("0.6"), "warn"),
    Threshold(Decimal("0.7"), "degrade"),
    Threshold(Decimal("0.8"), "stop"),
)
"""The seed's stream budget: warn at 60%, degrade at 70%, stop at 80%."""


def parse_ladder(spec: object, field_name: str = "thresholds") -> tuple[Threshold, ...]:
    """Read a ladder from `{warn = 0.6, stop = 0.8}` or `[{fraction = 0.6, action = "warn"}]`.

    Fractions must be in (0, 10] and strictly increasing; `degrade` and `stop` appear at
    most once each, `degrade` below `stop`.
    """
    items: list[tuple[object, object]]
    if isinstance(spec, Mapping):
        items = [(value, key) for key, value in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        items = []
        for i, rung in enumerate(spec):
            if not isinstance(rung, Mapping):
                raise ValidationError(
                    f"{field_name}[{i}]", rung, "{fraction = 0.8, action = 'warn'}"
                )
            items.append((rung.get("fraction"), rung.get("action")))
    else:
        raise ValidationError(field_name, spec, "a table such as {warn = 0.8, stop = 1.0}")
    ladder = tuple(
        Threshold(_fraction(raw, f"{field_name}.{action}"), _action(action, field_name))
        for raw, action in items
    )
    return validate_ladder(
        sorted(ladder, key=lambda t: t.fraction) if isinstance(spec, Mapping) else ladder,
        field_name,
    )


def validate_ladder(
    ladder: Sequence[Threshold], field_name: str = "thresholds"
) -> tuple[Threshold, ...]:
    """Check that a ladder is strictly increasing with at most one degrade and one stop."""
    fractions = [t.fraction for t in ladder]
    for t in ladder:
        _fraction(t.fraction, f"{field_name}.{t.action}")
        _action(t.action, field_name)
    if any(b <= a for a, b in itertools.pairwise(fractions)):
        raise ValidationError(
            field_name, [str(f) for f in fractions], "fractions that strictly increase"
        )
    actions = [t.action for t in ladder]
    for once in ("degrade", "stop"):
        if actions.count(once) > 1:
            raise ValidationError(field_name, actions, f"at most one '{once}' rung")
    if (
        "degrade" in actions
        and "stop" in actions
        and actions.index("degrade") > actions.index("stop")
    ):
        raise ValidationError(field_name, actions, "'degrade' below 'stop'")
    return tuple(ladder)


def _fraction(raw: object, field_name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise ValidationError(field_name, raw, "a fraction of the limit in (0, 10], e.g. 0.8")
    if isinstance(raw, str):
        value = number_text(raw, field_name)
    else:
        value = Decimal(repr(raw) if isinstance(raw, float) else raw)
    if not value.is_finite() or not 0 < value <= MAX_FRACTION:
        raise ValidationError(field_name, raw, "a fraction of the limit in (0, 10], e.g. 0.8")
    return value


def _action(raw: object, field_name: str) -> Action:
    if raw not in ACTIONS:
        raise ValidationError(f"{field_name}.action", raw, "one of warn, degrade, stop")
    return raw


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """How a gate leases a slice of a hard budget to authorize from locally.

    A lease takes `share` of what remains of the budget, but never its last `floor` (a share
    of the cap): as the budget nears its limit the slices shrink, and the last few percent
    are decided centrally, call by call. A lease lives `ttl` unless renewed (a crashed
    holder's lease comes back then) and is returned after `idle` without use.

    >>> p = LeasePolicy()
    >>> p.slice(cap=to_nanos(100), used=0) == to_nanos(10)
    True
    >>> p.slice(cap=to_nanos(100), used=to_nanos(94))
    1000000000
    >>> p.slice(cap=to_nanos(100), used=to_nanos(95))
    0
    """

    share: Decimal = Decimal("0.1")
    floor: Decimal = Decimal("0.05")
    ttl: timedelta = timedelta(seconds=60)
    idle: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        for name, value in (("share", self.share), ("floor", self.floor)):
            if not isinstance(value, Decimal) or not value.is_finite() or not 0 < value < 1:
                raise ValidationError(f"lease.{name}", value, "a fraction above 0 and below 1")
        for name, span in (("ttl", self.ttl), ("idle", self.idle)):
            if span <= timedelta(0):
                raise ValidationError(f"lease.{name}", span, "a duration above zero")

    @exact
    def slice(self, cap: Nanos, used: Nanos) -> Nanos:
        """How much one lease may take now (nano-units): `share` of what remains, above the
        floor."""
        remaining = cap - used
        above_floor = remaining - int(cap * self.floor)
        return max(0, min(above_floor, int(remaining * self.share)))


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit on spend over a window for a scope.

    `limit`, `emergency` and `emergency_budget` are nano-units (a definition, compared on
    the hot path); `limit_amount` and `emergency_amount` are the first two as `Decimal`s of
    currency units. `emergency` is extra room above the stop line that only calls marked
    emergency may use, over the whole window; `emergency_budget` (the seed's name and
    default, $50) is the most one emergency call may ask for to use that room: a larger one
    gets only the room below the stop line (the seed denies a $60 emergency call).
    A soft budget (`hard=False`) reports levels but never refuses.
    """

    name: str
    limit: Nanos
    window: Window = field(default_factory=Window)
    scope: Scope = field(default_factory=Scope)
    emergency: Nanos = 0
    emergency_budget: Nanos = DEFAULT_EMERGENCY_BUDGET
    thresholds: tuple[Threshold, ...] = DEFAULT_LADDER
    hard: bool = True
    lease: LeasePolicy | None = None
    fail_open: bool = False
    alerts: tuple[Decimal, ...] | None = None
    """Fractions of the limit that raise an alert (`None`: the `[alerts]` defaults)."""
    _lines: tuple[tuple[Nanos, Action], ...] = field(init=False, repr=False, compare=False)
    _stop: Nanos | None = field(init=False, repr=False, compare=False)
    """`cap(priority=True, emergency=False)`: where a hard budget stops a priority call."""

    @exact
    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError("budgets.name", self.name, "a non-empty name")
        amounts = (
            ("limit", self.limit),
            ("emergency", self.emergency),
            ("emergency_budget", self.emergency_budget),
        )
        for name, amount in amounts:
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ValidationError(f"budgets.{self.name}.{name}", amount, "an int of nano-units")
            if not 0 <= amount <= MAX_NANOS:
                raise ValidationError(
                    f"budgets.{self.name}.{name}", from_nanos(amount), f"0 to {MAX_AMOUNT:,}"
                )
        if self.limit == 0:
            raise ValidationError(f"budgets.{self.name}.limit", 0, "a limit above zero")
        if self.lease is not None and not self.hard:
            raise ValidationError(
                f"budgets.{self.name}.lease", "a soft budget", "leases on hard budgets only"
            )
        validate_ladder(self.thresholds, f"budgets.{self.name}.thresholds")
        # Resolved once: the hot path compares integers only.
        limit = from_nanos(self.limit)
        lines = tuple((decimal_to_nanos(limit * t.fraction), t.action) for t in self.thresholds)
        object.__setattr__(self, "_lines", lines)
        stop = next((line for line, rung in lines if rung == "stop"), self.limit)
        object.__setattr__(self, "_stop", stop if self.hard else None)

    @property
    def limit_amount(self) -> Decimal:
        """`limit` in currency units, as people read it (`limit` is nano-units)."""
        return from_nanos(self.limit)

    @property
    def emergency_amount(self) -> Decimal:
        """`emergency` in currency units, as people read it (`emergency` is nano-units)."""
        return from_nanos(self.emergency)

    @property
    def lines(self) -> tuple[tuple[Threshold, Nanos], ...]:
        """Each rung of the ladder with the usage at which it takes effect (nano-units), the
        lines `level()` compares: what a dashboard draws."""
        return tuple((t, at) for t, (at, _) in zip(self.thresholds, self._lines, strict=True))

    def line(self, action: Action) -> Nanos | None:
        """The usage at which the rung with `action` takes effect, if the ladder has one."""
        for line, rung in self._lines:
            if rung == action:
                return line
        return None

    def emergency_covers(self, requested: Nanos) -> bool:
        """Whether an emergency call of `requested` may use the emergency allowance: at most
        `emergency_budget` (the seed's per-request bound)."""
        return requested <= self.emergency_budget

    def cap(self, *, priority: bool, emergency: bool) -> Nanos | None:
        """The most this budget lets a caller's usage reach, or `None` when it never refuses.

        A hard budget stops at its `stop` rung (the limit itself if the ladder has none);
        non-priority callers stop at `degrade`; emergency callers get `emergency` more.
        """
        cap = self._stop
        if cap is None:
            return None
        if emergency:
            return cap + self.emergency
        degrade = self.line("degrade")
        if degrade is not None and not priority:
            return min(cap, degrade)
        return cap

    def counts_like(self, other: Budget) -> bool:
        """Whether `other` counts the same calls over the same windows, so that this
        budget's counter is `other`'s too (a changed limit or ladder keeps it)."""
        return self.window == other.window and self.scope == other.scope

    def past_stop(self, used: Nanos) -> bool:
        """Whether `used` is past where this budget stops a priority call: only an emergency
        call (on the emergency allowance) takes a hard budget there."""
        return self._stop is not None and used > self._stop

    def level(self, used: Nanos) -> Level:
        """The highest rung that `used` has reached (`normal` below the first)."""
        level: Level = "normal"
        for line, action in self._lines:
            if used >= line:
                level = action
        return level

    def to_spec(self) -> dict[str, Any]:
        """The budget as its `[[budgets]]` table (without `name`): what `budget_from_config`
        reads back into an equal budget."""
        w = self.window
        spec: dict[str, Any] = {
            "limit": money_text(self.limit),
            "emergency": money_text(self.emergency),
            "emergency_budget": money_text(self.emergency_budget),
            "scope": str(self.scope),
            "window": w.kind,
            "timezone": w.tz,
            "reset_hour": w.reset_hour,
            "thresholds": {t.action: str(t.fraction) for t in self.thresholds},
            "hard": self.hard,
            "fail_open": self.fail_open,
        }
        if w.kind == "week":
            spec["week_start"] = WEEKDAYS[w.week_start]
        if w.length is not None:
            spec["length"] = duration_text(w.length)
        if w.granularity is not None:
            spec["granularity"] = duration_text(w.granularity)
        if self.alerts is not None:
            spec["alerts"] = [str(f) for f in self.alerts]
        if self.lease is not None:
            spec["lease"] = {
                "share": str(self.lease.share),
                "floor": str(self.lease.floor),
                "ttl": duration_text(self.lease.ttl),
                "idle": duration_text(self.lease.idle),
            }
        return spec

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (amounts as decimal strings)."""
        w = self.window
        return {
            "name": self.name,
            "limit": money_text(self.limit),
            "emergency": money_text(self.emergency),
            "emergency_budget": money_text(self.emergency_budget),
            "scope": str(self.scope),
            "window": w.kind,
            "timezone": w.tz,
            "reset_hour": w.reset_hour,
            "hard": self.hard,
            "thresholds": {t.action: str(t.fraction) for t in self.thresholds},
            "leased": self.lease is not None,
            "fail_open": self.fail_open,
        }


class Figures(Protocol):
    """A budget's figures over one window, as a store reports them (`store.base.Balance`)."""

    @property
    def spent(self) -> Nanos: ...
    @property
    def reserved(self) -> Nanos: ...
    @property
    def overshoot(self) -> Nanos: ...
    @property
    def used(self) -> Nanos: ...


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget stands in its current window, as of a time.

    Its amounts (`limit`, `spent`, `reserved`, `overshoot`, `remaining`) are exact
    `Decimal`s of `currency` units, what people read; the same figures in nano-units, for
    code that compares or adds them, are the `*_nanos` properties (and `balance`, the
    store's figures as read).

    >>> from datetime import UTC
    >>> from spendgate.store.base import Balance
    >>> daily = Budget("daily", limit=to_nanos("10"))
    >>> at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    >>> s = BudgetStatus(daily, at, at, Balance(spent=to_nanos("0.081")), at)
    >>> s.spent, s.remaining, s.spent_nanos
    (Decimal('0.081'), Decimal('9.919'), 81000000)
    """

    budget: Budget
    window_start: datetime
    window_end: datetime
    balance: Figures
    as_of: datetime
    currency: str = DEFAULT_CURRENCY
    """The currency of every amount (the deployment's, `Config.currency`)."""

    @property
    def limit(self) -> Decimal:
        """The budget's limit, in currency units (`budget.limit` is nano-units)."""
        return self.budget.limit_amount

    @property
    def spent(self) -> Decimal:
        """Settled spend in the window, in currency units."""
        return from_nanos(self.balance.spent)

    @property
    def reserved(self) -> Decimal:
        """Pending holds in the window, in currency units."""
        return from_nanos(self.balance.reserved)

    @property
    def overshoot(self) -> Decimal:
        """Spend booked above the cap in the window (commits past their holds), in currency
        units."""
        return from_nanos(self.balance.overshoot)

    @property
    def remaining(self) -> Decimal:
        """The limit less spent and reserved (negative after overshoot or emergency use), in
        currency units."""
        return from_nanos(self.remaining_nanos)

    @property
    def spent_nanos(self) -> Nanos:
        """`spent` in nano-units."""
        return self.balance.spent

    @property
    def reserved_nanos(self) -> Nanos:
        """`reserved` in nano-units."""
        return self.balance.reserved

    @property
    def used_nanos(self) -> Nanos:
        """Spent plus reserved, in nano-units: what the ladder and caps compare."""
        return self.balance.used

    @property
    def remaining_nanos(self) -> Nanos:
        """`remaining` in nano-units."""
        return self.budget.limit - self.balance.used

    @property
    def level(self) -> Level:
        """The ladder rung the window has reached."""
        return self.budget.level(self.balance.used)

    @property
    def emergency_used(self) -> Decimal:
        """How much of the emergency allowance the window has taken, in currency units."""
        return from_nanos(self.emergency_used_nanos)

    @property
    def emergency_used_nanos(self) -> Nanos:
        """`emergency_used` in nano-units: usage past the stop line that the budget approved
        (overshoot, which it never approved, left out), at most the allowance. Only emergency
        callers pass the stop line (or a limit lowered below what was used); 0 for a soft
        budget."""
        stop = self.budget.cap(priority=True, emergency=False)
        if stop is None:
            return 0
        approved = self.balance.used - self.balance.overshoot
        return min(self.budget.emergency, max(0, approved - stop))

    @property
    def used_percent(self) -> Decimal:
        """Spent and reserved as a percentage of the limit (`used_percent()`)."""
        return used_percent(self.balance.used, self.budget.limit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with money as exact decimal strings of `currency` units and the
        `as_of` time."""
        return {
            **self.budget.to_dict(),
            "currency": self.currency,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "spent": money_text(self.balance.spent),
            "reserved": money_text(self.balance.reserved),
            "overshoot": money_text(self.balance.overshoot),
            "remaining": money_text(self.remaining_nanos),
            "used_percent": float(self.used_percent),
            "level": self.level,
            "as_of": self.as_of.isoformat(),
        }


PERCENT_PLACES = Decimal("0.01")


def used_percent(used: Nanos, limit: Nanos) -> Decimal:
    """The one percentage of a budget every face shows: spent and reserved over the limit,
    times 100, to two decimals (half up); what is left is `100 - used_percent`, so the two
    always add up to 100. A limit of zero counts as all used.

    >>> used_percent(to_nanos("2.5"), to_nanos("3")), 100 - used_percent(1, 3)
    (Decimal('83.33'), Decimal('66.67'))
    """
    if limit <= 0:
        return Decimal(100)
    return (Decimal(used) * 100 / Decimal(limit)).quantize(PERCENT_PLACES, ROUND_HALF_UP)


RESERVED_NAMES = frozenset({"status"})
"""Names no budget may take: the HTTP API answers `GET /api/budgets/status` with every
budget's standing, so a budget of that name could never be read back at its own path."""


def budget_from_config(name: str, spec: Mapping[str, object]) -> Budget:
    """Build a budget from its `[[budgets]]` table in `spendgate.toml`."""
    where = f"budgets.{name}"
    if name in RESERVED_NAMES:
        raise ValidationError(
            f"{where}.name", name, "any name but 'status' (/api/budgets/status is every budget's)"
        )
    known = {
        "name",
        "limit",
        "window",
        "timezone",
        "reset_hour",
        "week_start",
        "length",
        "granularity",
        "scope",
        "emergency",
        "emergency_budget",
        "thresholds",
        "hard",
        "lease",
        "fail_open",
        "alerts",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", spec[unknown[0]], f"one of {sorted(known)}")
    if "limit" not in spec:
        raise ValidationError(f"{where}.limit", None, 'a limit such as "10.00"')
    try:
        window = _window(spec)
    except ValidationError as exc:  # name the budget, not just the window's field
        raise ValidationError(f"{where}.{exc.field}", exc.value, exc.expected) from None
    thresholds = spec.get("thresholds")
    hard = spec.get("hard", True)
    if not isinstance(hard, bool):
        raise ValidationError(f"{where}.hard", hard, "true or false")
    fail_open = spec.get("fail_open", False)
    if not isinstance(fail_open, bool):
        raise ValidationError(f"{where}.fail_open", fail_open, "true or false")
    return Budget(
        name=name,
        limit=to_nanos(spec["limit"], f"{where}.limit"),
        window=window,
        scope=Scope.parse(str(spec.get("scope", "all")), f"{where}.scope"),
        emergency=to_nanos(spec.get("emergency", 0), f"{where}.emergency"),
        emergency_budget=to_nanos(
            spec.get("emergency_budget", DEFAULT_EMERGENCY_BUDGET_TEXT),
            f"{where}.emergency_budget",
        ),
        thresholds=DEFAULT_LADDER
        if thresholds is None
        else parse_ladder(thresholds, f"{where}.thresholds"),
        hard=hard,
        lease=_lease(spec.get("lease", False), f"{where}.lease"),
        fail_open=fail_open,
        alerts=_alert_fractions(spec.get("alerts"), f"{where}.alerts"),
    )


def _alert_fractions(spec: object, where: str) -> tuple[Decimal, ...] | None:
    """A budget's own alert fractions: a list such as `[0.5, 0.8, 1.0]`."""
    if spec is None:
        return None
    if isinstance(spec, str) or not isinstance(spec, Sequence):
        raise ValidationError(where, spec, "a list of fractions such as [0.8, 1.0]")
    return tuple(sorted({_fraction(f, f"{where}[{i}]").normalize() for i, f in enumerate(spec)}))


_LEASE_KEYS = ("share", "floor", "ttl", "idle")


def _lease(spec: object, where: str) -> LeasePolicy | None:
    """A budget's `lease`: `true` for the defaults, or a table of `share`, `floor`, `ttl`,
    `idle` (fractions as `"10%"` or `0.1`, durations as `"60s"`)."""
    if spec is False:
        return None
    if spec is True:
        return LeasePolicy()
    if not isinstance(spec, Mapping):
        raise ValidationError(where, spec, f"true, false, or a table of {', '.join(_LEASE_KEYS)}")
    unknown = sorted(set(spec) - set(_LEASE_KEYS))
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", spec[unknown[0]], f"one of {_LEASE_KEYS}")
    defaults = LeasePolicy()
    try:
        return LeasePolicy(
            share=_share(spec.get("share", defaults.share), f"{where}.share"),
            floor=_share(spec.get("floor", defaults.floor), f"{where}.floor"),
            ttl=parse_duration(spec.get("ttl", defaults.ttl), f"{where}.ttl"),
            idle=parse_duration(spec.get("idle", defaults.idle), f"{where}.idle"),
        )
    except ValidationError as exc:
        if exc.field.startswith(where):
            raise
        raise ValidationError(
            f"{where}.{exc.field.removeprefix('lease.')}", exc.value, exc.expected
        ) from None


def _share(value: object, field_name: str) -> Decimal:
    """A lease's share: `"10%"`, or a fraction such as `0.1`."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return number_text(value.strip()[:-1], field_name) / 100
    return _fraction(value, field_name)


def _window(spec: Mapping[str, object]) -> Window:
    """The window of a `[[budgets]]` table (errors name the window's own fields)."""
    length = spec.get("length")
    granularity = spec.get("granularity")
    return Window(
        str(spec.get("window", "day")),  # type: ignore[arg-type]
        tz=str(spec.get("timezone", "UTC")),
        reset_hour=spec.get("reset_hour", 0),  # type: ignore[arg-type]
        week_start=_weekday(spec.get("week_start", 0), "week_start"),
        length=None if length is None else parse_duration(length, "length"),  # type: ignore[arg-type]
        granularity=None if granularity is None else parse_duration(granularity, "granularity"),  # type: ignore[arg-type]
    )


def _weekday(value: object, field_name: str) -> int:
    if isinstance(value, str) and value.lower() in WEEKDAYS:
        return WEEKDAYS.index(value.lower())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    raise ValidationError(field_name, value, "a weekday name or 0 (Monday) to 6 (Sunday)")
