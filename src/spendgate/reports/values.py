"""The values a report is made of: `Money` and `Share` leaves, and charts' data.

Money stays integer nano-units, wrapped in `Money` so every export knows a cell is money (JSON
and CSV write it as exact decimal text, Excel as a number with a currency format, the PDF as
`$1,234.56`); shares of a whole are wrapped in `Share`. `plain()` writes a tree of them as
JSON-ready values; `typed()` reads an analytics `to_dict()` tree back into them, exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any, Literal

from spendgate.analytics.opportunities import Amount, Phrase
from spendgate.money import Nanos, format_money, from_nanos, money_text, to_nanos

CENT = 10_000_000  # a hundredth of a currency unit, in nano-units

# Fields whose text values the analytics write as exact decimal money (`money_text`).
MONEY_FIELDS = frozenset(
    {
        "total_cost",
        "total_spent",
        "daily_average",
        "daily_budget",
        "cost_per_request",
        "average_cost_per_request",
        "batched_cost",
        "saving",
        "weekly_saving",
        "monthly_saving",
        "cost_trend",
        "cost_by_source",
    }
)
# Fields that are a share of a whole (0.25 = 25%), besides every `*_rate`.
SHARE_FIELDS = frozenset(
    {"budget_utilization", "free_source_trend", "share_of_cost", "free_share", "batched_share"}
)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in nano-units of the report's currency."""

    nanos: Nanos

    def __str__(self) -> str:
        return money_text(self.nanos)


@dataclass(frozen=True, slots=True)
class UnitPrice(Money):
    """What one request costs: shown with the digits it needs, where other amounts are
    shown to the cent."""


@dataclass(frozen=True, slots=True)
class Share:
    """A share of a whole: 0.25 is 25% (`signed`: a change, shown `+25.0%`)."""

    value: float
    signed: bool = False


class Name(str):
    """A name from the configuration or the events (a service, a source, a location): kept
    as it is in data exports, shown in words in the PDF (`google_maps` as "Google maps")."""

    __slots__ = ()

    @property
    def words(self) -> str:
        """The name for people: its underscores as spaces, a lowercase first letter raised."""
        shown = spaced(self)
        return shown[:1].upper() + shown[1:] if shown[:1].islower() else shown


_IDENTIFIER = re.compile(r"\b[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+\b")


def spaced(text: str) -> str:
    """`text` with every snake_case identifier in it written as words (`google_maps` as
    `google maps`): a report for people names things, it does not quote keys."""
    return _IDENTIFIER.sub(lambda m: m[0].replace("_", " "), text)


def cents(nanos: Nanos, currency: str) -> str:
    """An amount to the cent (half to even), as people read it: `$1,234.57`; a non-zero
    amount that rounds to nothing is `under $0.01`, never `$0.00`."""
    rounded = round(Fraction(nanos, CENT)) * CENT
    if nanos and not rounded:
        return (
            f"under {format_money(CENT, currency)}"
            if nanos > 0
            else (f"over {format_money(-CENT, currency)}")
        )
    return format_money(rounded, currency)


def unit_price(nanos: Nanos, currency: str) -> str:
    """What one request costs, with the digits it needs: four significant digits, at least
    the cents (`$0.004416`, `$0.0123`, `$1.50`)."""
    value = abs(from_nanos(nanos))
    places = 2 if not value else max(2, min(9, 3 - math.floor(math.log10(value))))
    return _trim(format_money(nanos, currency, places))


def _trim(shown: str) -> str:
    """Trailing zeros past the cents dropped: `$0.012300` as `$0.0123`."""
    whole, _, fraction = shown.partition(".")
    fraction = fraction[:2] + fraction[2:].rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def amount_words(currency: str) -> Callable[[Amount], str]:
    """How a report's PDF words the amounts of a `Phrase`: totals to the cent, unit prices per
    1,000 requests to the cent (or per million, for the cheapest)."""

    def words(amount: Amount) -> str:
        if not amount.per_request:
            return cents(amount.nanos, currency)
        if abs(amount.nanos) * 1000 >= CENT // 2 or not amount.nanos:
            return f"{cents(amount.nanos * 1000, currency)} per 1,000 requests"
        return f"{cents(amount.nanos * 1_000_000, currency)} per million requests"

    return words


Value = Money | Share | Phrase | date | str | int | float | bool | None
"""A cell of a report's tables, a leaf of its sections (`date` includes `datetime`)."""
"""A leaf of a report's sections."""


@dataclass(frozen=True, slots=True)
class Series:
    """One line or set of bars of a chart: a value per category (`None`: no point there)."""

    name: str
    values: tuple[Money | int | float | None, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart's data: categories along the x axis and one or more series over them."""

    name: str
    title: str
    kind: Literal["line", "bar", "stacked_bar"]
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    y_label: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, money as exact decimal text."""
        return {
            "name": self.name,
            "title": self.title,
            "kind": self.kind,
            "y_label": self.y_label,
            "categories": list(self.categories),
            "series": [
                {"name": s.name, "values": [plain(v) for v in s.values]} for s in self.series
            ],
        }


def plain(value: Any) -> Any:
    """A section tree as JSON-ready values (`Money` as exact text, `Share` as a float)."""
    if isinstance(value, Money):
        return money_text(value.nanos)
    if isinstance(value, Share):
        return value.value
    if isinstance(value, Phrase):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def typed(value: Any, key: str = "") -> Any:
    """An analytics `to_dict()` tree with its money and shares typed, by field name
    (`MONEY_FIELDS`, `SHARE_FIELDS`, `*_rate`): exact, as the text was exact."""
    if isinstance(value, Mapping):
        if key in MONEY_FIELDS:  # a mapping of amounts, e.g. cost_by_source
            return {k: typed(v, key) for k, v in value.items()}
        return {k: typed(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [typed(v, key) for v in value]
    if key in MONEY_FIELDS and isinstance(value, str):
        return Money(to_nanos(value, key))
    is_share = key in SHARE_FIELDS or key.endswith("_rate")
    if is_share and isinstance(value, int | float) and not isinstance(value, bool):
        return Share(float(value))
    return value
