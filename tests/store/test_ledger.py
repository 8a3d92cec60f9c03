"""The storage contract, run on every backend (see `conftest.BACKENDS`).

Each test drives a `Store` directly with hand-made slots, so a backend cannot pass by leaning
on the gate above it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spendgate.accounting import QuotaUse, Slot
from spendgate.errors import ConflictError, ReservationStateError
from spendgate.events import Event, fingerprint
from spendgate.pricing import Price
from spendgate.store.base import Balance, EventWrite, ReservationWrite, Store
from spendgate.windows import Window

T0 = 1_700_000_000_000_000  # µs
DAY = 86_400_000_000
CAP = 1_000


def slot(
    cap: int | None = CAP, budget: str = "b", bucket: int = T0, span: int | None = None
) -> Slot:
    return Slot(budget, bucket, bucket if span is None else span, cap)


def hold(rid: str, amount: int, *slots: Slot, expires: int = T0 + 60_000_000) -> ReservationWrite:
    return ReservationWrite(
        rid, fingerprint(rid, amount), slots or (slot(),), amount, T0, expires, "svc", "src"
    )


def event(rid: str, cost: int | None, payload: object = None, **fields: object) -> Event:
    return Event(
        rid,
        datetime(2026, 1, 5, tzinfo=UTC),
        "svc",
        "src",
        cost,
        fingerprint(rid, cost, payload),
        **fields,
    )  # type: ignore[arg-type]


def test_hold_within_cap_is_created_and_counted(store: Store) -> None:
    result = store.reserve(hold("r1", 400), T0)
    assert result.status == "created"
    assert result.used == (400,)
    assert store.balance(slot()) == Balance(spent=0, reserved=400)


def test_hold_over_cap_is_denied_and_changes_nothing(store: Store) -> None:
    store.reserve(hold("r1", 700), T0)
    result = store.reserve(hold("r2", 301), T0)
    assert result.status == "denied"
    assert result.refused == 0
    assert result.used == (700,)
    assert store.balance(slot()) == Balance(reserved=700)
    assert store.reservation("r2") is None


def test_amount_alone_over_cap_is_denied_on_an_empty_bucket(store: Store) -> None:
    assert store.reserve(hold("r1", CAP + 1), T0).status == "denied"
    assert store.balance(slot()) == Balance()


def test_hold_is_all_or_nothing_across_budgets(store: Store) -> None:
    roomy, tight = slot(budget="roomy"), slot(cap=100, budget="tight")
    result = store.reserve(hold("r1", 150, roomy, tight), T0)
    assert (result.status, result.refused) == ("denied", 1)
    assert store.balance(roomy) == Balance()
    assert store.balance(tight) == Balance()


def test_soft_budget_never_refuses(store: Store) -> None:
    soft = slot(cap=None)
    assert store.reserve(hold("r1", 10**12, soft), T0).status == "created"


def test_reserve_is_idempotent_by_id(store: Store) -> None:
    store.reserve(hold("r1", 100), T0)
    again = store.reserve(hold("r1", 100), T0)
    assert (again.status, again.state) == ("exists", "pending")
    assert store.balance(slot()).reserved == 100
    other = store.reserve(hold("r1", 200), T0)
    assert other.status == "conflict"
    assert store.balance(slot()).reserved == 100


def test_commit_settles_the_hold(store: Store) -> None:
    store.reserve(hold("r1", 300), T0)
    result = store.commit("r1", EventWrite(event("r1", 250)), T0)
    assert (result.cost, result.overshoot, result.hold_expired) == (250, 0, False)
    assert store.balance(slot()) == Balance(spent=250)
    assert [e.cost for e in store.events()] == [250]


def test_commit_above_estimate_is_recorded_as_overshoot(store: Store) -> None:
    store.reserve(hold("r1", 300), T0)
    result = store.commit("r1", EventWrite(event("r1", 420)), T0)
    assert result.overshoot == 120
    assert store.balance(slot()) == Balance(spent=420, overshoot=120)


def test_commit_or_release_twice_is_an_error_that_changes_nothing(store: Store) -> None:
    store.reserve(hold("r1", 300), T0)
    store.commit("r1", EventWrite(event("r1", 300)), T0)
    with pytest.raises(ReservationStateError, match="committed"):
        store.commit("r1", EventWrite(event("r1-again", 300)), T0)
    with pytest.raises(ReservationStateError, match="committed"):
        store.release("r1", T0)
    store.reserve(hold("r2", 100), T0)
    assert store.release("r2", T0) == "released"
    with pytest.raises(ReservationStateError, match="released"):
        store.release("r2", T0)
    with pytest.raises(ReservationStateError, match="unknown"):
        store.commit("nope", EventWrite(event("nope", 1)), T0)
    assert store.balance(slot()) == Balance(spent=300)
    assert len(store.events()) == 1


def test_commit_whose_event_id_is_taken_changes_nothing(store: Store) -> None:
    store.record([EventWrite(event("e1", 5), (slot(),))])
    store.reserve(hold("r1", 300), T0)
    with pytest.raises(ConflictError):
        store.commit("r1", EventWrite(event("e1", 300)), T0)
    assert store.balance(slot()) == Balance(spent=5, reserved=300)
    assert store.reservation("r1").state == "pending"  # type: ignore[union-attr]


def test_expired_holds_are_swept_and_never_block_a_payer(store: Store) -> None:
    store.reserve(hold("leaked", 900, expires=T0 + 10), T0)
    # Still inside its TTL: it counts.
    assert store.reserve(hold("r2", 200), T0 + 5).status == "denied"
    # Past its TTL: the refusal sweeps it and the payer gets through.
    assert store.reserve(hold("r3", 200), T0 + 10).status == "created"
    assert store.reservation("leaked").state == "expired"  # type: ignore[union-attr]
    assert store.balance(slot()).reserved == 200


def test_expire_returns_holds(store: Store) -> None:
    store.reserve(hold("r1", 100, expires=T0 + 10), T0)
    store.reserve(hold("r2", 100, expires=T0 + 20), T0)
    assert store.expire(T0 + 15) == 1
    assert store.balance(slot()).reserved == 100
    assert store.expire(T0 + 15) == 0


def test_commit_after_expiry_books_the_truth_as_unreserved_spend(store: Store) -> None:
    store.reserve(hold("r1", 600, expires=T0 + 10), T0)
    store.expire(T0 + 10)
    store.reserve(hold("r2", 500), T0 + 10)  # took the room the expired hold gave back
    result = store.commit("r1", EventWrite(event("r1", 600), (slot(),)), T0 + 20)
    assert result.hold_expired
    # Booked in full, unreserved: 500 held + 600 spent is 100 past the cap of 1,000, and
    # that 100 is what the budget did not approve.
    assert (result.cost, result.overshoot) == (600, 100)
    assert store.balance(slot()) == Balance(spent=600, reserved=500, overshoot=100)


def test_release_of_expired_hold_reports_it(store: Store) -> None:
    store.reserve(hold("r1", 100, expires=T0 + 10), T0)
    store.expire(T0 + 10)
    assert store.release("r1", T0 + 11) == "expired"
    assert store.balance(slot()) == Balance()


def test_adjust_grows_a_hold_within_every_cap(store: Store) -> None:
    roomy, tight = slot(budget="roomy"), slot(cap=800, budget="tight")
    store.reserve(hold("r1", 400, roomy, tight), T0)
    result = store.adjust("r1", 300, T0 + 60_000_000, T0 + 1)
    assert (result.status, result.used) == ("created", (700, 700))
    assert store.balance(roomy) == store.balance(tight) == Balance(reserved=700)
    assert store.reservation("r1").amount == 700  # type: ignore[union-attr]


def test_adjust_refused_by_a_cap_is_denied_and_changes_nothing(store: Store) -> None:
    roomy, tight = slot(budget="roomy"), slot(cap=500, budget="tight")
    store.reserve(hold("r1", 400, roomy, tight, expires=T0 + 10), T0)
    result = store.adjust("r1", 200, T0 + 60_000_000, T0 + 1)
    assert (result.status, result.refused, result.used) == ("denied", 1, (400, 400))
    assert store.balance(roomy) == store.balance(tight) == Balance(reserved=400)
    info = store.reservation("r1")
    assert info is not None
    assert (info.state, info.amount, info.expires_at) == ("pending", 400, T0 + 10)


def test_adjust_shrinks_a_hold_never_below_nothing(store: Store) -> None:
    store.reserve(hold("r1", 400), T0)
    result = store.adjust("r1", -150, T0 + 60_000_000, T0 + 1)
    assert (result.status, result.used) == ("created", (250,))
    assert store.balance(slot()) == Balance(reserved=250)
    assert store.adjust("r1", -1_000, T0 + 60_000_000, T0 + 2).used == (0,)
    assert store.balance(slot()) == Balance()
    info = store.reservation("r1")
    assert info is not None
    assert (info.state, info.amount) == ("pending", 0)


def test_adjust_moves_the_expiry(store: Store) -> None:
    store.reserve(hold("r1", 400, expires=T0 + 10), T0)
    assert store.adjust("r1", 0, T0 + 100, T0 + 5).status == "created"
    assert store.reservation("r1").expires_at == T0 + 100  # type: ignore[union-attr]
    assert store.expire(T0 + 50) == 0  # the old expiry no longer applies
    assert store.balance(slot()).reserved == 400
    assert store.expire(T0 + 100) == 1
    assert store.balance(slot()) == Balance()


def test_adjust_of_a_settled_hold_exists_with_its_state_and_changes_nothing(
    store: Store,
) -> None:
    store.reserve(hold("c", 300), T0)
    store.commit("c", EventWrite(event("c", 250)), T0)
    store.reserve(hold("r", 100), T0)
    store.release("r", T0)
    store.reserve(hold("x", 200, expires=T0 + 10), T0)
    store.expire(T0 + 10)
    for rid, state in (("c", "committed"), ("r", "released"), ("x", "expired")):
        result = store.adjust(rid, 50, T0 + 60_000_000, T0 + 20)
        assert (result.status, result.state) == ("exists", state)
    assert store.balance(slot()) == Balance(spent=250)


def test_adjust_of_an_unknown_reservation_is_an_error(store: Store) -> None:
    with pytest.raises(ReservationStateError, match="unknown"):
        store.adjust("nope", 100, T0 + 60_000_000, T0)
    assert store.balance(slot()) == Balance()


def test_record_is_idempotent_and_detects_conflicts(store: Store) -> None:
    first = store.record([EventWrite(event("e1", 5), (slot(),))])
    assert [r.status for r in first] == ["created"]
    again = store.record([EventWrite(event("e1", 5), (slot(),))])
    assert [r.status for r in again] == ["exists"]
    other = store.record([EventWrite(event("e1", 5, payload="different"), (slot(),))])
    assert [r.status for r in other] == ["conflict"]
    assert store.balance(slot()) == Balance(spent=5)
    assert len(store.events()) == 1


def test_record_batch_with_duplicates_inside_it(store: Store) -> None:
    writes = [EventWrite(event(f"e{i % 3}", 10), (slot(),)) for i in range(6)]
    results = store.record(writes)
    assert [r.status for r in results] == ["created"] * 3 + ["exists"] * 3
    assert store.balance(slot()).spent == 30


def test_unreserved_spend_past_the_cap_counts_as_overshoot(store: Store) -> None:
    store.record([EventWrite(event("e1", 800), (slot(),))])
    store.record([EventWrite(event("e2", 300), (slot(),)), EventWrite(event("e3", 50), (slot(),))])
    bal = store.balance(slot())
    assert bal == Balance(spent=1150, overshoot=150)
    assert bal.used - bal.overshoot <= CAP


def test_unpriced_event_is_stored_as_unpriced_and_charges_nothing(store: Store) -> None:
    results = store.record([EventWrite(event("u1", None), (slot(),))])
    assert results[0].cost is None
    (stored,) = store.events()
    assert stored.unpriced
    assert stored.cost is None
    assert store.balance(slot()) == Balance()


def test_rolling_window_caps_the_sum_of_its_buckets(store: Store) -> None:
    hour = 3_600_000_000
    early = slot(bucket=T0, span=T0)
    later = slot(bucket=T0 + hour, span=T0)  # the window still spans the earlier bucket
    store.record([EventWrite(event("e1", 700), (early,))])
    assert store.reserve(hold("r1", 301, later), T0 + hour).status == "denied"
    result = store.reserve(hold("r2", 300, later), T0 + hour)
    assert result.status == "created"
    assert result.used == (1000,)
    moved_on = slot(bucket=T0 + 2 * hour, span=T0 + hour)  # the first bucket aged out
    assert store.usage([moved_on], T0 + 2 * hour) == [300]


def test_events_survive_a_reopen(store_url: str, store: Store) -> None:
    if store_url.startswith("memory"):
        pytest.skip("memory:// keeps nothing across a reopen, by design")
    from spendgate.store import open_store

    store.record([EventWrite(event("e1", 5), (slot(),))])
    store.close()
    again = open_store(store_url)
    assert [e.request_id for e in again.events()] == ["e1"]
    assert again.balance(slot()).spent == 5
    again.close()


def test_tiered_cost_uses_the_periods_counter(store: Store) -> None:
    price = Price.parse(
        "geo",
        None,
        tiers={"request": [{"up_to": 2, "price": "0"}, {"price": "0.005"}]},
        period=Window("month"),
    )
    costs = []
    for i in range(4):
        ev = event(f"g{i}", None, units={"request": Decimal(1)})
        write = EventWrite(
            ev, (slot(cap=None),), price, (QuotaUse("geo", "request", 0, Decimal(1)),)
        )
        costs.append(store.record([write])[0].cost)
    assert costs == [0, 0, 5_000_000, 5_000_000]
    assert store.balance(slot()).spent == 10_000_000


def test_first_minutes_are_each_service_s_first_event_to_the_minute(store: Store) -> None:
    assert store.first_minutes() == {}

    def at(rid: str, service: str, when: datetime, source: str = "src") -> EventWrite:
        return EventWrite(Event(rid, when, service, source, 1, fingerprint(rid, 1)))

    day = datetime(2026, 1, 5, tzinfo=UTC)
    store.record(
        [
            at("a1", "a", day.replace(hour=23, minute=59, second=59)),
            at("a2", "a", day.replace(hour=10, minute=17, second=42), "other"),
            at("a3", "a", day.replace(day=9)),
            at("b1", "b", day.replace(day=7, second=30)),
        ]
    )
    minute = 60_000_000
    assert store.first_minutes() == {
        "a": int(day.timestamp()) * 1_000_000 + (10 * 60 + 17) * minute,
        "b": int(day.replace(day=7).timestamp()) * 1_000_000,
    }
    # An event recorded later with an earlier time moves its service's start.
    store.record([at("b0", "b", day.replace(day=6, hour=1, minute=2, second=3))])
    assert store.first_minutes()["b"] == int(day.replace(day=6).timestamp()) * 1_000_000 + (
        62 * minute
    )
