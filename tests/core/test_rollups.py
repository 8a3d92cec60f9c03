"""Rollups: every figure read from them equals the same figure computed from the raw events,
on random data, on every backend; retries are not counted twice; tiling is exact."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from spendgate import Gate
from spendgate.errors import ValidationError
from spendgate.events import Event
from spendgate.rollups import DAY, HOUR, MINUTE, Tally, ceil_minute, floor_minute, merge, tiles
from spendgate.store import migrate
from spendgate.store.base import Store
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.conftest import small_config

START = datetime(2026, 11, 2, 21, 37, 12, tzinfo=UTC)
DAY_DELTA = timedelta(days=1)
SERVICES = ("scraper", "enrichment", "image_processor")
SOURCES = ("paid_api", "free_api", "legacy")  # legacy is unpriced


@given(
    since=st.integers(0, 40 * DAY),
    length=st.integers(0, 40 * DAY),
)
def test_tiles_cover_the_range_exactly_with_whole_buckets(since: int, length: int) -> None:
    until = since + length
    pieces = tiles(since, until)
    assert len(pieces) <= 5
    at = floor_minute(since)
    for step, first, end in pieces:
        assert first == at, "pieces are contiguous"
        assert first % step == 0
        assert end % step == 0
        assert first < end
        at = end
    # Together the pieces cover exactly the whole minutes from since to until.
    assert at == max(ceil_minute(until), floor_minute(since))
    assert bool(pieces) == (ceil_minute(until) > floor_minute(since))


def test_a_month_in_a_zone_off_utc_is_days_in_the_middle_and_hours_at_the_edges() -> None:
    since = to_micros(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # New York midnight (EDT)
    until = to_micros(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))  # New York midnight (EST)
    assert [p[0] for p in tiles(since, until)] == [HOUR, DAY, HOUR]


def expected(events: list[Event], since: int, until: int) -> dict[tuple[str, str], Tally]:
    """The figures computed straight from raw events, without any rollup code."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    lo, hi = floor_minute(since), ceil_minute(until)
    for e in events:
        if not lo <= to_micros(e.time) < hi:
            continue
        f = out.setdefault((e.service, e.source), dict.fromkeys(Tally.__dataclass_fields__, 0))
        f["requests"] += 1
        if e.cost is None:
            f["unpriced"] += 1
        else:
            f["cost"] += e.cost
        f["paid"] += e.paid
        f["successes"] += e.success
        f["free_successes"] += e.success and not e.paid
        f["cache_hits"] += e.cache_hits
        f["cached"] += e.cache_hits > 0
        f["batched"] += e.batch_processing
        f["batched_cost"] += (e.cost or 0) if e.batch_processing else 0
        if e.quality_score is not None:
            f["quality_sum"] += e.quality_score
            f["quality_count"] += 1
        if e.processing_time is not None:
            f["time_sum"] += e.processing_time
            f["time_count"] += 1
    return {k: Tally(**f) for k, f in out.items()}  # type: ignore[arg-type]


def assert_same(got: dict[tuple[str, str], Tally], want: dict[tuple[str, str], Tally]) -> None:
    assert got.keys() == want.keys()
    for key, tally in want.items():
        g = got[key]
        for name in Tally.__dataclass_fields__:
            a, b = getattr(g, name), getattr(tally, name)
            if isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (key, name)
            else:
                assert a == b, (key, name, a, b)


def random_event(rng: random.Random, at: datetime) -> dict[str, object]:
    source = rng.choice(SOURCES)
    details: dict[str, object] = {
        "success": rng.random() < 0.85,
        "cache_hits": rng.choice((0, 0, 0, 1, 3)),
        "batch_processing": rng.random() < 0.2,
    }
    if rng.random() < 0.7:
        details["quality_score"] = round(rng.uniform(0, 1), 3)
    if rng.random() < 0.6:
        details["processing_time"] = rng.uniform(0, 5)
    if source == "paid_api" and rng.random() < 0.5:
        details["cost"] = f"0.{rng.randrange(1, 10**6):06d}"
    return {"service": rng.choice(SERVICES), "source": source, "time": at, **details}


@pytest.fixture
def filled(store_url: str) -> Iterator[tuple[Gate, list[Event]]]:
    """A gate holding 600 random events over five days, written by every path: single
    records, batches with retries, and reserve/commit."""
    clock = FrozenClock(START - DAY_DELTA)
    gate = Gate.open(store_url, config=small_config("100000"), clock=clock)
    rng = random.Random(20261123)
    events: list[dict[str, object]] = []
    for _ in range(600):
        at = START + timedelta(seconds=rng.randrange(5 * 86400))
        events.append(random_event(rng, at))
    ids = [f"r{i}" for i in range(len(events))]
    for i in sorted(range(500, 600), key=lambda i: str(events[i]["time"])):
        e = dict(events[i])
        e.pop("cost", None)
        e.pop("source")
        clock.set(e.pop("time"))  # type: ignore[arg-type]
        r = gate.reserve(e.pop("service"), "paid_api", "0.05")  # type: ignore[arg-type]
        assert r.reservation_id is not None
        gate.commit(r.reservation_id, f"0.0{rng.randrange(1, 9)}", request_id=ids[i], **e)
    # The rest are recorded late, once the five days are over (no event may be dated ahead
    # of the clock), each into the rollups of its own minute, hour and day.
    clock.set(START + 5 * DAY_DELTA)
    for i in range(0, 200):
        gate.record(request_id=ids[i], **events[i])  # type: ignore[arg-type]
    batch = [{"request_id": ids[i], **events[i]} for i in range(200, 500)]
    gate.record_many(batch)
    gate.record_many(batch[:50])  # retries: `exists`, counted once
    gate.record(request_id=ids[0], **events[0])  # type: ignore[arg-type]
    yield gate, gate.events()
    gate.close()


def test_rollups_equal_the_raw_events_on_random_spans(
    filled: tuple[Gate, list[Event]],
) -> None:
    gate, events = filled
    assert len(events) == 600
    rng = random.Random(7)
    base = to_micros(START) - DAY
    spans = [(base, base + 8 * DAY)]  # everything
    for _ in range(40):
        since = base + rng.randrange(7 * DAY)
        spans.append((since, since + rng.choice((MINUTE, HOUR, 5 * HOUR, DAY, 3 * DAY + 7))))
    rows = gate.store.tallies(spans)
    for i, (since, until) in enumerate(spans):
        got = {(sv, so): t for j, sv, so, t in rows if j == i}
        assert_same(got, expected(events, since, until))


def test_the_whole_store_in_one_span_counts_every_event_once(
    filled: tuple[Gate, list[Event]],
) -> None:
    gate, events = filled
    rows = gate.store.tallies([(0, to_micros(START) + 30 * DAY)])
    grand = merge(((), t) for _, _, _, t in rows)[()]
    assert grand.requests == 600
    assert grand.cost == sum(e.cost or 0 for e in events)
    assert grand.unpriced == sum(e.cost is None for e in events) > 0


def test_an_empty_store_reads_no_rows(store: Store) -> None:
    assert store.tallies([(0, DAY)]) == []
    assert store.tallies([]) == []


def test_too_many_spans_in_one_read_is_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="spans"):
        store.tallies([(0, MINUTE)] * 5000)


def test_derived_figures() -> None:
    t = Tally(requests=4, cost=3_000_000_000, unpriced=1, paid=2, successes=3, free_successes=2)
    assert t.free == 2
    assert t.priced == 3
    assert t.cost_per_request == 1_000_000_000
    assert t.free_source_success_rate == 0.5
    assert Tally().cost_per_request == 0
    assert Tally().free_source_success_rate == 0.0
    assert Tally().average_quality is None
    assert (t + t).requests == 8


FIRST_TABLES = {"budget_buckets", "reservations", "events", "quota_usage", "alembic_version"}
"""The tables of migration 0001, the schema before rollups."""


def test_upgrading_a_database_with_history_rolls_its_events_up(tmp_path: Path) -> None:
    """Migration 0002 sums the events already stored, so old history shows."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    gate = Gate.open(url, config=small_config("1000"))
    rng = random.Random(3)
    gate.record_many(
        [
            {"request_id": f"o{i}", **random_event(rng, START + timedelta(minutes=37 * i))}
            for i in range(300)
        ]
    )
    events = gate.events()
    gate.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # back to the schema before rollups existed
        # Every table a later migration made goes (whichever migrations come after 0001).
        for view in sa.inspect(conn).get_view_names():  # the views 0009 made over events
            conn.execute(sa.text(f"DROP VIEW {view}"))
        for later in set(sa.inspect(conn).get_table_names()) - FIRST_TABLES:
            conn.execute(sa.text(f"DROP TABLE {later}"))
        # And the column 0008 added to events (with its index).
        conn.execute(sa.text("DROP INDEX ix_events_located"))
        conn.execute(sa.text("ALTER TABLE events DROP COLUMN location"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    migrate.upgrade(f"sqlite:///{path}")
    gate = Gate.open(url, config=small_config("1000"))
    try:
        span = (to_micros(START) - HOUR, to_micros(START) + 10 * DAY)
        got = {(sv, so): t for _, sv, so, t in gate.store.tallies([span])}
        assert_same(got, expected(events, *span))
    finally:
        gate.close()
