"""`Gate.reserve()` then `Gate.commit()`, one thread, on SQLite, against the same bare writes.

What is measured: one thread runs `decision = gate.reserve(service, source)` then
`gate.commit(decision.reservation_id)` back to back, on a SQLite file (WAL,
`synchronous=FULL`, the default URL `sqlite:///path`), for a priced source charged to one
daily budget. The figure is reserve+commit pairs per second. spendgate's figure includes
all it does per pair: pricing, ids and fingerprints, the reservation row (insert, read back,
mark committed), the hold, the settle and the event insert, in two durable transactions.

Baseline: one bare `sqlite3` connection, same pragmas (WAL, `synchronous=FULL`), on a
database created by opening a `Gate` on it (identical schema and indexes), doing the writes
that are the point of a reserve/commit pair, in the same two durable transactions:

1. `BEGIN IMMEDIATE`; the conditional hold `UPDATE budget_buckets SET reserved = reserved + ?
   WHERE budget=? AND bucket=? AND spent + reserved + ? <= ?`; `COMMIT`.
2. `BEGIN IMMEDIATE`; the settling `UPDATE` (the statement spendgate uses); the event `INSERT`
   of a row built beforehand with `gate.prepare()` and `store.rows.event_row()`; `COMMIT`.

It is fair as a floor: it pays the same two disk flushes per pair for the same budget row and
event row, and nothing else (no reservation row, no Python-side bookkeeping).

Target (from the issue): spendgate's rate >= 50% of the baseline's.

Each repeat uses fresh database files in a temporary directory; spendgate and the baseline
alternate so drifting machine load hits both. Medians of the repeats are reported.

Run: `.venv/bin/python bench/bench_reserve_commit.py`
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from common import SERVICE, SOURCE, finish, header, median, priced_config
from spendgate import Gate
from spendgate.store.rows import EVENT_COLUMNS, event_row

PAIRS = 1000  # reserve+commit pairs per repeat
REPEATS = 7
TARGET = 0.50

HOLD = (
    "UPDATE budget_buckets SET reserved = reserved + ? "
    "WHERE budget = ? AND bucket = ? AND spent + reserved + ? <= ?"
)
INSERT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
SETTLE = (  # the statement SQLiteStore.commit() settles a hold with
    "UPDATE budget_buckets SET reserved = reserved - ?, spent = spent + ?, "
    "overshoot = overshoot + ? WHERE budget = ? AND bucket = ?"
)
RESERVATION_ID = EVENT_COLUMNS.index("reservation_id")


def run_spendgate(path: Path) -> float:
    """Reserve+commit pairs per second through the gate."""
    gate = Gate.open(f"sqlite:///{path}", config=priced_config())
    try:
        # Warm up: opens the connection, creates the budget bucket, caches the binding.
        warm = gate.reserve(SERVICE, SOURCE)
        assert warm.approved, warm
        assert warm.reservation_id is not None
        gate.commit(warm.reservation_id)
        start = time.perf_counter()
        for _ in range(PAIRS):
            decision = gate.reserve(SERVICE, SOURCE)
            gate.commit(decision.reservation_id or "")
        elapsed = time.perf_counter() - start
        assert decision.approved, decision
        spent = gate.status()[0].spent_nanos
    finally:
        gate.close()
    assert spent == (PAIRS + 1) * decision.requested, spent
    return PAIRS / elapsed


def run_baseline(path: Path) -> float:
    """The same holds, settles and event inserts with bare sqlite3, per second."""
    gate = Gate.open(f"sqlite:///{path}", config=priced_config())
    try:
        writes = [gate.prepare(SERVICE, SOURCE, request_id=f"b-{i}") for i in range(PAIRS + 1)]
    finally:
        gate.close()
    slot = writes[0].slots[0]
    amount = writes[0].event.cost
    assert amount
    assert slot.cap is not None
    key = (slot.budget, slot.bucket)
    rows = []
    for w in writes:  # commit() stores the reservation id on its event
        row = list(event_row(w.event))
        row[RESERVATION_ID] = w.event.request_id
        rows.append(tuple(row))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("INSERT INTO budget_buckets (budget, bucket) VALUES (?, ?)", key)

        def pair(row: tuple[object, ...]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            held = conn.execute(HOLD, (amount, *key, amount, slot.cap)).rowcount
            conn.execute("COMMIT")
            assert held == 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SETTLE, (amount, amount, 0, *key))
            conn.execute(INSERT, row)
            conn.execute("COMMIT")

        warm, *timed = rows
        pair(warm)
        start = time.perf_counter()
        for row in timed:
            pair(row)
        elapsed = time.perf_counter() - start
        spent = conn.execute("SELECT spent FROM budget_buckets").fetchone()[0]
    finally:
        conn.close()
    assert spent == (PAIRS + 1) * amount, spent
    return PAIRS / elapsed


def main() -> None:
    header(
        "bench_reserve_commit: Gate.reserve()+commit() vs bare sqlite3 hold/settle/insert",
        [
            f"1 thread, {PAIRS} pairs, SQLite WAL synchronous=FULL, {REPEATS} repeats, medians",
            f"target: spendgate >= {TARGET:.0%} of baseline",
        ],
    )
    rates: list[float] = []
    bases: list[float] = []
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmp:
        for rep in range(REPEATS):
            rate = run_spendgate(Path(tmp) / f"gate-{rep}.db")
            base = run_baseline(Path(tmp) / f"base-{rep}.db")
            rates.append(rate)
            bases.append(base)
            print(
                f"   repeat {rep + 1}: spendgate {rate:7,.0f} pairs/s ({1e6 / rate:5.0f} µs)"
                f" | baseline {base:7,.0f} pairs/s ({1e6 / base:5.0f} µs) | ratio {rate / base:.2f}"
            )
    rate, base = median(rates), median(bases)
    ratio = rate / base
    per_repeat = median([r / b for r, b in zip(rates, bases, strict=True)])
    print(f"   median spendgate: {rate:,.0f} pairs/s ({1e6 / rate:.0f} µs per pair)")
    print(f"   median baseline:  {base:,.0f} pairs/s ({1e6 / base:.0f} µs per pair)")
    print(f"   ratio of medians: {ratio:.2f} (median of per-repeat ratios {per_repeat:.2f})")
    finish(
        "bench_reserve_commit",
        ratio >= TARGET,
        f"spendgate {rate:,.0f} pairs/s = {ratio:.0%} of baseline {base:,.0f} pairs/s "
        f"(target >= {TARGET:.0%})",
    )


if __name__ == "__main__":
    main()
