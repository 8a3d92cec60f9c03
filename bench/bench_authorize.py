"""`Gate.authorize()` on the in-memory store, against a labelled Prometheus counter increment.

What is measured: the cost of one `gate.authorize(service, source)` call on a gate opened with
`Gate.open("memory://", config=...)` for a priced source charged to one daily budget, after
`gate.bind(service, source)` was called once. `Binding` has no `authorize()` of its own, so
the timed call is `gate.authorize()` with the same service and source every time, which
finds the cached binding. Each call prices the request, reads the budget's usage from the
store (under its lock) and builds a `Decision`.

Baseline: `prometheus_client`'s `Counter("x", "x", ["service", "source"])` (in a private
registry) incremented the way instrumented code usually does it,
`counter.labels("a", "b").inc()`: a label lookup and an increment under a lock. It is the
per-call cost people already accept for bookkeeping on every request, in the same process,
so it is a fair yardstick for "cheap enough to call on every request". The pre-bound child
(`child.inc()`) is printed for information only.

Target (from the issue): authorize cost <= 10x the labelled increment.

Method: `time.perf_counter_ns()` around ITERATIONS calls in a plain `for` loop; the cost of
an empty loop of the same length, measured in the same repeat, is subtracted from every
figure. The garbage collector stays on (as in real use). Cases are interleaved within each
repeat; medians of REPEATS repeats are reported.

Run: `.venv/bin/python bench/bench_authorize.py`
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from common import SERVICE, SOURCE, finish, header, labelled_loop, median, priced_config
from spendgate import Gate

ITERATIONS = 200_000
REPEATS = 5
TARGET = 10.0


def empty_loop(n: int) -> float:
    """Nanoseconds per iteration of the bare loop."""
    start = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - start) / n


def authorize_loop(authorize: Callable[[str, str], object], n: int) -> float:
    """Nanoseconds per `authorize(SERVICE, SOURCE)`."""
    service, source = SERVICE, SOURCE
    start = time.perf_counter_ns()
    for _ in range(n):
        authorize(service, source)
    return (time.perf_counter_ns() - start) / n


def child_loop(child: Counter, n: int) -> float:
    """Nanoseconds per `child.inc()` on a pre-bound child."""
    inc = child.inc
    start = time.perf_counter_ns()
    for _ in range(n):
        inc()
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    header(
        "bench_authorize: Gate.authorize() (memory://) vs prometheus_client labelled inc()",
        [
            f"{ITERATIONS:,} calls per case, {REPEATS} repeats, medians, empty loop subtracted",
            f"target: authorize <= {TARGET:g}x labelled inc",
        ],
    )
    gate = Gate.open("memory://", config=priced_config())
    binding = gate.bind(SERVICE, SOURCE)
    bound = getattr(binding, "authorize", None)
    authorize = bound if callable(bound) else gate.authorize
    what = "Binding.authorize" if callable(bound) else "Gate.authorize (cached binding)"
    decision = gate.authorize(SERVICE, SOURCE)
    assert decision.approved, decision
    assert decision.requested > 0, "the source must be priced so the budget is checked"
    counter = Counter("x", "x", ["service", "source"], registry=CollectorRegistry())
    child = counter.labels("a", "b")
    print(f"   timed call: {what}")

    warm = ITERATIONS // 20
    empty_loop(warm)
    authorize_loop(authorize, warm)
    labelled_loop(counter, warm)
    child_loop(child, warm)

    auth: list[float] = []
    labelled: list[float] = []
    bound_child: list[float] = []
    loops: list[float] = []
    for rep in range(REPEATS):
        loop = empty_loop(ITERATIONS)
        lab = labelled_loop(counter, ITERATIONS) - loop
        kid = child_loop(child, ITERATIONS) - loop
        a = authorize_loop(authorize, ITERATIONS) - loop
        loops.append(loop)
        labelled.append(lab)
        bound_child.append(kid)
        auth.append(a)
        print(
            f"   repeat {rep + 1}: authorize {a:7.0f} ns | labelled inc {lab:5.0f} ns"
            f" | child inc {kid:4.0f} ns | empty loop {loop:3.0f} ns | ratio {a / lab:.1f}x"
        )
    gate.close()
    a, lab, kid = median(auth), median(labelled), median(bound_child)
    ratio = a / lab
    per_repeat = median([x / y for x, y in zip(auth, labelled, strict=True)])
    print(f"   median authorize:        {a:,.0f} ns per call")
    print(f"   median labelled inc:     {lab:,.0f} ns per call (baseline)")
    print(f"   median bound child inc:  {kid:,.0f} ns per call (information)")
    print(f"   median empty loop:       {median(loops):,.0f} ns per iteration (subtracted)")
    print(f"   ratio of medians: {ratio:.1f}x (median of per-repeat ratios {per_repeat:.1f}x)")
    finish(
        "bench_authorize",
        ratio <= TARGET,
        f"authorize {a:,.0f} ns = {ratio:.1f}x labelled inc {lab:,.0f} ns "
        f"(target <= {TARGET:g}x; bound child inc {kid:,.0f} ns)",
    )


if __name__ == "__main__":
    main()
