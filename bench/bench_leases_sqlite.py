"""Leased reserve+commit on one SQLite file from 8 processes, against one unleased caller.

What is measured: `d = gate.reserve(SERVICE, SOURCE)` then `gate.commit(d.reservation_id)`
pairs per second, back to back, from 8 processes (forked; each opens its own `Gate` on the
same `sqlite:///FILE`, the default URL: WAL, `synchronous=FULL`) for 2 s after a common
start, against one daily budget of $1,000,000 that is leased
(`lease = {share = "10%", ttl = "60s", idle = "10s"}`) and one source priced $0.0001 a
request (as `common.priced_config()`). Each process first makes one pair before the start,
which opens its lease. A slice is 10% of what remains, about $100,000, or about a billion
pairs at $0.0001: no process tops up its lease during a run, and with a 60 s TTL none renews
it either (renewal starts at half the TTL), so `reserve()` is always drawn locally and every
pair costs one durable write, the commit's. Rate: all pairs committed in the timed part over
the longest process's elapsed time (a pair begun before the 2 s ran out is counted and its
time too).

Baseline, in the same run and alternated with the leased side in every repeat: one process
doing the same pairs on a fresh file with the same budget without a lease (the unleased
durable path: a hold in the store, then the commit), for the same time.

Safety, after every run: once every gate is closed, a fresh `Gate` reads the budget with
`status()`: `spent` must equal exactly (pairs committed, warm-up pairs included) x $0.0001 in
nano-units, and `reserved` must be back at 0: a lease returned on `close()` gives back only
what it still held (it changes reserved, never spent), so spent counts exactly the committed
pairs. Any refused call, error or mismatch fails the benchmark (a worker's traceback is
printed in full).

Target (from the issue): leased, 8 processes >= 20x the unleased rate of one caller.
3 repeats, medians; fresh files in a temporary directory (`TMPDIR` is honoured).

Run: `.venv/bin/python bench/bench_leases_sqlite.py`
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import SERVICE, SOURCE, finish, header, median
from spendgate import Gate, to_nanos
from spendgate.config import parse
from spendgate.settings import Config

PRICE = "0.0001"
LIMIT = "1000000"
LEASE = {"share": "10%", "ttl": "60s", "idle": "10s"}
PROCESSES = 8
SECONDS = 2.0
REPEATS = 3
TARGET = 20.0
READY_WAIT = 120.0  # seconds for every worker to open its gate and make its first pair


def config(leased: bool) -> Config:
    budget: dict[str, Any] = {"name": "daily", "limit": LIMIT}
    if leased:
        budget["lease"] = LEASE
    return parse({"sources": {SOURCE: {"price": f"{PRICE}/request"}}, "budgets": [budget]})


@dataclass(frozen=True)
class Result:
    """What one worker did: pairs in the timed part, its time, pairs before it, refusals,
    the slowest pair (seconds), and a traceback if it failed."""

    pairs: int = 0
    elapsed: float = 0.0
    warm: int = 0
    refused: int = 0
    slowest: float = 0.0
    error: str = ""


def worker(url: str, leased: bool, ready: Any, go: Any, out: Any) -> None:
    pairs = warm = refused = 0
    slowest = elapsed = 0.0
    gate: Gate | None = None
    started = False
    try:
        gate = Gate.open(url, config=config(leased))
        first = gate.reserve(SERVICE, SOURCE)  # on a leased budget, this opens the lease
        if not first.approved:
            raise RuntimeError(f"the warm-up reserve was refused: {first}")
        gate.commit(first.reservation_id or "")
        warm = 1
        ready.put(True)
        started = True
        go.wait()
        start = time.perf_counter()
        end = start + SECONDS
        now = start
        while now < end:
            d = gate.reserve(SERVICE, SOURCE)
            if d.approved:
                gate.commit(d.reservation_id or "")
                pairs += 1
            else:
                refused += 1
            was, now = now, time.perf_counter()
            slowest = max(slowest, now - was)
        elapsed = now - start
        gate.close()
        gate = None
        out.put(Result(pairs, elapsed, warm, refused, slowest))
    except BaseException:
        if not started:
            ready.put(False)  # the parent must not wait for a worker that failed before it
        out.put(Result(pairs, elapsed, warm, refused, slowest, traceback.format_exc()))
    finally:
        if gate is not None:
            gate.close()


@dataclass(frozen=True)
class Run:
    rate: float
    results: list[Result]
    spent: int
    reserved: int

    @property
    def committed(self) -> int:
        return sum(r.pairs + r.warm for r in self.results)

    @property
    def problems(self) -> list[str]:
        found = [f"a worker failed:\n{r.error}" for r in self.results if r.error]
        refused = sum(r.refused for r in self.results)
        if refused:
            found.append(f"{refused} calls refused under a budget with room")
        if self.spent != self.committed * to_nanos(PRICE):
            found.append(f"spent {self.spent} nanos != {self.committed} pairs x {to_nanos(PRICE)}")
        if self.reserved != 0:
            found.append(f"reserved {self.reserved} nanos after every gate closed, not 0")
        return found


def run(path: Path, leased: bool, processes: int) -> Run:
    """`processes` workers on a fresh file `path`, started together; then the budget read
    back by a fresh gate."""
    url = f"sqlite:///{path}"
    ctx = multiprocessing.get_context("fork")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(url, leased, ready, go, out)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.get(timeout=READY_WAIT):
            break
    go.set()
    results = [out.get(timeout=READY_WAIT + SECONDS) for _ in procs]
    for p in procs:
        p.join()
    pairs = sum(r.pairs for r in results)
    longest = max(r.elapsed for r in results)
    rate = pairs / longest if longest > 0 else 0.0
    reader = Gate.open(url, config=config(leased))
    try:
        (status,) = reader.status()
    finally:
        reader.close()
    return Run(rate, results, status.spent_nanos, status.reserved_nanos)


def describe(label: str, r: Run) -> str:
    counts = [x.pairs for x in r.results]
    spread = f" (per process {min(counts):,}-{max(counts):,})" if len(counts) > 1 else ""
    slowest = max(x.slowest for x in r.results)
    return (
        f"{label} {r.rate:,.0f} pairs/s{spread}, slowest pair {slowest * 1000:.1f} ms, "
        f"spent {r.spent / 1e9:.4f} for {r.committed:,} pairs, reserved {r.reserved}"
    )


def main() -> None:
    header(
        "bench_leases_sqlite: leased reserve+commit, 8 processes vs 1 unleased caller, "
        "SQLite synchronous=FULL",
        [
            f"{SECONDS:g} s a side, {REPEATS} repeats, medians; fresh files every run",
            f"leased: {PROCESSES} processes, lease {LEASE}; baseline: 1 process, no lease",
            "after each run: spent == committed pairs x price, reserved == 0",
            f"target: leased 8 processes >= {TARGET:g}x one unleased caller",
        ],
    )
    rates: dict[str, list[float]] = {"alone": [], "leased": []}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmp:
        for rep in range(REPEATS):
            alone = run(Path(tmp) / f"alone-{rep}.db", leased=False, processes=1)
            leased = run(Path(tmp) / f"leased-{rep}.db", leased=True, processes=PROCESSES)
            rates["alone"].append(alone.rate)
            rates["leased"].append(leased.rate)
            for label, r in (("1 caller unleased", alone), ("8 processes leased", leased)):
                print(f"   repeat {rep + 1} {describe(label, r)}")
                problems += [f"repeat {rep + 1} {label}: {p}" for p in r.problems]
            ratio = leased.rate / alone.rate if alone.rate else 0.0
            print(f"   repeat {rep + 1} ratio {ratio:.2f}x", flush=True)
    for p in problems:
        print(f"   PROBLEM {p}")
    base, lease = median(rates["alone"]), median(rates["leased"])
    ratio = lease / base if base else 0.0
    print(f"   1 caller unleased: {base:,.0f} pairs/s")
    print(f"   8 processes leased: {lease:,.0f} pairs/s = {ratio:.2f}x")
    finish(
        "bench_leases_sqlite",
        ratio >= TARGET and not problems,
        f"leased 8 processes {ratio:.2f}x one unleased caller ({lease:,.0f} vs {base:,.0f} "
        f"pairs/s; target >= {TARGET:g}x); totals consistent: {not problems}",
    )


if __name__ == "__main__":
    main()
