"""A gate's view of its store's health: outages, failing writes, and holds whose outcome
was lost.

The gate notes every call that found the store unreachable and the first answer after it,
so that an outage becomes one `store_unreachable` alert once the store answers again
(`AlertEngine` takes it from here), whoever saw it: a denied `authorize()`, a failed
`record()`, `/healthz`, or the evaluator's own reads. Outages not yet reported merge into one.

A `reserve()` whose connection was lost during COMMIT, and that the store could not look up
again in time, was answered "denied" (or "approved unchecked" for a fail-open budget). Its
id is kept here, and the hold, if the store did keep it, is released by the gate's next call
that reaches the store: it never holds room until its TTL while the caller believes it has
nothing (or books its cost unreserved).

A store can answer reads and still refuse every write (a full disk, a read-only file or
server): a ping cannot tell. So the gate also notes how its writes went (`Writes`): the
latest failed write (when, and what kind of failure, never a path or host), and whether a
write succeeded since. Only writes that wrote count as successes (an event recorded, a hold
taken, a commit, a release; not an idempotent retry that found its event stored, nor a
denied reservation, which write nothing on a full disk either). With no writes coming (a
balancer takes a failing server out of rotation), a health check tries one small write that
grows nothing (`Store.probe_write()`), at most every `WRITE_PROBE_EVERY`, and only while
writes are failing: the health probe itself never writes while they succeed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from spendgate.accounting import Slot
from spendgate.budgets import Budget
from spendgate.clock import Clock
from spendgate.decisions import Decision
from spendgate.errors import (
    ReservationStateError,
    StoreClosedError,
    StoreError,
    StoreFailure,
    StoreUnreachableError,
)
from spendgate.money import Nanos
from spendgate.redaction import redact
from spendgate.store.base import Store
from spendgate.windows import to_micros

log = logging.getLogger("spendgate")

MAX_UNKNOWN = 10_000
"""Lost-outcome reservations remembered at most; past it the oldest are left to their TTL."""
WRITE_PROBE_EVERY = timedelta(seconds=10)
"""While writes fail, a health check tries a write of its own at most this often (counting
from the latest failed write, real or probe)."""


@dataclass(frozen=True, slots=True)
class Outage:
    """A span of time in which the store did not answer a gate."""

    since: datetime
    """When a call first found the store unreachable."""
    error: str
    """Why, in words safe to show anywhere (the error's `reason`, such as "store
    unreachable": never a host, path or driver text)."""
    until: datetime | None = None
    """When the store first answered again (`None` while it does not)."""
    denied: int = 0
    """Calls denied meanwhile (budgets that fail closed)."""
    approved: int = 0
    """Calls approved unchecked meanwhile (budgets that fail open)."""

    def seconds(self, now: datetime) -> float:
        """How long it lasted (until `now` if it still does)."""
        return ((self.until or now) - self.since).total_seconds()

    def merged(self, other: Outage | None) -> Outage:
        """This outage and `other` as one: from the earlier start to the later end."""
        if other is None:
            return self
        first = self if self.since <= other.since else other
        ends = [o.until for o in (self, other)]
        return Outage(
            first.since,
            first.error,
            None if None in ends else max(e for e in ends if e is not None),
            self.denied + other.denied,
            self.approved + other.approved,
        )


@dataclass(frozen=True, slots=True)
class Writes:
    """How a gate's writes went: failing since the latest failed one, until one succeeds."""

    failing: bool = False
    """The latest write failed, and none succeeded since."""
    error_at: datetime | None = None
    """When a write last failed (kept once writes succeed again; `None`: none failed)."""
    error: StoreFailure | None = None
    """What kind of failure that was (`StoreError.reason`: "disk full", "read-only",
    "store unreachable"...): words safe to show, never a path, host or driver text."""

    @property
    def state(self) -> Literal["ok", "failing"]:
        """`failing` while the latest write failed, else `ok`."""
        return "failing" if self.failing else "ok"


@dataclass(frozen=True, slots=True)
class Health:
    """A health report: does the store answer, does it take writes (`Gate.check_health()`)."""

    store: Literal["ok", "unreachable"]
    """Whether the store answered a read within its timeout."""
    writes: Writes
    as_of: datetime

    @property
    def ok(self) -> bool:
        """The store answers and takes writes."""
        return self.store == "ok" and not self.writes.failing

    @property
    def status(self) -> Literal["ok", "degraded"]:
        """`ok`, or `degraded` when the store does not answer or writes fail."""
        return "ok" if self.ok else "degraded"

    def to_dict(self) -> dict[str, Any]:
        """The report as `/healthz` shows it."""
        at = self.writes.error_at
        return {
            "status": self.status,
            "store": self.store,
            "writes": self.writes.state,
            "last_write_error_at": None if at is None else at.isoformat(),
            "last_write_error": self.writes.error,
            "as_of": self.as_of.isoformat(),
        }


class StoreHealth:
    """Outages, failing writes and lost-outcome reservations, as one gate saw them.
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self._unknown: dict[str, None] = {}  # reservation ids, oldest first
        self._settling = threading.Lock()
        self.failed_at = -math.inf
        """`time.monotonic()` of the latest call that found the store unreachable."""
        self.last_error: StoreError | None = None
        """That call's error."""
        self._writes = Writes()
        self._probing = threading.Lock()

    @property
    def quiet(self) -> bool:
        """Nothing to do when the store answers: no outage in progress, no lost outcome.

        Read without the lock: the per-call path looks at it after every answer, and a
        change it misses is seen by the next call.
        """
        outage = self._outage
        return (outage is None or outage.until is not None) and not self._unknown

    @property
    def outage(self) -> Outage | None:
        """The outage not yet reported (in progress if its `until` is `None`)."""
        return self._outage

    def failed(
        self, at: datetime, error: StoreError, outcome: Literal["denied", "approved"] | None = None
    ) -> None:
        """A call found the store unreachable at `at` (and was `outcome`, if it was decided)."""
        with self._lock:
            self.failed_at = time.monotonic()
            self.last_error = error
            outage = self._outage
            if outage is None:
                outage = Outage(at, error.reason)
            elif outage.until is not None:  # again before it was reported: one outage
                outage = replace(outage, until=None)
            if outcome == "denied":
                outage = replace(outage, denied=outage.denied + 1)
            elif outcome == "approved":
                outage = replace(outage, approved=outage.approved + 1)
            self._outage = outage

    def call_failed(
        self,
        at: datetime,
        error: StoreError,
        outcome: Literal["denied", "approved"] | None = None,
        *,
        write: bool = False,
    ) -> None:
        """A call failed on a store error at `at`: if the store did not answer, note the outage
        (an error of one call's own, such as a row the store refused, is none). A failed
        `write` is noted for the health report whatever the store error (a closed store is
        misuse)."""
        if isinstance(error, StoreUnreachableError):
            self.failed(at, error, outcome)
        if write and not isinstance(error, StoreClosedError):
            self.write_failed(at, error)

    def still_reachable(self, started: float) -> None:
        """Raise the error of a call that found the store unreachable after one that began at
        `started` (`time.monotonic()`; its own refresh, or another thread): one call waits
        for a dead store once, not twice."""
        error = self.last_error
        if self.failed_at > started and error is not None:
            raise StoreUnreachableError(str(error))  # a new one: that one is another call's

    def answered(self, at: datetime) -> None:
        """The store answered a call at `at`: an outage in progress is over."""
        with self._lock:
            if self._outage is not None and self._outage.until is None:
                self._outage = replace(self._outage, until=at)

    def take(self, at: datetime) -> Outage | None:
        """The outage to report, forgotten here. Call it after the store answered you (at
        `at`, which ends an outage still in progress)."""
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None and outage.until is None:
            outage = replace(outage, until=at)
        return outage

    # -- writes -----------------------------------------------------------------------------------

    @property
    def writes(self) -> Writes:
        """How the latest writes went."""
        return self._writes

    def write_failed(self, at: datetime, error: StoreError) -> None:
        """A write failed at `at` on `error` (any store error: unreachable, disk full...)."""
        with self._lock:
            self._writes = Writes(True, at, error.reason)

    def wrote(self) -> None:
        """A write succeeded: writes are ok again (when and why the last one failed stay).

        Reads without the lock first: the per-call path calls this after every write."""
        if self._writes.failing:
            with self._lock:
                self._writes = replace(self._writes, failing=False)

    def probe(self, at: datetime, write: Callable[[], object]) -> None:
        """Try `write` (a write that grows nothing) if writes are failing and none failed
        within `WRITE_PROBE_EVERY` of `at`, and note how it went; a `StoreError` it raises
        is noted, not raised. One probe at a time: another thread probing already, this
        returns at once."""
        writes = self._writes
        if not writes.failing or (
            writes.error_at is not None and at - writes.error_at < WRITE_PROBE_EVERY
        ):
            return
        if not self._probing.acquire(blocking=False):
            return
        try:
            write()
        except StoreClosedError:
            raise  # misuse, not ill health
        except StoreError as exc:
            self.write_failed(at, exc)
        else:
            self.wrote()
        finally:
            self._probing.release()

    # -- lost outcomes ----------------------------------------------------------------------------

    def lost(self, reservation_id: str) -> None:
        """A reservation whose outcome is unknown: its hold, if stored, is to be released."""
        with self._lock:
            self._unknown[reservation_id] = None
            while len(self._unknown) > MAX_UNKNOWN:
                del self._unknown[next(iter(self._unknown))]

    @property
    def unknown(self) -> tuple[str, ...]:
        """The reservation ids whose holds are still to be released, oldest first."""
        with self._lock:
            return tuple(self._unknown)

    def claim(self, reservation_id: str) -> None:
        """A caller reserves this id again: the hold is theirs now, not to be released.

        Waits for a release of it already under way, which the caller's reserve then sees.
        """
        if reservation_id in self._unknown:
            with self._settling, self._lock:
                self._unknown.pop(reservation_id, None)

    def settle(self, release: Callable[[str], object], *, limit: int = 100) -> int:
        """Release the holds of lost outcomes with `release(id)` (up to `limit`, oldest first);
        how many were released. Stops at the first `StoreError` (the store is down again:
        the rest wait for its next answer). Another thread settling already: returns 0."""
        if not self._settling.acquire(blocking=False):
            return 0
        done = 0
        try:
            for reservation_id in self.unknown[:limit]:
                try:
                    release(reservation_id)
                    done += 1
                except ReservationStateError:
                    pass  # never stored, or settled meanwhile: nothing is held
                except StoreError:
                    break
                with self._lock:
                    self._unknown.pop(reservation_id, None)
        finally:
            self._settling.release()
        return done


class StoreWatch:
    """How one gate's calls to its store end, noted as they end: the `health` it reports,
    the `outages` it decided, and the clean-up due when the store answers again."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.health = StoreHealth()
        self.outages: Counter[str] = Counter()
        """Decisions made while the store was unreachable: `denied` (fail closed) and
        `approved` (a fail-open budget)."""

    def failed(
        self,
        exc: StoreError,
        outcome: Literal["denied", "approved"] | None = None,
        *,
        write: bool = False,
    ) -> None:
        """Note a call's store error (see `StoreHealth.call_failed()`)."""
        self.health.call_failed(self.clock(), exc, outcome, write=write)

    def answered(self) -> None:
        """The store answered a call: end an outage in progress, and release the holds of
        reservations whose outcome was lost (see `resolve_unknown()`)."""
        if not self.health.quiet:  # after an outage only: the per-call path skips this
            self.health.answered(self.clock())
            try:
                self.resolve_unknown()
            except Exception:  # clean-up must not fail the call that happened to trigger it
                log.exception("holds of reservations whose outcome was lost not released")

    def resolve_unknown(self) -> int:
        """Release the holds of reservations whose outcome was lost, if the store kept them;
        how many were released."""
        now_us = to_micros(self.clock())
        return self.health.settle(lambda rid: self.store.release(rid, now_us))

    def ping(self) -> None:
        """Ask the store for one cheap figure; raise `StoreError` if it does not answer."""
        try:
            self.store.revision()
        except StoreError as exc:
            self.failed(exc)
            raise
        self.answered()

    def check(self) -> Health:
        """Whether the store answers and takes writes, as of now (see `Gate.check_health()`)."""
        now = self.clock()
        try:
            self.ping()
        except StoreError:
            return Health("unreachable", self.health.writes, now)
        self.health.probe(now, lambda: self.store.probe_write(to_micros(now)))
        return Health("ok", self.health.writes, now)

    def unreachable(
        self,
        budgets: tuple[Budget, ...],
        slots: tuple[Slot, ...],
        requested: Nanos,
        now: datetime,
        exc: StoreError,
        *,
        reservation_id: str | None = None,
    ) -> Decision:
        """Decide without the store (see `decide_unreachable()`), counting the outcome in
        `outages`. (A `reservation_id` given: a reserve, whose failed write is noted too.)"""
        decision = decide_unreachable(
            budgets, slots, requested, now, exc, reservation_id=reservation_id
        )
        outcome: Literal["denied", "approved"] = "approved" if decision.approved else "denied"
        self.failed(exc, outcome, write=reservation_id is not None)
        self.outages[outcome] += 1
        return decision


def decide_unreachable(
    budgets: tuple[Budget, ...],
    slots: tuple[Slot, ...],
    requested: Nanos,
    now: datetime,
    error: StoreError,
    *,
    reservation_id: str | None = None,
) -> Decision:
    """Decide a call without the store: deny (fail closed) unless every hard budget that would
    decide is configured `fail_open`, and log which (an approved reserve keeps its
    `reservation_id`)."""
    deciding = [b for b, s in zip(budgets, slots, strict=True) if s.cap is not None]
    closed = [b.name for b in deciding if not b.fail_open]
    # The reason leaves the process (responses, the dashboard, the live feed): the kind of
    # failure only. The error's text names the server and carries the driver's words:
    # logged redacted, at DEBUG.
    why = "" if error.reason == "store unreachable" else f" ({error.reason})"
    if closed:
        log.warning("store unreachable%s, call denied (budget %s fails closed)", why, closed[0])
        log.debug("store unreachable: %s", redact(str(error)))
        return Decision(
            "denied",
            requested,
            None,
            closed[0],
            "normal",
            now,
            f"store unreachable{why}, budget {closed[0]!r} fails closed",
        )
    names = ", ".join(repr(b.name) for b in deciding) or "none"
    log.warning("store unreachable%s, call approved (fail-open budgets %s)", why, names)
    log.debug("store unreachable: %s", redact(str(error)))
    return Decision(
        "approved",
        requested,
        None,
        deciding[0].name if deciding else None,
        "normal",
        now,
        f"store unreachable{why}, approved unchecked (fail-open budgets: {names})",
        reservation_id,
    )
