"""The HTTP server's ingestion (issue 6): batch POSTs and single-event POSTs, one uvicorn worker.

Two figures, each against a baseline measured in the same run, alternating the two:

1. **Batch** (`POST /api/events/batch`, 1,000 events a request): a client process keeps
   `CONNECTIONS` persistent HTTP/1.1 connections busy with pre-serialized bodies (distinct
   request ids) for `BATCHES` requests; the figure is events created per second. Baseline:
   `gate.record_many()` of the same events (the same dicts the JSON carries), 1,000 a call,
   in-process, on a fresh SQLite file. Target: >= 50% of the baseline.
2. **Single** (`POST /api/events`, one event a request): `wrk` with a Lua script that makes a
   unique request id per request (thread number and counter), against spendgate's app and
   against a bare FastAPI app whose one route validates the same body (the same pydantic
   model, `spendgate.server.schemas.EventIn`) and returns a small JSON object. Same uvicorn
   flags (uvloop, httptools, one worker, log level warning) and same wrk settings for both;
   spendgate's httptools protocol carries its head timeout and size limit, as `spendgate
   serve`'s does (`spendgate.server.connections`).
   Target: >= 50% of the bare app's requests/s.

Every server runs in a subprocess of its own (`uvicorn.run`, as `spendgate serve` does) on
a fresh temporary SQLite file (`sqlite:///FILE`: WAL, synchronous=FULL, the durable
default), with the seed's sources and one large daily budget. After each spendgate run the
server is stopped (its gate closed) and the store is counted through a `Gate` (rollup
tallies): it must hold every event the client got a 2xx for. wrk stops with up to
`connections` requests in flight whose events the server may still store, so for the single
figure (a 1 s warm-up run, then the timed run) the check is `ok <= stored <= ok + 2 *
connections`; any non-2xx answer is a failure. The batch figure must match exactly.

The run also prints the median fsync time of the temporary directory's disk: every durable
commit pays one, and on a busy shared machine it moves from ~0.1 ms to several ms.

wrk must be installed (`apt-get install -y wrk`); run as root, the script installs it.

Run: `.venv/bin/python bench/bench_server.py` (`--quick` for short rounds).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import finish, header, median
from spendgate import Gate
from spendgate.config import parse
from spendgate.server.schemas import EventIn  # module level: FastAPI resolves the annotation
from spendgate.settings import SEED_SOURCES, Config
from spendgate.windows import to_micros

TARGET = 0.50
BATCH = 1000
CONNECTIONS = 2  # batch client: concurrent persistent connections
WRK_THREADS = 1
WRK_CONNECTIONS = 64
HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent

SERVICES = ("image_service", "tile_service", "geo_batch")
# The seed's image sources, weighted roughly as free-first routing serves them.
SOURCES = (
    ("extended_cache", 50),
    ("openstreetmap_tiles", 20),
    ("google_maps_optimized", 20),
    ("mapbox_satellite", 10),
)


def bench_config() -> Config:
    """The seed's sources and one daily budget large enough never to be the story."""
    return parse({"sources": SEED_SOURCES, "budgets": [{"name": "daily", "limit": "1000000"}]})


def event(rng: random.Random, request_id: str) -> dict[str, Any]:
    """A realistic event: a service, a seed source, labels, a quality score, cache hits."""
    names = [s for s, _ in SOURCES]
    weights = [w for _, w in SOURCES]
    source = rng.choices(names, weights)[0]
    e: dict[str, Any] = {
        "service": rng.choice(SERVICES),
        "source": source,
        "request_id": request_id,
        "labels": {"region": rng.choice(("eu", "us", "ap")), "tier": "standard"},
        "quality_score": round(rng.uniform(0.6, 1.0), 3),
        "processing_time": round(rng.uniform(0.05, 2.0), 3),
    }
    if source == "extended_cache":
        e["cache_hits"] = 1
    if rng.random() < 0.05:
        e["success"] = False
        e["failure_reason"] = "timeout"
    return e


def batches(prefix: str, count: int, seed: int) -> list[list[dict[str, Any]]]:
    """`count` lists of BATCH events with ids `prefix-i` (time-ordered within the run)."""
    rng = random.Random(seed)
    return [
        [event(rng, f"{prefix}-{b * BATCH + i:09d}") for i in range(BATCH)] for b in range(count)
    ]


def stored_events(db: Path) -> int:
    """Events the store holds, counted through a Gate (the rollups' request tallies)."""
    gate = Gate.open(f"sqlite:///{db}", config=bench_config())
    try:
        now = datetime.now(UTC)
        span = (to_micros(now - timedelta(days=1)), to_micros(now + timedelta(days=1)))
        return sum(tally.requests for _, _, _, tally in gate.store.tallies([span]))
    finally:
        gate.close()


# -- servers (each in a subprocess: `bench_server.py --serve KIND DB PORT TOKENFILE`) --------


def serve(kind: str, db: str, port: int, token_file: str) -> None:
    """Run one server until SIGTERM/SIGINT; write the token file once the app is built."""
    import uvicorn

    if kind == "bare":
        app: Any = bare_app()
        Path(token_file).write_text("none")
        uvicorn.run(app, host=HOST, port=port, loop="uvloop", http="httptools", log_level="warning")
        return
    from spendgate.keys import create_key
    from spendgate.server import create_app
    from spendgate.server.connections import http_protocol

    gate = Gate.open(f"sqlite:///{db}", config=bench_config())
    try:
        token, _ = create_key(gate.store, "bench", "write", actor="bench", now=0)
        app = create_app(gate)
        Path(token_file).write_text(token)
        # httptools with the head timeout and size limit, as `spendgate serve` reads requests.
        http = http_protocol(app.state.context.settings)
        uvicorn.run(app, host=HOST, port=port, loop="uvloop", http=http, log_level="warning")
    finally:
        gate.close()


def bare_app() -> Any:
    """A FastAPI app with one route that validates an `EventIn` and answers."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/api/events", status_code=201)
    async def record_event(event: EventIn) -> Any:
        return {"status": "created", "request_id": event.request_id, "cost": None}

    return app


class Server:
    """A server subprocess on a free port; stopped (SIGINT, as Ctrl-C) on exit."""

    def __init__(self, kind: str, db: Path) -> None:
        self.kind, self.db = kind, db
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.token_file = db.with_suffix(".token")

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", self.kind, str(self.db), str(self.port),
             str(self.token_file)],
            cwd=HERE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}")
            if self.token_file.exists():
                try:
                    socket.create_connection((HOST, self.port), timeout=0.2).close()
                    self.token = self.token_file.read_text()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- 1. batches ------------------------------------------------------------------------------


def post_batches(port: int, token: str, bodies: list[bytes], connections: int) -> float:
    """Events/s: `connections` threads, each a persistent connection, POST the bodies."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    created = [0] * connections
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    pattern = re.compile(rb'"created":(\d+)')

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(HOST, port)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                conn.request("POST", "/api/events/batch", body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    errors.append(f"{response.status}: {data[:300]!r}")
                    return
                found = pattern.search(data, len(data) - 200)
                created[n] += int(found.group(1)) if found else 0
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"batch POST failed: {errors[0]}")
    return sum(created) / elapsed


def client_main(port: int, token: str, body_file: str, connections: int) -> None:
    """The load client's process: read the bodies, send them, print events/s."""
    bodies = json.loads(Path(body_file).read_text())
    encoded = [b.encode() for b in bodies]
    print(post_batches(port, token, encoded, connections))


def run_batch_server(tmp: Path, rep: int, count: int) -> float:
    """Events/s through POST /api/events/batch; checks every created event is stored."""
    db = tmp / f"batch-server-{rep}.db"
    warm = batches(f"w{rep}", 1, seed=1000 + rep)
    timed = batches(f"s{rep}", count, seed=rep)
    body_file = tmp / f"bodies-{rep}.json"
    body_file.write_text(
        json.dumps([json.dumps({"events": b}, separators=(",", ":")) for b in timed])
    )
    with Server("spendgate", db) as server:
        post_batches(server.port, server.token, [json.dumps({"events": warm[0]}).encode()], 1)
        out = subprocess.run(
            [sys.executable, __file__, "--client", str(server.port), server.token,
             str(body_file), str(CONNECTIONS)],
            cwd=HERE, check=True, capture_output=True, text=True,
        )  # fmt: skip
        rate = float(out.stdout.strip())
    stored = stored_events(db)
    expected = (count + 1) * BATCH
    if stored != expected:
        raise RuntimeError(f"batch: the store holds {stored} events, the client made {expected}")
    return rate


def run_batch_baseline(tmp: Path, rep: int, count: int) -> float:
    """Events/s for in-process `gate.record_many()` of BATCH events a call."""
    db = tmp / f"batch-base-{rep}.db"
    warm = batches(f"w{rep}", 1, seed=1000 + rep)
    timed = batches(f"s{rep}", count, seed=rep)
    gate = Gate.open(f"sqlite:///{db}", config=bench_config())
    try:
        gate.record_many(warm[0])
        start = time.perf_counter()
        for b in timed:
            gate.record_many(b)
        elapsed = time.perf_counter() - start
    finally:
        gate.close()
    assert stored_events(db) == (count + 1) * BATCH
    return count * BATCH / elapsed


# -- 2. single events ------------------------------------------------------------------------

WRK_SCRIPT = """
local counter = 0
local threads = {}
local prefix = "%(prefix)s"
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] ~= "none" then wrk.headers["Authorization"] = "Bearer " .. args[1] end
end
local services = {"image_service", "tile_service", "geo_batch"}
local sources = {"extended_cache", "extended_cache", "openstreetmap_tiles",
                 "google_maps_optimized", "mapbox_satellite"}
function request()
  counter = counter + 1
  local body = string.format(
    '{"service":"%%s","source":"%%s","request_id":"%%s-%%d-%%d",' ..
    '"labels":{"region":"eu","tier":"standard"},"quality_score":0.9%%d,' ..
    '"processing_time":0.%%d}',
    services[counter %% 3 + 1], sources[counter %% 5 + 1], prefix, tid, counter,
    counter %% 10, counter %% 1000 + 1)
  return wrk.format(nil, "/api/events", nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d %%d\\n", summary.requests, e.status,
    e.connect, e.read, e.write, e.timeout))
end
"""


def ensure_wrk() -> str:
    """The wrk executable; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("   wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("bench_server needs wrk: apt-get install -y wrk (as root)")


def run_wrk(wrk: str, port: int, token: str, script: Path, seconds: float) -> tuple[float, int]:
    """Requests/s and 2xx answers of one wrk run; every answer must be a 2xx."""
    out = subprocess.run(
        [wrk, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "-s", str(script),
         f"http://{HOST}:{port}/api/events", "--", token],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r"^WRK (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if found is None or rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, status, *others = (int(x) for x in found.groups())
    if status or any(others):
        raise RuntimeError(f"wrk saw errors (non-2xx {status}, socket {others}):\n{out}")
    return float(rate.group(1)), requests


def run_single(wrk: str, tmp: Path, kind: str, rep: int, seconds: float) -> float:
    """Requests/s of one wrk run against `kind`; for spendgate, checks the store."""
    db = tmp / f"single-{kind}-{rep}.db"
    script = tmp / f"single-{kind}-{rep}.lua"
    script.write_text(WRK_SCRIPT % {"prefix": f"{kind[0]}{rep}"})
    warm_script = tmp / f"warm-{kind}-{rep}.lua"
    warm_script.write_text(WRK_SCRIPT % {"prefix": f"warm{kind[0]}{rep}"})
    with Server(kind, db) as server:
        _, warm_ok = run_wrk(wrk, server.port, server.token, warm_script, 1)
        rate, ok = run_wrk(wrk, server.port, server.token, script, seconds)
    if kind == "spendgate":
        stored = stored_events(db)
        made = warm_ok + ok
        # wrk stops with requests in flight that the server may still store (2 runs).
        if not made <= stored <= made + 2 * WRK_CONNECTIONS:
            raise RuntimeError(f"single: the store holds {stored} events, wrk got {made} 2xx")
    return rate


def ratio_of(rates: list[float], bases: list[float]) -> float:
    """The median of the per-repeat ratios (each repeat measures both side by side)."""
    return median([r / b for r, b in zip(rates, bases, strict=True)])


def fsync_ms(directory: Path, count: int = 50) -> float:
    """The median time of an fsync after a small append in `directory` (milliseconds)."""
    times = []
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 100)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return median(times) * 1000


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    parser.add_argument("--only", choices=("batch", "single"), help="run one of the two")
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "DB", "PORT", "TOKENFILE"))
    parser.add_argument("--client", nargs=4, metavar=("PORT", "TOKEN", "BODIES", "CONNS"))
    args = parser.parse_args()
    if args.serve:
        kind, db, port, token_file = args.serve
        serve(kind, db, int(port), token_file)
        return
    if args.client:
        port, token, body_file, conns = args.client
        client_main(int(port), token, body_file, int(conns))
        return

    repeats = 3 if args.quick else 5
    count = 10 if args.quick else 40  # batches of 1,000 events a repeat
    seconds = 3 if args.quick else 10
    header(
        "bench_server: HTTP ingestion, one uvicorn worker (uvloop + httptools), SQLite FULL",
        [
            f"batch: POST /api/events/batch, {BATCH} events a request, {count} requests, "
            f"{CONNECTIONS} connections, vs in-process gate.record_many() of {BATCH}",
            f"single: POST /api/events, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s, "
            "vs a bare FastAPI route validating EventIn",
            f"{repeats} repeats alternating, medians; targets: each >= {TARGET:.0%} of baseline",
        ],
    )
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="spendgate-bench-") as tmpdir:
        tmp = Path(tmpdir)
        print(f"   fsync of a small append here: {fsync_ms(tmp):.2f} ms (median)", flush=True)
        if args.only in (None, "batch"):
            rates, bases = [], []
            for rep in range(repeats):
                base = run_batch_baseline(tmp, rep, count)
                rate = run_batch_server(tmp, rep, count)
                rates.append(rate)
                bases.append(base)
                print(
                    f"   batch {rep + 1}: server {rate:9,.0f} ev/s | record_many {base:9,.0f}"
                    f" ev/s | ratio {rate / base:.2f}",
                    flush=True,
                )
            results["batch"] = (median(rates), median(bases), ratio_of(rates, bases))
        if args.only in (None, "single"):
            wrk = ensure_wrk()
            rates, bases = [], []
            for rep in range(repeats):
                base = run_single(wrk, tmp, "bare", rep, seconds)
                rate = run_single(wrk, tmp, "spendgate", rep, seconds)
                rates.append(rate)
                bases.append(base)
                print(
                    f"   single {rep + 1}: spendgate {rate:8,.0f} req/s | bare FastAPI"
                    f" {base:8,.0f} req/s | ratio {rate / base:.2f}",
                    flush=True,
                )
            results["single"] = (median(rates), median(bases), ratio_of(rates, bases))
    ok = True
    parts = []
    for name, unit in (("batch", "ev/s"), ("single", "req/s")):
        if name not in results:
            continue
        rate, base, ratio = results[name]
        met = ratio >= TARGET
        ok = ok and met
        print(
            f"   {name}: median {rate:,.0f} {unit} vs baseline {base:,.0f} {unit}: ratio "
            f"{ratio:.2f} (median of per-repeat ratios; target >= {TARGET:.2f}): "
            f"{'PASS' if met else 'MISS'}"
        )
        parts.append(f"{name} {rate:,.0f} {unit} = {ratio:.0%} of {base:,.0f}")
    finish("bench_server", ok, "; ".join(parts) + f" (target >= {TARGET:.0%} each)")


if __name__ == "__main__":
    main()
