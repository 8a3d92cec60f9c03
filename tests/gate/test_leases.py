"""Budget leases: local authorization from a slice of a hard budget, on every backend.

The store's invariant never changes (a lease is a hold): `spent + reserved <= limit` at every
step, and after the holders close, the budget holds exactly what was spent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spendgate import Gate, to_nanos
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.settings import Config
from spendgate.store import open_store
from spendgate.testing import FrozenClock
from tests.conftest import in_a_forked_child

LIMIT = "10.00"


def lease_config(limit: str = LIMIT, **lease: object) -> Config:
    return parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}, "free_api": {"price": "free"}},
            "budgets": [{"name": "daily", "limit": limit, "lease": lease or True}],
        }
    )


def figures(gate: Gate) -> tuple[int, int]:
    status = gate.status()[0]
    return status.spent_nanos, status.reserved_nanos


@pytest.fixture
def leased(store_url: str, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(store_url, config=lease_config(), clock=clock)
    yield g
    g.close()


def test_a_lease_is_a_hold_and_calls_draw_from_it_without_the_store(leased: Gate) -> None:
    first = leased.reserve("svc", "paid_api", "0.10")
    assert first.approved
    # The lease took 10% of what remained: $1.00 is held, whatever the call needed.
    assert figures(leased) == (0, to_nanos("1.00"))
    assert leased.authorize("svc", "paid_api", "0.10").approved  # the lease covers it
    for _ in range(9):
        decision = leased.reserve("svc", "paid_api", "0.10")
        assert decision.approved
        assert decision.reservation_id is not None
    assert figures(leased) == (0, to_nanos("1.00"))  # no new hold in the store
    # The lease is used up; the store, asked directly, still has room.
    assert leased.authorize("svc", "paid_api", "0.50").approved
    assert leased.store.reservation(first.reservation_id or "") is None  # never stored
    # Decided out of the lease or by the store, every answer is counted.
    assert leased.decisions().counts == {("svc", "approved"): 12}


def test_commit_moves_the_hold_out_of_the_lease_into_spent(leased: Gate) -> None:
    decision = leased.reserve("svc", "paid_api", "0.10")
    assert decision.reservation_id is not None
    result = leased.commit(decision.reservation_id, "0.07")
    assert result.cost == to_nanos("0.07")
    assert result.overshoot == 0
    spent, reserved = figures(leased)
    # The lease gave up the 0.10 held; 0.03 of it went back to the budget.
    assert (spent, reserved) == (to_nanos("0.07"), to_nanos("0.90"))
    event = leased.event(decision.reservation_id)
    assert event is not None
    assert event.cost == to_nanos("0.07")
    assert event.reservation_id == decision.reservation_id


def test_release_returns_the_hold_to_the_lease(leased: Gate) -> None:
    one = leased.reserve("svc", "paid_api", "0.60")  # a $1.00 lease, $0.40 left in it
    assert one.reservation_id is not None
    # Topped up by 10% of the $9.00 that remained: $1.90 held in all, $1.30 free in it.
    assert leased.reserve("svc", "paid_api", "0.50").approved
    assert figures(leased) == (0, to_nanos("1.90"))
    assert leased.release(one.reservation_id) == "released"
    assert leased.reserve("svc", "paid_api", "1.40").approved  # $0.80 + $0.60 given back
    assert figures(leased) == (0, to_nanos("1.90"))


def test_close_returns_every_lease(store_url: str, clock: FrozenClock) -> None:
    gate = Gate.open(store_url, config=lease_config(), clock=clock)
    ids = []
    for _ in range(5):
        d = gate.reserve("svc", "paid_api", "0.25")
        assert d.reservation_id is not None
        ids.append(d.reservation_id)
    for rid in ids[:3]:
        gate.commit(rid)
    gate.close()
    if store_url.startswith("memory"):
        return  # nothing to reopen
    with Gate.open(store_url, config=lease_config(), clock=clock) as other:
        assert figures(other) == (to_nanos("0.75"), 0)


def test_slices_shrink_and_the_last_percent_is_decided_centrally(leased: Gate) -> None:
    spent = 0
    while True:
        d = leased.reserve("svc", "paid_api", "0.03")
        if not d.approved:
            break
        assert d.reservation_id is not None
        leased.commit(d.reservation_id)
        spent += to_nanos("0.03")
        s, r = figures(leased)
        assert s + r <= to_nanos(LIMIT)
    # Used to within one call of the limit: the lease was handed back before the end.
    assert to_nanos(LIMIT) - spent < to_nanos("0.03")
    assert figures(leased) == (spent, 0)


def test_two_gates_share_the_budget_through_their_leases(
    store_url: str, clock: FrozenClock
) -> None:
    if store_url.startswith("memory"):
        pytest.skip("two gates share a store only through a file or server")
    one = Gate.open(store_url, config=lease_config(), clock=clock)
    two = Gate.open(store_url, config=lease_config(), clock=clock)
    try:
        approved = 0
        for i in range(2000):
            gate = one if i % 2 else two
            d = gate.reserve("svc", "paid_api", "0.01")
            if d.approved:
                assert d.reservation_id is not None
                gate.commit(d.reservation_id)
                approved += 1
                s, r = figures(one)
                assert s + r <= to_nanos(LIMIT)
        assert approved == 1000
    finally:
        one.close()
        two.close()


def test_a_lease_left_behind_comes_back_when_it_expires(store_url: str, clock: FrozenClock) -> None:
    if store_url.startswith("memory"):
        pytest.skip("two gates share a store only through a file or server")
    config = lease_config(ttl="30s", share="50%")
    crashed = Gate.open(store_url, config=config, clock=clock)
    assert crashed.reserve("svc", "paid_api", "0.10").approved  # takes $5.00, then "dies"
    crashed._holds.leases = None  # its leases are never returned: as after kill -9
    other = Gate.open(store_url, config=config, clock=clock)
    try:
        assert not other.reserve("svc", "paid_api", "5.01", reservation_id="big").approved
        clock.advance(timedelta(seconds=31))
        assert other.reserve("svc", "paid_api", "9.00", reservation_id="after").approved
    finally:
        other.close()


def test_idle_leases_are_returned_and_busy_ones_renewed(leased: Gate, clock: FrozenClock) -> None:
    assert leased.leases is not None
    busy = leased.reserve("svc", "paid_api", "0.10")
    assert busy.reservation_id is not None
    (lease,) = leased.leases._current.values()
    clock.advance(timedelta(seconds=40))  # past half its TTL: renewed while a hold is out
    leased.leases.tidy()
    info = leased.store.reservation(lease.lease_id)
    assert info is not None
    assert info.state == "pending"
    assert info.expires_at > int(clock().timestamp() * 1_000_000) + 50_000_000
    leased.commit(busy.reservation_id)
    clock.advance(timedelta(seconds=11))  # idle now: handed back
    leased.leases.tidy()
    assert not leased.leases._current
    assert figures(leased) == (to_nanos("0.10"), 0)


def test_a_local_hold_past_its_ttl_is_given_back_and_booked_if_committed(
    store_url: str, clock: FrozenClock
) -> None:
    leased = Gate.open(store_url, config=lease_config(idle="60s"), clock=clock)
    assert leased.leases is not None
    d = leased.reserve("svc", "paid_api", "0.40", ttl="10s")
    assert d.reservation_id is not None
    clock.advance(timedelta(seconds=11))
    leased.leases.tidy()
    (lease,) = leased.leases._current.values()
    assert lease.available == to_nanos("1.00")  # the hold came back to the lease
    result = leased.commit(d.reservation_id)
    assert result.hold_expired
    spent, _ = figures(leased)
    assert spent == to_nanos("0.40")  # booked truthfully, as unreserved spend
    leased.close()


def test_a_new_window_takes_a_new_lease(leased: Gate, clock: FrozenClock) -> None:
    d = leased.reserve("svc", "paid_api", "0.10")
    assert d.reservation_id is not None
    clock.advance(timedelta(days=1))
    e = leased.reserve("svc", "paid_api", "0.10")
    assert e.approved
    assert leased.leases is not None
    (lease,) = leased.leases._current.values()
    # The old lease drains: its one hold is still out, and commits into today's window.
    leased.commit(d.reservation_id)
    assert figures(leased)[0] == to_nanos("0.10")
    assert lease.slot.bucket == int(clock().replace(hour=0).timestamp() * 1_000_000)


def test_a_caller_chosen_id_is_decided_centrally(leased: Gate) -> None:
    d = leased.reserve("svc", "paid_api", "0.10", reservation_id="mine")
    assert d.approved
    info = leased.store.reservation("mine")
    assert info is not None
    assert info.state == "pending"


def test_free_calls_and_unleased_budgets_are_untouched(store_url: str, clock: FrozenClock) -> None:
    with Gate.open(store_url, config=lease_config(), clock=clock) as gate:
        assert gate.reserve("svc", "free_api").approved
        assert figures(gate) == (0, 0)


@pytest.mark.parametrize(
    ("lease", "field"),
    [
        ({"share": "150%"}, "budgets.daily.lease.share"),
        ({"share": 0}, "budgets.daily.lease.share"),
        ({"floor": "abc"}, "budgets.daily.lease.floor"),
        ({"ttl": "-5s"}, "budgets.daily.lease.ttl"),
        ({"idle": "soon"}, "budgets.daily.lease.idle"),
        ({"size": 3}, "budgets.daily.lease.size"),
        ("yes", "budgets.daily.lease"),
    ],
)
def test_bad_lease_settings_name_the_field(lease: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse(
            {
                "sources": {"paid_api": {"price": "0.01/request"}},
                "budgets": [{"name": "daily", "limit": "1", "lease": lease}],
            }
        )
    assert err.value.field == field


def test_a_soft_budget_cannot_be_leased() -> None:
    with pytest.raises(ValidationError, match="hard budgets only"):
        parse(
            {
                "sources": {"paid_api": {"price": "0.01/request"}},
                "budgets": [{"name": "daily", "limit": "1", "hard": False, "lease": True}],
            }
        )


def _child_reserves(gate: Gate, out: Any) -> None:
    assert gate.leases is not None
    out.put((len(gate.leases._current), gate.reserve("svc", "paid_api", "0.10").approved))
    gate.close()


def test_a_forked_child_does_not_inherit_its_parents_leases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    clock = FrozenClock()
    gate = Gate.open(url, config=lease_config(), clock=clock)
    assert gate.reserve("svc", "paid_api", "0.10").approved
    inherited, approved = in_a_forked_child(_child_reserves, gate)
    assert inherited == 0  # the child took a lease of its own ($0.90) and returned it
    assert approved
    assert figures(gate)[1] == to_nanos("1.00")  # the parent's lease, untouched
    gate.close()


# -- fail closed, fail open ---------------------------------------------------------------------


def test_fail_open_budget_approves_unchecked_and_books_the_call_later(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.db"
    config = parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}},
            "budgets": [{"name": "daily", "limit": "1", "fail_open": True}],
        }
    )
    gate = Gate.open(f"sqlite:///{path}?timeout=0.05", config=config, clock=FrozenClock())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        decision = gate.reserve("svc", "paid_api", "0.10")
        assert decision.approved
        assert "store unreachable" in decision.reason
        assert "fail-open" in decision.reason
        assert gate.outages["approved"] == 1
        assert gate.decisions().counts == {("svc", "approved"): 1}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert decision.reservation_id is not None
    result = gate.commit(decision.reservation_id)
    assert result.cost == to_nanos("0.10")
    assert gate.status()[0].spent_nanos == to_nanos("0.10")
    gate.close()


def test_store_unreachable_at_open_is_a_clear_error() -> None:
    from spendgate.errors import StoreError

    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=1")


# -- a lease holder killed with SIGKILL ---------------------------------------------------------

HOLDER = """
import sys
from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock

config = parse({
    "sources": {"paid_api": {"price": "0.01/request"}},
    "budgets": [{"name": "daily", "limit": "10.00", "lease": {"share": "50%", "ttl": "30s"}}],
})
gate = Gate.open(sys.argv[1], config=config, clock=FrozenClock())
assert gate.reserve("svc", "paid_api", "0.10").approved
print("leased", flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_holders_lease_returns_after_its_ttl(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import signal
    import subprocess
    import sys

    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'killed.db'}"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen(
        [sys.executable, str(script), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "leased"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert holder.returncode == -signal.SIGKILL

    clock = FrozenClock()  # the holder's time: its lease of $5.00 is still live
    with Gate.open(url, config=lease_config(), clock=clock) as other:
        assert figures(other) == (0, to_nanos("5.00"))
        assert not other.reserve("svc", "paid_api", "5.01", reservation_id="too-soon").approved
        clock.advance(timedelta(seconds=31))
        spent = 0
        while (d := other.reserve("svc", "paid_api", "0.25")).approved:
            assert d.reservation_id is not None
            other.commit(d.reservation_id)
            spent += to_nanos("0.25")
        assert spent == to_nanos(LIMIT)  # the dead holder's slice was spent by the others
