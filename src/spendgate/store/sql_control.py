"""The control plane, alerts, the outbox and heartbeats on a SQL database (the
`ControlStore`, `AlertStore` and `OutboxStore` roles): each method one statement set of
`rows.ControlPlane` or `alerting.Alerting` in a transaction of the backend's (see
`store/sql.py`)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from spendgate.accounting import Recount
from spendgate.store.alerting import Alerting
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
)
from spendgate.store.rows import Connection, ControlPlane

C = TypeVar("C", bound=Connection)
T = TypeVar("T")


class SQLControl(ControlStore, AlertStore, OutboxStore, Generic[C]):
    """The control-plane, alerts and outbox part of the contract, on connections of type
    `C`."""

    control_sql: ClassVar[ControlPlane]
    alerts_sql: ClassVar[Alerting]

    @abstractmethod
    def _transaction(
        self, work: Callable[[C], T], *, landed: Callable[[C, T], T] | None = None
    ) -> T:
        """Run `work` in one write transaction. `landed(conn, result)` finds the true answer
        when a connection is lost during COMMIT (a backend that can lose one says how)."""

    @abstractmethod
    def _read(self, work: Callable[[C], T]) -> T:
        """Run `work` on a connection, outside any write transaction."""

    def _control(self, work: Callable[[C], T]) -> T:
        """A control-plane write (and `fire`): one transaction, serialized with the others."""
        return self._transaction(work)

    # -- the control plane --------------------------------------------------------------------

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
        def work(conn: C) -> AuditEntry:
            entry = self.control_sql.define(
                conn, kind, name, spec, expected=expected, action=action, actor=actor, at=at
            )
            if recount is not None:
                self._recount_in(conn, recount)
            return entry

        return self._control(work)

    def _recount_in(self, conn: C, recount: Recount) -> None:
        """Count a budget again from the ledger, in the caller's transaction: the ledger's."""
        raise NotImplementedError("a recount needs the ledger: SQLStore has it")

    def definitions(self) -> list[Definition]:
        return self._read(self.control_sql.definitions)

    def revision(self) -> int:
        return self._read(self.control_sql.revision)

    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        return self._read(lambda conn: self.control_sql.audit(conn, limit, before))

    def add_key(self, key: ApiKey) -> AuditEntry:
        return self._control(lambda conn: self.control_sql.add_key(conn, key))

    def keys(self) -> list[ApiKey]:
        return self._read(self.control_sql.keys)

    def revoke_key(self, key_id: str, *, actor: str, at: int) -> ApiKey | None:
        return self._control(lambda conn: self.control_sql.revoke_key(conn, key_id, actor, at))

    # -- alerts, the outbox, heartbeats -------------------------------------------------------

    def fire(self, alert: Alert) -> bool:
        # Serialized like the control plane: two evaluators never both pass the check.
        return self._control(lambda conn: self.alerts_sql.fire(conn, alert))

    def alert(self, alert_id: str) -> Alert | None:
        return self._read(lambda conn: self.alerts_sql.alert(conn, alert_id))

    def alerts(
        self, *, state: AlertState | None = None, limit: int = 100, before: int | None = None
    ) -> list[Alert]:
        return self._read(lambda conn: self.alerts_sql.alerts(conn, state, limit, before))

    def resolve(self, alert_id: str, at: int, value: str | None = None) -> Alert | None:
        return self._transaction(lambda conn: self.alerts_sql.resolve(conn, alert_id, at, value))

    def acknowledge(self, alert_id: str, *, actor: str, at: int) -> Alert | None:
        return self._transaction(
            lambda conn: self.alerts_sql.acknowledge(conn, alert_id, actor, at)
        )

    def silence(self, alert_id: str, *, until: int, actor: str, at: int) -> Alert | None:
        return self._transaction(
            lambda conn: self.alerts_sql.silence(conn, alert_id, until, actor, at)
        )

    def enqueue(
        self, alert_id: str, round: int, notifications: Sequence[Notification], at: int
    ) -> bool:
        return self._transaction(
            lambda conn: self.alerts_sql.enqueue(conn, alert_id, round, notifications, at)
        )

    def claim(self, worker: str, *, now: int, until: int, limit: int = 50) -> list[Notification]:
        return self._transaction(
            lambda conn: self.alerts_sql.claim(conn, worker, now, until, limit)
        )

    def delivered(self, key: str, worker: str, at: int) -> bool:
        return self._transaction(lambda conn: self.alerts_sql.delivered(conn, key, worker, at))

    def failed(self, key: str, worker: str, *, error: str, retry_at: int) -> bool:
        return self._transaction(
            lambda conn: self.alerts_sql.failed(conn, key, worker, error, retry_at)
        )

    def dead(self, key: str, worker: str, *, at: int, reason: str) -> bool:
        return self._transaction(lambda conn: self.alerts_sql.dead(conn, key, worker, at, reason))

    def release_claims(self, worker: str) -> int:
        return self._transaction(lambda conn: self.alerts_sql.release_claims(conn, worker))

    def notifications(
        self,
        *,
        alert_id: str | None = None,
        state: NotificationState | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        return self._read(lambda conn: self.alerts_sql.notifications(conn, alert_id, state, limit))

    def heartbeat(self, service: str, at: int) -> None:
        self._transaction(lambda conn: self.alerts_sql.heartbeat(conn, service, at))

    def heartbeats(self) -> dict[str, int]:
        return self._read(self.alerts_sql.heartbeats)
