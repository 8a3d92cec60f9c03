"""The in-memory store's control plane, alerts and outbox (`ControlStore`, `AlertStore`,
`OutboxStore`): plain dictionaries under the one lock of the `MemoryStore` they are part of,
so each method is one transaction with the ledger's too (a budget line the ledger crosses is
stored among these alerts in the spending call's own transaction)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from spendgate.accounting import Recount
from spendgate.errors import ChangedError, ConflictError, StoreClosedError
from spendgate.store.alerting import alert_limit
from spendgate.store.base import (
    Alert,
    AlertState,
    AlertStore,
    ApiKey,
    AuditEntry,
    ControlStore,
    Definition,
    Notification,
    NotificationState,
    OutboxStore,
    key_record,
)
from spendgate.store.rows import audit_limit, json_spec, spec_json


@dataclass(slots=True)
class _Queued:
    """A row of the outbox: the notification and who holds it until when."""

    notification: Notification
    claimed_by: str | None = None
    claimed_until: int | None = None


class MemoryControl(ControlStore, AlertStore, OutboxStore):
    """Definitions, audit, keys, alerts, the outbox and heartbeats in dictionaries; the lock
    and the closed flag are the whole store's."""

    where: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._definitions: dict[tuple[str, str], Definition] = {}
        self._audit: list[AuditEntry] = []  # revision r at index r - 1
        self._keys: dict[str, ApiKey] = {}
        self._alerts: dict[str, Alert] = {}
        self._outbox: dict[str, _Queued] = {}
        self._heartbeats: dict[str, int] = {}

    def _check_open(self) -> None:
        # Called with the lock held (see `MemoryStore.close()`).
        if self._closed:
            raise StoreClosedError(self.where)

    # -- the control plane ----------------------------------------------------------------------
    # Specs go in and come out as copies through JSON, as the SQL backends store them: a
    # caller's later change to its dict never reaches the store, and what reads back is what
    # they would read back.

    def define(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any] | None,
        *,
        expected: int,
        action: str,
        actor: str,
        at: int,
        recount: Recount | None = None,
    ) -> AuditEntry:
        after = _copy(spec)
        with self._lock:
            self._check_open()
            found = self._definitions.get((kind, name))
            revision = 0 if found is None else found.revision
            if revision != expected:
                raise ChangedError(f"{kind} {name!r}", expected, revision)
            if recount is not None:
                self._recount_locked(recount)  # first: it may refuse, and nothing is written
            before = None if found is None else found.spec
            entry = self._log(
                AuditEntry(self._next(), at, actor, action, kind, name, before, after)
            )
            self._definitions[(kind, name)] = Definition(
                kind, name, after, entry.revision, at, actor
            )
            return entry

    def _recount_locked(self, recount: Recount) -> None:
        """Count a budget again from the ledger (caller holds the lock): the ledger's."""
        raise NotImplementedError("a recount needs the ledger: MemoryStore has it")

    def _next(self) -> int:
        """The revision the next change takes (caller holds the lock)."""
        return len(self._audit) + 1

    def _log(self, entry: AuditEntry) -> AuditEntry:
        """Append the next entry (caller holds the lock); a copy of it for the caller."""
        self._audit.append(entry)
        return _fresh(entry)

    def definitions(self) -> list[Definition]:
        with self._lock:
            self._check_open()
            found = sorted(self._definitions.values(), key=lambda d: d.revision)
        return [replace(d, spec=_copy(d.spec)) for d in found]

    def revision(self) -> int:
        self._check_open()
        return len(self._audit)

    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        audit_limit(limit)
        with self._lock:
            self._check_open()
            # Revision r sits at index r - 1: those below `before` end at index before - 1.
            end = len(self._audit) if before is None else max(0, min(before - 1, len(self._audit)))
            chosen = self._audit[max(0, end - limit) : end]
        return [_fresh(e) for e in reversed(chosen)]

    def add_key(self, key: ApiKey) -> AuditEntry:
        with self._lock:
            self._check_open()
            if key.key_id in self._keys:
                raise ConflictError("api key", key.key_id)
            self._keys[key.key_id] = key
            record = key_record(key)
            return self._log(
                AuditEntry(
                    self._next(),
                    key.created_at,
                    key.created_by,
                    "key.create",
                    "key",
                    key.key_id,
                    None,
                    record,
                )
            )

    def keys(self) -> list[ApiKey]:
        with self._lock:
            self._check_open()
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        with self._lock:
            self._check_open()
            old = self._keys.get(key_id)
            if old is None or old.revoked_at is not None:
                return old
            new = self._keys[key_id] = replace(old, revoked_at=at)
            before, after = key_record(old), key_record(new)
            self._log(
                AuditEntry(self._next(), at, actor, "key.revoke", "key", key_id, before, after)
            )
            return new

    # -- alerts, the outbox, heartbeats -----------------------------------------------------
    # Alerts and notifications are frozen values; their mappings go in and come out as
    # JSON copies, as the SQL backends store them.

    def fire(self, alert: Alert) -> bool:
        alert = replace(alert, detail=_copy(alert.detail) or {})
        with self._lock:
            self._check_open()
            if any(
                a.state == "firing" and a.rule == alert.rule and a.scope == alert.scope
                for a in self._alerts.values()
            ):
                return False
            return self._alerts.setdefault(alert.alert_id, alert) is alert

    def alert(self, alert_id: str) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
        return None if found is None else _fresh_alert(found)

    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            chosen = [
                a
                for a in self._alerts.values()
                if (state is None or a.state == state) and (before is None or a.fired_at < before)
            ]
        chosen.sort(key=lambda a: (a.fired_at, a.alert_id), reverse=True)
        return [_fresh_alert(a) for a in chosen[:limit]]

    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None or found.state != "firing":
                return None
            kept = found.value if value is None else value
            new = replace(found, state="resolved", resolved_at=at, value=kept)
            return _fresh_alert(self._put(new))

    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None:
                return None
            return _fresh_alert(self._put(_acknowledged(found, actor, at)))

    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None:
                return None
            new = replace(_acknowledged(found, actor, at), silenced_until=until)
            return _fresh_alert(self._put(new))

    def _put(self, alert: Alert) -> Alert:
        self._alerts[alert.alert_id] = alert
        return alert

    def enqueue(
        self, alert_id: str, round: int, notifications: Sequence[Notification], at: int
    ) -> bool:
        copies = [replace(n, payload=_copy(n.payload) or {}) for n in notifications]
        with self._lock:
            self._check_open()
            found = self._alerts.get(alert_id)
            if found is None or found.rounds != round - 1:
                return False
            self._put(replace(found, rounds=round, notified_at=at))
            for n in copies:
                self._outbox.setdefault(n.key, _Queued(n))
            return True

    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            due = [
                q
                for q in self._outbox.values()
                if q.notification.state == "pending"
                and q.notification.next_attempt_at <= now
                and (q.claimed_until is None or q.claimed_until <= now)
            ]
            due.sort(key=lambda q: _due_order(q.notification))
            taken = []
            for q in due[:limit]:
                q.claimed_by, q.claimed_until = worker, until
                q.notification = replace(q.notification, attempts=q.notification.attempts + 1)
                taken.append(q.notification)
        return [_fresh_notification(n) for n in taken]

    def delivered(self, key: str, worker: str, at: int) -> bool:
        return self._end_claim(key, worker, delivered_at=at)

    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        return self._end_claim(key, worker, last_error=error, next_attempt_at=retry_at)

    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        return self._end_claim(key, worker, dead_at=at, last_error=reason)

    def _end_claim(self, key: str, worker: str, **changes: Any) -> bool:
        """End `worker`'s claim on a notification with `changes`; whether it held the claim."""
        with self._lock:
            self._check_open()
            q = self._claimed(key, worker)
            if q is None:
                return False
            q.notification = replace(q.notification, **changes)
            q.claimed_by = q.claimed_until = None
            return True

    def release_claims(self, worker: str) -> int:
        with self._lock:
            self._check_open()
            held = [
                q
                for q in self._outbox.values()
                if q.claimed_by == worker and q.notification.delivered_at is None
            ]
            for q in held:
                attempts = max(q.notification.attempts - 1, 0)
                q.notification = replace(q.notification, attempts=attempts)
                q.claimed_by = q.claimed_until = None
            return len(held)

    def _claimed(self, key: str, worker: str) -> _Queued | None:
        """The pending outbox row `worker` holds (caller holds the lock)."""
        q = self._outbox.get(key)
        if q is None or q.claimed_by != worker or q.notification.state != "pending":
            return None
        return q

    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        alert_limit(limit)
        with self._lock:
            self._check_open()
            chosen = [
                q.notification
                for q in self._outbox.values()
                if (alert_id is None or q.notification.alert_id == alert_id)
                and (state is None or q.notification.state == state)
            ]
        chosen.sort(key=lambda n: (n.created_at, n.key), reverse=True)
        return [_fresh_notification(n) for n in chosen[:limit]]

    def heartbeat(self, service: str, at: int) -> None:
        with self._lock:
            self._check_open()
            self._heartbeats[service] = max(at, self._heartbeats.get(service, at))

    def heartbeats(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            return dict(self._heartbeats)


def _due_order(n: Notification) -> tuple[int, int, str]:
    return (n.next_attempt_at, n.created_at, n.key)


def _acknowledged(alert: Alert, actor: str, at: int) -> Alert:
    """The alert acknowledged by `actor` at `at`, unless it was already (the first stands)."""
    if alert.acknowledged_at is not None:
        return alert
    return replace(alert, acknowledged_at=at, acknowledged_by=actor)


def _fresh_alert(alert: Alert) -> Alert:
    """An alert whose detail the caller may change without changing the store."""
    return replace(alert, detail=_copy(alert.detail) or {})


def _fresh_notification(n: Notification) -> Notification:
    """A notification whose payload the caller may change without changing the store."""
    return replace(n, payload=_copy(n.payload) or {})


def _copy(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of a spec, as storing it as JSON keeps it."""
    return json_spec(spec_json(value))


def _fresh(entry: AuditEntry) -> AuditEntry:
    """An audit entry whose values the caller may change without changing the store."""
    return replace(entry, before=_copy(entry.before), after=_copy(entry.after))
