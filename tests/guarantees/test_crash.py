"""The guarantee that nothing acknowledged is lost: `record()` returns only once the event is
durable, even when the process dies right after (`kill -9`), and a replay of every request
finishes the job without counting anything twice. On SQLite and on PostgreSQL (a fresh schema
per run, dropped at the end).
"""

from __future__ import annotations

import importlib.util
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from spendgate import to_nanos
from tests.conftest import PATIENT, POSTGRES_URL, postgres_or_skip, with_schema

# Each PostgreSQL run starts a child that migrates a schema of its own: fewer runs, same checks.
RUNS = {"sqlite": 20, "postgresql": 10}
SEED = 20260105
MAX_ACKS_BEFORE_KILL = 400
CHILD_TIMEOUT = 30.0

# The child, written into tmp_path. The parent imports the same file, so the replay sends
# exactly the payloads the child sent.
CHILD_SOURCE = '''
"""Record events from several threads; after each record() returns, print its request id."""

import os
import sys
import threading

from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock

THREADS = 8
TOTAL = 100_000  # more than any run gets through before it is killed
CONFIG = {
    "sources": {"paid_api": {"price": "0.01/request"}},
    "budgets": [{"name": "daily", "limit": "1000000"}],
}


def request_id(run, i):
    return f"run{run:02d}-req{i:06d}"


def payload(i):
    """What the i-th request records: a deterministic cost and details."""
    return {
        "cost": f"0.{i % 997 + 1:03d}",
        "labels": {"shard": str(i % 4)},
        "cache_hits": i % 3,
        "success": i % 5 != 0,
    }


def open_gate(url):
    return Gate.open(url, config=parse(CONFIG), clock=FrozenClock())


def main(url, run):
    gate = open_gate(url)
    lock = threading.Lock()
    taken = [0]

    def work():
        while True:
            with lock:
                i = taken[0]
                if i >= TOTAL:
                    return
                taken[0] += 1
            rid = request_id(run, i)
            gate.record("crash-test", "paid_api", request_id=rid, **payload(i))
            os.write(1, f"{rid}\\n".encode())  # one write, atomic on a pipe

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    os.write(1, b"ready\\n")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gate.close()
    os.write(1, b"done\\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
'''


def load_child(tmp_path: Path) -> tuple[Path, ModuleType]:
    path = tmp_path / "crash_child.py"
    path.write_text(CHILD_SOURCE)
    spec = importlib.util.spec_from_file_location("crash_child", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def run_and_kill(script: Path, url: str, run: int, kill_after: int, log: Path) -> list[str]:
    """Start the child, SIGKILL it once `kill_after` requests are acknowledged, and return
    every acknowledgement it wrote (the pipe keeps what was written before the kill)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), url, str(run)], stdout=subprocess.PIPE, stderr=err
        )
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    acked: list[str] = []
    killed = False
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == b"ready\n", log.read_text()
        if kill_after == 0:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        for line in iter(proc.stdout.readline, b""):
            assert line.endswith(b"\n"), line  # writes are atomic: no torn lines
            acked.append(line.decode().strip())
            if not killed and len(acked) >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    assert "done" not in acked  # killed mid-run, not after finishing
    return acked


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        postgres_or_skip()
    return str(request.param)


@pytest.fixture
def run_url(backend: str, tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """A fresh store URL per run: a new SQLite file, or a new PostgreSQL schema (dropped at
    the end of the test) whose sessions carry its name as their application_name."""
    token = secrets.token_hex(4)
    schemas: list[str] = []

    def url(run: int) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'run{run:02d}.db'}"
        schemas.append(f"sgcrash_{token}_{run:02d}")
        named = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}application_name={schemas[-1]}"
        return with_schema(named, schemas[-1], timeout=PATIENT)

    yield url
    if schemas:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def end_sessions(url: str) -> None:
    """PostgreSQL: end the dead child's server sessions and wait until they are gone.

    A COMMIT the child sent just before it died may still be landing; once its session has
    ended, what is stored is final (landed whole, or not at all) and safe to check.
    """
    if url.startswith("postgresql"):
        schema = url.rpartition("schema=")[2]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (schema,),
            )


def read(url: str, *queries: str) -> list[list[tuple[Any, ...]]]:
    """The rows of each query, read from the database itself, beside spendgate (a SQLite
    file is checked for integrity first)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            return [conn.execute(q).fetchall() for q in queries]
        finally:
            conn.close()
    schema = url.rpartition("schema=")[2]
    with psycopg.connect(POSTGRES_URL, options=f"-csearch_path={schema}") as pg:
        return [pg.execute(q).fetchall() for q in queries]


def stored_rows(url: str) -> tuple[dict[str, int | None], tuple[int, int, int]]:
    """What the database itself holds: each event's request id and cost, and the budget
    rows' (spent, reserved, overshoot) summed."""
    rows, ((spent, reserved, overshoot),) = read(
        url,
        "SELECT request_id, cost FROM events",
        "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0), "
        "COALESCE(SUM(overshoot), 0) FROM budget_buckets",
    )
    counts = Counter(rid for rid, _ in rows)
    assert not counts or max(counts.values()) == 1, counts.most_common(3)
    return dict(rows), (int(spent), int(reserved), int(overshoot))


@pytest.mark.slow
def test_acknowledged_events_survive_kill_and_replay_counts_each_once(
    backend: str, run_url: Callable[[int], str], tmp_path: Path
) -> None:
    script, child = load_child(tmp_path)
    rng = random.Random(SEED)
    runs = RUNS[backend]
    total_acked = 0
    total_missing = 0
    for run in range(runs):
        url = run_url(run)
        if run % 2:  # half the runs start on an existing schema, half create it
            child.open_gate(url).close()
        kill_after = rng.randint(0, MAX_ACKS_BEFORE_KILL)
        acked = run_and_kill(script, url, run, kill_after, tmp_path / f"run{run:02d}.log")
        end_sessions(url)
        assert len(acked) >= kill_after
        assert len(set(acked)) == len(acked)
        total_acked += len(acked)

        # Each thread takes one id at a time, in order, and acknowledges it before taking the
        # next: so the child attempted at most one unacknowledged id per thread.
        attempted = len(acked) + child.THREADS
        candidates = [child.request_id(run, i) for i in range(attempted)]
        assert set(acked) <= set(candidates)

        # The rows themselves, read past spendgate: each event once, and the budget charged
        # with exactly the events that were stored (a transaction landed whole or not at all).
        rows, (spent, reserved, overshoot) = stored_rows(url)
        assert sorted(set(acked) - set(rows)) == []
        assert set(rows) <= set(candidates)
        assert spent == sum(cost or 0 for cost in rows.values())
        assert (reserved, overshoot) == (0, 0)

        gate = child.open_gate(url)
        try:
            stored = {e.request_id: e for e in gate.events()}
            assert set(stored) == set(rows)
            # Nothing acknowledged is lost, nothing outside what was attempted appears, and
            # each stored event is the one that was sent.
            missing = sorted(set(acked) - set(stored))
            assert missing == [], f"run {run}: acknowledged but lost: {missing[:5]}"
            assert set(stored) <= set(candidates)
            for i, rid in enumerate(candidates):
                if rid in stored:
                    assert stored[rid].cost == to_nanos(child.payload(i)["cost"])
            # Each event was stored with its budget charge, or neither was.
            (status,) = gate.status()
            assert status.spent_nanos == sum(e.cost or 0 for e in stored.values())
            assert status.reserved_nanos == 0

            # Replay everything the child could have attempted, with the same payloads.
            for i, rid in enumerate(candidates):
                result = gate.record("crash-test", "paid_api", request_id=rid, **child.payload(i))
                expected = "exists" if rid in stored else "created"
                assert result.status == expected, (run, rid)
                assert result.cost == to_nanos(child.payload(i)["cost"])
            total_missing += sum(rid not in stored for rid in candidates)

            after = gate.events()
            counts = Counter(e.request_id for e in after)
            assert set(counts) == set(candidates)
            assert max(counts.values()) == 1
            (status,) = gate.status()
            expected_spent = sum(to_nanos(child.payload(i)["cost"]) for i in range(attempted))
            assert status.spent_nanos == sum(e.cost or 0 for e in after) == expected_spent
            assert status.reserved_nanos == 0
            assert status.balance.overshoot == 0
        finally:
            gate.close()
        rows, (spent, reserved, _) = stored_rows(url)
        assert set(rows) == set(candidates)
        assert spent == expected_spent
    assert total_acked > runs * 50  # the runs did real work before dying
    assert total_missing > 0  # and the replays had something left to create


# -- holds: a SIGKILL during a group commit of reserve, commit and release --------------------

HOLDS_CHILD_SOURCE = '''
"""Reserve, then commit (or, one time in four, release), from many threads at once, so the
store group-commits them; after each call returns, print what it did and the id."""

import os
import sys
import threading

from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock

THREADS = 16
TOTAL = 100_000
CONFIG = {
    "sources": {"paid_api": {"price": "0.01/request"}},
    "budgets": [{"name": "daily", "limit": "1000000"}],
}


def reservation_id(run, i):
    return f"run{run:02d}-hold{i:06d}"


def open_gate(url):
    return Gate.open(url, config=parse(CONFIG), clock=FrozenClock())


def main(url, run):
    gate = open_gate(url)
    lock = threading.Lock()
    taken = [0]
    holds = gate.store._ledger_committer

    def say(line):
        os.write(1, f"{line}\\n".encode())  # one write, atomic on a pipe

    def work():
        while True:
            with lock:
                i = taken[0]
                if i >= TOTAL:
                    return
                taken[0] += 1
            rid = reservation_id(run, i)
            gate.reserve("crash-test", "paid_api", reservation_id=rid)
            say(f"R {rid}")
            if i % 4 == 3:
                gate.release(rid)
                say(f"X {rid}")
            else:
                gate.commit(rid, f"0.{i % 97 + 1:02d}", request_id=rid)
                say(f"C {rid}")
            if i % 50 == 0:
                say(f"B {holds.batches} {holds.items}")

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    say("ready")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gate.close()
    say("done")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
'''


def stored_holds(
    url: str,
) -> tuple[dict[str, tuple[str, int]], dict[str, int | None], tuple[int, int]]:
    """The reservations (state, amount), the events (cost) and the budget rows' (spent,
    reserved) summed, read beside spendgate."""
    held, rows, ((spent, reserved),) = read(
        url,
        "SELECT id, state, amount FROM reservations",
        "SELECT request_id, cost FROM events",
        "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0) FROM budget_buckets",
    )
    return (
        {rid: (state, int(amount)) for rid, state, amount in held},
        dict(rows),
        (int(spent), int(reserved)),
    )


@pytest.mark.slow
def test_a_kill_during_group_commits_of_holds_loses_nothing_and_half_applies_nothing(
    backend: str, run_url: Callable[[int], str], tmp_path: Path
) -> None:
    """Every reserve, commit and release that returned is in the store; every one that did
    not is there whole or not at all: the budget rows hold exactly the pending holds and the
    committed costs, and a reservation is committed exactly when its event is stored."""
    script = tmp_path / "holds_child.py"
    script.write_text(HOLDS_CHILD_SOURCE)
    rng = random.Random(SEED + 1)
    shared = 0  # calls answered from a transaction they shared with others
    for run in range(RUNS[backend] // 2):
        url = run_url(run)
        kill_after = rng.randint(1, MAX_ACKS_BEFORE_KILL)
        acked = run_and_kill(script, url, run, kill_after, tmp_path / f"holds{run:02d}.log")
        end_sessions(url)
        said: dict[str, set[str]] = {"R": set(), "C": set(), "X": set()}
        for line in acked:
            kind, _, rest = line.partition(" ")
            if kind == "B":
                batches, items = map(int, rest.split())
                shared = max(shared, items - batches)
            else:
                said[kind].add(rest)
        held, events, (spent, reserved) = stored_holds(url)
        # Nothing acknowledged is lost.
        assert said["R"] <= set(held)
        assert all(held[rid][0] == "committed" and rid in events for rid in said["C"])
        assert all(held[rid][0] == "released" for rid in said["X"])
        # Nothing half-applied: the budget rows are exactly what the rows say happened.
        committed = {rid for rid, (state, _) in held.items() if state == "committed"}
        assert committed == set(events)
        assert spent == sum(cost or 0 for cost in events.values())
        assert reserved == sum(amount for state, amount in held.values() if state == "pending")
    assert shared > 0, "the calls shared transactions: the group commit was exercised"
