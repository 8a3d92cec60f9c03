"""The Excel export (openpyxl): a sheet per section, real numbers, native charts.

- Each section of the report (`tables.sections()`: the same human titles and column names as
  the PDF) is a sheet; its first table's header row is frozen, further tables follow below
  it under their titles, then the section's text.
- Money cells hold numbers with the currency's number format (`"$"#,##0.00#######`: cents
  always shown, nano-units when there are any). An Excel cell is an IEEE double, so the number
  is the exact decimal amount converted once (`float(Decimal)`), which keeps about 15
  significant digits: exact to the nano-unit up to a million currency units, to the cent far
  beyond. The JSON and CSV exports carry the exact decimal text.
- Shares are numbers with a percent format; counts are integers; dates are Excel dates, and
  times the report's local times (Excel has no time zones: the `About this report` sheet
  names the zone). Names (services, sources) are kept exactly as configured.
- A `Charts` sheet holds each chart's data and a native Excel chart drawn from it (line, bar
  or stacked bar), so the figures stay live in the workbook.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from spendgate.analytics.opportunities import Phrase
from spendgate.money import currency_symbol, from_nanos
from spendgate.reports import tables
from spendgate.reports.model import Report
from spendgate.reports.values import Chart, Money, Name, Share

MAX_WIDTH = 60
CHART_ROWS = 18  # rows a chart covers on the Charts sheet
_BAD_TITLE = re.compile(r"[\[\]:*?/\\]")


def money_format(currency: str) -> str:
    """The number format of money cells: the currency's symbol, cents, then nano-units as
    needed."""
    symbol = currency_symbol(currency)
    digits = "#,##0.00#######"
    return f'"{symbol}"{digits}' if symbol else f'{digits} "{currency}"'


def cell_value(value: Any, zone: tzinfo = UTC) -> Any:
    """A report value as an Excel cell value (money in currency units, see the module doc;
    a time as the local time in `zone`: Excel has no time zones)."""
    if isinstance(value, Money):
        return float(from_nanos(value.nanos))
    if isinstance(value, Share):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None)
    if isinstance(value, Phrase | Name):
        return str(value)
    return value


def _format(value: Any, money: str) -> str | None:
    if isinstance(value, Money):
        return money
    if isinstance(value, Share):
        return "+0.0%;-0.0%;0.0%" if value.signed else "0.0%"
    if isinstance(value, datetime):
        return "d mmm yyyy hh:mm"
    if isinstance(value, date):
        return "ddd d mmm yyyy"
    if isinstance(value, int) and not isinstance(value, bool):
        return "#,##0"
    return None


def sheet_title(text: str) -> str:
    """A valid sheet name: at most 31 characters, none of `[]:*?/\\`."""
    return _BAD_TITLE.sub(" ", text)[:31]


def render(report: Report) -> dict[str, bytes]:
    """`{stem}.xlsx`: the workbook."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    money = money_format(report.currency)
    zone = tables.report_zone(report)
    bold = Font(bold=True)
    quiet = Font(italic=True, color="555555")
    header_fill = PatternFill("solid", fgColor="DDE4EE")
    book = Workbook()
    book.remove(book.active)
    book.properties.title = report.title
    book.properties.creator = "spendgate"
    book.properties.created = report.generated_at.replace(tzinfo=None)
    for section in tables.sections(report):
        ws = book.create_sheet(sheet_title(section.title))
        widths: dict[int, int] = {}
        row = 0
        for t in section.tables:
            if row:  # a table after the first: a blank row, then its title
                row += 2
                ws.cell(row, 1, t.title).font = bold
            row += 1
            for col, name in enumerate(t.columns, 1):
                c = ws.cell(row, col, name)
                c.font, c.fill = bold, header_fill
                widths[col] = max(widths.get(col, 0), len(name))
            if not t.rows:
                row += 1
                ws.cell(row, 1, t.empty).font = quiet
            for values in t.rows:
                row += 1
                for col, v in enumerate(values, 1):
                    c = ws.cell(row, col, cell_value(v, zone))
                    fmt = _format(v, money)
                    if fmt:
                        c.number_format = fmt
                    widths[col] = max(widths.get(col, 0), min(MAX_WIDTH, len(tables.text(v)) + 2))
            if t.note:
                row += 1
                ws.cell(row, 1, t.note).font = quiet
        for block in section.blocks:  # the text, below the tables: a line a cell
            if isinstance(block, tables.Paragraph):
                row += 1  # a blank row before it
                lines = [block.text, *(f"- {p}" for p in block.points)]
                if block.title:
                    row += 1
                    ws.cell(row, 1, block.title).font = bold
                for line in lines:
                    row += 1
                    ws.cell(row, 1, line)
        ws.freeze_panes = "A2"
        for col, width in widths.items():
            ws.column_dimensions[get_column_letter(col)].width = min(MAX_WIDTH, width + 2)
    _charts(book.create_sheet("Charts"), report.charts, money)
    out = io.BytesIO()
    book.save(out)
    return {f"{report.stem}.xlsx": out.getvalue()}


def _charts(ws: Any, charts: tuple[Chart, ...], money: str) -> None:
    """Each chart's data block, and a native chart over it to its right."""
    from openpyxl.chart import BarChart, LineChart, Reference
    from openpyxl.styles import Font

    row = 1
    for chart in charts:
        ws.cell(row, 1, chart.title).font = Font(bold=True)
        head = row + 1
        ws.cell(head, 1, "category").font = Font(bold=True)
        for j, s in enumerate(chart.series, 2):
            ws.cell(head, j, s.name).font = Font(bold=True)
        for i, category in enumerate(chart.categories, 1):
            ws.cell(head + i, 1, category)
            for j, s in enumerate(chart.series, 2):
                v = s.values[i - 1]
                c = ws.cell(head + i, j, cell_value(v))
                fmt = _format(v, money)
                if fmt:
                    c.number_format = fmt
        n = len(chart.categories)
        native: Any = LineChart() if chart.kind == "line" else BarChart()
        if chart.kind != "line":
            native.type = "col"
        if chart.kind == "stacked_bar":
            native.grouping, native.overlap = "stacked", 100
        native.title = chart.title
        native.y_axis.title = chart.y_label
        if chart.y_label == "cost":
            native.y_axis.numFmt = money
        # openpyxl 3.1 marks axes deleted unless told otherwise; Excel then hides them.
        native.x_axis.delete = False
        native.y_axis.delete = False
        native.width, native.height = 18, 8
        if n:
            data = Reference(
                ws, min_col=2, max_col=1 + len(chart.series), min_row=head, max_row=head + n
            )
            native.add_data(data, titles_from_data=True)
            native.set_categories(Reference(ws, min_col=1, min_row=head + 1, max_row=head + n))
        ws.add_chart(native, f"{_column(len(chart.series) + 3)}{row}")
        row = head + max(n, CHART_ROWS) + 2
    ws.column_dimensions["A"].width = 14


def _column(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index))
