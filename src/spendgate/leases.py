"""Budget leases: a gate holds a slice of a hard budget and authorizes from it locally.

A hot budget shared by many hosts costs one conditional update per paid call. A budget with
`lease` set lets each gate reserve a slice of what remains (a *lease*: an ordinary hold in the
store, with a short TTL) and take its calls' holds out of that slice in memory, in
microseconds. A call settles as usual, in one transaction with its event: its hold leaves the
lease and its cost becomes spent. The store's invariant is unchanged, because a lease is a
hold: `spent + reserved (leases included) <= limit`.

The slice is `share` of what remains, never the last `floor` of the cap, so slices shrink as
the budget fills and the last few percent are decided centrally. A gate renews its leases
while it uses them, returns a lease it cannot top up (so a central decision can use that
money), returns idle leases and all leases on `close()`; a crashed holder's lease expires after
its TTL and the store hands the money back. A forked child starts with no leases: the parent's
are the parent's.

Local state is guarded by one lock. The store is called under it only to open, top up, renew
or return a lease, which happens once per slice, not once per call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spendgate.accounting import LEASE_SERVICE, Slot
from spendgate.budgets import Budget, LeasePolicy
from spendgate.clock import Clock
from spendgate.errors import SpendgateError
from spendgate.money import Nanos
from spendgate.store.base import CLOSE_WAIT, Draw, LedgerStore, ReservationWrite
from spendgate.windows import duration_micros, to_micros

_TIDY_SECONDS = 1.0


@dataclass(slots=True)
class Lease:
    """One lease as its holder sees it (micro-second times by the holder's clock)."""

    lease_id: str
    budget: str
    slot: Slot
    policy: LeasePolicy
    available: Nanos  # held in the store and not promised to any local hold
    used: Nanos  # the budget's usage as the store last reported it
    expires_at: int  # as last set in the store (the holder's clock)
    last_used: int
    outstanding: int = 0  # local holds taken and not yet settled or returned
    retired: bool = False

    @property
    def renew_at(self) -> int:
        """Renew once half the TTL has passed."""
        return self.expires_at - duration_micros(self.policy.ttl) // 2

    @property
    def usable_until(self) -> int:
        """Stop drawing a quarter of the TTL before the store may expire it."""
        return self.expires_at - duration_micros(self.policy.ttl) // 4

    def serves(self, slot: Slot, now: int) -> bool:
        """Whether calls counted in `slot` may draw from this lease now."""
        return (
            not self.retired
            and now < self.usable_until
            and self.slot.bucket == slot.bucket
            and self.slot.span_start == slot.span_start
        )


@dataclass(frozen=True, slots=True)
class LocalHold:
    """A call's hold taken from leases: settle it with `Leases.draw()`."""

    leases: tuple[Lease, ...]
    amount: Nanos
    expires_at: int

    @property
    def draw(self) -> Draw:
        """What the store moves when the call settles."""
        return Draw(tuple(lease.lease_id for lease in self.leases), self.amount)


class Leases:
    """The leases of one gate, by budget."""

    def __init__(self, store: LedgerStore, clock: Clock, new_id: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock
        self._new_id = new_id
        self._lock = threading.Lock()
        self._current: dict[str, Lease] = {}
        self._draining: dict[str, Lease] = {}  # retired, with local holds still out
        self._holds: dict[str, LocalHold] = {}
        self._stop = threading.Event()
        self._tidier: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    # -- taking and settling ------------------------------------------------------------------

    def peek(
        self, budgets: Sequence[Budget], slots: Sequence[Slot], amount: Nanos, now: int
    ) -> list[Nanos] | None:
        """Each budget's usage if current leases cover `amount` on every capped slot (an
        answer without holding or calling the store), else `None`."""
        with self._lock:
            if self._closed:
                return None
            used = []
            for budget, slot in zip(budgets, slots, strict=True):
                if slot.cap is None:
                    used.append(0)
                    continue
                lease = self._current.get(budget.name)
                if lease is None or not lease.serves(slot, now) or lease.available < amount:
                    return None
                used.append(lease.used)
            return used

    def take(
        self,
        hold_id: str,
        budgets: Sequence[Budget],
        slots: Sequence[Slot],
        amount: Nanos,
        *,
        now: int,
        expires_at: int,
    ) -> tuple[LocalHold, list[Nanos]] | None:
        """Hold `amount` out of a lease of every capped budget, opening or topping up leases
        as needed; `None` if any lease cannot (the call is then decided centrally).

        Returns the hold and each budget's usage as last reported (for the decision's levels).
        """
        capped = [(b, s) for b, s in zip(budgets, slots, strict=True) if s.cap is not None]
        if not capped or any(b.lease is None for b, _ in capped):
            return None
        with self._lock:
            if self._closed:  # decided centrally, by a store that says it is closed
                return None
            ready = []
            for budget, slot in capped:
                lease = self._ready(budget, slot, amount, now)
                if lease is None:
                    return None
                ready.append(lease)
            for lease in ready:
                lease.available -= amount
                lease.outstanding += 1
                lease.last_used = now
            hold = LocalHold(tuple(ready), amount, expires_at)
            self._holds[hold_id] = hold
            by_budget = {lease.budget: lease.used for lease in ready}
            return hold, [by_budget.get(b.name, 0) for b in budgets]

    def held(self, hold_id: str) -> LocalHold | None:
        """The local hold with this id, if it is still out."""
        with self._lock:
            return self._holds.get(hold_id)

    def settled(self, hold_id: str) -> None:
        """The store has settled this hold (its event and its draw are stored)."""
        with self._lock:
            hold = self._holds.pop(hold_id, None)
            if hold is not None:
                self._finish(hold, returned=False)

    def give_back(self, hold_id: str) -> bool:
        """Return an unsettled local hold to its leases; whether there was one."""
        with self._lock:
            hold = self._holds.pop(hold_id, None)
            if hold is None:
                return False
            self._finish(hold, returned=True)
            return True

    def _finish(self, hold: LocalHold, *, returned: bool) -> None:
        for lease in hold.leases:
            lease.outstanding -= 1
            if returned:
                lease.available += hold.amount
            if lease.retired and lease.outstanding == 0:
                self._draining.pop(lease.lease_id, None)
                self._return(lease)

    # -- the lease life cycle (the lock is held) ----------------------------------------------

    def _ready(self, budget: Budget, slot: Slot, amount: Nanos, now: int) -> Lease | None:
        """A lease of `budget` that can cover `amount` in `slot`, or `None`."""
        policy = budget.lease
        assert policy is not None
        lease = self._current.get(budget.name)
        if lease is not None and not lease.serves(slot, now):
            self._retire(lease)
            lease = None
        if lease is not None and now >= lease.renew_at and not self._renew(lease, 0, now):
            lease = None
        if lease is not None and lease.available >= amount:
            return lease
        # A slice of what remains now (other holders' leases count as used).
        cap = budget.cap(priority=False, emergency=False)
        assert cap is not None
        used = self.store.usage([slot], now)[0]
        size = policy.slice(cap, used)
        if size < amount - (lease.available if lease is not None else 0):
            # Too close to the limit to lease: give our slice back, decide centrally.
            if lease is not None:
                self._retire(lease)
            return None
        if lease is not None:
            return lease if self._renew(lease, size, now) else None
        return self._open(
            budget, policy, Slot(slot.budget, slot.bucket, slot.span_start, cap), size, now
        )

    def _open(
        self, budget: Budget, policy: LeasePolicy, slot: Slot, size: Nanos, now: int
    ) -> Lease | None:
        lease_id = f"lease-{self._new_id()}"
        ttl = duration_micros(policy.ttl)
        write = ReservationWrite(
            reservation_id=lease_id,
            fingerprint="lease",
            slots=(slot,),
            amount=size,
            created_at=now,
            expires_at=now + ttl,
            service=LEASE_SERVICE,
            source=f"lease:{budget.name}",
        )
        result = self.store.reserve(write, now)
        if result.status != "created":
            return None
        lease = Lease(lease_id, budget.name, slot, policy, size, result.used[0], now + ttl, now)
        self._current[budget.name] = lease
        self._start_tidier()
        return lease

    def _renew(self, lease: Lease, more: Nanos, now: int) -> bool:
        """Push the lease's expiry out, topping it up by `more`; False if it is gone or refused."""
        expires_at = now + duration_micros(lease.policy.ttl)
        result = self.store.adjust(lease.lease_id, more, expires_at, now)
        if result.status == "created":
            lease.available += more
            lease.used = result.used[0]
            lease.expires_at = expires_at
            return True
        if result.status == "exists":  # expired in the store: nothing of it is ours now
            lease.available = 0
        self._retire(lease)
        return False

    def _retire(self, lease: Lease) -> None:
        """Stop drawing from a lease; give back what no local hold needs."""
        if self._current.get(lease.budget) is lease:
            del self._current[lease.budget]
        lease.retired = True
        if lease.outstanding == 0:
            self._return(lease)
            return
        self._draining[lease.lease_id] = lease
        if lease.available > 0:
            with contextlib.suppress(SpendgateError):  # it comes back at expiry regardless
                self.store.adjust(
                    lease.lease_id, -lease.available, lease.expires_at, to_micros(self.clock())
                )
            lease.available = 0

    def _return(self, lease: Lease) -> None:
        with contextlib.suppress(SpendgateError):  # it comes back at expiry regardless
            self.store.release(lease.lease_id, to_micros(self.clock()))
        lease.available = 0

    def retire_all(self) -> None:
        """Stop drawing from every lease (the budgets changed): each goes back to the store
        once its local holds are settled, and new leases follow the new limits."""
        with self._lock:
            for lease in list(self._current.values()):
                self._retire(lease)

    # -- upkeep -------------------------------------------------------------------------------

    def tidy(self) -> None:
        """Return idle leases, renew busy ones, and give back local holds whose time ran out."""
        now = to_micros(self.clock())
        with self._lock:
            for hold_id, hold in list(self._holds.items()):
                if hold.expires_at <= now:
                    del self._holds[hold_id]
                    self._finish(hold, returned=True)
            for lease in list(self._current.values()):
                idle = now - lease.last_used >= duration_micros(lease.policy.idle)
                if lease.outstanding == 0 and idle:
                    self._retire(lease)
                elif now >= lease.renew_at:
                    self._renew(lease, 0, now)
            for lease in list(self._draining.values()):
                if now >= lease.renew_at:
                    self._renew(lease, 0, now)

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the tidier and return every lease (local holds still out are given up with
        them), within about `timeout` seconds: a lease not returned by then comes back to
        the store when its TTL runs out. Later calls take no lease. Safe more than once."""
        deadline = time.monotonic() + timeout
        self._closed = True
        self._stop.set()
        tidier = self._tidier
        if tidier is not None and tidier is not threading.current_thread():
            tidier.join(timeout)
        # The lock is held across a store call to open or renew a lease: wait a bounded time.
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return
        try:
            leases = [*self._current.values(), *self._draining.values()]
            self._current.clear()
            self._draining.clear()
            self._holds.clear()
            for lease in leases:
                if time.monotonic() >= deadline:
                    break
                self._return(lease)
        finally:
            self._lock.release()

    def _start_tidier(self) -> None:
        if self._closed or (self._tidier is not None and self._tidier.is_alive()):
            return
        self._tidier = threading.Thread(
            target=self._tidy_loop, name="spendgate-leases", daemon=True
        )
        self._tidier.start()

    def _tidy_loop(self) -> None:
        while not self._stop.wait(_TIDY_SECONDS):
            with contextlib.suppress(SpendgateError):  # the next round tries again
                self.tidy()

    def _after_fork(self) -> None:
        # The parent's leases are the parent's: a child that drew from them would spend
        # money twice. It starts empty and takes its own.
        self._lock = threading.Lock()
        self._current, self._draining, self._holds = {}, {}, {}
        self._tidier = None


_LIVE: weakref.WeakSet[Leases] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for leases in list(_LIVE):
        leases._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
