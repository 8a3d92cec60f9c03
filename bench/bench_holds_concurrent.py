"""Durable reserve+commit from many callers at once: the group commit of holds.

What is measured: `gate.reserve()` then `gate.commit()` pairs per second on a SQLite file
(WAL, `synchronous=FULL`, the default URL) against one daily budget, from

- 64 threads, each doing pairs back to back;
- 64 asyncio tasks on one event loop, each awaiting `gate.areserve()` then `gate.acommit()`
  (every such call joins the group commit; the loop runs on while a task waits);

against the baseline, measured in the same run: one caller doing the same, back to back (the
rate one fsync per transaction allows). Concurrent calls share transactions (see
docs/storage.md), so their rate is not capped by the fsync.

The budget's limit is set to 90% of what the run asks for, so the last calls are refused,
and a sampler thread reads the budget row beside spendgate (its own connection) every
millisecond throughout: `spent + reserved <= limit` must hold in every sample.

Target (from issue 22): 64 callers at least 10x the rate of one.

Run: `.venv/bin/python bench/bench_holds_concurrent.py`
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from common import SERVICE, SOURCE, finish, header, median
from spendgate import Gate, to_nanos
from spendgate.config import parse

PRICE = Decimal("0.0001")
CALLERS = 64
PAIRS_ALONE = 400
PAIRS_EACH = 40  # per concurrent caller
REPEATS = 3
TARGET = 10.0


def limit_of(pairs: int) -> Decimal:
    """The budget: 90% of what `pairs` ask for."""
    return PRICE * pairs * 9 / 10


def open_gate(path: Path, pairs: int) -> Gate:
    limit = limit_of(pairs)
    config = parse(
        {
            "sources": {SOURCE: {"price": f"{PRICE}/request"}},
            "budgets": [{"name": "daily", "limit": str(limit)}],
        }
    )
    return Gate.open(f"sqlite:///{path}", config=config)


def pair(gate: Gate) -> None:
    decision = gate.reserve(SERVICE, SOURCE)
    if decision.approved:
        gate.commit(decision.reservation_id or "")


class Sampler:
    """Reads the budget row beside spendgate until stopped; the largest spent + reserved
    seen, against the limit."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.samples = 0
        self.most = 0
        self.limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path)
        try:
            while not self._stop.wait(0.001):
                row = conn.execute("SELECT spent + reserved FROM budget_buckets").fetchone()
                if row is not None:
                    self.most = max(self.most, row[0])
                    self.samples += 1
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed(path: Path, pairs: int, run: Callable[[Gate], None]) -> tuple[float, Sampler]:
    """Pairs per second of `run(gate)`, with a sampler watching the budget."""
    gate = open_gate(path, pairs)
    try:
        pair(gate)  # warm: the connection, the bucket, the binding
        sampler = Sampler(path, to_nanos(limit_of(pairs)))
        start = time.perf_counter()
        run(gate)
        elapsed = time.perf_counter() - start
        sampler.stop()
    finally:
        gate.close()
    return pairs / elapsed, sampler


def alone(gate: Gate) -> None:
    for _ in range(PAIRS_ALONE):
        pair(gate)


def threads(gate: Gate) -> None:
    def work() -> None:
        for _ in range(PAIRS_EACH):
            pair(gate)

    workers = [threading.Thread(target=work) for _ in range(CALLERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def tasks(gate: Gate) -> None:
    async def caller() -> None:
        for _ in range(PAIRS_EACH):
            decision = await gate.areserve(SERVICE, SOURCE)
            if decision.approved:
                await gate.acommit(decision.reservation_id or "")

    async def run() -> None:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))

    asyncio.run(run())


def main() -> None:
    header(
        "bench_holds_concurrent: reserve+commit, 64 callers vs 1, SQLite synchronous=FULL",
        [
            f"1 caller: {PAIRS_ALONE} pairs; 64 threads and 64 asyncio tasks: "
            f"{PAIRS_EACH} pairs each; {REPEATS} repeats, medians",
            "a sampler reads spent + reserved every ms beside spendgate: never past the limit",
            f"target: 64 callers >= {TARGET:.0f}x one caller",
        ],
    )
    cases = {"1 caller": (alone, PAIRS_ALONE)}
    cases["64 threads"] = (threads, CALLERS * PAIRS_EACH)
    cases["64 asyncio tasks"] = (tasks, CALLERS * PAIRS_EACH)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    safe = True
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmp:
        for rep in range(REPEATS):
            for name, (run, pairs) in cases.items():
                rate, sampler = timed(Path(tmp) / f"{name[:2]}-{rep}.db", pairs, run)
                samples, most, limit = sampler.samples, sampler.most, sampler.limit
                safe = safe and most <= limit
                rates[name].append(rate)
                print(
                    f"   repeat {rep + 1} {name}: {rate:,.0f} pairs/s; {samples} samples, "
                    f"most spent+reserved {most / limit:.1%} of the limit"
                )
    base = median(rates["1 caller"])
    ratios = {name: median(r) / base for name, r in rates.items() if name != "1 caller"}
    for name, ratio in ratios.items():
        print(f"   {name}: {median(rates[name]):,.0f} pairs/s = {ratio:.2f}x one caller")
    ok = safe and min(ratios.values()) >= TARGET
    summary = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    finish(
        "bench_holds_concurrent",
        ok,
        f"{summary} one caller ({base:,.0f} pairs/s); never past the limit: {safe}",
    )


if __name__ == "__main__":
    main()
