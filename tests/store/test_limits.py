"""What a store cannot hold is refused at the edge, one bad write never fails another's, and
no stored total can overflow: on every backend (see `conftest.BACKENDS`), through the gate,
the group committer and the HTTP API.

Text with NUL or a lone surrogate is refused by the gate with a `ValidationError` naming the
field (422 over HTTP) before anything is queued. A row the database still refuses is the
writer's own `UnstorableError`; a total that would pass `MAX_TOTAL` is a `CounterLimitError`.
Either fails only the caller whose item carries it: the group committer writes the others
again without it.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from spendgate import Gate
from spendgate.accounting import QuotaUse, Slot
from spendgate.errors import (
    CounterLimitError,
    StoreError,
    UnstorableError,
    ValidationError,
)
from spendgate.events import Event, RecordResult, fingerprint
from spendgate.money import MAX_NANOS, MAX_TOTAL, to_nanos
from spendgate.pricing import Price
from spendgate.rollups import DAY
from spendgate.store.base import Balance, Draw, EventWrite, ReservationWrite, Store
from spendgate.store.batching import GroupCommitter
from spendgate.testing import FrozenClock
from spendgate.windows import Window, to_micros
from tests.conftest import small_config
from tests.serving import app_for, bearer, make_keys, running

T0 = 1_700_000_000_000_000  # µs
WHEN = datetime(2026, 1, 5, tzinfo=UTC)
MAX = str(MAX_NANOS // 10**9)  # the largest amount one call may cost, as text: "10000000"
BAD_TEXT = ("a\x00b", "a\ud800b", "\udfff")


def slot(cap: int | None = None, bucket: int = T0, span: int | None = None) -> Slot:
    return Slot("b", bucket, bucket if span is None else span, cap)


def event(
    rid: str, cost: int | None, *, service: str = "svc", when: datetime = WHEN, **fields: Any
) -> Event:
    return Event(rid, when, service, "src", cost, fingerprint(rid, cost), **fields)


def fill(store: Store, total: int, slots: Sequence[Slot] = (), *, prefix: str = "fill") -> None:
    """Bring `slots` to `total` with maximal events, each of its own service (so that no
    rollup sum nears the bound), in one batch."""
    writes = []
    left, i = total, 0
    while left:
        cost = min(left, MAX_NANOS)
        writes.append(EventWrite(event(f"{prefix}{i}", cost, service=f"s{i}"), tuple(slots)))
        left -= cost
        i += 1
    store.record(writes)


def column_types(path: str) -> set[str]:
    """SQLite's storage classes of every budget counter in the file."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT typeof(spent), typeof(reserved), typeof(overshoot) FROM budget_buckets"
        ).fetchall()
    return {t for row in rows for t in row}


def assert_exact(store_url: str, store: Store, s: Slot, expected: Balance) -> None:
    """The slot holds exactly `expected`, as integers (SQLite: stored as INTEGER, never
    turned into a float)."""
    got = store.balance(s)
    assert got == expected
    assert all(type(v) is int for v in (got.spent, got.reserved, got.overshoot))
    if store_url.startswith("sqlite"):
        assert column_types(store_url.removeprefix("sqlite:///")) == {"integer"}


# -- text no backend can store ----------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_TEXT, ids=["nul", "surrogate", "low-surrogate"])
@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("failure_reason", lambda bad: {"success": False, "failure_reason": bad}),
        ("labels.customer", lambda bad: {"labels": {"customer": bad}}),
        ("labels", lambda bad: {"labels": {bad: "x"}}),
        ("request_id", lambda bad: {"request_id": bad}),
        ("sources_used", lambda bad: {"sources_used": ["ok", bad]}),
        ("fallbacks_triggered.reason", lambda bad: {"fallbacks_triggered": [("osm", bad)]}),
        ("fallbacks_triggered.source", lambda bad: {"fallbacks_triggered": [(bad, "down")]}),
        ("units", lambda bad: {"units": {bad: 1}}),
    ],
)
def test_record_refuses_unstorable_text_naming_the_field(
    gate: Gate, bad: str, field: str, arguments: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        gate.record("scraper", "free_api", **arguments(bad))
    assert caught.value.field == field
    assert caught.value.value == bad or bad in repr(caught.value.value)
    assert gate.events() == []


@pytest.mark.parametrize("bad", BAD_TEXT[:2], ids=["nul", "surrogate"])
def test_every_text_of_a_call_is_checked_before_anything_is_held(gate: Gate, bad: str) -> None:
    with pytest.raises(ValidationError, match="service"):
        gate.record(bad, "free_api")
    with pytest.raises(ValidationError, match="source"):
        gate.authorize("scraper", bad)
    with pytest.raises(ValidationError, match=r"labels\.k"):
        gate.authorize("scraper", "paid_api", labels={"k": bad})
    with pytest.raises(ValidationError, match=r"labels\.k"):
        gate.reserve("scraper", "paid_api", labels={"k": bad})
    with pytest.raises(ValidationError, match="reservation_id"):
        gate.reserve("scraper", "paid_api", reservation_id=bad)
    decision = gate.reserve("scraper", "paid_api")
    assert decision.reservation_id is not None
    with pytest.raises(ValidationError, match="failure_reason"):
        gate.commit(decision.reservation_id, success=False, failure_reason=bad)
    with pytest.raises(ValidationError, match="request_id"):
        gate.commit(decision.reservation_id, request_id=bad)
    # Refused before the store: the hold is still there, and commits once asked properly.
    assert gate.commit(decision.reservation_id, failure_reason="timeout").cost == to_nanos("0.01")
    assert [e.failure_reason for e in gate.events()] == ["timeout"]


def test_concurrent_callers_keep_their_events_when_one_sends_bad_text(
    store_url: str, clock: FrozenClock
) -> None:
    """Sixteen threads record at once through the gate's group commit (SQLite, PostgreSQL;
    the memory store writes directly); two send text no backend can store. Those two get a
    ValidationError; every other event is stored, whatever batches the threads shared."""
    bad = {5: "reason\x00", 11: "reason\ud800"}
    outcomes: dict[int, object] = {}
    start = threading.Barrier(16)
    with Gate.open(store_url, config=small_config(limit="100"), clock=clock) as gate:

        def call(i: int) -> None:
            start.wait(timeout=30)
            try:
                outcomes[i] = gate.record(
                    f"service{i % 4}",
                    "paid_api",
                    request_id=f"e{i}",
                    success=False,
                    failure_reason=bad.get(i, "timeout"),
                )
            except Exception as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        for i, outcome in outcomes.items():
            if i in bad:
                assert isinstance(outcome, ValidationError), outcome
                assert outcome.field == "failure_reason"
            else:
                assert isinstance(outcome, RecordResult), outcome
                assert outcome.status == "created"
        assert sorted(e.request_id for e in gate.events()) == sorted(
            f"e{i}" for i in range(16) if i not in bad
        )
        assert gate.status()[0].balance.spent == 14 * to_nanos("0.01")


class Gated:
    """`store.record` whose first call waits until the test opens it, so that everything
    submitted meanwhile lands, as separate callers, in the next batch; it counts the
    batches written and their sizes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.open = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, writes: list[EventWrite]) -> list[RecordResult]:
        self.sizes.append(len(writes))
        if len(self.sizes) == 1:
            assert self.open.wait(timeout=60)
        return self.store.record(writes)


def one_batch(gated: Gated, first: EventWrite, rest: Sequence[EventWrite]) -> list[object]:
    """Submit `first` (which the writer takes alone and holds), then every write of `rest`
    from its own asyncio task: each task queues its write when it first runs, so after one
    turn of the loop they all wait in one batch. Then open the writer; each caller's result
    or error."""
    committer: GroupCommitter[EventWrite, RecordResult] = GroupCommitter(gated)
    try:

        async def main() -> list[object]:
            head = asyncio.ensure_future(committer.asubmit(first))
            while not gated.sizes:  # the writer has taken `first` and waits
                await asyncio.sleep(0.001)
            tasks = [asyncio.ensure_future(committer.asubmit(w)) for w in rest]
            await asyncio.sleep(0)  # every task runs to its first await: all are queued
            gated.open.set()
            results = await asyncio.wait_for(
                asyncio.gather(head, *tasks, return_exceptions=True), timeout=60
            )
            return list(results[1:])

        return asyncio.run(main())
    finally:
        committer.close()


def test_a_row_the_database_refuses_fails_only_its_caller(store: Store, store_url: str) -> None:
    """Past the gate's checks (an `EventWrite` made by hand), a value the database cannot
    store: PostgreSQL refuses NUL in text, SQLite cannot encode a lone surrogate. The batch
    it shares with 31 other callers fails; the committer writes it again in halves, and
    only its caller gets the error."""
    if store_url.startswith("memory"):
        pytest.skip("the memory store keeps any Python string")
    bad_text = "x\x00y" if store_url.startswith("postgres") else "x\ud800y"
    gated = Gated(store)
    rest = [
        EventWrite(event(f"e{i}", 1_000, failure_reason=bad_text if i == 20 else "ok"), (slot(),))
        for i in range(32)
    ]
    results = one_batch(gated, EventWrite(event("first", 1_000), (slot(),)), rest)
    assert gated.sizes[:2] == [1, 32]  # the 32 callers shared one batch, which failed
    # Halving finds the one caller in about 2 * log2(32) writes, not 32.
    assert len(gated.sizes) <= 2 + 2 * math.ceil(math.log2(32))
    for i, result in enumerate(results):
        if i == 20:
            assert isinstance(result, UnstorableError), result
            assert isinstance(result, ValidationError)  # 422 over HTTP, never retried
            assert "e20" in str(result)
        else:
            assert isinstance(result, RecordResult), result
            assert result.status == "created"
    stored = {e.request_id for e in store.events()}
    assert stored == {"first"} | {f"e{i}" for i in range(32) if i != 20}
    assert store.balance(slot()).spent == 32 * 1_000  # each counted once, the bad one never


def test_a_batch_where_one_event_would_overflow_commits_the_others(
    store: Store, store_url: str
) -> None:
    fill(store, MAX_TOTAL - 5 * 10**15, (slot(cap=1_000),))
    gated = Gated(store)
    rest = [
        EventWrite(
            event(f"e{i}", MAX_NANOS if i == 7 else 1_000, service=f"t{i}"), (slot(cap=1_000),)
        )
        for i in range(12)
    ]
    results = one_batch(gated, EventWrite(event("first", 1_000, service="t"), (slot(1_000),)), rest)
    assert gated.sizes[:2] == [1, 12]
    for i, result in enumerate(results):
        if i == 7:
            assert isinstance(result, CounterLimitError), result
            assert "budget 'b'" in str(result)
            assert "1,000,000,000" in str(result)
        else:
            assert isinstance(result, RecordResult), result
            assert result.status == "created"
    assert store.event("e7") is None
    spent = MAX_TOTAL - 5 * 10**15 + 12 * 1_000
    assert_exact(store_url, store, slot(), Balance(spent, 0, spent - 1_000))


def test_an_overflow_among_threads_fails_only_that_thread(
    store_url: str, clock: FrozenClock
) -> None:
    """The realistic shape: threads recording through the gate, batched as they come."""
    with Gate.open(store_url, config=small_config(limit="100"), clock=clock) as gate:
        gate.record_many(
            [{"service": f"s{i}", "source": "paid_api", "cost": MAX} for i in range(99)]
        )
        outcomes: dict[int, object] = {}
        start = threading.Barrier(12)

        def call(i: int) -> None:
            start.wait(timeout=30)
            cost = MAX if i == 3 else "0.5"
            try:
                outcomes[i] = gate.record(f"t{i}", "paid_api", cost=cost, request_id=f"e{i}")
            except Exception as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert isinstance(outcomes.pop(3), CounterLimitError)
        assert all(isinstance(o, RecordResult) and o.created for o in outcomes.values())
        assert gate.event("e3") is None
        assert gate.status()[0].balance.spent == 99 * MAX_NANOS + 11 * to_nanos("0.5")


# -- every total bounded --------------------------------------------------------------------


def test_a_capped_budget_driven_to_the_bound_refuses_exactly_past_it(
    store: Store, store_url: str
) -> None:
    """Spend recorded past a cap is booked as overshoot, so it can grow without end: up to
    `MAX_TOTAL` exactly, and not one nano-unit further; nothing of a refused write stays."""
    s = slot(cap=1_000)
    fill(store, MAX_TOTAL, (s,))  # 100 maximal events, one transaction
    assert_exact(store_url, store, s, Balance(MAX_TOTAL, 0, MAX_TOTAL - 1_000))
    for cost in (1, MAX_NANOS):
        with pytest.raises(CounterLimitError) as caught:
            store.record([EventWrite(event("over", cost, service="new"), (s,))])
        assert caught.value.counter == "budget 'b' usage (spent + reserved) in its window"
        assert caught.value.bound == "1,000,000,000 currency units"
        assert_exact(store_url, store, s, Balance(MAX_TOTAL, 0, MAX_TOTAL - 1_000))
        assert store.event("over") is None
        day = to_micros(WHEN)
        assert "new" not in {service for _, service, _, _ in store.tallies([(day, day + DAY)])}
    # A free event still goes in: the bound is on what is added, not on the budget.
    assert store.record([EventWrite(event("free", 0, service="new"), (s,))])[0].created


def test_an_uncapped_budget_is_bounded_too(store: Store, store_url: str) -> None:
    fill(store, MAX_TOTAL - 1, (slot(),))
    store.record([EventWrite(event("last", 1, service="x"), (slot(),))])
    with pytest.raises(CounterLimitError):
        store.record([EventWrite(event("over", 1, service="y"), (slot(),))])
    assert_exact(store_url, store, slot(), Balance(MAX_TOTAL, 0, 0))


def test_a_rolling_window_is_bounded_over_its_buckets(store: Store) -> None:
    """Each bucket row stays small; the window's sum is what reaches the bound."""
    minute = 60_000_000
    for i in range(100):  # one maximal event in each of 100 one-minute buckets
        s = slot(bucket=T0 + i * minute, span=T0)
        store.record([EventWrite(event(f"m{i}", MAX_NANOS, service=f"s{i}"), (s,))])
    last = slot(bucket=T0 + 100 * minute, span=T0)
    with pytest.raises(CounterLimitError):
        store.record([EventWrite(event("over", 1, service="x"), (last,))])
    with pytest.raises(CounterLimitError):
        store.reserve(ReservationWrite("r", "fp", (last,), 1, T0, T0 + 10**9, "x", "src"), T0)
    assert store.balance(last) == Balance(MAX_TOTAL, 0, 0)
    assert store.reservation("r") is None
    moved = slot(bucket=T0 + 101 * minute, span=T0 + minute)  # the first bucket aged out
    assert store.record([EventWrite(event("fits", MAX_NANOS, service="y"), (moved,))])[0].created


def test_holds_and_commits_are_bounded(store: Store, store_url: str) -> None:
    """A hold on a budget without a cap stops at the bound with the error (a capped one is
    denied by its cap long before); a commit whose actual would carry usage past the bound
    is refused and leaves the hold as it was, to be committed or released."""
    fill(store, MAX_TOTAL - MAX_NANOS, (slot(),))
    held = ReservationWrite("r1", "fp1", (slot(),), MAX_NANOS, T0, T0 + 10**9, "svc", "src")
    assert store.reserve(held, T0).status == "created"
    assert_exact(store_url, store, slot(), Balance(MAX_TOTAL - MAX_NANOS, MAX_NANOS, 0))
    more = ReservationWrite("r2", "fp2", (slot(),), 1, T0, T0 + 10**9, "svc", "src")
    with pytest.raises(CounterLimitError):
        store.reserve(more, T0)
    assert store.reservation("r2") is None
    capped = slot(cap=10**12)
    assert store.reserve(replace(more, slots=(capped,)), T0).status == "denied"
    over = EventWrite(event("r1", MAX_NANOS + 1, service="z"), (slot(),))
    with pytest.raises(CounterLimitError):
        store.commit("r1", over, T0)
    info = store.reservation("r1")
    assert info is not None
    assert info.state == "pending"
    assert store.event("r1") is None
    assert_exact(store_url, store, slot(), Balance(MAX_TOTAL - MAX_NANOS, MAX_NANOS, 0))
    done = store.commit("r1", replace(over, event=event("r1", MAX_NANOS, service="z")), T0)
    assert done.overshoot == 0
    assert_exact(store_url, store, slot(), Balance(MAX_TOTAL, 0, 0))


def test_a_draw_from_a_lease_is_bounded(store: Store, store_url: str) -> None:
    """A call held in a lease settles in its event's transaction: an actual above what it
    held that would pass the bound is refused, and the lease keeps its amount."""
    lease = ReservationWrite("lease", "fpl", (slot(),), 10**9, T0, T0 + 10**9, "svc", "src")
    assert store.reserve(lease, T0).status == "created"
    fill(store, MAX_TOTAL - 10**9, (slot(),))
    draw = Draw(("lease",), 10**6)
    over = EventWrite(event("d1", 10**9 + 1, service="x"), (slot(),), draw=draw)
    with pytest.raises(CounterLimitError):
        store.record([over])
    info = store.reservation("lease")
    assert info is not None
    assert info.amount == 10**9
    assert store.event("d1") is None
    assert_exact(store_url, store, slot(), Balance(MAX_TOTAL - 10**9, 10**9, 0))
    fits = replace(over, event=event("d1", 10**6, service="x"))
    assert store.record([fits])[0].created


def test_rollup_sums_are_bounded_without_any_budget(store: Store) -> None:
    """The day's cost of one service on one source is a stored total of its own."""
    store.record([EventWrite(event(f"r{i}", MAX_NANOS)) for i in range(100)])
    with pytest.raises(CounterLimitError) as caught:
        store.record([EventWrite(event("over", 1))])
    assert caught.value.counter.startswith("cost of 'svc' on 'src' in the day from 2026-01-05")
    assert store.event("over") is None
    day = to_micros(WHEN)
    [(_, _, _, tally)] = store.tallies([(day, day + DAY)])
    assert tally.cost == MAX_TOTAL
    assert tally.requests == 100


def test_cache_hits_are_bounded(store: Store, store_url: str) -> None:
    """The gate takes at most 1e9 hits an event, so a day's sum reaches the bound only past
    a billion events; events made by hand get there in two. PostgreSQL keeps an event's hits
    in 32 bits and refuses such an event itself: the writer's own error, not a store outage."""
    hits = [EventWrite(event(f"h{i}", 0, cache_hits=5 * 10**17)) for i in range(2)]
    if store_url.startswith("postgres"):
        with pytest.raises(UnstorableError, match="out of range"):
            store.record(hits)
        return
    store.record(hits)
    with pytest.raises(CounterLimitError) as caught:
        store.record([EventWrite(event("h2", 0, cache_hits=1))])
    assert caught.value.counter.startswith("cache_hits of 'svc'")
    assert store.event("h2") is None
    day = to_micros(WHEN)
    [(_, _, _, tally)] = store.tallies([(day, day + DAY)])
    assert tally.cache_hits == MAX_TOTAL


def test_a_read_over_many_full_days_stays_exact(store: Store) -> None:
    """Ten days at the bound sum to 1e19 nano-units, past 64 bits: still exact (SQLite's
    SUM would stop with "integer overflow"; the store reads the sums in two parts)."""
    for d in range(10):
        when = WHEN + timedelta(days=d)
        store.record([EventWrite(event(f"d{d}-{i}", MAX_NANOS, when=when)) for i in range(100)])
    day = to_micros(WHEN)
    [(_, _, _, tally)] = store.tallies([(day, day + 10 * DAY)])
    assert tally.cost == 10 * MAX_TOTAL
    assert type(tally.cost) is int
    assert tally.requests == 1000


def test_quota_counters_are_bounded_and_exact(store: Store) -> None:
    price = Price.parse("geo", None, tiers={"MB": [{"price": "0"}]}, period=Window("month"))

    def write(rid: str, quantity: str) -> EventWrite:
        q = Decimal(quantity)
        return EventWrite(
            event(rid, None, units={"MB": q}), (), price, (QuotaUse("geo", "MB", 0, q),)
        )

    assert store.record([write("q1", "600000000000000000")])[0].created
    with pytest.raises(CounterLimitError, match="quota counter of 'geo' unit 'MB'"):
        store.record([write("q2", "400000000000000000.5")])
    with pytest.raises(CounterLimitError):  # exact only within 40 digits: refused, not rounded
        store.record([write("q3", "0." + "0" * 30 + "1")])
    assert store.event("q2") is None
    assert store.event("q3") is None
    assert store.record([write("q4", "400000000000000000")])[0].created


# -- the group committer --------------------------------------------------------------------


def test_the_committer_halves_a_failed_batch_down_to_the_failing_callers() -> None:
    """Any number of callers; those whose item fails get their own error, the rest their
    result, in about 2 log2(n) writes per failing caller; a caller's several items (one
    `submit_many`) stand or fall together."""
    calls: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            assert release.wait(timeout=60)
        if any(i < 0 for i in items):
            raise ValueError(f"negative in {items}")
        return [i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(write)

    async def main() -> list[object]:
        first = asyncio.ensure_future(committer.asubmit(1000))
        while not calls:
            await asyncio.sleep(0.001)
        items = [-1 if i in (9, 40) else i for i in range(64)]
        tasks = [asyncio.ensure_future(committer.asubmit(i)) for i in items]
        await asyncio.sleep(0)
        release.set()
        done = await asyncio.gather(first, *tasks, return_exceptions=True)
        return list(done[1:])

    try:
        results = asyncio.run(main())
        assert [len(c) for c in calls[:2]] == [1, 64]
        assert len(calls) <= 2 + 2 * 2 * math.ceil(math.log2(64))
        for i, result in enumerate(results):
            if i in (9, 40):
                assert isinstance(result, ValueError)
                assert "negative in [-1]" in str(result)
            else:
                assert result == i * 10
        # Every item reached a successful write exactly once.
        written = [i for c in calls[1:] if all(x >= 0 for x in c) for i in c]
        assert sorted(written) == sorted(i for i in range(64) if i not in (9, 40))

        # A caller's items stay together: one bad item fails its whole submit_many.
        calls.clear()
        with pytest.raises(ValueError, match=r"negative in \[1, 2, -3\]"):
            committer.submit_many([1, 2, -3])
        assert committer.submit_many([4, 5]) == [40, 50]
    finally:
        release.set()
        committer.close()


def test_the_committer_does_not_retry_once_the_store_fails() -> None:
    """A `StoreError` is the store itself failing: whoever is left gets it untried."""
    calls: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            assert release.wait(timeout=60)
            return [0]
        if len(calls) == 2:
            raise ValueError("one bad item somewhere")
        raise StoreError("the store went away")

    committer: GroupCommitter[int, int] = GroupCommitter(write)

    async def main() -> list[object]:
        first = asyncio.ensure_future(committer.asubmit(0))
        while not calls:
            await asyncio.sleep(0.001)
        tasks = [asyncio.ensure_future(committer.asubmit(i)) for i in range(1, 33)]
        await asyncio.sleep(0)
        release.set()
        done = await asyncio.gather(first, *tasks, return_exceptions=True)
        return list(done[1:])

    try:
        results = asyncio.run(main())
        assert len(calls) == 3  # the batch, its first half, and no more
        assert all(isinstance(r, StoreError) for r in results)
    finally:
        release.set()
        committer.close()


def test_one_bad_item_does_not_fail_the_rest_of_its_batch() -> None:
    gate_open = threading.Event()

    def write(items: list[int]) -> list[int]:
        gate_open.wait()
        if 13 in items:
            raise OverflowError("13 does not fit")
        return [i * 2 for i in items]

    writer: GroupCommitter[int, int] = GroupCommitter(write)
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            results[i] = writer.submit(i)
        except OverflowError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in (1, 13, 2, 3)]
    for t in threads:
        t.start()
    gate_open.set()
    for t in threads:
        t.join()
    writer.close()
    assert isinstance(results[13], OverflowError)
    assert {i: results[i] for i in (1, 2, 3)} == {1: 2, 2: 4, 3: 6}


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def served(store_url: str, clock: FrozenClock) -> Iterator[tuple[Gate, str, dict[str, str]]]:
    """A real uvicorn serving a gate on each backend; the gate, the base URL, write headers."""
    with Gate.open(store_url, config=small_config(limit="100"), clock=clock) as gate:
        keys = make_keys(gate)
        with running(app_for(gate)) as base:
            yield gate, base, bearer(keys.write)


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'"failure_reason": "a\\u0000b"', "failure_reason"),
        (b'"failure_reason": "a\\ud800b"', "failure_reason"),
        (b'"failure_reason": "a\xed\xa0\x80b"', "failure_reason"),  # a surrogate's raw bytes
        (b'"labels": {"customer": "\\udfff"}', "labels.customer"),
        (b'"fallbacks_triggered": [["osm", "\\u0000"]]', "fallbacks_triggered.reason"),
    ],
    ids=["nul", "surrogate-escape", "surrogate-bytes", "label", "fallback"],
)
def test_http_refuses_unstorable_text_with_422_naming_the_field(
    served: tuple[Gate, str, dict[str, str]], raw: bytes, field: str
) -> None:
    """A single POST (which the fast path sees first: a Bearer key, a JSON body with a
    length) and the same event in a batch: 422 naming the field, nothing written."""
    gate, base, headers = served
    one = b'{"service": "scraper", "source": "paid_api", "success": false, ' + raw + b"}"
    json_headers = {**headers, "content-type": "application/json"}
    with httpx.Client(base_url=base, timeout=30) as client:
        body = problem(client.post("/api/events", content=one, headers=json_headers))
        assert body["errors"][0]["field"] == field
        good = b'{"service": "scraper", "source": "paid_api"}'
        batch = b'{"events": [' + good + b", " + one + b"]}"
        body = problem(client.post("/api/events/batch", content=batch, headers=json_headers))
        assert body["errors"][0]["field"] == f"events[1].{field}"
        assert gate.events() == []
        # The same routes still take good events at once (the fast path answers 201).
        assert client.post("/api/events", content=good, headers=json_headers).status_code == 201
        beat = client.post("/api/heartbeats", json={"service": "a\x00"}, headers=headers)
        assert problem(beat)["errors"][0]["field"] == "service"
    assert len(gate.events()) == 1


def test_http_refuses_an_event_past_a_bound_with_422(
    served: tuple[Gate, str, dict[str, str]],
) -> None:
    gate, base, headers = served
    gate.record_many([{"service": f"s{i}", "source": "paid_api", "cost": MAX} for i in range(100)])
    with httpx.Client(base_url=base, timeout=30) as client:
        over = {"service": "scraper", "source": "paid_api", "cost": "0.000000001"}
        body = problem(client.post("/api/events", json=over, headers=headers))
        assert "budget 'daily' usage" in body["errors"][0]["field"]
        assert "1,000,000,000" in body["errors"][0]["message"]
        free = {"service": "scraper", "source": "free_api"}
        body = problem(
            client.post("/api/events/batch", json={"events": [free, over]}, headers=headers)
        )
        assert "budget 'daily' usage" in body["detail"]
        reserve = {"service": "scraper", "source": "paid_api", "amount": "0.01"}
        answer = client.post("/api/reservations", json=reserve, headers=headers)
        assert answer.status_code == 200
        assert answer.json()["approval_status"] == "denied"
    assert len(gate.events()) == 100  # the batch's free event went nowhere either
    assert gate.status()[0].balance.spent == MAX_TOTAL
