"""The gate, end to end on every backend: decisions, two-phase spending, recording, and bad
input refused before it changes anything (`spend()` and `metered()`: test_spend.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendgate import (
    BudgetExceededError,
    ConflictError,
    Gate,
    ReservationStateError,
    UnknownSourceError,
    UnpricedSourceError,
    ValidationError,
    to_nanos,
)
from spendgate.config import parse
from spendgate.router import FreeFirstRouter
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.conftest import in_a_forked_child, small_config


def spent(gate: Gate, budget: str = "daily") -> Decimal:
    (status,) = [s for s in gate.status() if s.budget.name == budget]
    return status.spent


def reserved(gate: Gate) -> int:
    return gate.status()[0].reserved_nanos


# -- authorize ----------------------------------------------------------------------------


def test_authorize_answers_in_the_seeds_shape(gate: Gate) -> None:
    decision = gate.authorize("enrichment", "paid_api")
    assert decision.approved
    body = decision.to_dict()
    assert body["approval_status"] == "approved"
    assert body["budget_available"] is True
    assert body["remaining_budget"] == "1"  # the room before the call
    assert body["requested_amount"] == "0.01"
    assert body["budget"] == "daily"
    assert body["as_of"] == gate.clock().isoformat()


def test_denied_decision_names_budget_and_alternative(gate: Gate) -> None:
    gate.record("enrichment", "paid_api", cost="0.995")
    decision = gate.authorize("enrichment", "paid_api")
    assert decision.status == "denied"
    assert decision.budget == "daily"
    assert decision.to_dict()["alternative_action"] == "use_free_sources_only"
    assert decision.remaining == to_nanos("0.005")
    with pytest.raises(BudgetExceededError) as err:
        gate.require("enrichment", "paid_api")
    assert (err.value.budget, err.value.requested, err.value.remaining) == (
        "daily",
        Decimal("0.01"),
        Decimal("0.005"),
    )


def test_free_and_allowed_unpriced_sources_are_approved_without_a_hold(gate: Gate) -> None:
    assert gate.authorize("scraper", "free_api").reason == "free"
    assert gate.authorize("scraper", "legacy").reason == "unpriced source (allowed)"


def test_unpriced_and_unknown_sources_are_refused(gate: Gate) -> None:
    with pytest.raises(UnpricedSourceError, match="mystery"):
        gate.authorize("scraper", "mystery")
    with pytest.raises(UnpricedSourceError):
        gate.record("scraper", "mystery")
    with pytest.raises(UnknownSourceError, match="one of the configured sources"):
        gate.reserve("scraper", "nowhere")
    assert gate.events() == []


def test_unpriced_event_is_counted_as_unpriced_never_as_zero(gate: Gate) -> None:
    result = gate.record("scraper", "legacy")
    assert result.cost is None
    (event,) = gate.events()
    assert event.unpriced
    assert event.to_dict()["total_cost"] is None
    assert spent(gate) == 0


# -- reserve / commit / release -------------------------------------------------------------


def test_reserve_commit_release(gate: Gate) -> None:
    decision = gate.reserve("enrichment", "paid_api", "0.30")
    assert decision.approved
    assert decision.reservation_id
    assert reserved(gate) == to_nanos("0.30")
    result = gate.commit(decision.reservation_id, "0.25")
    assert result.cost == to_nanos("0.25")
    assert result.overshoot == 0
    assert spent(gate) == Decimal("0.25")
    assert reserved(gate) == 0
    second = gate.reserve("enrichment", "paid_api", "0.50")
    assert second.reservation_id
    assert gate.release(second.reservation_id) == "released"
    assert reserved(gate) == 0
    with pytest.raises(ReservationStateError):
        gate.release(second.reservation_id)
    with pytest.raises(ReservationStateError):
        gate.commit(decision.reservation_id)
    assert spent(gate) == Decimal("0.25")


def test_commit_without_actual_books_the_estimate_and_overshoot_is_reported(gate: Gate) -> None:
    a = gate.reserve("svc", "paid_api")
    assert a.reservation_id
    assert gate.commit(a.reservation_id).cost == to_nanos("0.01")
    b = gate.reserve("svc", "paid_api", "0.10")
    assert b.reservation_id
    result = gate.commit(b.reservation_id, "0.15")
    assert result.overshoot == to_nanos("0.05")
    assert gate.status()[0].balance.overshoot == to_nanos("0.05")


def test_reservation_ids_are_idempotent(gate: Gate) -> None:
    first = gate.reserve("svc", "paid_api", "0.40", reservation_id="job-1")
    again = gate.reserve("svc", "paid_api", "0.40", reservation_id="job-1")
    assert first.reservation_id == again.reservation_id == "job-1"
    assert reserved(gate) == to_nanos("0.40")
    with pytest.raises(ConflictError):
        gate.reserve("svc", "paid_api", "0.50", reservation_id="job-1")
    assert reserved(gate) == to_nanos("0.40")


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
    # The same approval as at first: the room before the hold.
    assert (again.approved, again.budget, again.remaining) == (True, "daily", to_nanos("1.00"))
    assert gate.status()[0].reserved_nanos == to_nanos("0.50")


def test_commit_from_another_gate_on_the_same_store(store_url: str, clock: FrozenClock) -> None:
    if store_url.startswith("memory"):
        pytest.skip("two gates share a store only through a file or server")
    one = Gate.open(store_url, config=small_config(), clock=clock)
    two = Gate.open(store_url, config=small_config(), clock=clock)
    decision = one.reserve("svc", "paid_api", "0.20", labels={"customer": "acme"})
    assert decision.reservation_id
    two.commit(decision.reservation_id, "0.20")
    assert spent(one) == Decimal("0.20")
    (event,) = one.events()
    assert event.labels == {"customer": "acme"}
    one.close()
    two.close()


def test_leaked_hold_expires_after_its_ttl(gate: Gate, clock: FrozenClock) -> None:
    gate.reserve("svc", "paid_api", "0.95")  # the caller crashed and never came back
    assert not gate.authorize("svc", "paid_api", "0.10").approved
    clock.advance(gate.config.reservation_ttl)
    assert gate.authorize("svc", "paid_api", "0.10").approved
    assert gate.reserve("svc", "paid_api", "0.10").approved
    assert reserved(gate) == to_nanos("0.10")


def test_ttl_takes_seconds_or_text(gate: Gate, clock: FrozenClock) -> None:
    gate.reserve("svc", "paid_api", "0.50", ttl=30)
    gate.reserve("svc", "paid_api", "0.40", ttl="1m")
    clock.advance(31)
    assert gate.expire() == 1


def test_emergency_allowance_is_explicit_and_recorded(store_url: str, clock: FrozenClock) -> None:
    cfg = small_config(limit="1.00", emergency="0.50")
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        gate.record("svc", "paid_api", cost="1.00")
        assert not gate.reserve("svc", "paid_api", "0.20").approved
        decision = gate.reserve("svc", "paid_api", "0.20", emergency=True)
        assert decision.status == "emergency_approved"
        assert decision.to_dict()["emergency_budget_used"] is True
        assert decision.reservation_id
        gate.commit(decision.reservation_id)
        (_, event) = gate.events()
        assert event.emergency
        assert not gate.reserve("svc", "paid_api", "0.40", emergency=True).approved


def seed_budget_check(
    daily_budget: float, emergency_budget: float, current_usage: float, requested: float
) -> dict[str, object]:
    """The seed's `DailyBudgetController.check_budget_availability()`, word for word (for an
    emergency request), as the reference the gate's decisions are held to."""
    remaining_budget = daily_budget - current_usage
    if requested <= remaining_budget:
        return {"remaining_budget": remaining_budget, "approval_status": "approved"}
    elif requested <= emergency_budget:  # noqa: RET505 (the seed's text)
        return {"remaining_budget": remaining_budget, "approval_status": "emergency_approved"}
    else:
        return {"remaining_budget": remaining_budget, "approval_status": "denied"}


@pytest.mark.parametrize(
    ("spent", "requested", "expected"),
    [
        ("0", "60.00", "denied"),  # the case: spendgate approved it before
        ("0", "50.00", "emergency_approved"),  # the seed's bound is inclusive
        ("0", "10.00", "approved"),  # fits the day: the bound does not apply
        ("9.50", "0.40", "approved"),
        ("9.50", "0.60", "emergency_approved"),
        ("9.50", "50.01", "denied"),
    ],
)
def test_emergency_budget_bounds_one_emergency_request(
    store_url: str, clock: FrozenClock, spent: str, requested: str, expected: str
) -> None:
    # The seed's controller: daily_budget = 10.00, emergency_budget = 50.00.
    cfg = small_config(limit="10.00", emergency="50.00")
    seed = seed_budget_check(10.00, 50.00, float(spent), float(requested))
    assert seed["approval_status"] == expected
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        if spent != "0":
            gate.record("svc", "paid_api", cost=spent)
        for decision in (
            gate.authorize("svc", "paid_api", requested, emergency=True),
            gate.reserve("svc", "paid_api", requested, emergency=True),
        ):
            body = decision.to_dict()
            assert body["approval_status"] == expected
            assert Decimal(body["remaining_budget"]) == Decimal("10.00") - Decimal(spent)
            assert float(body["remaining_budget"]) == seed["remaining_budget"]


def test_a_larger_emergency_budget_lets_a_larger_emergency_call_through(
    store_url: str, clock: FrozenClock
) -> None:
    cfg = small_config(limit="10.00", emergency="100.00", emergency_budget="75.00")
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        assert gate.authorize("svc", "paid_api", "60", emergency=True).status == (
            "emergency_approved"
        )
        assert gate.authorize("svc", "paid_api", "80", emergency=True).status == "denied"
        assert gate.authorize("svc", "paid_api", "60").status == "denied"  # not marked


def test_approvals_and_denials_in_one_state_report_the_same_remaining_budget(
    store_url: str, clock: FrozenClock
) -> None:
    # remaining_budget is the room before the request (the seed's `daily_budget -
    # current_usage`), whatever the outcome: the issue saw -1.0275 against -1.0255.
    cfg = small_config(limit="10.00", emergency="50.00")
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        gate.record("svc", "paid_api", cost="9.9975")
        answers = [
            gate.authorize("svc", "paid_api", "0.002"),  # approved
            gate.authorize("svc", "paid_api", "0.004"),  # denied
            gate.authorize("svc", "paid_api", "0.004", emergency=True),  # emergency_approved
            gate.authorize("svc", "paid_api", "60", emergency=True),  # denied, over the bound
        ]
        assert [d.status for d in answers] == [
            "approved",
            "denied",
            "emergency_approved",
            "denied",
        ]
        assert {d.to_dict()["remaining_budget"] for d in answers} == {"0.0025"}
        held = gate.reserve("svc", "paid_api", "0.002")
        assert held.approved
        assert held.to_dict()["remaining_budget"] == "0.0025"
        # The hold now counts: the next answer starts from what is left after it.
        assert gate.authorize("svc", "paid_api", "0.004").to_dict()["remaining_budget"] == (
            "0.0005"
        )


def test_degrade_keeps_paid_calls_for_priority_callers(store_url: str, clock: FrozenClock) -> None:
    cfg = small_config(thresholds={"warn": 0.5, "degrade": 0.7, "stop": 1.0})
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        gate.record("svc", "paid_api", cost="0.65")
        plain = gate.authorize("svc", "paid_api", "0.10")
        assert not plain.approved
        assert "degraded" in plain.reason
        assert gate.authorize("svc", "paid_api", "0.10", priority=True).approved


def test_every_applicable_budget_is_checked_and_the_blocker_named(clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {"maps": {"price": "0.01"}, "llm": {"price": "0.02"}},
            "budgets": [
                {"name": "all", "limit": "10"},
                {"name": "maps-only", "limit": "0.05", "scope": "source:maps"},
                {"name": "acme", "limit": "0.03", "scope": "label:customer=acme"},
            ],
        }
    )
    with Gate.open("memory://", config=cfg, clock=clock) as gate:
        assert gate.reserve("svc", "maps", "0.05").approved
        denied = gate.reserve("svc", "maps", "0.01")
        assert (denied.status, denied.budget) == ("denied", "maps-only")
        assert gate.reserve("svc", "llm", "0.03", labels={"customer": "acme"}).approved
        blocked = gate.reserve("svc", "llm", "0.01", labels={"customer": "acme"})
        assert blocked.budget == "acme"
        assert gate.reserve("svc", "llm", "0.01", labels={"customer": "other"}).approved
        names = {s.budget.name: s.reserved_nanos for s in gate.status()}
        assert names == {
            "all": to_nanos("0.09"),
            "maps-only": to_nanos("0.05"),
            "acme": to_nanos("0.03"),
        }


def test_the_budget_resets_at_the_window_boundary(gate: Gate, clock: FrozenClock) -> None:
    gate.record("svc", "paid_api", cost="1.00")
    assert not gate.authorize("svc", "paid_api").approved
    clock.set(datetime(2026, 1, 6, 0, 0, tzinfo=UTC))
    assert gate.authorize("svc", "paid_api").approved
    assert spent(gate) == 0


def test_reset_hour_and_time_zone(clock: FrozenClock) -> None:
    cfg = small_config(timezone="America/New_York", reset_hour=6)
    with Gate.open("memory://", config=cfg, clock=clock) as gate:
        # 2026-01-05 12:00 UTC is 07:00 in New York: the window began at 06:00 local (11:00 UTC).
        (status,) = gate.status()
        assert status.window_start == datetime(2026, 1, 5, 11, tzinfo=UTC)
        gate.record("svc", "paid_api", cost="1.00")
        clock.set(datetime(2026, 1, 6, 10, 59, tzinfo=UTC))
        assert not gate.authorize("svc", "paid_api").approved
        clock.set(datetime(2026, 1, 6, 11, 0, tzinfo=UTC))
        assert gate.authorize("svc", "paid_api").approved


def test_an_event_keeps_the_price_version_it_was_costed_with(clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {
                "maps": {
                    "price": "0.002",
                    "versions": [{"effective_from": "2026-01-05T13:00:00Z", "price": "0.003"}],
                }
            },
            "budgets": [{"name": "daily", "limit": "10"}],
        }
    )
    with Gate.open("memory://", config=cfg, clock=clock) as gate:
        gate.record("svc", "maps", request_id="before")
        clock.advance(timedelta(hours=2))
        gate.record("svc", "maps", request_id="after")
        early = gate.record("svc", "maps", request_id="backfill", time=clock() - timedelta(hours=3))
        assert early.cost == to_nanos("0.002")
        by_id = {e.request_id: e for e in gate.events()}
        assert by_id["before"].cost == to_nanos("0.002")
        assert by_id["after"].cost == to_nanos("0.003")
        assert by_id["after"].price_version == "maps@2026-01-05T13:00:00Z"
        assert by_id["before"].price_version == "maps@1970-01-01T00:00:00Z"


def test_tiered_free_quota_through_the_gate(store_url: str, clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {
                "geo": {"tiers": {"request": [{"up_to": 3, "price": "0"}, {"price": "0.005"}]}}
            },
            "budgets": [{"name": "daily", "limit": "10"}],
        }
    )
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        costs = [gate.record("svc", "geo").cost for _ in range(5)]
        assert costs == [0, 0, 0, to_nanos("0.005"), to_nanos("0.005")]
        clock.set(datetime(2026, 2, 1, tzinfo=UTC))  # a new month: the free quota is back
        assert gate.record("svc", "geo").cost == 0


def test_multi_dimension_and_stream_prices(clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {
                "gpt-4o": {"price": {"input_token": "2.50/1M", "output_token": "10.00/1M"}},
                "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
            },
            "budgets": [{"name": "daily", "limit": "25"}],
        }
    )
    with Gate.open("memory://", config=cfg, clock=clock) as gate:
        llm = gate.record("svc", "gpt-4o", units={"input_token": 12_000, "output_token": 800})
        assert llm.cost == to_nanos("0.038")
        stream = gate.record(
            "mbo_stream", "databento_mbo", units={"bytes": 50 * 1024 * 1024, "seconds": 5400}
        )
        assert stream.cost == to_nanos("2.00")


# -- record ---------------------------------------------------------------------------------


def test_record_retry_answers_exists_and_conflict_raises(gate: Gate) -> None:
    first = gate.record("svc", "paid_api", request_id="req-1", labels={"property_id": "p9"})
    assert first.created
    again = gate.record("svc", "paid_api", request_id="req-1", labels={"property_id": "p9"})
    assert again.status == "exists"
    with pytest.raises(ConflictError):
        gate.record("svc", "paid_api", request_id="req-1", cost="5")
    assert spent(gate) == Decimal("0.01")
    assert len(gate.events()) == 1


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


def test_record_keeps_the_seeds_cost_entry(gate: Gate) -> None:
    gate.record(
        "image_processor",
        "paid_api",
        request_id="p-1",
        success=False,
        failure_reason="timeout",
        sources_used=["paid_api"],
        free_sources_attempted=["free_api"],
        paid_apis_used=["paid_api"],
        fallbacks_triggered=[("free_api", "no tile")],
        cache_hits=2,
        batch_processing=True,
        quality_score=0.82,
        processing_time=1.25,
        labels={"customer": "acme"},
    )
    (event,) = gate.events()
    entry = event.to_dict()
    assert entry["request_id"] == "p-1"
    assert entry["total_cost"] == "0.01"
    assert entry["success"] is False
    assert entry["failure_reason"] == "timeout"
    assert entry["free_sources_attempted"] == ["free_api"]
    assert entry["fallbacks_triggered"] == [{"source": "free_api", "reason": "no tile"}]
    assert (entry["cache_hits"], entry["batch_processing"]) == (2, True)
    assert (entry["quality_score"], entry["processing_time"]) == (0.82, 1.25)
    assert entry["labels"] == {"customer": "acme"}


def test_record_many_stores_all_but_conflicts(gate: Gate) -> None:
    gate.record("svc", "paid_api", request_id="taken", cost="0.02")
    results = gate.record_many(
        [
            {"service": "svc", "source": "paid_api", "request_id": "a"},
            {"service": "svc", "source": "paid_api", "request_id": "taken", "cost": "0.5"},
            {"service": "svc", "source": "free_api", "request_id": "b"},
        ]
    )
    assert [r.status for r in results] == ["created", "conflict", "created"]
    assert spent(gate) == Decimal("0.03")


def test_a_late_event_counts_in_its_own_windows(store_url: str, clock: FrozenClock) -> None:
    """An event dated in a past window (recorded late, by every path) lands in that window's
    budget counters and rollups, never in the current one's."""
    windows = [{"name": w, "limit": "5", "window": w} for w in ("day", "week", "month")]
    cfg = parse({"sources": {"paid_api": {"price": "0.01/request"}}, "budgets": windows})
    now = clock()  # Monday 2026-01-05 12:00 UTC
    late = now - timedelta(days=8)  # the Sunday before last: last day, week and month
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        gate.record("svc", "paid_api", request_id="today")
        gate.record("svc", "paid_api", request_id="late-1", time=late)
        gate.record_many([{"service": "svc", "source": "paid_api", "request_id": "late-2",
                           "time": late + timedelta(hours=1)}])  # fmt: skip
        asyncio.run(gate.arecord("svc", "paid_api", request_id="late-3", time=late))
        binding = gate.bind("svc", "paid_api")
        budgets = binding.budgets(None)

        def counters(at: datetime) -> list[int]:
            slots = binding.slots(budgets, to_micros(at), priority=False, emergency=False)
            return [gate.store.balance(slot).spent for slot in slots]

        cent = to_nanos("0.01")
        assert counters(now) == [cent] * 3
        assert counters(late) == [3 * cent] * 3
        day = timedelta(days=1)
        midnight = datetime(2025, 12, 28, tzinfo=UTC)
        spans = [(midnight, midnight + day), (now - timedelta(hours=12), now + day)]
        rows = gate.store.tallies([(to_micros(a), to_micros(b)) for a, b in spans])
        by_span = {i: (t.requests, t.cost) for i, _, _, t in rows}
        assert by_span == {0: (3, 3 * cent), 1: (1, cent)}


def test_concurrent_records_share_commits(store_url: str, clock: FrozenClock) -> None:
    with Gate.open(store_url, config=small_config(limit="100"), clock=clock) as gate:
        barrier = threading.Barrier(16)

        def work(n: int) -> None:
            barrier.wait()
            for i in range(25):
                gate.record("svc", "paid_api", request_id=f"{n}-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(gate.events()) == 400
        assert spent(gate) == Decimal("4.00")


def test_async_record_shares_commits_and_keeps_idempotency(gate: Gate) -> None:
    async def main() -> list[str]:
        first = await asyncio.gather(
            *(gate.arecord("svc", "paid_api", request_id=f"a-{i}") for i in range(50))
        )
        again = await gate.arecord("svc", "paid_api", request_id="a-7")
        with pytest.raises(ConflictError):
            await gate.arecord("svc", "paid_api", request_id="a-7", cost="0.5")
        return [r.status for r in first] + [again.status]

    statuses = asyncio.run(main())
    assert statuses == ["created"] * 50 + ["exists"]
    assert len(gate.events()) == 50
    assert spent(gate) == Decimal("0.50")
    writer = gate._writer
    if writer is not None:  # SQLite: 50 concurrent tasks took far fewer than 50 commits
        assert writer.batches < 50


def test_a_cancelled_async_record_is_settled_by_its_retry(gate: Gate) -> None:
    async def main() -> str:
        task = asyncio.create_task(gate.arecord("svc", "paid_api", request_id="maybe"))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        retry = await gate.arecord("svc", "paid_api", request_id="maybe")
        return retry.status

    assert asyncio.run(main()) in ("created", "exists")
    assert [e.request_id for e in gate.events()] == ["maybe"]
    assert spent(gate) == Decimal("0.01")


# -- decisions counted ------------------------------------------------------------------------


def test_every_decision_is_counted_once_whichever_face_asked(clock: FrozenClock) -> None:
    """authorize(), reserve(), spend() and the router, approved, emergency-approved and
    denied: `decisions()` counts each answer once, by service and outcome, and misuse
    (an unpriced source, a bad amount) not at all."""
    cfg = small_config(limit="0.05", emergency="0.02")
    seen: Counter[tuple[str, str]] = Counter()
    with Gate.open("memory://", config=cfg, clock=clock) as gate:

        def saw(service: str, status: str) -> None:
            seen[service, status] += 1

        def fail() -> None:
            raise ConnectionError("the free source is down")

        saw("scraper", gate.authorize("scraper", "paid_api").status)
        saw("scraper", gate.authorize("scraper", "free_api").status)
        held = gate.reserve("enrichment", "paid_api", "0.03")
        saw("enrichment", held.status)
        with gate.spend("enrichment", "paid_api", "0.01") as call:
            call.set_cost("0.01")
        saw("enrichment", "approved")
        with pytest.raises(BudgetExceededError), gate.spend("scraper", "paid_api", "0.02"):
            pass
        saw("scraper", "denied")
        router = FreeFirstRouter(gate, "geocoder", [("free_api", fail), ("paid_api", str)])
        assert router().status == "served"  # by paid_api: $0.05 of $0.05 used
        saw("geocoder", "approved")
        saw("geocoder", gate.reserve("geocoder", "paid_api", "0.01", emergency=True).status)
        assert router().status == "budget_exhausted"
        saw("geocoder", "denied")
        with pytest.raises(UnpricedSourceError):
            gate.authorize("scraper", "mystery")
        with pytest.raises(ValidationError):
            gate.reserve("scraper", "paid_api", "-1")
        counts = gate.decisions()
    assert set(seen) >= {
        ("scraper", "approved"),
        ("scraper", "denied"),
        ("geocoder", "emergency_approved"),
    }
    assert counts.counts == seen
    assert counts.total() == sum(seen.values()) == 8
    assert counts.total("denied") == 2
    assert counts.total(service="enrichment") == 2


def test_decisions_from_many_threads_are_all_counted(gate: Gate) -> None:
    threads, each = 8, 250
    start = threading.Barrier(threads)

    def decide() -> None:
        start.wait()
        for _ in range(each):
            gate.authorize("scraper", "free_api")  # no store call: the counter is the work

    workers = [threading.Thread(target=decide) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert gate.decisions().counts == {("scraper", "approved"): threads * each}


def _child_counts(gate: Gate, out: Any) -> None:
    before = gate.decisions().total()
    gate.authorize("child", "free_api")
    out.put((before, dict(gate.decisions().counts)))


def test_a_forked_child_counts_only_its_own_decisions(clock: FrozenClock) -> None:
    """Scrapes of a parent and its child add up: the child does not repeat the parent's."""
    with Gate.open("memory://", config=small_config(), clock=clock) as gate:
        gate.authorize("parent", "free_api")
        before, after = in_a_forked_child(_child_counts, gate)
        assert (before, after) == (0, {("child", "approved"): 1})
        assert gate.decisions().counts == {("parent", "approved"): 1}


# -- definitions changed elsewhere -----------------------------------------------------------


def test_a_long_lived_gate_and_its_analyst_follow_a_limit_changed_by_another_gate(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """The look for changed definitions is the gate's clock's to time: within a second of
    it, status(), the analyst's live figures and its month budget have the new limit."""
    from spendgate.analytics import Analyst
    from spendgate.control import Control

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    here = Gate.open(url, config=small_config("0.60"), clock=clock)
    there = Gate.open(url, config=small_config("0.60"), clock=clock)  # another process's
    try:
        analyst = Analyst(there)
        here.record("svc", "paid_api", cost="0.50")
        before = analyst.live()
        assert before.budget is not None
        assert (before.budget.limit, before.budget.remaining) == (Decimal("0.6"), Decimal("0.1"))
        Control(here).patch("budget", "daily", {"limit": "2.00"}, actor="test")
        clock.advance(timedelta(milliseconds=500))  # not a second since it last looked
        assert there.config.budget("daily").limit == to_nanos("0.60")
        clock.advance(timedelta(milliseconds=500))
        [status] = there.status()
        assert status.budget.limit == to_nanos("2.00")
        live = analyst.live(there.status())
        figures = live.to_dict()["live_figures"]
        assert figures["budget_remaining"] == {
            "value": "1.5",
            "as_of": clock().isoformat(),
            "scope": "all",
            "budget": "daily",
            "since": None,
        }
        assert figures["budget_remaining_percent"]["value"] == 75.0
        assert figures["budget_used"]["value"] == "0.5"
        assert analyst.monthly_budget() == Decimal("2.00") * 31  # January
        # A decision on the gate that has not been told follows the new limit too.
        assert there.authorize("svc", "paid_api", "1.20").status == "approved"
    finally:
        there.close()
        here.close()


# -- bad input ------------------------------------------------------------------------------


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
