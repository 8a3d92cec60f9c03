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
Decimal('0.002')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from spendgate import config as config_module
from spendgate.accounting import Slot
from spendgate.binding import Binding, Bindings, Conflict, EventDetails
from spendgate.budgets import BudgetStatus
from spendgate.clock import Clock, system_clock
from spendgate.decisions import (
    Decision,
    DecisionCounts,
    Outcome,
    decide,
    held_checks,
    request_checks,
)
from spendgate.errors import (
    ConfigError,
    ConflictError,
    StoreClosedError,
    StoreError,
    ValidationError,
)
from spendgate.events import (
    Event,
    RecordResult,
    check_flags,
    check_id,
    check_labels,
    implied_source,
)
from spendgate.health import Health, StoreWatch
from spendgate.holds import Asked, Holds, Opened, new_request_id
from spendgate.leases import Leases
from spendgate.money import money_text
from spendgate.pricing import Usage
from spendgate.redaction import redact
from spendgate.settings import Config
from spendgate.spend import Spend, metered, raise_if_denied
from spendgate.store import DEFAULT_URL, open_store
from spendgate.store.base import CLOSE_WAIT, CommitResult, EventWrite, ReservationState, Store
from spendgate.store.batching import GroupCommitter
from spendgate.windows import duration_micros, parse_duration, require_aware, to_micros

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("spendgate")
costs_log = logging.getLogger("spendgate.costs")
"""One line per recorded event, as the seed logs them ("cost incurred" / "FREE"), at INFO:
off unless the application turns it on (`logging.getLogger("spendgate.costs").setLevel`)."""

_monotonic = time.monotonic  # `record()` has a parameter named `time`
DEFAULT_REFRESH_SECONDS = 1.0
"""How often a gate looks for budgets and prices changed at run time (by any process)."""


class Gate:
    """spendgate's entry point: prices, budgets and a store, behind one object.

    Thread-safe. Open one per process and share it.
    """

    def __init__(
        self,
        store: Store,
        config: Config | None = None,
        *,
        clock: Clock = system_clock,
        refresh_every: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self._writer: GroupCommitter[EventWrite, RecordResult] | None = (
            GroupCommitter(store.record, where=store.where) if store.batched else None
        )
        self._watch = StoreWatch(store, clock)
        self.outages = self._watch.outages
        """Decisions made while the store was unreachable: `denied` (fail closed) and
        `approved` (a fail-open budget)."""
        self.health = self._watch.health
        """Outages this gate saw (for the `store_unreachable` alert), how its writes went
        (see `check_health()`), and reservations whose outcome was lost (released once the
        store answers)."""
        self._holds = Holds(store, self._watch, self._submit, self.bind)
        self._tally = _Tally()
        base = config if config is not None else Config.seed()
        self._follow(base)
        self._bindings = Bindings(store, base, refresh_every, clock=clock, then=self._follow)
        self.conflicts: list[Conflict] = []
        """The configuration's budgets and sources that the store defines otherwise (changed
        or deleted over the API), where the store's are in effect; each is logged."""
        try:
            self.conflicts = self._bindings.seed(to_micros(clock()))
        except StoreClosedError:
            raise
        except StoreError as exc:  # a store that takes no writes now: the file is the base
            self._watch.failed(exc)
            log.error("budgets and prices not seeded into %s: %s", store.where, redact(str(exc)))
        for conflict in self.conflicts:
            log.warning("%s", conflict)
        try:
            self.refresh()
        except ValidationError as exc:
            raise ConfigError(f"definitions stored in {store.where}: {exc}") from exc

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

    def close(self, *, timeout: float = CLOSE_WAIT) -> None:
        """Finish queued writes, return leases and close the store, in about `timeout`
        seconds at most.

        Safe from any thread while others are in calls, and more than once: a call in flight
        finishes or raises `StoreClosedError`, calls begun after `close()` did raise
        `StoreClosedError` (only the writer and this thread still use the store). A queued
        `record()` is written, or (if the store cannot take it within the time) its caller
        gets `StoreClosedError`; no caller is left waiting.
        """
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        # Later calls are refused now, not once the queue is written: the writer (and this
        # thread, returning leases) must not wait behind them for the store.
        admitted = [threading.current_thread()]
        if self._writer is not None and self._writer.thread is not None:
            admitted.append(self._writer.thread)
        self.store.admit_only(admitted)
        if self._writer is not None:
            self._writer.close(left())
        if self._holds.leases is not None:
            self._holds.leases.close(left())
        self.store.close(timeout=left())

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolution ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Apply the budgets and sources defined at run time (over the API, by any process)
        that changed since the gate last looked; whether the configuration changed.

        Called by itself when the last look is `refresh_every` seconds old by the gate's clock,
        from the per-call path and from every read of `config` (so `status()`, an `Analyst`
        and the server follow too); call it to see a change at once. Raises `ValidationError`
        if the stored definitions no longer fit the base configuration (the gate keeps the
        configuration it had).
        """
        return self._bindings.refresh()

    @property
    def base_config(self) -> Config:
        """The configuration the gate was opened with (the file), which seeded the store's
        budgets and sources; `config` is what is in effect: the store's on top of it."""
        return self._bindings.base

    @property
    def config(self) -> Config:
        """The configuration in effect: `base_config` with the run-time definitions on top,
        as of at most `refresh_every` seconds ago (a due look is taken first; a store that
        fails to answer leaves the configuration the gate had)."""
        if self._bindings.due(self.clock()):
            # A closed gate keeps showing the configuration it ended with.
            with contextlib.suppress(StoreClosedError):
                self._refresh_due()
        return self._bindings.live.config

    @property
    def leases(self) -> Leases | None:
        """This gate's budget leases (`None` until a budget it follows is leased)."""
        return self._holds.leases

    def _follow(self, config: Config) -> None:
        """Leases follow a new configuration's limits (the bindings resolve again)."""
        if self._holds.leases is not None:
            self._holds.leases.retire_all()
        elif any(b.lease is not None for b in config.budgets):
            self._holds.leases = Leases(self.store, self.clock, new_request_id)

    def _refresh_due(self) -> None:
        # One thread looks; the others go on with the configuration they have.
        if not self._bindings.refreshing:
            try:
                self.refresh()
            except StoreClosedError:
                raise
            except StoreError as exc:
                self._watch.failed(exc)
                log.error(
                    "budgets and prices not refreshed from %s: %s",
                    self.store.where,
                    redact(str(exc)),
                )
            except ValidationError as exc:
                log.error(
                    "budgets and prices not refreshed from %s: %s",
                    self.store.where,
                    redact(str(exc)),
                )

    def bind(self, service: str, source: str) -> Binding:
        """Resolve a service and source once; later calls reuse the result."""
        return self._bind_now(service, source)[0]

    def _bind_now(self, service: str, source: str) -> tuple[Binding, datetime]:
        """`bind()`, and the time it was bound at: the clock is read once, and again only
        after a refresh of the stored definitions (which may take a while)."""
        now = self.clock()
        if self._bindings.due(now):
            self._refresh_due()
            now = self.clock()
        return self._bindings.bind(service, source), now

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
        started = time.monotonic()
        binding = self.bind(service, source)
        check_flags(emergency=emergency, priority=priority)
        now, now_us = self._now()
        priced = binding.price(now_us)
        requested = priced.requested(amount, units, "amount")
        if requested == 0:
            why = "unpriced source (allowed)" if priced.price is None else "free"
            free = Decision("approved", 0, None, None, "normal", now, why)
            return self._tally.add(service, free)
        budgets = binding.budgets(check_labels(labels) if labels else None)
        slots = binding.slots(
            budgets, now_us, priority=priority, emergency=emergency, requested=requested
        )
        leases = self._holds.leases
        if leases is not None:
            leased = leases.peek(budgets, slots, requested, now_us)
            if leased is not None:  # our leases cover it: no need to ask the store
                checks = held_checks(budgets, slots, leased)
                covered = decide(checks, requested, now, priority=priority)
                return self._tally.add(service, covered)
        try:
            self.health.still_reachable(started)
            used = self.store.usage(slots, now_us)
            checks = request_checks(budgets, slots, used, requested)
            if any(c.refused for c in checks) and self.store.expire(now_us):
                used = self.store.usage(slots, now_us)
                checks = request_checks(budgets, slots, used, requested)
        except StoreClosedError:
            raise  # misuse, not an outage: no decision without the store
        except StoreError as exc:
            unchecked = self._watch.unreachable(budgets, slots, requested, now, exc)
            return self._tally.add(service, unchecked)
        self._watch.answered()
        return self._tally.add(service, decide(checks, requested, now, priority=priority))

    def resolve_unknown(self) -> int:
        """Release the holds of reservations whose outcome was lost while the store was
        unreachable (answered "denied", or approved unchecked by a fail-open budget), if the
        store kept them; how many were released.

        The gate does this by itself on its first call that reaches the store after such a
        loss, and `AlertEngine.evaluate()` on every run; call it to do it now.
        """
        return self._watch.resolve_unknown()

    def ping(self) -> None:
        """Ask the store for one cheap figure; raise `StoreError` if it does not answer (within
        its timeout). Counts, like every call, towards the outage record (`health`)."""
        self._watch.ping()

    def check_health(self) -> Health:
        """Whether the store answers (a ping) and takes writes (how this gate's latest writes
        went), as of now: what `/healthz` and `/metrics` show.

        While writes are failing and none has been tried for a while, this tries one small
        write that grows nothing (see `spendgate.health`), so that a gate nobody writes
        through learns that writes work again; otherwise it writes nothing.
        """
        return self._watch.check()

    def decisions(self) -> DecisionCounts:
        """How many calls this gate has decided since it opened (in this process), by
        service and outcome: every `authorize()` and `reserve()` answer, whichever face asked
        (`spend()`, `metered()`, the router, stream meters, the HTTP API). `/metrics` shows
        them as `spendgate_reservation_decisions_total`.

        >>> from spendgate.testing import FrozenClock
        >>> gate = Gate.open("memory://", clock=FrozenClock())
        >>> gate.authorize("scraper", "openstreetmap_tiles").status
        'approved'
        >>> gate.decisions().total("approved", service="scraper")
        1
        """
        return self._tally.snapshot()

    def require(
        self, service: str, source: str, amount: Decimal | int | str | None = None, **options: Any
    ) -> Decision:
        """`authorize()`, raising `BudgetExceededError` when the call is refused."""
        decision = self.authorize(service, source, amount, **options)
        raise_if_denied(decision)
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
        ttl: timedelta | float | str | None = None,
        reservation_id: str | None = None,
    ) -> Decision:
        """Hold `estimate` on every budget the call counts against, all or nothing.

        Returns the decision; when approved, `decision.reservation_id` names the hold to
        `commit()` or `release()`. A hold not settled within `ttl` (the configured
        `reservation_ttl`, 5 minutes by default; a `timedelta`, seconds, or `"30s"`) expires.

        Retrying with the same `reservation_id` and arguments answers with the same hold
        while it is pending; once it is committed, released or expired, the retry raises
        `ReservationStateError` (the hold is gone: take a new one under a new id).

        With the store unreachable the call is denied (or approved unchecked for a fail-open
        budget, see `authorize()`). If the store may have kept the hold (its connection was
        lost while it committed), the gate releases it once the store answers again.
        """
        started = time.monotonic()
        asked = self._ask(
            service,
            source,
            estimate,
            units=units,
            labels=labels,
            emergency=emergency,
            priority=priority,
            ttl=ttl,
            reservation_id=reservation_id,
        )
        return self._tally.add(service, self._holds.reserve(asked, started))

    async def areserve(
        self,
        service: str,
        source: str,
        estimate: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        labels: Mapping[str, str] | None = None,
        emergency: bool = False,
        priority: bool = False,
        ttl: timedelta | float | str | None = None,
        reservation_id: str | None = None,
    ) -> Decision:
        """`reserve()` for asyncio code: the task waits for the hold to be durable, the event
        loop does not.

        On a SQL store every such call joins the group commit (concurrent tasks and threads
        share transactions); `memory://` answers at once. A gate with leased budgets takes
        the hold on a worker thread. A cancelled call may still have taken its hold: name
        the id (`reservation_id`) to retry it, or let the hold expire.
        """
        started = time.monotonic()
        asked = self._ask(
            service,
            source,
            estimate,
            units=units,
            labels=labels,
            emergency=emergency,
            priority=priority,
            ttl=ttl,
            reservation_id=reservation_id,
        )
        return self._tally.add(service, await self._holds.areserve(asked, started))

    def _ask(
        self,
        service: str,
        source: str,
        estimate: Decimal | int | str | None,
        *,
        units: Usage | None,
        labels: Mapping[str, str] | None,
        emergency: bool,
        priority: bool,
        ttl: timedelta | float | str | None,
        reservation_id: str | None,
    ) -> Asked:
        """A `reserve()` call, validated and resolved: priced, its budgets' slots found."""
        binding, now = self._bind_now(service, source)
        now_us = to_micros(now)
        amount = binding.price(now_us).requested(estimate, units, "estimate")
        rid = (
            check_id(reservation_id, "reservation_id")
            if reservation_id is not None
            else new_request_id()
        )
        clean_labels = check_labels(labels)
        check_flags(emergency=emergency, priority=priority)
        # The configuration brought up to date above (no second look at the clock).
        config = self._bindings.live.config
        lifetime = config.reservation_ttl if ttl is None else parse_duration(ttl, "ttl")
        budgets = binding.budgets(clean_labels)
        slots = binding.slots(
            budgets, now_us, priority=priority, emergency=emergency, requested=amount
        )
        if amount == 0:
            # Nothing to hold: a free call passes even a budget that is already over its cap.
            # Its slots are kept (uncapped), so an actual cost at commit still counts.
            slots = tuple(Slot(s.budget, s.bucket, s.span_start, None) for s in slots)
        expires_at = now_us + duration_micros(lifetime)
        opened = Opened(binding, amount, clean_labels, emergency, expires_at)
        return Asked(rid, opened, budgets, slots, now, now_us, priority, reservation_id is not None)

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
        check_id(reservation_id, "reservation_id")
        return self._holds.commit(
            reservation_id,
            self.clock(),
            actual=actual,
            units=units,
            request_id=request_id,
            details=details,
        )

    async def acommit(
        self,
        reservation_id: str,
        actual: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        request_id: str | None = None,
        **details: Any,
    ) -> CommitResult:
        """`commit()` for asyncio code: the task waits for the durable commit, the event loop
        does not (see `areserve()`). A cancelled call may still have committed: committing
        again then raises `ReservationStateError` (committed), which says so."""
        check_id(reservation_id, "reservation_id")
        return await self._holds.acommit(
            reservation_id,
            self.clock(),
            actual=actual,
            units=units,
            request_id=request_id,
            details=details,
        )

    def release(self, reservation_id: str) -> ReservationState:
        """Return a reservation's hold unused. Releasing twice raises `ReservationStateError`."""
        _, now_us = self._now()
        return self._holds.release(reservation_id, now_us)

    async def arelease(self, reservation_id: str) -> ReservationState:
        """`release()` for asyncio code (see `areserve()`)."""
        _, now_us = self._now()
        return await self._holds.arelease(reservation_id, now_us)

    def expire(self) -> int:
        """Return every hold whose time ran out (the store also does this when it must)."""
        _, now_us = self._now()
        return self.store.expire(now_us)

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

        return metered(self, service, source, estimate, cost=cost, options=options)

    # -- recording ----------------------------------------------------------------------------

    def record(
        self,
        service: str,
        source: str | None = None,
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
        and reason), `cache_hits`, `batch_processing`, `quality_score`, `processing_time`;
        `source_cost_breakdown` (each source's `cost`, `success`, `failure_reason`,
        `quality_contribution`: their sum is the cost when none is given); the seed's
        service fields `image_resolution`, `enhancement_applied`, `completeness_score`,
        `free_sources_success_rate`, `cache_hit`. The seed's names `timestamp` and
        `total_cost` are taken for `time` and `cost`. Without a `source`, the event's source
        is the one its breakdown says cost money, else the first it used (see
        `implied_source()`).
        """
        started = _monotonic()
        given = EventDetails(cost, units, request_id, time, labels, emergency, details)
        write = self._prepare(service, source, given)
        try:
            self.health.still_reachable(started)
            result = self._submit(write)
        except StoreError as exc:
            self._watch.failed(exc, write=True)
            raise
        if result.created:
            self.health.wrote()
            if costs_log.isEnabledFor(logging.INFO):
                _log_cost(write.event, result, self.config.currency)
        elif result.status == "exists":
            result = self._retry_day(result)
        self._watch.answered()
        return _no_conflict(result)

    async def arecord(
        self,
        service: str,
        source: str | None = None,
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
        started = _monotonic()
        given = EventDetails(cost, units, request_id, time, labels, emergency, details)
        write = self._prepare(service, source, given)
        try:
            self.health.still_reachable(started)
            result = (
                await self._writer.asubmit(write)
                if self._writer is not None
                else self.store.record([write])[0]
            )
        except StoreError as exc:
            self._watch.failed(exc, write=True)
            raise
        if result.created:
            self.health.wrote()
            if costs_log.isEnabledFor(logging.INFO):
                _log_cost(write.event, result, self.config.currency)
        elif result.status == "exists":
            result = await asyncio.get_running_loop().run_in_executor(None, self._retry_day, result)
        if not self.health.quiet:  # the store answered after an outage: off the loop
            await asyncio.get_running_loop().run_in_executor(None, self._watch.answered)
        return _no_conflict(result)

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[RecordResult]:
        """Book several events in one transaction; one result per event, in order.

        Each mapping holds `record()`'s arguments. Every event is validated before any is
        written; a conflicting one gets status `conflict` and the others are stored. If the
        store refuses one (`CounterLimitError`: a total past its bound), none is stored.
        """
        writes = []
        for i, e in enumerate(events):
            try:
                writes.append(self.prepare(**dict(e)))
            except ValidationError as exc:  # name the event as well as its field
                raise ValidationError(f"events[{i}].{exc.field}", exc.value, exc.expected) from exc
        return self.record_prepared(writes)

    def record_prepared(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Store events made by `prepare()` in one transaction (shared with concurrent
        callers); one result per event, in order, `conflict` for a reused key."""
        try:
            if self._writer is not None:
                results = self._writer.submit_many(list(writes))
            else:
                results = self.store.record(writes)
        except StoreError as exc:
            self._watch.failed(exc, write=True)
            raise
        if any(r.created for r in results):
            self.health.wrote()
            if costs_log.isEnabledFor(logging.INFO):
                for write, result in zip(writes, results, strict=True):
                    if result.created:
                        _log_cost(write.event, result, self.config.currency)
        self._watch.answered()
        return [self._retry_day(r) if r.status == "exists" else r for r in results]

    def _retry_day(self, result: RecordResult) -> RecordResult:
        """A retry's answer with the `budget_day` its stored event counts in (the retry's
        own time may be another day's)."""
        stored = self.store.event(result.request_id)
        if stored is None:
            return result
        day = self.bind(stored.service, stored.source).budget_day(to_micros(stored.time))
        return replace(result, budget_day=day)

    def _submit(self, write: EventWrite) -> RecordResult:
        """Store one event: through the group committer, when the store batches."""
        if self._writer is not None:
            return self._writer.submit(write)
        return self.store.record([write])[0]

    def prepare(self, service: str, source: str | None = None, **fields: Any) -> EventWrite:
        """Validate and cost an event without writing it: what `record()` writes, of the same
        arguments."""
        return self._prepare(service, source, EventDetails.of(fields))

    def _prepare(self, service: str, source: str | None, given: EventDetails) -> EventWrite:
        if source is None:
            source = implied_source(given.details)
        return self.bind(service, source).write(given, self.clock(), new_request_id)

    # -- reading ------------------------------------------------------------------------------

    def status(self, at: datetime | None = None) -> list[BudgetStatus]:
        """Every budget's spent, reserved and remaining in the window containing `at` (now):
        `Decimal`s of the deployment currency (`BudgetStatus.spent_nanos` and the like are
        the nano-unit figures)."""
        now = require_aware(at, "at") if at is not None else self.clock()
        self.store.expire(to_micros(self.clock()))
        out = []
        for b in self.config.budgets:
            start, end = b.window.bounds(now)
            slot = Slot(b.name, to_micros(start), to_micros(b.window.span_start(now)), None)
            if b.window.kind == "rolling":
                start = b.window.span_start(now)
            balance = self.store.balance(slot)
            out.append(BudgetStatus(b, start, end, balance, now, self.config.currency))
        return out

    def event(self, request_id: str) -> Event | None:
        """The stored event with this request id, or `None`."""
        return self.store.event(check_id(request_id, "request_id"))

    def events(
        self, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with `since <= time < until`, oldest first."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValidationError("limit", limit, "a whole number of zero or more")
        return self.store.events(
            since=None if since is None else to_micros(require_aware(since, "since")),
            until=None if until is None else to_micros(require_aware(until, "until")),
            limit=limit,
        )


def _log_cost(event: Event, result: RecordResult, currency: str) -> None:
    """The seed's line for a recorded event: what it cost, or that it was free."""
    where = f"{event.service} on {event.source}, request {event.request_id}"
    if result.cost is None:
        costs_log.info("unpriced call recorded: %s", where)
    elif result.cost:
        costs_log.info("cost incurred: %s %s for %s", money_text(result.cost), currency, where)
    else:
        costs_log.info("FREE: %s", where)


def _no_conflict(result: RecordResult) -> RecordResult:
    """A single record's result; the same key with another payload is an error."""
    if result.status == "conflict":
        raise ConflictError("event", result.request_id)
    return result


class _Tally:
    """The decisions one gate answered, by service and outcome: a dict behind a lock, so the
    hot path pays a counter bump and no store write. A forked child starts from zero: the
    parent's decisions are the parent's, and scrapes of both must not count them twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, Outcome], int] = {}
        _TALLIES.add(self)

    def add(self, service: str, decision: Decision) -> Decision:
        """Count `decision`, made for `service`, and hand it back."""
        key = (service, decision.status)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        return decision

    def snapshot(self) -> DecisionCounts:
        """The counts as of now."""
        with self._lock:
            return DecisionCounts(dict(self._counts))

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._counts = {}


_TALLIES: weakref.WeakSet[_Tally] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for tally in list(_TALLIES):
        tally._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
