"""`spendgate serve` starts honestly and stops cleanly: real `spendgate serve` processes on
SQLite files, stopped by real signals under load; the dispatcher gives back what it did not
send; and the test helper `running()` fails a test whose server does not stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from spendgate import Gate
from spendgate.alerts import Dispatcher
from spendgate.keys import create_key
from spendgate.leases import LEASE_SERVICE
from spendgate.settings import ChannelSettings
from spendgate.store import open_store
from spendgate.store.base import Alert, Notification
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.serving import app_for, bearer, free_port, running

SPENDGATE = Path(sys.executable).with_name("spendgate")
START_WITHIN = 90.0  # seconds: start-up is mostly imports, slow on a loaded machine
STOP_WITHIN = 10.0  # the default shutdown grace: the promise under test
CLIENTS = 8
ROUNDS = 20
CONFIG = """
reservation_ttl = "10m"

[sources.paid_api]
price = "0.01/request"

[[budgets]]
name = "daily"
limit = "1000000.00"
lease = { ttl = "10m" }   # a lease not given back would still be pending long after exit

[alerts]
allow_private_destinations = true   # the hook listens on 127.0.0.1

[alerts.channels]
hook = { kind = "webhook", url = "http://127.0.0.1:HOOK_PORT/hook", severities = ["critical"] }
"""


# -- a `spendgate serve` process ---------------------------------------------------------


@dataclass
class Served:
    """One `spendgate serve` process and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return f"stdout: {self.out.read_text()!r}\nstderr: {self.err.read_text()!r}"

    def signal(self, signum: int) -> float:
        """Send `signum`; the monotonic time it was sent."""
        self.process.send_signal(signum)
        return time.monotonic()

    def exit_code(self, within: float) -> int:
        """Wait for the process to exit (failing the test after `within` seconds)."""
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"spendgate serve did not exit within {within} s\n{self.output()}")

    def accepts(self) -> bool:
        """Whether the port still takes connections."""
        with socket.socket() as probe:
            probe.settimeout(2)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


def db_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'spendgate.db'}"


def write_config(folder: Path, hook_port: int = 9) -> Path:
    path = folder / "spendgate.toml"
    path.write_text(CONFIG.replace("HOOK_PORT", str(hook_port)))
    return path


def spendgate(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """A `spendgate` command run to its end (within a minute)."""
    return subprocess.run(
        [str(SPENDGATE), *args], check=False, capture_output=True, text=True, timeout=60,
        cwd=folder,
    )  # fmt: skip


@contextlib.contextmanager
def serving(folder: Path, *options: str, name: str = "serve") -> Iterator[Served]:
    """`spendgate serve` on the SQLite store in `folder`, once it answers; killed at the end
    if the test left it running."""
    served = None
    for _ in range(3):  # a free port taken by another test meanwhile: take another
        port = free_port()
        out, err = folder / f"{name}-{port}.out", folder / f"{name}-{port}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [str(SPENDGATE), "serve", "--db", db_url(folder), "--port", str(port),
                 "--config", str(folder / "spendgate.toml"), *options],
                stdout=stdout, stderr=stderr, cwd=folder,
            )  # fmt: skip
        served = Served(process, port, out, err)
        if _ready(served):
            break
        if process.returncode == 2 and "in use" in err.read_text():
            continue
        pytest.fail(f"spendgate serve did not start\n{served.output()}")
    assert served is not None
    assert served.process.returncode is None, "no free port"
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def _ready(served: Served) -> bool:
    """Wait until the server answers /healthz (True) or its process ends (False)."""
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:  # start-up: waiting for another process
        if served.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200:
                return True
        time.sleep(0.05)
    pytest.fail(f"spendgate serve did not answer within {START_WITHIN} s\n{served.output()}")


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.02)


def new_store(folder: Path, hook_port: int = 9) -> str:
    """A migrated store in `folder` with a write key (so serve mints none); its token."""
    write_config(folder, hook_port)
    store = open_store(db_url(folder))
    try:
        return create_key(store, "load", "write", actor="test", now=0)[0]
    finally:
        store.close()


# -- load --------------------------------------------------------------------------------


@dataclass
class Client:
    """One client thread: posts events and reserves-then-commits until the server goes."""

    url: str
    token: str
    name: str
    acked: list[str] = field(default_factory=list)
    """Request ids of events and commits the server acknowledged (2xx)."""
    held: set[str] = field(default_factory=set)
    """Reservations granted and not (acknowledged as) settled."""
    unexpected: list[str] = field(default_factory=list)
    ops: int = 0

    def run(self, done: threading.Event) -> None:
        with httpx.Client(base_url=self.url, headers=bearer(self.token), timeout=30) as http:
            n = 0
            while not done.is_set():
                n += 1
                request_id = f"{self.name}-{n}"
                try:
                    if n % 2:
                        self._event(http, request_id)
                    else:
                        self._reserve_and_commit(http, request_id)
                except httpx.TransportError:
                    return  # the server is going away: refused, or closed after a response
                self.ops += 1

    def _event(self, http: httpx.Client, request_id: str) -> None:
        body = {"request_id": request_id, "service": self.name, "source": "paid_api"}
        posted = http.post("/api/events", json=body)
        if posted.status_code == 201:
            self.acked.append(request_id)
        else:
            self.unexpected.append(f"event {posted.status_code} {posted.text[:200]}")

    def _reserve_and_commit(self, http: httpx.Client, request_id: str) -> None:
        body = {"service": self.name, "source": "paid_api", "amount": "0.01"}
        reserved = http.post("/api/reservations", json=body)
        if reserved.status_code != 201:
            self.unexpected.append(f"reserve {reserved.status_code} {reserved.text[:200]}")
            return
        hold = reserved.json()["reservation_id"]
        self.held.add(hold)
        done = http.post(f"/api/reservations/{hold}/commit", json={"request_id": request_id})
        if done.status_code != 200:
            self.unexpected.append(f"commit {done.status_code} {done.text[:200]}")
            return
        self.held.discard(hold)
        self.acked.append(request_id)


@contextlib.contextmanager
def load(served: Served, token: str, tag: str) -> Iterator[list[Client]]:
    """`CLIENTS` threads working on the server, each under way before this yields; joined
    at the end (they stop by themselves once the server is gone)."""
    clients = [Client(served.url, token, f"{tag}-c{i}") for i in range(CLIENTS)]
    done = threading.Event()
    threads = [threading.Thread(target=c.run, args=(done,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(c.ops >= 2 for c in clients), 60, "every client under way")
        yield clients
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client thread did not stop"


def check_store_after(folder: Path, clients: list[Client]) -> None:
    """Nothing acknowledged lost; no lease left pending; reserved is exactly what clients
    still hold."""
    acked = [rid for c in clients for rid in c.acked]
    held = {h for c in clients for h in c.held}
    assert not [u for c in clients for u in c.unexpected]
    assert acked
    with contextlib.closing(sqlite3.connect(folder / "spendgate.db")) as db:
        stored = {r for (r,) in db.execute("SELECT request_id FROM events")}
        pending = db.execute(
            "SELECT id, service, amount FROM reservations WHERE state = 'pending'"
        ).fetchall()
    assert not [rid for rid in acked if rid not in stored], "acknowledged events lost"
    assert not [p for p in pending if p[1] == LEASE_SERVICE], "a lease was not given back"
    assert {p[0] for p in pending} <= held, "a hold no client has is still pending"
    with Gate.open(db_url(folder), config=folder / "spendgate.toml") as gate:
        (daily,) = gate.status()
        assert daily.reserved_nanos == sum(p[2] for p in pending)


def stop_under_load(folder: Path, token: str, signum: int, tag: str) -> float:
    """One round: serve, load, signal; checks the exit and the store; the stop's seconds."""
    with serving(folder, name=tag) as served, load(served, token, tag) as clients:
        sent = served.signal(signum)
        code = served.exit_code(within=STOP_WITHIN + 20)  # over the promise: a failure below
        took = time.monotonic() - sent
        assert code == 0, served.output()
        assert took < STOP_WITHIN, f"took {took:.1f} s\n{served.output()}"
        assert f"stopped ({signal.Signals(signum).name})" in served.out.read_text()
    check_store_after(folder, clients)
    return took


# -- stopping -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_under_load_stops_cleanly_every_time(tmp_path: Path) -> None:
    token = new_store(tmp_path)
    times = [stop_under_load(tmp_path, token, signal.SIGTERM, f"r{i}") for i in range(ROUNDS)]
    assert len(times) == ROUNDS
    print(f"SIGTERM to exit, {ROUNDS} rounds: max {max(times):.2f} s, {sorted(times)}")


@pytest.mark.slow
def test_sigint_lets_a_request_in_flight_finish_then_stops(tmp_path: Path) -> None:
    token = new_store(tmp_path)
    with serving(tmp_path) as served, load(served, token, "int") as clients:
        body = b'{"request_id": "in-flight", "service": "late", "source": "paid_api"}'
        with slow_request(served.port, token, body) as finish:
            sent = served.signal(signal.SIGINT)
            wait_for(lambda: not served.accepts(), 20, "the server stops accepting")
            assert served.process.poll() is None  # waiting for the request in flight
            status, answer = finish()
            assert status == 201, answer
        code = served.exit_code(within=STOP_WITHIN + 20)
        assert code == 0, served.output()
        assert time.monotonic() - sent < STOP_WITHIN
    check_store_after(tmp_path, clients)
    with contextlib.closing(sqlite3.connect(tmp_path / "spendgate.db")) as db:
        assert db.execute("SELECT 1 FROM events WHERE request_id = 'in-flight'").fetchone()


@contextlib.contextmanager
def slow_request(port: int, token: str, body: bytes) -> Iterator[Callable[[], tuple[int, str]]]:
    """A POST /api/events in flight: its headers are sent, and the server, reading its
    body, has answered `100 Continue`. Yields `finish()`, which sends the body and returns
    the status and the answer."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(
        (
            f"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    assert read_answer(conn).startswith("HTTP/1.1 100 ")

    def finish() -> tuple[int, str]:
        conn.sendall(body)
        text = read_answer(conn, body=True)
        return int(text.split(" ", 2)[1]), text

    try:
        yield finish
    finally:
        conn.close()


def read_answer(conn: socket.socket, *, body: bool = False) -> str:
    """One HTTP answer's head (and, with `body`, its JSON body) from `conn`."""
    answer = b""
    while b"\r\n\r\n" not in answer or (body and not answer.rstrip().endswith(b"}")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer.decode()


@pytest.mark.slow
def test_the_grace_period_cuts_off_a_request_that_does_not_finish(tmp_path: Path) -> None:
    token = new_store(tmp_path)
    with (
        serving(tmp_path, "--shutdown-grace", "2") as served,
        slow_request(served.port, token, b'{"service": "x", "source": "paid_api"}'),
    ):
        sent = served.signal(signal.SIGTERM)
        code = served.exit_code(within=30)
        took = time.monotonic() - sent
    assert code == 0, served.output()
    # Requests get the grace less a second for closing: it waited for it, then cut it off
    # (the bound leaves room for a loaded machine's process exit).
    assert 0.9 < took < 2 + 6, f"took {took:.1f} s"


@pytest.mark.slow
def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    token = new_store(tmp_path)
    with (
        serving(tmp_path, "--shutdown-grace", "60") as served,
        slow_request(served.port, token, b'{"service": "x", "source": "paid_api"}'),
    ):
        served.signal(signal.SIGTERM)
        wait_for(lambda: not served.accepts(), 20, "the server stops accepting")
        assert served.process.poll() is None  # waiting up to 60 s for the slow request
        sent = served.signal(signal.SIGINT)
        code = served.exit_code(within=20)
        took = time.monotonic() - sent
    assert code == 128 + signal.SIGINT, served.output()
    assert took < 5, f"took {took:.1f} s"
    assert "SIGINT again: exiting now" in served.err.read_text()


@pytest.mark.slow
def test_serve_bounds_the_time_and_size_of_a_request(tmp_path: Path) -> None:
    """`--header-timeout` and `--body-timeout` reach the server: a connection that sends
    nothing is closed after the one, a head whose body never comes is answered 408 after
    the other; a 1 MB header line gets 431 (tests/server/test_slow_clients.py has the rest)."""
    new_store(tmp_path)
    with serving(tmp_path, "--header-timeout", "1", "--body-timeout", "2") as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as silent:
            opened = time.monotonic()
            assert silent.recv(1) == b""  # closed by the server, without an answer
            took = time.monotonic() - opened
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as bodiless:
            sent = time.monotonic()  # before the head: the body's clock starts after
            bodiless.sendall(
                b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9\r\n\r\n"
            )
            assert read_answer(bodiless).startswith("HTTP/1.1 408 ")
            body_took = time.monotonic() - sent
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as big:
            big.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 2**20)
            assert read_answer(big).startswith("HTTP/1.1 431 ")
    assert 0.9 < took < 1 + 15, f"closed after {took:.1f} s"
    assert 1.9 < body_took < 2 + 15, f"answered 408 after {body_took:.1f} s"


# -- the dispatcher gives back what it did not send ---------------------------------------


@contextlib.contextmanager
def silent_receiver() -> Iterator[tuple[int, list[socket.socket]]]:
    """A webhook receiver that takes connections and never answers: each send waits for
    its timeout. Yields its port and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    taken: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                taken.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], taken
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
        for conn in taken:
            conn.close()


def queue_notifications(url: str, count: int) -> list[str]:
    """An alert with `count` notifications for the `hook` channel, due now; their keys."""
    store = open_store(url)
    try:
        alert = Alert("test-alert", "report", "2026-01", "info", "resolved", 1, resolved_at=1)
        assert store.fire(alert)
        notes = [
            Notification(f"n{i}", alert.alert_id, "hook", {"key": f"n{i}", "data": {"i": i}}, 1)
            for i in range(count)
        ]
        assert store.enqueue(alert.alert_id, 1, notes, 1)
    finally:
        store.close()
    return [n.key for n in notes]


@pytest.mark.slow
def test_a_stopping_server_gives_back_the_notifications_it_did_not_send(
    tmp_path: Path,
) -> None:
    with silent_receiver() as (hook_port, taken):
        new_store(tmp_path, hook_port)
        keys = queue_notifications(db_url(tmp_path), 5)
        with serving(tmp_path) as served:
            wait_for(lambda: len(taken) >= 1, 60, "the dispatcher sending the first")
            sent = served.signal(signal.SIGTERM)
            code = served.exit_code(within=STOP_WITHIN + 20)
            took = time.monotonic() - sent
        assert code == 0, served.output()
        assert took < STOP_WITHIN, f"took {took:.1f} s: the send in flight was not bounded"
        assert len(taken) == 1  # it sent no more once asked to stop
    store = open_store(db_url(tmp_path))
    try:
        by_key = {n.key: n for n in store.notifications()}
        first = by_key[keys[0]]
        assert first.attempts == 1  # it timed out: tried again later
        assert first.last_error is not None
        # The rest are due at once for the next dispatcher, their claim not counted.
        assert [by_key[k].attempts for k in keys[1:]] == [0, 0, 0, 0]
        # Before n0's retry, and long before a claim never given back would have lapsed.
        claimed = store.claim("next", now=first.next_attempt_at - 1, until=2**62, limit=10)
        assert sorted(n.key for n in claimed) == keys[1:]
    finally:
        store.close()


def test_release_claims_gives_back_only_the_workers_unsent_claims(store_url: str) -> None:
    store = open_store(store_url)
    try:
        alert = Alert("a", "report", "s", "info", "resolved", 1, resolved_at=1)
        store.fire(alert)
        notes = [Notification(f"k{i}", "a", "log", {"key": f"k{i}"}, 1) for i in range(5)]
        store.enqueue("a", 1, notes, 1)
        mine = store.claim("me", now=10, until=1_000, limit=3)
        theirs = store.claim("other", now=10, until=1_000, limit=10)
        assert len(mine) == 3
        assert len(theirs) == 2
        assert store.delivered(mine[0].key, "me", 11)
        assert store.release_claims("me") == 2
        assert store.release_claims("me") == 0
        again = store.claim("next", now=12, until=1_000, limit=10)
        assert sorted(n.key for n in again) == sorted(n.key for n in mine[1:])
        assert all(n.attempts == 1 for n in again)  # the released claim was not counted
        assert store.failed(theirs[0].key, "other", error="x", retry_at=50)
    finally:
        store.close()


def test_a_dispatcher_asked_to_stop_sends_no_more_and_gives_back_the_rest(
    store_url: str,
) -> None:
    with Gate.open(store_url) as gate:
        alert = Alert("a", "report", "s", "info", "resolved", 1, resolved_at=1)
        gate.store.fire(alert)
        notes = [Notification(f"k{i}", "a", "log", {"key": f"k{i}"}, 1) for i in range(4)]
        gate.store.enqueue("a", 1, notes, 1)
        stop = threading.Event()
        sent: list[str] = []

        def send(channel: ChannelSettings, payload: Mapping[str, Any]) -> None:
            sent.append(str(payload["key"]))
            stop.set()  # asked to stop during the first send

        done = Dispatcher(gate, send=send).run_once(stop)
        assert (done.delivered, done.failed, done.released) == (1, 0, 3)
        assert sent == ["k0"]
        rest = gate.store.claim("next", now=to_micros(gate.clock()), until=2**62, limit=10)
        assert sorted(n.key for n in rest) == ["k1", "k2", "k3"]
        assert Dispatcher(gate, send=send).run_once(stop).released == 0  # stopped: no claim


# -- start-up fails before it promises ---------------------------------------------------


def assert_one_line_and_no_key(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert "sg_" not in done.stdout + done.stderr  # no key shown
    assert "serving" not in done.stdout


@pytest.mark.slow
def test_a_port_in_use_exits_2_before_any_key(tmp_path: Path) -> None:
    write_config(tmp_path)
    open_store(db_url(tmp_path)).close()  # a store with no key: a start would mint one
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = spendgate("serve", "--db", db_url(tmp_path), "--port", str(port), folder=tmp_path)
    assert_one_line_and_no_key(done, "port", str(port), "in use")
    store = open_store(db_url(tmp_path))
    try:
        assert store.keys() == []
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1/x", "sqlite:///{tmp}/missing/folder/spendgate.db"],
    ids=["postgresql-refused", "sqlite-missing-folder"],
)
def test_an_unreachable_store_exits_2_before_any_key(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    done = spendgate("serve", "--db", url, "--port", str(free_port()), folder=tmp_path)
    assert_one_line_and_no_key(done)
    assert "cannot" in done.stderr


# -- the test helper ------------------------------------------------------------------------


def test_running_fails_a_test_whose_server_thread_does_not_stop() -> None:
    let_go = threading.Event()

    @contextlib.asynccontextmanager
    async def stuck(app: FastAPI) -> AsyncIterator[None]:
        yield
        while not let_go.is_set():  # a shutdown that never ends on its own
            await asyncio.sleep(0.01)

    port = free_port()
    try:
        with (
            pytest.raises(AssertionError, match=r"did not stop within 0\.5 s"),
            running(FastAPI(lifespan=stuck), port, stop_within=0.5),
        ):
            pass
    finally:
        let_go.set()
        join_named(f"uvicorn-{port}")


def test_running_fails_a_test_whose_server_threads_do_not_stop() -> None:
    let_go = threading.Event()
    stuck = threading.Thread(target=let_go.wait, name="stuck-loop", daemon=True)
    gate = Gate.open("memory://")
    try:
        app = app_for(gate, shutdown_grace=1)
        stuck.start()
        with pytest.raises(AssertionError, match="stuck-loop"), running(app):
            app.state.background.threads.append(stuck)
    finally:
        let_go.set()
        stuck.join(timeout=10)
        gate.close()
    assert not stuck.is_alive()


def test_a_test_server_stops_its_background_threads_before_the_gate_closes() -> None:
    with Gate.open("memory://") as gate:
        app = app_for(gate, report_dir=None)
        with running(app):
            names = app.state.background.alive()
            assert sorted(names) == ["spendgate-alert-evaluator", "spendgate-dispatcher"]
        assert app.state.background.alive() == []


def join_named(name: str) -> None:
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(timeout=30)
            assert not thread.is_alive()


def test_a_server_with_a_report_folder_writes_last_months_report(
    clock: FrozenClock, tmp_path: Path
) -> None:
    folder = tmp_path / "reports"
    with Gate.open("memory://", clock=clock) as gate:
        app = app_for(gate, report_dir=str(folder), alerting=False)
        with running(app):
            assert app.state.background.alive() == ["spendgate-report-writer"]
            month = folder / f"{clock().replace(day=1) - timedelta(days=1):%Y-%m}"
            # The dated file and its copy under the seed's name (monthly_cost_report.json).
            wait_for(lambda: len(list(month.glob("*.json"))) == 2, 60, "the monthly report")
        assert {p.suffix for p in month.iterdir()} >= {".pdf", ".xlsx", ".csv", ".json"}
