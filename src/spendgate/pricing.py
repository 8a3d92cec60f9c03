"""Prices: what one use of a source costs. Pure values and arithmetic, no I/O.

A `Price` is a set of `Rate`s, one per priced dimension (`request`, `MB`, `hour`,
`input_token`...). A rate is flat or tiered; tiers with a `period` count usage per calendar
period, which is how "the first 10,000 requests of a month are free" is written. Prices are
versioned: each takes effect at `effective_from`, and an event keeps the version it was costed
with. A price may also change with the size of one call (`SizeTier`): above a size, every unit
of the call costs the tier's rate, which is how a long LLM prompt is billed.

>>> price = Price.parse("gpt-4o", {"input_token": "2.50/1M", "output_token": "10.00/1M"})
>>> price.cost({"input_token": 1000, "output_token": 500})
7500000
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from spendgate.errors import UnknownSourceError, UnpricedSourceError, ValidationError
from spendgate.events import MAX_ITEMS, MAX_KEY_LENGTH, TEXT_RULE, storable
from spendgate.money import (
    MAX_AMOUNT,
    NANOS_PER_UNIT,
    NUMBER,
    Nanos,
    exact,
    number_text,
    to_decimal,
)
from spendgate.windows import EPOCH, Window, duration_text, require_aware, zone

REQUEST = "request"
"""The dimension every call has one of; it defaults to 1 when a price uses it."""

Usage = Mapping[str, Decimal | int | str]

_MULTIPLIERS = {"k": Decimal(10**3), "m": Decimal(10**6), "b": Decimal(10**9)}
# The numbers of a rate follow money's one rule for numbers in text (ASCII digits, one point);
# spaces may stand between the parts (`"2.50 / 1M tokens"`), never inside a number.
_RATE_RE = re.compile(
    rf"""[ ]*\$?(?P<amount>{NUMBER})[ ]*
        (?:/[ ]*(?P<count>{NUMBER})?[ ]*
           (?:(?P<mult>[kKmMbB])(?![A-Za-z]))?[ ]*
           (?P<unit>[A-Za-z_][A-Za-z0-9_]*)?)?[ ]*""",
    re.VERBOSE | re.ASCII,
)

# Plural and case variants people write, mapped to one canonical dimension name.
_UNIT_ALIASES = {
    "requests": REQUEST,
    "req": REQUEST,
    "call": REQUEST,
    "calls": REQUEST,
    "tokens": "token",
    "records": "record",
    "credits": "credit",
    "hours": "hour",
    "hr": "hour",
    "h": "hour",
    "minutes": "minute",
    "min": "minute",
    "mb": "MB",
    "kb": "KB",
    "gb": "GB",
    "mib": "MB",
    "kib": "KB",
    "gib": "GB",
}
# Raw measurements a caller may give instead of the priced unit. Data follows the seed's
# convention of binary megabytes (bytes / 1024 / 1024).
_CONVERSIONS: dict[str, dict[str, Decimal]] = {
    "bytes": {"KB": Decimal(2**10), "MB": Decimal(2**20), "GB": Decimal(2**30)},
    "seconds": {"minute": Decimal(60), "hour": Decimal(3600)},
}
STREAM_MEASURES = ("bytes", "seconds", "events")
"""What a stream meter measures (data, connected time, messages), kept with each event for
the stream's history. A source priced by data volume or time takes all three, and prices
those that convert to its units."""
_STREAM_UNITS = frozenset(unit for to in _CONVERSIONS.values() for unit in to)


def canonical_unit(unit: str) -> str:
    """The canonical name of a dimension: `requests` -> `request`, `mb` -> `MB`."""
    known = _CANONICAL.get(unit)
    if known is not None:
        return known
    name = unit.strip()
    canonical = _UNIT_ALIASES.get(name.lower(), _UNIT_ALIASES.get(name, name))
    if len(_CANONICAL) < _CANONICAL_MAX:  # names seen before, bounded: callers name units
        _CANONICAL[unit] = canonical
    return canonical


_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX = 4096


@exact
def parse_rate(text: object, field_name: str = "price") -> tuple[Decimal, str | None]:
    """Read a per-unit price: `"0.002"`, `0.002`, `"0.002/request"`, `"2.50/1M"`, `"0.01/MB"`.

    Returns the price of one unit and the unit named, if any (`"2.50/1M tokens"` ->
    `(Decimal('0.0000025'), 'token')`).
    """
    if not isinstance(text, str):
        return to_decimal(text, field_name), None
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise ValidationError(
            field_name, text, "a price such as '0.002', '0.002/request', '2.50/1M' or '0.01/MB'"
        )
    amount = to_decimal(match["amount"], field_name)
    count = Decimal(match["count"]) if match["count"] else Decimal(1)
    if match["mult"]:
        count *= _MULTIPLIERS[match["mult"].lower()]
    if count <= 0:
        raise ValidationError(field_name, text, "a positive count of units after '/'")
    unit = canonical_unit(match["unit"]) if match["unit"] else None
    return amount / count, unit


def clean_usage(units: object) -> dict[str, Decimal]:
    """A call's usage, validated: a mapping of unit name to quantity (empty when none)."""
    if units is None:
        return {}
    if not isinstance(units, Mapping):
        raise ValidationError("units", units, 'a mapping of unit to quantity, e.g. {"MB": 2}')
    if len(units) > MAX_ITEMS:
        raise ValidationError("units", f"{len(units)} units", f"at most {MAX_ITEMS} units")
    out = {}
    for key, value in units.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not storable(key):
            raise ValidationError(
                "units",
                key,
                f"non-empty unit names of at most {MAX_KEY_LENGTH} characters of {TEXT_RULE}",
            )
        out[key] = to_quantity(value, f"units.{key}")
    return out


def to_quantity(value: object, field_name: str) -> Decimal:
    """A usage quantity: a finite, non-negative number (never a boolean)."""
    # The usual case first: a whole count, or a quantity already read. Both convert exactly
    # in any context (and NaN is never compared: that would trap).
    if type(value) is int:
        if value >= 0:
            return Decimal(value)
    elif type(value) is Decimal and value.is_finite() and value >= 0:
        return value
    return _to_quantity(value, field_name)


@exact
def _to_quantity(value: object, field_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValidationError(field_name, value, "a number of units of zero or more")
    if isinstance(value, str):
        quantity = number_text(value, field_name)
    else:
        quantity = Decimal(repr(value) if isinstance(value, float) else value)
    if not quantity.is_finite() or quantity < 0:
        raise ValidationError(field_name, value, "a finite number of units of zero or more")
    return quantity


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to `up_to` (cumulative within the period; `None` = no end) cost `rate` each."""

    up_to: Decimal | None
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Rate:
    """The price of one dimension: flat (one open tier) or tiered, counted per `period`."""

    unit: str
    tiers: tuple[Tier, ...]
    period: Window | None = None

    @property
    def flat(self) -> bool:
        """Whether the rate is the same for every unit, whatever was used before."""
        return len(self.tiers) == 1

    @property
    def free(self) -> bool:
        """Whether no unit of this dimension ever costs anything."""
        return all(t.rate == 0 for t in self.tiers)

    @property
    def max_rate(self) -> Decimal:
        """The highest per-unit rate of any tier: what an estimate must assume."""
        return max(t.rate for t in self.tiers)

    @exact
    def cost(self, quantity: Decimal, used_before: Decimal = Decimal(0)) -> Decimal:
        """Exact cost of `quantity` units when `used_before` units were already used this period."""
        total = Decimal(0)
        lo, hi = used_before, used_before + quantity
        tier_lo = Decimal(0)
        for tier in self.tiers:
            tier_hi = tier.up_to
            start = max(lo, tier_lo)
            stop = hi if tier_hi is None else min(hi, tier_hi)
            if stop > start:
                total += (stop - start) * tier.rate
            if tier_hi is None or hi <= tier_hi:
                break
            tier_lo = tier_hi
        return total


@dataclass(frozen=True, slots=True)
class SizeTier:
    """Rates for a whole call whose size is above `above`.

    A call's size is the sum of its quantities of the price's `size_units` (an LLM call's
    prompt tokens, cached ones included). Above `above`, each unit the tier names costs the
    tier's rate, for every unit of the call, not only those past the size: that is how
    providers bill a long prompt, output tokens included. Units the tier does not name keep
    the rate of the next lower tier that names them, or the base rate.
    """

    above: Decimal
    rates: tuple[tuple[str, Decimal], ...]


@dataclass(frozen=True, slots=True)
class VariantHours:
    """The hours a variant of a price is the one a call is billed in (DeepSeek's off-peak
    rates): `windows` of `(start, end, weekdays)`, minutes of the day in UTC (an end at or
    before its start runs past midnight; start = end is the whole day), on the weekdays
    (1 = Monday) of the calendar of `weekday_timezone`."""

    variant: str
    windows: tuple[tuple[int, int, frozenset[int]], ...]
    weekday_timezone: str = "UTC"

    def edges(self, start: datetime, end: datetime) -> list[datetime]:
        """`start`, and every moment after it up to `end` where `holds()` may change: the
        windows' edges on each UTC day, and each midnight of the weekday calendar."""
        moments = [start]
        minutes = {m for window in self.windows for m in window[:2]}
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= end:
            moments += (day + timedelta(minutes=m) for m in minutes)
            day += timedelta(days=1)
        calendar = zone(self.weekday_timezone)
        local = start.astimezone(calendar).date()
        while (midnight := datetime.combine(local + timedelta(days=1), time(), calendar)) <= end:
            moments.append(midnight)
            local += timedelta(days=1)
        return [m for m in moments if start <= m <= end]

    def holds(self, when: datetime) -> bool:
        """Whether `when` falls in one of the windows."""
        utc = when.astimezone(UTC)
        minute = utc.hour * 60 + utc.minute
        weekday = when.astimezone(zone(self.weekday_timezone)).isoweekday()
        for start, end, weekdays in self.windows:
            if weekday not in weekdays:
                continue
            if start < end and start <= minute < end:
                return True
            if start >= end and (minute >= start or minute < end):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Price:
    """One version of a source's price. No rates means free."""

    source: str
    rates: tuple[Rate, ...] = ()
    effective_from: datetime = EPOCH
    named: tuple[str, ...] = field(default=(), compare=False)
    """Every unit the price names, those it charges nothing for included (`rates` keeps
    only what costs something): a call may give any of them. In the order written; two
    prices naming the same units are equal whatever the order (`_names`)."""
    size_units: tuple[str, ...] = ()
    """The units whose sum is a call's size, which picks its `size_tiers`."""
    size_tiers: tuple[SizeTier, ...] = ()
    """Rates for calls above a size, smallest size first."""
    variants: tuple[str, ...] = ()
    """The ways a call may be billed apart from the standard one (an LLM's service tiers,
    batch and regions): units named `<variant>_<unit>` are that variant's. A call is billed
    in the variants of the units it gives (the standard one when it gives none of a
    variant's): the priced units of the others may be left out, as 0."""
    variant_hours: tuple[VariantHours, ...] = ()
    """The variants a call is billed in by the time it is made (see `timed_variant`)."""
    _names: frozenset[str] = field(init=False, repr=False)
    _by_unit: dict[str, Rate] = field(init=False, repr=False, compare=False)
    _accepts: frozenset[str] = field(init=False, repr=False, compare=False)
    _version: str = field(init=False, repr=False, compare=False)
    _tiered: tuple[Rate, ...] = field(init=False, repr=False, compare=False)
    _flat: dict[str, Decimal] = field(init=False, repr=False, compare=False)
    _sized: tuple[tuple[Decimal, dict[str, Decimal]], ...] = field(
        init=False, repr=False, compare=False
    )
    _variant_of: dict[str, str | None] = field(init=False, repr=False, compare=False)
    _groups: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        require_aware(self.effective_from, "effective_from")
        object.__setattr__(self, "effective_from", self.effective_from.astimezone(UTC))
        units = [r.unit for r in self.rates]
        if len(set(units)) != len(units):
            raise ValidationError(f"sources.{self.source}.price", units, "each unit at most once")
        named = tuple(dict.fromkeys((*self.named, *units, *self.size_units)))
        object.__setattr__(self, "named", named)
        object.__setattr__(self, "_names", frozenset(named))
        measures = STREAM_MEASURES if _STREAM_UNITS.intersection(named) else ()
        object.__setattr__(self, "_accepts", frozenset((*named, *measures)))
        object.__setattr__(self, "_by_unit", {r.unit: r for r in self.rates})
        object.__setattr__(self, "_tiered", tuple(r for r in self.rates if not r.flat))
        # Rates the same for every unit, whatever was used before: a quantity times the rate.
        flat = {r.unit: r.tiers[0].rate for r in self.rates if r.flat and r.tiers[0].up_to is None}
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(
            self, "_version", f"{self.source}@{self.effective_from:%Y-%m-%dT%H:%M:%SZ}"
        )
        object.__setattr__(self, "_sized", self._size_rates())
        object.__setattr__(self, "_variant_of", self._variant_units(named))
        for hours in self.variant_hours:
            if hours.variant not in self.variants:
                raise ValidationError(
                    f"sources.{self.source}.variant_hours", hours.variant,
                    f"one of the price's variants ({', '.join(self.variants) or 'none'})",
                )  # fmt: skip
        groups: dict[str | None, tuple[list[str], list[str]]] = {}
        for unit in self._by_unit:
            groups.setdefault(self._variant_of.get(unit), ([], []))[0].append(unit)
        for unit in self.size_units:
            groups.setdefault(self._variant_of.get(unit), ([], []))[1].append(unit)
        object.__setattr__(
            self, "_groups", {v: (tuple(a), tuple(b)) for v, (a, b) in groups.items()}
        )

    def _variant_units(self, named: Sequence[str]) -> dict[str, str | None]:
        """The variant each unit of a price with variants is in (`None`: standard), checked:
        each variant's units are the standard units named with the variant first, all of
        them (so a call in a variant gives every count a standard call gives)."""
        if not self.variants:
            return {}
        longest = sorted(self.variants, key=len, reverse=True)
        of = {unit: next((v for v in longest if unit.startswith(f"{v}_")), None) for unit in named}
        standard = [unit for unit, v in of.items() if v is None]
        where = f"sources.{self.source}.price"
        for unit, v in of.items():
            if v is not None and unit.removeprefix(f"{v}_") not in standard:
                raise ValidationError(
                    f"{where}.{unit}", unit, f"a unit of variant {v!r} named {v}_<unit> after "
                    f"a standard unit ({', '.join(standard) or 'none'})",
                )  # fmt: skip
        for v in self.variants:
            missing = [unit for unit in standard if f"{v}_{unit}" not in of]
            if missing:
                raise ValidationError(
                    f"{where}.{v}_{missing[0]}", None, f"a rate in variant {v!r} for every "
                    f"standard unit ({', '.join(standard)}), 0 included",
                )  # fmt: skip
        return of

    def _size_rates(self) -> tuple[tuple[Decimal, dict[str, Decimal]], ...]:
        """Each size tier with the full rates it applies (its own over the lower tiers')."""
        where = f"sources.{self.source}.size_tiers"
        if self.size_tiers and not self.size_units:
            raise ValidationError(
                f"sources.{self.source}.size_units", [], "the units whose sum is a call's size"
            )
        rates: dict[str, Decimal] = {}
        out = []
        previous: Decimal | None = None
        for i, tier in enumerate(self.size_tiers):
            if previous is not None and tier.above <= previous:
                raise ValidationError(f"{where}[{i}].above", tier.above, f"more than {previous}")
            previous = tier.above
            for unit, rate in tier.rates:
                base = self._by_unit.get(unit)
                if base is None or not base.flat:
                    raise ValidationError(
                        f"{where}[{i}].price.{unit}",
                        f"{rate:f}",
                        "a unit the price has a flat rate for (0 included)",
                    )
                rates[unit] = rate
            out.append((tier.above, dict(rates)))
        return tuple(out)

    @classmethod
    def parse(
        cls,
        source: str,
        spec: object,
        *,
        effective_from: datetime = EPOCH,
        tiers: Mapping[str, object] | None = None,
        period: Window | None = None,
        size_units: object = None,
        size_tiers: object = None,
        variants: object = None,
        variant_hours: object = None,
    ) -> Price:
        """Build a price from its configuration form.

        `spec` is `"free"`/`0`, one rate (`"0.002/request"`; a rate with no unit is per
        request), or a table of unit to rate (`{"MB": "0.01", "hour": "1.00"}`). `tiers` maps
        a unit to a list of `{up_to, price}` steps counted per `period` (a month in UTC by
        default). `size_tiers` is a list of `{above, price}` rates for a whole call whose size
        (the sum of its `size_units`) is above `above` (see `SizeTier`).
        """
        where = f"sources.{source}.price"
        rates: dict[str, Rate] = {}
        if isinstance(spec, str) and spec.strip().lower() == "free":
            pass
        elif isinstance(spec, Mapping):
            for unit, rate_text in spec.items():
                if canonical_unit(str(unit)) in rates:
                    raise ValidationError(f"{where}.{unit}", rate_text, "each unit priced once")
                rate, named = parse_rate(rate_text, f"{where}.{unit}")
                if named is not None and named != canonical_unit(str(unit)):
                    raise ValidationError(f"{where}.{unit}", rate_text, f"a price per {unit}")
                rates[canonical_unit(str(unit))] = Rate(
                    canonical_unit(str(unit)), (Tier(None, rate),)
                )
        elif spec is not None:
            rate, named = parse_rate(spec, where)
            if rate or named:  # `0` is "free", which names no unit
                unit = named or REQUEST
                rates[unit] = Rate(unit, (Tier(None, rate),))
        for unit_name, steps in (tiers or {}).items():
            unit = canonical_unit(unit_name)
            if unit in rates:
                raise ValidationError(
                    f"sources.{source}.tiers.{unit_name}", "both price and tiers",
                    f"a price or tiers for {unit}, not both",
                )  # fmt: skip
            rates[unit] = Rate(
                unit,
                _parse_tiers(steps, f"sources.{source}.tiers.{unit_name}"),
                period or Window("month"),
            )
        sized = _parse_size_tiers(size_tiers, f"sources.{source}.size_tiers")
        by_size = {unit for tier in sized for unit, _ in tier.rates}
        return cls(
            source,
            tuple(r for r in rates.values() if not r.free or not r.flat or r.unit in by_size),
            effective_from,
            tuple(rates),
            _parse_size_units(size_units, sized, f"sources.{source}.size_units"),
            sized,
            _parse_variants(variants, f"sources.{source}.variants"),
            parse_variant_hours(variant_hours, f"sources.{source}.variant_hours"),
        )

    @property
    def free(self) -> bool:
        """Whether every use of this price costs nothing."""
        return all(r.free for r in self.rates) and not any(
            rate for _, rates in self._sized for rate in rates.values()
        )

    @property
    def units(self) -> tuple[str, ...]:
        """The priced dimensions."""
        return tuple(r.unit for r in self.rates)

    @property
    def accepted_units(self) -> tuple[str, ...]:
        """The units a call may give: those the price names and, for a price by data volume
        or time, a stream's raw measurements (`STREAM_MEASURES`)."""
        return (*self.named, *(m for m in STREAM_MEASURES if m in self._accepts))

    def timed_variant(self, start: datetime, end: datetime) -> str | None:
        """The variant a call made from `start` to `end` is billed in by its hours (see
        `variant_hours`), or `None` (the standard rates): one whose hours hold the whole
        call, at both ends and at every moment between where they may change (a window's
        edge, a midnight of its calendar). A call that crosses out of them, runs backwards
        or lasts more than a day is billed at the standard rates."""
        require_aware(start, "start")
        require_aware(end, "end")
        if not self.variant_hours or end < start or end - start > _LONGEST_TIMED_CALL:
            return None
        for hours in self.variant_hours:
            if all(hours.holds(moment) for moment in hours.edges(start, end)):
                return hours.variant
        return None

    def variant_of(self, unit: str) -> str | None:
        """The variant (see `variants`) a unit of this price is in, `None` for standard."""
        return self._variant_of.get(canonical_unit(unit))

    def accepts(self, unit: str) -> bool:
        """Whether a call may give `unit` (any spelling of it, such as `requests`)."""
        return unit in self._accepts or canonical_unit(unit) in self._accepts

    def usage(self, units: object) -> dict[str, Decimal]:
        """A call's usage, validated against this price: a unit it does not have would be
        ignored (costing nothing), so it is refused, naming the units it has. Only a zero
        of one says nothing was left out (the LLM helpers give every kind of token)."""
        given = clean_usage(units)
        unknown = [unit for unit, q in given.items() if q and not self.accepts(unit)]
        if unknown:
            have = ", ".join(self.accepted_units) or f"none: {self.source!r} is free"
            raise ValidationError(
                "units", unknown, f"only units of {self.source!r} ({have}), or others at 0"
            )
        return given

    @property
    def tiered_rates(self) -> tuple[Rate, ...]:
        """The rates whose cost depends on usage earlier in their period."""
        return self._tiered

    @property
    def version(self) -> str:
        """A stable name for this version: `source@2026-01-01T00:00:00Z`."""
        return self._version

    @exact
    def quantities(self, usage: Usage | None) -> dict[str, Decimal]:
        """The quantity of every priced dimension in `usage`.

        A priced dimension missing from `usage` is an error (it would silently cost $0),
        except `request`, which defaults to one. Raw `bytes` and `seconds` convert to the
        priced `MB`/`KB`/`GB` and `hour`/`minute`.
        """
        return self._measured(usage)[0]

    def _measured(
        self, usage: Usage | None, valid: Mapping[str, Decimal] | None = None
    ) -> tuple[dict[str, Decimal], Decimal]:
        """The quantity of every priced dimension, and the call's size (0 with no size
        tiers). A size unit is measured as a priced one is (given, converted from raw bytes or
        seconds, one `request`); one that is missing is an error too: it would pick a cheaper
        tier. `valid` is `self.usage(usage)` when the caller has it already."""
        if valid is None:
            valid = self.usage(usage)
        given = {canonical_unit(k): v for k, v in valid.items()}
        priced: Collection[str] = self._by_unit
        sized = self.size_units
        if self.variants:  # only the units of the variants the call is billed in
            of = self._variant_of
            used = {of[unit] for unit in given if unit in of} or {None}
            groups = [self._groups.get(v, ((), ())) for v in used]
            priced = tuple(unit for group, _ in groups for unit in group)
            sized = tuple(unit for _, group in groups for unit in group)
        out: dict[str, Decimal] = {}
        for unit in priced:
            quantity = _quantity_of(unit, given)
            if quantity is None:
                raise self._missing(usage, list(priced))
            out[unit] = quantity
        if not self._sized:
            return out, Decimal(0)
        size = Decimal(0)
        for unit in sized:
            quantity = out[unit] if unit in out else _quantity_of(unit, given)
            if quantity is None:
                raise self._missing(usage, sized)
            size += quantity
        return out, size

    def _missing(self, usage: Usage | None, units: Sequence[str]) -> ValidationError:
        return ValidationError(
            "units",
            dict(usage or {}),
            f"a quantity for every priced unit of {self.source!r} ({', '.join(units)})",
        )

    def _rates_at(self, size: Decimal) -> list[dict[str, Decimal]]:
        """The flat rates a size tier sets for a call of `size`, the highest tier it is
        above last (empty when it is above none)."""
        return [rates for above, rates in self._sized if size > above]

    @exact
    def cost(
        self, usage: Usage | None = None, used_before: Mapping[str, Decimal] | None = None
    ) -> Nanos:
        """The cost in nano-units of one use with `usage`, rounded once, half-even.

        `used_before` gives, for tiered units, how much was used earlier in the period.
        """
        return self._cost(self._measured(usage), used_before)

    @exact
    def costed(self, usage: Usage | None, valid: Mapping[str, Decimal]) -> Nanos:
        """`cost(usage)` for a usage already validated: `valid` is `self.usage(usage)` (a
        call's settlement validates its usage once, for its cost and its event)."""
        return self._cost(self._measured(usage, valid), None)

    def _cost(
        self,
        measured: tuple[dict[str, Decimal], Decimal],
        used_before: Mapping[str, Decimal] | None,
    ) -> Nanos:
        quantities, size = measured
        before = used_before or {}
        flat = self._flat
        total = Decimal(0)
        for u, q in quantities.items():
            rate = flat.get(u)
            if rate is not None and u not in before:  # what `Rate.cost()` works out for it
                total += q * rate
            else:
                total += self._by_unit[u].cost(q, before.get(u, Decimal(0)))
        if self._sized and (tiers := self._rates_at(size)):
            total = self._sized_total(quantities, tiers[-1], total, before)
        return _checked_nanos(total, self.source)

    def _sized_total(
        self,
        quantities: Mapping[str, Decimal],
        rates: Mapping[str, Decimal],
        base: Decimal,
        before: Mapping[str, Decimal],
    ) -> Decimal:
        """`base` (the cost at base rates) with the units a size tier prices at its rates."""
        for unit, rate in rates.items():
            q = quantities.get(unit)
            if q is None:  # another variant's
                continue
            base += q * rate - self._by_unit[unit].cost(q, before.get(unit, Decimal(0)))
        return base

    @exact
    def estimate(self, usage: Usage | None = None) -> Nanos:
        """The most one use with `usage` can cost: tiered units at their highest rate, and
        the dearest of the size tiers a call of this size or smaller could fall in."""
        quantities, size = self._measured(usage)
        total = sum((self._by_unit[u].max_rate * q for u, q in quantities.items()), Decimal(0))
        if self._sized:  # a real call no bigger than this one falls in one of these tiers
            sized = (
                self._sized_total(quantities, rates, total, {}) for rates in self._rates_at(size)
            )
            total = max([total, *sized])
        return _checked_nanos(total, self.source)


def _quantity_of(unit: str, given: Mapping[str, Decimal]) -> Decimal | None:
    """How much of `unit` a call's usage gives: itself, or its raw measurement converted
    (bytes to MB, seconds to hours), or one `request`; `None` when it gives none."""
    if unit in given:
        return given[unit]
    raw = next((b for b, to in _CONVERSIONS.items() if unit in to and b in given), None)
    if raw is not None:
        return given[raw] / _CONVERSIONS[raw][unit]
    return Decimal(1) if unit == REQUEST else None


def _checked_nanos(total: Decimal, source: str) -> Nanos:
    """`total` in nano-units (`decimal_to_nanos()`), for callers in the exact context
    already: a cost, an estimate."""
    if total > MAX_AMOUNT:
        raise ValidationError("units", f"{total} for {source}", f"a cost of at most {MAX_AMOUNT:,}")
    return int((total * NANOS_PER_UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))


def _parse_size_tiers(steps: object, where: str) -> tuple[SizeTier, ...]:
    """`[{above = 200000, price = {input_token = "2.50/1M", ...}}, ...]`, smallest first."""
    if steps is None:
        return ()
    expected = "a list of {above = N, price = {unit = rate, ...}} tables"
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence) or not steps:
        raise ValidationError(where, steps, expected)
    tiers = []
    for i, step in enumerate(steps):
        at = f"{where}[{i}]"
        if not isinstance(step, Mapping) or set(step) != {"above", "price"}:
            raise ValidationError(at, step, "a table {above = N, price = {unit = rate, ...}}")
        rates = step["price"]
        if not isinstance(rates, Mapping) or not rates:
            raise ValidationError(f"{at}.price", rates, "a table of unit = rate")
        parsed: dict[str, Decimal] = {}
        for unit, text in rates.items():
            rate, named = parse_rate(text, f"{at}.price.{unit}")
            name = canonical_unit(str(unit))
            if named is not None and named != name:
                raise ValidationError(f"{at}.price.{unit}", text, f"a price per {unit}")
            if name in parsed:
                raise ValidationError(f"{at}.price.{unit}", text, "each unit priced once")
            parsed[name] = rate
        tiers.append(SizeTier(to_quantity(step["above"], f"{at}.above"), tuple(parsed.items())))
    return tuple(tiers)


def _parse_variants(names: object, where: str) -> tuple[str, ...]:
    """A source's `variants`, in a stable order (two lists of the same names are the same
    price)."""
    if names is None:
        return ()
    if isinstance(names, str | bytes) or not isinstance(names, Sequence):
        raise ValidationError(where, names, 'a list of variant names, e.g. ["batch"]')
    if len(names) > MAX_VARIANTS:
        raise ValidationError(where, f"{len(names)} names", f"at most {MAX_VARIANTS} variants")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _VARIANT.fullmatch(name):
            raise ValidationError(
                f"{where}[{i}]", name, "a name of lowercase letters, digits and '_'"
            )
    return tuple(sorted(set(names)))


MAX_VARIANTS = 64
_LONGEST_TIMED_CALL = timedelta(days=1)  # a call longer is billed at the standard rates
_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_variant_hours(spec: object, where: str) -> tuple[VariantHours, ...]:
    """`{variant = {windows = [{hours_utc = ["10:00-00:00"], weekdays = [1, 2]}],
    weekday_timezone = "Asia/Shanghai"}}`: the hours a variant is billed in."""
    if spec is None:
        return ()
    if not isinstance(spec, Mapping) or len(spec) > MAX_VARIANTS:
        raise ValidationError(where, spec, "a table of variant = {windows = [...]}")
    out = []
    for variant, hours in spec.items():
        at = f"{where}.{variant}"
        if not isinstance(hours, Mapping) or not set(hours) <= {"windows", "weekday_timezone"}:
            raise ValidationError(at, hours, "{windows = [...], weekday_timezone = ZONE}")
        calendar = hours.get("weekday_timezone", "UTC")
        if not isinstance(calendar, str):
            raise ValidationError(f"{at}.weekday_timezone", calendar, "a time zone name")
        zone(calendar, f"{at}.weekday_timezone")
        rules = hours.get("windows")
        if (
            isinstance(rules, str | bytes)
            or not isinstance(rules, Sequence)
            or not 0 < len(rules) <= MAX_ITEMS
        ):
            raise ValidationError(
                f"{at}.windows", rules, f"a list of 1 to {MAX_ITEMS} {{hours_utc, weekdays}}"
            )
        windows = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or not set(rule) <= {"hours_utc", "weekdays"}:
                raise ValidationError(f"{at}.windows[{i}]", rule, "{hours_utc, weekdays}")
            days = rule.get("weekdays", [1, 2, 3, 4, 5, 6, 7])
            if (
                isinstance(days, str | bytes)
                or not isinstance(days, Sequence)
                or len(days) > 7
                or not all(type(d) is int and 1 <= d <= 7 for d in days)
            ):
                raise ValidationError(
                    f"{at}.windows[{i}].weekdays", days, "a list of weekdays, 1 (Monday) to 7"
                )
            spans = rule.get("hours_utc")
            spans = [spans] if isinstance(spans, str) else spans
            if not isinstance(spans, Sequence) or not 0 < len(spans) <= MAX_ITEMS:
                raise ValidationError(
                    f"{at}.windows[{i}].hours_utc", spans, f'1 to {MAX_ITEMS} "HH:MM-HH:MM"'
                )
            for span in spans:
                match = _WINDOW.fullmatch(span) if isinstance(span, str) else None
                if match is None:
                    raise ValidationError(
                        f"{at}.windows[{i}].hours_utc", span, "a span of UTC hours, HH:MM-HH:MM"
                    )
                start = int(match[1]) * 60 + int(match[2])
                windows.append((start, int(match[3]) * 60 + int(match[4]), frozenset(days)))
        if len(windows) > MAX_ITEMS:
            raise ValidationError(f"{at}.windows", f"{len(windows)} spans", f"at most {MAX_ITEMS}")
        out.append(VariantHours(str(variant), tuple(windows), calendar))
    return tuple(out)


def _hours_spec(hours: VariantHours) -> dict[str, Any]:
    def span(start: int, end: int) -> str:
        return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"

    windows = [
        {"hours_utc": [span(start, end)], "weekdays": sorted(days)}
        for start, end, days in hours.windows
    ]
    return {"windows": windows, "weekday_timezone": hours.weekday_timezone}


_VARIANT = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")


def _parse_size_units(units: object, tiers: tuple[SizeTier, ...], where: str) -> tuple[str, ...]:
    if units is None and not tiers:
        return ()
    expected = "a list of the units whose sum is a call's size"
    if isinstance(units, str | bytes) or not isinstance(units, Sequence) or not units:
        raise ValidationError(where, units, expected)
    names = []
    for i, unit in enumerate(units):
        name = canonical_unit(unit) if isinstance(unit, str) else ""
        if not name or len(name) > MAX_KEY_LENGTH or not storable(name):
            raise ValidationError(
                f"{where}[{i}]", unit, f"a unit name of at most {MAX_KEY_LENGTH} characters"
            )
        names.append(name)
    if not tiers:
        raise ValidationError(where, units, "size_tiers with them, or neither")
    return tuple(dict.fromkeys(names))


def _parse_tiers(steps: object, where: str) -> tuple[Tier, ...]:
    expected = "a list of {up_to = N, price = ...} steps"
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence) or not steps:
        raise ValidationError(where, steps, expected)
    tiers: list[Tier] = []
    previous = Decimal(0)
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise ValidationError(f"{where}[{i}]", step, "a table {up_to = N, price = ...}")
        rate, _ = parse_rate(step.get("price", step.get("rate")), f"{where}[{i}].price")
        raw_up_to = step.get("up_to")
        up_to = None if raw_up_to is None else to_quantity(raw_up_to, f"{where}[{i}].up_to")
        if up_to is not None and up_to <= previous:
            raise ValidationError(f"{where}[{i}].up_to", raw_up_to, f"more than {previous}")
        if tiers and tiers[-1].up_to is None:
            raise ValidationError(f"{where}[{i}]", dict(step), "no step after an open-ended one")
        tiers.append(Tier(up_to, rate))
        previous = up_to if up_to is not None else previous
    if tiers[-1].up_to is not None:
        tiers.append(Tier(None, tiers[-1].rate))
    return tuple(tiers)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A source's quota: at most `requests` per `per` (what the rate-limit alert watches)."""

    requests: int
    per: timedelta


@dataclass(frozen=True, slots=True)
class SourcePricing:
    """A source's price versions (oldest first), whether it may be used unpriced, the
    capability it serves (sources with the same capability can stand in for each other), and
    whether its answers may be cached (`cacheable`: a geocode or an image may be, a live
    market-data stream never is)."""

    source: str
    versions: tuple[Price, ...] = ()
    allow_unpriced: bool = False
    capability: str | None = None
    rate_limit: RateLimit | None = None
    cacheable: bool = False

    def to_spec(self) -> dict[str, Any]:
        """The source as its `[sources.NAME]` table: what the configuration reads back into
        equal pricing. A first version in effect since the epoch is the table's own price;
        the rest are `versions` with their `effective_from`."""
        spec: dict[str, Any] = {}
        versions = list(self.versions)
        if versions and versions[0].effective_from == EPOCH:
            spec.update(_price_spec(versions.pop(0)))
        if versions:
            spec["versions"] = [
                {"effective_from": v.effective_from.isoformat(), **_price_spec(v)} for v in versions
            ]
        if self.allow_unpriced:
            spec["unpriced"] = "allow"
        if self.capability is not None:
            spec["capability"] = self.capability
        if self.cacheable:
            spec["cacheable"] = True
        if self.rate_limit is not None:
            per = duration_text(self.rate_limit.per)
            spec["rate_limit"] = {"requests": self.rate_limit.requests, "per": per}
        return spec

    def at(self, when: datetime) -> Price | None:
        """The version in effect at `when`, or `None` before the first one."""
        current = None
        for version in self.versions:
            if version.effective_from <= when:
                current = version
            else:
                break
        return current


def _price_spec(price: Price) -> dict[str, Any]:
    """One price version in its configuration form: flat rates under `price`, tiered ones
    under `tiers` with their quota period."""
    if not price.named:
        return {"price": "free"}
    spec: dict[str, Any] = {}
    charged = {r.unit: r for r in price.rates}
    flat = {  # the units it names for free too: a call may give them
        unit: f"{charged[unit].tiers[0].rate.normalize():f}" if unit in charged else "0"
        for unit in price.named
        if unit not in charged or charged[unit].flat
    }
    if flat:
        spec["price"] = flat
    tiered = [r for r in price.rates if not r.flat]
    if tiered:
        spec["tiers"] = {
            r.unit: [
                {"price": f"{t.rate.normalize():f}"}
                | ({} if t.up_to is None else {"up_to": f"{t.up_to.normalize():f}"})
                for t in r.tiers
            ]
            for r in tiered
        }
        period = tiered[0].period or Window("month")
        spec["quota_period"] = period.kind
        spec["quota_timezone"] = period.tz
    if price.variants:
        spec["variants"] = list(price.variants)
    if price.variant_hours:
        spec["variant_hours"] = {h.variant: _hours_spec(h) for h in price.variant_hours}
    if price.size_tiers:
        spec["size_units"] = list(price.size_units)
        spec["size_tiers"] = [
            {"above": f"{t.above.normalize():f}"}
            | {"price": {unit: f"{rate.normalize():f}" for unit, rate in t.rates}}
            for t in price.size_tiers
        ]
    return spec


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Every known source's pricing. Resolve a price once and keep it."""

    sources: Mapping[str, SourcePricing] = field(default_factory=dict)

    def pricing(self, source: str) -> SourcePricing:
        """The pricing of `source`; unknown sources are an error."""
        try:
            return self.sources[source]
        except KeyError:
            raise UnknownSourceError(source, list(self.sources)) from None

    def price_at(self, source: str, when: datetime) -> Price | None:
        """The price of `source` at `when`; `None` for an allowed-unpriced source.

        Raises `UnpricedSourceError` for a source with no price in effect that is not allowed
        to be unpriced.
        """
        pricing = self.pricing(source)
        price = pricing.at(when)
        if price is None and not pricing.allow_unpriced:
            raise UnpricedSourceError(source)
        return price
