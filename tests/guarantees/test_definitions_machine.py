"""Budgets that change while money moves, checked against a model: random sequences of holds,
commits and releases interleaved with budgets created, re-scoped, re-windowed, re-limited and
deleted over the control plane, with the clock moving across windows, on the in-memory store
and on a SQLite file.

After every step, for every budget in effect: its spent is the sum of the costs of the
events in its current window and scope, and its reserved the sum of the pending holds taken
in that window that match its scope. Every hold the gate approved fit every budget that
applied to it, and every one it refused broke one, so `spent + reserved - overshoot` (the
overshoot: what a budget found spent when it was counted again) stays within the limit, or
within what it already was when a limit was lowered under it: only a change of definition,
never an approval, leaves a budget above its limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spendgate import Gate, to_nanos
from spendgate.budgets import Budget
from spendgate.config import parse
from spendgate.control import Control
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros

CONFIG = parse(
    {
        "sources": {"paid_api": {"price": "0.01/request"}},
        "budgets": [{"name": "b0", "limit": "0.30", "scope": "service:s1"}],
    }
)
NAMES = ("b0", "b1", "b2")
SERVICES = ("s1", "s2")
TEAMS = ("a", "b")
SCOPES = ("all", "service:s1", "service:s2", "label:team=a", "source:paid_api")
WINDOWS: tuple[Mapping[str, str], ...] = (
    {"window": "day"},
    {"window": "week"},
    {"window": "month"},
    {"window": "rolling", "length": "3h", "granularity": "10m"},
)
LIMITS = ("0.05", "0.10", "0.30")
AMOUNTS = st.sampled_from([to_nanos("0.01"), to_nanos("0.02"), to_nanos("0.05")])
PICK = st.integers(0, 10**6)


@dataclass(frozen=True)
class Call:
    """A hold or an event as the model keeps it."""

    at: int
    service: str
    team: str
    amount: int


class DefinitionsMachine(RuleBasedStateMachine):
    url: str = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(datetime(2026, 3, 30, 20, tzinfo=UTC))
        self.gate = Gate.open(self.url, config=CONFIG, clock=self.clock)
        self.control = Control(self.gate)
        self.held: dict[str, Call] = {}
        self.events: list[Call] = []
        self.n = 0
        self.bound: dict[str, int] = {}  # the most usage less overshoot may be, by budget

    def teardown(self) -> None:
        self.gate.close()

    # -- the model ----------------------------------------------------------------------------

    def now(self) -> int:
        return to_micros(self.clock())

    def span(self, b: Budget) -> tuple[int, int]:
        now = self.clock()
        return to_micros(b.window.span_start(now)), to_micros(b.window.bounds(now)[1])

    def counts(self, b: Budget, call: Call) -> bool:
        start, end = self.span(b)
        labels = {"team": call.team}
        return start <= call.at < end and b.scope.matches(call.service, "paid_api", labels)

    def spent(self, b: Budget) -> int:
        return sum(e.amount for e in self.events if self.counts(b, e))

    def reserved(self, b: Budget) -> int:
        return sum(h.amount for h in self.held.values() if self.counts(b, h))

    # -- money moving -------------------------------------------------------------------------

    @rule(service=st.sampled_from(SERVICES), team=st.sampled_from(TEAMS), amount=AMOUNTS)
    def reserve(self, service: str, team: str, amount: int) -> None:
        call = Call(self.now(), service, team, amount)
        applying = [b for b in self.gate.config.budgets if self.counts(b, call)]
        fits = [self.spent(b) + self.reserved(b) + amount <= b.limit for b in applying]
        decision = self.gate.reserve(
            service,
            "paid_api",
            f"{amount / 10**9:.2f}",
            labels={"team": team},
            ttl="7d",
        )
        if decision.status == "approved":
            assert all(fits), "a hold was approved past a budget's limit"
            assert decision.reservation_id is not None
            self.held[decision.reservation_id] = call
        else:
            assert not all(fits), f"a hold that fit every budget was refused: {decision}"

    @precondition(lambda self: self.held)
    @rule(pick=PICK, part=st.sampled_from([1, 2]))
    def commit(self, pick: int, part: int) -> None:
        rid = sorted(self.held)[pick % len(self.held)]
        call = self.held.pop(rid)
        actual = call.amount // part // to_nanos("0.01") * to_nanos("0.01")
        self.n += 1
        self.gate.commit(rid, f"{actual / 10**9:.2f}", request_id=f"e{self.n}")
        self.events.append(Call(self.now(), call.service, call.team, actual))

    @precondition(lambda self: self.held)
    @rule(pick=PICK)
    def release(self, pick: int) -> None:
        rid = sorted(self.held)[pick % len(self.held)]
        del self.held[rid]
        assert self.gate.release(rid) == "released"

    @rule(minutes=st.sampled_from([5, 50, 170, 600, 1500]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    # -- budgets changing ---------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        scope=st.sampled_from(SCOPES),
        window=st.sampled_from(WINDOWS),
        limit=st.sampled_from(LIMITS),
    )
    def define(self, name: str, scope: str, window: Mapping[str, str], limit: str) -> None:
        spec = {"limit": limit, "scope": scope, **window}
        if name in {b.name for b in self.gate.config.budgets}:
            self.control.update("budget", name, spec, actor="machine")
        else:
            self.control.create("budget", name, spec, actor="machine")
        self.changed()

    @rule(name=st.sampled_from(NAMES), limit=st.sampled_from(LIMITS))
    def limit(self, name: str, limit: str) -> None:
        if name in {b.name for b in self.gate.config.budgets}:
            self.control.patch("budget", name, {"limit": limit}, actor="machine")
            self.changed()

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        if name in {b.name for b in self.gate.config.budgets}:
            self.control.delete("budget", name, actor="machine")

    def changed(self) -> None:
        """After a change of definition: each budget's bound is its limit, or its usage less
        overshoot if that is above it (a limit lowered under what is spent and held)."""
        for status in self.gate.status():
            used = status.balance.used - status.balance.overshoot
            self.bound[status.budget.name] = max(status.budget.limit, used)

    # -- what must hold -----------------------------------------------------------------------

    @invariant()
    def counters_are_the_ledger(self) -> None:
        for status in self.gate.status():
            b = status.budget
            spent, reserved = status.balance.spent, status.balance.reserved
            assert (spent, reserved) == (self.spent(b), self.reserved(b)), b.name
            bound = self.bound.get(b.name, b.limit)
            assert spent + reserved - status.balance.overshoot <= bound, b.name


def runs(examples: int, steps: int) -> settings:
    """How long a machine runs: `examples` sequences of `steps` steps, untimed."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


TestOnMemory = DefinitionsMachine.TestCase
TestOnMemory.settings = runs(25, 30)


class SQLiteMachine(DefinitionsMachine):
    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.url = f"sqlite:///{Path(self.tmp.name) / 'machine.db'}"
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


TestOnSQLite = SQLiteMachine.TestCase
TestOnSQLite.settings = runs(12, 25)
