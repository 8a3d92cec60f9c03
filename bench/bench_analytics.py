"""Analytics reads from the rollups, against DuckDB scanning the raw events, at 10M events.

What is measured: `Analyst(gate).summary("month")` (the month summary) and
`Analyst(gate).live()` (live metrics) on a SQLite store (`?synchronous=normal`) holding N
events (default 10 million) spread uniformly over October 2026 up to the gate's clock,
2026-10-31 18:00 UTC: 5 services x 3 sources (`paid_api` $0.01/request, `free_api` free,
`legacy` allowed unpriced), random success, cache hits, batch flag, quality score and
processing time (some missing), ~10% with an explicit cost. One `Analyst` per gate, as its
docstring advises; each call reads the rollups (`Store.tallies()`), live metrics also the
budget's balance (`Gate.status()`).

The events go in through the store's real write path, `gate.store.record()` in batches of
5,000, so the store builds the rollups itself in each batch's transaction, as in production.
Built by `gate.prepare()` (validation, fingerprint) they went in at ~11,000 events/s here (15
minutes for 10M), so the `EventWrite`s are built directly from the gate's own bindings
(price, budget slots), at ~22,000 events/s including the store's write; the
first events are also built by `gate.prepare()` and must match field for field (all but the
fingerprint, which only tells retries apart), and the stored events must match the baseline's
table (below), or the script stops.

Baseline: the same events (same values, same order: by time, as they were written) in an
in-memory DuckDB table (`duckdb.connect()`, default threads; service and source as ENUMs),
and the query that computes the same figures from them: every `Tally` field by service and
source (`count(*)`, `sum(cost)`, `count_if(paid)`, ...: the fastest forms we found), `WHERE
ts >= ? AND ts < ?` over the summary's span; for live metrics, one query of two filtered
aggregates (today's span and the last 15 minutes, `UNION ALL`). Rows are in time order, so
DuckDB's zone maps skip what a span leaves out. Loading the table is not timed.

Targets (from the issue): with 10M events, each call answers in at most 1/5 of DuckDB's time
for the same totals, and in at most 3x its own time on a store of 10,000 events spread over
the same month. Each of 21 repeats times every case (DuckDB, then spendgate big, then small)
as the mean of 5 calls, after a warm-up; medians of the repeats are reported.

The figures must agree: the month summary, today's and the last 15 minutes' tallies equal
DuckDB's (integers exactly, float sums to 1e-9), on both stores.

Run: `.venv/bin/python bench/bench_analytics.py` (10M events: the build takes several
minutes; `--db PATH --reuse` keeps the database and its events for the next run),
`--quick` (200,000 events), `--events N`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from common import finish, header, median
from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.config import parse
from spendgate.events import Event
from spendgate.rollups import TALLY_FIELDS, Tally, total
from spendgate.settings import Config
from spendgate.store.base import EventWrite
from spendgate.testing import FrozenClock
from spendgate.windows import EPOCH, to_micros

EVENTS = 10_000_000
QUICK = 200_000
SMALL = 10_000
BATCH = 5_000  # events per store.record() call
CHECKED = 2_000  # first events also built by gate.prepare() and compared
REPEATS = 21
LOOPS = 5  # calls per timed sample
WARMUP = 5
TARGET_VS_DUCKDB = 0.20
TARGET_SCALE = 3.0
SEED = 20261031

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
NOW = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)  # the gate's clock: the month's last day
SERVICES = ("search", "summarize", "translate", "classify", "extract")
SOURCES = ("paid_api", "free_api", "legacy")
PAID_PRICE = 10_000_000  # $0.01 in nano-units, the price of paid_api

# Each Tally field as an aggregate over raw events, in DuckDB's fastest form we found
# (`count_if` beats `count(*) FILTER (...)` and `sum(x::int)`), and in portable SQL for the
# one-off cross-check against the SQLite events table.
DUCK_SUMS = {
    "requests": "count(*)",
    "cost": "coalesce(sum(cost), 0)",
    "unpriced": "count(*) - count(cost)",
    "paid": "count_if(paid)",
    "successes": "count_if(success)",
    "free_successes": "count_if(success AND NOT paid)",
    "cache_hits": "coalesce(sum(cache_hits), 0)",
    "cached": "count_if(cache_hits > 0)",
    "batched": "count_if(batch_processing)",
    "batched_cost": "coalesce(sum(cost) FILTER (WHERE batch_processing), 0)",
    "quality_sum": "coalesce(sum(quality_score), 0)",
    "quality_count": "count(quality_score)",
    "time_sum": "coalesce(sum(processing_time), 0)",
    "time_count": "count(processing_time)",
}
SQL_SUMS = {
    **DUCK_SUMS,
    "paid": "count(*) FILTER (WHERE paid)",
    "successes": "count(*) FILTER (WHERE success)",
    "free_successes": "count(*) FILTER (WHERE success AND NOT paid)",
    "cached": "count(*) FILTER (WHERE cache_hits > 0)",
    "batched": "count(*) FILTER (WHERE batch_processing)",
}


def _sums(exprs: dict[str, str]) -> str:
    missing = [f for f in TALLY_FIELDS if f not in exprs]
    if missing:
        raise SystemExit(f"bench_analytics: no raw-event aggregate for Tally field(s) {missing}")
    return ", ".join(exprs[f] for f in TALLY_FIELDS)


SPAN_QUERY = (
    f"SELECT service::VARCHAR, source::VARCHAR, {_sums(DUCK_SUMS)} FROM events "
    "WHERE ts >= $1 AND ts < $2 GROUP BY service, source"
)
LIVE_QUERY = (
    f"SELECT 0 AS span, service::VARCHAR, source::VARCHAR, {_sums(DUCK_SUMS)} FROM events "
    "WHERE ts >= $1 AND ts < $2 GROUP BY service, source UNION ALL "
    f"SELECT 1 AS span, service::VARCHAR, source::VARCHAR, {_sums(DUCK_SUMS)} FROM events "
    "WHERE ts >= $3 AND ts < $4 GROUP BY service, source"
)
SQLITE_QUERY = (
    f"SELECT service, source, {_sums(SQL_SUMS)} FROM events "
    "WHERE ts >= ? AND ts < ? GROUP BY service, source"
)

Columns = dict[str, np.ndarray]
Cells = dict[tuple[str, str], Tally]


def config() -> Config:
    """A paid, a free and an allowed-unpriced source; a daily budget too large to refuse."""
    return parse(
        {
            "sources": {
                "paid_api": {"price": "0.01/request"},
                "free_api": {"price": "free"},
                "legacy": {"unpriced": "allow"},
            },
            "budgets": [{"name": "daily", "limit": "1000000"}],
        }
    )


def open_gate(path: Path) -> Gate:
    return Gate.open(
        f"sqlite:///{path}?synchronous=normal", config=config(), clock=FrozenClock(NOW)
    )


# -- the events -------------------------------------------------------------------------------


def make_events(n: int, seed: int) -> Columns:
    """N events as columns, sorted by time, uniform over [MONTH_START, NOW)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(SOURCES), n).astype(np.int8)
    given = rng.random(n) < 0.10  # an explicit cost
    given_cost = rng.integers(1_000, 50_000_000, n)
    cost = np.where(given, given_cost, np.where(src == 0, PAID_PRICE, 0)).astype(np.int64)
    quality = np.round(rng.random(n), 3)
    ptime = np.round(rng.exponential(0.4, n), 4)
    return {
        "ts": np.sort(rng.integers(to_micros(MONTH_START), to_micros(NOW), n)).astype(np.int64),
        "svc": rng.integers(0, len(SERVICES), n).astype(np.int8),
        "src": src,
        "given": given,
        "cost": cost,
        "has_cost": given | (src != 2),  # legacy without a given cost is unpriced
        "paid": (src == 0) | given,
        "success": rng.random(n) < 0.9,
        "cache_hits": np.where(rng.random(n) < 0.6, 0, rng.integers(1, 4, n)).astype(np.int32),
        "batch": rng.random(n) < 0.2,
        "quality": quality,
        "has_quality": rng.random(n) < 0.7,
        "ptime": ptime,
        "has_ptime": rng.random(n) < 0.8,
    }


def _optional(values: np.ndarray, present: np.ndarray) -> list[Any]:
    return [v if p else None for v, p in zip(values.tolist(), present.tolist(), strict=True)]


def batches(gate: Gate, cols: Columns, lo: int, hi: int) -> Iterator[list[EventWrite]]:
    """`EventWrite`s of events `lo..hi`, BATCH at a time, built from the gate's bindings as
    `gate.prepare()` builds them (checked by `check_builder()`)."""
    bindings = [[gate.bind(sv, so) for so in SOURCES] for sv in SERVICES]
    for start in range(lo, hi, BATCH):
        end = min(hi, start + BATCH)
        part = {k: v[start:end] for k, v in cols.items()}
        quality = _optional(part["quality"], part["has_quality"])
        ptime = _optional(part["ptime"], part["has_ptime"])
        writes = []
        for j, (ts, svc, src, given, cost, success, hits, batch) in enumerate(
            zip(
                part["ts"].tolist(),
                part["svc"].tolist(),
                part["src"].tolist(),
                part["given"].tolist(),
                part["cost"].tolist(),
                part["success"].tolist(),
                part["cache_hits"].tolist(),
                part["batch"].tolist(),
                strict=True,
            )
        ):
            b = bindings[svc][src]
            priced = b.price(ts)
            amount = cost if given else priced.cost(None)
            rid = f"ev{start + j:010d}"
            # The Event gate.prepare() makes of these fields (with a stand-in fingerprint).
            event = Event(
                request_id=rid,
                time=EPOCH + timedelta(microseconds=ts),
                service=b.service,
                source=b.source,
                cost=amount,
                fingerprint=rid.rjust(32, "0"),
                paid=priced.paid or bool(amount),
                success=success,
                cache_hits=hits,
                batch_processing=batch,
                quality_score=quality[j],
                processing_time=ptime[j],
                price_version=priced.price.version if priced.price is not None else None,
            )
            writes.append(
                EventWrite(event, b.slots(b.budgets(None), ts, priority=True, emergency=False))
            )
        yield writes


def check_builder(gate: Gate, cols: Columns) -> None:
    """The first events as built here must equal what `gate.prepare()` builds of them."""
    n = min(CHECKED, len(cols["ts"]))
    built = [w for ws in batches(gate, cols, 0, n) for w in ws]
    for i, mine in enumerate(built):
        given = bool(cols["given"][i])
        ref = gate.prepare(
            SERVICES[cols["svc"][i]],
            SOURCES[cols["src"][i]],
            request_id=mine.event.request_id,
            time=mine.event.time,
            cost=Decimal(int(cols["cost"][i])).scaleb(-9) if given else None,
            success=bool(cols["success"][i]),
            cache_hits=int(cols["cache_hits"][i]),
            batch_processing=bool(cols["batch"][i]),
            quality_score=float(cols["quality"][i]) if cols["has_quality"][i] else None,
            processing_time=float(cols["ptime"][i]) if cols["has_ptime"][i] else None,
        )
        same = dataclasses.replace(mine, event=dataclasses.replace(mine.event, fingerprint="-"))
        if same != dataclasses.replace(ref, event=dataclasses.replace(ref.event, fingerprint="-")):
            raise SystemExit(
                f"bench_analytics: event {i} built here differs from gate.prepare():\n"
                f"   here:    {mine}\n   prepare: {ref}"
            )


def build(path: Path, cols: Columns, label: str, progress: bool) -> float:
    """Write the events through `gate.store.record()`; seconds taken.

    A second thread builds the next batches while the store writes one (SQLite releases the
    GIL while it works), so the build uses both cores.
    """
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    n = len(cols["ts"])
    gate = open_gate(path)
    try:
        check_builder(gate, cols)
        ready: queue.Queue[list[EventWrite] | BaseException | None] = queue.Queue(maxsize=4)

        def produce() -> None:
            try:
                for writes in batches(gate, cols, 0, n):
                    ready.put(writes)
            except BaseException as exc:  # handed to the writer, which raises it
                ready.put(exc)
                return
            ready.put(None)

        start = time.perf_counter()
        shown = start
        done = 0
        threading.Thread(target=produce, daemon=True).start()
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            results = gate.store.record(item)
            if any(not r.created for r in results):
                raise SystemExit(f"bench_analytics: {label}: an event was not created")
            done += len(item)
            now = time.perf_counter()
            if progress and (now - shown >= 15 or done == n):
                shown = now
                rate = done / (now - start)
                print(
                    f"   build {label}: {done:>12,} / {n:,} events ({done / n:4.0%}),"
                    f" {rate:,.0f} ev/s, eta {(n - done) / rate:5.0f}s",
                    flush=True,
                )
        elapsed = time.perf_counter() - start
    finally:
        gate.close()
    return elapsed


def prepared_store(db: Path, n: int, reuse: bool) -> tuple[Columns, float | None]:
    """The big store's events and the build time (`None`: reused from an earlier run)."""
    saved = Path(f"{db}.npz")
    if reuse and saved.exists() and db.exists():
        with np.load(saved) as f:
            if int(f["n"]) == n and int(f["seed"]) == SEED:
                print(f"   reusing {db} ({n:,} events, built by an earlier run)", flush=True)
                return {k: f[k] for k in f.files if k not in ("n", "seed")}, None
        print(f"   {db} holds other events: building it again", flush=True)
    saved.unlink(missing_ok=True)
    cols = make_events(n, SEED)
    elapsed = build(db, cols, f"{n:,} events", progress=True)
    np.savez(saved, n=n, seed=SEED, **cols)  # written last: marks the database complete
    return cols, elapsed


# -- the baseline -----------------------------------------------------------------------------


def duck_table(con: duckdb.DuckDBPyConnection, cols: Columns) -> None:
    """The events as a DuckDB table, in the order they were written (by time).

    Service and source are ENUMs, DuckDB's type for a few distinct strings: grouping by
    them is several times faster than by VARCHAR (uncompressed in an in-memory database).
    """
    raw = pd.DataFrame(cols)  # noqa: F841 - read by DuckDB's replacement scan
    services = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(SERVICES))
    sources = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(SOURCES))
    for name, values in (("service_name", SERVICES), ("source_name", SOURCES)):
        con.execute(f"CREATE TYPE {name} AS ENUM ({', '.join(repr(v) for v in values)})")
    con.execute(
        "CREATE TABLE events AS SELECT ts, "
        f"(CASE svc {services} END)::service_name AS service, "
        f"(CASE src {sources} END)::source_name AS source, "
        "CASE WHEN has_cost THEN cost END AS cost, "
        "paid, success, cache_hits, batch AS batch_processing, "
        "CASE WHEN has_quality THEN quality END AS quality_score, "
        "CASE WHEN has_ptime THEN ptime END AS processing_time FROM raw"
    )


def cells_of(rows: list[tuple[Any, ...]]) -> Cells:
    return {(r[0], r[1]): Tally(*r[2:]) for r in rows}


def agree(what: str, mine: Cells | Tally, theirs: Cells | Tally) -> None:
    """Stop unless the tallies are equal: integers exactly, float sums to 1e-9."""
    a = mine if isinstance(mine, dict) else {("*", "*"): mine}
    b = theirs if isinstance(theirs, dict) else {("*", "*"): theirs}
    a = {k: t for k, t in a.items() if t.requests}
    b = {k: t for k, t in b.items() if t.requests}
    problems = [f"{k}: only in one" for k in set(a) ^ set(b)]
    for key in sorted(set(a) & set(b)):
        for name in TALLY_FIELDS:
            x, y = getattr(a[key], name), getattr(b[key], name)
            ok = x == y if isinstance(x, int) else math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6)
            if not ok:
                problems.append(f"{key} {name}: spendgate {x!r} != raw {y!r}")
    if problems:
        raise SystemExit(f"bench_analytics: {what} disagree:\n   " + "\n   ".join(problems[:20]))


def sqlite_raw(path: Path, since: int, until: int) -> tuple[Cells, float]:
    """The month's figures from a scan of the raw events in SQLite, and the seconds it took."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        start = time.perf_counter()
        rows = conn.execute(SQLITE_QUERY, (since, until))
        cells = cells_of(rows.fetchall())
        return cells, time.perf_counter() - start
    finally:
        conn.close()


# -- timing -----------------------------------------------------------------------------------


def per_call(fn: Callable[[], object]) -> float:
    """Mean seconds of LOOPS calls."""
    start = time.perf_counter()
    for _ in range(LOOPS):
        fn()
    return (time.perf_counter() - start) / LOOPS


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def store_options(parser: argparse.ArgumentParser, quick: int) -> None:
    """The stores' options (`--events`, `--quick`, `--db`, `--reuse`), shared with
    bench_reports.py."""
    parser.add_argument("--events", type=int, default=EVENTS, help="events in the big store")
    parser.add_argument("--quick", action="store_true", help=f"{quick:,} events")
    parser.add_argument("--db", type=Path, help="the big store's file (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="reuse --db if built for N")


def events_wanted(parser: argparse.ArgumentParser, args: argparse.Namespace, quick: int) -> int:
    """The big store's event count the options ask for."""
    if args.reuse and args.db is None:
        parser.error("--reuse needs --db")
    return quick if args.quick else int(args.events)


def both_stores(args: argparse.Namespace, n: int, tmp: Path) -> tuple[Path, Columns, Path, Columns]:
    """The big store of `n` events (at `--db`, reused with `--reuse`, else built in `tmp`) and
    the small one of SMALL events over the same month (built in `tmp`), with their events."""
    db = args.db if args.db is not None else tmp / "big.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    cols, built = prepared_store(db, n, args.reuse)
    if built is not None:
        print(f"   built {n:,} events in {built:.1f}s ({n / built:,.0f} ev/s)", flush=True)
    small_cols = make_events(SMALL, SEED + 1)
    small_db = tmp / "small.db"
    build(small_db, small_cols, f"{SMALL:,} events", progress=False)
    return db, cols, small_db, small_cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    store_options(parser, QUICK)
    args = parser.parse_args()
    n = events_wanted(parser, args, QUICK)
    header(
        "bench_analytics: Analyst.summary('month') and live() from rollups vs DuckDB raw scan",
        [
            f"SQLite store (synchronous=normal) of {n:,} events over {MONTH_START:%Y-%m-%d}"
            f" .. {NOW:%Y-%m-%d %H:%M} UTC, {len(SERVICES)} services x {len(SOURCES)} sources;"
            f" clock {NOW:%Y-%m-%d %H:%M} UTC",
            f"baseline: the same events in in-memory DuckDB {duckdb.__version__} "
            "(default threads), the same totals by GROUP BY",
            f"{REPEATS} repeats x mean of {LOOPS} calls, medians; targets: <= "
            f"{TARGET_VS_DUCKDB:.2f}x DuckDB, <= {TARGET_SCALE:g}x own time at {SMALL:,} events",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmp:
        db, cols, small_db, small_cols = both_stores(args, n, Path(tmp))
        con = duckdb.connect()
        duck_table(con, cols)
        small_con = duckdb.connect()
        duck_table(small_con, small_cols)
        print(f"   SQLite file {db.stat().st_size / 2**30:.2f} GiB", flush=True)

        big_gate, small_gate = open_gate(db), open_gate(small_db)
        try:
            big, small = Analyst(big_gate), Analyst(small_gate)
            month, live = big.summary("month"), big.live()
            since, until = to_micros(month.since), to_micros(month.until)
            spans = (
                to_micros(live.day_start),
                to_micros(live.day_end),
                to_micros(live.as_of - live.recent_window),
                to_micros(live.as_of),
            )

            def duck_month() -> list[tuple[Any, ...]]:
                return con.execute(SPAN_QUERY, [since, until]).fetchall()

            def duck_live() -> list[tuple[Any, ...]]:
                return con.execute(LIVE_QUERY, list(spans)).fetchall()

            # The figures must agree before any time means anything.
            raw_cells, sqlite_scan = sqlite_raw(db, since, until)
            agree("SQLite's raw events and DuckDB's table", raw_cells, cells_of(duck_month()))
            agree("the month summary and DuckDB", dict(month.cells), cells_of(duck_month()))
            live_rows = duck_live()
            today = total(Tally(*r[3:]) for r in live_rows if r[0] == 0)
            recent = total(Tally(*r[3:]) for r in live_rows if r[0] == 1)
            agree("live today and DuckDB", live.today, today)
            agree("live last 15 minutes and DuckDB", live.recent, recent)
            s_month, s_live = small.summary("month"), small.live()
            agree(
                "the small store's month summary and DuckDB",
                dict(s_month.cells),
                cells_of(small_con.execute(SPAN_QUERY, [since, until]).fetchall()),
            )
            s_rows = small_con.execute(LIVE_QUERY, list(spans)).fetchall()
            for i, (what, tally) in enumerate((("today", s_live.today), ("recent", s_live.recent))):
                small_raw = total(Tally(*r[3:]) for r in s_rows if r[0] == i)
                agree(f"the small store's live {what} and DuckDB", tally, small_raw)
            t = month.total
            print(
                f"   figures agree: month {t.requests:,} requests, cost {t.cost:,} nano-units "
                f"(${t.cost / 1e9:,.2f}); today {live.today.requests:,}, "
                f"last 15 min {live.recent.requests:,} requests",
                flush=True,
            )
            print(
                f"   (information) SQLite scanning the raw events for the month: "
                f"{sqlite_scan:.2f}s, once",
                flush=True,
            )

            cases: dict[str, Callable[[], object]] = {
                "duckdb month": duck_month,
                "summary big": lambda: big.summary("month"),
                "summary small": lambda: small.summary("month"),
                "duckdb live": duck_live,
                "live big": big.live,
                "live small": small.live,
            }
            for fn in cases.values():
                for _ in range(WARMUP):
                    fn()
            times: dict[str, list[float]] = {name: [] for name in cases}
            for rep in range(REPEATS):
                for name, fn in cases.items():
                    times[name].append(per_call(fn))
                if rep % 5 == 4 or rep == REPEATS - 1:
                    print(
                        f"   repeat {rep + 1:2d}: "
                        + ", ".join(f"{k} {v[-1] * 1e3:.2f}" for k, v in times.items())
                        + " ms",
                        flush=True,
                    )
        finally:
            big_gate.close()
            small_gate.close()
            con.close()
            small_con.close()

    med = {name: median(v) for name, v in times.items()}

    def per_repeat(a: str, b: str) -> float:
        return median([x / y for x, y in zip(times[a], times[b], strict=True)])

    print("== results (medians)")
    for name, value in med.items():
        print(f"   {name:14s} {ms(value)}")
    checks = [
        ("summary('month') / DuckDB", "summary big", "duckdb month", TARGET_VS_DUCKDB),
        ("live() / DuckDB", "live big", "duckdb live", TARGET_VS_DUCKDB),
        (f"summary('month') {n:,} / {SMALL:,}", "summary big", "summary small", TARGET_SCALE),
        (f"live() {n:,} / {SMALL:,}", "live big", "live small", TARGET_SCALE),
    ]
    verdicts = []
    for label, a, b, target in checks:
        ratio = med[a] / med[b]
        ok = ratio <= target
        verdicts.append((label, ratio, ok))
        print(
            f"   {'PASS' if ok else 'MISS'}: {label}: {ratio:.3f} (target <= {target:g}; "
            f"median of per-repeat ratios {per_repeat(a, b):.3f})"
        )
    finish(
        "bench_analytics",
        all(ok for _, _, ok in verdicts),
        f"{n:,} events: "
        + "; ".join(
            f"{label} {ratio:.2f}{'' if ok else ' MISSED'}" for label, ratio, ok in verdicts
        ),
    )


if __name__ == "__main__":
    main()
