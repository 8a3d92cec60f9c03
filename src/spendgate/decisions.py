"""Decisions: each applicable budget's check of a call, combined into one answer. Pure.

A call is approved only if every budget it counts against allows it (all or nothing); the
first that refuses names the denial, else the tightest is named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from spendgate.budgets import LEVELS, Budget, Level
from spendgate.money import Nanos, money_text

Outcome = Literal["approved", "emergency_approved", "denied"]
OUTCOMES: tuple[Outcome, ...] = ("approved", "emergency_approved", "denied")
USE_FREE_SOURCES_ONLY = "use_free_sources_only"


@dataclass(frozen=True, slots=True)
class Check:
    """One budget's part in a decision: its usage after the call (or now, if it refused)."""

    budget: Budget
    used: Nanos
    cap: Nanos | None
    refused: bool = False

    @property
    def remaining(self) -> Nanos:
        """What is left under the limit (may be negative after overshoot or emergency use)."""
        return self.budget.limit - self.used


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this call spend?" — the seed's approval, as a value.

    `remaining` is what the deciding budget has left under its limit *before* the call
    (nano-units), in approvals and denials alike, as the seed's `remaining_budget`: the
    same state answers the same figure whatever the outcome. `budget` names the budget that
    refused, or the tightest one when approved.
    """

    status: Outcome
    requested: Nanos
    remaining: Nanos | None
    budget: str | None
    level: Level
    as_of: datetime
    reason: str = ""
    reservation_id: str | None = None

    @property
    def approved(self) -> bool:
        """Whether the call may go ahead (normally or on the emergency allowance)."""
        return self.status != "denied"

    @property
    def alternative_action(self) -> str | None:
        """What a refused caller should do instead: the seed's `use_free_sources_only`."""
        return None if self.approved else USE_FREE_SOURCES_ONLY

    def to_dict(self) -> dict[str, Any]:
        """The seed's shape, with exact decimal strings for money and the `as_of` time."""
        out: dict[str, Any] = {
            "budget_available": self.approved,
            "approval_status": self.status,
            "requested_amount": money_text(self.requested),
            "remaining_budget": None if self.remaining is None else money_text(self.remaining),
            "budget": self.budget,
            "level": self.level,
            "as_of": self.as_of.isoformat(),
        }
        if self.status == "emergency_approved":
            out["emergency_budget_used"] = True
        if not self.approved:
            out["alternative_action"] = self.alternative_action
            out["reason"] = self.reason
        if self.reservation_id is not None:
            out["reservation_id"] = self.reservation_id
        return out


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """How many calls a gate has decided since it opened, by service and outcome: every
    answer of its `authorize()` and `reserve()`, whoever asked (a `spend()`, the router, a
    stream meter, the HTTP API), a retry's included (`Gate.decisions()`).

    >>> counts = DecisionCounts({("scraper", "denied"): 2, ("enrichment", "approved"): 5})
    >>> counts.total(), counts.total("denied"), counts.total(service="enrichment")
    (7, 2, 5)
    """

    counts: Mapping[tuple[str, Outcome], int]
    """`(service, outcome)` -> decisions; a pair that never happened is absent."""

    def total(self, outcome: Outcome | None = None, *, service: str | None = None) -> int:
        """Decisions with `outcome` (any when `None`) for `service` (any when `None`)."""
        return sum(
            n
            for (s, o), n in self.counts.items()
            if (outcome is None or o == outcome) and (service is None or s == service)
        )


class Capped(Protocol):
    """Where a budget's window stands for one call: the cap that applies to it (`None`: no
    cap, as for a free call). A store's `Slot` is one."""

    @property
    def cap(self) -> Nanos | None: ...


def held_checks(
    budgets: Sequence[Budget], slots: Sequence[Capped], used: Iterable[Nanos]
) -> tuple[Check, ...]:
    """Each budget's check with the call's amount already in `used` (held, or leased)."""
    return tuple([Check(b, u, s.cap) for b, s, u in zip(budgets, slots, used, strict=True)])


def request_checks(
    budgets: Sequence[Budget],
    slots: Sequence[Capped],
    used: Iterable[Nanos],
    requested: Nanos,
    refused: int | None = None,
) -> tuple[Check, ...]:
    """Each budget's check of `requested` on top of `used`: refused if it would take the
    budget over its cap (or, when the store already decided, the budget it names by index
    in `refused`)."""
    out = []
    for i, (b, slot, u) in enumerate(zip(budgets, slots, used, strict=True)):
        over = slot.cap is not None and u + requested > slot.cap
        if refused is not None:
            over = i == refused
        out.append(Check(b, u if over else u + requested, slot.cap, over))
    return tuple(out)


def decide(
    checks: Sequence[Check],
    requested: Nanos,
    as_of: datetime,
    *,
    priority: bool = False,
    reservation_id: str | None = None,
) -> Decision:
    """Combine every applicable budget's check into one decision (all or nothing).

    The first refusing budget decides a denial; otherwise the tightest budget (least
    remaining) is named, and the call is `emergency_approved` when some budget is only
    satisfied thanks to its emergency allowance.
    """
    if not checks:
        return Decision(
            "approved", requested, None, None, "normal", as_of, "no budget applies", reservation_id
        )
    refused = next((c for c in checks if c.refused), None)
    if refused is not None:
        b = refused.budget
        level = b.level(refused.used)
        why = "degraded to priority callers" if _degraded(refused, priority) else "would exceed"
        return Decision(
            "denied",
            requested,
            refused.remaining,
            b.name,
            level,
            as_of,
            f"budget {b.name!r} {why}: {money_text(requested)} asked, "
            f"{money_text(max((refused.cap or 0) - refused.used, 0))} left before its "
            f"{'degrade' if _degraded(refused, priority) else 'stop'} line",
        )
    # One pass (this runs on every approval): the tightest budget (least remaining, the
    # first of equals), whether one is past its stop line (only an emergency call's room
    # takes it there), and the highest rung reached.
    tight, emergency_used, rank = checks[0], False, 0
    for c in checks:
        if c.remaining < tight.remaining:
            tight = c
        b = c.budget
        emergency_used = emergency_used or b.past_stop(c.used)
        rank = max(rank, _RANK[b.level(c.used)])
    status: Outcome = "emergency_approved" if emergency_used else "approved"
    # The checks hold usage with the call in it: the room before the call is that plus it.
    before = tight.remaining + requested
    name = tight.budget.name
    return Decision(status, requested, before, name, LEVELS[rank], as_of, "", reservation_id)


_RANK = {level: i for i, level in enumerate(LEVELS)}


def _degraded(check: Check, priority: bool) -> bool:
    full = check.budget.cap(priority=True, emergency=False)
    return not priority and full is not None and check.cap is not None and check.cap < full
