"""The PDF export (reportlab): what executives read.

A cover with the period, when the figures are as of and the headline figures; the charts
(drawn by matplotlib, see `charts`); then every section as tables. Tables break across pages
between rows and repeat their header row on each page; a table too wide for the page is cut
into column groups, each repeating the first column. Every page carries its number
("page 3 of 7") and the report's title. Money is shown as people read it (`$1,234.57`,
sub-cent amounts with the places they need); the JSON and CSV exports carry exact amounts.
"""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from spendgate.money import format_money
from spendgate.reports import charts, tables
from spendgate.reports.model import Report
from spendgate.reports.values import Money, Share

MAX_COLUMNS = 7  # columns a portrait page shows legibly
COVER_SECTIONS = ("report_metadata", "period", *tables.SUMMARY_SECTIONS)


def shown(value: Any, currency: str) -> str:
    """A cell as people read it."""
    if value is None:
        return "-"
    if isinstance(value, Money):
        return format_money(value.nanos, currency)
    if isinstance(value, Share):
        return f"{value.value:.1%}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _column_groups(t: tables.Table) -> list[tables.Table]:
    """`t` cut into tables of at most `MAX_COLUMNS` columns, each keeping the first."""
    if len(t.columns) <= MAX_COLUMNS:
        return [t]
    out = []
    rest = list(range(1, len(t.columns)))
    step = MAX_COLUMNS - 1
    for n, lo in enumerate(range(0, len(rest), step)):
        keep = [0, *rest[lo : lo + step]]
        out.append(
            tables.Table(
                t.key,
                t.title if n == 0 else f"{t.title} (continued)",
                tuple(t.columns[i] for i in keep),
                tuple(tuple(r[i] for i in keep) for r in t.rows),
            )
        )
    return out


def render(report: Report) -> dict[str, bytes]:
    """`{stem}.pdf`: the document."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import (
        CondPageBreak,
        Image,
        KeepTogether,
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    cell = ParagraphStyle("cell", parent=styles["BodyText"], fontSize=7.5, leading=9)
    head = ParagraphStyle("head", parent=cell, fontName="Helvetica-Bold")
    footer = f"{report.title} - generated {report.generated_at:%Y-%m-%d %H:%M} UTC"

    class NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab is untyped
        """Holds pages back until the end, so each can say how many there are."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for page in self._pages:
                self.__dict__.update(page)
                self.setFont("Helvetica", 7.5)
                self.setFillColor(colors.grey)
                self.drawString(1.5 * cm, 1 * cm, footer)
                self.drawRightString(
                    A4[0] - 1.5 * cm, 1 * cm, f"page {self._pageNumber} of {len(self._pages)}"
                )
                super().showPage()
            super().save()

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.8 * cm,
        title=report.title,
        author="spendgate",
    )
    width = doc.width

    def flowable(t: tables.Table, section: tables.Section) -> list[Any]:
        out: list[Any] = []
        for part in _column_groups(t):
            n = len(part.columns)
            widths = [width * 0.4, width * 0.6] if n == 2 else [width / n] * n
            rows = [[Paragraph(escape(c), head) for c in part.columns]]
            rows += [
                [Paragraph(escape(shown(v, report.currency)), cell) for v in r] for r in part.rows
            ]
            table = Table(rows, colWidths=widths, repeatRows=1)
            table.setStyle(
                TableStyle(
                    [
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE4EE")),
                        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#9AA5B1")),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                        (
                            "ROWBACKGROUNDS",
                            (0, 1),
                            (-1, -1),
                            [colors.white, colors.HexColor("#F5F7FA")],
                        ),
                    ]
                )
            )
            if not part.rows:
                out += [Paragraph(escape(f"{part.title}: none"), cell), Spacer(1, 6)]
                continue
            if part.title != section.title:  # a section's only table goes untitled
                out.append(Paragraph(escape(part.title), styles["Heading4"]))
            out += [table, Spacer(1, 8)]
        return out

    found = tables.sections(report)
    story: list[Any] = [
        Paragraph(escape(report.title), styles["Title"]),
        Paragraph(
            escape(
                f"{report.since.isoformat()} to {report.until.isoformat()}; figures as of "
                f"{report.generated_at.isoformat()}"
            ),
            styles["Normal"],
        ),
        Spacer(1, 12),
    ]
    for s in found:
        if s.key in COVER_SECTIONS:
            story.append(Paragraph(escape(s.title), styles["Heading2"]))
            for t in s.tables:
                story += flowable(t, s)
    story.append(PageBreak())
    story.append(Paragraph("Charts", styles["Heading1"]))
    for chart in report.charts:
        image = Image(
            io.BytesIO(charts.png(chart, report.currency)),
            width=width,
            height=width * charts.HEIGHT_INCHES / charts.WIDTH_INCHES,
        )
        story.append(KeepTogether([image, Spacer(1, 10)]))
    story.append(PageBreak())
    for s in found:
        if s.key in COVER_SECTIONS:
            continue
        story.append(CondPageBreak(6 * cm))  # a heading never ends a page alone
        story.append(Paragraph(escape(s.title), styles["Heading1"]))
        for t in s.tables:
            story += flowable(t, s)
    doc.build(story, canvasmaker=NumberedCanvas)
    return {f"{report.stem}.pdf": out.getvalue()}
