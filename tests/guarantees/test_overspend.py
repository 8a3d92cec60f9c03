"""The guarantee that matters most: concurrent callers never spend past a hard budget.

Many processes and threads race for one budget on one SQLite file while a sampler reads the
file from outside; no committed state may ever hold more than the limit. Then the same race
among threads alone, on every backend: exactly as many win as the limit allows.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time
import traceback
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendgate import Gate, to_nanos
from spendgate.config import parse
from spendgate.settings import Config
from spendgate.testing import FrozenClock
from tests.conftest import small_config

PROCESSES = 4
THREADS = 8
LIMIT = "20.00"
MIN_ESTIMATE = to_nanos("0.01")
MAX_ESTIMATE = to_nanos("0.20")
RELEASE_SHARE = 0.1
DEADLINE_SECONDS = 60.0  # a safety net only: a healthy run is over in a second or two
SOURCE = "paid_api"


def money(nanos: int) -> str:
    """Nano-units as the decimal string a caller would pass."""
    return f"{Decimal(nanos).scaleb(-9):f}"


def race_config(reset_hour: int) -> Config:
    """One paid source and one hard daily budget whose window does not roll during the run."""
    return parse(
        {
            "sources": {SOURCE: {"price": "0.01/request"}},
            "budgets": [
                {"name": "daily", "limit": LIMIT, "window": "day", "reset_hour": reset_hour}
            ],
        }
    )


def far_reset_hour() -> int:
    """A reset hour about twelve hours away, so the real clock stays in one window."""
    return (datetime.now(UTC).hour + 12) % 24


def _worker_thread(
    gate: Gate, rng: random.Random, start: threading.Barrier, out: dict[str, Any]
) -> None:
    limit = to_nanos(LIMIT)
    deadline = time.monotonic() + DEADLINE_SECONDS
    start.wait()
    while time.monotonic() < deadline:
        estimate = rng.randint(MIN_ESTIMATE, MAX_ESTIMATE)
        decision = gate.reserve("racer", SOURCE, money(estimate))
        if not decision.approved:
            out["denied"] += 1
            # Stop once the budget is used to within one largest request; until then a
            # refusal can only come from other callers' holds, which they settle soon.
            if limit - gate.status()[0].spent_nanos < MAX_ESTIMATE:
                return
            continue
        rid = decision.reservation_id
        assert rid is not None
        if rng.random() < RELEASE_SHARE:
            gate.release(rid)
            out["released"] += 1
            continue
        # Mostly the whole estimate, sometimes less: never more, so nothing overshoots.
        actual = estimate if rng.random() < 0.5 else rng.randint(0, estimate)
        result = gate.commit(rid, money(actual))
        assert result.cost == actual
        assert result.overshoot == 0
        out["commits"] += 1
        out["committed_cost"] += actual
    out["timed_out"] = True


def race_process(
    url: str, reset_hour: int, seed: int, *, ready: Any, go: Any, results: Any
) -> None:
    """One process: its own gate on the shared file, THREADS threads racing for the budget."""
    outs = [
        {"commits": 0, "committed_cost": 0, "released": 0, "denied": 0, "timed_out": False}
        for _ in range(THREADS)
    ]
    errors: list[str] = []
    announced = False
    try:
        gate = Gate.open(url, config=race_config(reset_hour))
        start = threading.Barrier(THREADS)

        def run(i: int) -> None:
            try:
                _worker_thread(gate, random.Random(seed * 100 + i), start, outs[i])
            except BaseException:
                errors.append(traceback.format_exc())
                start.abort()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
        ready.put(seed)
        announced = True
        go.wait(30)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gate.close()
    except BaseException:
        errors.append(traceback.format_exc())
        if not announced:
            ready.put(seed)
    totals = {k: sum(o[k] for o in outs) for k in outs[0]}
    results.put({**totals, "errors": errors, "seed": seed})


def sample_used(
    db: Path, budget: str, stop: threading.Event, samples: list[tuple[int, int]]
) -> None:
    """Read spent and reserved straight from the file, read-only, until told to stop."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while not stop.is_set():
            spent, reserved = conn.execute(
                "SELECT COALESCE(SUM(spent), 0), COALESCE(SUM(reserved), 0) "
                "FROM budget_buckets WHERE budget = ?",
                (budget,),
            ).fetchone()
            samples.append((spent, reserved))
    finally:
        conn.close()


@pytest.mark.slow
def test_no_overspend_across_processes_and_threads(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    url = f"sqlite:///{db}"
    reset_hour = far_reset_hour()
    limit = to_nanos(LIMIT)
    Gate.open(url, config=race_config(reset_hour)).close()  # schema in place before the race

    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=race_process,
            args=(url, reset_hour, seed),
            kwargs={"ready": ready, "go": go, "results": results},
        )
        for seed in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    stop = threading.Event()
    samples: list[tuple[int, int]] = []
    sampler = threading.Thread(target=sample_used, args=(db, "daily", stop, samples))
    try:
        for _ in procs:
            ready.get(timeout=60)
        sampler.start()
        go.set()
        reports = [results.get(timeout=DEADLINE_SECONDS + 30) for _ in procs]
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        if sampler.ident is not None:
            sampler.join()

    errors = [e for r in reports for e in r["errors"]]
    assert not errors, f"{len(errors)} workers failed; the first:\n{errors[0]}"
    assert not any(r["timed_out"] for r in reports)
    assert all(p.exitcode == 0 for p in procs)

    # Every state anyone could observe kept within the limit.
    over = [(s, r) for s, r in samples if s + r > limit]
    assert over == [], f"{len(over)} of {len(samples)} samples over the limit, e.g. {over[:3]}"
    # The sampler watched the race itself, not just its start and end.
    during = {(s, r) for s, r in samples if s + r > 0 and s < limit - MAX_ESTIMATE}
    assert len(during) >= 20, f"only {len(during)} distinct samples during the race"
    assert any(r > 0 for _, r in samples)

    conn = sqlite3.connect(db)
    try:
        buckets = conn.execute(
            "SELECT spent, reserved, overshoot FROM budget_buckets WHERE budget = 'daily'"
        ).fetchall()
        n_events, event_cost, n_outside = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost), 0), "
            "COALESCE(SUM(reservation_id IS NULL OR request_id != reservation_id), 0) "
            "FROM events"
        ).fetchone()
        states = dict(
            conn.execute("SELECT state, COUNT(*) FROM reservations GROUP BY state").fetchall()
        )
    finally:
        conn.close()
    assert len(buckets) == 1  # one window: the race never crossed a reset
    ((spent, reserved, overshoot),) = buckets
    commits = sum(r["commits"] for r in reports)
    assert spent + reserved <= limit
    assert reserved == 0
    assert overshoot == 0
    assert n_outside == 0  # every event is a commit of a reservation
    assert n_events == commits
    assert states.get("committed", 0) == commits
    assert states.get("released", 0) == sum(r["released"] for r in reports)
    assert states.get("pending", 0) == 0
    assert spent == event_cost == sum(r["committed_cost"] for r in reports)
    assert limit - spent < MAX_ESTIMATE
    assert commits > 100  # enough calls that the race was a race
    assert sum(r["denied"] for r in reports) > 0


def test_simultaneous_reservations_admit_exactly_what_fits(store_url: str) -> None:
    callers = 100
    gate = Gate.open(store_url, config=small_config("1.00"), clock=FrozenClock())
    start = threading.Barrier(callers)
    approved: list[str] = []
    denied: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        try:
            start.wait()
            decision = gate.reserve("racer", "paid_api", "0.10")
            with lock:
                if decision.approved:
                    assert decision.reservation_id is not None
                    approved.append(decision.reservation_id)
                else:
                    denied.append(i)
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(approved) == 10
        assert len(set(approved)) == 10
        assert len(denied) == callers - 10
        (status,) = gate.status()
        assert (status.spent_nanos, status.reserved_nanos) == (0, to_nanos("1.00"))
        for rid in approved:
            gate.commit(rid)
        (status,) = gate.status()
        assert (status.spent_nanos, status.reserved_nanos, status.balance.overshoot) == (
            to_nanos("1.00"),
            0,
            0,
        )
        assert len(gate.events()) == 10
    finally:
        gate.close()


# -- several hosts, one budget: 8 processes, each its own gate, with and without leases ----------

HOSTS = 8
TRIALS = {"postgresql": 20, "sqlite": 4}
HOST_DEADLINE_SECONDS = 60.0  # a safety net only
DENIALS_TO_STOP = 3


def hosts_config(limit: int, leased: bool) -> dict[str, Any]:
    budget: dict[str, Any] = {"name": "daily", "limit": money(limit)}
    if leased:
        budget["lease"] = {"share": "10%", "floor": "5%"}
    return {"sources": {SOURCE: {"price": "0.01/request"}}, "budgets": [budget]}


def host_process(
    url: str, config: dict[str, Any], seed: int, bounds: tuple[int, int], *, ready: Any, go: Any,
    results: Any,
) -> None:  # fmt: skip
    """One host: its own gate, reserving random amounts until the budget refuses it."""
    out = {"commits": 0, "committed_cost": 0, "released": 0, "denied": 0, "timed_out": False}
    errors: list[str] = []
    try:
        gate = Gate.open(url, config=parse(config), clock=FrozenClock())
        rng = random.Random(seed)
        ready.put(seed)
        go.wait(30)
        deadline = time.monotonic() + HOST_DEADLINE_SECONDS
        refused_in_a_row = 0
        while refused_in_a_row < DENIALS_TO_STOP:
            if time.monotonic() > deadline:
                out["timed_out"] = True
                break
            estimate = rng.randint(*bounds)
            decision = gate.reserve("racer", SOURCE, money(estimate))
            if not decision.approved:
                out["denied"] += 1
                refused_in_a_row += 1
                continue
            refused_in_a_row = 0
            rid = decision.reservation_id
            assert rid is not None
            if rng.random() < RELEASE_SHARE:
                gate.release(rid)
                out["released"] += 1
                continue
            actual = estimate if rng.random() < 0.5 else rng.randint(0, estimate)
            result = gate.commit(rid, money(actual))
            assert result.cost == actual
            assert result.overshoot == 0
            out["commits"] += 1
            out["committed_cost"] += actual
        gate.close()  # returns its leases
    except BaseException:
        errors.append(traceback.format_exc())
        ready.put(seed)
    results.put({**out, "errors": errors})


def sample_postgres(
    url: str, schema: str, stop: threading.Event, samples: list[tuple[int, int]]
) -> None:
    """Read spent and reserved straight from the server, one snapshot per statement."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT COALESCE(SUM(spent), 0)::bigint, COALESCE(SUM(reserved), 0)::bigint "
                f"FROM {schema}.budget_buckets WHERE budget = 'daily'"
            ).fetchone()
            assert row is not None
            samples.append((row[0], row[1]))


def ledger(url: str) -> tuple[int, int, int, int]:
    """Spent, reserved, overshoot, and the sum of stored events' costs, through a fresh gate."""
    with Gate.open(url, config=parse(hosts_config(1, False)), clock=FrozenClock()) as gate:
        (status,) = gate.status()
        events = gate.events()
    return (
        status.spent_nanos,
        status.reserved_nanos,
        status.balance.overshoot,
        sum(e.cost or 0 for e in events),
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # PostgreSQL, several processes: 80 s measured on a loaded machine
@pytest.mark.parametrize("leased", [False, True], ids=["central", "leases"])
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_no_overspend_across_hosts(
    backend: str, leased: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(f"{backend}-{leased}")
    for trial in range(TRIALS[backend]):
        if backend == "postgresql":
            url = str(request.getfixturevalue("postgres_url"))
            if trial:  # a fresh, empty schema for each trial
                import psycopg

                from tests.conftest import POSTGRES_TABLES, POSTGRES_URL

                schema = request.getfixturevalue("postgres_schema")
                with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                    conn.execute(f"TRUNCATE {', '.join(f'{schema}.{t}' for t in POSTGRES_TABLES)}")
        else:
            url = f"sqlite:///{tmp_path / f'hosts{trial}.db'}"
        limit = to_nanos(rng.choice(["2.00", "5.00", "13.37", "25.00", "60.00"]))
        # Calls of 0.1% to 0.5% of the limit: the budget holds about three hundred.
        bounds = (limit // 1000, limit * 5 // 1000)
        run_hosts(url, backend, limit, bounds, leased=leased, seed=trial * 100)


def run_hosts(
    url: str, backend: str, limit: int, bounds: tuple[int, int], *, leased: bool, seed: int
) -> None:
    config = hosts_config(limit, leased)
    Gate.open(url, config=parse(config), clock=FrozenClock()).close()  # schema in place
    ctx = multiprocessing.get_context("fork")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=host_process,
            args=(url, config, seed + i, bounds),
            kwargs={"ready": ready, "go": go, "results": results},
        )
        for i in range(HOSTS)
    ]
    for p in procs:
        p.start()
    stop = threading.Event()
    samples: list[tuple[int, int]] = []
    if backend == "postgresql":
        from tests.conftest import POSTGRES_URL

        schema = url.rpartition("schema=")[2]
        sampler = threading.Thread(
            target=sample_postgres, args=(POSTGRES_URL, schema, stop, samples)
        )
    else:
        db = Path(url.removeprefix("sqlite:///"))
        sampler = threading.Thread(target=sample_used, args=(db, "daily", stop, samples))
    try:
        for _ in procs:
            ready.get(timeout=60)
        sampler.start()
        go.set()
        reports = [results.get(timeout=HOST_DEADLINE_SECONDS + 30) for _ in procs]
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        if sampler.ident is not None:
            sampler.join()

    errors = [e for r in reports for e in r["errors"]]
    assert not errors, f"{len(errors)} hosts failed; the first:\n{errors[0]}"
    assert not any(r["timed_out"] for r in reports)
    over = [(s, r) for s, r in samples if s + r > limit]
    assert over == [], f"{len(over)} of {len(samples)} samples over the limit, e.g. {over[:3]}"
    assert len(samples) >= 10

    spent, reserved, overshoot, event_cost = ledger(url)
    assert reserved == 0  # every hold and every lease came back
    assert overshoot == 0
    assert spent == event_cost == sum(r["committed_cost"] for r in reports)
    assert spent <= limit
    # Used to within 1% of the limit once the hosts have finished and returned their leases.
    assert limit - spent <= limit // 100, (limit, spent)
