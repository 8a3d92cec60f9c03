"""Reports over HTTP: the monthly and weekly reports as a file download, and the server's
scheduled monthly reports (written to a folder, announced through an alert channel; the
server's report writer in background.py calls `write_monthly`)."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from spendgate.alerts.notices import render
from spendgate.server.auth import Principal, require
from spendgate.server.context import Context, context
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.store.base import Alert, AlertStore, Notification

router = APIRouter(tags=["reports"], responses=ERROR_RESPONSES)
Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, Depends(require("read", services="all"))]  # every service
Format = Literal["pdf", "xlsx", "csv", "json"]
MEDIA = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "application/zip",
    "json": "application/json",
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file",
        "content": {media: {} for media in sorted(set(MEDIA.values()))},
    },
    **ERROR_RESPONSES,
}


def rendered(report: Any, fmt: str) -> tuple[bytes, str]:
    """One format of a report as bytes and a file name (CSV's several tables as a zip)."""
    from spendgate.reports.writer import RENDERERS

    files: dict[str, bytes] = RENDERERS[fmt](report)
    if len(files) == 1:
        ((name, data),) = files.items()
        return data, name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    stem = next(iter(files)).rsplit("_", 1)[0]
    return buffer.getvalue(), f"{stem}.zip"


def _download(data: bytes, name: str, fmt: str) -> Response:
    return Response(
        data,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/api/reports/monthly/{month}", response_class=Response, responses=FILE_RESPONSES)
async def monthly_report(month: str, ctx: Ctx, who: Reader, format: Format = "pdf") -> Response:
    """The monthly cost report (`YYYY-MM`, up to the current month) as PDF, Excel, JSON, or
    CSV tables in a zip."""
    from spendgate.reports import Reporter

    report = await run_in_threadpool(Reporter(ctx.analyst).monthly, month)
    data, name = await run_in_threadpool(rendered, report, format)
    return _download(data, name, format)


@router.get("/api/reports/weekly", response_class=Response, responses=FILE_RESPONSES)
async def weekly_report(
    ctx: Ctx,
    who: Reader,
    end: Annotated[str | None, Query(description="Last day, YYYY-MM-DD (yesterday).")] = None,
    format: Format = "pdf",
) -> Response:
    """The weekly budget report ending `end` in one format."""
    from spendgate.reports import Reporter

    report = await run_in_threadpool(Reporter(ctx.analyst).weekly, end)
    data, name = await run_in_threadpool(rendered, report, format)
    return _download(data, name, format)


def last_month(now: datetime, months: Any) -> str:
    """The month before the one `now` is in (by the analytics calendar), as YYYY-MM."""
    start, _ = months.bounds(now)
    previous = start - timedelta(days=1)
    return f"{previous.astimezone(months.zone):%Y-%m}"


def write_monthly(ctx: Context, folder: Path, channel: str | None) -> list[Path]:
    """Write last month's report in every format into `folder/YYYY-MM/` unless it is there,
    and announce it through `channel` (once, through the outbox)."""
    from spendgate.reports import FORMATS, Reporter, write

    month = last_month(ctx.now(), ctx.analyst.months)
    target = folder / month
    if target.is_dir() and any(target.iterdir()):
        return []
    paths = write(Reporter(ctx.analyst).monthly(month), FORMATS, target)
    if channel is not None:
        announce(ctx, month, paths, channel)
    return paths


def announce(ctx: Context, month: str, paths: list[Path], channel_name: str) -> None:
    """An info alert for a new report, notified through one channel only (once)."""
    settings = ctx.gate.config.alerts
    channel = settings.channel(channel_name)
    now = ctx.now_us()
    # Stored already resolved and never notified: the evaluator has nothing to send for it
    # (a resolved alert is announced only after its firing was), so only this channel is.
    alert = Alert(
        alert_id=f"report:{month}:monthly",
        rule="report",
        scope=month,
        severity="info",
        state="resolved",
        fired_at=now,
        resolved_at=now,
        detail={"files": [str(p) for p in paths]},
    )
    store: AlertStore = ctx.gate.store
    if store.fire(alert):
        message = render(alert, "firing", 1, channel, ctx.gate.config)
        note = Notification(message.key, alert.alert_id, channel.name, message.payload(), now)
        store.enqueue(alert.alert_id, 1, [note], now)
