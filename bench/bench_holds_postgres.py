"""Durable reserve+commit on PostgreSQL from 64 callers over 8 processes (the group commit of
holds, no leases), against one conditional UPDATE per call.

Baseline: 8 processes, each on its own connection, each call one autocommit
`UPDATE … SET reserved = reserved + a WHERE spent + reserved + a <= cap` on one row: the
least a central hold can cost. spendgate: 8 processes, each its own `Gate` on the same
PostgreSQL schema and 8 threads, each thread doing `gate.reserve()` then `gate.commit()`
back to back on one unleased budget (a pair is two durable transactions alone; concurrent
calls in one process share transactions). A sampler reads the budget row throughout:
`spent + reserved` must never pass the limit. Medians of 3 rounds.

Target (issue 22): at least 10x the conditional UPDATE rate.

Run: `.venv/bin/python bench/bench_holds_postgres.py` (`SPENDGATE_BENCH_POSTGRES_URL` names
the server; default `postgresql://postgres@127.0.0.1:5432/test`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench_leases import (
    LIMIT,
    PROCESSES,
    ROUNDS,
    SECONDS,
    baseline_worker,
    fresh_row,
    hot_row_schema,
    run,
    sampled,
)
from common import SERVICE, SOURCE, finish, header, median
from spendgate import Gate
from spendgate.config import parse

THREADS = 8  # callers in each process
AMOUNT = "0.001"
TARGET = 10.0


def pairs_worker(url: str, go: Any, out: Any) -> None:
    """Reserve+commit pairs from THREADS threads for SECONDS; the count (negative if a pair
    was refused under a budget with room)."""
    config = parse(
        {
            "sources": {SOURCE: {"price": f"{AMOUNT}/request"}},
            "budgets": [{"name": "daily", "limit": LIMIT}],
        }
    )
    gate = Gate.open(url, config=config)
    gate.commit(gate.reserve(SERVICE, SOURCE).reservation_id or "")  # warm
    counts: list[int] = []
    refused = threading.Event()

    def work(end: float) -> None:
        n = 0
        while time.perf_counter() < end:
            decision = gate.reserve(SERVICE, SOURCE)
            if not decision.approved:
                refused.set()
                break
            gate.commit(decision.reservation_id or "")
            n += 1
        counts.append(n)

    go.wait()
    end = time.perf_counter() + SECONDS
    threads = [threading.Thread(target=work, args=(end,)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gate.close()
    out.put(-sum(counts) if refused.is_set() else sum(counts))


def main() -> None:
    header(
        "group commit of holds on PostgreSQL: reserve+commit, 64 callers over 8 processes",
        [
            f"{PROCESSES} processes x {THREADS} threads, {SECONDS:g} s a round, "
            f"median of {ROUNDS} rounds, no leases",
            "baseline: 8 processes, one autocommit conditional UPDATE per call on one hot row",
            f"target: >= {TARGET:g}x the baseline's rate",
        ],
    )
    rates: dict[str, list[float]] = {"update": [], "pairs": []}
    over: list[tuple[int, int]] = []
    samples = 0
    with hot_row_schema() as (schema, url, table):
        for _ in range(ROUNDS):
            fresh_row(table)
            rates["update"].append(run(baseline_worker, (table,)))
            rate, read = sampled(schema, over, pairs_worker, (url,))
            rates["pairs"].append(rate)
            samples += read
            print(
                "   round: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()),
                flush=True,
            )
    base = median(rates["update"])
    ratio = median(rates["pairs"]) / base
    print(f"   conditional UPDATE per call: {base:,.0f}/s")
    print(f"   reserve+commit pairs:        {median(rates['pairs']):,.0f}/s = {ratio:.2f}x")
    print(f"   budget samples read during the runs: {samples:,}; over the limit: {len(over)}")
    finish(
        "bench_holds_postgres",
        ratio >= TARGET and not over,
        f"reserve+commit pairs {ratio:.2f}x the conditional UPDATE rate (target >= "
        f"{TARGET:g}x); {len(over)} samples over the limit",
    )


if __name__ == "__main__":
    main()
