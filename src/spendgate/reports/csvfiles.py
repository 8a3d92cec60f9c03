"""The CSV export: one file a table, for analysis in a spreadsheet or a notebook.

- `{stem}_summary.csv`: the key figures (`Figure`, `Value`, `Detail`), as on page 1 of the
  PDF;
- `{stem}_daily.csv`: the daily spend, a row a local day;
- `{stem}_services.csv`: the services, a row a service, dearest first.

The columns are the PDF's and the workbook's (`tables.sections()`), the values exact:
money as plain decimal text in the report's currency (`12.345678901`), shares as fractions of
one (`0.25` is 25%), dates as `YYYY-MM-DD`, names as configured, an empty cell for "no
figure". UTF-8, comma-separated, `\\r\\n` line ends (RFC 4180). docs/reports.md documents
every header.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from spendgate.reports import tables
from spendgate.reports.model import Report
from spendgate.reports.values import Value

FILES = {"key_figures": "summary", "daily": "daily", "services": "services"}
"""The tables written, by the suffix of their file."""


def _csv(header: Sequence[str], rows: Iterable[Sequence[Value]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([tables.text(v) for v in row] for row in rows)
    return out.getvalue().encode()


def render(report: Report) -> dict[str, bytes]:
    """The report's key figures, daily and per-service tables, a CSV file each."""
    found = {t.key: t for s in tables.sections(report) for t in s.tables}
    return {
        f"{report.stem}_{suffix}.csv": _csv(found[key].columns, found[key].rows)
        for key, suffix in FILES.items()
    }
