"""The JSON export: the report's sections in the documented schema, money as exact decimal
strings, shares as fractions, and the charts' data under `visualizations`."""

from __future__ import annotations

import json

from spendgate.reports.model import Report


def render(report: Report) -> dict[str, bytes]:
    """`{stem}.json`: the report as `Report.to_dict()` gives it, indented."""
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    return {f"{report.stem}.json": (text + "\n").encode()}
