"""The PDF export (reportlab): what a finance reader signs.

Page 1 is the executive summary (`tables.sections()`): the period's spend against budget, the
forecast, the change on the previous period, the top services and sources, free sources and
what they saved, the alerts and the recommendations worth most. Then a chapter a section,
each with its charts (drawn by matplotlib, see `charts`), and the report's particulars last.

Everything is shown as people read it (`shown()`): money to the cent (`$1,234.57`; unit
prices with the digits they need, and a note that says so), shares as `12.5%`, dates as
`Thu 1 Oct 2026`, times in the report's zone (`20 Oct 2026, 13:42 EDT`), names in words
(`google_maps` as "Google maps"). Tables are sized to their content and fit the page width;
they break between rows and repeat their header row on each page. Every page carries the
report's title and its number ("page 3 of 7").
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import Any
from xml.sax.saxutils import escape

from spendgate.analytics.opportunities import Phrase
from spendgate.reports import charts, tables
from spendgate.reports.model import Report
from spendgate.reports.values import (
    Money,
    Name,
    Share,
    UnitPrice,
    amount_words,
    cents,
    spaced,
    unit_price,
)

CELL_FONT = ("Helvetica", 7.5)
MIN_SHARE = 0.07  # the narrowest a column gets, as a share of the page width
NUMERIC = (Money, Share, int, float)


def when(moment: datetime, zone: tzinfo) -> str:
    """A time as people read it, in the report's zone: `20 Oct 2026, 13:42 EDT`."""
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %Y, %H:%M %Z}"


def day(d: date) -> str:
    """`Thu 1 Oct 2026`."""
    return f"{d:%a} {d.day} {d:%b %Y}"


def shown(value: Any, currency: str, zone: tzinfo) -> str:
    """A cell as people read it."""
    if value is None:
        return "\u2013"
    if isinstance(value, UnitPrice):
        return unit_price(value.nanos, currency)
    if isinstance(value, Money):
        return cents(value.nanos, currency)
    if isinstance(value, Share):
        return f"{value.value:+.1%}" if value.signed else f"{value.value:.1%}"
    if isinstance(value, Phrase):
        words = spaced(value.words(amount_words(currency)))
        return words[:1].upper() + words[1:]
    if isinstance(value, Name):
        return value.words
    if isinstance(value, datetime):
        return when(value, zone)
    if isinstance(value, date):
        return day(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}"
    return spaced(str(value))


def widths(texts: Sequence[Sequence[str]], width: float) -> list[float]:
    """Column widths for a table of `texts` (header first) that fit `width`: each column as
    wide as its longest line where they all fit; else each as wide as its longest word (no
    word is broken), the room left shared by how much more each would take."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    padding = 14.0  # the cell padding on both sides, and a little air

    def measure(text: str, bold: bool) -> float:
        font = "Helvetica-Bold" if bold else CELL_FONT[0]
        return float(stringWidth(text, font, CELL_FONT[1])) + padding

    columns = list(zip(*texts, strict=True))
    floor = width * MIN_SHARE
    natural = [max(floor, *(measure(t, n == 0) for n, t in enumerate(c))) for c in columns]
    if sum(natural) <= width:
        return [w * width / sum(natural) for w in natural]  # spread to the page width
    least = [
        min(n, max(floor, *(measure(w, i == 0) for i, t in enumerate(c) for w in t.split())))
        for n, c in zip(natural, columns, strict=True)
    ]
    room, wanted = width - sum(least), sum(natural) - sum(least)
    if room <= 0:  # even the words do not fit: everything narrows alike
        return [w * width / sum(least) for w in least]
    return [lo + (n - lo) * room / wanted for lo, n in zip(least, natural, strict=True)]


def render(report: Report) -> dict[str, bytes]:
    """`{stem}.pdf`: the document."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import (
        CondPageBreak,
        Image,
        KeepTogether,
        ListFlowable,
        ListItem,
        PageBreakIfNotEmpty,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    zone = tables.report_zone(report)
    currency = report.currency
    styles = getSampleStyleSheet()
    cell = ParagraphStyle("cell", parent=styles["BodyText"], fontSize=CELL_FONT[1], leading=9)
    number = ParagraphStyle("number", parent=cell, alignment=TA_RIGHT)
    head = ParagraphStyle("head", parent=cell, fontName="Helvetica-Bold")
    head_number = ParagraphStyle("head_number", parent=head, alignment=TA_RIGHT)
    note = ParagraphStyle("note", parent=cell, textColor=colors.HexColor("#555555"))
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9, leading=12)
    subhead = ParagraphStyle(
        "subhead", parent=styles["Heading3"], fontSize=10.5, spaceBefore=4, spaceAfter=4
    )
    chapter = ParagraphStyle("chapter", parent=styles["Heading1"], spaceBefore=14)
    footer = f"{report.title}, generated {when(report.generated_at, zone)}"

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

    def table(t: tables.Table, titled: bool) -> list[Any]:
        out: list[Any] = []
        if titled:
            out.append(Paragraph(escape(t.title), subhead))
        if not t.rows:
            return [*out, Paragraph(escape(t.empty), note), Spacer(1, 8)]
        texts = [list(t.columns)] + [[shown(v, currency, zone) for v in r] for r in t.rows]
        right = [
            all(v is None or (isinstance(v, NUMERIC) and not isinstance(v, bool)) for v in col)
            and any(v is not None for v in col)
            for col in zip(*t.rows, strict=True)
        ]
        rows = [
            [
                Paragraph(
                    escape(text),
                    (head_number if right[i] else head)
                    if n == 0
                    else (number if right[i] else cell),
                )
                for i, text in enumerate(line)
            ]
            for n, line in enumerate(texts)
        ]
        grid = Table(rows, colWidths=widths(texts, width), repeatRows=1)
        grid.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE4EE")),
                    ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#C3CBD6")),
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
        out.append(grid)
        if t.note:
            out += [Spacer(1, 2), Paragraph(escape(spaced(t.note)), note)]
        return [*out, Spacer(1, 10)]

    def paragraph(p: tables.Paragraph) -> list[Any]:
        out: list[Any] = [Paragraph(escape(p.title), subhead)] if p.title else []
        out.append(Paragraph(escape(spaced(p.text)), body))
        if p.points:
            items = [ListItem(Paragraph(escape(spaced(x)), body)) for x in p.points]
            out.append(ListFlowable(items, bulletType="bullet", leftIndent=12))
        return [*out, Spacer(1, 6)]

    images = {c.name: c for c in report.charts}

    def chart(name: str) -> Any:
        image = Image(
            io.BytesIO(charts.png(images[name], currency)),
            width=width,
            height=width * charts.HEIGHT_INCHES / charts.WIDTH_INCHES,
        )
        return KeepTogether([image, Spacer(1, 8)])

    found = tables.sections(report)
    story: list[Any] = [
        Paragraph(escape(report.title), styles["Title"]),
        Paragraph(
            escape(
                f"{tables.report_period(report)}. Figures as of {when(report.generated_at, zone)}."
            ),
            styles["Normal"],
        ),
        Spacer(1, 8),
    ]
    for n, section in enumerate(found):
        while isinstance(story[-1], Spacer):  # space at the end of a page starts the next
            story.pop()
        if n == 1:
            story.append(PageBreakIfNotEmpty())  # the summary has page 1 to itself
        elif n:
            story.append(CondPageBreak(6 * cm))  # a heading never ends a page alone
        story.append(Paragraph(escape(section.title), styles["Heading2"] if n == 0 else chapter))
        story += [chart(name) for name in section.charts if name in images]
        several = len(section.tables) > 1
        for block in section.blocks:
            if isinstance(block, tables.Paragraph):
                story += paragraph(block)
            else:
                story += table(block, several or block.title != section.title)
    doc.build(story, canvasmaker=NumberedCanvas)
    return {f"{report.stem}.pdf": out.getvalue()}
