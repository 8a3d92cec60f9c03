"""A budget's counter is the spend in its current window and scope, whenever the budget was
created or changed: over the control plane, or by the configuration a gate opens with. On
every backend (the `gate` and `store_url` fixtures)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from spendgate import Gate, to_nanos
from spendgate.binding import CONFIG_ACTOR
from spendgate.budgets import BudgetStatus
from spendgate.config import Config
from spendgate.control import Control
from spendgate.errors import ValidationError
from spendgate.testing import FrozenClock
from tests.conftest import small_config

WEDNESDAY_NOON = datetime(2026, 12, 2, 12, tzinfo=UTC)


def standing(gate: Gate, name: str) -> BudgetStatus:
    (found,) = [s for s in gate.status() if s.budget.name == name]
    return found


def figures(gate: Gate, name: str) -> tuple[int, int, int]:
    """A budget's spent, reserved and overshoot in its current window, nano-units."""
    b = standing(gate, name).balance
    return b.spent, b.reserved, b.overshoot


@pytest.fixture
def spending(gate: Gate, clock: FrozenClock) -> Gate:
    """$5 spent by `scraper` today, $0.50 by `other`, $2 by `scraper` yesterday (under a
    daily budget of $100)."""
    clock.set(WEDNESDAY_NOON)
    Control(gate).patch("budget", "daily", {"limit": "100"}, actor="ops")
    gate.record("scraper", "paid_api", cost="2.00", time=clock() - timedelta(days=1))
    for _ in range(5):
        gate.record("scraper", "paid_api", cost="1.00")
    gate.record("other", "paid_api", cost="0.50", labels={"team": "b"})
    return gate


def test_a_budget_created_after_spend_starts_from_it_and_refuses(spending: Gate) -> None:
    control = Control(spending)
    control.create("budget", "scraper", {"limit": "3", "scope": "service:scraper"}, actor="ops")
    # What it never approved is overshoot: $5 spent against $3.
    assert figures(spending, "scraper") == (to_nanos(5), 0, to_nanos(2))
    decision = spending.reserve("scraper", "paid_api", "0.01")
    assert (decision.status, decision.budget) == ("denied", "scraper")
    assert spending.reserve("other", "paid_api", "0.01").approved


def test_a_new_scope_or_window_is_counted_again(spending: Gate) -> None:
    control = Control(spending)
    control.create("budget", "team", {"limit": "10", "scope": "service:scraper"}, actor="ops")
    control.patch("budget", "team", {"scope": "label:team=b"}, actor="ops")
    assert figures(spending, "team") == (to_nanos("0.50"), 0, 0)
    control.patch("budget", "team", {"scope": "service:scraper", "window": "week"}, actor="ops")
    assert figures(spending, "team") == (to_nanos(7), 0, 0)  # yesterday is in this week
    control.patch("budget", "team", {"window": "rolling", "length": "2h"}, actor="ops")
    assert figures(spending, "team") == (to_nanos(5), 0, 0)
    # A limit changes nothing of the counter.
    control.patch("budget", "team", {"limit": "6"}, actor="ops")
    assert figures(spending, "team") == (to_nanos(5), 0, 0)


def test_a_deleted_budget_comes_back_counted(spending: Gate) -> None:
    control = Control(spending)
    control.create("budget", "scraper", {"limit": "30", "scope": "service:scraper"}, actor="a")
    control.delete("budget", "scraper", actor="a")
    spending.record("scraper", "paid_api", cost="1.00")  # while it is gone
    control.create("budget", "scraper", {"limit": "30", "scope": "service:scraper"}, actor="a")
    assert figures(spending, "scraper") == (to_nanos(6), 0, 0)


def test_holds_in_flight_count_as_reserved_and_settle_on_the_new_counter(
    spending: Gate,
) -> None:
    held = spending.reserve("scraper", "paid_api", "0.30")
    other = spending.reserve("other", "paid_api", "0.10")
    assert held.reservation_id
    assert other.reservation_id
    control = Control(spending)
    control.create("budget", "scraper", {"limit": "9", "scope": "service:scraper"}, actor="a")
    assert figures(spending, "scraper") == (to_nanos(5), to_nanos("0.30"), 0)
    spending.commit(held.reservation_id, "0.20")
    assert figures(spending, "scraper") == (to_nanos("5.20"), 0, 0)
    # Re-scoped onto the other hold: it counts, and its release leaves nothing behind.
    control.patch("budget", "scraper", {"scope": "service:other"}, actor="a")
    assert figures(spending, "scraper") == (to_nanos("0.50"), to_nanos("0.10"), 0)
    spending.release(other.reservation_id)
    assert figures(spending, "scraper") == (to_nanos("0.50"), 0, 0)
    assert figures(spending, "daily") == (to_nanos("5.70"), 0, 0)


def test_a_bad_change_counts_nothing_again(spending: Gate) -> None:
    control = Control(spending)
    control.create("budget", "team", {"limit": "10", "scope": "service:scraper"}, actor="a")
    with pytest.raises(ValidationError, match="scope"):
        control.patch("budget", "team", {"scope": "source:nowhere"}, actor="a")
    assert figures(spending, "team") == (to_nanos(5), 0, 0)
    assert spending.config.budget("team").scope.value == "scraper"


# -- the configuration a gate opens with seeds the store -------------------------------------


def shared(store_url: str) -> str:
    if store_url.startswith("memory"):
        pytest.skip("two gates share a store only through a file or server")
    return store_url


def test_the_configuration_seeds_the_store_and_every_gate_reads_it(
    store_url: str, clock: FrozenClock
) -> None:
    url = shared(store_url)
    configured = small_config("2.00", scope="service:scraper")
    with Gate.open(url, config=configured, clock=clock) as first:
        first.record("scraper", "paid_api", cost="0.40")
        first.record("other", "paid_api", cost="0.10")
    # Without a file (the seed's defaults), a gate reads the store's budgets, not its own.
    with Gate.open(url, clock=clock) as reader:
        assert [b.name for b in reader.config.budgets] == ["daily"]
        assert reader.config.budget("daily").limit == to_nanos(2)
        assert figures(reader, "daily") == (to_nanos("0.40"), 0, 0)
        entries = {(d.kind, d.name): d for d in reader.store.definitions()}
        assert entries[("budget", "daily")].changed_by == CONFIG_ACTOR
        assert ("source", "paid_api") in entries


def test_a_changed_configuration_re_scopes_its_budget_counted_again(
    store_url: str, clock: FrozenClock
) -> None:
    url = shared(store_url)
    with Gate.open(url, config=small_config(scope="service:scraper"), clock=clock) as g:
        g.record("scraper", "paid_api", cost="0.40")
        g.record("other", "paid_api", cost="0.10")
        assert figures(g, "daily") == (to_nanos("0.40"), 0, 0)
    with Gate.open(url, config=small_config(), clock=clock) as g:  # now scope "all"
        assert figures(g, "daily") == (to_nanos("0.50"), 0, 0)
        assert g.conflicts == []
        (entry, *_) = g.store.audit(limit=1)
        assert (entry.actor, entry.action, entry.after and entry.after["scope"]) == (
            CONFIG_ACTOR,
            "update",
            "all",
        )


def test_a_budget_changed_over_the_api_stays_and_the_configuration_is_told(
    store_url: str, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    url = shared(store_url)
    with Gate.open(url, config=small_config(), clock=clock) as g:
        Control(g).patch("budget", "daily", {"limit": "5"}, actor="ops")
    with (
        caplog.at_level(logging.WARNING, "spendgate"),
        Gate.open(url, config=small_config("3.00"), clock=clock) as g,
    ):
        assert g.config.budget("daily").limit == to_nanos(5)
        (conflict,) = g.conflicts
        assert (conflict.kind, conflict.name, conflict.changed_by) == ("budget", "daily", "ops")
        text = str(conflict)
        assert '"limit": "3"' in text
        assert '"limit": "5"' in text
        assert "in effect" in text
        assert text in caplog.text


def test_the_seed_defaults_never_stand_in_for_a_stores_budgets(
    store_url: str, clock: FrozenClock
) -> None:
    url = shared(store_url)
    with Gate.open(url, config=small_config(), clock=clock) as g:
        Control(g).create("budget", "team", {"limit": "1"}, actor="ops")
        Control(g).delete("budget", "daily", actor="ops")
    with Gate.open(url, config=Config.seed(), clock=clock) as g:
        assert [b.name for b in g.config.budgets] == ["team"]


def test_a_scope_that_matches_no_event_is_told(spending: Gate) -> None:
    control = Control(spending)
    made = control.create("budget", "typo", {"limit": "1", "scope": "service:scrapper"}, actor="a")
    (warning,) = made.warnings
    assert "service:scrapper matches no event" in warning
    assert "scraper" in warning  # the services that do have events
    made = control.create("budget", "ok", {"limit": "1", "scope": "service:scraper"}, actor="a")
    assert made.warnings == ()
