"""The second seed's `usage_monitoring` on every backend: the SQL views and the memory
store's Python rule give the same rows for the same events (which events count, on which
trading date, summed how)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spendgate.store.stream_days import StreamDay
from spendgate.testing import FrozenClock
from tests.integrations.test_streams import stream_gate

JAN5 = datetime(2026, 1, 5, 12, tzinfo=UTC)
USAGE = {"bytes": 1000, "seconds": "1.5", "events": 3}


def test_every_backend_counts_the_same_rows(store_url: str) -> None:
    clock = FrozenClock(JAN5 + timedelta(days=10))
    with stream_gate(clock, store_url) as gate:

        def record(when: datetime, service: str = "mbo_stream", **options: object) -> None:
            gate.record(service, options.pop("source", "databento_mbo"), time=when, **options)  # type: ignore[arg-type]

        record(JAN5, units=USAGE)  # no trading date: its UTC date
        record(JAN5, units=USAGE, labels={"trading_date": "2026-01-06"})  # the meter's date
        record(JAN5, units=USAGE, labels={"trading_date": "monday"})  # not a date: UTC date
        record(JAN5, cost="0.50")  # no stream usage: not in the table
        record(JAN5, source="maps", labels={"trading_date": "2026-01-05"})  # another source
        record(
            JAN5 + timedelta(hours=1), "other", units={"bytes": 7, "seconds": 0}
        )  # another service
        record(JAN5 - timedelta(days=40), units=USAGE, labels={"trading_date": "2026-01-07"})
        record(JAN5 - timedelta(days=3), units=USAGE)  # before `since`
        store = gate.store
        days = store.stream_days("2026-01-04", "databento_mbo", None)
        first = min(d.id for d in days)
        cost = 2 * gate.events()[0].cost  # type: ignore[operator]
        hours = 3 / 3600
        assert [
            (d.id - first, d.date, d.service, d.events_processed, d.data_bytes, d.cost)
            for d in days
        ] == [
            (1, "2026-01-06", "mbo_stream", 3, 1000, cost // 2),
            (0, "2026-01-05", "mbo_stream", 6, 2000, cost),
            (5, "2026-01-05", "other", 0, 7, days[2].cost),
        ]
        assert [d.connection_time for d in days] == [hours / 2, hours, 0.0]
        assert days[1].created_at == JAN5
        assert store.stream_days("2026-01-04", "databento_mbo", "other") == [days[2]]
        # The trading date counts, but only from two UTC days before `since`: the far
        # labelled event (40 days before, dated 2026-01-07) counts on no backend.
        assert store.stream_days("2026-01-07", "databento_mbo", None) == []
        assert all(isinstance(d, StreamDay) for d in days)
