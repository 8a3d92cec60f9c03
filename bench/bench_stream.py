"""`StreamMeter.record()` per message, against a labelled Prometheus counter increment.

What is measured: one `meter.record(nbytes)` call (400-byte messages) on a started meter for
a stream priced per MB and per connected hour, on `memory://`. The timed loop includes the
settlements the meter makes along the way (a lease of $0.10 settles every ~5 MB or 10,000
messages), so the figure is the amortized per-message cost a streaming loop pays.

Baseline: `prometheus_client` `Counter(...).labels("a", "b").inc()`, the labelled increment a
streaming loop already pays to count messages: the yardstick for "cheap enough to call for
every message".

Target (from issue 3): record() <= 5x the labelled increment.

Run: `.venv/bin/python bench/bench_stream.py`
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter

from common import finish, header, labelled_loop, median
from spendgate import Gate
from spendgate.config import parse
from spendgate.streams import StreamMeter

ITERATIONS = 200_000
REPEATS = 5
TARGET = 5.0
MESSAGE = 400


def record_loop(meter: StreamMeter, n: int) -> float:
    """Nanoseconds per `meter.record(MESSAGE)`."""
    record = meter.record
    start = time.perf_counter_ns()
    for _ in range(n):
        record(MESSAGE)
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    header(
        "bench_stream: StreamMeter.record() vs prometheus_client labelled inc()",
        [
            f"{ITERATIONS:,} calls per case, {REPEATS} repeats, medians",
            f"target: record <= {TARGET:g}x labelled inc",
        ],
    )
    config = parse(
        {
            "sources": {"databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}}},
            "budgets": [{"name": "streaming", "limit": "1000000", "scope": "source:databento_mbo"}],
        }
    )
    gate = Gate.open("memory://", config=config)
    meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
    meter.start()
    counter = Counter("x", "x", ["service", "source"], registry=CollectorRegistry())
    record_loop(meter, ITERATIONS // 20)
    labelled_loop(counter, ITERATIONS // 20)
    records: list[float] = []
    labelled: list[float] = []
    for rep in range(REPEATS):
        lab = labelled_loop(counter, ITERATIONS)
        rec = record_loop(meter, ITERATIONS)
        records.append(rec)
        labelled.append(lab)
        print(
            f"   repeat {rep + 1}: record {rec:6.0f} ns | labelled inc {lab:5.0f} ns"
            f" | ratio {rec / lab:.2f}x"
        )
    meter.stop()
    settlements = len(gate.events())
    gate.close()
    rec, lab = median(records), median(labelled)
    ratio = rec / lab
    print(f"   settlements made: {settlements:,} for {(REPEATS + 0.05) * ITERATIONS:,.0f} messages")
    finish(
        "bench_stream",
        ratio <= TARGET,
        f"record {rec:,.0f} ns = {ratio:.2f}x labelled inc {lab:,.0f} ns (target <= {TARGET:g}x)",
    )


if __name__ == "__main__":
    main()
