"""The second seed's `usage_monitoring` table, as views of the ledger.

The SQL backends have two views over `events` (migration 0009): `stream_usage`, one row per
event that carries stream usage (units `bytes`, `seconds` or `events`, or a `trading_date`
label) with its trading date and its usage as integers; and `usage_monitoring`, those summed
per trading date, source and service with the seed's columns (`id`, `date`,
`events_processed`, `data_bytes`, `estimated_cost` REAL currency units, `connection_time`
REAL hours, `created_at` UTC ISO text) and spendgate's beside them (`source`, `service`,
`cost_nanos`, the exact cost). Being views, they cannot drift from the ledger: nothing
counted twice, nothing lost. `select()` sums `stream_usage` as `usage_monitoring` does, over
a bounded span of time (the events index makes it a short read, however long the ledger);
`stream_days()` is the same rule in Python, for the memory backend; the tests hold all three
to the same rows.

A row's `date` is the event's `trading_date` label when it has the form YYYY-MM-DD (the
stream meter writes it: see `spendgate.markets`), else the UTC date of the event's time. Its
`id` is the lowest row id of its events (the first written), its `created_at` the earliest
of their times. Units are counted as the views do: `events` and `bytes` truncated to whole
numbers, connected `seconds` rounded to whole microseconds. A trading date is at most two
days after its event's UTC date (the rule's time zones and day starts), so a read from a
date on looks at events from two UTC days before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from spendgate.events import Event
from spendgate.money import Nanos
from spendgate.windows import from_micros, to_micros

TRADING_DATE = "trading_date"
"""The label a stream meter writes on each settlement: the trading date of its usage."""
STREAM_UNITS = ("bytes", "seconds", "events")
"""The units of a stream's usage: data volume, connected time, messages."""
MICROS_PER_HOUR = 3_600_000_000
EARLIER = timedelta(days=2)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class StreamDay:
    """One row of the `usage_monitoring` view: a stream's usage on one trading date."""

    id: int
    date: str  # YYYY-MM-DD
    source: str
    service: str
    events_processed: int
    data_bytes: int
    cost: Nanos
    connection_time: float  # hours
    created_at: datetime


def select(mark: str, *, service: bool) -> str:
    """`usage_monitoring`'s rows of a source (and a service), from a date (`date >= ?`) and
    the first time its events may have (`ts >= ?`, see `earliest()`) on, newest first."""
    by_service = f" AND service = {mark}" if service else ""
    return (
        "SELECT MIN(id), date, source, service, SUM(events), SUM(bytes), SUM(cost), "
        f"SUM(micros), MIN(ts) FROM stream_usage WHERE ts >= {mark} AND date >= {mark} "
        f"AND source = {mark}{by_service} GROUP BY date, source, service "
        "ORDER BY date DESC, service"
    )


def earliest(since: str) -> int:
    """The first time (µs) an event dated `since` or later can have: two UTC days before."""
    day = datetime.combine(date.fromisoformat(since) - EARLIER, time(0), UTC)
    return to_micros(day)


def row_day(row: Sequence[object]) -> StreamDay:
    """A `StreamDay` from a row of `select()`."""
    rid, day, source, service, events, nbytes, cost, micros, first = (int_or(v) for v in row)
    return StreamDay(
        int(rid),
        str(day),
        str(source),
        str(service),
        int(events),
        int(nbytes),
        int(cost),
        int(micros) / MICROS_PER_HOUR,
        from_micros(int(first)),
    )


def int_or(value: object) -> int | str:
    """A column as an integer (drivers give SUM()s as Decimal or int), or else as text."""
    return value if isinstance(value, str) else int(str(value))


def day_of(event: Event) -> str | None:
    """The trading date an event counts on in `usage_monitoring` (`None`: not stream usage)."""
    label = event.labels.get(TRADING_DATE)
    if label is None and not any(u in event.units for u in STREAM_UNITS):
        return None
    if label is not None and _DATE.fullmatch(label):
        return label
    return event.time.astimezone(UTC).date().isoformat()


def stream_days(
    numbered: Iterable[tuple[int, Event]], since: str, source: str, service: str | None
) -> list[StreamDay]:
    """The views' rule over `(row id, event)` pairs: what `select()` reads from SQL."""
    first = from_micros(earliest(since))
    groups: dict[tuple[str, str], list[int]] = {}
    firsts: dict[tuple[str, str], tuple[int, int]] = {}
    for rid, event in numbered:
        if event.source != source or (service is not None and event.service != service):
            continue
        day = day_of(event)
        if day is None or day < since or event.time < first:
            continue
        key = (day, event.service)
        sums = groups.setdefault(key, [0, 0, 0, 0])
        units = event.units
        sums[0] += int(units.get("events", 0))
        sums[1] += int(units.get("bytes", 0))
        sums[2] += event.cost or 0
        seconds = Decimal(units.get("seconds", 0)) * 1_000_000
        sums[3] += int(seconds.to_integral_value(ROUND_HALF_UP))
        first_id, first_us = firsts.get(key, (rid, to_micros(event.time)))
        firsts[key] = (min(first_id, rid), min(first_us, to_micros(event.time)))
    out = []
    for (day, svc), (events, nbytes, cost, micros) in groups.items():
        rid, first_us = firsts[(day, svc)]
        out.append(
            StreamDay(
                rid,
                day,
                source,
                svc,
                events,
                nbytes,
                cost,
                micros / MICROS_PER_HOUR,
                from_micros(first_us),
            )
        )
    out.sort(key=lambda d: d.service)
    out.sort(key=lambda d: d.date, reverse=True)
    return out
