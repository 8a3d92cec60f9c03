"""A service and a source, resolved once: the per-call path of the gate.

`Binding` caches what every call to one source by one service needs (its price in effect,
the budgets that apply, their windows and caps, fingerprints of repeated payloads) so that a
call does arithmetic on integers and one store round trip, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

from spendgate.accounting import AlertLine, QuotaUse, Recount, Slot
from spendgate.budgets import Budget, budget_from_config
from spendgate.clock import Clock
from spendgate.errors import ChangedError, ValidationError
from spendgate.events import (
    Details,
    Event,
    check_flags,
    check_id,
    check_labels,
    fingerprint,
    new_event,
    seed_aliases,
)
from spendgate.money import Nanos, decimal_to_nanos, from_nanos, money_text, to_nanos
from spendgate.pricing import Price, SourcePricing, Usage, clean_usage
from spendgate.settings import Config, parse_source
from spendgate.store.base import ControlStore, EventWrite
from spendgate.windows import (
    Window,
    from_micros,
    require_aware,
    require_not_ahead,
    to_micros,
)

FINGERPRINTS_KEPT = 4096  # per binding
UTC_DAYS = Window("day")
"""The days a call counts in when no calendar budget covers it."""


_NO_DETAILS: Mapping[str, Any] = MappingProxyType({})


class EventDetails(NamedTuple):
    """What a caller says about one use of a source: `Gate.record()`'s keyword arguments
    as one value, as given (`Binding.write()` validates them).

    `details` are the seed's descriptive fields (`success`, `cache_hits`...: see `Details`).
    A named tuple, not a frozen dataclass: every event builds one, and a tuple is built in
    a quarter of the time (0.27 against 1.1 µs measured), which `prepare()` felt (+15%).
    """

    cost: Decimal | int | str | None = None
    units: Usage | None = None
    request_id: str | None = None
    time: datetime | None = None
    labels: Mapping[str, str] | None = None
    emergency: bool = False
    details: Mapping[str, Any] = _NO_DETAILS

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> EventDetails:
        """From `record()`'s keyword arguments by name (any not named here are `details`)."""
        rest = dict(fields)
        return cls(
            rest.pop("cost", None),
            rest.pop("units", None),
            rest.pop("request_id", None),
            rest.pop("time", None),
            rest.pop("labels", None),
            rest.pop("emergency", False),
            rest,
        )


class LiveConfig:
    """The configuration in effect, shared by a gate and its bindings: the gate puts a new
    one in when definitions change at run time, and every binding follows it."""

    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config


@dataclass(frozen=True, slots=True)
class PriceAt:
    """A source's price over the span of time it holds, with the plain call pre-costed.

    Most calls give no units: their cost and estimate are computed once per price version
    instead of once per call.
    """

    price: Price | None
    start: int
    until: int
    paid: bool
    plain_cost: Nanos | None
    plain_estimate: Nanos | None

    @classmethod
    def resolve(cls, price: Price | None, start: int, until: int) -> PriceAt:
        """Pre-cost a plain call (one request, no units) where the price allows it."""
        if price is None:
            return cls(None, start, until, False, None, 0)
        try:
            estimate: Nanos | None = price.estimate(None)
            cost = None if price.tiered_rates else price.cost(None)
        except ValidationError:  # the price needs units (tokens, MB...): nothing to pre-cost
            estimate = cost = None
        return cls(price, start, until, not price.free, cost, estimate)

    def cost(self, units: Usage | None) -> Nanos | None:
        """The cost of a call with `units` (`None` for an allowed-unpriced source)."""
        if units is None and self.plain_cost is not None:
            return self.plain_cost
        return None if self.price is None else self.price.cost(units)

    def estimate(self, units: Usage | None) -> Nanos:
        """The most a call with `units` can cost (0 for an allowed-unpriced source)."""
        if units is None and self.plain_estimate is not None:
            return self.plain_estimate
        return 0 if self.price is None else self.price.estimate(units)

    def requested(self, amount: object, units: Usage | None, field_name: str) -> Nanos:
        """What a call asks to spend: `amount` when given (its `units` checked all the same:
        they are the price's or an error), else the estimate of its `units`."""
        if amount is None:
            return self.estimate(units)
        if units is not None:
            self.usage(units)
        return to_nanos(amount, field_name)

    def usage(self, units: Usage | None) -> dict[str, Decimal]:
        """A call's usage, validated: units of the price (any, for an unpriced source)."""
        if units is None:
            return {}  # most calls say none
        return clean_usage(units) if self.price is None else self.price.usage(units)


def alert_lines(budget: Budget, defaults: tuple[Decimal, ...]) -> tuple[AlertLine, ...]:
    """The usage levels at which a budget raises alerts: its own `alerts` fractions exactly,
    else the rungs of its threshold ladder (warn 0.6, degrade 0.7, stop 0.8: the second
    seed's "warn at 60% notifies") together with the `[alerts]` defaults (0.8, 1.0), of its
    limit, in order.

    A line's alert is critical at or past the limit and at or past the ladder's stop rung
    (calls are refused there), else a warning.
    """
    rungs = {t.fraction.normalize(): t.action for t in budget.thresholds}
    if budget.alerts is not None:
        fractions = sorted({f.normalize() for f in budget.alerts})
    else:
        fractions = sorted({f.normalize() for f in defaults} | set(rungs))
    stop = next((f for f, action in rungs.items() if action == "stop"), None)
    critical_from = Decimal(1) if stop is None else min(stop, Decimal(1))
    limit = from_nanos(budget.limit)
    return tuple(
        AlertLine(
            f"{f:f}",
            decimal_to_nanos(limit * f),
            budget.limit,
            rungs.get(f),
            f >= critical_from,
        )
        for f in fractions
    )


class Binding:
    """A service and a source, resolved once: their price, budgets and caps.

    The per-call path reads cached windows and caps and does no parsing or formatting.
    """

    __slots__ = (
        "_budgets",
        "_calendar",
        "_config",
        "_day",
        "_fingerprints",
        "_label_budgets",
        "_lines",
        "_priced",
        "_slots",
        "live",
        "pricing",
        "service",
        "source",
    )

    def __init__(self, live: LiveConfig, service: str, source: str) -> None:
        self.live = live
        self.service = check_id(service, "service")
        self.source = check_id(source, "source")
        self._fingerprints: dict[tuple[object, ...], str] = {}
        self._resolve()

    def _resolve(self) -> None:
        """Read the configuration in effect (again, after it changed)."""
        config = self.live.config
        self.pricing: SourcePricing = config.prices.pricing(self.source)
        budgets = config.budgets
        self._budgets = tuple(
            b
            for b in budgets
            if b.scope.kind != "label" and b.scope.matches(self.service, self.source)
        )
        self._label_budgets = tuple(b for b in budgets if b.scope.kind == "label")
        fractions = config.alerts.budget_fractions
        self._lines = {b.name: alert_lines(b, fractions) for b in budgets}
        self._priced = PriceAt(None, 1, 0, False, None, None)  # an empty span: resolve first
        # (budget name, priority, emergency) -> (valid from µs, valid until µs, slot, budget)
        self._slots: dict[tuple[str, bool, bool], tuple[int, int, Slot, Budget]] = {}
        # The seed's `budget_day`: by the first calendar budget's days, else UTC's.
        self._calendar = next(
            (b.window for b in self._budgets if b.window.kind != "rolling"), UTC_DAYS
        )
        self._day: tuple[int, int, date] = (0, 0, date.min)  # [start, end) µs and its date
        self._config = config

    def _current(self) -> None:
        # Long-lived holders (stream meters, routers) keep their binding: it follows changes.
        if self.live.config is not self._config:
            self._resolve()

    def price(self, now_us: int) -> PriceAt:
        """The price in effect at `now_us`, resolved once for the span it holds."""
        self._current()
        config = self._config  # one read each: another thread may resolve again meanwhile
        priced = self._priced
        if priced.start <= now_us < priced.until:
            return priced
        at = from_micros(now_us)
        price = config.prices.price_at(self.source, at)
        later = [v for v in config.prices.pricing(self.source).versions if v.effective_from > at]
        priced = PriceAt.resolve(
            price,
            to_micros(price.effective_from) if price else -(2**62),
            to_micros(later[0].effective_from) if later else 2**62,
        )
        if self._config is config:  # never keep a price of a configuration gone meanwhile
            self._priced = priced
        return priced

    def fingerprint(self, said: tuple[object, ...]) -> str:
        """The fingerprint of what a caller said about a call to this service and source.

        Calls repeat themselves (most say nothing but their request id), so digests are
        remembered, up to a bound.
        """
        fp = self._fingerprints.get(said)
        if fp is None:
            fp = self._remember(said, fingerprint(self.service, self.source, *said))
        return fp

    def hold_fingerprint(
        self, amount: Nanos, labels: Mapping[str, str], emergency: bool, priority: bool
    ) -> str:
        """The fingerprint of a hold of `amount` (what a retry of `reserve()` must repeat);
        remembered, as `fingerprint()`'s."""
        key = ("hold", amount, tuple(sorted(labels.items())), emergency, priority)
        fp = self._fingerprints.get(key)
        if fp is None:
            said = (amount, sorted(labels.items()), emergency, priority)
            fp = self._remember(key, fingerprint(self.service, self.source, *said))
        return fp

    def _remember(self, key: tuple[object, ...], fp: str) -> str:
        if len(self._fingerprints) >= FINGERPRINTS_KEPT:
            self._fingerprints.clear()
        self._fingerprints[key] = fp
        return fp

    def budgets(self, labels: Mapping[str, str] | None) -> tuple[Budget, ...]:
        """The budgets a call with `labels` counts against."""
        self._current()
        if not self._label_budgets or not labels:
            return self._budgets
        return self._budgets + tuple(
            b for b in self._label_budgets if b.scope.matches(self.service, self.source, labels)
        )

    def slots(
        self,
        budgets: tuple[Budget, ...],
        now_us: int,
        *,
        priority: bool,
        emergency: bool,
        requested: Nanos | None = None,
    ) -> tuple[Slot, ...]:
        """Where each budget counts a call at `now_us` by a caller of this class.

        An emergency call asking for `requested` gets a budget's emergency room only if the
        budget's `emergency_budget` covers it (the seed's per-request bound); `None` (an
        event already spent) is not bounded.
        """
        out = []
        cache = self._slots
        for b in budgets:
            urgent = emergency and (requested is None or b.emergency_covers(requested))
            key = (b.name, priority, urgent)
            hit = cache.get(key)
            # The very budget it was made for: a budget changed at run time is another
            # object, so a slot of its old limit is never served for it.
            if hit is not None and hit[0] <= now_us < hit[1] and hit[3] is b:
                out.append(hit[2])
                continue
            window = b.window
            start, end = window.bounds(from_micros(now_us))
            start_us, end_us = to_micros(start), to_micros(end)
            span = to_micros(window.span_start(from_micros(now_us)))
            cap = b.cap(priority=priority, emergency=urgent)
            slot = Slot(b.name, start_us, span, cap, self._lines.get(b.name, ()))
            if window.kind != "rolling":  # a rolling span moves with the clock: not cached
                cache[key] = (start_us, end_us, slot, b)
            out.append(slot)
        return tuple(out)

    def budget_day(self, at_us: int) -> date:
        """The local day a call at `at_us` counts in (the seed's `budget_day`): by the
        calendar (zone, reset hour) of the first day/week/month budget over this service and
        source, else the UTC date. Remembered for the day it last answered."""
        self._current()
        start, end, day = self._day
        if start <= at_us < end:
            return day
        day, first, after = self._calendar.day_of(from_micros(at_us))
        self._day = (to_micros(first), to_micros(after), day)
        return day

    def write(self, given: EventDetails, now: datetime, new_id: Callable[[], str]) -> EventWrite:
        """Validate and cost an event at its `time` (else `now`): what `Gate.record()` writes.

        A `time` more than `MAX_CLOCK_SKEW` ahead of `now` (the gate's clock) is refused; an
        earlier one counts in the windows it falls in, however long ago.

        A tiered price is left to the store to apply, against its quota counters as they
        stand; `new_id()` names an event given no `request_id`.
        """
        check_flags(emergency=given.emergency)
        cost, time, fields = seed_aliases(given.cost, given.time, given.details)
        details = Details.parse(fields)
        if time is None:
            when, when_us = now, to_micros(now)
        else:
            when = require_aware(time, "time")
            when_us = to_micros(when)
            require_not_ahead(when, when_us, now)
        priced = self.price(when_us)
        price = priced.price
        # The seed's total is the sum of its sources' costs: given both, they must agree.
        parts = details.breakdown_total()
        if cost is None and parts is not None:
            cost = money_text(parts)
        # An allowed-unpriced source costs None: counted as unpriced, never as $0.
        valid = None
        amount: Nanos | None
        if cost is not None:
            amount = to_nanos(cost, "cost")
        elif price is not None and given.units is not None:
            # The usage validated once: its cost and its event share it.
            valid = price.usage(given.units)
            amount = price.costed(given.units, valid)
        else:
            amount = priced.cost(given.units)
        if parts is not None and amount != parts:
            raise ValidationError(
                "total_cost",
                cost,
                f"the sum of source_cost_breakdown's costs, {money_text(parts)}",
            )
        labels = check_labels(given.labels) if given.labels else {}
        rid = given.request_id
        event = self.event(
            priced,
            cost=amount,
            when=when,
            request_id=check_id(rid, "request_id") if rid is not None else new_id(),
            units=given.units,
            labels=labels,
            emergency=given.emergency,
            reservation_id=None,
            cost_given=cost is not None,
            time_given=None if time is None else when,
            details=details,
            valid=valid,
        )
        tiered = cost is None and price is not None and bool(price.tiered_rates)
        quota = quota_uses(price, event, when) if tiered else ()
        slots = self.slots(self.budgets(labels), when_us, priority=True, emergency=given.emergency)
        return EventWrite(
            event, slots, price if tiered else None, quota, budget_day=self.budget_day(when_us)
        )

    def settlement(
        self, reservation_id: str, held: Nanos, given: EventDetails, now: datetime
    ) -> EventWrite:
        """The event that settles a reservation of `held` at `now`: what `Gate.commit()` writes.

        Its cost is `given.cost` (the call's `actual`), or the price of its units, or else
        the amount held. It counts in the windows it falls in now (where its cost counts if
        its hold's have passed).
        """
        now_us = to_micros(now)
        priced = self.price(now_us)
        price = priced.price
        # Tiered prices are costed by the store, against the period's quota counters: the
        # estimate assumed the top rate, the free quota may cover the call.
        tiered = given.cost is None and price is not None and bool(price.tiered_rates)
        valid = None
        if given.cost is not None:
            cost: Nanos | None = to_nanos(given.cost, "actual")
        elif price is not None and given.units is not None:
            # The usage validated once: its cost and its event share it.
            valid = price.usage(given.units)
            cost = price.costed(given.units, valid)
        elif given.units is not None or tiered:
            cost = priced.cost(given.units)
        else:
            cost = held if price is not None or held else None
        rid = given.request_id
        event = self.event(
            priced,
            cost=cost,
            when=now,
            request_id=check_id(rid, "request_id") if rid is not None else reservation_id,
            units=given.units,
            labels=given.labels or {},
            emergency=given.emergency,
            reservation_id=reservation_id,
            cost_given=given.cost is not None,
            time_given=None,
            details=given.details,
            valid=valid,
        )
        budgets = self.budgets(given.labels)
        slots = self.slots(budgets, now_us, priority=True, emergency=given.emergency)
        quota = quota_uses(price, event, now) if tiered else ()
        return EventWrite(event, slots, price, quota, budget_day=self.budget_day(now_us))

    def event(
        self,
        priced: PriceAt,
        *,
        cost: Nanos | None,
        when: datetime,
        request_id: str,
        units: Usage | None,
        labels: Mapping[str, str],
        emergency: bool,
        reservation_id: str | None,
        cost_given: bool,
        time_given: datetime | None,
        details: Mapping[str, Any] | Details,
        valid: dict[str, Decimal] | None = None,
    ) -> Event:
        """Validate an event's fields and build it, with the fingerprint of what the caller
        said. `valid` is `priced.usage(units)` when the caller validated the units already."""
        d = details if isinstance(details, Details) else Details.parse(details)
        clean_units = priced.usage(units) if valid is None else valid
        # What the caller said, in canonical form: equal values written differently (1000 and
        # 1000.0, one instant in two zones) must digest alike in every process.
        said = (
            cost if cost_given else None,
            tuple(sorted((k, f"{v.normalize():f}") for k, v in clean_units.items()))
            if clean_units
            else (),
            tuple(sorted(labels.items())) if labels else (),
            emergency,
            reservation_id,
            d.key(),
            None if time_given is None else to_micros(time_given),
        )
        head = (
            request_id,
            when,
            self.service,
            self.source,
            cost,
            # A settlement's is unique (its reservation's id is in it): not worth keeping.
            self.fingerprint(said)
            if reservation_id is None
            else fingerprint(self.service, self.source, *said),
            clean_units,
            priced.paid or bool(cost),
        )
        version = priced.price.version if priced.price is not None else None
        return new_event(head, d, (labels, version, reservation_id, emergency))


CONFIG_ACTOR = "config"
"""How the audit log names the configuration a gate was opened with, when it seeds the store."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """A budget or source the configuration defines otherwise than the store does, where the
    store's (changed over the API, or deleted there) stays in effect."""

    kind: str
    name: str
    configured: Mapping[str, Any]
    stored: Mapping[str, Any] | None
    changed_by: str
    changed_at: int

    def __str__(self) -> str:
        said = json.dumps(dict(self.configured), sort_keys=True)
        has = "deleted it" if self.stored is None else f"has {json.dumps(dict(self.stored))}"
        when = f"{from_micros(self.changed_at):%Y-%m-%d %H:%M} UTC"
        return (
            f"{self.kind} {self.name!r}: the configuration says {said}, but the store {has} "
            f"(changed by {self.changed_by}, {when}), and the store's is in effect; change it "
            f"there (PUT /api/{'budgets' if self.kind == 'budget' else 'prices'}/{self.name})"
        )


class Bindings:
    """The configuration in effect and the bindings resolved under it, for one gate.

    The store holds the budgets and sources; the base configuration (the file) seeds them
    (`seed()`), and the other settings are the base's. `refresh()` reads the stored
    definitions again when the store's revision moved, and `then(config)` runs for a new
    one before the refresh returns. When a look is due is the gate's `clock`'s to say
    (every `refresh_every` seconds of it), so a test moves a frozen clock rather than waiting.
    """

    def __init__(
        self,
        store: ControlStore,
        base: Config,
        refresh_every: float,
        *,
        clock: Clock,
        then: Callable[[Config], None],
    ) -> None:
        self.store = store
        self.base = base
        self.live = LiveConfig(base)
        self.refresh_every = timedelta(seconds=refresh_every)
        self.clock = clock
        self._looked_at: datetime | None = None
        self._look_again: datetime | None = None
        self._then = then
        self._revision = -1
        self._refreshing = threading.Lock()
        self._bound: dict[tuple[str, str], Binding] = {}

    def seed(self, at: int) -> list[Conflict]:
        """Write the base configuration's sources and budgets into the store, where they
        differ from it; what the store keeps otherwise.

        A name the store has never had is created (a budget counted from the ledger, see
        `accounting.Recount`); one the configuration wrote before follows it, counted again
        if its scope or window changed; one changed or deleted over the API stays as the
        store has it, and comes back as a `Conflict`. The seed's defaults (`Config.seed()`:
        no file) seed only a store without budgets or sources, and otherwise stand for none
        of them. Every write is audited, by `CONFIG_ACTOR`.
        """
        defined = {(d.kind, d.name): d for d in self.store.definitions()}
        if self.base.defaults and any(kind in ("budget", "source") for kind, _ in defined):
            self.base = replace(self.base, budgets=())
            return []
        wanted: list[tuple[str, str, dict[str, Any], Budget | None]] = [
            ("source", name, p.to_spec(), None) for name, p in self.base.prices.sources.items()
        ]
        wanted += [("budget", b.name, b.to_spec(), b) for b in self.base.budgets]
        conflicts = []
        for kind, name, spec, budget in wanted:
            found = defined.get((kind, name))
            if found is not None and _same(kind, name, found.spec, spec):
                continue
            if found is not None and (found.spec is None or found.changed_by != CONFIG_ACTOR):
                conflicts.append(
                    Conflict(kind, name, spec, found.spec, found.changed_by, found.changed_at)
                )
                continue
            recount = None
            if budget is not None:
                before = None if found is None else _budget(name, found.spec)
                if before is None or not before.counts_like(budget):
                    recount = Recount(budget, at)
            with contextlib.suppress(ChangedError):  # another gate wrote it first: theirs
                self.store.define(
                    kind,
                    name,
                    spec,
                    expected=0 if found is None else found.revision,
                    action="create" if found is None else "update",
                    actor=CONFIG_ACTOR,
                    at=at,
                    recount=recount,
                )
        return conflicts

    def due(self, now: datetime) -> bool:
        """Whether the stored definitions are `refresh_every` old at `now` (or never read,
        or the clock went back past the last look)."""
        looked, again = self._looked_at, self._look_again
        return looked is None or again is None or not looked <= now < again

    @property
    def refreshing(self) -> bool:
        """Another thread is refreshing (the per-call path does not wait for it)."""
        return self._refreshing.locked()

    def refresh(self) -> bool:
        """Apply the stored definitions if they changed; whether the configuration changed.
        Raises `ValidationError` if they no longer fit the base (the configuration stays)."""
        with self._refreshing:
            now = self.clock()
            self._looked_at, self._look_again = now, now + self.refresh_every
            revision = self.store.revision()
            if revision == self._revision:
                return False
            found = self.store.definitions()
            self._revision = max(revision, max((d.revision for d in found), default=0))
            config = self.base.overlay((d.kind, d.name, d.spec) for d in found)
            if config == self.live.config:
                return False
            self.live.config = config
            self._bound = {}
            self._then(config)
            return True

    def bind(self, service: str, source: str) -> Binding:
        """A service and source resolved under the configuration; later calls reuse it."""
        key = (service, source)
        try:
            binding = self._bound.get(key)
        except TypeError:  # unhashable: not a name at all
            binding = None
        if binding is None:
            binding = self._bound[key] = Binding(self.live, service, source)
        return binding


def quota_uses(price: Price | None, event: Event, when: datetime) -> tuple[QuotaUse, ...]:
    """The quota counters an event of a tiered `price` draws on, in their periods at `when`."""
    assert price is not None
    quantities = price.quantities(event.units)
    return tuple(
        QuotaUse(event.source, r.unit, to_micros(r.period.bounds(when)[0]), quantities[r.unit])
        for r in price.tiered_rates
        if r.period is not None
    )


def _budget(name: str, spec: Mapping[str, Any] | None) -> Budget | None:
    """A stored budget's table read back, or `None` if it does not read."""
    if spec is None:
        return None
    try:
        return budget_from_config(name, spec)
    except ValidationError:
        return None


def _same(kind: str, name: str, stored: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> bool:
    """Whether a stored table defines what `spec` does (tables may differ in form)."""
    if stored is None:
        return False
    try:
        if kind == "budget":
            return budget_from_config(name, stored) == budget_from_config(name, spec)
        return parse_source(name, stored) == parse_source(name, spec)
    except ValidationError:
        return False
