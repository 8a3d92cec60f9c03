"""The values a report is made of: `Money` and `Share` leaves, and charts' data.

Money stays integer nano-units, wrapped in `Money` so every export knows a cell is money (JSON
and CSV write it as exact decimal text, Excel as a number with a currency format, the PDF as
`$1,234.56`); shares of a whole are wrapped in `Share`. `plain()` writes a tree of them as
JSON-ready values; `typed()` reads an analytics `to_dict()` tree back into them, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spendgate.money import Nanos, money_text, to_nanos

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
class Share:
    """A share of a whole: 0.25 is 25%."""

    value: float


Value = Money | Share | str | int | float | bool | None
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
