"""A monthly report in all four formats over 10M events, against the same over 10k events.

What is measured: what `spendgate report monthly 2026-10 --format pdf,xlsx,csv,json` does
after opening the store: a fresh `Reporter(Analyst(gate))` (as each CLI run has, so the
month's forecast is fitted every time), `.monthly("2026-10")` (every read, from the
rollups, and the model), then `write()` of PDF, Excel, CSV and JSON into a temporary folder.
The stores are those of `bench_analytics.py` (built by its code: N events spread uniformly
over October 2026 up to the clock, 2026-10-31 18:00 UTC, through the store's real write
path), so `--db PATH --reuse` shares one 10M-event database between the two benchmarks.

Baseline: the same report over a store of 10,000 events spread over the same month. Target
(from the issue): at most 3x the small store's time. Each of REPEATS repeats times the big
store's report, then the small one's, after one warm-up each (imports, fonts); medians.

The figures must agree: the report's total cost and requests (and the JSON file's) equal the
month's sums of the raw events as generated, on both stores.

Run: `.venv/bin/python bench/bench_reports.py` (10M events; several minutes to build the
store unless `--db PATH --reuse` finds it), `--quick` (1M events), `--events N`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_analytics import (
    MONTH_START,
    NOW,
    SMALL,
    Columns,
    both_stores,
    events_wanted,
    open_gate,
    store_options,
)
from common import finish, header, median
from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.money import money_text
from spendgate.reports import FORMATS, Report, Reporter, write
from spendgate.windows import to_micros

QUICK = 1_000_000
REPEATS = 7
TARGET_SCALE = 3.0
MONTH = "2026-10"


def expected(cols: Columns, report: Report) -> tuple[int, int]:
    """The month's requests and priced cost, summed from the raw events as generated."""
    ts = cols["ts"]
    inside = (ts >= to_micros(report.since)) & (ts < to_micros(report.until))
    priced = inside & cols["has_cost"]
    return int(inside.sum()), int(cols["cost"][priced].sum(dtype=np.int64))


def one_report(gate: Gate, out: Path) -> tuple[Report, list[Path], dict[str, float]]:
    """Read, build and write the monthly report; seconds by step."""
    steps: dict[str, float] = {}
    start = time.perf_counter()
    report = Reporter(Analyst(gate)).monthly(MONTH)
    steps["read+build"] = time.perf_counter() - start
    last = [time.perf_counter()]

    def lap(step: str) -> None:
        now = time.perf_counter()
        steps[step] = now - last[0]
        last[0] = now

    paths = write(report, FORMATS, out, progress=lap)
    steps["total"] = time.perf_counter() - start
    return report, paths, steps


def check(what: str, cols: Columns, report: Report, paths: list[Path]) -> None:
    """Stop unless the report's totals (and the JSON file's) equal the raw events'."""
    requests, cost = expected(cols, report)
    doc = json.loads(next(p for p in paths if p.suffix == ".json").read_text())
    summary = doc["executive_summary"]
    got = (report.total.requests, report.total.cost, summary["total_requests_processed"])
    if got != (requests, cost, requests) or summary["total_monthly_cost"] != money_text(cost):
        raise SystemExit(
            f"bench_reports: {what}: report {got}, JSON {summary['total_monthly_cost']} != "
            f"raw events {requests:,} requests, {money_text(cost)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    store_options(parser, QUICK)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    n = events_wanted(parser, args, QUICK)
    header(
        f"bench_reports: monthly report {MONTH}, formats {','.join(FORMATS)}, "
        f"{n:,} vs {SMALL:,} events",
        [
            f"SQLite stores (synchronous=normal), events over {MONTH_START:%Y-%m-%d} .. "
            f"{NOW:%Y-%m-%d %H:%M} UTC (bench_analytics' builder); clock {NOW:%Y-%m-%d %H:%M}",
            "each sample: fresh Reporter(Analyst(gate)).monthly() + write() of every format",
            f"{args.repeats} repeats (big, then small) after one warm-up each, medians; "
            f"target <= {TARGET_SCALE:g}x the small store's time",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmp:
        db, cols, small_db, small_cols = both_stores(args, n, Path(tmp))
        stores = {"big": (open_gate(db), cols), "small": (open_gate(small_db), small_cols)}
        times: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
        try:
            for name, (gate, c) in stores.items():
                report, paths, _ = one_report(gate, Path(tmp) / f"warm-{name}")
                check(name, c, report, paths)
                sizes = ", ".join(f"{p.suffix} {p.stat().st_size / 1024:.0f} KiB" for p in paths)
                print(
                    f"   {name}: {report.total.requests:,} requests, "
                    f"${report.total.cost / 1e9:,.2f} in the month, as the raw events; "
                    f"files: {sizes}",
                    flush=True,
                )
            for rep in range(args.repeats):
                for name, (gate, c) in stores.items():
                    report, paths, steps = one_report(gate, Path(tmp) / f"{name}-{rep}")
                    check(name, c, report, paths)
                    times[name].append(steps)
                print(
                    f"   repeat {rep + 1}: "
                    + ", ".join(f"{k} {v[-1]['total']:.2f}s" for k, v in times.items()),
                    flush=True,
                )
        finally:
            for gate, _ in stores.values():
                gate.close()

    print("== results (medians, seconds)")
    steps = list(times["big"][0])
    print("   " + " " * 8 + "".join(f"{s:>12s}" for s in steps))
    for name, samples in times.items():
        print(f"   {name:8s}" + "".join(f"{median([x[s] for x in samples]):12.3f}" for s in steps))
    big = median([x["total"] for x in times["big"]])
    small = median([x["total"] for x in times["small"]])
    ratio = big / small
    ok = ratio <= TARGET_SCALE
    print(
        f"   {'PASS' if ok else 'MISS'}: monthly report, 4 formats, {n:,} / {SMALL:,} events: "
        f"{ratio:.3f} (target <= {TARGET_SCALE:g})"
    )
    finish(
        "bench_reports",
        ok,
        f"{n:,} events {big:.2f}s vs {SMALL:,} events {small:.2f}s: ratio {ratio:.2f}",
    )


if __name__ == "__main__":
    main()
