"""The ledger's SQL: every statement on events, reservations, budget buckets, quota counters
and rollups, written once for SQLite and PostgreSQL (the control plane's are in `rows.py`,
the alerts' and the outbox's in `alerting.py`)."""

from __future__ import annotations

from spendgate.money import MAX_TOTAL
from spendgate.rollups import DAY, MINUTE
from spendgate.store.rows import EVENT_COLUMNS, rollup_upsert


class Statements:
    """The ledger's statements in one dialect: `mark` is the driver's placeholder, `greatest`
    the larger-of function (SQLite's `max`, PostgreSQL's `GREATEST`), `for_update` what
    makes a read lock the rows it returns (nothing on SQLite, whose writers take turns).

    Every parameter is positional; a value a statement uses twice is passed twice.
    """

    def __init__(self, mark: str, *, greatest: str, for_update: str = "") -> None:
        def marks(n: int) -> str:
            return ", ".join([mark] * n)

        columns = ", ".join(EVENT_COLUMNS)
        self.mark = mark
        self.insert_event = f"INSERT INTO events ({columns}) VALUES ({marks(len(EVENT_COLUMNS))})"
        self.insert_event_once = f"{self.insert_event} ON CONFLICT (request_id) DO NOTHING"
        self.events = (
            f"SELECT {columns} FROM events WHERE ts >= {mark} AND ts < {mark} "
            f"ORDER BY ts, id LIMIT {mark}"
        )
        self.event = f"SELECT {columns} FROM events WHERE request_id = {mark}"
        # The located events of a span (`ix_events_located`), summed as the rollups sum.
        self.location_tallies = (
            "SELECT location, COUNT(*), COALESCE(SUM(cost), 0), "
            "SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN paid THEN 1 ELSE 0 END), SUM(CASE WHEN success THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN success AND NOT paid THEN 1 ELSE 0 END), SUM(cache_hits), "
            "SUM(CASE WHEN cache_hits > 0 THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN batch_processing THEN 1 ELSE 0 END), "
            "COALESCE(SUM(CASE WHEN batch_processing THEN cost ELSE 0 END), 0), "
            "COALESCE(SUM(quality_score), 0), COUNT(quality_score), "
            "COALESCE(SUM(processing_time), 0), COUNT(processing_time) "
            f"FROM events WHERE location IS NOT NULL AND ts >= {mark} AND ts < {mark} "
            "GROUP BY location"
        )
        self.stored = f"SELECT fingerprint, cost FROM events WHERE request_id = {mark}"
        window = f"WHERE budget = {mark} AND bucket BETWEEN {mark} AND {mark}"
        self.usage = f"SELECT COALESCE(SUM(spent + reserved), 0) FROM budget_buckets {window}"
        self.balance = (
            "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0), "
            f"COALESCE(SUM(overshoot), 0) FROM budget_buckets {window}"
        )
        row = f"WHERE budget = {mark} AND bucket = {mark}"
        old = "budget_buckets"  # the row as it stood, in an upsert's DO UPDATE
        # A hold on a calendar window: create the row or add to it, each branch only within
        # the limit (the cap, within `MAX_TOTAL`: `accounting.hold_limit`), so that no row ever
        # goes over its cap. (budget, bucket, amount, amount, limit, limit)
        self.hold = (
            "INSERT INTO budget_buckets (budget, bucket, spent, reserved, overshoot) "
            f"SELECT {mark}, {mark}, 0, {mark}, 0 WHERE {mark} <= CAST({mark} AS BIGINT) "
            "ON CONFLICT (budget, bucket) DO UPDATE SET "
            f"reserved = {old}.reserved + excluded.reserved "
            f"WHERE {old}.spent + {old}.reserved + excluded.reserved <= CAST({mark} AS BIGINT) "
            "RETURNING spent + reserved"
        )
        self.ensure_bucket = (
            f"INSERT INTO budget_buckets (budget, bucket) VALUES ({mark}, {mark}) "
            "ON CONFLICT DO NOTHING"
        )
        # A hold on a rolling window: the cap applies to the sum over the window's buckets,
        # which must not change under this statement (`_lock_budget`).
        # (amount, budget, bucket, budget, span, bucket, amount, limit)
        self.hold_rolling = (
            f"UPDATE budget_buckets SET reserved = reserved + {mark} {row} AND "
            f"(SELECT SUM(spent + reserved) FROM budget_buckets {window}) "
            f"+ {mark} <= CAST({mark} AS BIGINT)"
        )
        self.settle = (
            f"UPDATE budget_buckets SET reserved = reserved - {mark}, spent = spent + {mark}, "
            f"overshoot = overshoot + {mark} {row}"
        )
        # A settle that adds to usage (an actual above its hold), only within `MAX_TOTAL`.
        self.settle_bounded = f"{self.settle} AND spent + reserved + {mark} <= {MAX_TOTAL}"
        self.bucket_exists = f"SELECT 1 FROM budget_buckets {row}"
        self.unhold = f"UPDATE budget_buckets SET reserved = reserved - {mark} {row}"
        # Spend no hold covered, on a bucket row created beforehand, only within `MAX_TOTAL`
        # (a row left alone changes no row).
        self.charge = (
            f"UPDATE budget_buckets SET spent = spent + {mark}, overshoot = overshoot + {mark} "
            f"{row} AND spent + reserved + {mark} <= {MAX_TOTAL}"
        )
        # Spend no hold covered, on a calendar window, in one statement:
        # `accounting.overshoot_of` applied to the row as it stood; RETURNING sees the row
        # after, and answers the part of this charge above the cap and the usage after. A row
        # whose usage would pass `MAX_TOTAL` is left alone and nothing is returned.
        # (budget, bucket, amount, first, cap, cap, cap, amount, cap)
        used = f"{old}.spent + {old}.reserved"
        self.charge_calendar = (
            "INSERT INTO budget_buckets (budget, bucket, spent, reserved, overshoot) "
            f"VALUES ({marks(3)}, 0, {mark}) "
            f"ON CONFLICT (budget, bucket) DO UPDATE SET spent = {old}.spent + excluded.spent, "
            f"overshoot = {old}.overshoot + {greatest}(0, {used} + excluded.spent - {mark}) "
            f"- {greatest}(0, {used} - {mark}) "
            f"WHERE {used} + excluded.spent <= {MAX_TOTAL} "
            f"RETURNING {greatest}(0, spent + reserved - {mark}) "
            f"- {greatest}(0, spent + reserved - {mark} - {mark}), spent + reserved"
        )
        # A budget counted again from the ledger (`accounting.Recount`): its rows from the
        # span's start on replaced, the pending holds read and given their new slots.
        self.drop_buckets = f"DELETE FROM budget_buckets WHERE budget = {mark} AND bucket >= {mark}"
        self.put_bucket = (
            "INSERT INTO budget_buckets (budget, bucket, spent, reserved, overshoot) "
            f"VALUES ({marks(5)})"
        )
        self.pending = (
            "SELECT id, service, source, labels, amount, created_at, emergency, slots "
            "FROM reservations WHERE state = 'pending'"
        )
        self.reslot = f"UPDATE reservations SET slots = {mark} WHERE id = {mark}"
        self.insert_reservation = (
            "INSERT INTO reservations (id, state, fingerprint, service, source, amount, "
            "emergency, created_at, expires_at, slots, labels) "
            f"VALUES ({mark}, 'pending', {marks(9)}) ON CONFLICT (id) DO NOTHING"
        )
        self.reservation_fingerprint = (
            f"SELECT fingerprint, state FROM reservations WHERE id = {mark}"
        )
        self.open_reservation = (
            f"SELECT state, amount, slots FROM reservations WHERE id = {mark} {for_update}"
        )
        self.reservation = (
            "SELECT state, amount, service, source, created_at, expires_at, emergency, "
            f"actual, labels FROM reservations WHERE id = {mark}"
        )
        self.committed = (
            f"UPDATE reservations SET state = 'committed', actual = {mark}, "
            f"settled_at = {mark} WHERE id = {mark}"
        )
        self.released = (
            f"UPDATE reservations SET state = 'released', settled_at = {mark} WHERE id = {mark}"
        )
        self.adjusted = (
            f"UPDATE reservations SET amount = amount + {mark}, expires_at = {mark} "
            f"WHERE id = {mark}"
        )
        self.draw = (
            f"UPDATE reservations SET amount = amount - {mark} "
            f"WHERE id = {mark} AND state = 'pending' RETURNING slots"
        )
        pending_due = f"state = 'pending' AND expires_at <= {mark}"
        self.any_expired = f"SELECT 1 FROM reservations WHERE {pending_due} LIMIT 1"
        # Claiming the rows and returning their holds is one step: a second sweeper running
        # at the same time waits on the row locks, then finds them no longer pending.
        self.expire = (
            f"UPDATE reservations SET state = 'expired', settled_at = {mark} "
            f"WHERE {pending_due} RETURNING amount, slots"
        )
        quota = f"WHERE source = {mark} AND unit = {mark} AND period = {mark}"
        self.quota_create = (
            "INSERT INTO quota_usage (source, unit, period, used) "
            f"VALUES ({marks(3)}, '0') ON CONFLICT DO NOTHING"
        )
        self.quota_used = f"SELECT used FROM quota_usage {quota} {for_update}"
        self.quota_set = f"UPDATE quota_usage SET used = {mark} {quota}"
        self.rollup = rollup_upsert(mark)
        # Each service's first minute: its first day row, then that day's minute rows (index
        # range scans of the rollups' primary key, whatever the number of events).
        self.first_minutes = (
            "SELECT r.service, MIN(r.bucket) FROM rollups r JOIN "
            f"(SELECT service, MIN(bucket) AS day0 FROM rollups WHERE step = {DAY} "
            "GROUP BY service) f ON r.service = f.service "
            f"WHERE r.step = {MINUTE} AND r.bucket >= f.day0 AND r.bucket < f.day0 + {DAY} "
            "GROUP BY r.service"
        )
