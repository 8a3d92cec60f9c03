"""Budget rows on a SQL database, inside a transaction the caller runs: usage read, holds
taken, spend charged, holds settled (a commit's or a draw's from leases), quota counters
moved, and the alert lines those changes cross booked, all on one connection.

`sql.SQLStore` decides what each contract method does; this is how money moves on the rows
while it does. Every statement it runs is in `statements.Statements`; a backend supplies
`_many` and, if its writers run concurrently, `_lock_budget`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Generic

from spendgate.accounting import (
    QuotaUse,
    Settlement,
    Slot,
    check_room,
    cost_with_quota,
    drawn_plan,
    hold_limit,
    overshoot_of,
    usage_limit_error,
)
from spendgate.money import Nanos
from spendgate.store.alerting import Alerting, Crossings
from spendgate.store.base import EventWrite
from spendgate.store.rows import json_slots
from spendgate.store.sql_control import C
from spendgate.store.statements import Statements
from spendgate.windows import to_micros


class RefusedError(Exception):
    """A slot refused the hold; raised to roll the whole reservation back."""

    def __init__(self, index: int) -> None:
        self.index = index


class SQLBudgets(ABC, Generic[C]):
    """How a transaction on connections of type `C` changes budget rows; see the module."""

    sql: ClassVar[Statements]
    alerts_sql: ClassVar[Alerting]
    lock_order: ClassVar[bool] = False
    """Whether holds lock their rows in one global order (budget, bucket); a backend whose
    writers take turns holds in the caller's order, which names the first slot refused."""

    @abstractmethod
    def _many(self, conn: C, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """`executemany`; the rows it changed."""

    def _lock_budget(self, conn: C, budget: str) -> None:
        """Keep a rolling window's sum from changing under this transaction until it ends."""

    def _used(self, conn: C, slot: Slot) -> Nanos:
        row = conn.execute(self.sql.usage, (slot.budget, slot.span_start, slot.bucket)).fetchone()
        return int(row[0])

    def _hold_all(self, conn: C, slots: Sequence[Slot], amount: Nanos, now: int) -> list[Nanos]:
        """Hold on every slot (in lock order, if the backend has one); `RefusedError` if one
        refuses, and the caller's transaction rolls back, so no slot keeps a hold. Then raise
        the alerts of the lines the holds crossed."""
        used: dict[int, Nanos] = {}
        crossings = Crossings(slots)
        order: Iterable[int] = range(len(slots))
        if self.lock_order:
            order = sorted(order, key=lambda i: (slots[i].budget, slots[i].bucket))
        for i in order:
            after = self._hold(conn, slots[i], amount)
            if after is None:
                raise RefusedError(i)
            used[i] = after
            crossings.move(slots[i : i + 1], amount, now)
            crossings.seen(slots[i], after)
        self._book(conn, crossings)
        return [used[i] for i in range(len(slots))]

    def _hold(self, conn: C, slot: Slot, amount: Nanos) -> Nanos | None:
        """Add `amount` to the slot's reserved if its cap allows; its usage after, or None."""
        limit = hold_limit(slot.cap)
        budget, bucket = slot.budget, slot.bucket
        if slot.span_start == bucket:
            row = conn.execute(
                self.sql.hold, (budget, bucket, amount, amount, limit, limit)
            ).fetchone()
            if row is not None:
                return int(row[0])
        else:
            if slot.cap is not None or slot.lines:
                self._lock_budget(conn, budget)
            conn.execute(self.sql.ensure_bucket, (budget, bucket))
            span = (budget, slot.span_start, bucket)
            if conn.execute(
                self.sql.hold_rolling, (amount, budget, bucket, *span, amount, limit)
            ).rowcount:
                return self._used(conn, slot)
        if limit != slot.cap:  # refused by the bound of every total, not by the budget
            raise usage_limit_error(slot, amount)
        return None

    def _charge(self, conn: C, slot: Slot, amount: Nanos) -> tuple[Nanos, Nanos | None]:
        """Book spend no hold covered; what lands above the cap counts as overshoot. Returns
        the overshoot and, where the statement returned it, the window's usage after.

        Elsewhere the usage read before the update may be stale by the time it runs where
        writers run concurrently (a settle does not take the budget lock): the caller reads
        it afterwards.

        `CounterLimitError` if the usage would pass `MAX_TOTAL`: exactly for the bucket's row
        (its statement checks it), and for a rolling window's sum as this transaction reads
        it (concurrent writers may pass that by their own amounts, which 64 bits absorb)."""
        check_room(slot, 0, amount)  # a batch's total, before it reaches a statement
        budget, bucket, cap = slot.budget, slot.bucket, slot.cap
        if slot.span_start == bucket and cap is not None:
            first = overshoot_of(0, amount, cap)
            params = (budget, bucket, amount, first, cap, cap, cap, amount, cap)
            row = conn.execute(self.sql.charge_calendar, params).fetchone()
            if row is None:
                raise usage_limit_error(slot, amount)
            return int(row[0]), int(row[1])
        if cap is not None or (slot.lines and slot.span_start < bucket):
            self._lock_budget(conn, budget)
        conn.execute(self.sql.ensure_bucket, (budget, bucket))
        used = self._used(conn, slot)
        check_room(slot, used, amount)
        over = overshoot_of(used, amount, cap)
        if not conn.execute(self.sql.charge, (amount, over, budget, bucket, amount)).rowcount:
            raise usage_limit_error(slot, amount)
        return over, None

    def _charge_all(self, conn: C, charges: Mapping[Slot, Nanos], crossings: Crossings) -> None:
        """Charge a batch's spend, each slot once with its total (overshoot telescopes over
        a sum) in lock order, then raise the alerts of the lines it crossed."""
        for slot in sorted(charges, key=_slot_order):
            _, used = self._charge(conn, slot, charges[slot])
            if used is not None:  # a calendar window's row, charged whole by this statement
                crossings.seen(slot, used)
        self._book(conn, crossings)

    def _settle(
        self,
        conn: C,
        plan: Settlement,
        held: Nanos,
        amount: Nanos,
        cover: Nanos,
        *,
        crossings: Crossings,
        now: int,
    ) -> Nanos:
        """Move money as `plan` says: `held` leaves reserved, `amount` becomes spent; `cover`
        is what the hold approved (nothing once it expired). Returns the overshoot; tells
        `crossings` each change, at `now`."""
        overshoot = max(0, amount - cover) if plan.settle or plan.unhold else 0
        crossings.move(plan.settle, amount - held, now)
        crossings.move(plan.unhold, -held, now)
        self._settle_rows(conn, plan.settle, held, amount, overshoot)
        if plan.unhold:
            self._many(conn, self.sql.unhold, [(held, s.budget, s.bucket) for s in plan.unhold])
        for slot in plan.charge:
            crossings.move((slot,), amount, now)
            over, used = self._charge(conn, slot, amount)
            if used is not None:
                crossings.seen(slot, used)
            overshoot = max(overshoot, over)
        return overshoot

    def _settle_rows(
        self, conn: C, slots: Sequence[Slot], held: Nanos, amount: Nanos, over: Nanos
    ) -> None:
        """Move `held` out of reserved and `amount` into spent (`over` of it overshoot) on each
        slot. Only an actual above its hold adds to usage, and only then is there anything to
        check: each row within `MAX_TOTAL` by its statement, a rolling window's sum as read."""
        sql = self.sql
        if amount <= held:
            self._many(conn, sql.settle, [(held, amount, over, s.budget, s.bucket) for s in slots])
            return
        for slot in slots:
            if slot.span_start < slot.bucket:
                check_room(slot, self._used(conn, slot), amount - held)
            params = (held, amount, over, slot.budget, slot.bucket, amount - held)
            if (
                not conn.execute(sql.settle_bounded, params).rowcount
                and conn.execute(sql.bucket_exists, (slot.budget, slot.bucket)).fetchone()
            ):
                raise usage_limit_error(slot, amount - held)

    def _settle_draw(
        self, conn: C, write: EventWrite, amount: Nanos, crossings: Crossings
    ) -> tuple[Slot, ...]:
        """Move a drawn call's hold out of its leases and its cost into spent where a lease
        held it; the slots left to charge as unreserved spend."""
        assert write.draw is not None
        held = write.draw.held
        leases: dict[str, Slot] = {}
        for lease_id in sorted(write.draw.leases):
            row = conn.execute(self.sql.draw, (held, lease_id)).fetchone()
            if row is not None:
                leases.update((s.budget, s) for s in json_slots(row[0]))
        plan = drawn_plan(leases, write.slots)
        over = max(0, amount - held)
        at = to_micros(write.event.time)
        crossings.move(plan.settle, amount - held, at)
        crossings.move(plan.unhold, -held, at)
        self._settle_rows(conn, plan.settle, held, amount, over)
        self._many(conn, self.sql.unhold, [(held, s.budget, s.bucket) for s in plan.unhold])
        return plan.charge

    def _book(self, conn: C, crossings: Crossings) -> None:
        """Raise the alerts of the lines this transaction's changes crossed.

        Why concurrent writers neither miss a crossing nor count one twice. A calendar
        window is one row, and every change to it (hold, charge, settle) locks the row until
        commit: the usage returned or read after this transaction's changes is the last
        writer's committed value plus its own, so before = after - its net change is what
        the previous writer of the row left. Successive writers see adjoining intervals,
        whose union covers every rise. A rolling window spans rows: each transaction that
        raised it reads the sum after its own changes under the budget's lock (taken by the
        hold or charge in budget order, or here), held to commit, so its writers too see
        adjoining intervals; changes made without the lock only lower usage (release,
        expiry, returned holds), which can only make a later crossing a repeat. The
        once-per-length check of a rolling window reads under that same lock. A line
        crossed again in one window names the same alert id, which the insert skips; a
        concurrent insert of the same id waits for the first to commit, then skips it. (On
        SQLite, whose writers take turns, all of this holds trivially.)
        """
        if not crossings.rose:
            return
        read = {}
        for slot in crossings.unknown():
            if slot.span_start < slot.bucket:
                self._lock_budget(conn, slot.budget)
            read[(slot.budget, slot.bucket)] = self._used(conn, slot)
        self.alerts_sql.book(conn, crossings.alerts(read))

    def _cost(self, conn: C, write: EventWrite) -> Nanos | None:
        """The event's cost, counting its units against their quotas (whose counters it
        moves). Each counter is created if need be, then locked: two writers of one period
        queue."""
        sql = self.sql

        def used_before(q: QuotaUse) -> Decimal:
            conn.execute(sql.quota_create, (q.source, q.unit, q.period))
            return Decimal(conn.execute(sql.quota_used, (q.source, q.unit, q.period)).fetchone()[0])

        cost, counters = cost_with_quota(write.event, write.price, write.quota, used_before)
        for q, used in counters:
            conn.execute(sql.quota_set, (str(used), q.source, q.unit, q.period))
        return cost


def _slot_order(slot: Slot) -> tuple[str, int]:
    return (slot.budget, slot.bucket)
