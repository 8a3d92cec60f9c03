"""Mapping between domain values and database rows, shared by the SQL backends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from spendgate.events import Event, Fallback
from spendgate.rollups import TALLY_FIELDS, Tally
from spendgate.store.base import Slot
from spendgate.windows import from_micros, to_micros

EVENT_COLUMNS = (
    "request_id",
    "fingerprint",
    "ts",
    "service",
    "source",
    "cost",
    "paid",
    "success",
    "failure_reason",
    "cache_hits",
    "batch_processing",
    "quality_score",
    "processing_time",
    "price_version",
    "reservation_id",
    "emergency",
    "detail",
)


def event_row(event: Event) -> tuple[Any, ...]:
    """An event as a row of `EVENT_COLUMNS`."""
    detail = event.detail()
    return (
        event.request_id,
        event.fingerprint,
        to_micros(event.time),
        event.service,
        event.source,
        event.cost,
        event.paid,
        event.success,
        event.failure_reason,
        event.cache_hits,
        event.batch_processing,
        event.quality_score,
        event.processing_time,
        event.price_version,
        event.reservation_id,
        event.emergency,
        json.dumps(detail, separators=(",", ":")) if detail else None,
    )


def row_event(row: Sequence[Any]) -> Event:
    """The event stored in a row of `EVENT_COLUMNS`."""
    (
        request_id,
        fp,
        ts,
        service,
        source,
        cost,
        paid,
        success,
        failure_reason,
        cache_hits,
        batch,
        quality,
        processing,
        price_version,
        reservation_id,
        emergency,
        detail_text,
    ) = row
    detail = json.loads(detail_text) if detail_text else {}
    return Event(
        request_id=request_id,
        time=from_micros(ts),
        service=service,
        source=source,
        cost=cost,
        fingerprint=fp,
        units={k: Decimal(v) for k, v in detail.get("units", {}).items()},
        paid=bool(paid),
        success=bool(success),
        failure_reason=failure_reason,
        sources_used=tuple(detail.get("sources_used", ())),
        free_sources_attempted=tuple(detail.get("free_sources_attempted", ())),
        paid_apis_used=tuple(detail.get("paid_apis_used", ())),
        fallbacks_triggered=tuple(
            Fallback(f["source"], f["reason"]) for f in detail.get("fallbacks_triggered", ())
        ),
        cache_hits=cache_hits,
        batch_processing=bool(batch),
        quality_score=quality,
        processing_time=processing,
        labels=detail.get("labels", {}),
        price_version=price_version,
        reservation_id=reservation_id,
        emergency=bool(emergency),
    )


def slots_json(slots: Sequence[Slot]) -> str:
    """A reservation's slots as stored: `[[budget, bucket, span_start, cap], ...]`."""
    return json.dumps([[s.budget, s.bucket, s.span_start, s.cap] for s in slots])


def json_slots(text: str) -> tuple[Slot, ...]:
    """The slots of a stored reservation."""
    return tuple(Slot(b, bucket, span, cap) for b, bucket, span, cap in json.loads(text))


ROLLUP_COLUMNS = ("step", "bucket", "service", "source", *TALLY_FIELDS)


def rollup_upsert(mark: str) -> str:
    """Add rows of `rollup_rows()` to the rollups (`mark`: the driver's placeholder).

    The same statement in SQLite and PostgreSQL: a new bucket row is inserted, an existing one
    has each sum added to.
    """
    return (
        f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(ROLLUP_COLUMNS))}) "
        "ON CONFLICT (step, bucket, service, source) DO UPDATE SET "
        + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in TALLY_FIELDS)
    )


def tallies_query(
    pieces: Sequence[tuple[int, int, int, int]], mark: str, cast: str = ""
) -> tuple[str, list[int]]:
    """One query summing the rollups over tiled spans, by span, service and source.

    `pieces` are `(span index, step, first bucket, end)`; `cast` types the placeholders where
    the driver needs it (PostgreSQL: `::bigint`). Each piece is an index range scan of the
    rollups' primary key.
    """
    one = f"({', '.join([mark + cast] * 4)})"
    sums = ", ".join(f"SUM(r.{c})" for c in TALLY_FIELDS)
    sql = (
        f"WITH t(i, step, lo, hi) AS (VALUES {', '.join([one] * len(pieces))}) "
        f"SELECT t.i, r.service, r.source, {sums} FROM t JOIN rollups r "
        "ON r.step = t.step AND r.bucket >= t.lo AND r.bucket < t.hi "
        "GROUP BY t.i, r.service, r.source"
    )
    return sql, [v for piece in pieces for v in piece]


def tally_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str, str, Tally]]:
    """The rows of `tallies_query()` as values."""
    return [(int(r[0]), r[1], r[2], Tally.from_row(r[3:])) for r in rows]
