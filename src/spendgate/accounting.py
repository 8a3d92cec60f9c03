"""The arithmetic every store does to budget windows, as values in and values out.

A store keeps, per budget bucket (one per budget and window, or per rolling bucket):

- `spent`: settled cost; `reserved`: pending holds; `overshoot`: cost the budget did not get
  to approve (an actual above its estimate, spend recorded without a reservation past the cap,
  a commit after its hold expired).
- The invariant, for every hard budget and every caller class's cap:
  `spent + reserved - overshoot <= cap` over the window. With no overshoot (every actual within
  its estimate, every paid call reserved first) it is the plain `spent + reserved <= limit`.

Each backend applies these rules with its own atomic primitive (see `store/`); the rules
themselves are written once, here, so that every backend counts alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Literal, NamedTuple

from spendgate.budgets import Budget
from spendgate.errors import CounterLimitError
from spendgate.events import Event
from spendgate.money import MAX_TOTAL, MAX_TOTAL_AMOUNT, Nanos, money_text
from spendgate.pricing import Price
from spendgate.windows import duration_micros, from_micros, to_micros


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
    lines: tuple[AlertLine, ...] = field(default=(), compare=False)
    """Usage levels whose crossing raises an alert, in the transaction that crosses them."""


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An alert threshold on a budget: at `fraction` (decimal text, e.g. `"0.8"`) of its
    limit, which is `line` nano-units of usage.

    `limit` is the budget's limit the line was drawn from, kept with the alert it raises (so
    an alert says the limit it crossed, whatever the budget says later); `rung` is the
    ladder's action at this fraction (`warn`, `degrade`, `stop`), if the line is a rung;
    `critical` whether its alert is critical (at or past the limit, or at or past the
    ladder's stop rung) rather than a warning. A line kept before these were (a pending
    hold's stored slots) has `limit` 0, no rung, and is critical at or past the limit.
    """

    fraction: str
    line: Nanos
    limit: Nanos = 0
    rung: str | None = None
    critical: bool | None = None

    @property
    def severity(self) -> Literal["warning", "critical"]:
        """The severity of the alert the line raises: `critical` or `warning`."""
        critical = Decimal(self.fraction) >= 1 if self.critical is None else self.critical
        return "critical" if critical else "warning"


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """Usage of a tiered unit, counted per period (for free quotas and volume tiers)."""

    source: str
    unit: str
    period: int
    quantity: Decimal


def hold_limit(cap: Nanos | None) -> Nanos:
    """The most a hold may bring a window's usage to: its cap, and never past `MAX_TOTAL`."""
    return MAX_TOTAL if cap is None or cap > MAX_TOTAL else cap


def usage_limit_error(slot: Slot, adding: Nanos) -> CounterLimitError:
    """The error of a change that would carry a budget window's usage past `MAX_TOTAL`."""
    return CounterLimitError(
        f"budget {slot.budget!r} usage (spent + reserved) in its window",
        money_text(adding),
        f"{MAX_TOTAL_AMOUNT:,} currency units",
    )


def check_room(slot: Slot, used: Nanos, adding: Nanos) -> None:
    """Refuse adding `adding` to a window's usage `used` past `MAX_TOTAL`."""
    if used + adding > MAX_TOTAL:
        raise usage_limit_error(slot, adding)


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


class Settlement(NamedTuple):
    """How a commit moves money, budget by budget. (A named tuple: every commit plans one.)

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
        if expired:
            return cls((), (), tuple({s.budget: s for s in current}.values()))
        if len(holds) == len(current):  # the usual case: every hold's window still runs
            for h, c in zip(holds, current, strict=True):
                if h.budget != c.budget or h.bucket != c.bucket:
                    break
            else:
                return cls(tuple(holds), (), ())
        now = {s.budget: s for s in current}
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
    event: Event,
    price: Price | None,
    quota: Sequence[QuotaUse],
    used_before: Callable[[QuotaUse], Decimal],
) -> tuple[Nanos | None, list[tuple[QuotaUse, Decimal]]]:
    """An event's cost, and the quota counters to write back.

    For a tiered price the cost depends on how much of each tiered unit the period has used
    before this event (`used_before` reads a counter inside the store's transaction); every
    other event keeps the cost it came with.
    """
    if not quota or price is None:
        return event.cost, []
    before = {q.unit: used_before(q) for q in quota}
    cost = price.cost(event.units, before)
    return cost, [(q, quota_total(q, before[q.unit])) for q in quota]


MAX_QUOTA = Decimal(10**18)
"""The most units a quota counter holds in one period (kept as exact decimal text)."""
_QUOTA_DIGITS = 40  # significant digits a counter keeps exactly; its text stays within 64
_QUOTA = Context(prec=_QUOTA_DIGITS, traps=[Inexact, InvalidOperation, Overflow])


def quota_total(q: QuotaUse, before: Decimal) -> Decimal:
    """A quota counter after `q`: exact, at most `MAX_QUOTA`, or `CounterLimitError`."""
    try:
        used = _QUOTA.add(before, q.quantity)
    except ArithmeticError:
        used = None
    if used is None or used > MAX_QUOTA:
        raise CounterLimitError(
            f"quota counter of {q.source!r} unit {q.unit!r}",
            f"{q.quantity:f}",
            f"{MAX_QUOTA:,} units, exact to {_QUOTA_DIGITS} digits",
        )
    return used


def crossed_lines(slot: Slot, before: Nanos, after: Nanos) -> list[AlertLine]:
    """The alert lines `slot`'s usage crossed going up from `before` to `after`."""
    return [x for x in slot.lines if before < x.line <= after]


# -- a budget's counter counted again from the ledger -----------------------------------------

LEASE_SERVICE = "spendgate"
"""The service a lease is held under (`leases.py`): a lease counts for its own budget only."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending hold, as a recount sees it."""

    reservation_id: str
    service: str
    source: str
    labels: Mapping[str, str]
    amount: Nanos
    created_at: int
    emergency: bool
    slots: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class Recount:
    """A budget's counter, counted again from the ledger at `at` (micro-seconds).

    When a budget is created, or its scope or window changes, its counter must be what the
    ledger says it is: the spend of the events in its current window and scope, and the
    pending holds that match it, reserved. A store runs `counted()` inside the transaction
    that writes the definition, over the events of `span()` and every pending hold, then
    replaces the budget's rows from `span()` on with `rows` and gives each hold in `holds`
    its new slots (so that settling it moves the new counter).
    """

    budget: Budget
    at: int

    def span(self) -> tuple[int, int]:
        """The `[start, end)` of the events that count, in micro-seconds: the current window
        (a rolling window's buckets still inside its length)."""
        now = from_micros(self.at)
        return to_micros(self.budget.window.span_start(now)), to_micros(
            self.budget.window.bounds(now)[1]
        )

    def buckets(self, start: int) -> Callable[[int], int]:
        """The bucket an instant of the span from `start` falls in: `start` itself for a
        calendar window, the granularity step it is in for a rolling one (arithmetic only:
        it runs once per event)."""
        window = self.budget.window
        if window.kind != "rolling":
            return lambda at: start
        assert window.granularity is not None
        step = duration_micros(window.granularity)
        return lambda at: at // step * step

    def counts(self, service: str, source: str, labels: Mapping[str, str]) -> bool:
        """Whether a call counts against the budget."""
        return self.budget.scope.matches(service, source, labels)

    def counted(self, events: Iterable[Event], pending: Iterable[Pending]) -> Recounted:
        """The budget's rows and the holds whose slots change; see the class."""
        start, end = self.span()
        bucket_of = self.buckets(start)
        name = self.budget.name
        rows: dict[int, list[Nanos]] = {}
        for e in events:
            at = to_micros(e.time)
            if start <= at < end and e.cost and self.counts(e.service, e.source, e.labels):
                rows.setdefault(bucket_of(at), [0, 0, 0])[0] += e.cost
        holds: dict[str, tuple[Slot, ...]] = {}
        for p in pending:
            own = [s for s in p.slots if s.budget == name]
            kept = [s for s in p.slots if s.budget != name]
            if p.service == LEASE_SERVICE:
                counts = bool(own)  # a lease holds money for its own budget only
            else:
                counts = self.counts(p.service, p.source, p.labels)
            if counts and start <= p.created_at < end:
                bucket = bucket_of(p.created_at)
                cap = own[0].cap if own else self.budget.cap(priority=False, emergency=p.emergency)
                lines = own[0].lines if own else ()
                kept.append(Slot(name, bucket, start, cap, lines))
                rows.setdefault(bucket, [0, 0, 0])[1] += p.amount
            else:
                kept += [s for s in own if s.bucket < start]  # an older window's hold stays
            if tuple(kept) != p.slots:
                holds[p.reservation_id] = tuple(kept)
        cap = self.budget.cap(priority=False, emergency=False)
        used = sum(r[0] + r[1] for r in rows.values())
        if cap is not None and used > cap:
            # What the budget never approved (it did not exist, or counted another scope):
            # booked as overshoot, so `spent + reserved - overshoot <= cap` holds from here.
            rows.setdefault(bucket_of(self.at), [0, 0, 0])[2] = used - cap
        for row in rows.values():
            if row[0] + row[1] > MAX_TOTAL:
                raise usage_limit_error(Slot(name, 0, 0, cap), row[0] + row[1])
        return Recounted({b: (r[0], r[1], r[2]) for b, r in sorted(rows.items())}, holds)


@dataclass(frozen=True, slots=True)
class Recounted:
    """A recount's result: each bucket's `(spent, reserved, overshoot)` from the span's start
    on (no other row may remain there), and the holds whose slots change."""

    rows: Mapping[int, tuple[Nanos, Nanos, Nanos]]
    holds: Mapping[str, tuple[Slot, ...]]
