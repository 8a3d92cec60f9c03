"""Alerts in the storage contract, on every backend (see `conftest.BACKENDS`): budget lines
crossed in the spend's own transaction, the alert book, the notification outbox and
heartbeats. The races run across processes on SQLite and PostgreSQL and count what each won.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spendgate.accounting import AlertLine, Slot
from spendgate.errors import ValidationError
from spendgate.events import Event, fingerprint
from spendgate.store import open_store
from spendgate.store.base import Alert, Draw, EventWrite, Notification, ReservationWrite, Store
from spendgate.windows import to_micros
from tests.store import test_control_plane
from tests.store.test_control_plane import PROCESSES, race, with_store

START = datetime(2026, 1, 5, tzinfo=UTC)
T0 = to_micros(START)
HOUR = 3_600_000_000
DAY = 24 * HOUR
LIMIT = 1_000
LINES = (AlertLine("0.5", 500), AlertLine("0.8", 800), AlertLine("1.0", 1_000))


def slot(
    budget: str = "b",
    bucket: int = T0,
    span: int | None = None,
    cap: int | None = None,
    lines: tuple[AlertLine, ...] = LINES,
) -> Slot:
    return Slot(budget, bucket, bucket if span is None else span, cap, lines)


def hold(rid: str, amount: int, *slots: Slot) -> ReservationWrite:
    return ReservationWrite(
        rid, fingerprint(rid, amount), slots or (slot(),), amount, T0, T0 + DAY, "svc", "src"
    )


def spend(rid: str, cost: int, *slots: Slot, at: int = T0, draw: Draw | None = None) -> EventWrite:
    when = START + timedelta(microseconds=at - T0)
    event = Event(rid, when, "svc", "src", cost, fingerprint(rid, cost))
    return EventWrite(event, slots or (slot(),), draw=draw)


def ids(store: Store) -> list[str]:
    return sorted(a.alert_id for a in store.alerts(limit=10_000))


# -- lines crossed in the spend's transaction ----------------------------------------------------


def test_a_hold_that_crosses_a_line_raises_exactly_one_alert(store: Store) -> None:
    assert store.reserve(hold("r1", 700), T0 + 1).status == "created"
    assert store.alerts() == [store.alert(f"budget:b:0.5:{T0}")]
    store.reserve(hold("r2", 150), T0 + 2)
    alert = store.alert(f"budget:b:0.8:{T0}")
    assert alert == Alert(
        alert_id=f"budget:b:0.8:{T0}",
        rule="budget",
        scope="b",
        severity="warning",
        state="firing",
        fired_at=T0 + 2,
        value="0.00000085",  # usage and line in currency units, as every money alert
        threshold="0.0000008",
        window_start=T0,
        detail={"fraction": "0.8"},
    )
    assert ids(store) == [f"budget:b:0.5:{T0}", f"budget:b:0.8:{T0}"]


def test_a_batch_that_jumps_two_lines_raises_both_dated_by_the_write_that_crossed(
    store: Store,
) -> None:
    store.record([spend("e1", 300, at=T0 + 10), spend("e2", 600, at=T0 + 20)])
    store.record([spend("e3", 50, at=T0 + 30), spend("e4", 100, at=T0 + 40)])
    half, warn, full = (store.alert(f"budget:b:{f}:{T0}") for f in ("0.5", "0.8", "1.0"))
    assert half is not None
    assert warn is not None
    assert full is not None
    assert (half.fired_at, half.value, half.severity) == (T0 + 20, "0.0000009", "warning")
    assert (warn.fired_at, warn.value) == (T0 + 20, "0.0000009")
    assert (full.fired_at, full.value, full.severity) == (T0 + 40, "0.00000105", "critical")
    assert len(store.alerts()) == 3


def test_a_line_crossed_again_in_its_window_raises_nothing_new_and_a_new_window_does(
    store: Store,
) -> None:
    store.reserve(hold("r1", 850), T0)
    store.release("r1", T0 + 1)
    store.reserve(hold("r2", 900), T0 + 2)
    assert ids(store) == [f"budget:b:0.5:{T0}", f"budget:b:0.8:{T0}"]
    assert store.alert(f"budget:b:0.8:{T0}").fired_at == T0  # type: ignore[union-attr]
    store.reserve(hold("r3", 600, slot(bucket=T0 + DAY)), T0 + DAY)
    assert f"budget:b:0.5:{T0 + DAY}" in ids(store)
    assert len(ids(store)) == 3


def test_a_commit_above_its_estimate_that_crosses_raises(store: Store) -> None:
    store.reserve(hold("r1", 400), T0)
    assert ids(store) == []
    store.commit("r1", spend("e1", 850), T0 + 5)
    assert ids(store) == [f"budget:b:0.5:{T0}", f"budget:b:0.8:{T0}"]
    assert store.alert(f"budget:b:0.8:{T0}").fired_at == T0 + 5  # type: ignore[union-attr]


def test_a_commit_within_its_estimate_raises_nothing(store: Store) -> None:
    store.reserve(hold("r1", 900), T0)
    before = ids(store)
    store.commit("r1", spend("e1", 850), T0 + 5)
    assert ids(store) == before


def test_a_lease_that_grows_across_a_line_raises(store: Store) -> None:
    store.reserve(hold("lease", 300), T0)
    assert store.adjust("lease", 600, T0 + DAY, T0 + 7).status == "created"
    assert ids(store) == [f"budget:b:0.5:{T0}", f"budget:b:0.8:{T0}"]
    assert store.alert(f"budget:b:0.8:{T0}").fired_at == T0 + 7  # type: ignore[union-attr]


def test_a_draw_settled_above_what_it_held_raises(store: Store) -> None:
    store.reserve(hold("lease", 700), T0)
    drawn = spend("e1", 300, at=T0 + 3, draw=Draw(("lease",), 100))  # it held 100 of 700
    store.record([drawn])
    assert store.balance(slot()).used == 900
    assert ids(store) == [f"budget:b:0.5:{T0}", f"budget:b:0.8:{T0}"]
    assert store.alert(f"budget:b:0.8:{T0}").fired_at == T0 + 3  # type: ignore[union-attr]


def test_slots_without_lines_never_write_alerts(store: Store) -> None:
    bare = slot(lines=())
    store.reserve(hold("r1", 900, bare), T0)
    store.commit("r1", spend("e1", 1_200, bare), T0)
    store.record([spend("e2", 5_000, bare)])
    assert store.alerts() == []


def test_each_budget_of_a_call_is_watched_on_its_own_lines(store: Store) -> None:
    tight = slot("tight", lines=(AlertLine("0.8", 80),))
    roomy = slot("roomy", lines=(AlertLine("0.8", 8_000),))
    store.record([spend("e1", 100, tight, roomy, slot("bare", lines=()))])
    assert ids(store) == [f"budget:tight:0.8:{T0}"]


def test_a_rolling_window_raises_a_line_once_per_its_length(store: Store) -> None:
    span = 3 * HOUR  # the window counts the buckets of the last three hours

    def rolling(bucket: int) -> Slot:
        return slot("r", bucket=bucket, span=bucket - span + HOUR)

    store.record([spend("e1", 850, rolling(T0))])
    assert ids(store) == [f"budget:r:0.5:{T0}", f"budget:r:0.8:{T0}"]
    # An hour later the window still holds the first spend: over the line, nothing new.
    store.record([spend("e2", 100, rolling(T0 + HOUR), at=T0 + HOUR)])
    assert len(ids(store)) == 2
    # A charge in a later bucket that crosses a new line raises it, in its own bucket.
    store.record([spend("e3", 100, rolling(T0 + HOUR), at=T0 + HOUR)])
    assert f"budget:r:1.0:{T0 + HOUR}" in ids(store)
    # Once the first spend has left the window, usage falls and crosses again: new alerts.
    later = T0 + 3 * HOUR
    store.record([spend("e4", 700, rolling(later), at=later)])
    assert store.balance(rolling(later)).used == 900
    assert {f"budget:r:0.5:{later}", f"budget:r:0.8:{later}"} <= set(ids(store))
    assert len(ids(store)) == 5


def test_a_rolling_window_counts_holds_in_its_earlier_buckets(store: Store) -> None:
    def rolling(bucket: int) -> Slot:
        return slot("r", bucket=bucket, span=bucket - 2 * HOUR)

    store.reserve(hold("r1", 450, rolling(T0)), T0)
    assert ids(store) == []
    store.reserve(hold("r2", 100, rolling(T0 + HOUR)), T0 + HOUR)
    assert ids(store) == [f"budget:r:0.5:{T0 + HOUR}"]


# -- the alert book ------------------------------------------------------------------------------


def alert(alert_id: str, fired_at: int = T0, **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "rule": "error_rate",
        "scope": f"svc-{alert_id}",  # one firing alert per rule and scope
        "severity": "warning",
        "state": "firing",
        "fired_at": fired_at,
        "detail": {"why": ["x", 1]},
        **fields,
    }
    return Alert(alert_id, **values)


def test_fire_inserts_once_and_reads_back(store: Store) -> None:
    assert store.fire(alert("a1")) is True
    assert store.fire(alert("a1", severity="critical")) is False
    assert store.alert("a1") == alert("a1")
    assert store.alert("nope") is None
    # Another id for a condition already firing (another period's judgement) is refused,
    # and taken once the first has resolved.
    assert store.fire(alert("a1-later", scope="svc-a1")) is False
    assert store.resolve("a1", T0 + 1) is not None
    assert store.fire(alert("a1-later", scope="svc-a1")) is True
    assert store.resolve("a1-later", T0 + 2) is not None
    store_a1 = store.alert("a1")
    assert store_a1 is not None
    assert store_a1.state == "resolved"


def test_alerts_list_newest_first_by_state_with_before(store: Store) -> None:
    for i in range(5):
        store.fire(alert(f"a{i}", T0 + i))
    store.resolve("a3", T0 + 10)
    assert [a.alert_id for a in store.alerts()] == ["a4", "a3", "a2", "a1", "a0"]
    assert [a.alert_id for a in store.alerts(state="firing")] == ["a4", "a2", "a1", "a0"]
    assert [a.alert_id for a in store.alerts(state="resolved")] == ["a3"]
    assert [a.alert_id for a in store.alerts(limit=2, before=T0 + 3)] == ["a2", "a1"]


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True, "10"])
def test_listing_limits_outside_1_to_10000_are_refused(store: Store, limit: Any) -> None:
    with pytest.raises(ValidationError, match="1 to 10000"):
        store.alerts(limit=limit)
    with pytest.raises(ValidationError, match="1 to 10000"):
        store.notifications(limit=limit)
    with pytest.raises(ValidationError, match="1 to 10000"):
        store.claim("w", now=T0, until=T0 + 1, limit=limit)


def test_resolve_acknowledge_and_silence_round_trip(store: Store) -> None:
    store.fire(alert("a1", value="0.31"))
    acked = store.acknowledge("a1", actor="ann", at=T0 + 1)
    assert acked is not None
    assert (acked.acknowledged_at, acked.acknowledged_by) == (T0 + 1, "ann")
    again = store.acknowledge("a1", actor="bob", at=T0 + 2)  # the first acknowledgement stands
    assert again == acked
    silenced = store.silence("a1", until=T0 + HOUR, actor="bob", at=T0 + 3)
    assert silenced is not None
    assert silenced.silenced_until == T0 + HOUR
    assert silenced.acknowledged_by == "ann"
    resolved = store.resolve("a1", T0 + 4, "0.02")
    assert resolved is not None
    assert (resolved.state, resolved.resolved_at, resolved.value) == ("resolved", T0 + 4, "0.02")
    assert store.resolve("a1", T0 + 5) is None  # not firing any more
    assert store.alert("a1") == resolved
    assert store.resolve("nope", T0) is None
    assert store.acknowledge("nope", actor="ann", at=T0) is None
    assert store.silence("nope", until=T0, actor="ann", at=T0) is None


def test_resolve_without_a_value_keeps_the_last_one(store: Store) -> None:
    store.fire(alert("a1", value="0.31"))
    resolved = store.resolve("a1", T0 + 4)
    assert resolved is not None
    assert resolved.value == "0.31"


def test_silencing_an_unacknowledged_alert_acknowledges_it(store: Store) -> None:
    store.fire(alert("a1"))
    silenced = store.silence("a1", until=T0 + HOUR, actor="bob", at=T0 + 3)
    assert silenced is not None
    assert (silenced.acknowledged_at, silenced.acknowledged_by) == (T0 + 3, "bob")


def test_what_is_read_back_is_the_callers_own_copy(store: Store) -> None:
    store.fire(alert("a1"))
    read = store.alert("a1")
    assert read is not None
    read.detail["why"].append("changed")  # type: ignore[attr-defined]
    assert store.alert("a1") == alert("a1")


# -- the outbox ------------------------------------------------------------------------------------


def note(alert_id: str, round: int, channel: str, at: int = T0, **fields: Any) -> Notification:
    key = f"{alert_id}/{round}/{channel}"
    values: dict[str, Any] = {"payload": {"text": key}, "created_at": at, "next_attempt_at": at}
    return Notification(key, alert_id, channel, **{**values, **fields})


def test_enqueue_takes_each_round_once_and_in_order(store: Store) -> None:
    store.fire(alert("a1"))
    first = [note("a1", 1, "slack"), note("a1", 1, "mail")]
    assert store.enqueue("a1", 2, [note("a1", 2, "slack")], T0) is False  # round 1 first
    assert store.enqueue("a1", 1, first, T0 + 1) is True
    assert store.enqueue("a1", 1, first, T0 + 2) is False  # another evaluator, too late
    got = store.alert("a1")
    assert got is not None
    assert (got.rounds, got.notified_at) == (1, T0 + 1)
    assert store.enqueue("a1", 2, [note("a1", 2, "slack", T0 + 5)], T0 + 5) is True
    assert [n.key for n in store.notifications()] == ["a1/2/slack", "a1/1/slack", "a1/1/mail"]
    assert [n.key for n in store.notifications(alert_id="a1", limit=1)] == ["a1/2/slack"]
    assert store.notifications(alert_id="other") == []
    assert store.enqueue("nope", 1, [note("nope", 1, "mail")], T0) is False
    assert store.notifications(limit=1)[0] == note("a1", 2, "slack", T0 + 5)


def test_claim_takes_due_unclaimed_rows_in_order_and_counts_attempts(store: Store) -> None:
    store.fire(alert("a1"))
    notes = [note("a1", 1, c, at=T0 + i) for i, c in enumerate(["a", "b", "c", "d"])]
    notes.append(note("a1", 1, "later", next_attempt_at=T0 + HOUR))
    store.enqueue("a1", 1, notes, T0)
    first = store.claim("w1", now=T0 + 10, until=T0 + 60, limit=2)
    assert [n.key for n in first] == ["a1/1/a", "a1/1/b"]
    assert [n.attempts for n in first] == [1, 1]
    second = store.claim("w2", now=T0 + 10, until=T0 + 60)
    assert [n.key for n in second] == ["a1/1/c", "a1/1/d"]  # not the live claims, not later
    assert store.claim("w3", now=T0 + 59, until=T0 + 100) == []
    # w1's claim ran out: another worker may take its rows.
    taken = store.claim("w3", now=T0 + 60, until=T0 + 100, limit=1)
    assert [(n.key, n.attempts) for n in taken] == [("a1/1/a", 2)]
    assert store.delivered("a1/1/a", "w1", T0 + 61) is False  # no longer w1's
    assert store.delivered("a1/1/a", "w3", T0 + 61) is True
    assert store.delivered("a1/1/a", "w3", T0 + 62) is False  # once
    assert [n.key for n in store.claim("w4", now=T0 + HOUR, until=T0 + 2 * HOUR)] == [
        "a1/1/b",
        "a1/1/c",
        "a1/1/d",
        "a1/1/later",
    ]
    delivered = store.notifications(alert_id="a1", limit=10)
    assert {n.key: n.delivered_at for n in delivered}["a1/1/a"] == T0 + 61


def test_failed_is_retried_at_its_time_and_only_by_its_claimer(store: Store) -> None:
    store.fire(alert("a1"))
    store.enqueue("a1", 1, [note("a1", 1, "hook")], T0)
    store.claim("w1", now=T0, until=T0 + 60)
    assert store.failed("a1/1/hook", "w2", error="nope", retry_at=T0 + 30) is False
    assert store.failed("a1/1/hook", "w1", error="HTTP 503", retry_at=T0 + 30) is True
    assert store.failed("a1/1/hook", "w1", error="again", retry_at=T0 + 40) is False  # unclaimed
    assert store.claim("w2", now=T0 + 29, until=T0 + 90) == []
    (retry,) = store.claim("w2", now=T0 + 30, until=T0 + 90)
    assert (retry.attempts, retry.last_error, retry.next_attempt_at) == (2, "HTTP 503", T0 + 30)
    assert store.delivered("a1/1/hook", "w2", T0 + 31) is True
    assert store.claim("w3", now=T0 + DAY, until=T0 + DAY + 1) == []


def test_a_dead_letter_ends_once_and_is_never_claimed_again(store: Store) -> None:
    store.fire(alert("a1"))
    store.enqueue("a1", 1, [note("a1", 1, "gone"), note("a1", 1, "mail", created_at=T0 + 1)], T0)
    store.claim("w1", now=T0, until=T0 + 60)
    why = "channel 'gone' was deleted: not delivered, not tried again"
    assert store.dead("a1/1/gone", "w2", at=T0 + 5, reason=why) is False  # not w2's
    assert store.dead("a1/1/gone", "w1", at=T0 + 5, reason=why) is True
    assert store.dead("a1/1/gone", "w1", at=T0 + 6, reason="again") is False  # once
    assert store.delivered("a1/1/gone", "w1", T0 + 7) is False  # final
    assert store.failed("a1/1/gone", "w1", error="x", retry_at=T0 + 8) is False
    assert store.release_claims("w1") == 1  # the mail row only
    assert store.dead("a1/1/mail", "w1", at=T0 + 9, reason=why) is False  # given back
    assert [n.key for n in store.claim("w3", now=T0 + DAY, until=T0 + DAY + 60)] == ["a1/1/mail"]
    assert store.delivered("a1/1/mail", "w3", T0 + DAY + 1) is True
    assert store.claim("w4", now=T0 + 2 * DAY, until=T0 + 2 * DAY + 60) == []
    (dead,) = store.notifications(state="dead")
    assert (dead.key, dead.state, dead.dead_at, dead.last_error) == (
        "a1/1/gone",
        "dead",
        T0 + 5,
        why,
    )
    assert (dead.attempts, dead.delivered_at) == (1, None)
    by_state = {
        state: [n.key for n in store.notifications(alert_id="a1", state=state)]
        for state in ("pending", "delivered", "dead")
    }
    assert by_state == {"pending": [], "delivered": ["a1/1/mail"], "dead": ["a1/1/gone"]}
    assert store.notifications(alert_id="other", state="dead") == []
    store.enqueue("a1", 2, [note("a1", 2, "mail", at=T0 + DAY)], T0 + DAY)
    assert [n.state for n in store.notifications()] == ["pending", "delivered", "dead"]
    assert [n.key for n in store.notifications(state="pending", limit=1)] == ["a1/2/mail"]


# -- heartbeats and reopening ----------------------------------------------------------------------


def test_heartbeats_keep_the_latest_time_per_service(store: Store) -> None:
    assert store.heartbeats() == {}
    store.heartbeat("evaluator", T0 + 5)
    store.heartbeat("evaluator", T0 + 3)  # late and out of order: the later one stands
    store.heartbeat("dispatcher", T0)
    assert store.heartbeats() == {"evaluator": T0 + 5, "dispatcher": T0}


def test_alerts_and_the_outbox_survive_a_reopen(store_url: str, store: Store) -> None:
    if store_url.startswith("memory"):
        pytest.skip("memory:// keeps nothing across a reopen, by design")
    store.reserve(hold("lease", 300), T0)
    store.fire(alert("a1"))
    store.enqueue("a1", 1, [note("a1", 1, "mail")], T0)
    store.heartbeat("evaluator", T0)
    store.close()
    again = open_store(store_url)
    try:
        again.adjust("lease", 600, T0 + DAY, T0 + 1)  # its lines were stored with the hold
        assert f"budget:b:0.8:{T0}" in ids(again)
        assert again.alert("a1") == alert("a1", rounds=1, notified_at=T0)
        assert [n.key for n in again.notifications()] == ["a1/1/mail"]
        assert again.heartbeats() == {"evaluator": T0}
    finally:
        again.close()


# -- races across processes ------------------------------------------------------------------------

EACH = 30  # spends each process makes
COST = 10  # 4 x 30 x 10 = 1,200: every line of a 1,000 limit is crossed
ROLL_SPAN = 4 * HOUR
shared_url = test_control_plane.shared_url  # the fixture: a URL several processes share


ROLL_BEFORE = 400  # spent in the rolling window's earlier bucket before the race
ROLL_NOW = T0 + HOUR


def _around_the_lines(store: Store, i: int) -> tuple[str, int, Any]:
    """Spend around the lines of a calendar and a rolling budget: records in batches of one
    to three, and holds committed above their estimate."""
    done = 0
    j = 0
    slots = (slot("cal"), slot("roll", bucket=ROLL_NOW, span=ROLL_NOW - ROLL_SPAN))
    while done < EACH:
        bucket = ROLL_NOW
        rid = f"p{i}-{j}"
        if j % 3 == 2:
            store.reserve(hold(rid, COST // 2, *slots), T0 + j)
            store.commit(rid, spend(rid, COST, *slots, at=bucket + j), T0 + j)
            done += 1
        else:
            n = min(1 + j % 3, EACH - done)
            store.record([spend(f"{rid}-{k}", COST, *slots, at=bucket + j) for k in range(n)])
            done += n
        j += 1
    return ("done", i, done)


def _enqueue_round(store: Store, i: int) -> tuple[str, int, Any]:
    won = [r for r in (1, 2) if store.enqueue("a1", r, [note("a1", r, f"c{i}")], T0 + i)]
    return ("done", i, won)


def _claim_all(store: Store, i: int) -> tuple[str, int, Any]:
    keys: list[str] = []
    while batch := store.claim(f"w{i}", now=T0, until=T0 + DAY, limit=3):
        keys += [n.key for n in batch]
        for n in batch:
            assert store.delivered(n.key, f"w{i}", T0 + 1)
    return ("done", i, keys)


@pytest.mark.slow
def test_processes_spending_around_the_lines_raise_each_line_exactly_once(
    shared_url: str,
) -> None:
    earlier = slot("roll", bucket=T0, span=T0 - ROLL_SPAN)
    with_store(shared_url, lambda s: s.record([spend("before", ROLL_BEFORE, earlier)]))  # type: ignore[arg-type, return-value]
    reports = race(shared_url, _around_the_lines)
    assert sum(r[2] for r in reports) == PROCESSES * EACH

    def check(store: Store) -> None:
        used = store.balance(slot("cal")).used
        assert used == PROCESSES * EACH * COST
        found = ids(store)
        cal = [a for a in found if a.startswith("budget:cal:")]
        assert cal == [f"budget:cal:{x.fraction}:{T0}" for x in LINES]
        roll = [a for a in found if a.startswith("budget:roll:")]
        assert roll == [f"budget:roll:{x.fraction}:{ROLL_NOW}" for x in LINES]

    with_store(shared_url, check)


@pytest.mark.slow
def test_of_evaluators_enqueueing_the_same_round_one_wins_each(shared_url: str) -> None:
    with_store(shared_url, lambda s: s.fire(alert("a1")))  # type: ignore[arg-type, return-value]
    reports = race(shared_url, _enqueue_round)
    wins = sorted(r for rep in reports for r in rep[2])
    assert wins == [1, 2]

    def check(store: Store) -> None:
        assert store.alert("a1").rounds == 2  # type: ignore[union-attr]
        assert len(store.notifications()) == 2

    with_store(shared_url, check)


@pytest.mark.slow
def test_concurrent_claims_never_take_the_same_row_and_together_take_all(
    shared_url: str,
) -> None:
    total = 120

    def fill(store: Store) -> None:
        store.fire(alert("a1"))
        store.enqueue("a1", 1, [note("a1", 1, f"c{k:03}") for k in range(total)], T0)

    with_store(shared_url, fill)
    reports = race(shared_url, _claim_all)
    taken = [k for r in reports for k in r[2]]
    assert len(taken) == len(set(taken)) == total

    def check(store: Store) -> None:
        rows = store.notifications(limit=10_000)
        assert all(n.delivered_at is not None and n.attempts == 1 for n in rows)

    with_store(shared_url, check)
