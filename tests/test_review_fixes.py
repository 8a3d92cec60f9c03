"""Regressions for what review found: each test failed before its fix."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from pathlib import Path

import pytest

from spendgate import (
    BudgetExceededError,
    Gate,
    ReservationStateError,
    StoreError,
    ValidationError,
    to_nanos,
)
from spendgate.config import parse
from spendgate.store.batching import GroupCommitter
from spendgate.testing import FrozenClock
from spendgate.windows import Window
from tests.conftest import small_config


def spent(gate: Gate) -> int:
    return gate.status()[0].spent


# -- reservations ---------------------------------------------------------------------------


@pytest.mark.parametrize("settle", ["commit", "release", "expire"])
def test_a_retry_of_a_settled_reservation_is_refused(
    gate: Gate, clock: FrozenClock, settle: str
) -> None:
    first = gate.reserve("svc", "paid_api", "0.50", reservation_id="job")
    assert first.approved
    if settle == "commit":
        gate.commit("job")
    elif settle == "release":
        gate.release("job")
    else:
        clock.advance(gate.config.reservation_ttl)
        gate.expire()
    before = gate.status()[0].balance
    with pytest.raises(ReservationStateError):
        gate.reserve("svc", "paid_api", "0.50", reservation_id="job")
    assert gate.status()[0].balance == before


def test_a_retry_of_a_pending_reservation_gives_its_figures(gate: Gate) -> None:
    gate.reserve("svc", "paid_api", "0.50", reservation_id="job")
    again = gate.reserve("svc", "paid_api", "0.50", reservation_id="job")
    assert (again.approved, again.budget, again.remaining) == (True, "daily", to_nanos("0.50"))
    assert gate.status()[0].reserved == to_nanos("0.50")


def test_a_free_call_passes_a_budget_that_is_over_its_cap(gate: Gate) -> None:
    gate.record("svc", "paid_api", cost="1.20")  # unreserved spend overshot the limit
    with gate.spend("svc", "free_api") as call:
        call.set_cost("0")
    assert call.decision is not None
    assert call.decision.approved
    with pytest.raises(BudgetExceededError):
        gate.spend("svc", "paid_api").__enter__()


def test_set_cost_checks_its_values_inside_the_block(gate: Gate) -> None:
    with pytest.raises(ValidationError, match="quality_score"), gate.spend("svc", "paid_api"):
        raise_from_set_cost(gate)
    assert gate.status()[0].reserved == 0


def raise_from_set_cost(gate: Gate) -> None:
    with gate.spend("svc", "paid_api") as call:
        call.set_cost("0.01", quality_score=-0.5)


def test_spend_on_a_tiered_price_uses_the_free_quota(store_url: str, clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {"geo": {"tiers": {"request": [{"up_to": 2, "price": "0"},
                                                      {"price": "0.005"}]}}},
            "budgets": [{"name": "daily", "limit": "10"}],
        }
    )  # fmt: skip
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        costs = []
        for _ in range(3):
            with gate.spend("svc", "geo") as call:
                pass
            assert call.result is not None
            costs.append(call.result.cost)
        assert costs == [0, 0, to_nanos("0.005")]
        assert spent(gate) == to_nanos("0.005")


# -- input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda g: g.record("svc", "paid_api", cache_hits=2**63), "cache_hits"),
        (lambda g: g.record("svc", "paid_api", quality_score=10**400), "quality_score"),
        (lambda g: g.record("svc", "paid_api", units=["x"]), "units"),
        (lambda g: g.record("svc", "paid_api", time="2026-01-05T12:00Z"), "time"),
        (lambda g: g.record("svc", "paid_api", time=datetime(9999, 12, 31, tzinfo=UTC)), "time"),
        (lambda g: g.record("svc", "paid_api", time=datetime(1960, 1, 1, tzinfo=UTC)), "time"),
        (lambda g: g.record("svc", "paid_api", fallbacks_triggered=5), "fallbacks_triggered"),
        (lambda g: g.reserve("svc", "paid_api", ttl="soon"), "ttl"),
        (lambda g: g.reserve("svc", "paid_api", emergency="false"), "emergency"),
        (lambda g: g.authorize("svc", "paid_api", priority=1), "priority"),
        (lambda g: g.authorize(["svc"], "paid_api"), "service"),
        (lambda g: g.commit(["x"]), "reservation_id"),
        (lambda g: g.events(limit=-1), "limit"),
    ],
)
def test_bad_input_is_a_validation_error_that_changes_nothing(
    gate: Gate, call: object, field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        call(gate)  # type: ignore[operator]
    assert err.value.field.startswith(field)
    assert gate.events() == []
    assert gate.status()[0].balance.used == 0


def test_ttl_takes_seconds_or_text(gate: Gate, clock: FrozenClock) -> None:
    gate.reserve("svc", "paid_api", "0.50", ttl=30)
    gate.reserve("svc", "paid_api", "0.40", ttl="1m")
    clock.advance(31)
    assert gate.expire() == 1


def test_granularity_belongs_to_rolling_windows_only() -> None:
    with pytest.raises(ValidationError, match="granularity"):
        Window("day", granularity=timedelta(minutes=5))


def test_money_ignores_the_callers_decimal_context(clock: FrozenClock) -> None:
    cfg = parse({"sources": {"llm": {"price": {"input_token": "2.50/1M"}}},
                 "budgets": [{"name": "daily", "limit": "100000"}]})  # fmt: skip
    with Gate.open("memory://", config=cfg, clock=clock) as gate, localcontext() as ctx:
        ctx.prec = 6
        result = gate.record("svc", "llm", units={"input_token": 1_234_567_891})
        assert result.cost == 3_086_419_727_500


def test_a_retry_is_the_same_payload_in_every_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fp.db'}"
    when = datetime(2026, 1, 5, 12, tzinfo=UTC)
    same_when = when.astimezone(timezone(timedelta(hours=5)))
    first = Gate.open(url, config=small_config())
    first.record("svc", "paid_api", request_id="r1", time=when, units={"request": 1})
    first.close()
    other = Gate.open(url, config=small_config())  # a fresh process would see the same
    again = other.record("svc", "paid_api", request_id="r1", time=same_when,
                         units={"request": Decimal("1.0")})  # fmt: skip
    assert again.status == "exists"
    other.close()


# -- the writer -----------------------------------------------------------------------------


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


def test_recording_after_close_is_a_store_error(gate: Gate) -> None:
    gate.close()
    with pytest.raises(StoreError, match="closed"):
        gate.record("svc", "paid_api")
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(gate.arecord("svc", "paid_api"))


def test_a_locked_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    gate = Gate.open(f"sqlite:///{path}?timeout=0.05", config=small_config())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            gate.record("svc", "paid_api", cost="0.10")
        # A paid call the store cannot answer for fails closed, and says why.
        refused = gate.reserve("svc", "paid_api", "0.10")
        assert not refused.approved
        assert refused.reason.startswith("store unreachable")
        assert str(path) not in refused.reason  # the file's path stays in the log
        assert gate.outages["denied"] == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert gate.reserve("svc", "paid_api", "0.10").approved  # the connection is still usable
    gate.close()


def _open_and_record(url: str, n: int) -> None:
    gate = Gate.open(url, config=small_config(limit="100"))
    gate.record("svc", "paid_api", request_id=f"p{n}")
    gate.close()


@pytest.mark.slow
def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_record, args=(url, n)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    gate = Gate.open(url, config=small_config(limit="100"))
    assert sorted(e.request_id for e in gate.events()) == ["p0", "p1", "p2", "p3"]
    gate.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_writes_only_its_own_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    gate = Gate.open(url, config=small_config(limit="100"))
    gate.record("svc", "paid_api", request_id="parent-1")
    pid = os.fork()
    if pid == 0:  # the child: its own connection and writer
        code = 0
        try:
            child = gate.record("svc", "paid_api", request_id="child-1")
            code = 0 if child.created else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gate.record("svc", "paid_api", request_id="parent-2")
    assert sorted(e.request_id for e in gate.events()) == ["child-1", "parent-1", "parent-2"]
    gate.close()
