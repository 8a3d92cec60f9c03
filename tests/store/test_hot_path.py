"""What the lean per-call path puts off or builds another way still gives the same answers.

The in-memory store adds events to its rollups when they are read (or a few thousand wait),
not in the write; a gate looks through the holds it remembers only when as many again were
taken; the hot path builds events positionally. Each is checked here against the plain way.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

import spendgate.holds
import spendgate.store.memory
from spendgate import Gate
from spendgate.binding import EventDetails
from spendgate.config import parse
from spendgate.events import DETAIL_FIELDS, Details, Event, fingerprint, new_event
from spendgate.rollups import DAY, tally_of
from spendgate.store.base import EventWrite
from spendgate.store.memory import MemoryStore
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def spend(i: int, rng: random.Random) -> Event:
    at = START + timedelta(seconds=rng.randrange(3 * 86_400))
    return Event(
        f"e{i}",
        at,
        rng.choice(["maps", "enrich"]),
        rng.choice(["paid", "free"]),
        rng.choice([None, 0, rng.randrange(1, 10**9)]),
        fingerprint(i),
        paid=rng.random() < 0.5,
        cache_hits=rng.choice([0, 0, 3]),
        quality_score=rng.choice([None, 0.5]),
    )


@pytest.mark.parametrize("wait", [7, 4096])
def test_rollups_read_between_writes_count_every_event_once(
    monkeypatch: pytest.MonkeyPatch, wait: int
) -> None:
    """Reads at random points between writes (and folds when `wait` events queue) see
    exactly the sums of the events written so far, by day, service and source."""
    monkeypatch.setattr(spendgate.store.memory, "_UNROLLED_MAX", wait)
    rng = random.Random(wait)
    store = MemoryStore()
    written: list[Event] = []
    days = [(to_micros(START) - to_micros(START) % DAY + d * DAY,) for d in range(4)]
    spans = [(lo, lo + DAY) for (lo,) in days]
    for i in range(600):
        batch = [spend(i * 3 + k, rng) for k in range(rng.randrange(1, 4))]
        store.record([EventWrite(e) for e in batch])
        written += batch
        if rng.random() < 0.05 or i == 599:
            got = {(d, sv, so): t for d, sv, so, t in store.tallies(spans)}
            want = {}
            for d, (lo, hi) in enumerate(spans):
                for sv in ("maps", "enrich"):
                    for so in ("paid", "free"):
                        mine = [
                            (e, e.cost)
                            for e in written
                            if e.service == sv and e.source == so and lo <= to_micros(e.time) < hi
                        ]
                        if mine:
                            want[(d, sv, so)] = tally_of(mine)
            assert got == want
    firsts = store.first_minutes()
    assert set(firsts) == {"maps", "enrich"}


def test_a_gate_looks_through_its_holds_only_when_as_many_again_were_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Holds whose callers never settled them are forgotten once they expire, but a gate
    holding many pending ones does not look through them all on every `reserve()`."""
    monkeypatch.setattr(spendgate.holds, "_PRUNE_AT", 4)
    clock = FrozenClock(START)
    config = parse(
        {
            "sources": {"paid": {"price": "0.01/request"}},
            "budgets": [{"name": "daily", "limit": "100"}],
        }
    )
    gate = Gate.open("memory://", config=config, clock=clock)
    holds = gate._holds  # the gate's own record of its holds, looked at from outside

    def take(ttl: float) -> str:
        decision = gate.reserve("svc", "paid", ttl=ttl)
        assert decision.reservation_id is not None
        return decision.reservation_id

    short = [take(1) for _ in range(3)]
    long = [take(3600) for _ in range(3)]
    # The 5th hold found 4 remembered: it looked (none had expired), and the next look
    # waits until twice as many are remembered.
    assert (len(holds._open), holds._prune_at) == (6, 8)
    clock.advance(2)  # the short holds expire
    take(3600)
    take(3600)
    assert set(short) <= set(holds._open)  # not looked through on every call
    take(3600)  # 8 remembered: this one looks, and forgets the 3 that expired
    assert set(short).isdisjoint(holds._open)
    assert set(long) <= set(holds._open)
    assert (len(holds._open), holds._prune_at) == (6, 10)
    gate.close()


def test_an_event_built_positionally_equals_one_built_by_name() -> None:
    """`new_event` puts each detail where `Event` has it (also when every one is given)."""
    details = Details.parse(
        {
            "success": False,
            "failure_reason": "timeout",
            "sources_used": ["a", "b"],
            "free_sources_attempted": ["a"],
            "paid_apis_used": ["b"],
            "fallbacks_triggered": [{"source": "a", "reason": "down"}],
            "cache_hits": 2,
            "batch_processing": True,
            "quality_score": 0.9,
            "processing_time": 1.5,
            "image_resolution": "1024x1024",
            "enhancement_applied": True,
            "completeness_score": 0.7,
            "free_sources_success_rate": 0.25,
            "cache_hit": True,
        }
    )
    head = ("r1", START, "svc", "src", 5, "fp", {}, True)
    tail = ({"team": "x"}, "v2", "h1", True)
    by_name = Event(
        *head,
        **{name: getattr(details, name) for name in DETAIL_FIELDS},
        labels=tail[0],
        price_version=tail[1],
        reservation_id=tail[2],
        emergency=tail[3],
    )
    assert new_event(head, details, tail) == by_name
    assert new_event(head, Details(), tail) == Event(
        *head, labels=tail[0], price_version="v2", reservation_id="h1", emergency=True
    )
    assert EventDetails().details == {}
