"""Optimization opportunities: rules over the rollups that each name a saving, with an amount.

Pure: the tallies of a window (and of the window before it), the sources' capabilities and
the live metrics in, a list of `Opportunity` out, largest saving first. Each amount is what
the window would have cost less, and is scaled to 30 days for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from spendgate.analytics.live import LiveMetrics
from spendgate.analytics.summaries import Cells, by_key
from spendgate.money import Nanos, from_nanos, money_text
from spendgate.rollups import EMPTY, Tally

MIN_REQUESTS = 20  # fewer requests than this say too little to act on
HIGH_FREE_SUCCESS = 0.90  # a free source this reliable can take a paid source's traffic
LOW_CACHE_HIT = 0.20  # below this a costly source is worth caching
CACHE_TARGET = 0.50  # the cache-hit rate a saving is estimated against
COSTLY_SHARE = 0.10  # a source taking this share of the cost is "costly"
ROSE_BY = 0.20  # a cost per request up this much on the window before is worth a look


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One way to spend less: what, where, and how much it would save (`saving` in currency
    units, `saving_nanos` in nano-units)."""

    kind: str
    summary: str
    saving_nanos: Nanos
    window: timedelta
    service: str | None = None
    source: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def saving(self) -> Decimal:
        """What the window would have cost less, in currency units."""
        return from_nanos(self.saving_nanos)

    @property
    def monthly_saving(self) -> Decimal:
        """The saving scaled to 30 days, in currency units."""
        return from_nanos(self.monthly_saving_nanos)

    @property
    def monthly_saving_nanos(self) -> Nanos:
        """`monthly_saving` in nano-units."""
        month = timedelta(days=30) // timedelta(microseconds=1)
        return self.saving_nanos * month // (self.window // timedelta(microseconds=1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, money as exact decimal text."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "service": self.service,
            "source": self.source,
            "saving": money_text(self.saving_nanos),
            "window_days": self.window / timedelta(days=1),
            "monthly_saving": money_text(self.monthly_saving_nanos),
            **dict(self.detail),
        }


def find(
    cells: Cells,
    before: Cells,
    capabilities: Mapping[str, str | None],
    window: timedelta,
    live: LiveMetrics | None = None,
) -> list[Opportunity]:
    """Every rule's findings over `cells` (the window) and `before` (the one before it)."""
    sources = by_key(cells, 1)
    found = [
        *_free_source_available(sources, capabilities, window),
        *_low_cache_hit(sources, window),
        *_unbatched(sources, window),
        *_cost_per_request_rose(by_key(cells, 0), by_key(before, 0), window),
    ]
    if live is not None:
        found += _runs_out(live)
    return sorted(found, key=lambda o: -o.saving_nanos)


def _money(nanos: Nanos) -> str:
    return f"${money_text(nanos)}"


def _free_source_available(
    sources: Mapping[str, Tally], capabilities: Mapping[str, str | None], window: timedelta
) -> list[Opportunity]:
    """A paid source used while a free one for the same capability answers nearly always."""
    out = []
    for paid, p in sources.items():
        capability = capabilities.get(paid)
        if capability is None or not p.cost:
            continue
        for free, f in sources.items():
            if (
                free == paid
                or capabilities.get(free) != capability
                or f.paid
                or f.requests < MIN_REQUESTS
                or f.free_source_success_rate < HIGH_FREE_SUCCESS
            ):
                continue
            rate = f.free_source_success_rate
            saving = round(p.cost * rate)
            out.append(
                Opportunity(
                    "free_source_available",
                    f"{paid} cost {_money(p.cost)} while free {free} answered {rate:.0%} of its "
                    f"{f.requests} requests for {capability}: try {free} first to save about "
                    f"{_money(saving)}",
                    saving,
                    window,
                    source=paid,
                    detail={"capability": capability, "free_source": free, "free_success": rate},
                )
            )
    return out


def _low_cache_hit(sources: Mapping[str, Tally], window: timedelta) -> list[Opportunity]:
    """A source taking a large share of the cost, rarely served from cache."""
    spent = sum(t.cost for t in sources.values())
    out = []
    for name, t in sources.items():
        rate = t.cache_hit_rate
        if (
            not t.cost
            or t.requests < MIN_REQUESTS
            or t.cost < spent * COSTLY_SHARE
            or rate >= LOW_CACHE_HIT
        ):
            continue
        saving = round(t.cost * (CACHE_TARGET - rate))  # a cache hit costs nothing
        out.append(
            Opportunity(
                "low_cache_hit_rate",
                f"{name} cost {_money(t.cost)} with {rate:.0%} of requests served from cache: "
                f"caching to {CACHE_TARGET:.0%} would save about {_money(saving)}",
                saving,
                window,
                source=name,
                detail={"cache_hit_rate": rate, "target": CACHE_TARGET},
            )
        )
    return out


def _unbatched(sources: Mapping[str, Tally], window: timedelta) -> list[Opportunity]:
    """A paid source cheaper per request in batches, still called one request at a time."""
    out = []
    for name, t in sources.items():
        single = t.priced - t.batched
        if not t.batched or single < MIN_REQUESTS or not t.cost:
            continue
        batched_cpr = t.batched_cost / t.batched
        single_cpr = (t.cost - t.batched_cost) / single
        if batched_cpr >= single_cpr:
            continue
        saving = round((single_cpr - batched_cpr) * single)
        out.append(
            Opportunity(
                "batchable_not_batched",
                f"{name}: {single} requests made one at a time at {_money(round(single_cpr))} "
                f"each, {_money(round(batched_cpr))} in batches: batching them would save "
                f"about {_money(saving)}",
                saving,
                window,
                source=name,
                detail={"unbatched_requests": single, "batched_requests": t.batched},
            )
        )
    return out


def _cost_per_request_rose(
    now: Mapping[str, Tally], before: Mapping[str, Tally], window: timedelta
) -> list[Opportunity]:
    """A service paying more per request than in the window before."""
    out = []
    for service, t in now.items():
        b = before.get(service, EMPTY)
        if t.priced < MIN_REQUESTS or b.priced < MIN_REQUESTS or not b.cost_per_request:
            continue
        rise = t.cost_per_request / b.cost_per_request - 1
        if rise <= ROSE_BY:
            continue
        saving = (t.cost_per_request - b.cost_per_request) * t.priced
        out.append(
            Opportunity(
                "cost_per_request_rose",
                f"{service} pays {_money(t.cost_per_request)} a request, up {rise:.0%} from "
                f"{_money(b.cost_per_request)}: back at the old rate it would save about "
                f"{_money(saving)}",
                saving,
                window,
                service=service,
                detail={"rise": rise},
            )
        )
    return out


def _runs_out(live: LiveMetrics) -> list[Opportunity]:
    """The budget, at the recent pace, runs out before it resets."""
    budget, runway = live.budget, live.runway
    if budget is None or runway is None or live.as_of + runway >= budget.window_end:
        return []
    over = max(0, live.projected_daily_total_nanos - budget.limit_nanos)
    at = live.as_of + runway
    return [
        Opportunity(
            "budget_runs_out",
            f"budget '{budget.name}' is projected to run out at {at.isoformat(timespec='minutes')}"
            f", before it resets at {budget.window_end.isoformat(timespec='minutes')}: "
            f"{_money(over)} of calls would be refused; slow paid traffic or move it to free "
            "sources",
            over,
            live.day_end - live.day_start,
            detail={"exhausted_at": at.isoformat(), "resets_at": budget.window_end.isoformat()},
        )
    ]
