"""A wrapped `openai` client's chat completion against the bare client's, same local server.

What is measured: one thread calls `client.chat.completions.create(model=..., messages=[one
short user message], max_tokens=50)` on the real `openai` package, pointed at the test
suite's local server on loopback (tests/integrations/llm_server.py, a threaded
`http.server` answering like the API) running in a process of its own, as a real API is:
in this process it would take the interpreter lock from the client between calls. The bare
client is `OpenAI(base_url=...)`; the wrapped one is `spendgate.llm.wrap()` of it, which
reads the request, bounds its cost, reserves, sends, reads the usage and commits. Twice: on
`memory://`, the wrapper's own work, and on the durable SQLite default
(`synchronous=FULL`), where each call's reserve and commit each wait for their fsync.

Baseline: the bare client's call. Target (from the issue): the wrapper adds under 10% of
the bare call's time. Method: the two clients take turns call by call, each call timed with
`time.perf_counter_ns()`; a repeat is CALLS calls of each, and its figure is the median call
of each (a call's time on loopback swings with the other work on a shared machine, and
turns plus medians keep a burst from landing on one side). The overhead is
(wrapped - bare) / bare, its median over REPEATS repeats.

Run: `.venv/bin/python bench/bench_llm_client.py`
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import finish, header, median
from spendgate import Gate
from spendgate.config import parse
from spendgate.llm import wrap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integrations.llm_server import LLMServer

CALLS = 500
REPEATS = 5
TARGET = 0.10
MESSAGES = [{"role": "user", "content": "Say hello in one word."}]
CONFIG = {
    "sources": {
        "gpt-test": {
            "price": {
                "input_token": "2.50/1M",
                "output_token": "10/1M",
                "cached_input_token": "1.25/1M",
                "cache_write_token": "2.50/1M",
            }
        }
    },
    "budgets": [{"name": "daily", "limit": "1000000"}],
}


def serve(ports: Any, stop: Any) -> None:
    """The local server, in its own process, until `stop` is set."""
    with LLMServer() as server:
        ports.put(server.port)
        stop.wait()


@contextmanager
def server_process() -> Iterator[str]:
    """The base URL of a local server running in a process of its own."""
    ports: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=serve, args=(ports, stop), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        stop.set()
        process.join(10)


def per_call(client: Any, n: int) -> float:
    """Microseconds per chat completion, over `n` calls back to back (for warming up)."""
    create = client.chat.completions.create
    start = time.perf_counter_ns()
    for _ in range(n):
        create(model="gpt-test", messages=MESSAGES, max_tokens=50)
    return (time.perf_counter_ns() - start) / n / 1000


def turns(wrapped: Any, bare: Any, n: int) -> tuple[float, float]:
    """The median call of each client in microseconds, the two taking turns `n` times."""
    times: tuple[list[int], list[int]] = ([], [])
    creates = (wrapped.chat.completions.create, bare.chat.completions.create)
    clock = time.perf_counter_ns
    for _ in range(n):
        for create, out in zip(creates, times, strict=True):
            start = clock()
            create(model="gpt-test", messages=MESSAGES, max_tokens=50)
            out.append(clock() - start)
    return median(times[0]) / 1000, median(times[1]) / 1000


def measure(store: str, bare: Any) -> float:
    """The median overhead of the wrapper on `store`, printing each repeat."""
    name = store.split(":", maxsplit=1)[0]
    with Gate.open(store, config=parse(CONFIG)) as gate:
        wrapped = wrap(bare, gate, service="bench")
        per_call(wrapped, 50)  # warm: binding, connections
        per_call(bare, 50)
        ours: list[float] = []
        bares: list[float] = []
        for rep in range(REPEATS):
            mine, theirs = turns(wrapped, bare, CALLS)
            ours.append(mine)
            bares.append(theirs)
            print(
                f"   {name:7} repeat {rep + 1}: wrapped {ours[-1]:7.0f} µs | "
                f"bare {bares[-1]:7.0f} µs | overhead {ours[-1] / bares[-1] - 1:+6.1%}"
            )
        booked = len(gate.events())
    assert booked == 50 + REPEATS * CALLS, booked
    overhead = median([mine / theirs - 1 for mine, theirs in zip(ours, bares, strict=True)])
    print(f"   {name}: median wrapped {median(ours):.0f} µs, bare "
          f"{median(bares):.0f} µs: overhead {overhead:+.1%}")  # fmt: skip
    return overhead


def main() -> None:
    import openai

    header(
        "bench_llm_client: a wrapped openai client's chat completion vs the bare client's",
        [
            f"1 thread, the two in turns, {CALLS} calls each a repeat, {REPEATS} repeats; "
            "a local server in its own process",
            f"target: the wrapper adds under {TARGET:.0%} of the bare call's time",
        ],
    )
    with server_process() as url, tempfile.TemporaryDirectory() as tmp:
        bare = openai.OpenAI(api_key="bench", base_url=f"{url}/v1")
        memory = measure("memory://", bare)
        sqlite = measure(f"sqlite:///{Path(tmp) / 'bench.db'}", bare)
    finish(
        "bench_llm_client",
        memory < TARGET,
        f"the wrapper adds {memory:+.1%} on memory:// and {sqlite:+.1%} on durable SQLite "
        f"(target under {TARGET:.0%})",
    )


if __name__ == "__main__":
    main()
