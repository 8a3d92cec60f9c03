"""`areserve()`, `acommit()`, `arelease()`: two-phase spending for asyncio code, on every
backend. They answer as their sync forms do; on a SQL store each call joins the group commit
of holds, shared with threads calling meanwhile, and no budget is overspent."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from spendgate import (
    Gate,
    ReservationStateError,
    StoreClosedError,
    UnknownSourceError,
    ValidationError,
    to_nanos,
)
from spendgate.store.sql import SQLStore
from spendgate.testing import FrozenClock
from tests.conftest import small_config


def figures(gate: Gate) -> tuple[Decimal, int]:
    status = gate.status()[0]
    return status.spent, status.reserved_nanos


def test_a_hold_taken_committed_and_released_from_asyncio(gate: Gate) -> None:
    async def run() -> None:
        first = await gate.areserve("svc", "paid_api", "0.10")
        assert first.approved
        assert first.reservation_id is not None
        assert figures(gate) == (Decimal(0), to_nanos("0.10"))
        done = await gate.acommit(first.reservation_id, "0.04", success=True)
        assert (done.cost, done.overshoot) == (to_nanos("0.04"), 0)
        assert figures(gate) == (Decimal("0.04"), 0)
        event = gate.event(done.request_id)
        assert event is not None
        assert event.reservation_id == first.reservation_id
        second = await gate.areserve("svc", "paid_api")
        assert second.reservation_id is not None
        assert await gate.arelease(second.reservation_id) == "released"
        assert figures(gate) == (Decimal("0.04"), 0)
        # Settled holds are gone, as for the sync calls, and nothing changes.
        with pytest.raises(ReservationStateError):
            await gate.acommit(first.reservation_id)
        with pytest.raises(ReservationStateError):
            await gate.arelease(second.reservation_id)
        assert figures(gate) == (Decimal("0.04"), 0)

    asyncio.run(run())
    assert gate.decisions().total("approved", service="svc") == 2


def test_a_retry_by_id_answers_with_the_same_hold_and_a_refusal_is_exact(gate: Gate) -> None:
    async def run() -> None:
        held = await gate.areserve("svc", "paid_api", "0.90", reservation_id="job-1")
        again = await gate.areserve("svc", "paid_api", "0.90", reservation_id="job-1")
        assert held.approved
        assert again.approved
        assert again.reservation_id == "job-1"
        assert figures(gate) == (Decimal(0), to_nanos("0.90"))  # held once
        refused = await gate.areserve("svc", "paid_api", "0.20")
        assert refused.status == "denied"
        assert refused.remaining == to_nanos("0.10")  # the room a sync call is told of
        assert refused.reservation_id is None

    asyncio.run(run())


def test_bad_input_is_refused_before_anything_is_held(gate: Gate) -> None:
    async def run() -> None:
        with pytest.raises(ValidationError) as caught:
            await gate.areserve("svc", "paid_api", "-1")
        assert caught.value.field == "estimate"
        with pytest.raises(UnknownSourceError):
            await gate.areserve("svc", "no_such_source")
        with pytest.raises(ValidationError):
            await gate.acommit("")
        with pytest.raises(ReservationStateError):
            await gate.acommit("never-taken")

    asyncio.run(run())
    assert figures(gate) == (Decimal(0), 0)


def test_a_leased_gate_holds_from_asyncio_too(store_url: str, clock: FrozenClock) -> None:
    config = small_config("100", lease=True)
    with Gate.open(store_url, config=config, clock=clock) as gate:

        async def run() -> None:
            decision = await gate.areserve("svc", "paid_api", "0.10")
            assert decision.reservation_id is not None
            result = await gate.acommit(decision.reservation_id)
            assert result.cost == to_nanos("0.10")
            other = await gate.areserve("svc", "paid_api", "0.10")
            assert other.reservation_id is not None
            assert await gate.arelease(other.reservation_id) == "released"

        asyncio.run(run())
        assert gate.status()[0].spent == Decimal("0.10")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tasks_and_threads_share_the_group_commit_and_never_overspend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """200 asyncio tasks and 4 threads race for a $1.00 budget at $0.01 a call: exactly 100
    calls are approved, each committed once, and the tasks' calls were written in shared
    transactions."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    gate = Gate.open(url, config=small_config())
    approved: list[bool] = []
    lock = threading.Lock()

    def thread_pairs() -> None:
        for _ in range(15):
            decision = gate.reserve("svc", "paid_api")
            if decision.approved:
                gate.commit(decision.reservation_id or "")
            with lock:
                approved.append(decision.approved)

    async def task_pair() -> bool:
        decision = await gate.areserve("svc", "paid_api")
        if decision.approved:
            await gate.acommit(decision.reservation_id or "")
        return decision.approved

    async def run() -> list[bool]:
        return list(await asyncio.gather(*(task_pair() for _ in range(200))))

    threads = [threading.Thread(target=thread_pairs) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        approved += asyncio.run(run())
        for t in threads:
            t.join()
        assert len(approved) == 260
        assert sum(approved) == 100
        assert figures(gate) == (Decimal("1.00"), 0)
        assert len(gate.events()) == 100
        store = gate.store
        assert isinstance(store, SQLStore)
        committer = store._ledger_committer
        assert committer is not None
        assert committer.items > committer.batches  # shared transactions
    finally:
        gate.close()


def test_closing_from_the_loop_answers_every_waiting_task(tmp_path: Path) -> None:
    """`close()` called by the event loop that has tasks waiting on the group commit does not
    wait for them on that loop: each task either got its hold or hears the store closed."""
    gate = Gate.open(f"sqlite:///{tmp_path / 'close.db'}", config=small_config("100"))

    async def run() -> list[object]:
        tasks = [asyncio.ensure_future(gate.areserve("svc", "paid_api")) for _ in range(50)]
        await asyncio.sleep(0)  # every task has queued its hold
        gate.close()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    outcomes = asyncio.run(run())
    assert all(
        isinstance(o, StoreClosedError) or getattr(o, "approved", False) for o in outcomes
    ), [o for o in outcomes if not isinstance(o, StoreClosedError)][:3]
    with Gate.open(f"sqlite:///{tmp_path / 'close.db'}", config=small_config("100")) as again:
        held = sum(1 for o in outcomes if not isinstance(o, StoreClosedError))
        assert again.status()[0].reserved_nanos == held * to_nanos("0.01")
