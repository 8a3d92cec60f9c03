"""The storage contract: few, coarse methods, each one transaction.

Every backend implements `Store` with its own atomic primitive, and one contract test suite
runs against all of them. Times are integer microseconds since the Unix epoch (UTC); money is
integer nano-units.

Accounting per budget bucket (one row per budget and window, or per rolling bucket):

- `spent`: settled cost; `reserved`: pending holds; `overshoot`: cost the budget did not get
  to approve (an actual above its estimate, spend recorded without a reservation past the cap,
  a commit after its hold expired).
- The invariant, for every hard budget and every caller class's cap:
  `spent + reserved - overshoot <= cap` over the window. With no overshoot (every actual within
  its estimate, every paid call reserved first) it is the plain `spent + reserved <= limit`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Literal

from spendgate.errors import ValidationError
from spendgate.events import Event, RecordResult
from spendgate.money import Nanos
from spendgate.pricing import Price
from spendgate.rollups import Tally, tiles

TallyRow = tuple[int, str, str, Tally]
"""(span index, service, source, tally): one row of `Store.tallies()`."""
MAX_SPANS = 2000

ReserveStatus = Literal["created", "exists", "conflict", "denied"]
ReservationState = Literal["pending", "committed", "released", "expired"]


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one budget counts a call.

    `bucket` is the window start (calendar windows) or the rolling bucket the call falls in;
    `span_start` is the oldest bucket the window counts (equal to `bucket` for calendar
    windows); `cap` is the most usage may reach, `None` for a soft budget.
    """

    budget: str
    bucket: int
    span_start: int
    cap: Nanos | None


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """Usage of a tiered unit, counted per period (for free quotas and volume tiers)."""

    source: str
    unit: str
    period: int
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Draw:
    """The part of leases a call held: `held` on each of `leases` (one per leased budget).

    Settling it moves `held` out of each lease and the cost into spent, in the event's
    transaction; a lease that is no longer pending (it expired) covers nothing, and the cost
    is booked as unreserved spend.
    """

    leases: tuple[str, ...]
    held: Nanos


@dataclass(frozen=True, slots=True)
class EventWrite:
    """An event to store, the budget slots its cost counts against, and (for tiered prices)
    the price and quota counters its cost depends on: the store computes such a cost inside
    its transaction, from the counters as they stand. `draw` is set for a call whose hold was
    taken from leases."""

    event: Event
    slots: tuple[Slot, ...] = ()
    price: Price | None = None
    quota: tuple[QuotaUse, ...] = ()
    draw: Draw | None = None


@dataclass(frozen=True, slots=True)
class ReservationWrite:
    """A hold of `amount` on every slot, all or nothing, until `expires_at`."""

    reservation_id: str
    fingerprint: str
    slots: tuple[Slot, ...]
    amount: Nanos
    created_at: int
    expires_at: int
    service: str
    source: str
    emergency: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """What `reserve()` did.

    `used` is each slot's usage (spent + reserved over its window): after the hold when
    `created`, as it stands when `denied` (then `refused` is the index of the slot that
    refused). `exists` means the same reservation was already taken (`state` says where it is
    now); `conflict` means the id was taken with a different payload.
    """

    status: ReserveStatus
    used: tuple[Nanos, ...] = ()
    refused: int | None = None
    state: ReservationState | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """A settled reservation: the event written, its cost, and how far it overshot."""

    reservation_id: str
    request_id: str
    cost: Nanos | None
    overshoot: Nanos
    hold_expired: bool


@dataclass(frozen=True, slots=True)
class Balance:
    """A budget's figures over one window (nano-units)."""

    spent: Nanos = 0
    reserved: Nanos = 0
    overshoot: Nanos = 0

    @property
    def used(self) -> Nanos:
        """Spent plus reserved: what counts against the limit."""
        return self.spent + self.reserved


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """A stored reservation, as read back."""

    reservation_id: str
    state: ReservationState
    amount: Nanos
    service: str
    source: str
    created_at: int
    expires_at: int
    emergency: bool
    actual: Nanos | None
    labels: Mapping[str, str] = field(default_factory=dict)


class Store(ABC):
    """The storage contract every backend implements.

    Each method is one transaction. Writers never see each other half-way: a reservation
    holds on all its slots or on none, an event is stored with its budget charges or not at
    all, and a method that returned has reached durable storage (where the backend has any).
    """

    url: str
    batched: ClassVar[bool] = False
    """Whether concurrent `record()` callers gain from sharing one transaction."""

    @abstractmethod
    def usage(self, slots: Sequence[Slot], now: int) -> list[Nanos]:
        """Each slot's usage (spent + reserved over its window) as it stands."""

    @abstractmethod
    def reserve(self, write: ReservationWrite, now: int) -> ReserveResult:
        """Hold `write.amount` on every slot if each stays within its cap, atomically.

        Idempotent by `reservation_id`. A refusal caused by holds that have expired sweeps
        them and tries again, so a leaked hold never blocks a paying caller.
        """

    @abstractmethod
    def commit(self, reservation_id: str, write: EventWrite, now: int) -> CommitResult:
        """Settle a reservation with its actual cost and store its event.

        Raises `ReservationStateError` for an unknown, committed or released reservation.
        A reservation whose hold expired is still booked, truthfully, as unreserved spend.
        """

    @abstractmethod
    def release(self, reservation_id: str, now: int) -> ReservationState:
        """Return a pending hold. Returns `released`, or `expired` if it had expired already.

        Raises `ReservationStateError` for an unknown, committed or released reservation.
        """

    @abstractmethod
    def adjust(self, reservation_id: str, delta: Nanos, expires_at: int, now: int) -> ReserveResult:
        """Grow (`delta > 0`, only within every cap) or shrink a pending hold, and move its
        expiry to `expires_at`: how a lease is topped up, renewed and partly returned.

        `created` with the usage after; `denied` (nothing changed) when a cap refuses;
        `exists` with `state` when the hold is no longer pending. Raises
        `ReservationStateError` for an unknown reservation.
        """

    @abstractmethod
    def expire(self, now: int) -> int:
        """Return every hold whose time ran out; how many there were."""

    @abstractmethod
    def record(self, writes: Sequence[EventWrite]) -> list[RecordResult]:
        """Store events and charge their costs, idempotently by request id, in one transaction.

        An event with a `draw` settles its lease holds (see `Draw`) in the same transaction.
        """

    @abstractmethod
    def balance(self, slot: Slot) -> Balance:
        """A budget's spent, reserved and overshoot over the window of `slot`."""

    @abstractmethod
    def events(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with `since <= time < until`, oldest first."""

    def tallies(self, spans: Sequence[tuple[int, int]]) -> list[TallyRow]:
        """The rollups summed over each `[since, until)` span (rounded out to whole minutes),
        by service and source: `(span index, service, source, tally)` for each that has any.

        All spans in one read, so a series of days costs one round trip.
        """
        if not spans:
            return []
        if len(spans) > MAX_SPANS:
            raise ValidationError("spans", len(spans), f"at most {MAX_SPANS} spans in one read")
        pieces = [
            (i, *tile) for i, (since, until) in enumerate(spans) for tile in tiles(since, until)
        ]
        return self._tallies(pieces) if pieces else []

    @abstractmethod
    def _tallies(self, pieces: Sequence[tuple[int, int, int, int]]) -> list[TallyRow]:
        """Sum the rollups over `(span index, step, first bucket, end)` pieces, by span,
        service and source."""

    @abstractmethod
    def event(self, request_id: str) -> Event | None:
        """The stored event with this request id, or `None`."""

    @abstractmethod
    def reservation(self, reservation_id: str) -> ReservationInfo | None:
        """A stored reservation, or `None`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and background resources."""


def url_flag(value: str, field: str) -> bool:
    """A yes/no URL option (`true`/`false`, `yes`/`no`, `1`/`0`); anything else is refused,
    so a typo never turns on what it meant to turn off."""
    flag = value.strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    raise ValidationError(field, value, "true or false")


def overshoot_of(before: Nanos, amount: Nanos, cap: Nanos | None) -> Nanos:
    """How much of adding `amount` to usage `before` lands above `cap`.

    Spend is booked truthfully even when no reservation covered it; this part of it is what
    the budget did not approve. Summed over a sequence of additions it telescopes, so a batch
    may add its total at once: `overshoot_of(s, a + b) == overshoot_of(s, a) +
    overshoot_of(s + a, b)`.
    """
    if cap is None:
        return 0
    return max(0, before + amount - cap) - max(0, before - cap)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a commit moves money, budget by budget.

    `settle`: holds whose window is still current; the hold becomes the spend there.
    `unhold`: holds whose window has passed since; the hold is returned unused.
    `charge`: where the spend lands when it is not settled in place (the window current at
    commit, or every current window when the hold had expired); booked as unreserved spend.
    A commit's cost is counted in the window its event falls in, so a window's spend is always
    the sum of its events.
    """

    settle: tuple[Slot, ...]
    unhold: tuple[Slot, ...]
    charge: tuple[Slot, ...]

    @classmethod
    def plan(cls, holds: Sequence[Slot], current: Sequence[Slot], *, expired: bool) -> Settlement:
        """Pair each hold with its budget's slot at commit time."""
        now = {s.budget: s for s in current}
        if expired:
            return cls((), (), tuple(now.values()))
        settle, unhold, charge = [], [], []
        for hold in holds:
            target = now.pop(hold.budget, hold)
            if target.bucket == hold.bucket:
                settle.append(hold)
            else:
                unhold.append(hold)
                charge.append(target)
        charge += now.values()  # budgets that apply now but held nothing (a new label scope)
        return cls(tuple(settle), tuple(unhold), tuple(charge))


def drawn_plan(lease_slots: Mapping[str, Slot], current: Sequence[Slot]) -> Settlement:
    """How a call drawn from leases settles: like a commit, budget by budget.

    `lease_slots` maps each budget whose lease still holds the call's money (the lease is
    pending) to the slot the lease sits on. A budget without one (no lease, or it expired)
    is charged the cost as unreserved spend.
    """
    settle, unhold, charge = [], [], []
    for slot in current:
        held = lease_slots.get(slot.budget)
        if held is None:
            charge.append(slot)
        elif held.bucket == slot.bucket:
            settle.append(held)
        else:  # the lease's window has passed: its hold goes back, the cost lands now
            unhold.append(held)
            charge.append(slot)
    return Settlement(tuple(settle), tuple(unhold), tuple(charge))


def cost_with_quota(
    write: EventWrite, used_before: Callable[[QuotaUse], Decimal]
) -> tuple[Nanos | None, list[tuple[QuotaUse, Decimal]]]:
    """An event's cost, and the quota counters to write back.

    For a tiered price the cost depends on how much of each tiered unit the period has used
    before this event (`used_before` reads a counter inside the store's transaction); every
    other event keeps the cost it came with.
    """
    if not write.quota or write.price is None:
        return write.event.cost, []
    before = {q.unit: used_before(q) for q in write.quota}
    cost = write.price.cost(write.event.units, before)
    return cost, [(q, before[q.unit] + q.quantity) for q in write.quota]
