"""`/metrics` for Prometheus: spend, requests, free-source success, budgets, decisions and
whether writes to the store fail.

The figures are read from the store when Prometheus scrapes (the rollups and budget rows, a
few reads whatever the event count), so every server process on one store reports the same
totals; decisions are counted by the process that made them. A key limited to services is
shown only their series and the budgets scoped to them (`registry(ctx, services)`): not the
free-source ratio nor the decisions, which span every service. Money is in the deployment
currency (Prometheus values are floats: fine for a graph, never for the ledger). Whether
writes fail is this process's, as `/healthz` reports it (`Gate.check_health()`), shown to
every key like `/healthz` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spendgate.money import from_nanos
from spendgate.server.auth import budget_visible
from spendgate.server.context import Context
from spendgate.store.base import LedgerStore
from spendgate.windows import to_micros

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAR = to_micros(datetime(9000, 1, 1, tzinfo=UTC))


def _money(nanos: int) -> float:
    return float(from_nanos(nanos))


class SpendCollector(Collector):
    """Reads the store at scrape time (only `services`' series, when given)."""

    def __init__(self, ctx: Context, services: Iterable[str] | None = None) -> None:
        self.ctx = ctx
        self.services = None if services is None else frozenset(services)

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        writes = GaugeMetricFamily(
            "spendgate_store_writes_failing",
            "1 while this process's latest write to the store failed (a full disk, a "
            "read-only store, the store unreachable) and none succeeded since, else 0.",
        )
        writes.add_metric([], float(ctx.gate.check_health().writes.failing))
        yield writes
        currency = ctx.gate.config.currency
        spend = CounterMetricFamily(
            "spendgate_spend",
            f"Spend recorded, in {currency}.",
            labels=["service", "source", "currency"],
        )
        # Each family is one partition of the requests, so `sum()` over any of them is the
        # number of requests: no label value stands for "all" beside the breakdowns.
        requests = CounterMetricFamily(
            "spendgate_requests",
            "Requests recorded, by outcome (success, failure).",
            labels=["service", "source", "outcome"],
        )
        by_pricing = CounterMetricFamily(
            "spendgate_requests_by_pricing",
            "Requests recorded, by pricing (paid: to a paid source; free: to a free one).",
            labels=["service", "source", "pricing"],
        )
        unpriced = CounterMetricFamily(
            "spendgate_unpriced_requests",
            "Requests recorded without a known cost (counted as unpriced, never as 0).",
            labels=["service", "source"],
        )
        ledger: LedgerStore = ctx.gate.store  # all of the store it reads: the rollups
        for _, service, source, t in ledger.tallies([(0, _FAR)]):
            if self.services is not None and service not in self.services:
                continue
            spend.add_metric([service, source, currency], _money(t.cost))
            failures = t.requests - t.successes
            for outcome, count in (("success", t.successes), ("failure", failures)):
                requests.add_metric([service, source, outcome], count)
            for pricing, count in (("paid", t.paid), ("free", t.free)):
                by_pricing.add_metric([service, source, pricing], count)
            unpriced.add_metric([service, source], t.unpriced)
        yield from (spend, requests, by_pricing, unpriced)
        if self.services is None:
            yield from self._everyone()
        yield from self._budgets()

    def _everyone(self) -> Iterator[Metric]:
        """The figures that span every service: for unlimited keys only."""
        ctx = self.ctx
        live = ctx.analyst.live()
        free = GaugeMetricFamily(
            "spendgate_free_source_success_ratio",
            "Share of today's requests served by a free source.",
        )
        free.add_metric([], live.today.free_source_success_rate)
        yield free
        decisions = CounterMetricFamily(
            "spendgate_reservation_decisions",
            "Authorize and reserve decisions made by this server process, by outcome.",
            labels=["decision"],
        )
        for outcome in ("approved", "emergency_approved", "denied"):
            decisions.add_metric([outcome], ctx.decisions[outcome])
        yield decisions

    def _budgets(self) -> Iterator[Metric]:
        ctx = self.ctx
        currency = ctx.gate.config.currency

        def gauge(name: str, what: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"spendgate_budget_{name}", what, labels=["budget"])

        limit = gauge("limit", f"Budget limits, in {currency}.")
        used = gauge("used", f"Spent plus reserved in each budget's current window, in {currency}.")
        remaining = gauge("remaining", f"Limit less spent and reserved, in {currency}.")
        ratio = gauge("used_ratio", "Used over limit.")
        spent = gauge("spent", f"Spent in each budget's current window, in {currency}.")
        reserved = gauge(
            "reserved",
            f"Held by pending reservations in each budget's current window, in {currency}.",
        )
        for s in ctx.gate.status():
            if not budget_visible(s.budget, self.services):
                continue
            name = s.budget.name
            limit.add_metric([name], _money(s.budget.limit))
            used.add_metric([name], _money(s.balance.used))
            remaining.add_metric([name], _money(s.remaining_nanos))
            ratio.add_metric([name], s.balance.used / s.budget.limit)
            spent.add_metric([name], _money(s.balance.spent))
            reserved.add_metric([name], _money(s.balance.reserved))
        yield from (limit, used, remaining, ratio, spent, reserved)


def registry(ctx: Context, services: Iterable[str] | None = None) -> CollectorRegistry:
    """A registry of spendgate's figures (one per app, so several apps never collide), or
    of only `services`' figures."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SpendCollector(ctx, services))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(reg)
