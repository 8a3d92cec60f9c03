"""Optimization opportunities: rules over the rollups that each name a saving, with an amount.

Pure: the tallies of a window (and of the window before it) and the sources' pricing in, a
list of `Opportunity` out, largest saving first. A rule recommends only what can be done:
caching only a source marked `cacheable`, a free source only where one of the same
`capability` is free and answers. A budget running out is not a saving (the live metrics'
`runs_out_before_reset` and the alerts say so).

Each amount is what the window would have cost less, kept exact (a `Fraction` of nano-units):
the saving over any horizon (`weekly_saving`, `monthly_saving`) is that one rate scaled and
rounded once, so a longer horizon never saves less than a shorter one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from spendgate.analytics.summaries import Cells, by_key
from spendgate.money import Nanos, from_nanos, money_text
from spendgate.pricing import SourcePricing
from spendgate.rollups import EMPTY, Tally
from spendgate.windows import duration_micros

MIN_REQUESTS = 20  # fewer requests than this say too little to act on
HIGH_FREE_SUCCESS = 0.90  # a free source this reliable can take a paid source's traffic
LOW_CACHE_HIT = 0.20  # below this a costly source is worth caching
CACHE_TARGET = Fraction(1, 2)  # the cache-hit rate a saving is estimated against
COSTLY_SHARE = 0.10  # a source taking this share of the cost is "costly"
ROSE_BY = Fraction(1, 5)  # a cost per request up this much on the window before is worth a look
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)
"""The fixed horizons every opportunity states its saving over, beside its own window."""


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount of money in a phrase: a total, or a unit price (`per_request`)."""

    nanos: Nanos
    per_request: bool = False


MoneyWords = Callable[[Amount], str]
"""How a phrase shows its amounts."""


def exact_amount(amount: Amount) -> str:
    """An amount as exact text (`$0.004415898`, `$0.004415898 a request`): the API's words."""
    return f"${money_text(amount.nanos)}" + (" a request" if amount.per_request else "")


@dataclass(frozen=True, slots=True)
class Phrase:
    """Advice for people, its amounts kept apart (`{name}` fields of `template`, each an
    `Amount` in `amounts`) so each face shows them its own way: exact text in the API, to the
    cent in a report (`words(money)`)."""

    template: str
    amounts: Mapping[str, Amount] = field(default_factory=dict)

    def words(self, money: MoneyWords = exact_amount) -> str:
        """The phrase, its amounts shown by `money`."""
        return self.template.format_map({k: money(a) for k, a in self.amounts.items()})

    def __str__(self) -> str:
        return self.words()


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One way to spend less: what to do (`advice`), where, and how much it would save.

    `exact_saving` is what `window` would have cost less (nano-units, exact); `saving` is it
    rounded, and `weekly_saving` / `monthly_saving` the same rate over 7 and 30 days (each
    read in currency units, with its `_nanos` name in nano-units).
    """

    kind: str
    advice: Phrase
    exact_saving: Fraction
    window: timedelta
    service: str | None = None
    source: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def saving_over_nanos(self, horizon: timedelta) -> Nanos:
        """The saving at the window's rate over `horizon`, in nano-units: the one place an
        amount is scaled, rounded once."""
        return round(self.exact_saving * duration_micros(horizon) / duration_micros(self.window))

    @property
    def saving_nanos(self) -> Nanos:
        """What the window would have cost less, in nano-units."""
        return self.saving_over_nanos(self.window)

    @property
    def saving(self) -> Decimal:
        """What the window would have cost less, in currency units."""
        return from_nanos(self.saving_nanos)

    @property
    def weekly_saving_nanos(self) -> Nanos:
        """The saving over 7 days at the window's rate, in nano-units."""
        return self.saving_over_nanos(WEEK)

    @property
    def weekly_saving(self) -> Decimal:
        """The saving over 7 days at the window's rate, in currency units."""
        return from_nanos(self.weekly_saving_nanos)

    @property
    def monthly_saving_nanos(self) -> Nanos:
        """The saving over 30 days at the window's rate, in nano-units."""
        return self.saving_over_nanos(MONTH)

    @property
    def monthly_saving(self) -> Decimal:
        """The saving over 30 days at the window's rate, in currency units."""
        return from_nanos(self.monthly_saving_nanos)

    @property
    def window_days(self) -> float:
        """The window the saving was measured over, in days."""
        return self.window / timedelta(days=1)

    @property
    def summary(self) -> str:
        """One line for people: what to do, and what it saves over the window and a month."""
        return self.phrase().words()

    def phrase(self) -> Phrase:
        """`summary` with its amounts kept apart (see `Phrase`)."""
        return Phrase(
            self.advice.template + ", saving about {saving} in "
            f"{_days(self.window_days)} ({{monthly_saving}} in 30 days)",
            {
                **self.advice.amounts,
                "saving": Amount(self.saving_nanos),
                "monthly_saving": Amount(self.monthly_saving_nanos),
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, money as exact decimal text: the saving over its window
        (`window_days`), and over 7 and 30 days at the same rate."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "service": self.service,
            "source": self.source,
            "saving": money_text(self.saving_nanos),
            "window_days": self.window_days,
            "weekly_saving": money_text(self.weekly_saving_nanos),
            "monthly_saving": money_text(self.monthly_saving_nanos),
            **dict(self.detail),
        }


def find(
    cells: Cells,
    before: Cells,
    pricing: Mapping[str, SourcePricing],
    window: timedelta,
) -> list[Opportunity]:
    """Every rule's findings over `cells` (the window) and `before` (the one before it), with
    the sources' `pricing` (their capability, whether free, whether cacheable)."""
    sources = by_key(cells, 1)
    found = [
        *_free_source_available(sources, pricing, window),
        *_low_cache_hit(sources, pricing, window),
        *_unbatched(sources, window),
        *_cost_per_request_rose(by_key(cells, 0), by_key(before, 0), window),
    ]
    return sorted(found, key=lambda o: -o.exact_saving)


def _lit(text: str) -> str:
    """`text` as literal text in a `Phrase` template."""
    return text.replace("{", "{{").replace("}", "}}")


def _days(days: float) -> str:
    return "1 day" if days == 1 else f"{days:.4g} days"


def _free_now(pricing: SourcePricing | None) -> bool:
    """Whether a source is free by its latest price (not merely free within a quota so far)."""
    return pricing is not None and bool(pricing.versions) and pricing.versions[-1].free


def _free_source_available(
    sources: Mapping[str, Tally], pricing: Mapping[str, SourcePricing], window: timedelta
) -> list[Opportunity]:
    """A paid source used while a free one for the same capability answers nearly always."""
    out = []
    for paid, p in sources.items():
        own = pricing.get(paid)
        capability = None if own is None else own.capability
        if capability is None or not p.cost:
            continue
        for free, f in sources.items():
            other = pricing.get(free)
            if (
                free == paid
                or other is None
                or other.capability != capability
                or not _free_now(other)
                or f.paid
                or f.requests < MIN_REQUESTS
                or f.free_source_success_rate < HIGH_FREE_SUCCESS
            ):
                continue
            rate = f.free_source_success_rate
            out.append(
                Opportunity(
                    "free_source_available",
                    Phrase(
                        f"{_lit(paid)} cost {{cost}} while free {_lit(free)} answered "
                        f"{rate:.0%} of its {f.requests} requests for {_lit(capability)}: "
                        f"try {_lit(free)} first",
                        {"cost": Amount(p.cost)},
                    ),
                    Fraction(p.cost * f.free_successes, f.requests),
                    window,
                    source=paid,
                    detail={"capability": capability, "free_source": free, "free_success": rate},
                )
            )
    return out


def _low_cache_hit(
    sources: Mapping[str, Tally], pricing: Mapping[str, SourcePricing], window: timedelta
) -> list[Opportunity]:
    """A cacheable source taking a large share of the cost, rarely served from cache."""
    spent = sum(t.cost for t in sources.values())
    out = []
    for name, t in sources.items():
        own = pricing.get(name)
        rate = t.cache_hit_rate
        if (
            own is None
            or not own.cacheable
            or not t.cost
            or t.requests < MIN_REQUESTS
            or t.cost < spent * COSTLY_SHARE
            or rate >= LOW_CACHE_HIT
        ):
            continue
        # A cache hit costs nothing: the share of requests moved to the cache is saved.
        amount = t.cost * (CACHE_TARGET - Fraction(t.cached, t.requests))
        out.append(
            Opportunity(
                "low_cache_hit_rate",
                Phrase(
                    f"{_lit(name)} cost {{cost}} with {rate:.0%} of requests served from cache: "
                    f"cache its answers to serve {float(CACHE_TARGET):.0%} from cache",
                    {"cost": Amount(t.cost)},
                ),
                amount,
                window,
                source=name,
                detail={"cache_hit_rate": rate, "target": float(CACHE_TARGET)},
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
        batched_cpr = Fraction(t.batched_cost, t.batched)
        single_cpr = Fraction(t.cost - t.batched_cost, single)
        if batched_cpr >= single_cpr:
            continue
        out.append(
            Opportunity(
                "batchable_not_batched",
                Phrase(
                    f"{_lit(name)}: {single} requests made one at a time at {{single}}, "
                    "{batched} in batches: batch them",
                    {
                        "single": Amount(round(single_cpr), per_request=True),
                        "batched": Amount(round(batched_cpr), per_request=True),
                    },
                ),
                (single_cpr - batched_cpr) * single,
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
        if t.priced < MIN_REQUESTS or b.priced < MIN_REQUESTS or not b.cost:
            continue
        old = Fraction(b.cost, b.priced)
        rise = Fraction(t.cost, t.priced) / old - 1
        if rise <= ROSE_BY:
            continue
        out.append(
            Opportunity(
                "cost_per_request_rose",
                Phrase(
                    f"{_lit(service)} pays {{now}}, up {float(rise):.0%} from {{before}}: find "
                    "what made it dearer and go back to the old rate",
                    {
                        "now": Amount(t.cost_per_request, per_request=True),
                        "before": Amount(b.cost_per_request, per_request=True),
                    },
                ),
                t.cost - old * t.priced,  # this window's requests at the old rate
                window,
                service=service,
                detail={"rise": float(rise)},
            )
        )
    return out
