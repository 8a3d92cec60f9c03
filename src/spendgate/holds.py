"""The holds a gate took for its callers, from `reserve()` until `commit()` or `release()`.

A hold lives in one of three places: in the store (the usual case), in this gate's leases (a
slice of a budget taken ahead, see `spendgate.leases`), or nowhere at all (approved unchecked
while the store was unreachable, for a fail-open budget). `Holds` remembers which, so that
each is settled where it is; a hold it does not remember (taken by another process, or
before a restart) is looked up in the store.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from spendgate.accounting import Slot
from spendgate.binding import Binding, EventDetails
from spendgate.budgets import Budget
from spendgate.decisions import Decision, decide, held_checks, request_checks
from spendgate.errors import (
    ConflictError,
    OutcomeUnknownError,
    ReservationStateError,
    StoreClosedError,
    StoreError,
)
from spendgate.events import RecordResult
from spendgate.health import StoreWatch
from spendgate.leases import Leases, LocalHold
from spendgate.money import Nanos
from spendgate.pricing import Usage
from spendgate.store.base import (
    CommitResult,
    EventWrite,
    LedgerStore,
    ReservationState,
    ReservationWrite,
    ReserveResult,
)
from spendgate.windows import to_micros

_PRUNE_AT = 10_000  # holds remembered before the expired ones are forgotten


def new_request_id() -> str:
    """A fresh, time-ordered id (UUIDv7 layout): new ids sort after old ones.

    Time-ordered keys keep the store's unique index appending at its end instead of
    writing all over it.
    """
    raw = bytearray(os.urandom(16))
    raw[:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")  # milliseconds, 48 bits
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Opened:
    """What a gate remembers of a hold it took, for its commit."""

    binding: Binding
    amount: Nanos
    labels: Mapping[str, str]
    emergency: bool
    expires_at: int
    local: LocalHold | None = None  # taken from leases, not from the store
    unheld: bool = False  # approved while the store was unreachable (a fail-open budget)

    @property
    def in_store(self) -> bool:
        return self.local is None and not self.unheld


@dataclass(slots=True)
class Asked:
    """One `reserve()` call, resolved: what each of its paths decides on."""

    rid: str
    opened: Opened
    budgets: tuple[Budget, ...]
    slots: tuple[Slot, ...]
    now: datetime
    now_us: int
    priority: bool
    retry: bool  # the caller named the id: a retry, maybe of a hold the store kept

    def held(self, used: Iterable[Nanos]) -> Decision:
        """The decision with the hold taken: `used` (the hold included) on each budget."""
        checks = held_checks(self.budgets, self.slots, used)
        amount = self.opened.amount
        return decide(checks, amount, self.now, priority=self.priority, reservation_id=self.rid)

    def write(self) -> ReservationWrite:
        """The hold as the store takes it."""
        opened, binding = self.opened, self.opened.binding
        amount, labels, emergency = opened.amount, opened.labels, opened.emergency
        # In field order (on every reserve: keywords cost more to match than to build it).
        return ReservationWrite(
            self.rid,  # reservation_id
            binding.hold_fingerprint(amount, labels, emergency, self.priority),
            self.slots,
            amount,
            self.now_us,  # created_at
            opened.expires_at,
            binding.service,
            binding.source,
            emergency,
            labels,
        )


class Holds:
    """The holds one gate took and has not settled, and where each is held. Thread-safe
    (each hold is one caller's; the map is only ever read and written by key).

    `submit(write)` stores one event (through the gate's group committer); `bind()` resolves
    the service and source of a hold taken elsewhere, to commit it here.
    """

    def __init__(
        self,
        store: LedgerStore,
        watch: StoreWatch,
        submit: Callable[[EventWrite], RecordResult],
        bind: Callable[[str, str], Binding],
    ) -> None:
        self.store = store
        self.watch = watch
        self._submit = submit
        self._bind = bind
        self.leases: Leases | None = None
        """This gate's leases, once a budget it follows is leased."""
        self._open: dict[str, Opened] = {}
        self._prune_at = _PRUNE_AT

    # -- taking -----------------------------------------------------------------------------------

    def reserve(self, asked: Asked, started: float) -> Decision:
        """Take the hold `asked` for: out of the leases when they cover it (not for a named
        id: only the store can tell a retry), else in the store; denied, or approved unheld
        (fail-open), if the store does not answer a call that began at `started`."""
        if self.leases is not None and asked.opened.amount and not asked.retry:
            leased = self._reserve_leased(asked)
            if leased is not None:
                return leased
        write = self._store_write(asked, started)
        try:
            result = self.store.reserve(write, asked.now_us)
        except StoreClosedError:
            raise  # misuse, not an outage: no decision without the store
        except StoreError as exc:
            return self._reserve_unreachable(asked, exc)
        return self._reserve_answered(asked, result)

    async def areserve(self, asked: Asked, started: float) -> Decision:
        """`reserve()` for asyncio: the task awaits the store (`LedgerStore.areserve`), the
        event loop runs on. What may wait on the store besides is done on a worker thread:
        the whole call when the gate has leases (one may need topping up), a retry's
        figures, and the clean-up once the store answers after an outage."""
        if self.leases is not None:
            return await asyncio.to_thread(self.reserve, asked, started)
        try:
            write = self._store_write(asked, started)
            result = await self.store.areserve(write, asked.now_us)
        except StoreClosedError:
            raise
        except StoreError as exc:
            return self._reserve_unreachable(asked, exc)
        if result.status == "exists" or not self.watch.health.quiet:
            return await asyncio.to_thread(self._reserve_answered, asked, result)
        return self._reserve_answered(asked, result)

    def _store_write(self, asked: Asked, started: float) -> ReservationWrite:
        """The hold as the store takes it; `StoreError` if the store was found unreachable
        after this call began (by another: one call waits for a dead store, not each)."""
        health = self.watch.health
        if asked.retry:
            health.claim(asked.rid)  # a retry of a lost reserve: the hold is the caller's again
        health.still_reachable(started)
        return asked.write()

    def _reserve_leased(self, asked: Asked) -> Decision | None:
        """Hold the amount out of the leases; `None` when they do not cover it."""
        assert self.leases is not None
        opened = asked.opened
        local = self.leases.take(
            asked.rid,
            asked.budgets,
            asked.slots,
            opened.amount,
            now=asked.now_us,
            expires_at=opened.expires_at,
        )
        if local is None:
            return None
        opened.local, leased = local
        self._open[asked.rid] = opened
        return asked.held(leased)

    def _reserve_unreachable(self, asked: Asked, exc: StoreError) -> Decision:
        """Decide a reserve the store did not answer: denied, or approved unheld (fail-open).
        A hold the store may have kept is noted, to be released once it answers."""
        if isinstance(exc, OutcomeUnknownError):
            self.watch.health.lost(asked.rid)
        opened = asked.opened
        decision = self.watch.unreachable(
            asked.budgets, asked.slots, opened.amount, asked.now, exc, reservation_id=asked.rid
        )
        if decision.approved:
            opened.unheld = True
            self._open[asked.rid] = opened
        return decision

    def _reserve_answered(self, asked: Asked, result: ReserveResult) -> Decision:
        """The decision of the store's answer: a new hold, a refusal, or a retry's replay."""
        self.watch.answered()
        rid = asked.rid
        if result.status == "created":
            self.watch.health.wrote()
        if result.status == "conflict":
            raise ConflictError("reservation", rid)
        if result.status == "exists" and result.state != "pending":
            # The hold is gone: approving again would let a retry spend money nobody holds.
            raise ReservationStateError(rid, result.state or "settled", "reserve again")
        if result.status == "exists":  # still held: the same approval, with today's figures
            return asked.held(self.store.usage(asked.slots, asked.now_us))
        if result.status == "denied":
            amount = asked.opened.amount
            checks = request_checks(asked.budgets, asked.slots, result.used, amount, result.refused)
            return decide(checks, amount, asked.now, priority=asked.priority)
        if len(self._open) >= self._prune_at:
            self._forget_expired(asked.now_us)
        self._open[rid] = asked.opened
        return asked.held(result.used)

    def _forget_expired(self, now_us: int) -> None:
        # Holds that were never settled (their callers died) expire in the store; forget them
        # here too, so a long-running process does not remember them forever.
        # Those still pending stay; the next look comes when as many again are taken, so
        # a process holding many at once does not look through them on every call.
        for rid, opened in list(self._open.items()):
            if opened.expires_at <= now_us:
                self._open.pop(rid, None)
        self._prune_at = max(_PRUNE_AT, 2 * len(self._open))

    # -- settling ---------------------------------------------------------------------------------

    def commit(
        self,
        reservation_id: str,
        now: datetime,
        *,
        actual: Decimal | int | str | None,
        units: Usage | None,
        request_id: str | None,
        details: Mapping[str, Any],
    ) -> CommitResult:
        """Settle a hold with what the call cost, where the hold is (see `Gate.commit()`)."""
        opened = self._open.get(reservation_id) or self._reopen(reservation_id)
        write = _settlement(
            reservation_id,
            opened,
            now,
            actual=actual,
            units=units,
            request_id=request_id,
            details=details,
        )
        try:
            if opened.in_store:
                result = self.store.commit(reservation_id, write, to_micros(now))
                self._open.pop(reservation_id, None)
            else:
                result = self._settle_unstored(reservation_id, opened, write)
        except StoreError as exc:
            self.watch.failed(exc, write=True)
            raise
        self.watch.health.wrote()
        self.watch.answered()
        return result

    async def acommit(
        self,
        reservation_id: str,
        now: datetime,
        *,
        actual: Decimal | int | str | None,
        units: Usage | None,
        request_id: str | None,
        details: Mapping[str, Any],
    ) -> CommitResult:
        """`commit()` for asyncio (see `areserve()`): a hold this gate took in the store is
        settled awaiting the store; one it must look up, or held out of leases or nowhere
        (its event goes through the gate's writer), on a worker thread."""
        opened = self._open.get(reservation_id)
        if opened is None or not opened.in_store:
            return await asyncio.to_thread(
                functools.partial(
                    self.commit,
                    reservation_id,
                    now,
                    actual=actual,
                    units=units,
                    request_id=request_id,
                    details=details,
                )
            )
        write = _settlement(
            reservation_id,
            opened,
            now,
            actual=actual,
            units=units,
            request_id=request_id,
            details=details,
        )
        try:
            result = await self.store.acommit(reservation_id, write, to_micros(now))
        except StoreError as exc:
            self.watch.failed(exc, write=True)
            raise
        self._open.pop(reservation_id, None)
        self.watch.health.wrote()
        await self._aanswered()
        return result

    async def _aanswered(self) -> None:
        """`watch.answered()` for asyncio: its clean-up after an outage, off the loop."""
        if not self.watch.health.quiet:
            await asyncio.to_thread(self.watch.answered)

    def _reopen(self, reservation_id: str) -> Opened:
        """A hold this gate did not take (or forgot), as the store has it."""
        info = self.store.reservation(reservation_id)
        if info is None:
            raise ReservationStateError(reservation_id, "unknown", "commit")
        binding = self._bind(info.service, info.source)
        return Opened(binding, info.amount, info.labels, info.emergency, info.expires_at)

    def _settle_unstored(
        self, reservation_id: str, opened: Opened, write: EventWrite
    ) -> CommitResult:
        """Commit a hold the store never saw: taken from leases, or approved fail-open.

        The event goes in like a recorded one (concurrent commits share a transaction); a
        lease hold moves out of its leases in that same transaction. A hold given back
        because its time ran out is booked, like an expired one, as unreserved spend.
        """
        leases = self.leases
        assert leases is not None or opened.unheld
        hold = leases.held(reservation_id) if leases is not None else None
        if hold is not None:
            write = replace(write, draw=hold.draw)
        result = self._submit(write)
        if result.status == "conflict":
            raise ConflictError("event", result.request_id)
        if leases is not None:
            leases.settled(reservation_id)
        self._open.pop(reservation_id, None)
        cost = result.cost or 0
        held = opened.amount if hold is not None else 0
        return CommitResult(
            reservation_id, result.request_id, result.cost, max(0, cost - held), hold is None
        )

    def release(self, reservation_id: str, now_us: int) -> ReservationState:
        """Return a hold unused, where it is (see `Gate.release()`)."""
        unstored = self._release_unstored(reservation_id)
        if unstored is not None:
            return unstored
        try:
            state = self.store.release(reservation_id, now_us)
        except StoreError as exc:
            self.watch.failed(exc, write=True)
            raise
        self._open.pop(reservation_id, None)
        self.watch.health.wrote()
        self.watch.answered()
        return state

    async def arelease(self, reservation_id: str, now_us: int) -> ReservationState:
        """`release()` for asyncio (see `areserve()`)."""
        unstored = self._release_unstored(reservation_id)
        if unstored is not None:
            return unstored
        try:
            state = await self.store.arelease(reservation_id, now_us)
        except StoreError as exc:
            self.watch.failed(exc, write=True)
            raise
        self._open.pop(reservation_id, None)
        self.watch.health.wrote()
        await self._aanswered()
        return state

    def _release_unstored(self, reservation_id: str) -> ReservationState | None:
        """Give back a hold the store never saw (from leases, or fail-open): its state;
        `None` for a hold in the store (or one this gate does not know)."""
        opened = self._open.get(reservation_id)
        if opened is None or opened.in_store:
            return None
        self._open.pop(reservation_id, None)
        given_back = self.leases is not None and self.leases.give_back(reservation_id)
        return "released" if given_back or opened.unheld else "expired"


def _settlement(
    reservation_id: str,
    opened: Opened,
    now: datetime,
    *,
    actual: Decimal | int | str | None,
    units: Usage | None,
    request_id: str | None,
    details: Mapping[str, Any],
) -> EventWrite:
    """The event that settles `opened` at `now` (see `Binding.settlement()`)."""
    given = EventDetails(actual, units, request_id, None, opened.labels, opened.emergency, details)
    return opened.binding.settlement(reservation_id, opened.amount, given, now)
