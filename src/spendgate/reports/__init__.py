"""Reports people hand to finance: the seed's monthly cost report and weekly budget report,
written as PDF, Excel, CSV and JSON, with charts. Every figure is read from the rollups.

>>> from spendgate import Gate
>>> from spendgate.reports import Reporter, write
>>> gate = Gate.open("memory://")
>>> report = Reporter(gate).monthly(gate.clock().strftime("%Y-%m"))
>>> report.sections["executive_summary"]["total_requests_processed"]
0
>>> gate.close()

`Reporter` reads (through an `Analyst`); `model` builds the report (pure) of `values`;
`tables` lays it out for people (an executive summary, then human sections and columns);
`jsonfile`, `csvfiles`, `excel` and `pdf` render it (`charts` gives its charts' data and
draws them); `write()` puts the files in place, whole or not at all.
"""

from spendgate.reports.model import Report
from spendgate.reports.reporter import Reporter, monthly_report, parse_month, weekly_report
from spendgate.reports.values import Chart, Money, Series, Share
from spendgate.reports.writer import FORMATS, check_folder, parse_formats, write

__all__ = [
    "FORMATS",
    "Chart",
    "Money",
    "Report",
    "Reporter",
    "Series",
    "Share",
    "check_folder",
    "monthly_report",
    "parse_formats",
    "parse_month",
    "weekly_report",
    "write",
]
