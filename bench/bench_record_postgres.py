"""`Gate.arecord()` into PostgreSQL with 64 concurrent callers, against bare psycopg `COPY`.

spendgate: 64 asyncio tasks on one event loop, each awaiting `gate.arecord()` for a priced
source with a distinct `request_id`, on a `postgresql://` store; the gate's group committer
writes whatever is queued in one transaction (`COPY` of the events, one charge per budget)
and each caller returns once its event is committed. Threads (`gate.record()`) are reported
alongside, for information. Baseline: the same rows (`store.rows.event_row()` of events
`gate.prepare()` built before the clock starts) written by one bare psycopg connection with
`COPY events (...) FROM STDIN`, one transaction per batch of the average size the group
commit achieved in the same repeat, into an identical schema. Target (from the issue):
spendgate >= 50% of the baseline. Medians of the repeats.

Run: `.venv/bin/python bench/bench_record_postgres.py` (`SPENDGATE_BENCH_POSTGRES_URL` names
the server; default `postgresql://postgres@127.0.0.1:5432/test`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable

import psycopg

from common import SERVICE, SOURCE, finish, header, median, priced_config
from spendgate import Gate
from spendgate.store.rows import EVENT_COLUMNS, event_row

URL = os.environ.get("SPENDGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CALLERS = 64
PER_CALLER = 100  # 6,400 events a repeat
REPEATS = 5
TARGET = 0.50
COPY = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"


def fresh(tag: str) -> tuple[str, str]:
    """A new, migrated schema: its name and its store URL."""
    schema = f"sgbench_{tag}_{secrets.token_hex(4)}"
    url = f"{URL}?schema={schema}"
    Gate.open(url, config=priced_config()).close()
    return schema, url


def drop(schema: str) -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run_async(url: str, rep: int) -> tuple[float, float]:
    gate = Gate.open(url, config=priced_config())
    try:
        writer = gate._writer
        assert writer is not None
        gate.record(SERVICE, SOURCE, request_id=f"warm-{rep}")
        items0, batches0 = writer.items, writer.batches

        async def caller(t: int) -> None:
            for i in range(PER_CALLER):
                await gate.arecord(SERVICE, SOURCE, request_id=f"a{rep}-{t}-{i}")

        async def everyone() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(caller(t) for t in range(CALLERS)))
            return time.perf_counter() - start

        elapsed = asyncio.run(everyone())
        items, batches = writer.items - items0, writer.batches - batches0
    finally:
        gate.close()
    assert items == CALLERS * PER_CALLER
    return items / elapsed, items / batches


def run_threads(url: str, rep: int) -> tuple[float, float]:
    gate = Gate.open(url, config=priced_config())
    try:
        writer = gate._writer
        assert writer is not None
        gate.record(SERVICE, SOURCE, request_id=f"warm-{rep}")
        items0, batches0 = writer.items, writer.batches
        barrier = threading.Barrier(CALLERS + 1)

        def caller(t: int) -> None:
            barrier.wait()
            for i in range(PER_CALLER):
                gate.record(SERVICE, SOURCE, request_id=f"t{rep}-{t}-{i}")

        threads = [threading.Thread(target=caller, args=(t,)) for t in range(CALLERS)]
        for th in threads:
            th.start()
        barrier.wait()
        start = time.perf_counter()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - start
        items, batches = writer.items - items0, writer.batches - batches0
    finally:
        gate.close()
    assert items == CALLERS * PER_CALLER
    return items / elapsed, items / batches


def run_baseline(schema: str, url: str, rep: int, batch: int) -> float:
    count = CALLERS * PER_CALLER
    with Gate.open(url, config=priced_config()) as gate:
        rows = [
            event_row(gate.prepare(SERVICE, SOURCE, request_id=f"b{rep}-{i}").event)
            for i in range(count)
        ]
    with psycopg.connect(URL, options=f"-csearch_path={schema}") as conn:
        start = time.perf_counter()
        for i in range(0, count, batch):
            with conn.cursor() as cur, cur.copy(COPY) as copy:
                for row in rows[i : i + batch]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - start
        stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    assert stored is not None
    assert stored[0] == count
    return count / elapsed


def measure(mode: str, run: Callable[[str, int], tuple[float, float]]) -> tuple[float, float]:
    ratios: list[float] = []
    batches: list[float] = []
    for rep in range(REPEATS):
        schema, url = fresh(mode)
        base_schema, base_url = fresh("base")
        try:
            rate, batch = run(url, rep)
            size = max(1, round(batch))
            base = run_baseline(base_schema, base_url, rep, size)
        finally:
            drop(schema)
            drop(base_schema)
        ratios.append(rate / base)
        batches.append(batch)
        print(
            f"   {mode} {rep + 1}: spendgate {rate:8,.0f} ev/s (avg batch {batch:5.1f}) | "
            f"COPY {base:8,.0f} ev/s (batch {size}) | ratio {rate / base:.2f}",
            flush=True,
        )
    return median(ratios), median(batches)


def main() -> None:
    header(
        "bench_record_postgres: Gate.arecord() group commit vs bare psycopg COPY",
        [
            f"{CALLERS} concurrent callers x {PER_CALLER} events, {REPEATS} repeats, medians",
            f"target: spendgate >= {TARGET:.0%} of COPY in batches of the same size (asyncio)",
        ],
    )
    ratio, batch = measure("asyncio", run_async)
    t_ratio, t_batch = measure("threads", run_threads)
    finish(
        "bench_record_postgres",
        ratio >= TARGET,
        f"asyncio callers at {ratio:.0%} of bare COPY (batch {batch:.1f}; target >= "
        f"{TARGET:.0%}); threads {t_ratio:.0%} (batch {t_batch:.1f}, information)",
    )


if __name__ == "__main__":
    main()
