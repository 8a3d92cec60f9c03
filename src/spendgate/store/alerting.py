"""Alerts on SQL: the budget lines a spend crosses, found in its own transaction; the alerts
table, the notification outbox and heartbeats, one statement text for SQLite and PostgreSQL
but for the driver's placeholder (as `rows.ControlPlane`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spendgate.accounting import AlertLine, Slot, crossed_lines
from spendgate.money import Nanos, money_text
from spendgate.store.base import Alert, AlertState, Notification, NotificationState
from spendgate.store.rows import MAX_AUDIT_LIMIT, Connection, audit_limit

_NEWEST = 2**62  # after every time: a listing without `before`


Window = tuple[str, int]
"""(budget, bucket): the key of a slot, and of a budget bucket row."""


class Crossings:
    """The alert lines one transaction's changes to budget usage cross: no I/O.

    A backend tells it every change it makes to a bucket's usage (`move`, with the time the
    change happened at), and the usage a statement returned for a slot (`seen`); at the end
    it reads the usage of the slots still `unknown()` and asks for the `alerts()`. Only
    slots with lines are watched, and only budgets of those are kept: a transaction with no
    lines does nothing but a set lookup per change. Before is the usage after less the
    transaction's net change over the window, so one read per slot (none where a statement
    returned the usage) serves a whole batch.
    """

    __slots__ = ("_after", "_budgets", "_moves", "_rising", "_rose", "watched")

    def __init__(self, slots: Iterable[Slot]) -> None:
        self.watched: dict[Window, Slot] = {(s.budget, s.bucket): s for s in slots if s.lines}
        self._budgets = {budget for budget, _ in self.watched}
        self._moves: list[tuple[str, int, Nanos, int]] = []
        self._after: dict[Window, tuple[Nanos, int]] = {}
        self._rising: list[tuple[Slot, list[tuple[int, Nanos, int]], Nanos]] | None = None
        self._rose = False  # a watched bucket's usage went up: without that, no slot rises

    @classmethod
    def of_hold(
        cls, slots: Sequence[Slot], used: Sequence[Nanos], amount: Nanos, at: int
    ) -> Crossings | None:
        """The crossings of a hold of `amount` on every slot at `at`, with each slot's
        window usage `used` before it; `None`, found without building anything, when it
        crosses no line (nearly every hold)."""
        pairs = list(zip(slots, used, strict=True))
        if not any(crossed_lines(s, u, u + amount) for s, u in pairs):
            return None
        crossings = cls(slots)
        crossings.move(slots, amount, at)
        for s, u in pairs:
            crossings.seen(s, u + amount)
        return crossings

    def __bool__(self) -> bool:
        """Whether any slot has lines to watch."""
        return bool(self.watched)

    @property
    def rose(self) -> bool:
        """Whether a change raised a watched bucket's usage: without one, no line was
        crossed and there is nothing to read or book."""
        return self._rose

    def move(self, slots: Iterable[Slot], delta: Nanos, at: int) -> None:
        """`delta` was added (or is about to be) to the usage of each slot's bucket."""
        if delta and self._budgets:
            moved = [(s.budget, s.bucket, delta, at) for s in slots if s.budget in self._budgets]
            if moved:
                self._moves += moved
                self._rose = self._rose or delta > 0
                self._rising = None

    def seen(self, slot: Slot, used: Nanos) -> None:
        """A statement returned `slot`'s window usage, after every `move` told so far."""
        key = (slot.budget, slot.bucket)
        if key in self.watched:
            self._after[key] = (used, len(self._moves))

    def _risen(self) -> list[tuple[Slot, list[tuple[int, Nanos, int]], Nanos]]:
        """The watched slots whose usage this transaction raised, in lock order, each with
        the (index, delta, at) of the moves inside its window, in order, and their sum:
        worked out once (a transaction asks for them twice, on its hot path)."""
        found = self._rising
        if found is None:
            found = self._rising = []
            if not self._rose:
                return found
            moves, watched = self._moves, self.watched
            for key in sorted(watched) if len(watched) > 1 else watched:
                slot = watched[key]
                start, budget, bucket = slot.span_start, slot.budget, slot.bucket
                window, net = [], 0
                for i, (b, k, delta, at) in enumerate(moves):
                    if b == budget and start <= k <= bucket:
                        window.append((i, delta, at))
                        net += delta
                if net > 0:
                    found.append((slot, window, net))
        return found

    def unknown(self) -> list[Slot]:
        """The rising slots whose usage after no statement returned: to be read."""
        after = self._after
        return [s for s, _, _ in self._risen() if (s.budget, s.bucket) not in after]

    def alerts(self, read: Mapping[Window, Nanos]) -> list[tuple[Slot, Alert]]:
        """The alerts the lines crossed raise (`read`: the usage of the `unknown()` slots),
        each dated by the change that reached its line."""
        found = []
        for slot, moves, net in self._risen():
            key = (slot.budget, slot.bucket)
            if key in self._after:
                used, mark = self._after[key]
                after = used + sum(d for i, d, _ in moves if i >= mark)
            else:
                after = read[key]
            before = after - net
            crossed = crossed_lines(slot, before, after)
            if not crossed:
                continue
            level, reached = before, []  # (usage after the move, its time), in order
            for _, delta, at in moves:
                level += delta
                reached.append((level, at))
            for line in crossed:
                at = next(t for u, t in reached if u >= line.line)
                found.append((slot, crossing_alert(slot, line, after, at)))
        return found


def fired_in_window(slot: Slot, alert: Alert, earlier: Iterable[tuple[str, int | None]]) -> bool:
    """Whether a rolling window already raised this line within its length: `earlier` are
    the (alert id, window start) of the budget's alerts."""
    if slot.span_start == slot.bucket:
        return False
    prefix = alert.alert_id[: alert.alert_id.rindex(":") + 1]  # budget:<b>:<fraction>:
    return any(
        start is not None and start >= slot.span_start and aid.rpartition(":")[0] + ":" == prefix
        for aid, start in earlier
    )


def crossing_alert(slot: Slot, line: AlertLine, used: Nanos, at: int) -> Alert:
    """The alert a budget line crossed in a transaction raises: once per window (the id
    carries the window's start), as severe as the line says (`AlertLine.severity`). Its
    `value` (the usage that crossed) and `threshold` (the line) are decimal text of currency
    units, as every money alert's (`"0.81"`), never nano-units; its detail keeps the line's
    `fraction`, the budget's `limit` then (same text) and the ladder's `rung` there."""
    detail: dict[str, str] = {"fraction": line.fraction}
    if line.limit:
        detail["limit"] = money_text(line.limit)
    if line.rung is not None:
        detail["rung"] = line.rung
    return Alert(
        alert_id=f"budget:{slot.budget}:{line.fraction}:{slot.bucket}",
        rule="budget",
        scope=slot.budget,
        severity=line.severity,
        state="firing",
        fired_at=at,
        value=money_text(used),
        threshold=money_text(line.line),
        window_start=slot.bucket,
        detail=detail,
    )


# -- alerts, the outbox, heartbeats ---------------------------------------------------------------

MAX_ALERT_LIMIT = MAX_AUDIT_LIMIT

_ALERT_COLUMNS = (
    "alert_id",
    "rule",
    "scope",
    "severity",
    "state",
    "fired_at",
    "value",
    "threshold",
    "window_start",
    "detail",
    "resolved_at",
    "acknowledged_at",
    "acknowledged_by",
    "silenced_until",
    "rounds",
    "notified_at",
)
_OUTBOX_COLUMNS = (
    "key",
    "alert_id",
    "channel",
    "payload",
    "created_at",
    "attempts",
    "next_attempt_at",
    "delivered_at",
    "last_error",
    "dead_at",
)
# The rows of each state of a notification (`Notification.state`).
_IN_STATE: dict[NotificationState, str] = {
    "pending": "delivered_at IS NULL AND dead_at IS NULL",
    "delivered": "delivered_at IS NOT NULL",
    "dead": "dead_at IS NOT NULL",
}


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"))


def alert_row(alert: Alert) -> tuple[Any, ...]:
    """An alert as a row of the alerts table."""
    return (
        alert.alert_id,
        alert.rule,
        alert.scope,
        alert.severity,
        alert.state,
        alert.fired_at,
        alert.value,
        alert.threshold,
        alert.window_start,
        _json(alert.detail),
        alert.resolved_at,
        alert.acknowledged_at,
        alert.acknowledged_by,
        alert.silenced_until,
        alert.rounds,
        alert.notified_at,
    )


def row_alert(row: Sequence[Any]) -> Alert:
    """The alert stored in a row of the alerts table."""
    (aid, rule, scope, severity, state, fired, value, threshold, start, detail, *rest) = row
    resolved, acked, acked_by, silenced, rounds, notified = rest
    return Alert(
        aid,
        rule,
        scope,
        severity,
        state,
        int(fired),
        value,
        threshold,
        _int(start),
        json.loads(detail) if detail else {},
        _int(resolved),
        _int(acked),
        acked_by,
        _int(silenced),
        int(rounds),
        _int(notified),
    )


def notification_row(n: Notification) -> tuple[Any, ...]:
    """A notification as a row of the outbox (unclaimed)."""
    return (
        n.key,
        n.alert_id,
        n.channel,
        _json(n.payload),
        n.created_at,
        n.attempts,
        n.next_attempt_at,
        n.delivered_at,
        n.last_error,
        n.dead_at,
    )


def row_notification(row: Sequence[Any]) -> Notification:
    """The notification stored in a row of the outbox."""
    key, alert_id, channel, payload, created, attempts, due, delivered, error, dead = row
    return Notification(
        key,
        alert_id,
        channel,
        json.loads(payload),
        int(created),
        int(attempts),
        int(due),
        _int(delivered),
        error,
        _int(dead),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class Alerting:
    """Alerts, the notification outbox and heartbeats on a SQL database: one statement text
    for both backends (`mark`: the driver's placeholder; `skip_locked`: what makes a
    claim's read lock the rows it takes, skipping those another claim holds — PostgreSQL's
    `FOR UPDATE SKIP LOCKED`, nothing on SQLite, whose writers are serialized already).

    Every method runs inside the caller's transaction: `claim()` and `enqueue()` must be in
    one (a write transaction on SQLite).
    """

    def __init__(self, mark: str, skip_locked: str = "") -> None:
        def marks(n: int) -> str:
            return ", ".join([mark] * n)

        alert_columns = ", ".join(_ALERT_COLUMNS)
        outbox_columns = ", ".join(_OUTBOX_COLUMNS)
        self._fire = (
            f"INSERT INTO alerts ({alert_columns}) VALUES ({marks(len(_ALERT_COLUMNS))}) "
            "ON CONFLICT (alert_id) DO NOTHING"
        )
        self._alert = f"SELECT {alert_columns} FROM alerts WHERE alert_id = {mark}"
        self._firing_for = (
            f"SELECT 1 FROM alerts WHERE rule = {mark} AND scope = {mark} "
            "AND state = 'firing' LIMIT 1"
        )
        self._alerts = (
            f"SELECT {alert_columns} FROM alerts WHERE fired_at < {mark} "
            f"ORDER BY fired_at DESC, alert_id DESC LIMIT {mark}"
        )
        self._alerts_in = (
            f"SELECT {alert_columns} FROM alerts WHERE state = {mark} AND fired_at < {mark} "
            f"ORDER BY fired_at DESC, alert_id DESC LIMIT {mark}"
        )
        self._in_window = (
            "SELECT alert_id, window_start FROM alerts "
            f"WHERE rule = 'budget' AND scope = {mark} AND window_start >= {mark}"
        )
        self._resolve = (
            f"UPDATE alerts SET state = 'resolved', resolved_at = {mark}, "
            f"value = COALESCE({mark}, value) "
            f"WHERE alert_id = {mark} AND state = 'firing' RETURNING {alert_columns}"
        )
        # The first acknowledgement stands; a later one changes nothing.
        self._acknowledge = (
            f"UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, {mark}), "
            f"acknowledged_by = COALESCE(acknowledged_by, {mark}) "
            f"WHERE alert_id = {mark} RETURNING {alert_columns}"
        )
        self._silence = (
            f"UPDATE alerts SET silenced_until = {mark}, "
            f"acknowledged_at = COALESCE(acknowledged_at, {mark}), "
            f"acknowledged_by = COALESCE(acknowledged_by, {mark}) "
            f"WHERE alert_id = {mark} RETURNING {alert_columns}"
        )
        self._next_round = (
            f"UPDATE alerts SET rounds = {mark}, notified_at = {mark} "
            f"WHERE alert_id = {mark} AND rounds = {mark}"
        )
        self._enqueue = (
            f"INSERT INTO outbox ({outbox_columns}) VALUES ({marks(len(_OUTBOX_COLUMNS))}) "
            "ON CONFLICT (key) DO NOTHING"
        )
        self._claim = (
            f"UPDATE outbox SET claimed_by = {mark}, claimed_until = {mark}, "
            "attempts = attempts + 1 WHERE key IN ("
            f"SELECT key FROM outbox WHERE {_IN_STATE['pending']} AND next_attempt_at <= {mark} "
            f"AND (claimed_until IS NULL OR claimed_until <= {mark}) "
            f"ORDER BY next_attempt_at, created_at, key LIMIT {mark} {skip_locked}"
            f") RETURNING {outbox_columns}"
        )
        self._delivered = (
            f"UPDATE outbox SET delivered_at = {mark}, claimed_by = NULL, claimed_until = NULL "
            f"WHERE key = {mark} AND claimed_by = {mark} AND delivered_at IS NULL"
        )
        self._failed = (
            f"UPDATE outbox SET last_error = {mark}, next_attempt_at = {mark}, "
            "claimed_by = NULL, claimed_until = NULL "
            f"WHERE key = {mark} AND claimed_by = {mark} AND delivered_at IS NULL"
        )
        self._dead = (
            f"UPDATE outbox SET dead_at = {mark}, last_error = {mark}, "
            "claimed_by = NULL, claimed_until = NULL "
            f"WHERE key = {mark} AND claimed_by = {mark} AND {_IN_STATE['pending']}"
        )
        # Unsent: the claim's attempt is taken back, and the row is due as it was.
        self._release_claims = (
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
            f"WHERE claimed_by = {mark} AND delivered_at IS NULL"
        )
        # Listings: by (of one alert?, in which state): every combination, written once.
        self._notifications: dict[tuple[bool, NotificationState | None], str] = {}
        for of_alert in (False, True):
            for state in (None, *_IN_STATE):
                where = [f"alert_id = {mark}"] if of_alert else []
                where += [_IN_STATE[state]] if state is not None else []
                self._notifications[of_alert, state] = (
                    f"SELECT {outbox_columns} FROM outbox "
                    + (f"WHERE {' AND '.join(where)} " if where else "")
                    + f"ORDER BY created_at DESC, key DESC LIMIT {mark}"
                )
        self._heartbeat = (
            f"INSERT INTO heartbeats (service, at) VALUES ({mark}, {mark}) "
            "ON CONFLICT (service) DO UPDATE SET at = excluded.at "
            "WHERE heartbeats.at < excluded.at"
        )

    # -- budget crossings (inside the spend's transaction) ------------------------------------

    def book(self, conn: Connection, found: Sequence[tuple[Slot, Alert]]) -> None:
        """Store the alerts `Crossings.alerts()` found, each unless it exists (or, on a
        rolling window, unless the line fired within the window's length already)."""
        for slot, alert in sorted(found, key=lambda f: f[1].alert_id):
            if slot.span_start < slot.bucket:
                earlier = conn.execute(self._in_window, (slot.budget, slot.span_start)).fetchall()
                if fired_in_window(slot, alert, earlier):
                    continue
            conn.execute(self._fire, alert_row(alert))

    # -- alerts -----------------------------------------------------------------------------

    def fire(self, conn: Connection, alert: Alert) -> bool:
        """`Store.fire()` (the caller serializes fires: a check, then the insert)."""
        if conn.execute(self._firing_for, (alert.rule, alert.scope)).fetchone() is not None:
            return False
        return bool(conn.execute(self._fire, alert_row(alert)).rowcount)

    def alert(self, conn: Connection, alert_id: str) -> Alert | None:
        """`Store.alert()`."""
        row = conn.execute(self._alert, (alert_id,)).fetchone()
        return None if row is None else row_alert(row)

    def alerts(
        self, conn: Connection, state: AlertState | None, limit: int, before: int | None
    ) -> list[Alert]:
        """`Store.alerts()`."""
        bound = (_NEWEST if before is None else before, alert_limit(limit))
        if state is None:
            rows = conn.execute(self._alerts, bound).fetchall()
        else:
            rows = conn.execute(self._alerts_in, (state, *bound)).fetchall()
        return [row_alert(r) for r in rows]

    def resolve(self, conn: Connection, alert_id: str, at: int, value: str | None) -> Alert | None:
        """`Store.resolve()`."""
        return self._one(conn, self._resolve, (at, value, alert_id))

    def acknowledge(self, conn: Connection, alert_id: str, actor: str, at: int) -> Alert | None:
        """`Store.acknowledge()`."""
        return self._one(conn, self._acknowledge, (at, actor, alert_id))

    def silence(
        self, conn: Connection, alert_id: str, until: int, actor: str, at: int
    ) -> Alert | None:
        """`Store.silence()`."""
        return self._one(conn, self._silence, (until, at, actor, alert_id))

    @staticmethod
    def _one(conn: Connection, sql: str, params: Sequence[Any]) -> Alert | None:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row_alert(row)

    # -- the outbox -------------------------------------------------------------------------

    def enqueue(
        self,
        conn: Connection,
        alert_id: str,
        round: int,
        notifications: Sequence[Notification],
        at: int,
    ) -> bool:
        """`Store.enqueue()`: move the alert to `round` first; on PostgreSQL that update
        locks its row, so a second evaluator of the same round waits, then finds the round
        taken and inserts nothing."""
        if not conn.execute(self._next_round, (round, at, alert_id, round - 1)).rowcount:
            return False
        for n in notifications:
            conn.execute(self._enqueue, notification_row(n))
        return True

    def claim(
        self, conn: Connection, worker: str, now: int, until: int, limit: int
    ) -> list[Notification]:
        """`Store.claim()`: one statement that picks the due rows and takes them."""
        rows = conn.execute(self._claim, (worker, until, now, now, alert_limit(limit))).fetchall()
        found = [row_notification(r) for r in rows]
        return sorted(found, key=lambda n: (n.next_attempt_at, n.created_at, n.key))

    def delivered(self, conn: Connection, key: str, worker: str, at: int) -> bool:
        """`Store.delivered()`."""
        return bool(conn.execute(self._delivered, (at, key, worker)).rowcount)

    def failed(self, conn: Connection, key: str, worker: str, error: str, retry_at: int) -> bool:
        """`Store.failed()`."""
        return bool(conn.execute(self._failed, (error, retry_at, key, worker)).rowcount)

    def dead(self, conn: Connection, key: str, worker: str, at: int, reason: str) -> bool:
        """`Store.dead()`."""
        return bool(conn.execute(self._dead, (at, reason, key, worker)).rowcount)

    def release_claims(self, conn: Connection, worker: str) -> int:
        """`Store.release_claims()`."""
        return int(conn.execute(self._release_claims, (worker,)).rowcount)

    def notifications(
        self,
        conn: Connection,
        alert_id: str | None,
        state: NotificationState | None,
        limit: int,
    ) -> list[Notification]:
        """`Store.notifications()`."""
        sql = self._notifications[alert_id is not None, state]
        bound = (alert_limit(limit),) if alert_id is None else (alert_id, alert_limit(limit))
        return [row_notification(r) for r in conn.execute(sql, bound).fetchall()]

    # -- heartbeats -------------------------------------------------------------------------

    def heartbeat(self, conn: Connection, service: str, at: int) -> None:
        """`Store.heartbeat()`: a later time replaces an earlier one, never the reverse."""
        conn.execute(self._heartbeat, (service, at))

    @staticmethod
    def heartbeats(conn: Connection) -> dict[str, int]:
        """`Store.heartbeats()`."""
        rows = conn.execute("SELECT service, at FROM heartbeats", ()).fetchall()
        return {service: int(at) for service, at in rows}


def alert_limit(limit: int) -> int:
    """`limit` of the alert and outbox listings (and of `claim()`), checked."""
    return audit_limit(limit)
