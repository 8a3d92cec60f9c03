"""Shared pieces of the benchmark scripts (not a benchmark itself: `run.py` runs `bench_*.py`).

Every benchmark compares spendgate with a baseline measured in the same run, on the same
machine, a few moments apart, and reports medians of several repeats: absolute times on a
shared machine mean little, ratios measured side by side mean more.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence

from prometheus_client import Counter

from spendgate.config import parse
from spendgate.settings import Config

SERVICE = "bench_service"
SOURCE = "paid_api"


def priced_config() -> Config:
    """A priced source and one large daily budget: every call is costed and charged."""
    return parse(
        {
            "sources": {SOURCE: {"price": "0.0001/request"}},
            "budgets": [{"name": "daily", "limit": "1000000"}],
        }
    )


def median(values: Sequence[float]) -> float:
    """The median of the repeats."""
    return statistics.median(values)


def header(title: str, lines: Sequence[str]) -> None:
    """Print what is about to be measured."""
    print(f"== {title}")
    for line in lines:
        print(f"   {line}")
    sys.stdout.flush()


def finish(name: str, ok: bool, summary: str) -> None:
    """Print the one-line summary and exit non-zero when the target was missed."""
    verdict = "PASS" if ok else "FAIL"
    print(f"{name}: {verdict}: {summary}")
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


def labelled_loop(counter: Counter, n: int) -> float:
    """Nanoseconds per `counter.labels("a", "b").inc()`: the yardstick of the cheap benchmarks."""
    labels = counter.labels
    start = time.perf_counter_ns()
    for _ in range(n):
        labels("a", "b").inc()
    return (time.perf_counter_ns() - start) / n
