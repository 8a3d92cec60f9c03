"""The gate: the one place where prices, budgets, the clock and the store meet.

`Gate.open(url)` is the entry point. A paid call goes through `spend()` (reserve, call, commit;
release on any exception), `metered()` (the same as a decorator), or the explicit
`reserve()` / `commit()` / `release()`. `authorize()` answers without holding anything;
`record()` books a use after the fact. Each per-call method resolves its service and source
once (`bind()`), then makes one store round trip.

>>> from spendgate.testing import FrozenClock
>>> gate = Gate.open("memory://", clock=FrozenClock())
>>> with gate.spend("image_processor", "google_maps_optimized") as call:
...     call.set_cost("0.002")
>>> gate.status()[0].spent
2000000
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from spendgate import config as config_module
from spendgate.budgets import Budget, Check, Decision, Level, decide
from spendgate.clock import Clock, system_clock
from spendgate.config import Config
from spendgate.errors import (
    BudgetExceededError,
    ConflictError,
    ReservationStateError,
    SpendgateError,
    ValidationError,
)
from spendgate.events import (
    Details,
    Event,
    RecordResult,
    check_id,
    check_labels,
    check_name,
    fingerprint,
)
from spendgate.money import Nanos, from_nanos, money_text, to_nanos
from spendgate.pricing import Price, SourcePricing, Usage, to_quantity
from spendgate.store import DEFAULT_URL, open_store
from spendgate.store.base import (
    Balance,
    CommitResult,
    EventWrite,
    QuotaUse,
    ReservationState,
    ReservationWrite,
    Slot,
    Store,
)
from spendgate.store.batching import GroupCommitter
from spendgate.windows import from_micros, require_aware, to_micros

P = ParamSpec("P")
R = TypeVar("R")

_NO_CHECKS: tuple[Check, ...] = ()
_FINGERPRINTS_KEPT = 4096  # per binding
_OPEN_PRUNE_AT = 10_000  # remembered reservations before expired ones are forgotten


def new_request_id() -> str:
    """A fresh, time-ordered id (UUIDv7 layout): new ids sort after old ones.

    Time-ordered keys keep the store's unique index appending at its end instead of
    writing all over it.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget stands in its current window, as of a time."""

    budget: Budget
    window_start: datetime
    window_end: datetime
    balance: Balance
    as_of: datetime

    @property
    def spent(self) -> Nanos:
        """Settled spend in the window (nano-units)."""
        return self.balance.spent

    @property
    def reserved(self) -> Nanos:
        """Pending holds in the window (nano-units)."""
        return self.balance.reserved

    @property
    def remaining(self) -> Nanos:
        """The limit less spent and reserved (negative after overshoot or emergency use)."""
        return self.budget.limit - self.balance.used

    @property
    def level(self) -> Level:
        """The ladder rung the window has reached."""
        return self.budget.level(self.balance.used)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with money as exact decimal strings and the `as_of` time."""
        return {
            **self.budget.to_dict(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "spent": money_text(self.spent),
            "reserved": money_text(self.reserved),
            "overshoot": money_text(self.balance.overshoot),
            "remaining": money_text(self.remaining),
            "level": self.level,
            "as_of": self.as_of.isoformat(),
        }


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


class Binding:
    """A service and a source, resolved once: their price, budgets and caps.

    The per-call path reads cached windows and caps and does no parsing or formatting.
    """

    __slots__ = (
        "_budgets",
        "_fingerprints",
        "_label_budgets",
        "_priced",
        "_slots",
        "gate",
        "pricing",
        "service",
        "source",
    )

    def __init__(self, gate: Gate, service: str, source: str) -> None:
        self.gate = gate
        self.service = check_name(service, "service")
        self.source = check_name(source, "source")
        self.pricing: SourcePricing = gate.config.prices.pricing(source)
        budgets = gate.config.budgets
        self._budgets = tuple(
            b for b in budgets if b.scope.kind != "label" and b.scope.matches(service, source)
        )
        self._label_budgets = tuple(b for b in budgets if b.scope.kind == "label")
        self._priced = PriceAt(None, 1, 0, False, None, None)  # an empty span: resolve first
        self._fingerprints: dict[tuple[object, ...], str] = {}
        # (budget name, priority, emergency) -> (valid from µs, valid until µs, slot)
        self._slots: dict[tuple[str, bool, bool], tuple[int, int, Slot]] = {}

    def price(self, now_us: int) -> PriceAt:
        """The price in effect at `now_us`, resolved once for the span it holds."""
        priced = self._priced  # one read: other threads may swap in another span meanwhile
        if priced.start <= now_us < priced.until:
            return priced
        at = from_micros(now_us)
        price = self.gate.config.prices.price_at(self.source, at)
        later = [v for v in self.pricing.versions if v.effective_from > at]
        priced = PriceAt.resolve(
            price,
            to_micros(price.effective_from) if price else -(2**62),
            to_micros(later[0].effective_from) if later else 2**62,
        )
        self._priced = priced
        return priced

    def fingerprint(self, said: tuple[object, ...]) -> str:
        """The fingerprint of what a caller said about a call to this service and source.

        Calls repeat themselves (most say nothing but their request id), so digests are
        remembered, up to a bound.
        """
        fp = self._fingerprints.get(said)
        if fp is None:
            if len(self._fingerprints) >= _FINGERPRINTS_KEPT:
                self._fingerprints.clear()
            fp = self._fingerprints[said] = fingerprint(self.service, self.source, *said)
        return fp

    def budgets(self, labels: Mapping[str, str] | None) -> tuple[Budget, ...]:
        """The budgets a call with `labels` counts against."""
        if not self._label_budgets or not labels:
            return self._budgets
        return self._budgets + tuple(
            b for b in self._label_budgets if b.scope.matches(self.service, self.source, labels)
        )

    def slots(
        self, budgets: tuple[Budget, ...], now_us: int, *, priority: bool, emergency: bool
    ) -> tuple[Slot, ...]:
        """Where each budget counts a call at `now_us` by a caller of this class."""
        out = []
        cache = self._slots
        for b in budgets:
            key = (b.name, priority, emergency)
            hit = cache.get(key)
            if hit is not None and hit[0] <= now_us < hit[1]:
                out.append(hit[2])
                continue
            window = b.window
            start, end = window.bounds(from_micros(now_us))
            start_us, end_us = to_micros(start), to_micros(end)
            span = to_micros(window.span_start(from_micros(now_us)))
            slot = Slot(b.name, start_us, span, b.cap(priority=priority, emergency=emergency))
            if window.kind != "rolling":  # a rolling span moves with the clock: not cached
                cache[key] = (start_us, end_us, slot)
            out.append(slot)
        return tuple(out)


@dataclass(slots=True)
class _Open:
    """What the gate remembers of a reservation it took, for its commit."""

    binding: Binding
    amount: Nanos
    labels: Mapping[str, str]
    emergency: bool
    expires_at: int


class Gate:
    """spendgate's entry point: prices, budgets and a store, behind one object.

    Thread-safe. Open one per process and share it.
    """

    def __init__(
        self, store: Store, config: Config | None = None, *, clock: Clock = system_clock
    ) -> None:
        self.store = store
        self.config = config if config is not None else Config.seed()
        self.clock = clock
        self._bindings: dict[tuple[str, str], Binding] = {}
        self._open: dict[str, _Open] = {}
        self._writer: GroupCommitter[EventWrite, RecordResult] | None = (
            GroupCommitter(store.record) if store.batched else None
        )

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        config: Config | str | Path | None = None,
        clock: Clock = system_clock,
    ) -> Gate:
        """Open a gate on the store at `url` (default `sqlite:///spendgate.db`).

        `config` is a `Config`, the path of a `spendgate.toml`, or `None` for the seed's
        defaults (its sources and prices, a $10 daily budget with a $50 emergency allowance).
        """
        if isinstance(config, str | Path):
            config = config_module.load(config)
        return cls(open_store(url), config, clock=clock)

    def close(self) -> None:
        """Finish queued writes and close the store."""
        if self._writer is not None:
            self._writer.close()
        self.store.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolution ---------------------------------------------------------------------------

    def bind(self, service: str, source: str) -> Binding:
        """Resolve a service and source once; later calls reuse the result."""
        key = (service, source)
        binding = self._bindings.get(key)
        if binding is None:
            binding = self._bindings[key] = Binding(self, service, source)
        return binding

    def _now(self) -> tuple[datetime, int]:
        now = self.clock()
        return now, to_micros(now)

    # -- deciding -----------------------------------------------------------------------------

    def authorize(
        self,
        service: str,
        source: str,
        amount: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        priority: bool = False,
    ) -> Decision:
        """May this call spend? Answers without holding anything (see `reserve()` for that).

        `amount` is the expected cost; without it the source's price for `units` (one request
        by default) is used. Raises `UnpricedSourceError` for a paid source with no price.
        """
        binding = self.bind(service, source)
        now, now_us = self._now()
        priced = binding.price(now_us)
        requested = to_nanos(amount, "amount") if amount is not None else priced.estimate(units)
        if requested == 0:
            why = "unpriced source (allowed)" if priced.price is None else "free"
            return Decision("approved", 0, None, None, "normal", now, why)
        budgets = binding.budgets(check_labels(labels) if labels else None)
        slots = binding.slots(budgets, now_us, priority=priority, emergency=emergency)
        used = self.store.usage(slots, now_us)
        checks = _checks(budgets, slots, used, requested)
        if any(c.refused for c in checks) and self.store.expire(now_us):
            checks = _checks(budgets, slots, self.store.usage(slots, now_us), requested)
        return decide(checks, requested, now, priority=priority)

    def require(
        self, service: str, source: str, amount: Decimal | int | str | None = None, **options: Any
    ) -> Decision:
        """`authorize()`, raising `BudgetExceededError` when the call is refused."""
        decision = self.authorize(service, source, amount, **options)
        _raise_if_denied(decision)
        return decision

    # -- two-phase spending -------------------------------------------------------------------

    def reserve(
        self,
        service: str,
        source: str,
        estimate: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        priority: bool = False,
        ttl: timedelta | None = None,
        reservation_id: str | None = None,
    ) -> Decision:
        """Hold `estimate` on every budget the call counts against, all or nothing.

        Returns the decision; when approved, `decision.reservation_id` names the hold to
        `commit()` or `release()`. A hold not settled within `ttl` (the configured
        `reservation_ttl`, 5 minutes by default) expires. Retrying with the same
        `reservation_id` and arguments answers with the same reservation.
        """
        binding = self.bind(service, source)
        now, now_us = self._now()
        priced = binding.price(now_us)
        amount = to_nanos(estimate, "estimate") if estimate is not None else priced.estimate(units)
        rid = (
            check_id(reservation_id, "reservation_id")
            if reservation_id is not None
            else new_request_id()
        )
        clean_labels = check_labels(labels)
        lifetime = ttl if ttl is not None else self.config.reservation_ttl
        if lifetime <= timedelta(0):
            raise ValidationError("ttl", lifetime, "a positive duration")
        budgets = binding.budgets(clean_labels)
        slots = binding.slots(budgets, now_us, priority=priority, emergency=emergency)
        write = ReservationWrite(
            reservation_id=rid,
            fingerprint=fingerprint(
                service, source, amount, sorted(clean_labels.items()), emergency, priority
            ),
            slots=slots,
            amount=amount,
            created_at=now_us,
            expires_at=now_us + _micros(lifetime),
            service=service,
            source=source,
            emergency=emergency,
            labels=clean_labels,
        )
        result = self.store.reserve(write, now_us)
        if result.status == "conflict":
            raise ConflictError("reservation", rid)
        if result.status == "exists":
            return Decision(
                "approved",
                amount,
                None,
                None,
                "normal",
                now,
                f"reservation exists ({result.state})",
                rid,
            )
        if result.status == "denied":
            checks = _checks(budgets, slots, result.used, amount, refused=result.refused)
            return decide(checks, amount, now, priority=priority)
        if len(self._open) >= _OPEN_PRUNE_AT:
            self._forget_expired(now_us)
        self._open[rid] = _Open(binding, amount, clean_labels, emergency, write.expires_at)
        checks = tuple(
            Check(b, u, s.cap) for b, s, u in zip(budgets, slots, result.used, strict=True)
        )
        return decide(checks, amount, now, priority=priority, reservation_id=rid)

    def commit(
        self,
        reservation_id: str,
        actual: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        request_id: str | None = None,
        **details: Any,
    ) -> CommitResult:
        """Settle a reservation with what the call really cost, and record its event.

        The cost is `actual`, or the price of `units`, or else the estimate that was held.
        An actual above the estimate is booked truthfully and reported as `overshoot`.
        `details` are the event's other fields (see `record()`). Committing twice, or after
        a release, raises `ReservationStateError` and changes nothing.
        """
        opened = self._open.get(reservation_id) or self._reopen(reservation_id)
        binding = opened.binding
        now, now_us = self._now()
        priced = binding.price(now_us)
        price = priced.price
        if actual is not None:
            cost: Nanos | None = to_nanos(actual, "actual")
        elif units is not None:
            cost = priced.cost(units)
        else:
            cost = opened.amount if price is not None or opened.amount else None
        event = _event(
            binding,
            priced,
            cost=cost,
            when=now,
            request_id=check_id(request_id, "request_id")
            if request_id is not None
            else reservation_id,
            units=units,
            labels=opened.labels,
            emergency=opened.emergency,
            reservation_id=reservation_id,
            cost_given=actual is not None,
            time_given=None,
            details=details,
        )
        tiered = actual is None and units is not None and price is not None and price.tiered_rates
        # The windows the event falls in now: where its cost counts if its hold's has passed.
        slots = binding.slots(
            binding.budgets(opened.labels), now_us, priority=True, emergency=opened.emergency
        )
        write = EventWrite(event, slots, price, _quota(price, event, now) if tiered else ())
        result = self.store.commit(reservation_id, write, now_us)
        self._open.pop(reservation_id, None)
        return result

    def release(self, reservation_id: str) -> ReservationState:
        """Return a reservation's hold unused. Releasing twice raises `ReservationStateError`."""
        _, now_us = self._now()
        state = self.store.release(reservation_id, now_us)
        self._open.pop(reservation_id, None)
        return state

    def expire(self) -> int:
        """Return every hold whose time ran out (the store also does this when it must)."""
        _, now_us = self._now()
        return self.store.expire(now_us)

    def _forget_expired(self, now_us: int) -> None:
        # Holds that were never settled (their callers died) expire in the store; forget them
        # here too, so a long-running process does not remember them forever.
        for rid, opened in list(self._open.items()):
            if opened.expires_at <= now_us:
                self._open.pop(rid, None)

    def _reopen(self, reservation_id: str) -> _Open:
        info = self.store.reservation(reservation_id)
        if info is None:
            raise ReservationStateError(reservation_id, "unknown", "commit")
        return _Open(
            self.bind(info.service, info.source),
            info.amount,
            info.labels,
            info.emergency,
            info.expires_at,
        )

    def spend(
        self,
        service: str,
        source: str,
        estimate: Decimal | int | str | None = None,
        **options: Any,
    ) -> Spend:
        """A context manager around one paid call: reserve, call, commit; release on error.

        Raises `BudgetExceededError` on entry when the budget refuses. Inside, call
        `set_cost()` with what the call really cost (else the estimate is committed).

        ```python
        with gate.spend("enrichment", "google_maps_optimized") as call:
            result = client.geocode(address)
            call.set_cost(units={"request": 1})
        ```
        """
        return Spend(self, service, source, estimate, options)

    def metered(
        self,
        service: str,
        source: str,
        estimate: Decimal | int | str | None = None,
        *,
        cost: Callable[[Any], Decimal | int | str | None] | None = None,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function that calls `source`: every call is a `spend()`.

        `cost(result)` may give what the call really cost; otherwise the estimate is committed.
        Works on plain and `async` functions.
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                    async with self.spend(service, source, estimate, **options) as call:
                        result = await fn(*args, **kwargs)
                        if cost is not None:
                            call.set_cost(cost(result))
                        return result

                return cast(Callable[P, R], run_async)

            @functools.wraps(fn)
            def run(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.spend(service, source, estimate, **options) as call:
                    result = fn(*args, **kwargs)
                    if cost is not None:
                        call.set_cost(cost(result))
                    return result

            return run

        return decorate

    # -- recording ----------------------------------------------------------------------------

    def record(
        self,
        service: str,
        source: str,
        *,
        cost: Decimal | int | str | None = None,
        units: Usage | None = None,
        request_id: str | None = None,
        time: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        **details: Any,
    ) -> RecordResult:
        """Book one use of `source` by `service` (the seed's `track_request_cost`).

        The cost is `cost`, or else the source's price for `units` at `time` (now by default).
        `request_id` is the idempotency key: recording it again with the same payload answers
        `exists` and changes nothing; with another payload it raises `ConflictError`. Returns
        once the event is durably stored (concurrent callers share one commit).

        `details` are the seed's other fields: `success`, `failure_reason`, `sources_used`,
        `free_sources_attempted`, `paid_apis_used`, `fallbacks_triggered` (pairs of source
        and reason), `cache_hits`, `batch_processing`, `quality_score`, `processing_time`.
        """
        write = self.prepare(
            service,
            source,
            cost=cost,
            units=units,
            request_id=request_id,
            time=time,
            labels=labels,
            emergency=emergency,
            **details,
        )
        if self._writer is not None:
            result = self._writer.submit(write)
        else:
            result = self.store.record([write])[0]
        if result.status == "conflict":
            raise ConflictError("event", result.request_id)
        return result

    async def arecord(
        self,
        service: str,
        source: str,
        *,
        cost: Decimal | int | str | None = None,
        units: Usage | None = None,
        request_id: str | None = None,
        time: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        **details: Any,
    ) -> RecordResult:
        """`record()` for asyncio code: the task waits for the durable commit, the loop does not.

        Concurrent tasks share commits exactly as threads do, at a fraction of the cost of
        waking threads. A cancelled call may still have been recorded: retry it with the same
        `request_id` to find out.
        """
        write = self.prepare(
            service, source, cost=cost, units=units, request_id=request_id, time=time,
            labels=labels, emergency=emergency, **details,
        )  # fmt: skip
        if self._writer is not None:
            result = await self._writer.asubmit(write)
        else:
            result = self.store.record([write])[0]
        if result.status == "conflict":
            raise ConflictError("event", result.request_id)
        return result

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[RecordResult]:
        """Book several events in one transaction; one result per event, in order.

        Each mapping holds `record()`'s arguments. Every event is validated before any is
        written; a conflicting one gets status `conflict` and the others are stored.
        """
        writes = [self.prepare(**dict(e)) for e in events]
        if self._writer is not None:
            return self._writer.submit_many(writes)
        return self.store.record(writes)

    def prepare(
        self,
        service: str,
        source: str,
        *,
        cost: Decimal | int | str | None = None,
        units: Usage | None = None,
        request_id: str | None = None,
        time: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        **details: Any,
    ) -> EventWrite:
        """Validate and cost an event without writing it (what `record()` writes)."""
        binding = self.bind(service, source)
        if time is None:
            when, when_us = self._now()
        else:
            when = require_aware(time, "time")
            when_us = to_micros(when)
        priced = binding.price(when_us)
        price = priced.price
        # An allowed-unpriced source costs None: counted as unpriced, never as $0.
        amount = to_nanos(cost, "cost") if cost is not None else priced.cost(units)
        clean_labels = check_labels(labels) if labels else {}
        event = _event(
            binding,
            priced,
            cost=amount,
            when=when,
            request_id=(
                check_id(request_id, "request_id") if request_id is not None else new_request_id()
            ),
            units=units,
            labels=clean_labels,
            emergency=emergency,
            reservation_id=None,
            cost_given=cost is not None,
            time_given=time,
            details=details,
        )
        tiered = cost is None and price is not None and price.tiered_rates
        quota = _quota(price, event, when) if tiered else ()
        budgets = binding.budgets(clean_labels)
        slots = binding.slots(budgets, when_us, priority=True, emergency=emergency)
        return EventWrite(event, slots, price if tiered else None, quota)

    # -- reading ------------------------------------------------------------------------------

    def status(self, at: datetime | None = None) -> list[BudgetStatus]:
        """Every budget's spent, reserved and remaining in the window containing `at` (now)."""
        now = require_aware(at, "at") if at is not None else self.clock()
        self.store.expire(to_micros(self.clock()))
        out = []
        for b in self.config.budgets:
            start, end = b.window.bounds(now)
            slot = Slot(b.name, to_micros(start), to_micros(b.window.span_start(now)), None)
            if b.window.kind == "rolling":
                start = b.window.span_start(now)
            out.append(BudgetStatus(b, start, end, self.store.balance(slot), now))
        return out

    def events(
        self, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with `since <= time < until`, oldest first."""
        return self.store.events(
            since=None if since is None else to_micros(require_aware(since, "since")),
            until=None if until is None else to_micros(require_aware(until, "until")),
            limit=limit,
        )


class Spend:
    """One paid call in progress (see `Gate.spend()`); a sync and async context manager."""

    def __init__(
        self,
        gate: Gate,
        service: str,
        source: str,
        estimate: Decimal | int | str | None,
        options: dict[str, Any],
    ) -> None:
        self.gate = gate
        self.service = service
        self.source = source
        self._estimate = estimate
        self._options = options
        self.decision: Decision | None = None
        self.result: CommitResult | None = None
        self._final: dict[str, Any] = {}
        self._settled = False

    @property
    def reservation_id(self) -> str | None:
        """The hold taken on entry."""
        return self.decision.reservation_id if self.decision else None

    def set_cost(
        self,
        actual: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        **details: Any,
    ) -> None:
        """Say what the call really cost (and any event details); committed on exit."""
        self._final = {"actual": actual, "units": units, **details}

    def commit(self, actual: Decimal | int | str | None = None, **details: Any) -> CommitResult:
        """Commit now rather than on exit."""
        if self.reservation_id is None:
            raise SpendgateError("commit: the call was not reserved (enter the context first)")
        self.result = self.gate.commit(self.reservation_id, actual, **details)
        self._settled = True
        return self.result

    def release(self) -> None:
        """Give the hold back now (the call will not be made)."""
        if self.reservation_id is not None and not self._settled:
            self._settled = True
            self.gate.release(self.reservation_id)

    def _enter(self) -> Spend:
        self.decision = self.gate.reserve(
            self.service, self.source, self._estimate, **self._options
        )
        _raise_if_denied(self.decision)
        return self

    def _exit(self, failed: bool) -> None:
        if self._settled or self.reservation_id is None:
            return
        if failed:
            # If even the release fails, the hold expires by its TTL; the caller's own error
            # is the one to see.
            with contextlib.suppress(SpendgateError):
                self.release()
            return
        self.commit(**self._final)

    def __enter__(self) -> Spend:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc_type is not None)

    async def __aenter__(self) -> Spend:
        # The store call runs in a worker thread so the event loop keeps going. If this task
        # is cancelled meanwhile, the hold taken by the thread is released when it lands.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._enter)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda _: self._exit(failed=True))
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Settled synchronously: a cancellation cannot interrupt it half-way.
        self._exit(exc_type is not None)


def _raise_if_denied(decision: Decision) -> None:
    if not decision.approved:
        raise BudgetExceededError(
            decision.budget,
            from_nanos(decision.requested),
            from_nanos(decision.remaining if decision.remaining is not None else 0),
        )


def _checks(
    budgets: tuple[Budget, ...],
    slots: tuple[Slot, ...],
    used: Iterable[Nanos],
    requested: Nanos,
    refused: int | None = None,
) -> tuple[Check, ...]:
    """Each budget's check: refused if the request would take it over its cap."""
    out = []
    for i, (b, slot, u) in enumerate(zip(budgets, slots, used, strict=True)):
        over = slot.cap is not None and u + requested > slot.cap
        if refused is not None:
            over = i == refused
        out.append(Check(b, u if over else u + requested, slot.cap, over))
    return tuple(out) if out else _NO_CHECKS


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _quota(price: Price | None, event: Event, when: datetime) -> tuple[QuotaUse, ...]:
    assert price is not None
    quantities = price.quantities(event.units)
    return tuple(
        QuotaUse(event.source, r.unit, to_micros(r.period.bounds(when)[0]), quantities[r.unit])
        for r in price.tiered_rates
        if r.period is not None
    )


def _event(
    binding: Binding,
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
    details: Mapping[str, Any],
) -> Event:
    """Validate an event's fields and build it, with the fingerprint of what the caller said."""
    d = Details.parse(details)
    clean_units = {str(k): to_quantity(v, f"units.{k}") for k, v in units.items()} if units else {}
    said = (
        cost if cost_given else None,
        tuple(sorted(clean_units.items())) if clean_units else (),
        tuple(sorted(labels.items())) if labels else (),
        emergency,
        reservation_id,
        d.key(),
        time_given,
    )
    return Event(
        request_id=request_id,
        time=when,
        service=binding.service,
        source=binding.source,
        cost=cost,
        fingerprint=binding.fingerprint(said),
        units=clean_units,
        paid=priced.paid or bool(cost),
        success=d.success,
        failure_reason=d.failure_reason,
        sources_used=d.sources_used,
        free_sources_attempted=d.free_sources_attempted,
        paid_apis_used=d.paid_apis_used,
        fallbacks_triggered=d.fallbacks_triggered,
        cache_hits=d.cache_hits,
        batch_processing=d.batch_processing,
        quality_score=d.quality_score,
        processing_time=d.processing_time,
        labels=labels,
        price_version=priced.price.version if priced.price is not None else None,
        reservation_id=reservation_id,
        emergency=emergency,
    )
