"""PostgreSQL outages, on a server of the test's own: its own cluster (`initdb`) on a free
port, stopped (`pg_ctl -m immediate`) and started again by the tests.

With the server down, calls are answered in bounded time (denied: store unreachable, or
approved unchecked by a fail-open budget) and `/healthz` says 503; once it is back, writes
resume in the same process, the outage becomes a `store_unreachable` alert, and nothing
acknowledged is lost or counted twice. A write whose connection is lost during COMMIT (cut
for real: by a proxy that lets the COMMIT through and drops the answer, or by terminating
the backend while its COMMIT waits) is resolved: the caller's answer and the store agree.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from spendgate import Gate
from spendgate.alerts import AlertEngine
from spendgate.config import parse
from spendgate.errors import StoreUnreachableError, ValidationError
from spendgate.health import Outage, StoreHealth
from spendgate.settings import Config
from spendgate.store import open_store
from spendgate.testing import FrozenClock
from tests.serving import app_for, bearer, make_keys, running

BOUND = 2.0  # seconds the issue allows; the default timeout is 1.5 s, room for a loaded machine
RECOVERY = 30.0  # seconds a test waits for something that should happen within a few


# -- a cluster of the test's own ----------------------------------------------------------------


def _pg_user() -> str | None:
    """Who runs the server: PostgreSQL refuses root, so as root an unprivileged user (made
    if missing); otherwise the user we are."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "spendgate-pg"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "spendgate-pg"],
        check=False,
        capture_output=True,
    )
    pwd.getpwnam("spendgate-pg")  # made now (or by a concurrent worker): KeyError if not
    return "spendgate-pg"


def _free_port() -> int:
    """A free port below the usual ephemeral range, so that no outgoing connection takes it
    while the server is down."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(12000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


class Cluster:
    """A PostgreSQL server in a temporary directory, on its own port."""

    def __init__(self, user: str | None) -> None:
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="spendgate-pg-"))
        if user is not None:
            shutil.chown(self.dir, user)
        self.data = self.dir / "data"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c max_connections=60"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
                  "-w", "-t", "90", "start")  # fmt: skip

    def stop(self) -> None:
        """Stop at once, as a crash would (no checkpoint, clients cut off)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "90", "stop")

    def running(self) -> bool:
        try:
            psycopg.connect(self.dsn, connect_timeout=3).close()
        except psycopg.OperationalError:
            return False
        return True

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, schema: str, port: int | None = None, **options: object) -> str:
        """A spendgate URL on this server (or a proxy of it on `port`)."""
        query = "&".join([f"schema={schema}", *(f"{k}={v}" for k, v in options.items())])
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/postgres?{query}"

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(statement, params or None)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A server of this module's own, torn down at the end whatever happened."""
    missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser (to run the server as another user than root)")
    if missing:
        message = f"{', '.join(missing)} not found: PostgreSQL's server binaries run these tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    made = Cluster(_pg_user())
    try:
        made.start()
        yield made
    finally:
        made.destroy()


@pytest.fixture
def server(cluster: Cluster) -> Cluster:
    """The module's server, running (a test that failed half way may have left it down)."""
    if not cluster.running():
        cluster.start()
    return cluster


@pytest.fixture
def schema(server: Cluster) -> Iterator[str]:
    name = f"outage_{secrets.token_hex(5)}"
    yield name
    if server.running():
        server.sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


ROOMY = "1000000"
"""A budget limit no test here reaches."""


def config(limit: str = "1.00", **budget: object) -> Config:
    return parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}},
            "budgets": [{"name": "daily", "limit": limit, **budget}],
            "alerts": {"evaluate_every": "1s"},
        }
    )


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def until(check: Callable[[], Any], what: str, seconds: float = RECOVERY) -> Any:
    """Poll `check` until it answers truthy (an exception counts as not yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except Exception:  # not yet: the server may still be coming back
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.05)


def reserved(server: Cluster, schema: str) -> int:
    rows = server.sql(f"SELECT COALESCE(SUM(reserved), 0) FROM {schema}.budget_buckets")
    return int(rows[0][0])


def spent(server: Cluster, schema: str) -> int:
    rows = server.sql(f"SELECT COALESCE(SUM(spent), 0) FROM {schema}.budget_buckets")
    return int(rows[0][0])


# -- a proxy that cuts a connection at its COMMIT ------------------------------------------------


class CommitCutter:
    """A TCP proxy in front of the server. Armed, it lets the next COMMIT through, reads the
    server's answer to the end (the transaction is then stored), runs `before_cut`, and
    closes the client's connection without passing the answer on: the client sees its
    connection lost during COMMIT, with the outcome unknown to it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.cut_at = 0.0  # time.monotonic() of the cut
        self._armed: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept)
        self._accepting.start()

    def arm(self, before_cut: Callable[[], None] = lambda: None) -> None:
        self.cut.clear()
        self._armed = before_cut

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._accepting.join(10)
        for t in list(self._threads):
            t.join(10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                client.close()  # the server is down: so is the proxy's connection
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._sockets += [client, upstream]
                for target in (self._client_to_server, self._server_to_client):
                    t = threading.Thread(target=target, args=(link,))
                    self._threads.append(t)
                    t.start()

    def _client_to_server(self, link: _Link) -> None:
        try:
            first = _read_exact(link.client, 4)  # the startup message has no type byte
            (length,) = struct.unpack("!i", first)
            link.upstream.sendall(first + _read_exact(link.client, length - 4))
            while True:
                kind, body = _read_message(link.client)
                before = self._armed
                if before is not None and kind == b"Q" and body.startswith(b"COMMIT"):
                    self._armed = None
                    link.cutting = before
                link.upstream.sendall(kind + struct.pack("!i", len(body) + 4) + body)
        except (OSError, ConnectionError):
            link.close()

    def _server_to_client(self, link: _Link) -> None:
        try:
            while True:
                kind, body = _read_message(link.upstream)
                if link.cutting is not None:
                    if kind == b"Z":  # ReadyForQuery: the COMMIT is done on the server
                        link.cutting()
                        link.close()
                        self.cut_at = time.monotonic()
                        self.cut.set()
                        return
                    continue  # the COMMIT's answer: never passed on
                link.client.sendall(kind + struct.pack("!i", len(body) + 4) + body)
        except (OSError, ConnectionError):
            link.close()


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.cutting: Callable[[], None] | None = None

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _read_exact(sock, 5)
    (length,) = struct.unpack("!i", head[1:])
    return head[:1], _read_exact(sock, length - 4)


@pytest.fixture
def cutter(server: Cluster) -> Iterator[CommitCutter]:
    proxy = CommitCutter(server.port)
    yield proxy
    proxy.close()


def cut_url(server: Cluster, cutter: CommitCutter, schema: str) -> str:
    # No TLS or GSS negotiation, so the proxy reads plain protocol messages from the start.
    return server.url(schema, port=cutter.port, sslmode="disable", gssencmode="disable")


# -- the URL option ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "601"])
def test_a_bad_timeout_option_is_refused_naming_it(value: str) -> None:
    # Refused before any connection is tried (port 1 would fail otherwise).
    with pytest.raises(ValidationError) as err:
        open_store(f"postgresql://postgres@127.0.0.1:1/postgres?timeout={value}")
    assert err.value.field == "url timeout"
    assert "seconds" in err.value.expected


def test_an_outage_record_merges_until_reported_and_counts_the_calls(
    clock: FrozenClock,
) -> None:
    health = StoreHealth()
    error = StoreUnreachableError("down")
    assert health.quiet
    start = clock()
    health.failed(start, error, "denied")
    assert not health.quiet
    clock.advance(timedelta(seconds=10))
    health.answered(clock())
    assert health.quiet
    clock.advance(timedelta(seconds=5))
    health.failed(clock(), error, "approved")  # again before anyone reported it: one outage
    clock.advance(timedelta(seconds=5))
    outage = health.take(clock())  # the taker just heard from the store: it ends now
    assert outage == Outage(start, "store unreachable", clock(), denied=1, approved=1)  # the kind
    assert outage.seconds(clock()) == 20
    assert health.take(clock()) is None


# -- the server goes down and comes back ---------------------------------------------------------

PRICE = 10_000_000  # paid_api: $0.01 a request, in nano-units


class Writer:
    """Records events with ids of its own in a thread until stopped; notes each outcome."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.acknowledged: list[str] = []
        self.failed: dict[str, str] = {}  # id -> error class
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            rid = f"w-{n}"
            n += 1
            try:
                self.gate.record("scraper", "paid_api", request_id=rid)
            except Exception as exc:  # noted: the test judges every outcome
                self.failed[rid] = type(exc).__name__
                self._stop.wait(0.05)
            else:
                self.acknowledged.append(rid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.mark.slow
def test_with_the_server_down_calls_are_denied_in_time_and_writes_resume(
    server: Cluster, schema: str
) -> None:
    # A budget the writer cannot use up, however fast it writes: it records at full speed
    # whenever the server answers, and authorize() must be approved after.
    gate = Gate.open(server.url(schema), config=config(ROOMY))
    lenient = Gate.open(server.url(schema), config=config(ROOMY, fail_open=True))
    engine = AlertEngine(gate)
    writer: Writer | None = None
    acknowledged: list[str] = []
    try:
        acknowledged += [gate.record("scraper", "paid_api", request_id=f"before-{i}").request_id
                         for i in range(3)]  # fmt: skip
        assert gate.reserve("scraper", "paid_api", reservation_id="held-before").approved
        acknowledged.append(gate.commit("held-before").request_id)
        writer = Writer(gate)
        until(lambda: len(writer.acknowledged) >= 5, "the writer's first events")

        server.stop()
        took: list[float] = []
        for _ in range(3):
            decision, seconds = timed(lambda: gate.authorize("scraper", "paid_api"))
            took.append(seconds)
            assert decision.status == "denied"
            assert "store unreachable" in decision.reason
            assert decision.budget == "daily"
        decision, seconds = timed(lambda: gate.reserve("scraper", "paid_api"))
        took.append(seconds)
        assert decision.status == "denied"
        assert "store unreachable" in decision.reason
        decision, seconds = timed(lambda: lenient.authorize("scraper", "paid_api"))
        took.append(seconds)
        assert decision.status == "approved"
        assert "approved unchecked" in decision.reason
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError):
            gate.record("scraper", "paid_api", request_id="during-0")
        took.append(time.monotonic() - started)
        print(f"answers with the server down took {', '.join(f'{t:.2f}' for t in took)} s")
        assert max(took) < BOUND
        with pytest.raises(StoreUnreachableError):
            engine.evaluate()
        assert gate.outages["denied"] == 4

        server.start()
        back = time.monotonic()
        until(lambda: gate.record("scraper", "paid_api", request_id="after-0"), "a write")
        print(f"the first write after the server was back took {time.monotonic() - back:.2f} s")
        acknowledged.append("after-0")
        assert gate.authorize("scraper", "paid_api").approved
        seen = len(writer.acknowledged)
        until(lambda: len(writer.acknowledged) >= seen + 5, "the writer's writes")
        writer.stop()

        fired = [f for f in engine.evaluate().fired if f.startswith("store_unreachable:")]
        assert len(fired) == 1
        alert = gate.store.alert(fired[0])
        assert alert is not None
        assert alert.severity == "critical"
        assert alert.detail["denied"] == 4  # 3 authorize and 1 reserve, by this gate
        assert alert.detail["error"] == "store unreachable"  # the kind, never the address
        assert not [f for f in engine.evaluate().fired if f.startswith("store_unreachable:")]

        # Nothing acknowledged is lost, nothing counted twice, nothing stored unasked.
        acknowledged += writer.acknowledged
        stored = [e.request_id for e in gate.events()]
        assert len(stored) == len(set(stored))
        assert set(acknowledged) <= set(stored)
        unacknowledged = set(stored) - set(acknowledged)
        # A write cut off mid-COMMIT may be stored without having been acknowledged; it
        # was then told its outcome is unknown, never that it failed.
        assert all(writer.failed.get(rid) == "OutcomeUnknownError" for rid in unacknowledged)
        assert "during-0" not in stored
        assert spent(server, schema) == len(stored) * PRICE
        assert reserved(server, schema) == 0
        assert writer.failed  # the outage was met
    finally:
        if writer is not None:
            writer.stop()
        lenient.close()
        gate.close()


@pytest.mark.slow
def test_a_short_timeout_option_bounds_the_wait(server: Cluster, schema: str) -> None:
    gate = Gate.open(server.url(schema, timeout="0.5"), config=config())
    try:
        server.stop()
        decision, seconds = timed(lambda: gate.authorize("scraper", "paid_api"))
        assert decision.status == "denied"
        # What a caller may be told: neither the server's address nor the driver's words.
        assert decision.reason == "store unreachable, budget 'daily' fails closed"
        assert seconds < 0.5 + 1.0
    finally:
        gate.close()


@pytest.mark.slow
def test_a_busy_pool_answers_in_time_and_serves_again_once_free(
    server: Cluster, schema: str
) -> None:
    # Every connection held by a reserve that waits for a row lock: the pool is saturated,
    # not down. A call waits its timeout once (0.5 s), not pool_size + 1 times (1.5 s).
    # (Of three concurrent reserves, one runs alone and two share the group commit of holds:
    # two connections, each waiting on the row.)
    gate = Gate.open(server.url(schema, pool_size=2, timeout="0.5"), config=config())
    try:
        assert gate.reserve("scraper", "paid_api").approved  # the budget's row exists
        held: list[Any] = []
        with psycopg.connect(server.dsn, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute(f"SELECT * FROM {schema}.budget_buckets FOR UPDATE")
            blocked = [
                threading.Thread(target=lambda: held.append(gate.reserve("scraper", "paid_api")))
                for _ in range(3)
            ]
            try:
                for t in blocked:
                    t.start()
                until(
                    lambda: (
                        server.sql(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        )[0][0]
                        == 2
                    ),
                    "the reserves' two connections waiting on the row",
                )
                decision, seconds = timed(lambda: gate.authorize("scraper", "paid_api"))
            finally:
                holder.execute("COMMIT")
                for t in blocked:
                    t.join(30)
        assert decision.status == "denied"
        assert decision.reason == "store unreachable, budget 'daily' fails closed"
        assert seconds < 0.5 + 1.0
        assert [d.approved for d in held] == [True] * 3
        assert gate.authorize("scraper", "paid_api").approved  # free again: served
    finally:
        gate.close()


@pytest.mark.slow
def test_healthz_says_503_in_time_and_the_server_raises_the_alert_after(
    server: Cluster, schema: str
) -> None:
    gate = Gate.open(server.url(schema), config=config())
    try:
        keys = make_keys(gate)
        call = {"service": "scraper", "source": "paid_api"}
        with running(app_for(gate)) as base, httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/healthz").status_code == 200
            ok = http.post("/api/authorize", json=call, headers=bearer(keys.write))
            assert ok.json()["approval_status"] == "approved"

            server.stop()
            took = []
            for _ in range(3):
                health, seconds = timed(lambda: http.get("/healthz"))
                took.append(seconds)
                assert health.status_code == 503
                assert health.json()["store"] == "unreachable"
            for _ in range(2):
                denied, seconds = timed(
                    lambda: http.post("/api/authorize", json=call, headers=bearer(keys.write))
                )
                took.append(seconds)
                assert denied.status_code == 200
                assert denied.json()["approval_status"] == "denied"
                assert "store unreachable" in denied.json()["reason"]
            print(f"/healthz and /api/authorize with the server down: "
                  f"{', '.join(f'{t:.2f}' for t in took)} s")  # fmt: skip
            assert max(took) < BOUND

            server.start()
            back = time.monotonic()
            until(lambda: http.get("/healthz").status_code == 200, "/healthz 200")
            print(f"/healthz was 200 again {time.monotonic() - back:.2f} s after the start")
            # The server's own evaluator (every second here) raises the alert.
            alert = until(
                lambda: [a for a in gate.store.alerts() if a.rule == "store_unreachable"],
                "the store_unreachable alert",
            )[0]
            assert alert.severity == "critical"
            assert alert.detail["denied"] == 2
            again = http.post("/api/authorize", json=call, headers=bearer(keys.write))
            assert again.json()["approval_status"] == "approved"
    finally:
        gate.close()


# -- a connection lost during COMMIT --------------------------------------------------------------

HOLD = 250_000_000  # $0.25


def state_of(server: Cluster, schema: str, reservation_id: str) -> list[tuple[Any, ...]]:
    return server.sql(
        f"SELECT state, amount FROM {schema}.reservations WHERE id = %s", reservation_id
    )


@pytest.mark.slow
def test_a_reserve_whose_commit_answer_was_lost_is_found_stored_and_approved(
    server: Cluster, schema: str, cutter: CommitCutter
) -> None:
    gate = Gate.open(cut_url(server, cutter, schema), config=config())
    try:
        assert gate.authorize("scraper", "paid_api").approved
        cutter.arm()
        decision, seconds = timed(
            lambda: gate.reserve("scraper", "paid_api", "0.25", reservation_id="cut-1")
        )
        assert cutter.cut.is_set()  # the COMMIT was carried out, its answer never came
        # Looked up again on a fresh connection: stored, so approved, and said so.
        assert decision.approved
        assert decision.reservation_id == "cut-1"
        assert seconds < BOUND
        assert state_of(server, schema, "cut-1") == [("pending", HOLD)]
        assert reserved(server, schema) == HOLD
        assert gate.health.unknown == ()
        result = gate.commit("cut-1", "0.20")
        assert result.cost == 200_000_000
        assert (reserved(server, schema), spent(server, schema)) == (0, 200_000_000)
    finally:
        gate.close()


@pytest.mark.slow
def test_a_reserve_lost_in_commit_as_the_server_dies_is_denied_then_released(
    server: Cluster, schema: str, cutter: CommitCutter
) -> None:
    gate = Gate.open(cut_url(server, cutter, schema), config=config())
    try:
        assert gate.authorize("scraper", "paid_api").approved
        cutter.arm(before_cut=server.stop)  # stored, then the server goes before it answers
        decision = gate.reserve("scraper", "paid_api", "0.25")
        answered = time.monotonic()
        assert cutter.cut.is_set()
        assert decision.status == "denied"
        assert decision.reason == "store unreachable, budget 'daily' fails closed"
        assert answered - cutter.cut_at < BOUND
        (lost,) = gate.health.unknown

        server.start()
        # The store did keep the hold the caller was told it did not get...
        assert state_of(server, schema, lost) == [("pending", HOLD)]
        assert reserved(server, schema) == HOLD
        # ...and the gate's next call that reaches the store gives it back.
        until(lambda: gate.authorize("scraper", "paid_api").approved, "an answer")
        assert state_of(server, schema, lost) == [("released", HOLD)]
        assert reserved(server, schema) == 0
        assert gate.health.unknown == ()
    finally:
        gate.close()


@pytest.mark.slow
def test_a_reserve_whose_commit_was_cut_off_before_it_landed_is_taken_again(
    server: Cluster, schema: str
) -> None:
    gate = Gate.open(server.url(schema), config=config())
    try:
        assert gate.authorize("scraper", "paid_api").approved
        # A deferred trigger holds each reservation's COMMIT until the test lets it go.
        server.sql(
            f"CREATE FUNCTION {schema}.wait_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$"
        )
        server.sql(
            f"CREATE CONSTRAINT TRIGGER wait_at_commit AFTER INSERT ON {schema}.reservations "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"EXECUTE FUNCTION {schema}.wait_at_commit()"
        )
        answers: list[Any] = []
        with psycopg.connect(server.dsn, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(4242)")
            reserving = threading.Thread(
                target=lambda: answers.append(
                    gate.reserve("scraper", "paid_api", "0.25", reservation_id="cut-2")
                )
            )
            reserving.start()
            try:
                ((pid,),) = until(
                    lambda: server.sql(
                        "SELECT pid FROM pg_stat_activity WHERE query = 'COMMIT' "
                        "AND wait_event = 'advisory'"
                    ),
                    "the COMMIT waiting on the trigger",
                )
                server.sql("SELECT pg_terminate_backend(%s)", pid)  # cut off mid-COMMIT
            finally:
                holder.execute("SELECT pg_advisory_unlock(4242)")
                reserving.join(30)
        assert not reserving.is_alive()
        # Not stored: the reserve ran again on a fresh connection, and holds once.
        assert answers[0].approved
        assert state_of(server, schema, "cut-2") == [("pending", HOLD)]
        assert reserved(server, schema) == HOLD
    finally:
        gate.close()


@pytest.mark.slow
def test_a_commit_or_record_whose_answer_was_lost_answers_truthfully_once(
    server: Cluster, schema: str, cutter: CommitCutter
) -> None:
    gate = Gate.open(cut_url(server, cutter, schema), config=config())
    try:
        assert gate.reserve("scraper", "paid_api", "0.25", reservation_id="cut-3").approved
        cutter.arm()
        result = gate.commit("cut-3", "0.20")
        assert cutter.cut.is_set()
        assert (result.request_id, result.cost, result.overshoot) == ("cut-3", 200_000_000, 0)
        assert state_of(server, schema, "cut-3") == [("committed", HOLD)]

        cutter.arm()
        recorded = gate.record("scraper", "paid_api", request_id="cut-4")
        assert cutter.cut.is_set()
        assert (recorded.status, recorded.cost) == ("created", PRICE)

        ids = [e.request_id for e in gate.events()]
        assert sorted(ids) == ["cut-3", "cut-4"]
        assert (reserved(server, schema), spent(server, schema)) == (0, 200_000_000 + PRICE)
    finally:
        gate.close()


# -- the alert ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_outage_is_one_alert_however_many_evaluators_saw_it(
    server: Cluster, schema: str, clock: FrozenClock
) -> None:
    # Two gates (two server processes, say) on one store, each with its evaluator.
    first = Gate.open(server.url(schema), config=config(), clock=clock)
    second = Gate.open(server.url(schema), config=config(), clock=clock)
    engines = [AlertEngine(first), AlertEngine(second)]

    def outage(gates: list[Gate]) -> None:
        server.stop()
        for gate in gates:
            assert gate.authorize("scraper", "paid_api").status == "denied"
        clock.advance(timedelta(seconds=40))
        server.start()

    def fired(evaluators: list[AlertEngine]) -> list[str]:
        return [
            f
            for engine in evaluators
            for f in until(engine.evaluate, "an evaluation").fired
            if f.startswith("store_unreachable:")
        ]

    try:
        outage([first, second])
        (one,) = fired(engines)  # both saw it: one alert
        clock.advance(timedelta(seconds=30))
        outage([second])  # another, while the first one's alert is still firing
        (two,) = fired(engines[::-1])
        assert two != one
        alerts = {a.alert_id: a for a in first.store.alerts() if a.rule == "store_unreachable"}
        assert set(alerts) == {one, two}
        assert alerts[one].state == "resolved"  # before the second one fired
        assert alerts[one].resolved_at is not None
        assert alerts[one].resolved_at <= alerts[two].fired_at
        assert alerts[one].value == "40s"  # kept when it resolved
        assert alerts[two].value == "40s"
        assert alerts[two].detail["denied"] == 1
    finally:
        second.close()
        first.close()
