"""The control plane of the storage contract: definitions with their revisions, the audit log,
API keys. Run on every backend (see `conftest.BACKENDS`); the races run across processes on
SQLite and PostgreSQL, and count winners and revisions.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spendgate.errors import ChangedError, ConflictError, StoreError, ValidationError
from spendgate.store import migrate, open_store
from spendgate.store.base import ApiKey, AuditEntry, Definition, Store, key_record

T0 = 1_700_000_000_000_000  # µs
SPEC = {"limit": "10.00", "window": "day", "sources": ["geo", "llm"], "hard": True}


def define(
    store: Store, name: str, spec: dict[str, Any] | None, expected: int, at: int = T0
) -> AuditEntry:
    action = "budget.delete" if spec is None else "budget.put"
    return store.define("budget", name, spec, expected=expected, action=action, actor="ann", at=at)


def api_key(key_id: str, at: int = T0, **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "name": f"key {key_id}",
        "scope": "write",
        "services": ("geo", "llm"),
        "secret_hash": f"hash-of-{key_id}",
        "created_at": at,
        "created_by": "ann",
        **fields,
    }
    return ApiKey(key_id, **values)


# -- definitions and their audit ----------------------------------------------------------------


def test_an_empty_store_has_revision_zero_and_nothing_in_it(store: Store) -> None:
    assert store.revision() == 0
    assert store.definitions() == []
    assert store.audit() == []
    assert store.keys() == []


def test_create_update_delete_round_trip_with_revisions_and_audit(store: Store) -> None:
    created = define(store, "daily", SPEC, expected=0, at=T0)
    assert created == AuditEntry(1, T0, "ann", "budget.put", "budget", "daily", None, SPEC)
    assert store.definitions() == [Definition("budget", "daily", SPEC, 1, T0, "ann")]

    changed = {**SPEC, "limit": "20.00", "labels": {"team": "a", "nested": [1, {"x": None}]}}
    updated = store.define(
        "budget", "daily", changed, expected=1, action="budget.put", actor="bob", at=T0 + 1
    )
    assert (updated.revision, updated.before, updated.after) == (2, SPEC, changed)
    assert store.definitions() == [Definition("budget", "daily", changed, 2, T0 + 1, "bob")]

    deleted = define(store, "daily", None, expected=2, at=T0 + 2)
    assert (deleted.revision, deleted.action, deleted.before, deleted.after) == (
        3,
        "budget.delete",
        changed,
        None,
    )
    # A deletion keeps its row (a tombstone), so it can hide the file's definition.
    assert store.definitions() == [Definition("budget", "daily", None, 3, T0 + 2, "ann")]
    assert store.revision() == 3

    recreated = define(store, "daily", SPEC, expected=3, at=T0 + 3)
    assert (recreated.revision, recreated.before, recreated.after) == (4, None, SPEC)
    assert store.audit() == [recreated, deleted, updated, created]


def test_definitions_list_in_revision_order_across_kinds(store: Store) -> None:
    define(store, "b", {"limit": "1"}, expected=0)
    price = {"price": "0.01/request"}
    store.define("source", "geo", price, expected=0, action="source.put", actor="ann", at=T0)
    define(store, "a", {"limit": "2"}, expected=0)
    define(store, "b", None, expected=1)
    listed = [(d.kind, d.name, d.revision, d.spec) for d in store.definitions()]
    assert listed == [
        ("source", "geo", 2, price),
        ("budget", "a", 3, {"limit": "2"}),
        ("budget", "b", 4, None),
    ]


def test_the_same_name_in_two_kinds_is_two_definitions(store: Store) -> None:
    define(store, "geo", {"limit": "1"}, expected=0)
    entry = store.define("source", "geo", {}, expected=0, action="source.put", actor="x", at=T0)
    assert entry.revision == 2
    assert {(d.kind, d.name) for d in store.definitions()} == {("budget", "geo"), ("source", "geo")}


def test_deleting_what_only_the_file_defines_leaves_a_tombstone(store: Store) -> None:
    entry = define(store, "from-file", None, expected=0)
    assert (entry.revision, entry.before, entry.after) == (1, None, None)
    assert store.definitions() == [Definition("budget", "from-file", None, 1, T0, "ann")]


def test_a_stale_expected_revision_is_refused_and_writes_nothing(store: Store) -> None:
    define(store, "daily", SPEC, expected=0)
    define(store, "other", SPEC, expected=0)
    before = (store.revision(), store.definitions(), store.audit())
    for stale in (0, 2, 7):
        with pytest.raises(ChangedError) as err:
            define(store, "daily", {"limit": "99"}, expected=stale)
        assert (err.value.what, err.value.expected, err.value.found) == (
            "budget 'daily'",
            stale,
            1,
        )
    with pytest.raises(ChangedError) as err:
        define(store, "new", None, expected=1)  # no such definition: its revision is 0
    assert err.value.found == 0
    assert (store.revision(), store.definitions(), store.audit()) == before


def test_what_is_read_back_is_the_callers_own_copy(store: Store) -> None:
    spec: dict[str, Any] = {"limit": "1", "labels": {"team": "a"}}
    entry = define(store, "daily", spec, expected=0)
    spec["labels"]["team"] = "changed after the write"
    assert entry.after is not None
    entry.after["limit"] = "changed in the returned entry"  # type: ignore[index]
    (found,) = store.definitions()
    assert found.spec == {"limit": "1", "labels": {"team": "a"}}
    found.spec["limit"] = "changed in a read"  # type: ignore[index]
    assert store.definitions()[0].spec == {"limit": "1", "labels": {"team": "a"}}
    assert store.audit()[0].after == {"limit": "1", "labels": {"team": "a"}}


def test_audit_pages_newest_first_with_before(store: Store) -> None:
    for i in range(7):
        define(store, f"b{i}", {"i": i}, expected=0, at=T0 + i)
    assert [e.revision for e in store.audit()] == [7, 6, 5, 4, 3, 2, 1]
    assert [e.revision for e in store.audit(limit=3)] == [7, 6, 5]
    assert [e.revision for e in store.audit(limit=3, before=5)] == [4, 3, 2]
    assert [e.revision for e in store.audit(limit=3, before=2)] == [1]
    assert store.audit(before=1) == []
    assert [e.revision for e in store.audit(limit=2, before=100)] == [7, 6]
    # Paging through by the oldest revision seen visits every entry once.
    seen: list[int] = []
    page = store.audit(limit=2)
    while page:
        seen += [e.revision for e in page]
        page = store.audit(limit=2, before=page[-1].revision)
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert store.audit(limit=1)[0] == AuditEntry(
        7, T0 + 6, "ann", "budget.put", "budget", "b6", None, {"i": 6}
    )


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True, "10"])
def test_audit_limit_outside_1_to_10000_is_refused(store: Store, limit: Any) -> None:
    with pytest.raises(ValidationError, match="a whole number from 1 to 10000") as err:
        store.audit(limit=limit)
    assert err.value.field == "limit"


def test_audit_limit_bounds_are_accepted(store: Store) -> None:
    define(store, "daily", SPEC, expected=0)
    assert len(store.audit(limit=1)) == len(store.audit(limit=10_000)) == 1


# -- API keys -----------------------------------------------------------------------------------


def test_keys_are_stored_listed_oldest_first_and_audited(store: Store) -> None:
    first = api_key("k2", at=T0)
    every_service = api_key("k1", at=T0 + 5, scope="admin", services=None, created_by="bob")
    same_time = api_key("k0", at=T0 + 5, scope="read", services=())
    entry = store.add_key(first)
    assert entry == AuditEntry(1, T0, "ann", "key.create", "key", "k2", None, key_record(first))
    store.add_key(every_service)
    store.add_key(same_time)
    assert store.keys() == [first, same_time, every_service]
    assert store.revision() == 3
    assert store.audit()[0].after == key_record(same_time)


def test_a_taken_key_id_is_a_conflict_that_writes_nothing(store: Store) -> None:
    store.add_key(api_key("k1"))
    with pytest.raises(ConflictError) as err:
        store.add_key(api_key("k1", name="another", secret_hash="another-hash"))
    assert (err.value.kind, err.value.key) == ("api key", "k1")
    assert store.keys() == [api_key("k1")]
    assert store.revision() == 1
    assert len(store.audit()) == 1


def test_revoke_is_audited_once_and_unknown_ids_are_none(store: Store) -> None:
    key = api_key("k1")
    store.add_key(key)
    revoked = store.revoke_key("k1", actor="bob", at=T0 + 10)
    assert revoked == ApiKey(
        "k1", key.name, "write", ("geo", "llm"), key.secret_hash, T0, "ann", T0 + 10
    )
    assert store.keys() == [revoked]
    newest = store.audit()[0]
    assert newest == AuditEntry(
        2, T0 + 10, "bob", "key.revoke", "key", "k1", key_record(key), key_record(revoked)
    )
    # Revoking again changes nothing: the key as it is, no second entry.
    assert store.revoke_key("k1", actor="carl", at=T0 + 20) == revoked
    assert store.revision() == 2
    assert store.revoke_key("nope", actor="bob", at=T0) is None
    assert store.revision() == 2


def test_audit_entries_never_hold_a_secret_hash(store: Store) -> None:
    store.add_key(api_key("k1", secret_hash="s3cr3t-hash"))
    store.revoke_key("k1", actor="ann", at=T0 + 1)
    define(store, "daily", SPEC, expected=0)
    for entry in store.audit():
        for value in (entry.before, entry.after):
            assert value is None or "secret_hash" not in value
            assert "s3cr3t-hash" not in repr(value)


def test_keys_and_definitions_share_one_revision_sequence(store: Store) -> None:
    define(store, "daily", SPEC, expected=0)
    assert store.add_key(api_key("k1")).revision == 2
    assert define(store, "daily", None, expected=1).revision == 3
    store.revoke_key("k1", actor="ann", at=T0)
    assert [e.action for e in store.audit()] == [
        "key.revoke",
        "budget.delete",
        "key.create",
        "budget.put",
    ]


# -- durability and migration ---------------------------------------------------------------------


def test_the_control_plane_survives_a_reopen(store_url: str, store: Store) -> None:
    if store_url.startswith("memory"):
        pytest.skip("memory:// keeps nothing across a reopen, by design")
    define(store, "daily", SPEC, expected=0)
    define(store, "gone", None, expected=0)
    store.add_key(api_key("k1"))
    store.revoke_key("k1", actor="ann", at=T0 + 1)
    state = (store.revision(), store.definitions(), store.audit(), store.keys())
    store.close()
    again = open_store(store_url)
    try:
        assert (again.revision(), again.definitions(), again.audit(), again.keys()) == state
        assert define(again, "daily", None, expected=1).revision == 5
    finally:
        again.close()


def test_a_closed_store_refuses_control_plane_calls(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.revision()
    with pytest.raises(StoreError, match="closed"):
        define(store, "daily", SPEC, expected=0)


def test_a_0002_database_is_upgraded_with_its_events_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url, "0002")
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "audit_log" not in tables
        conn.execute(
            "INSERT INTO quota_usage (source, unit, period, used) VALUES ('s', 'u', 0, '7')"
        )
    store = open_store(url)  # upgrades to the head
    try:
        assert migrate.current(url) == migrate.head()
        assert store.revision() == 0
        define(store, "daily", SPEC, expected=0)
        assert store.definitions()[0].spec == SPEC
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT used FROM quota_usage").fetchall() == [("7",)]


def test_downgrading_0003_drops_only_the_control_plane(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'down.db'}"
    migrate.upgrade(url)
    command.downgrade(migrate.alembic_config(url), "0002")
    assert migrate.current(url) == "0002"
    with sqlite3.connect(tmp_path / "down.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_keys", "definitions", "audit_log"}.isdisjoint(tables)
    assert {"events", "rollups", "budget_buckets"} <= tables


# -- races across processes ------------------------------------------------------------------------

PROCESSES = 4
EACH = 25  # definitions each process appends
TIMEOUT = 60.0  # a safety net only: a healthy race is over in a second or two


def _claim(store: Store, i: int) -> tuple[str, int, Any]:
    """Try to create the one definition every process creates, from revision 0."""
    try:
        return ("won", i, define(store, "shared", {"by": i}, expected=0).revision)
    except ChangedError as exc:
        return ("changed", i, exc.found)


def _append(store: Store, i: int) -> tuple[str, int, Any]:
    """Append `EACH` definitions of this process's own; the revisions they took."""
    revisions = [define(store, f"p{i}-{j}", {"j": j}, expected=0).revision for j in range(EACH)]
    return ("done", i, revisions)


Work = Callable[[Store, int], tuple[str, int, Any]]


def _process(work: Work, url: str, i: int, *, ready: Any, go: Any, results: Any) -> None:
    """One racing process: its own store, then `work` once every process is ready."""
    announced = False
    try:
        store = open_store(url)
        ready.put(i)
        announced = True
        go.wait(TIMEOUT)
        results.put(work(store, i))
        store.close()
    except BaseException:
        if not announced:
            ready.put(i)
        results.put(("error", i, traceback.format_exc()))


def race(
    url: str,
    work: Work,
    watch: Callable[[Store], None] | None = None,
) -> list[tuple[str, int, Any]]:
    """Run `work` in PROCESSES forked processes started at once, and `watch` (on a store of
    its own, opened after the fork) while they run; their reports."""
    ctx = multiprocessing.get_context("fork")
    ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    channels = {"ready": ready, "go": go, "results": results}
    procs = [
        ctx.Process(target=_process, args=(work, url, i), kwargs=channels) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=TIMEOUT)
        go.set()
        if watch is not None:
            with_store(url, watch)
        reports = [results.get(timeout=TIMEOUT) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT)
            if p.is_alive():
                p.kill()
    errors = [r[2] for r in reports if r[0] == "error"]
    assert not errors, f"{len(errors)} processes failed; the first:\n{errors[0]}"
    assert all(p.exitcode == 0 for p in procs)
    return reports


def with_store(url: str, work: Callable[[Store], None]) -> None:
    """Run `work` on a store of its own at `url`."""
    store = open_store(url)
    try:
        work(store)
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL that several processes can share, with its schema in place."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    open_store(url).close()
    return url


@pytest.mark.slow
def test_of_processes_creating_one_definition_exactly_one_wins(shared_url: str) -> None:
    reports = race(shared_url, _claim)
    won = [r for r in reports if r[0] == "won"]
    assert len(won) == 1
    ((_, winner, revision),) = won
    assert revision == 1
    assert sorted(r[2] for r in reports if r[0] == "changed") == [1] * (PROCESSES - 1)

    def check(store: Store) -> None:
        assert store.revision() == 1
        assert store.definitions() == [Definition("budget", "shared", {"by": winner}, 1, T0, "ann")]
        assert len(store.audit()) == 1

    with_store(shared_url, check)


@pytest.mark.slow
def test_concurrent_writers_number_every_change_once_and_commit_in_order(
    shared_url: str,
) -> None:
    total = PROCESSES * EACH
    polls: list[list[int]] = []

    def watch(store: Store) -> None:
        # A reader polling while the writers run: whatever it sees, it sees every revision
        # from 1 up to the newest (a change never commits behind a newer one).
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            newest = store.revision()
            seen = sorted(e.revision for e in store.audit(limit=10_000))
            assert seen == list(range(1, len(seen) + 1)), f"a gap in {seen}"
            assert len(seen) >= newest
            polls.append(seen)
            if newest == total:
                return

    reports = race(shared_url, _append, watch)
    assert len(polls) > 1
    assert any(0 < len(seen) < total for seen in polls)  # it watched the race itself
    mine = sorted(rev for r in reports for rev in r[2])
    assert mine == list(range(1, total + 1))
    for _, _, revisions in reports:
        assert revisions == sorted(revisions)  # each process saw its own in order

    def check(store: Store) -> None:
        assert store.revision() == total
        assert sorted(e.revision for e in store.audit(limit=10_000)) == mine
        assert len(store.definitions()) == total

    with_store(shared_url, check)
