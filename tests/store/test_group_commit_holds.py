"""Group commit of holds on the SQL stores: `reserve()`, `commit()` and `release()` calls that
come while another is under way share one transaction, decided in arrival order against the
balances as the calls before them left them, each caller answered with its own result (or its
own error) once the transaction is durable. A lone call runs alone, as before.

To make a batch for certain, a transaction holding the budget bucket's lock is held open (a
solo ledger call that waits): the next call to arrive takes the writer, which waits for the
lock with it; every call after that queues, and they go in together once it is let go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from spendgate.errors import ReservationStateError
from spendgate.rollups import DAY
from spendgate.store import open_store
from spendgate.store.base import Balance, EventWrite
from spendgate.store.batching import GroupCommitter
from spendgate.store.sql import LedgerOp, SQLStore
from spendgate.windows import to_micros
from tests.conftest import backend_url, in_a_forked_child
from tests.store.test_ledger import CAP, T0, event, hold, slot

CALLERS = 16
AMOUNT = 100  # CAP / AMOUNT holds fit


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore[Any]]:
    url = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else backend_url("sqlite", tmp_path)
    )
    store = open_store(url)
    assert isinstance(store, SQLStore)
    # The bucket's row, so a transaction can lock it.
    assert store.reserve(hold("warm", 1), T0).status == "created"
    store.release("warm", T0)
    yield store
    store.close()


def committer(store: SQLStore[Any]) -> GroupCommitter[Any, Any]:
    assert store._ledger_committer is not None
    return store._ledger_committer


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` (the other threads' progress, not the passing of time)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def batch_of(store: SQLStore[Any], calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` from a thread each while a transaction holds the bucket's lock, so all but
    the first go in one group commit; each call's result, or the exception it raised."""
    taken, go = threading.Event(), threading.Event()

    def blocker(conn: Any) -> None:
        store._many(conn, store.sql.unhold, [(0, "b", T0)])  # locks the bucket's row
        taken.set()
        assert go.wait(30)

    holder = threading.Thread(target=store._ledger, args=(LedgerOp(blocker, lambda c, r: r),))
    holder.start()
    assert taken.wait(30)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the caller's own answer
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    # The first calls to arrive took the writer, which waits for the lock; the rest queue.
    until(lambda: committer(store).waiting == len(calls), "every call to be queued")
    go.set()
    for t in [holder, *threads]:
        t.join(60)
    return results


def test_concurrent_holds_share_a_transaction_and_never_overspend(
    sql_store: SQLStore[Any],
) -> None:
    c = committer(sql_store)
    before = (c.batches, c.items)
    results = batch_of(
        sql_store,
        [lambda i=i: sql_store.reserve(hold(f"r{i}", AMOUNT), T0) for i in range(CALLERS)],
    )
    # The writer's first batch (what had arrived when it woke), then the rest: one or two
    # transactions for all sixteen calls.
    assert c.items - before[1] == CALLERS
    assert 1 <= c.batches - before[0] <= 2
    statuses = [r.status for r in results]
    assert statuses.count("created") == CAP // AMOUNT
    assert statuses.count("denied") == CALLERS - CAP // AMOUNT
    assert all(r.refused == 0 for r in results if r.status == "denied")
    # Exactly full: every hold that fits was taken, none past the cap.
    assert sql_store.balance(slot()) == Balance(spent=0, reserved=CAP)


def test_each_caller_gets_its_own_answer_in_a_batch(sql_store: SQLStore[Any]) -> None:
    for rid in ("a", "b"):
        assert sql_store.reserve(hold(rid, AMOUNT), T0).status == "created"
    cost = 60
    calls: list[Callable[[], Any]] = [
        lambda: sql_store.commit("a", EventWrite(event("a", cost), (slot(),)), T0),
        lambda: sql_store.commit("missing", EventWrite(event("m", cost), (slot(),)), T0),
        lambda: sql_store.release("b", T0),
        lambda: sql_store.release("b", T0),  # the second, in the same batch: refused
        lambda: sql_store.reserve(hold("c", AMOUNT), T0),
        lambda: sql_store.reserve(hold("c", AMOUNT), T0),  # the same hold again: exists
    ]
    results = batch_of(sql_store, calls)
    commit_a, missing, release_b, again_b, reserve_c, retry_c = results
    assert commit_a.cost == cost
    assert isinstance(missing, ReservationStateError)
    # The two releases of "b" and the two reserves of "c" race to the writer: whichever
    # came first did it, the other was told.
    assert sorted(map(type, (release_b, again_b)), key=str) == sorted(
        [str, ReservationStateError], key=str
    )
    assert sorted(r.status for r in (reserve_c, retry_c)) == ["created", "exists"]
    # Spent: a's cost; reserved: c's hold. Nothing of the failed calls is left.
    assert sql_store.balance(slot()) == Balance(spent=cost, reserved=AMOUNT)
    assert day_tally(sql_store) == (1, cost)  # a's event, in the rollups once


def test_a_batch_of_commits_adds_each_event_to_the_rollups_once(
    sql_store: SQLStore[Any],
) -> None:
    """A batch where every call succeeds is written together, its events added to the
    rollups at its end; one where a call fails is written again call by call. Either way
    each committed event is counted once."""
    ids = [f"h{i}" for i in range(8)]
    for rid in ids:
        assert sql_store.reserve(hold(rid, AMOUNT), T0).status == "created"
    good: list[Callable[[], Any]] = [
        lambda rid=rid: sql_store.commit(rid, EventWrite(event(rid, 10), (slot(),)), T0)
        for rid in ids[:4]
    ]
    assert all(r.cost == 10 for r in batch_of(sql_store, good))
    assert day_tally(sql_store) == (4, 40)
    mixed: list[Callable[[], Any]] = [
        lambda rid=rid: sql_store.commit(rid, EventWrite(event(rid, 10), (slot(),)), T0)
        for rid in [*ids[4:], ids[0]]  # h0 is committed already: that call alone fails
    ]
    *done, again = batch_of(sql_store, mixed)
    assert all(r.cost == 10 for r in done)
    assert isinstance(again, ReservationStateError)
    assert day_tally(sql_store) == (8, 80)
    assert sql_store.balance(slot()) == Balance(spent=80, reserved=0)


def day_tally(store: SQLStore[Any]) -> tuple[int, int]:
    """Requests and cost in the rollups, over the day of the test events."""
    start = to_micros(datetime(2026, 1, 5, tzinfo=UTC))
    rows = store.tallies([(start, start + DAY)])
    return sum(t.requests for *_, t in rows), sum(t.cost for *_, t in rows)


def test_a_forked_child_starts_with_no_call_under_way(sql_store: SQLStore[Any]) -> None:
    """A fork while calls are under way: the child has none of them, so its own first call
    runs alone (and never waits on a lock a parent's thread held at the fork)."""

    def child(store: SQLStore[Any], out: Any) -> None:
        c = committer(store)
        result = store.reserve(hold("in-child", AMOUNT), T0)
        out.put((result.status, store._ledger_busy, c.batches))

    with sql_store._ledger_lock:  # held by this thread at the fork, and a call under way
        sql_store._ledger_busy += 1
        try:
            answer = in_a_forked_child(child, sql_store)
        finally:
            sql_store._ledger_busy -= 1
    assert answer == ("created", 0, 0)


def test_a_lone_caller_runs_alone(sql_store: SQLStore[Any]) -> None:
    c = committer(sql_store)
    before = (c.batches, c.items)
    assert sql_store.reserve(hold("solo", AMOUNT), T0).status == "created"
    sql_store.commit("solo", EventWrite(event("solo", AMOUNT), (slot(),)), T0)
    assert (c.batches, c.items) == before  # nothing handed to the writer thread
    assert c.thread is None  # which never even started
