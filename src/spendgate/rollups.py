"""Rollups: events summed by time bucket, service and source, as they are written.

Every figure users read (live metrics, summaries, series for trends and forecasts) comes from
these sums, never from a scan of the events, so a read costs the same at a thousand events as
at ten million. A `Tally` is one bucket's sums; tallies add up exactly (money and counts are
integers; quality and time are float sums, exact up to rounding).

Buckets come in three steps, a minute, an hour and a UTC day, each event counted once in
each. A read of any whole-minute range `[since, until)` is tiled by the coarsest buckets that
fit (`tiles()`): a month is a few dozen day and hour buckets per service and source, however
many events it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from spendgate.errors import CounterLimitError
from spendgate.events import Event
from spendgate.money import MAX_TOTAL, MAX_TOTAL_AMOUNT, Nanos, money_text
from spendgate.windows import from_micros, to_micros

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
STEPS = (DAY, HOUR, MINUTE)
"""Bucket lengths in microseconds, coarsest first."""


@dataclass(frozen=True, slots=True)
class Tally:
    """The sums of a set of events.

    `cost` sums priced events only (nano-units); `unpriced` counts the others, which are never
    booked as $0. `free_successes` counts successful events on free sources; `cached` counts
    events served with at least one cache hit, `cache_hits` sums the hits themselves;
    `batched_cost` is the cost of the `batched` events.
    """

    requests: int = 0
    cost: Nanos = 0
    unpriced: int = 0
    paid: int = 0
    successes: int = 0
    free_successes: int = 0
    cache_hits: int = 0
    cached: int = 0
    batched: int = 0
    batched_cost: Nanos = 0
    quality_sum: float = 0.0
    quality_count: int = 0
    time_sum: float = 0.0
    time_count: int = 0

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> Tally:
        """A tally from database sums in `TALLY_FIELDS` order (NULL sums are zero)."""
        values: list[Any] = [kind(v or 0) for kind, v in zip(_KINDS, row, strict=True)]
        return cls(*values)

    def __add__(self, other: Tally) -> Tally:
        # Spelled out: summaries add tallies by the dozen on every read.
        o = other
        return Tally(
            self.requests + o.requests,
            self.cost + o.cost,
            self.unpriced + o.unpriced,
            self.paid + o.paid,
            self.successes + o.successes,
            self.free_successes + o.free_successes,
            self.cache_hits + o.cache_hits,
            self.cached + o.cached,
            self.batched + o.batched,
            self.batched_cost + o.batched_cost,
            self.quality_sum + o.quality_sum,
            self.quality_count + o.quality_count,
            self.time_sum + o.time_sum,
            self.time_count + o.time_count,
        )

    # -- derived figures ----------------------------------------------------------------------

    @property
    def free(self) -> int:
        """Events on free sources."""
        return self.requests - self.paid

    @property
    def priced(self) -> int:
        """Events with a known cost (free ones included)."""
        return self.requests - self.unpriced

    @property
    def free_source_success_rate(self) -> float:
        """The share of requests answered, successfully, by a free source (0 with none)."""
        return _ratio(self.free_successes, self.requests)

    @property
    def success_rate(self) -> float:
        """The share of requests that succeeded."""
        return _ratio(self.successes, self.requests)

    @property
    def cache_hit_rate(self) -> float:
        """The share of requests served with at least one cache hit."""
        return _ratio(self.cached, self.requests)

    @property
    def cost_per_request(self) -> Nanos:
        """Average cost of a priced request (nano-units, rounded down; 0 with none)."""
        return self.cost // self.priced if self.priced else 0

    @property
    def average_quality(self) -> float | None:
        """Mean quality score of the events that gave one."""
        return self.quality_sum / self.quality_count if self.quality_count else None

    @property
    def average_processing_time(self) -> float | None:
        """Mean processing time (seconds) of the events that gave one."""
        return self.time_sum / self.time_count if self.time_count else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures, money as exact decimal strings."""
        return {
            "total_cost": money_text(self.cost),
            "total_requests": self.requests,
            "paid_requests": self.paid,
            "free_requests": self.free,
            "unpriced_requests": self.unpriced,
            "free_source_success_rate": self.free_source_success_rate,
            "success_rate": self.success_rate,
            "cache_hit_rate": self.cache_hit_rate,
            "cache_hits": self.cache_hits,
            "batched_requests": self.batched,
            "batched_cost": money_text(self.batched_cost),
            "average_cost_per_request": money_text(self.cost_per_request),
            "quality_metrics": {
                "average_quality_score": self.average_quality,
                "scored_requests": self.quality_count,
            },
            "performance_metrics": {
                "average_processing_time": self.average_processing_time,
                "timed_requests": self.time_count,
            },
        }


TALLY_FIELDS = tuple(f.name for f in fields(Tally))
"""The tally's sums, in the order of their database columns."""
_KINDS = tuple(float if f.type == "float" else int for f in fields(Tally))
EMPTY = Tally()

RollupKey = tuple[int, int, str, str]
"""(step, bucket start, service, source); step and bucket in microseconds."""

BOUNDED = ("cost", "cache_hits")
"""The sums an event adds more than one to: each bucket's is at most `MAX_TOTAL` (the cost in
nano-units, the hits as a count), so that a read summing buckets stays exact. The other
counts grow by one an event, and `batched_cost` is part of `cost`."""
_COST, _HITS = TALLY_FIELDS.index("cost"), TALLY_FIELDS.index("cache_hits")


def rollup_limit_error(key: Sequence[Any], name: str, adding: int) -> CounterLimitError:
    """The error of adding `adding` to the sum `name` (one of `BOUNDED`) of the rollup bucket
    `key` past `MAX_TOTAL`."""
    _, bucket, service, source = key[:4]
    money = name == "cost"
    return CounterLimitError(
        f"{name} of {service!r} on {source!r} in the day from "
        f"{from_micros(bucket - bucket % DAY).isoformat()} (its rollup)",
        money_text(adding) if money else str(adding),
        f"{MAX_TOTAL_AMOUNT:,} currency units" if money else f"{MAX_TOTAL:,}",
    )


def bounded_sums(sums: Sequence[Any]) -> tuple[int, int]:
    """The `BOUNDED` sums of a bucket's sums in `TALLY_FIELDS` order."""
    return sums[_COST], sums[_HITS]


def rollup_rows(written: Iterable[tuple[Event, Nanos | None]]) -> list[tuple[Any, ...]]:
    """What newly written events (each with the cost the store booked) add to the rollups:
    rows of `(step, bucket, service, source, *sums in TALLY_FIELDS order)`, one per bucket of
    each step. The batch is summed here first, so a write touches each bucket row once; this
    runs inside the store's write transaction, so it is kept to plain arithmetic.

    Raises `CounterLimitError` if the batch's own sums of a bucket pass `MAX_TOTAL`; the
    store refuses a sum that would pass it together with what is stored."""
    minutes: dict[tuple[int, str, str], list[Any]] = {}
    for event, cost in written:
        micros = to_micros(event.time)
        key = (micros - micros % MINUTE, event.service, event.source)
        sums = minutes.get(key)
        if sums is None:
            sums = minutes[key] = _no_sums()
        _add(sums, event, cost)
    rows: dict[RollupKey, list[Any]] = {}
    for (minute, service, source), sums in minutes.items():
        rows[(MINUTE, minute, service, source)] = sums
        for step in (HOUR, DAY):
            coarse_key = (step, minute - minute % step, service, source)
            coarse = rows.get(coarse_key)
            if coarse is None:
                rows[coarse_key] = list(sums)
            else:
                for i, v in enumerate(sums):
                    coarse[i] += v
    for bucket_key, sums in rows.items():
        # A day holds its hours and minutes: a batch whose days fit fits everywhere.
        if bucket_key[0] == DAY:
            for name, value in zip(BOUNDED, bounded_sums(sums), strict=True):
                if value > MAX_TOTAL:
                    raise rollup_limit_error(bucket_key, name, value)
    return [(*k, *sums) for k, sums in rows.items()]


def tally_of(written: Iterable[tuple[Event, Nanos | None]]) -> Tally:
    """The sums of events (each with the cost the store booked), as the rollups sum them."""
    sums = _no_sums()
    for event, cost in written:
        _add(sums, event, cost)
    return Tally(*sums)


def _no_sums() -> list[Any]:
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0.0, 0]


def _add(sums: list[Any], event: Event, cost: Nanos | None) -> None:
    """Add one event to sums in `TALLY_FIELDS` order."""
    sums[0] += 1
    if cost is None:
        sums[2] += 1
    else:
        sums[1] += cost
    if event.paid:
        sums[3] += 1
    if event.success:
        sums[4] += 1
        if not event.paid:
            sums[5] += 1
    if event.cache_hits:
        sums[6] += event.cache_hits
        sums[7] += 1
    if event.batch_processing:
        sums[8] += 1
        sums[9] += cost or 0
    if event.quality_score is not None:
        sums[10] += event.quality_score
        sums[11] += 1
    if event.processing_time is not None:
        sums[12] += event.processing_time
        sums[13] += 1


def floor_minute(micros: int) -> int:
    """The start of the minute containing `micros`."""
    return micros - micros % MINUTE


def ceil_minute(micros: int) -> int:
    """The first minute boundary at or after `micros`."""
    return -(-micros // MINUTE) * MINUTE


def tiles(since: int, until: int) -> list[tuple[int, int, int]]:
    """`[since, until)` tiled by whole buckets, coarsest that fit: `(step, first, end)` each.

    `since` is rounded down and `until` up to whole minutes (a rollup read has minute
    resolution). At most five tiles: minutes and hours at each edge, days in the middle.
    """
    out: list[tuple[int, int, int]] = []
    _tile(floor_minute(since), ceil_minute(until), 0, out)
    return out


def _tile(lo: int, hi: int, level: int, out: list[tuple[int, int, int]]) -> None:
    if lo >= hi:
        return
    step = STEPS[level]
    first, end = -(-lo // step) * step, hi // step * step
    if first >= end:
        _tile(lo, hi, level + 1, out)
        return
    _tile(lo, first, level + 1, out)
    out.append((step, first, end))
    _tile(end, hi, level + 1, out)


def merge(rows: Iterable[tuple[Any, Tally]]) -> dict[Any, Tally]:
    """Sum tallies by key."""
    out: dict[Any, Tally] = {}
    for key, tally in rows:
        found = out.get(key)
        out[key] = tally if found is None else found + tally
    return out


def total(tallies: Iterable[Tally] | Mapping[Any, Tally]) -> Tally:
    """The sum of tallies (an empty tally for none)."""
    values = tallies.values() if isinstance(tallies, Mapping) else tallies
    out = EMPTY
    for t in values:
        out = out + t
    return out


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
