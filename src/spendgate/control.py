"""Budgets and sources changed at run time, each change audited with who and when.

`spendgate.toml` is the base; what is created, updated or deleted here is stored as a
*definition* in the store and applied on top of it by every gate on that store (each looks
for changes every second, see `Gate.refresh`). A change is validated against the whole
configuration it would produce before anything is written, and is written only if nobody
changed the same thing meanwhile.

A budget's counter is always the spend in its current window and scope: a budget created
(or created again after a delete), or whose scope or window changes, is counted again from
the ledger in the transaction that writes the change (`accounting.Recount`): the events
already in its window and scope are its spent, the pending holds that match it its reserved.
A new $3 budget over a service that has spent $5 today starts at $5, and refuses.

>>> from spendgate import Gate
>>> gate = Gate.open("memory://")
>>> control = Control(gate)
>>> control.update("budget", "daily", {"limit": "12.00"}, actor="ops").spec["limit"]
'12.00'
>>> str(gate.config.budget("daily").limit)
'12000000000'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from spendgate.accounting import Recount
from spendgate.binding import CONFIG_ACTOR
from spendgate.budgets import Budget
from spendgate.errors import ExistsError, NotFoundError, ValidationError
from spendgate.events import check_id
from spendgate.gate import Gate
from spendgate.redaction import redact_alerts
from spendgate.settings import Config
from spendgate.store.base import AuditEntry, ControlStore, Definition, LedgerStore
from spendgate.windows import from_micros, to_micros

Kind = Literal["budget", "source"]
KINDS: tuple[Kind, ...] = ("budget", "source")
Origin = Literal["file", "api"]


@dataclass(frozen=True, slots=True)
class Managed:
    """A budget or source as it is in effect: its table, and where it came from.

    `revision`, `changed_at` and `changed_by` are set for one defined at run time.
    """

    kind: Kind
    name: str
    spec: Mapping[str, Any]
    origin: Origin
    revision: int | None = None
    changed_at: datetime | None = None
    changed_by: str | None = None
    warnings: tuple[str, ...] = ()
    """What the change may not do as meant (a scope that matches no event recorded yet)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "kind": self.kind,
            "name": self.name,
            "spec": dict(self.spec),
            "origin": self.origin,
            "revision": self.revision,
            "changed_at": None if self.changed_at is None else self.changed_at.isoformat(),
            "changed_by": self.changed_by,
            "warnings": list(self.warnings),
        }


def audit_dict(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry, JSON-ready (alert settings with their channels' secrets hidden)."""

    def shown(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if spec is None:
            return None
        return redact_alerts(spec) if entry.kind == "alerts" else dict(spec)

    return {
        "revision": entry.revision,
        "at": from_micros(entry.at).isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "kind": entry.kind,
        "name": entry.name,
        "before": shown(entry.before),
        "after": shown(entry.after),
    }


class Control:
    """Create, read, update and delete budgets and sources on a gate's store, audited."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    @property
    def _plane(self) -> ControlStore:
        """All of the gate's store that `Control` uses: definitions and their audit."""
        return self.gate.store

    @property
    def _ledger(self) -> LedgerStore:
        """The ledger, read only to warn of a scope that matches no event."""
        return self.gate.store

    # -- reading ------------------------------------------------------------------------------

    def entries(self, kind: Kind) -> list[Managed]:
        """Every budget or source in effect, in configuration order."""
        _check_kind(kind)
        self.gate.refresh()
        defined = self._defined()
        return [self._managed(kind, name, defined) for name in _names(self.gate.config, kind)]

    def get(self, kind: Kind, name: str) -> Managed:
        """One budget or source in effect; `NotFoundError` if there is none of that name."""
        _check_kind(kind)
        self.gate.refresh()
        names = _names(self.gate.config, kind)
        if name not in names:
            raise NotFoundError(kind, name, names)
        return self._managed(kind, name, self._defined())

    def audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Changes, newest first (up to `limit`, with revisions below `before`)."""
        if before is not None and (
            isinstance(before, bool) or not isinstance(before, int) or not 1 <= before <= 2**62
        ):
            raise ValidationError("before", before, "a revision number from 1 to 2**62")
        return self._plane.audit(limit=limit, before=before)

    # -- changing -----------------------------------------------------------------------------

    def create(self, kind: Kind, name: str, spec: Mapping[str, Any], *, actor: str) -> Managed:
        """Add a budget or source; `ExistsError` if one of that name is in effect."""
        return self._change("create", kind, name, spec, actor)

    def update(self, kind: Kind, name: str, spec: Mapping[str, Any], *, actor: str) -> Managed:
        """Replace a budget's or source's table; `NotFoundError` if there is none of that name.

        A budget whose window or scope changes is counted again (see the module).
        """
        return self._change("update", kind, name, spec, actor)

    def patch(self, kind: Kind, name: str, changes: Mapping[str, Any], *, actor: str) -> Managed:
        """Change some keys of a budget's or source's table, keeping the rest."""
        return self._change("patch", kind, name, changes, actor)

    def delete(self, kind: Kind, name: str, *, actor: str) -> AuditEntry:
        """Remove a budget or source (also one from the file: the deletion hides it)."""
        return self._write("delete", kind, name, None, actor)

    def _change(
        self, action: str, kind: Kind, name: str, spec: Mapping[str, Any], actor: str
    ) -> Managed:
        self._write(action, kind, name, spec, actor)
        managed = self._managed(kind, name, self._defined())
        if kind != "budget":
            return managed
        return replace(managed, warnings=self._unmatched(self.gate.config.budget(name)))

    def _unmatched(self, budget: Budget) -> tuple[str, ...]:
        """A warning when a budget's service scope names a service no event came from."""
        scope = budget.scope
        if scope.kind != "service":
            return ()
        seen = sorted({sv for _, sv, _, _ in self._ledger.tallies([(0, 2**62)])})
        if scope.value in seen:
            return ()
        return (
            f"budgets.{budget.name}.scope: {scope} matches no event recorded yet (services "
            f"with events: {', '.join(seen) or 'none'}); it counts from the first one",
        )

    def _write(
        self, action: str, kind: Kind, name: str, spec: Mapping[str, Any] | None, actor: str
    ) -> AuditEntry:
        _check_kind(kind)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("name", name, "a non-empty name of at most 200 characters")
        check_id(name, "name")  # stored as a key of its definition and audit rows
        clean = None if spec is None else _plain(spec, kind)
        self.gate.refresh()
        config = self.gate.config
        names = _names(config, kind)
        if action == "create" and name in names:
            raise ExistsError(kind, name)
        if action != "create" and name not in names:
            raise NotFoundError(kind, name, names)
        defined = self._defined()
        current = defined.get((kind, name))
        if action == "patch" and clean is not None:
            # Merged into the table as read with `current`: a change made meanwhile by
            # someone else fails the write below instead of being overwritten.
            clean = {**self._managed(kind, name, defined).spec, **clean}
            action = "update"
        changes = [
            (d.kind, d.name, d.spec) for d in defined.values() if (d.kind, d.name) != (kind, name)
        ]
        changes.append((kind, name, clean))
        candidate = self.gate.base_config.overlay(changes)  # validates the whole result
        at = to_micros(self.gate.clock())
        recount = None
        if kind == "budget" and clean is not None:
            after = candidate.budget(name)
            before = next((b for b in config.budgets if b.name == name), None)
            if before is None or not before.counts_like(after):
                recount = Recount(after, at)
        entry = self._plane.define(
            kind,
            name,
            clean,
            expected=current.revision if current is not None else 0,
            action=action,
            actor=actor,
            at=at,
            recount=recount,
        )
        self.gate.refresh()
        return entry

    # -- helpers ------------------------------------------------------------------------------

    def _defined(self) -> dict[tuple[str, str], Definition]:
        return {(d.kind, d.name): d for d in self._plane.definitions()}

    def _managed(
        self, kind: Kind, name: str, defined: Mapping[tuple[str, str], Definition]
    ) -> Managed:
        d = defined.get((kind, name))
        config = self.gate.config
        if kind == "budget":
            spec: Mapping[str, Any] = config.budget(name).to_spec()
        else:
            spec = config.prices.pricing(name).to_spec()
        if d is None or d.spec is None or d.changed_by == CONFIG_ACTOR:
            return Managed(kind, name, spec, "file")
        return Managed(
            kind, name, d.spec, "api", d.revision, from_micros(d.changed_at), d.changed_by
        )


def _check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise ValidationError("kind", kind, f"one of {', '.join(KINDS)}")


def _names(config: Config, kind: Kind) -> list[str]:
    if kind == "budget":
        return [b.name for b in config.budgets]
    return list(config.prices.sources)


def _plain(spec: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """The table as plain JSON values (what the store keeps), without a `name` key."""
    if not isinstance(spec, Mapping):
        raise ValidationError(kind, spec, f"a table of the {kind}'s settings")
    try:
        plain = json.loads(json.dumps(dict(spec), default=str))
    except (TypeError, ValueError) as exc:
        raise ValidationError(kind, spec, f"a table of plain values ({exc})") from None
    plain.pop("name", None)
    return dict(plain)
