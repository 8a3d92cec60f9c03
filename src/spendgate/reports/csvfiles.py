"""The CSV export: one file a table, for analysis in a spreadsheet or a notebook.

- `{stem}_summary.csv`: the headline figures (`section`, `figure`, `value`);
- `{stem}_daily.csv`: the daily breakdown, a row a day;
- `{stem}_services.csv`: the service analysis, a row a service.

Cells are exact text: money as decimal text (`12.345678901`), shares as fractions (`0.25`),
an empty cell for "no figure". UTF-8, comma-separated, `\\r\\n` line ends (RFC 4180).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from spendgate.reports import tables
from spendgate.reports.model import Report
from spendgate.reports.values import Value

FILES = {"daily_breakdown": "daily", "service_analysis": "services"}


def _csv(header: Sequence[str], rows: Iterable[Sequence[Value]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([tables.text(v) for v in row] for row in rows)
    return out.getvalue().encode()


def render(report: Report) -> dict[str, bytes]:
    """The report's summary, daily and per-service tables, a CSV file each."""
    found = {s.key: s for s in tables.sections(report)}
    summary = [
        (key, *row)
        for key in tables.SUMMARY_SECTIONS
        if key in found
        for t in found[key].tables
        if t.columns == ("figure", "value")
        for row in t.rows
    ]
    out = {f"{report.stem}_summary.csv": _csv(("section", "figure", "value"), summary)}
    for key, suffix in FILES.items():
        if key in found:
            t = found[key].tables[0]
            out[f"{report.stem}_{suffix}.csv"] = _csv(t.columns, t.rows)
    return out
