"""`/metrics` for Prometheus: spend, requests, free-source success, budgets (with their ladder
lines and window ends), firing alerts, decisions and whether writes to the store fail.

Two kinds of figures. The store's (spend, requests, the free-source ratio, budgets, firing
alerts) are read from the store when Prometheus scrapes (the rollups, budget rows and firing
alerts, a few reads whatever the event count), so every process on one store reports the
same totals: scrape one, or take `max()` across them. The process's (decisions, whether
writes fail) are counted by the gate that made them, library calls and HTTP API calls alike:
`sum()` across processes adds them up. A key limited to services is shown only their series
and the budgets scoped to them (`registry(ctx, services)`): not the free-source ratio nor
the firing alerts, which span every service. Money is in the deployment currency, which
`spendgate_info` names for alert texts (Prometheus values are floats: fine for a graph,
never for the ledger). Whether writes fail is this process's, as `/healthz` reports it
(`Gate.check_health()`), shown to every key like `/healthz` itself.

A library process exports the same figures with `collector(gate)`:

```python
from prometheus_client import REGISTRY, start_http_server
from spendgate.server.metrics import collector

REGISTRY.register(collector(gate, store_figures=False))  # its decisions; the server has the rest
start_http_server(9464)
```
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from spendgate.analytics import Analyst
from spendgate.budgets import LEVELS
from spendgate.decisions import OUTCOMES
from spendgate.gate import Gate
from spendgate.money import from_nanos
from spendgate.server.auth import budget_visible
from spendgate.server.context import Context
from spendgate.store.alerting import MAX_ALERT_LIMIT
from spendgate.store.base import Alert, AlertStore, LedgerStore
from spendgate.windows import to_micros

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAR = to_micros(datetime(9000, 1, 1, tzinfo=UTC))
_LEVEL_NUMBERS = ", ".join(f"{i} {level}" for i, level in enumerate(LEVELS))
ALERT_STATES = ("firing", "acknowledged", "silenced")
"""How a firing alert is being handled, as `spendgate_alerts` counts it: each firing alert
in exactly one (silenced while `silenced_until` is ahead, else acknowledged once someone
acknowledged it, else firing), so `sum()` over the states is `/api/alerts?state=firing`."""


def _money(nanos: int) -> float:
    return float(from_nanos(nanos))


class SpendCollector(Collector):
    """spendgate's figures, read when Prometheus scrapes (only `services`' series, when
    given; only the process's, without `analyst`)."""

    def __init__(
        self, gate: Gate, analyst: Analyst | None, services: Iterable[str] | None = None
    ) -> None:
        self.gate = gate
        self.analyst = analyst
        self.services = None if services is None else frozenset(services)

    def collect(self) -> Iterator[Metric]:
        gate = self.gate
        writes = GaugeMetricFamily(
            "spendgate_store_writes_failing",
            "1 while this process's latest write to the store failed (a full disk, a "
            "read-only store, the store unreachable) and none succeeded since, else 0.",
        )
        writes.add_metric([], float(gate.check_health().writes.failing))
        yield writes
        yield self._decisions()
        if self.analyst is None:
            return
        currency = gate.config.currency
        info = InfoMetricFamily("spendgate", "The deployment's currency, every amount's unit.")
        info.add_metric([], {"currency": currency})
        yield info
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
            "Requests recorded, by pricing (paid: to a source that charges, or booked at a "
            "cost; free: the others, unpriced ones included).",
            labels=["service", "source", "pricing"],
        )
        unpriced = CounterMetricFamily(
            "spendgate_unpriced_requests",
            "Requests recorded without a known cost (counted as unpriced, never as 0).",
            labels=["service", "source"],
        )
        ledger: LedgerStore = gate.store  # all of the store it reads: the rollups
        for _, service, source, t in ledger.tallies([(0, _FAR)]):
            if not self._shows(service):
                continue
            spend.add_metric([service, source, currency], _money(t.cost))
            failures = t.requests - t.successes
            for outcome, count in (("success", t.successes), ("failure", failures)):
                requests.add_metric([service, source, outcome], count)
            for pricing, count in (("paid", t.paid), ("free", t.free)):
                by_pricing.add_metric([service, source, pricing], count)
            unpriced.add_metric([service, source], t.unpriced)
        yield from (spend, requests, by_pricing, unpriced)
        if self.services is None:  # a figure over every service: for unlimited keys only
            free = GaugeMetricFamily(
                "spendgate_free_source_success_ratio",
                "Share of today's requests served by a free source.",
            )
            free.add_metric([], self.analyst.live().today.free_source_success_rate)
            yield free
            yield self._alerts()
        yield from self._budgets()

    def _shows(self, service: str) -> bool:
        return self.services is None or service in self.services

    def _decisions(self) -> Metric:
        """This process's decisions, library and HTTP API calls alike (`Gate.decisions()`)."""
        decisions = CounterMetricFamily(
            "spendgate_reservation_decisions",
            "Calls decided by this process's gate (every authorize and reserve answer, "
            "library and HTTP API calls alike), by service and decision (approved, "
            "emergency_approved, denied).",
            labels=["service", "decision"],
        )
        counts = self.gate.decisions().counts
        for service in sorted({s for s, _ in counts}):
            if self._shows(service):
                for outcome in OUTCOMES:
                    decisions.add_metric([service, outcome], counts.get((service, outcome), 0))
        return decisions

    def _alerts(self) -> Metric:
        """The firing alerts by rule, severity and how they are handled (`ALERT_STATES`),
        read as `/api/alerts?state=firing` reads them; every state of a rule and severity
        that has one, so a handled alert shows as a 0 beside it rather than as no series."""
        alerts = GaugeMetricFamily(
            "spendgate_alerts",
            "Firing alerts, by rule, severity and state (firing; acknowledged; silenced: its "
            "repeats held back).",
            labels=["rule", "severity", "state"],
        )
        now = to_micros(self.gate.clock())
        store: AlertStore = self.gate.store  # all of the store it reads: the firing alerts
        counts: Counter[tuple[str, str, str]] = Counter()
        for alert in store.alerts(state="firing", limit=MAX_ALERT_LIMIT):
            counts[alert.rule, alert.severity, _handled(alert, now)] += 1
        for rule, severity in sorted({(r, s) for r, s, _ in counts}):
            for state in ALERT_STATES:
                alerts.add_metric([rule, severity, state], counts[rule, severity, state])
        return alerts

    def _budgets(self) -> Iterator[Metric]:
        currency = self.gate.config.currency

        def gauge(name: str, what: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"spendgate_budget_{name}", what, labels=["budget"])

        limit = gauge("limit", f"Each budget's limit, in {currency}.")
        used = gauge("used", f"Spent plus reserved in each budget's current window, in {currency}.")
        remaining = gauge(
            "remaining",
            f"Limit less spent and reserved in each budget's current window (below 0 past "
            f"the limit), in {currency}.",
        )
        ratio = gauge("used_ratio", "Spent plus reserved over the limit, in each budget's window.")
        spent = gauge("spent", f"Spent in each budget's current window, in {currency}.")
        reserved = gauge(
            "reserved",
            f"Held by pending reservations in each budget's current window, in {currency}.",
        )
        level = gauge(
            "level",
            "The ladder rung each budget's spent plus reserved has reached in its current "
            f"window: {_LEVEL_NUMBERS}.",
        )
        allowance = gauge(
            "emergency_allowance",
            f"Each budget's emergency allowance, past its stop line, per window, in {currency}.",
        )
        line = GaugeMetricFamily(
            "spendgate_budget_line",
            f"The amount at which each rung of each budget's ladder starts, in {currency}.",
            labels=["budget", "rung", "fraction"],
        )
        window_end = gauge(
            "window_end_timestamp_seconds",
            "When each budget's current window ends (a rolling window: its current bucket), "
            "in Unix seconds.",
        )
        emergency = gauge(
            "emergency_used",
            "Emergency allowance taken in each budget's current window (spend and holds the "
            f"budget approved past its stop line), in {currency}.",
        )
        for s in self.gate.status():
            if not budget_visible(s.budget, self.services):
                continue
            name = s.budget.name
            limit.add_metric([name], _money(s.budget.limit))
            used.add_metric([name], _money(s.balance.used))
            remaining.add_metric([name], _money(s.remaining_nanos))
            ratio.add_metric([name], s.balance.used / s.budget.limit)
            spent.add_metric([name], _money(s.balance.spent))
            reserved.add_metric([name], _money(s.balance.reserved))
            level.add_metric([name], LEVELS.index(s.level))
            allowance.add_metric([name], _money(s.budget.emergency))
            emergency.add_metric([name], _money(s.emergency_used_nanos))
            for rung, at in s.budget.lines:
                line.add_metric([name, rung.action, str(rung.fraction)], _money(at))
            window_end.add_metric([name], s.window_end.timestamp())
        yield from (limit, used, remaining, ratio, spent, reserved, level, allowance, emergency)
        yield from (line, window_end)


def _handled(alert: Alert, now: int) -> str:
    """Where a firing alert stands with people (one of `ALERT_STATES`)."""
    if alert.silenced_until is not None and alert.silenced_until > now:
        return "silenced"
    return "firing" if alert.acknowledged_at is None else "acknowledged"


def collector(
    gate: Gate, *, services: Iterable[str] | None = None, store_figures: bool = True
) -> Collector:
    """A Prometheus collector of `gate`'s figures, the ones `/metrics` shows (only
    `services`' series, when given): register it to export them from a library process.

    With `store_figures=False`, only the process's own: its decisions and whether its
    writes fail. Use that where a server on the same store already exports the store's
    figures, which are the same from every process on it.
    """
    return SpendCollector(gate, Analyst(gate) if store_figures else None, services)


def registry(ctx: Context, services: Iterable[str] | None = None) -> CollectorRegistry:
    """A registry of spendgate's figures (one per app, so several apps never collide), or
    of only `services`' figures."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SpendCollector(ctx.gate, ctx.analyst, services))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(reg)
