"""Connections cannot be held forever (issue 16): a real uvicorn server on loopback, reading
requests as `spendgate serve` does (`spendgate.server.connections`), with a short header
timeout.

The server's timeouts are wall-clock by nature, so these tests use a short one and wait on
socket events (a connection closing, an answer arriving) with generous deadlines; nothing
sleeps for time to pass.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytest

from spendgate import Gate
from tests.conftest import small_config
from tests.serving import app_for, running

HEADER_TIMEOUT = 2.5
"""Seconds the test server gives a client to send a request's head."""
SLACK = 12.0
"""How late past the header timeout a closing may be seen on a loaded machine."""
EARLY = 0.8 * HEADER_TIMEOUT
"""Sooner than this a closing is not the header timeout's (the server's timers run on its
loop's cached time, which a busy loop lets lag by some milliseconds)."""
HEAD_LIMIT = 16 * 1024
PROBE_WITHIN = 2.0
"""Seconds a /healthz answer may take while slow clients hold connections (it takes a few
milliseconds; this bound is only broken by a server the slow clients block)."""
TRICKLE_EVERY = 0.3
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Served:
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=SLACK)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module: what a test leaves (a refused connection lingering until
    its head's time is up) changes nothing for the next."""
    folder = tmp_path_factory.mktemp("slow")
    gate = Gate.open(f"sqlite:///{folder / 'slow.db'}", config=small_config())
    app = app_for(gate, header_timeout=HEADER_TIMEOUT, max_header_bytes=HEAD_LIMIT)
    try:
        with running(app) as url:
            yield Served(int(url.rsplit(":", 1)[1]))
    finally:
        gate.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server ended the connection after this answer (EOF)."""

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/problem+json", self
        found: dict[str, Any] = json.loads(self.body)
        assert found["status"] == self.status
        return found


def read_answer(answers: BinaryIO, *, until_closed: bool = False) -> Answer:
    """The next HTTP answer off a connection's reader (its body by Content-Length); with
    `until_closed`, the connection must then end."""
    status_line = answers.readline()
    assert status_line, "the connection closed without an answer"
    headers = {}
    while (line := answers.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    body = answers.read(int(headers["content-length"]))
    closed = until_closed and answers.read(1) == b""
    assert closed or not until_closed, "more than one answer"
    return Answer(int(status_line.split(b" ")[1]), headers, body, closed)


@contextlib.contextmanager
def exchange(served: Served) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """A connection to the server and a reader of its answers."""
    with served.connect() as conn, conn.makefile("rb") as answers:
        yield conn, answers


def healthz(served: Served) -> float:
    """Seconds a /healthz on a new connection takes to be answered 200."""
    started = time.monotonic()
    with exchange(served) as (conn, answers):
        conn.sendall(HEALTHZ)
        answer = read_answer(answers)
    assert answer.status == 200, answer
    return time.monotonic() - started


def assert_ended(conn: socket.socket) -> None:
    """`conn`, readable, has been ended by the server, which never answers a head that did
    not come whole."""
    try:
        data = conn.recv(4096)
    except ConnectionResetError:
        return
    assert data == b"", f"the server answered instead of closing: {data!r}"


@contextlib.contextmanager
def probing(served: Served) -> Iterator[list[tuple[float, float]]]:
    """/healthz asked again and again in a thread while inside: (answered at, seconds)."""
    probes: list[tuple[float, float]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.wait(0.05):  # paced: a client, not a flood
            took = healthz(served)
            probes.append((time.monotonic(), took))

    thread = threading.Thread(target=probe, name="healthz-probe")
    thread.start()
    try:
        yield probes
    finally:
        done.set()
        thread.join(timeout=SLACK * 2)
        assert not thread.is_alive(), "a /healthz probe hung"


# -- the header timeout --------------------------------------------------------------------


def test_slow_heads_are_closed_in_time_while_others_are_answered(served: Served) -> None:
    baseline = min(healthz(served) for _ in range(3))
    kinds = ("silent", "partial", "trickle")
    opened: dict[socket.socket, tuple[str, float]] = {}
    closed: dict[socket.socket, float] = {}
    last_byte: dict[socket.socket, float] = {}
    trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    with contextlib.ExitStack() as stack:
        for i in range(60):
            conn = stack.enter_context(served.connect())
            opened[conn] = (kinds[i % 3], time.monotonic())
            if kinds[i % 3] == "partial":  # a head begun at once, then nothing more
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + HEADER_TIMEOUT + SLACK
        with probing(served) as probes:
            sent, next_byte = 0, time.monotonic()
            while len(closed) < len(opened) and time.monotonic() < deadline:
                still = [c for c in opened if c not in closed]
                wait = max(0.0, min(next_byte, deadline) - time.monotonic())
                for conn in select.select(still, [], [], wait)[0]:
                    assert_ended(conn)
                    closed[conn] = time.monotonic()
                if time.monotonic() >= next_byte:
                    # The slowloris pattern: one more byte of the head now and then.
                    for conn in still:
                        if opened[conn][0] == "trickle" and conn not in closed:
                            with contextlib.suppress(OSError):  # ended meanwhile
                                conn.send(trickle[sent : sent + 1])
                                last_byte[conn] = time.monotonic()
                    sent += 1
                    next_byte = time.monotonic() + TRICKLE_EVERY
    held = sorted(opened[c][0] for c in opened if c not in closed)
    assert not held, f"still open {SLACK} s after the header timeout: {held}"
    for conn, at in closed.items():
        kind, since = opened[conn]
        # Never before its time (the server's clock starts after the client's connect)...
        assert at - since > EARLY, f"a {kind} connection closed early"
        # ...and a trickled byte did not give it more: a clock restarted by each byte
        # would close it no sooner than HEADER_TIMEOUT after the last one.
        if kind == "trickle":
            assert at - last_byte[conn] < EARLY, "trickling stretched it"
    first_closed = min(closed.values())
    beside = [took for answered, took in probes if answered < first_closed]
    print(f"/healthz: {baseline:.3f} s alone; beside 60 slow heads, {len(beside)} answered")
    print(f"in at most {max(beside, default=0):.3f} s; after them, {len(probes) - len(beside)}")
    assert len(beside) >= 3, "too few /healthz answered while the slow heads were held"
    assert max(took for _, took in probes) < PROBE_WITHIN, probes


@pytest.mark.parametrize(
    "trickle",
    [HEALTHZ * 100, b"\r\n" * 10_000],  # a head; blank lines, which begin no request
    ids=["head", "blank-lines"],
)
def test_a_kept_alive_connection_must_send_its_next_head_in_time(
    served: Served, trickle: bytes
) -> None:
    """uvicorn's keep-alive timeout stops at the first byte after an answer; the header
    timeout starts there and nothing stops it but a whole head."""
    with exchange(served) as (conn, answers):
        conn.sendall(HEALTHZ)
        assert read_answer(answers).status == 200  # one answer: nothing left in the reader
        answered = time.monotonic()
        first_byte = None  # sent after one TRICKLE_EVERY of idleness
        deadline = answered + HEADER_TIMEOUT + SLACK
        for i in range(len(trickle)):
            assert time.monotonic() < deadline, "the connection was held"
            if select.select([conn], [], [], TRICKLE_EVERY)[0]:
                assert_ended(conn)
                break
            first_byte = first_byte or time.monotonic()
            conn.send(trickle[i : i + 1])  # a byte at a time
        ended = time.monotonic()
    assert first_byte is not None
    assert ended - first_byte > EARLY


def test_a_head_in_time_is_answered_and_pipelined_requests_too(served: Served) -> None:
    with exchange(served) as (conn, answers):
        conn.sendall(HEALTHZ * 3)  # three heads in one write
        assert [read_answer(answers).status for _ in range(3)] == [200, 200, 200]
        conn.sendall(HEALTHZ[:10])  # a head in two parts, well in time
        conn.sendall(HEALTHZ[10:])
        assert read_answer(answers).status == 200


# -- the header size limit -----------------------------------------------------------------


REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def many_headers(total: int) -> bytes:
    """Header lines of 100 bytes each, about `total` bytes of them."""
    return b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"f" * 84) for i in range(total // 100))


def head_of(size: int) -> bytes:
    """A whole /healthz head of exactly `size` bytes."""
    head = REQUEST + many_headers(size - 200)
    pad = size - len(head) - len(b"X-Pad: \r\n\r\n")
    return head + b"X-Pad: " + b"p" * pad + b"\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        # A 1 MB header line, whole or never ending.
        REQUEST + b"X-Big: " + b"a" * 2**20 + b"\r\n\r\n",
        REQUEST + b"X-Big: " + b"a" * 2**20,
        # Many headers, one byte over the limit, in one write.
        head_of(HEAD_LIMIT + 1),
        # A request line over the limit.
        b"GET /healthz?" + b"q" * HEAD_LIMIT + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ],
    ids=["1MB-line", "1MB-line-unended", "many-headers", "long-target"],
)
def test_a_head_over_the_limit_gets_431_and_the_connection_ends(
    served: Served, head: bytes
) -> None:
    with exchange(served) as (conn, answers):
        conn.sendall(head)
        answer = read_answer(answers, until_closed=True)
    assert answer.status == 431, answer
    assert answer.problem()["detail"] == f"the request line and headers exceed {HEAD_LIMIT} bytes"
    assert answer.headers["connection"] == "close"
    healthz(served)  # and the server answers others as before


def test_headers_sent_one_by_one_are_refused_as_they_pass_the_limit(served: Served) -> None:
    with exchange(served) as (conn, answers):
        conn.sendall(REQUEST)
        for line in many_headers(HEAD_LIMIT * 4).splitlines(keepends=True):
            if select.select([conn], [], [], 0)[0]:
                break  # answered: the head is still far from whole
            conn.sendall(line)
        answer = read_answer(answers, until_closed=True)
    assert answer.status == 431, answer


def test_heads_up_to_the_limit_and_large_bodies_are_not_refused(served: Served) -> None:
    body = json.dumps({"service": "scraper", "source": "x" * 2**20}).encode()
    with exchange(served) as (conn, answers):
        conn.sendall(head_of(HEAD_LIMIT))
        assert read_answer(answers).status == 200
        # A small head with a 1 MB body in the same write: the body is not head.
        conn.sendall(
            b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert read_answer(answers).status == 401  # no key: read as a request, not refused
        conn.sendall(HEALTHZ)
        assert read_answer(answers).status == 200
