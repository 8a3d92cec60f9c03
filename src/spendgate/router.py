"""Free first, paid only when the budget allows: one capability served by an ordered list of
sources.

A `FreeFirstRouter` tries its free sources in the order given, then its paid ones from the
cheapest up. A paid source is called only after the gate has reserved its cost; the actual
cost is committed when it answers, the hold released when it fails. Each request becomes one
event that says which source served it, what was attempted, what failed and why, and the
cost, so the free-source success rate and the cost per request come out of the store.

```python
router = FreeFirstRouter(gate, "image_processor", [
    ("extended_cache", cache.get),
    ("openstreetmap_tiles", osm.tile),
    ("mapbox_satellite", mapbox.tile),
    ("google_maps_optimized", google.tile),
])
outcome = router(lat, lng)          # served, budget_exhausted or all_failed
```
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from spendgate.decisions import Decision
from spendgate.errors import ConflictError, SpendgateError, ValidationError
from spendgate.events import (
    Fallback,
    check_flags,
    check_id,
    check_labels,
    measure,
    storable_text,
)
from spendgate.gate import Gate
from spendgate.holds import new_request_id
from spendgate.money import Nanos, from_nanos
from spendgate.spend import raise_if_denied
from spendgate.windows import to_micros

T = TypeVar("T")
R = TypeVar("R")
Status = Literal["served", "budget_exhausted", "all_failed", "already_recorded"]
DegradeMode = Literal["priority_only", "cheapest_only"]
DEGRADE_MODES: tuple[DegradeMode, ...] = ("priority_only", "cheapest_only")


class LowQualityError(Exception):
    """A source answered, but below the router's minimum quality: treated as a failure."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What became of one routed request."""

    status: Status
    result: T | None
    served_by: str | None
    attempted: tuple[str, ...]
    failures: tuple[Fallback, ...]
    cost: Nanos
    request_id: str
    decision: Decision | None = None
    quality_score: float | None = None

    @property
    def served(self) -> bool:
        """Whether some source answered."""
        return self.status == "served"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, money as an exact decimal string."""
        return {
            "status": self.status,
            "served_by": self.served_by,
            "attempted": list(self.attempted),
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "cost": f"{from_nanos(self.cost):f}",
            "request_id": self.request_id,
            "quality_score": self.quality_score,
            "alternative_action": "use_free_sources_only"
            if self.status == "budget_exhausted"
            else None,
        }


@dataclass(frozen=True, slots=True)
class _Route:
    source: str
    call: Callable[..., Any]
    paid: bool
    estimate: Nanos


@dataclass
class _Request:
    """One request so far: what was tried, what failed, which free sources were asked."""

    rid: str
    labels: dict[str, str]
    started: float = field(default_factory=time.perf_counter)
    attempted: list[str] = field(default_factory=list)
    free_attempted: list[str] = field(default_factory=list)
    paid_used: list[str] = field(default_factory=list)
    failures: list[Fallback] = field(default_factory=list)

    def failed(self, source: str, reason: str) -> None:
        """Note a source that failed, and why."""
        self.failures.append(Fallback(source, reason))

    def outcome(
        self,
        status: Status,
        result: Any = None,
        *,
        served_by: str | None = None,
        cost: Nanos = 0,
        decision: Decision | None = None,
        score: float | None = None,
    ) -> Outcome[Any]:
        """The request's outcome, with what it tried and what failed."""
        return Outcome(
            status,
            result,
            served_by,
            tuple(self.attempted),
            tuple(self.failures),
            cost,
            self.rid,
            decision,
            score,
        )

    def details(self, quality: float | None) -> dict[str, Any]:
        """The event fields that describe the request's path."""
        return {
            "free_sources_attempted": tuple(self.free_attempted),
            "paid_apis_used": tuple(self.paid_used),
            "fallbacks_triggered": tuple(self.failures),
            "processing_time": round(time.perf_counter() - self.started, 6),
            "quality_score": quality,
        }


class FreeFirstRouter:
    """Serve one capability from free sources first, paid ones only within budget.

    `routes` are `(source, callable)` pairs. Free sources keep the order given; paid sources
    are tried from the cheapest (by their price for one plain call). A call that raises, or
    answers below `min_quality` (scored by `quality(result)`), is a failure, and the next
    source is tried. When the budget refuses the paid sources the request ends as
    `budget_exhausted` (or raises `BudgetExceededError` if `raise_on_exhausted`), never with a
    paid call the budget did not approve.

    A request served by one of `caches` (by default, the sources with "cache" in their name)
    counts as a cache hit.

    At a budget's `degrade` rung, `degrade="priority_only"` (the default) keeps paid sources
    for callers marked `priority=True`; `degrade="cheapest_only"` lets every caller use the
    cheapest paid source and keeps the others for priority callers.
    """

    def __init__(
        self,
        gate: Gate,
        service: str,
        routes: Sequence[tuple[str, Callable[..., Any]]],
        *,
        min_quality: float | None = None,
        quality: Callable[[Any], float | None] | None = None,
        degrade: DegradeMode = "priority_only",
        raise_on_exhausted: bool = False,
        caches: Collection[str] | None = None,
    ) -> None:
        self.gate = gate
        self.service = check_id(service, "service")
        if isinstance(routes, str | bytes) or not isinstance(routes, Sequence) or not routes:
            raise ValidationError("routes", routes, "a list of (source, callable), at least one")
        if degrade not in DEGRADE_MODES:
            raise ValidationError("degrade", degrade, f"one of {', '.join(DEGRADE_MODES)}")
        if min_quality is not None and (
            isinstance(min_quality, bool) or not isinstance(min_quality, int | float)
        ):
            raise ValidationError("min_quality", min_quality, "a number")
        self.min_quality = min_quality
        self.quality = quality
        self.degrade = degrade
        self.raise_on_exhausted = raise_on_exhausted
        names = [pair[0] for pair in routes if isinstance(pair, tuple | list) and pair]
        # A request served by a cache counts as a cache hit (the seed's cache_hits).
        self.caches = frozenset(
            caches if caches is not None else (n for n in names if "cache" in str(n))
        )
        free: list[_Route] = []
        paid: list[_Route] = []
        seen: set[str] = set()
        for i, pair in enumerate(routes):
            if not isinstance(pair, tuple | list) or len(pair) != 2 or not callable(pair[1]):
                raise ValidationError(f"routes[{i}]", pair, "a (source, callable) pair")
            source = check_id(pair[0], f"routes[{i}].source")
            if source in seen:
                raise ValidationError(f"routes[{i}].source", source, "each source once")
            seen.add(source)
            priced = gate.bind(self.service, source).price(to_micros(gate.clock()))
            if priced.price is None:  # an allowed-unpriced source cannot be ranked by cost
                raise ValidationError(
                    f"routes[{i}].source", source, "a source with a price (free or paid)"
                )
            route = _Route(
                source, pair[1], priced.paid, priced.estimate(None) if priced.paid else 0
            )
            (paid if route.paid else free).append(route)
        self.routes: tuple[_Route, ...] = (*free, *sorted(paid, key=lambda r: r.estimate))
        self._cheapest_paid = next((r.source for r in self.routes if r.paid), None)

    @property
    def order(self) -> tuple[str, ...]:
        """The sources in the order they are tried."""
        return tuple(r.source for r in self.routes)

    # -- sync -------------------------------------------------------------------------------

    def __call__(
        self,
        *args: Any,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        priority: bool = False,
        emergency: bool = False,
        **kwargs: Any,
    ) -> Outcome[Any]:
        """Serve one request; `args` and `kwargs` go to each source's callable."""
        req = self._start(request_id, labels, priority, emergency)
        if (earlier := self._done_before(req)) is not None:
            return earlier
        for route in self.routes:
            req.attempted.append(route.source)
            if not route.paid:
                req.free_attempted.append(route.source)
                ok, result, score = self._try(route, req, args, kwargs)
                if ok:
                    return self._served_free(route, result, score, req)
                continue
            decision = self._reserve(route, req, priority, emergency)
            if decision.reservation_id is None:
                if self._only_this_source(decision):
                    req.failed(route.source, decision.reason)
                    continue  # its own budget refused: a dearer source may still be allowed
                return self._exhausted(decision, req)
            req.paid_used.append(route.source)
            try:
                ok, result, score = self._try(route, req, args, kwargs)
            except BaseException:  # interrupted: the call may not have been made
                self.gate.release(decision.reservation_id)
                raise
            if ok:
                return self._served_paid(route, decision, result, score, req)
            self.gate.release(decision.reservation_id)
        return self._all_failed(req)

    def _try(
        self, route: _Route, req: _Request, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, Any, float | None]:
        try:
            result = route.call(*args, **kwargs)
            score = self._score(result)
        except Exception as exc:  # a failing source is an expected outcome: try the next one
            req.failed(route.source, _reason(exc))
            return False, None, None
        return True, result, score

    # -- async ------------------------------------------------------------------------------

    async def acall(
        self,
        *args: Any,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        priority: bool = False,
        emergency: bool = False,
        **kwargs: Any,
    ) -> Outcome[Any]:
        """`__call__` for asyncio: sources may be coroutine functions or plain callables.

        Store calls run in worker threads, so the event loop keeps going; a cancelled
        request releases the hold of the paid call it was waiting on.
        """
        loop = asyncio.get_running_loop()

        def off_loop(fn: Callable[..., R], *fn_args: Any) -> asyncio.Future[R]:
            return loop.run_in_executor(None, functools.partial(fn, *fn_args))

        req = self._start(request_id, labels, priority, emergency)
        if (earlier := await off_loop(self._done_before, req)) is not None:
            return earlier
        for route in self.routes:
            req.attempted.append(route.source)
            if not route.paid:
                req.free_attempted.append(route.source)
                ok, result, score = await self._atry(route, req, args, kwargs)
                if ok:
                    return await off_loop(self._served_free, route, result, score, req)
                continue
            reserving = off_loop(self._reserve, route, req, priority, emergency)
            try:
                decision = await asyncio.shield(reserving)
            except asyncio.CancelledError:  # the hold lands anyway: give it back when it does
                reserving.add_done_callback(self._release_landed)
                raise
            if decision.reservation_id is None:
                if self._only_this_source(decision):
                    req.failed(route.source, decision.reason)
                    continue
                return await off_loop(self._exhausted, decision, req)
            req.paid_used.append(route.source)
            try:
                ok, result, score = await self._atry(route, req, args, kwargs)
            except BaseException:  # cancelled while the paid call ran: give the hold back
                await asyncio.shield(off_loop(self.gate.release, decision.reservation_id))
                raise
            if ok:
                return await off_loop(self._served_paid, route, decision, result, score, req)
            await off_loop(self.gate.release, decision.reservation_id)
        return await off_loop(self._all_failed, req)

    async def _atry(
        self, route: _Route, req: _Request, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, Any, float | None]:
        try:
            result = route.call(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            score = self._score(result)
        except Exception as exc:  # a failing source: try the next one
            req.failed(route.source, _reason(exc))
            return False, None, None
        return True, result, score

    def _only_this_source(self, decision: Decision) -> bool:
        """Whether the refusing budget counts only the refused source."""
        budgets = {b.name: b for b in self.gate.config.budgets}
        refusing = budgets.get(decision.budget or "")
        return refusing is not None and refusing.scope.kind == "source"

    def _release_landed(self, reserving: asyncio.Future[Decision]) -> None:
        if reserving.cancelled() or reserving.exception() is not None:
            return
        rid = reserving.result().reservation_id
        if rid is not None:
            with contextlib.suppress(SpendgateError):  # else its TTL returns it
                self.gate.release(rid)

    def _reserve(self, route: _Route, req: _Request, priority: bool, emergency: bool) -> Decision:
        return self.gate.reserve(
            self.service,
            route.source,
            labels=req.labels,
            emergency=emergency,
            priority=priority
            or (self.degrade == "cheapest_only" and route.source == self._cheapest_paid),
        )

    # -- outcomes ---------------------------------------------------------------------------

    def _start(
        self,
        request_id: str | None,
        labels: Mapping[str, str] | None,
        priority: bool,
        emergency: bool,
    ) -> _Request:
        check_flags(priority=priority, emergency=emergency)
        rid = check_id(request_id, "request_id") if request_id is not None else new_request_id()
        return _Request(rid, check_labels(labels))

    def _done_before(self, req: _Request) -> Outcome[Any] | None:
        """A request id already recorded: the request is not made (or paid for) again."""
        event = self.gate.event(req.rid)
        if event is None:
            return None
        status: Status = "already_recorded"
        return Outcome(
            status, None, event.source if event.success else None, (), (), event.cost or 0, req.rid
        )

    def _score(self, result: Any) -> float | None:
        score = self.quality(result) if self.quality is not None else None
        try:
            score = measure(score, "quality_score")  # a finite number from 0 up, or None
        except ValidationError as exc:
            raise LowQualityError(f"unusable quality score {score!r}") from exc
        if self.min_quality is not None and (score is None or score < self.min_quality):
            raise LowQualityError(f"quality {score} below {self.min_quality}")
        return score

    def _served_free(
        self, route: _Route, result: Any, score: float | None, req: _Request
    ) -> Outcome[Any]:
        self.gate.record(
            self.service,
            route.source,
            request_id=req.rid,
            labels=req.labels,
            sources_used=(route.source,),
            cache_hits=int(route.source in self.caches),
            **req.details(score),
        )
        return req.outcome("served", result, served_by=route.source, score=score)

    def _served_paid(
        self, route: _Route, decision: Decision, result: Any, score: float | None, req: _Request
    ) -> Outcome[Any]:
        assert decision.reservation_id is not None
        try:
            committed = self.gate.commit(
                decision.reservation_id,
                request_id=req.rid,
                sources_used=(route.source,),
                **req.details(score),
            )
        except ConflictError:
            # The request id names another event: the paid call was made all the same, so it
            # is booked under its reservation's id rather than lost.
            committed = self.gate.commit(
                decision.reservation_id, sources_used=(route.source,), **req.details(score)
            )
        return req.outcome(
            "served",
            result,
            served_by=route.source,
            cost=committed.cost or 0,
            decision=decision,
            score=score,
        )

    def _exhausted(self, decision: Decision, req: _Request) -> Outcome[Any]:
        self._record_failure(req, f"free sources failed; paid refused: {decision.reason}")
        if self.raise_on_exhausted:
            raise_if_denied(decision)
        return req.outcome("budget_exhausted", decision=decision)

    def _all_failed(self, req: _Request) -> Outcome[Any]:
        self._record_failure(req, "every source failed")
        return req.outcome("all_failed")

    def _record_failure(self, req: _Request, reason: str) -> None:
        # The request is one event even when nothing served it: booked, at no cost, against
        # the last free source tried (else the last source), failed, with the reason.
        source = req.free_attempted[-1] if req.free_attempted else req.attempted[-1]
        self.gate.record(
            self.service,
            source,
            request_id=req.rid,
            labels=req.labels,
            cost=0,
            success=False,
            failure_reason=reason,
            **req.details(None),
        )


def _reason(exc: BaseException) -> str:
    # Another party's message: made storable rather than refused (the event must go in).
    text = storable_text(str(exc)) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."
