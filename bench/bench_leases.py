"""Authorizations per second on one hot PostgreSQL budget from 8 processes: with leases,
against one conditional UPDATE per call (target: at least 20x, with zero overspend).

Baseline: 8 processes, each on its own connection, each call one autocommit
`UPDATE … SET reserved = reserved + a WHERE spent + reserved + a <= cap` on one row: the
least a central hold can cost. spendgate: 8 processes, each its own `Gate` on the same
PostgreSQL schema, the budget leased; each call is `gate.reserve()` (a hold, approved or
refused), and `gate.authorize()` is measured the same way. A sampler reads the budget row
throughout; `spent + reserved` must never pass the limit. Medians of 3 rounds.

Run: `.venv/bin/python bench/bench_leases.py` (`SPENDGATE_BENCH_POSTGRES_URL` names the
server; default `postgresql://postgres@127.0.0.1:5432/test`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from common import SERVICE, SOURCE, finish, header, median
from spendgate import Gate
from spendgate.config import parse
from spendgate.money import to_nanos

URL = os.environ.get("SPENDGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PROCESSES = 8
SECONDS = 2.0
ROUNDS = 3
TARGET = 20.0
LIMIT = "1000000"
AMOUNT = "0.001"


def baseline_worker(table: str, go: Any, out: Any) -> None:
    amount = to_nanos(AMOUNT)
    cap = to_nanos(LIMIT)
    with psycopg.connect(URL, autocommit=True) as conn:
        go.wait()
        n = 0
        end = time.perf_counter() + SECONDS
        while time.perf_counter() < end:
            conn.execute(
                f"UPDATE {table} SET reserved = reserved + %s "
                "WHERE budget = 'daily' AND spent + reserved + %s <= %s",
                (amount, amount, cap),
            )
            n += 1
    out.put(n)


def gate_worker(url: str, method: str, go: Any, out: Any) -> None:
    config = parse(
        {
            "sources": {SOURCE: {"price": "0.001/request"}},
            "budgets": [{"name": "daily", "limit": LIMIT, "lease": {"share": "10%"}}],
        }
    )
    gate = Gate.open(url, config=config)
    call = getattr(gate, method)
    gate.reserve(SERVICE, SOURCE, AMOUNT)  # the first lease: authorize() answers from it
    go.wait()
    n = approved = 0
    end = time.perf_counter() + SECONDS
    while time.perf_counter() < end:
        approved += call(SERVICE, SOURCE, AMOUNT).approved
        n += 1
    gate.close()
    out.put(n if approved == n else -n)


def run(target: Any, args: tuple[Any, ...]) -> float:
    """Calls per second across PROCESSES processes running `target` together."""
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, go, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every process connect and take its first lease before the start
    go.set()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    if any(c < 0 for c in counts):
        raise SystemExit("a call was refused under a budget that had room")
    return sum(counts) / SECONDS


def sample(schema: str, stop: threading.Event, over: list[tuple[int, int]]) -> int:
    limit = to_nanos(LIMIT)
    n = 0
    with psycopg.connect(URL, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                f"SELECT spent, reserved FROM {schema}.budget_buckets WHERE budget = 'daily'"
            ).fetchone()
            n += 1
            if row is not None and row[0] + row[1] > limit:
                over.append((row[0], row[1]))
            stop.wait(0.001)  # a thousand looks a second, without taking a core from the runs
    return n


@contextlib.contextmanager
def hot_row_schema() -> Iterator[tuple[str, str, str]]:
    """A migrated schema of its own (dropped after) with the baseline's one-row table:
    `(schema, store URL, baseline table)`."""
    schema = f"sgbench_{secrets.token_hex(4)}"
    table = f"{schema}.baseline"
    Gate.open(f"{URL}?schema={schema}").close()  # creates and migrates the schema
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (budget text PRIMARY KEY, spent bigint, reserved bigint)"
        )
    try:
        yield schema, f"{URL}?schema={schema}", table
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def fresh_row(table: str) -> None:
    """The baseline's row, back at nothing spent or held."""
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} VALUES ('daily', 0, 0)")


def sampled(
    schema: str, over: list[tuple[int, int]], target: Any, args: tuple[Any, ...]
) -> tuple[float, int]:
    """`run(target, args)` while a sampler reads the budget row: the rate, and how many
    samples were read (those over the limit are added to `over`)."""
    stop = threading.Event()
    counted: list[int] = []
    sampler = threading.Thread(target=lambda: counted.append(sample(schema, stop, over)))
    sampler.start()
    try:
        rate = run(target, args)
    finally:
        stop.set()
        sampler.join()
    return rate, sum(counted)


def main() -> None:
    header(
        "budget leases on PostgreSQL",
        [
            f"{PROCESSES} processes, {SECONDS:g} s a round, median of {ROUNDS} rounds",
            "baseline: one autocommit conditional UPDATE per call on one hot row",
        ],
    )
    rates: dict[str, list[float]] = {"update": [], "reserve": [], "authorize": []}
    over: list[tuple[int, int]] = []
    samples = 0
    with hot_row_schema() as (schema, url, table):
        for _ in range(ROUNDS):
            fresh_row(table)
            with psycopg.connect(URL, autocommit=True) as conn:
                conn.execute(f"TRUNCATE {schema}.budget_buckets, {schema}.reservations")
            rates["update"].append(run(baseline_worker, (table,)))
            for method in ("reserve", "authorize"):
                rate, read = sampled(schema, over, gate_worker, (url, method))
                rates[method].append(rate)
                samples += read
            print(
                "   round: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()),
                flush=True,
            )
    base = median(rates["update"])
    reserve = median(rates["reserve"]) / base
    authorize = median(rates["authorize"]) / base
    print(f"   conditional UPDATE per call: {base:,.0f}/s")
    print(f"   leased reserve():   {median(rates['reserve']):,.0f}/s = {reserve:.1f}x")
    print(f"   leased authorize(): {median(rates['authorize']):,.0f}/s = {authorize:.1f}x")
    print(f"   budget samples read during the runs: {samples:,}; over the limit: {len(over)}")
    finish(
        "bench_leases",
        reserve >= TARGET and not over,
        f"leased reserve() {reserve:.1f}x, authorize() {authorize:.1f}x the conditional "
        f"UPDATE rate (target >= {TARGET:g}x); {len(over)} samples over the limit",
    )


if __name__ == "__main__":
    main()
