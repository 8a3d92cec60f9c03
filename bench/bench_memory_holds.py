"""`Gate.reserve()` then `Gate.commit()` on `memory://`, one thread, against a bare guard.

What is measured: one thread runs `decision = gate.reserve(service, source)` then
`gate.commit(decision.reservation_id)` back to back on a gate opened with
`Gate.open("memory://", config=...)`, for a priced source charged to one daily budget (with
the default alert lines). The figure is microseconds per reserve+commit pair, everything the
gate does included: binding, pricing, ids and fingerprints, the decision, the hold, the
settle, the event, the alert lines, the rollups analytics read.

Baseline, written here (the issue's "bare guard that keeps a ledger"): a lock, integer
balances, a `uuid4` reservation id, check-and-hold under the lock, then settle and append
the event as a tuple to a list. It is the least an in-process guard that can refuse before
the money is spent and keeps a record of what was spent can do.

Target (from the issue): spendgate's pair within 8x of the bare guard's.

Method: `time.perf_counter_ns()` around PAIRS pairs; the two alternate within each repeat
(the garbage collector stays on, as in real use); medians of REPEATS repeats.

Run: `.venv/bin/python bench/bench_memory_holds.py`
"""

from __future__ import annotations

import threading
import time
import uuid

from common import SERVICE, SOURCE, finish, header, median, priced_config
from spendgate import Gate

PAIRS = 20_000
REPEATS = 5
TARGET = 8.0
PRICE = 100_000  # nano-units: $0.0001, the price `priced_config()` gives the source
LIMIT = 1_000_000 * 10**9


class BareGuard:
    """A lock, integer balances, reservations by `uuid4` id, and an event list."""

    def __init__(self, limit: int) -> None:
        self.lock = threading.Lock()
        self.limit = limit
        self.spent = 0
        self.reserved = 0
        self.holds: dict[str, int] = {}
        self.events: list[tuple[str, str, str, int, float]] = []

    def reserve(self, service: str, source: str, amount: int) -> str | None:
        rid = str(uuid.uuid4())
        with self.lock:
            if self.spent + self.reserved + amount > self.limit:
                return None
            self.reserved += amount
            self.holds[rid] = amount
        return rid

    def commit(self, rid: str, service: str, source: str) -> None:
        with self.lock:
            held = self.holds.pop(rid)
            self.reserved -= held
            self.spent += held
            self.events.append((rid, service, source, held, time.time()))


def gate_pairs(gate: Gate, n: int) -> float:
    """Microseconds per reserve+commit pair through the gate."""
    reserve, commit = gate.reserve, gate.commit
    start = time.perf_counter_ns()
    for _ in range(n):
        decision = reserve(SERVICE, SOURCE)
        commit(decision.reservation_id or "")
    return (time.perf_counter_ns() - start) / n / 1000


def bare_pairs(guard: BareGuard, n: int) -> float:
    """Microseconds per reserve+commit pair through the bare guard."""
    reserve, commit = guard.reserve, guard.commit
    start = time.perf_counter_ns()
    for _ in range(n):
        rid = reserve(SERVICE, SOURCE, PRICE)
        commit(rid or "", SERVICE, SOURCE)
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> None:
    header(
        "bench_memory_holds: memory:// reserve()+commit() vs a bare guard with a ledger",
        [
            f"1 thread, {PAIRS:,} pairs a repeat, {REPEATS} repeats, medians",
            f"target: spendgate <= {TARGET:g}x the bare guard",
        ],
    )
    gate = Gate.open("memory://", config=priced_config())
    guard = BareGuard(LIMIT)
    gate_pairs(gate, 2_000)  # warm: binding, slots, caches
    bare_pairs(guard, 2_000)
    ours: list[float] = []
    bares: list[float] = []
    try:
        for rep in range(REPEATS):
            ours.append(gate_pairs(gate, PAIRS))
            bares.append(bare_pairs(guard, PAIRS))
            print(
                f"   repeat {rep + 1}: spendgate {ours[-1]:6.1f} µs | bare guard "
                f"{bares[-1]:5.2f} µs | ratio {ours[-1] / bares[-1]:5.1f}x"
            )
        spent = gate.status()[0].spent_nanos
    finally:
        gate.close()
    pairs = 2_000 + REPEATS * PAIRS
    assert spent == pairs * PRICE, spent
    assert guard.spent == pairs * PRICE, guard.spent
    assert len(guard.events) == pairs, len(guard.events)
    ratio = median(ours) / median(bares)
    print(f"   median spendgate: {median(ours):.1f} µs a pair")
    print(f"   median bare guard: {median(bares):.2f} µs a pair")
    finish(
        "bench_memory_holds",
        ratio <= TARGET,
        f"spendgate {median(ours):.1f} µs a pair = {ratio:.1f}x the bare guard's "
        f"{median(bares):.2f} µs (target <= {TARGET:g}x)",
    )


if __name__ == "__main__":
    main()
