"""Mapping between domain values and database rows, shared by the SQL backends; and the
control plane's statements, which are the same on both but for the driver's placeholder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from spendgate.accounting import AlertLine, Slot
from spendgate.errors import ChangedError, ConflictError, CounterLimitError, ValidationError
from spendgate.events import Event, Fallback, seed_detail
from spendgate.money import MAX_TOTAL
from spendgate.rollups import (
    BOUNDED,
    DAY,
    TALLY_FIELDS,
    Tally,
    bounded_sums,
    rollup_limit_error,
)
from spendgate.store.base import ApiKey, AuditEntry, Definition, key_record
from spendgate.windows import from_micros, to_micros

EVENT_COLUMNS = (
    "request_id",
    "fingerprint",
    "ts",
    "service",
    "source",
    "cost",
    "paid",
    "success",
    "failure_reason",
    "cache_hits",
    "batch_processing",
    "quality_score",
    "processing_time",
    "price_version",
    "reservation_id",
    "emergency",
    "detail",
    "location",
)


def event_row(event: Event) -> tuple[Any, ...]:
    """An event as a row of `EVENT_COLUMNS`."""
    detail = event.detail()
    return (
        event.request_id,
        event.fingerprint,
        to_micros(event.time),
        event.service,
        event.source,
        event.cost,
        event.paid,
        event.success,
        event.failure_reason,
        event.cache_hits,
        event.batch_processing,
        event.quality_score,
        event.processing_time,
        event.price_version,
        event.reservation_id,
        event.emergency,
        json.dumps(detail, separators=(",", ":")) if detail else None,
        event.location,
    )


def row_event(row: Sequence[Any]) -> Event:
    """The event stored in a row of `EVENT_COLUMNS`."""
    (
        request_id,
        fp,
        ts,
        service,
        source,
        cost,
        paid,
        success,
        failure_reason,
        cache_hits,
        batch,
        quality,
        processing,
        price_version,
        reservation_id,
        emergency,
        detail_text,
        _location,  # the first of its labels that says where (kept for `label_tallies`)
    ) = row
    detail = json.loads(detail_text) if detail_text else {}
    return Event(
        request_id=request_id,
        time=from_micros(ts),
        service=service,
        source=source,
        cost=cost,
        fingerprint=fp,
        units={k: Decimal(v) for k, v in detail.get("units", {}).items()},
        paid=bool(paid),
        success=bool(success),
        failure_reason=failure_reason,
        sources_used=tuple(detail.get("sources_used", ())),
        free_sources_attempted=tuple(detail.get("free_sources_attempted", ())),
        paid_apis_used=tuple(detail.get("paid_apis_used", ())),
        fallbacks_triggered=tuple(
            Fallback(f["source"], f["reason"]) for f in detail.get("fallbacks_triggered", ())
        ),
        cache_hits=cache_hits,
        batch_processing=bool(batch),
        quality_score=quality,
        processing_time=processing,
        labels=detail.get("labels", {}),
        price_version=price_version,
        reservation_id=reservation_id,
        emergency=bool(emergency),
        **seed_detail(detail),
    )


def slots_json(slots: Sequence[Slot]) -> str:
    """A reservation's slots as stored: `[[budget, bucket, span_start, cap], ...]`, with a
    fifth item `[[fraction, line, limit, rung, critical], ...]` on a slot that has alert
    lines (a lease that grows later must still see them; lines stored as `[fraction, line]`
    by an earlier spendgate are read too)."""
    return json.dumps([_slot_item(s) for s in slots])


def _slot_item(slot: Slot) -> list[Any]:
    item: list[Any] = [slot.budget, slot.bucket, slot.span_start, slot.cap]
    if slot.lines:
        item.append([[x.fraction, x.line, x.limit, x.rung, x.critical] for x in slot.lines])
    return item


def json_slots(text: str) -> tuple[Slot, ...]:
    """The slots of a stored reservation."""
    return tuple(
        Slot(b, bucket, span, cap, tuple(AlertLine(*x) for x in lines[0]) if lines else ())
        for b, bucket, span, cap, *lines in json.loads(text)
    )


ROLLUP_COLUMNS = ("step", "bucket", "service", "source", *TALLY_FIELDS)


def rollup_upsert(mark: str) -> str:
    """Add rows of `rollup_rows()` to the rollups (`mark`: the driver's placeholder).

    The same statement in SQLite and PostgreSQL: a new bucket row is inserted, an existing one
    has each sum added to, unless a bounded sum would pass `MAX_TOTAL`: then the row is left
    as it was, and the statement's row count, short of the rows given, tells the store to
    refuse the write (`rollup_refused()`).
    """
    return (
        f"INSERT INTO rollups ({', '.join(ROLLUP_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(ROLLUP_COLUMNS))}) "
        "ON CONFLICT (step, bucket, service, source) DO UPDATE SET "
        + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in TALLY_FIELDS)
        + " WHERE "
        + " AND ".join(f"rollups.{c} + excluded.{c} <= {MAX_TOTAL}" for c in BOUNDED)
    )


def rollup_refused(conn: Connection, rows: Sequence[Sequence[Any]], mark: str) -> CounterLimitError:
    """The error for rows of `rollup_rows()` that `rollup_upsert()` left out, found by
    reading the day buckets they add to (inside the refused write, which rolls back)."""
    where = " AND ".join(f"{c} = {mark}" for c in ROLLUP_COLUMNS[:4])
    read = f"SELECT {', '.join(BOUNDED)} FROM rollups WHERE {where}"
    for row in rows:
        if row[0] != DAY:
            continue
        stored = conn.execute(read, tuple(row[:4])).fetchone()
        if stored is None:
            continue
        for name, had, adding in zip(BOUNDED, stored, bounded_sums(row[4:]), strict=True):
            if int(had) + adding > MAX_TOTAL:
                return rollup_limit_error(row, name, adding)
    # Not found again (a row updated by this write, read back with its own sums): the
    # write is refused all the same, naming the first of its days.
    day = next(row for row in rows if row[0] == DAY)
    return rollup_limit_error(day, "cost", bounded_sums(day[4:])[0])


def tallies_query(
    pieces: Sequence[tuple[int, int, int, int]], mark: str, cast: str = "", *, wide: bool = False
) -> tuple[str, list[int]]:
    """One query summing the rollups over tiled spans, by span, service and source.

    `pieces` are `(span index, step, first bucket, end)`; `cast` types the placeholders where
    the driver needs it (PostgreSQL: `::bigint`). Each piece is an index range scan of the
    rollups' primary key.

    Each bucket's money and hits are within `MAX_TOTAL`, but a sum over many buckets may
    pass 64 bits. PostgreSQL sums bigints as numeric; SQLite stops with "integer overflow",
    and `wide=True` is the query to run then: it sums those columns in two parts, billions
    and the rest, each far inside 64 bits, which `tally_rows(wide=True)` joins exactly.
    """
    one = f"({', '.join([mark + cast] * 4)})"
    sums = ", ".join(
        f"SUM(r.{c} / {_PART}), SUM(r.{c} % {_PART})" if wide and c in _WIDE else f"SUM(r.{c})"
        for c in TALLY_FIELDS
    )
    sql = (
        f"WITH t(i, step, lo, hi) AS (VALUES {', '.join([one] * len(pieces))}) "
        f"SELECT t.i, r.service, r.source, {sums} FROM t JOIN rollups r "
        "ON r.step = t.step AND r.bucket >= t.lo AND r.bucket < t.hi "
        "GROUP BY t.i, r.service, r.source"
    )
    return sql, [v for piece in pieces for v in piece]


def tally_rows(
    rows: Sequence[Sequence[Any]], *, wide: bool = False
) -> list[tuple[int, str, str, Tally]]:
    """The rows of `tallies_query()` (with the same `wide`) as values."""
    if wide:
        return [(int(r[0]), r[1], r[2], Tally.from_row(_joined(r[3:]))) for r in rows]
    return [(int(r[0]), r[1], r[2], Tally.from_row(r[3:])) for r in rows]


_WIDE = ("cost", "cache_hits", "batched_cost")  # the sums that grow by more than one an event
_PART = 10**9


def _joined(sums: Sequence[Any]) -> list[Any]:
    """The sums of a wide row, each split pair joined back into one exact integer."""
    out: list[Any] = []
    at = 0
    for c in TALLY_FIELDS:
        if c in _WIDE:
            out.append(int(sums[at] or 0) * _PART + int(sums[at + 1] or 0))
            at += 2
        else:
            out.append(sums[at])
            at += 1
    return out


# -- the control plane ------------------------------------------------------------------------

MAX_AUDIT_LIMIT = 10_000
_NEWEST = 2**62  # above every revision: `audit()` without `before`


def audit_limit(limit: int) -> int:
    """`limit` of `Store.audit()`, checked."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise ValidationError("limit", limit, f"a whole number from 1 to {MAX_AUDIT_LIMIT}")
    return limit


def spec_json(spec: Mapping[str, Any] | None) -> str | None:
    """A definition's spec (or an audit entry's value) as stored: compact JSON, keys in the
    order given."""
    return None if spec is None else json.dumps(dict(spec), separators=(",", ":"))


def json_spec(text: str | None) -> dict[str, Any] | None:
    """A stored spec, as a new dictionary."""
    return None if text is None else dict(json.loads(text))


class _Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...


class Connection(Protocol):
    """What the control plane needs of a connection: sqlite3's and psycopg's both serve."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> _Rows: ...


_KEY_COLUMNS = (
    "key_id",
    "name",
    "scope",
    "services",
    "secret_hash",
    "created_at",
    "created_by",
    "revoked_at",
)
_DEFINITION_COLUMNS = ("kind", "name", "spec", "revision", "changed_at", "changed_by")
_AUDIT_COLUMNS = ("revision", "at", "actor", "action", "kind", "name", "before", "after")


def _key_row(key: ApiKey) -> tuple[Any, ...]:
    services = (
        None if key.services is None else json.dumps(list(key.services), separators=(",", ":"))
    )
    return (
        key.key_id,
        key.name,
        key.scope,
        services,
        key.secret_hash,
        key.created_at,
        key.created_by,
        key.revoked_at,
    )


def _row_key(row: Sequence[Any]) -> ApiKey:
    key_id, name, scope, services, secret_hash, created_at, created_by, revoked_at = row
    return ApiKey(
        key_id,
        name,
        scope,
        None if services is None else tuple(json.loads(services)),
        secret_hash,
        int(created_at),
        created_by,
        None if revoked_at is None else int(revoked_at),
    )


class ControlPlane:
    """Definitions, their audit and API keys on a SQL database, one statement text for both
    backends (`mark`: the driver's placeholder); and the health check's write probe.

    The write methods run inside the caller's write transaction, which must keep any other
    control-plane writer out until it commits (SQLite's `BEGIN IMMEDIATE` does; PostgreSQL
    takes a lock first): the next revision is the newest plus one, so writes that overlapped
    could number two changes alike, or commit them out of order.
    """

    def __init__(self, mark: str) -> None:
        def marks(n: int) -> str:
            return ", ".join([mark] * n)

        self._revision = "SELECT COALESCE(MAX(revision), 0) FROM audit_log"
        self._probe = (
            f"INSERT INTO write_probe (id, at) VALUES (1, {mark}) "
            "ON CONFLICT (id) DO UPDATE SET at = excluded.at"
        )
        self._append = (
            f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) "
            f"VALUES ({marks(len(_AUDIT_COLUMNS))})"
        )
        self._audit = (
            f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM audit_log WHERE revision < {mark} "
            f"ORDER BY revision DESC LIMIT {mark}"
        )
        self._definition = (
            f"SELECT spec, revision FROM definitions WHERE kind = {mark} AND name = {mark}"
        )
        self._definitions = (
            f"SELECT {', '.join(_DEFINITION_COLUMNS)} FROM definitions ORDER BY revision"
        )
        self._upsert = (
            f"INSERT INTO definitions ({', '.join(_DEFINITION_COLUMNS)}) "
            f"VALUES ({marks(len(_DEFINITION_COLUMNS))}) ON CONFLICT (kind, name) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _DEFINITION_COLUMNS[2:])
        )
        self._insert_key = (
            f"INSERT INTO api_keys ({', '.join(_KEY_COLUMNS)}) VALUES ({marks(len(_KEY_COLUMNS))}) "
            "ON CONFLICT (key_id) DO NOTHING"
        )
        self._keys = f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys ORDER BY created_at, key_id"
        self._key = f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys WHERE key_id = {mark}"
        self._revoke = f"UPDATE api_keys SET revoked_at = {mark} WHERE key_id = {mark}"

    # -- reads (any connection, one statement each) ---------------------------------------------

    def revision(self, conn: Connection) -> int:
        """The newest revision, 0 if none: a probe of the audit log's primary key."""
        return int(conn.execute(self._revision, ()).fetchone()[0])

    def probe_write(self, conn: Connection, at: int) -> None:
        """`Store.probe_write()`: one row written, always the same one (in a transaction of
        its own; no control-plane lock needed)."""
        conn.execute(self._probe, (at,))

    def definitions(self, conn: Connection) -> list[Definition]:
        """Every definition, deletions included, in revision order."""
        return [
            Definition(kind, name, json_spec(spec), int(revision), int(at), by)
            for kind, name, spec, revision, at, by in conn.execute(self._definitions, ()).fetchall()
        ]

    def audit(self, conn: Connection, limit: int, before: int | None) -> list[AuditEntry]:
        """Up to `limit` entries below `before`, newest first."""
        params = (_NEWEST if before is None else before, audit_limit(limit))
        return [
            AuditEntry(int(rev), int(at), actor, action, kind, name, json_spec(b), json_spec(a))
            for rev, at, actor, action, kind, name, b, a in conn.execute(
                self._audit, params
            ).fetchall()
        ]

    def keys(self, conn: Connection) -> list[ApiKey]:
        """Every API key, oldest first."""
        return [_row_key(r) for r in conn.execute(self._keys, ()).fetchall()]

    # -- writes (inside the caller's serialized transaction) -------------------------------------

    def define(
        self,
        conn: Connection,
        kind: str,
        name: str,
        spec: Mapping[str, Any] | None,
        *,
        expected: int,
        action: str,
        actor: str,
        at: int,
    ) -> AuditEntry:
        """`Store.define()`: check the revision, append the entry, write the definition."""
        row = conn.execute(self._definition, (kind, name)).fetchone()
        before, found = (None, 0) if row is None else (row[0], int(row[1]))
        if found != expected:
            raise ChangedError(f"{kind} {name!r}", expected, found)
        after = spec_json(spec)
        entry = self._log(
            conn, kind, name, action=action, at=at, actor=actor, before=before, after=after
        )
        conn.execute(self._upsert, (kind, name, after, entry.revision, at, actor))
        return entry

    def add_key(self, conn: Connection, key: ApiKey) -> AuditEntry:
        """`Store.add_key()`: insert the key (`ConflictError` if its id is taken), audit it."""
        if not conn.execute(self._insert_key, _key_row(key)).rowcount:
            raise ConflictError("api key", key.key_id)
        after = spec_json(key_record(key))
        return self._log(
            conn,
            "key",
            key.key_id,
            action="key.create",
            at=key.created_at,
            actor=key.created_by,
            before=None,
            after=after,
        )

    def revoke_key(self, conn: Connection, key_id: str, actor: str, at: int) -> ApiKey | None:
        """`Store.revoke_key()`: revoke and audit, unless unknown or revoked already."""
        row = conn.execute(self._key, (key_id,)).fetchone()
        if row is None:
            return None
        old = _row_key(row)
        if old.revoked_at is not None:
            return old
        new = replace(old, revoked_at=at)
        conn.execute(self._revoke, (at, key_id))
        before, after = spec_json(key_record(old)), spec_json(key_record(new))
        self._log(
            conn, "key", key_id, action="key.revoke", at=at, actor=actor, before=before, after=after
        )
        return new

    def _log(
        self,
        conn: Connection,
        kind: str,
        name: str,
        *,
        action: str,
        at: int,
        actor: str,
        before: str | None,
        after: str | None,
    ) -> AuditEntry:
        """Append the next revision's entry (values as stored JSON text) and return it."""
        revision = self.revision(conn) + 1
        conn.execute(self._append, (revision, at, actor, action, kind, name, before, after))
        return AuditEntry(
            revision, at, actor, action, kind, name, json_spec(before), json_spec(after)
        )
