"""A report's sections as tables: what the CSV, Excel and PDF exports lay out.

Pure. Each top-level section becomes a `Section` of one or more `Table`s, by the shape of its
value:

- a list of records (the daily breakdown, recommendations) is a table, a row a record;
- a mapping of records (the service analysis, the trends) is a table, a row a key;
- a mapping of lists of one length (the weekly trend lists) is a table, a column a list;
- any other mapping is a table of figures (`figure`, `value`), and each of its entries that
  is itself a record list or mapping becomes a table of its own, titled under it.

Nested records inside a row are flattened to dotted columns (`quality_metrics.average_...`);
lists of values inside a cell are joined with "; ". Cells keep their type (`Money`, `Share`,
numbers, text), so each export formats them its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spendgate.reports.model import Report
from spendgate.reports.values import Money, Share, Value

KEY_COLUMN = {"service_analysis": "service", "trend_analysis": "series"}
SUMMARY_SECTIONS = ("executive_summary", "budget_performance", "cost_efficiency")
"""The headline sections: the PDF's cover, the CSV summary."""


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of cells under named columns."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]


@dataclass(frozen=True, slots=True)
class Section:
    """A top-level section of a report and its tables (an Excel sheet, a PDF chapter)."""

    key: str
    title: str
    tables: tuple[Table, ...]


def title(key: str) -> str:
    """`daily_breakdown` -> `Daily breakdown`."""
    return key.replace("_", " ").replace(".", ": ").capitalize()


def sections(report: Report) -> list[Section]:
    """Every section of `report` as tables, in the report's order."""
    return [
        Section(key, title(key), tuple(_tables(key, value)))
        for key, value in report.sections.items()
    ]


def table(report: Report, key: str) -> Table:
    """The first table of a section (e.g. `daily_breakdown`)."""
    for s in sections(report):
        if s.key == key:
            return s.tables[0]
    raise KeyError(key)


def _is_records(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _tables(key: str, value: Any) -> list[Table]:
    if isinstance(value, Mapping | list | tuple) and not value:  # nothing seen: an empty table
        return [Table(key, title(key), (KEY_COLUMN.get(key, "name"),), ())]
    if _is_records(value):
        return [_records(key, title(key), list(value))]
    if not isinstance(value, Mapping):
        return [_figures(key, {key: value})]
    if value and all(isinstance(v, Mapping) for v in value.values()):
        column = KEY_COLUMN.get(key, "name")
        return [_records(key, title(key), [{column: k, **v} for k, v in value.items()])]
    lists = [v for v in value.values() if isinstance(v, list | tuple)]
    same_length = len(lists) == len(value) and len({len(v) for v in lists}) == 1
    if same_length and not any(_is_records(v) for v in lists):
        rows = [dict(zip(value, row, strict=True)) for row in zip(*lists, strict=True)]
        return [_records(key, title(key), rows)]
    scalars = {k: v for k, v in value.items() if not (isinstance(v, Mapping) or _is_records(v))}
    out = [_figures(key, scalars)] if scalars else []
    for k, v in value.items():
        if k not in scalars:
            out += _tables(f"{key}.{k}", v)
    return out


def _figures(key: str, values: Mapping[str, Any]) -> Table:
    flat = _flatten(values)
    return Table(key, title(key), ("figure", "value"), tuple((k, v) for k, v in flat.items()))


def _records(key: str, name: str, records: Sequence[Mapping[str, Any]]) -> Table:
    flat = [_flatten(r) for r in records]
    columns: dict[str, None] = {}
    for r in flat:
        columns.update(dict.fromkeys(r))
    return Table(key, name, tuple(columns), tuple(tuple(r.get(c) for c in columns) for r in flat))


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Value]:
    out: dict[str, Value] = {}
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{name}."))
        elif isinstance(v, list | tuple):
            out[name] = "; ".join(text(x) for x in v)
        else:
            out[name] = v
    return out


def text(value: Any) -> str:
    """A cell as exact, machine-readable text (CSV): money as decimal text, shares as
    fractions, nothing as an empty string."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, Share):
        return repr(value.value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={text(v)}" for k, v in value.items())
    if isinstance(value, float):
        return repr(value)
    return str(value)
