"""Connections cannot be held forever (issue 16): a real uvicorn server on loopback, reading
requests as `spendgate serve` does (`spendgate.server.connections`), with short header and
body timeouts.

The server's timeouts are wall-clock by nature, so these tests use a short one and wait on
socket events (a connection closing, an answer arriving) with generous deadlines; nothing
sleeps for time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytest
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from spendgate import Gate
from spendgate.server import ServerSettings
from tests.conftest import small_config
from tests.serving import app_for, make_keys, running

HEADER_TIMEOUT = 2.5
"""Seconds the test server gives a client to send a request's head."""
SLACK = 12.0
"""How late past the header timeout a closing may be seen on a loaded machine."""
EARLY = 0.8 * HEADER_TIMEOUT
"""Sooner than this a closing is not the header timeout's (the server's timers run on its
loop's cached time, which a busy loop lets lag by some milliseconds)."""
BODY_TIMEOUT = 4.0
"""Seconds the test server gives a client to send a request's body once its head is in
(longer than the header timeout: a closing after it is the body's clock, not the head's)."""
EARLY_BODY = 0.8 * BODY_TIMEOUT
HEAD_LIMIT = 16 * 1024
PROBE_WITHIN = 3.0
"""Seconds a /healthz answer may take while slow clients hold connections. It takes a few
milliseconds; a server the slow clients block answers the first probes only once their body
or head time is up (about 4 s). On the loaded 2-core CI machine one probe once took 2.07 s
among hundreds of 2 ms ones (the other test worker killing processes beside it): the bound
sits between the two, not at the edge of what a busy machine does."""
TRICKLE_EVERY = 0.3
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Served:
    port: int
    token: str = ""
    """A write key's."""

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=SLACK)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module: what a test leaves (a refused connection lingering until
    its head's time is up) changes nothing for the next."""
    folder = tmp_path_factory.mktemp("slow")
    gate = Gate.open(f"sqlite:///{folder / 'slow.db'}", config=small_config())
    token = make_keys(gate).write
    app = app_for(
        gate,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        max_header_bytes=HEAD_LIMIT,
    )
    try:
        with running(app) as url:
            yield Served(port_of(url), token)
    finally:
        gate.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


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


def hold_and_trickle(
    served: Served,
    opened: dict[socket.socket, tuple[str, float]],
    sends: dict[str, bytes],
    on_end: Callable[[socket.socket], None],
    within: float,
) -> tuple[dict[socket.socket, float], dict[socket.socket, float], list[tuple[float, float]]]:
    """Slow clients at work: every TRICKLE_EVERY seconds each connection of `opened` (kind,
    opened at) sends one more byte of what `sends` gives its kind (kinds not there send
    nothing), while /healthz is asked beside them, until the server has ended every one or
    `within` seconds have passed; `on_end` reads each connection as it ends. When each
    ended, when each last sent a byte, and the probes."""
    ended: dict[socket.socket, float] = {}
    last_byte: dict[socket.socket, float] = {}
    deadline = time.monotonic() + within
    with probing(served) as probes:
        sent, next_byte = 0, time.monotonic()
        while len(ended) < len(opened) and time.monotonic() < deadline:
            still = [c for c in opened if c not in ended]
            wait = max(0.0, min(next_byte, deadline) - time.monotonic())
            for conn in select.select(still, [], [], wait)[0]:
                ended[conn] = time.monotonic()
                on_end(conn)
            if time.monotonic() >= next_byte:
                for conn in still:
                    data = sends.get(opened[conn][0], b"")
                    if conn not in ended and sent < len(data):
                        with contextlib.suppress(OSError):  # ended meanwhile
                            conn.send(data[sent : sent + 1])
                            last_byte[conn] = time.monotonic()
                sent += 1
                next_byte = time.monotonic() + TRICKLE_EVERY
    return ended, last_byte, probes


# -- the header timeout --------------------------------------------------------------------


def test_slow_heads_are_closed_in_time_while_others_are_answered(served: Served) -> None:
    baseline = min(healthz(served) for _ in range(3))
    kinds = ("silent", "partial", "trickle")
    opened: dict[socket.socket, tuple[str, float]] = {}
    trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    with contextlib.ExitStack() as stack:
        for i in range(60):
            conn = stack.enter_context(served.connect())
            opened[conn] = (kinds[i % 3], time.monotonic())
            if kinds[i % 3] == "partial":  # a head begun at once, then nothing more
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        # The slowloris pattern: one more byte of the head now and then.
        closed, last_byte, probes = hold_and_trickle(
            served, opened, {"trickle": trickle}, assert_ended, HEADER_TIMEOUT + SLACK
        )
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


# -- the body timeout ----------------------------------------------------------------------


def post_head(path: bytes, token: str, length: int | None) -> bytes:
    """A POST's head for a JSON body of `length` bytes, or a chunked one (`None`)."""
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\n%s\r\n\r\n" % (path, token.encode(), framing)
    )


def chunks(body: bytes, pieces: int) -> list[bytes]:
    """`body` in `pieces` chunks of the chunked coding, the last ending the body."""
    size = -(-len(body) // pieces)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    coded = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts]
    coded[-1] += b"0\r\n\r\n"
    return coded


def event(request_id: str) -> dict[str, str]:
    return {"service": "scraper", "source": "free_api", "request_id": request_id}


def event_body(request_id: str) -> bytes:
    return json.dumps(event(request_id)).encode()


def test_slow_bodies_are_answered_408_in_time_while_others_are_answered(served: Served) -> None:
    """The R.U.D.Y. pattern: a head at once, then its body a byte at a time."""
    body = event_body("slow-" + "b" * 150)
    trickles = {
        "length": body,
        "chunked": b"".join(chunks(body, 1)),
        # A route that does not read its body answers at once; the body still owes its time.
        "answered": b"x" * 1000,
    }
    heads = {
        "length": post_head(b"/api/events", served.token, len(body)),
        "chunked": post_head(b"/api/events", served.token, None),
        "answered": HEALTHZ.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n"),
    }
    opened: dict[socket.socket, tuple[str, float]] = {}
    readers: dict[socket.socket, BinaryIO] = {}
    answers: dict[socket.socket, Answer] = {}

    def read_end(conn: socket.socket) -> None:
        if opened[conn][0] == "answered":
            assert_ended(conn)  # answered already: closed without another
        else:
            answers[conn] = read_answer(readers[conn], until_closed=True)

    with contextlib.ExitStack() as stack:
        for i in range(30):
            kind = tuple(heads)[i % 3]
            conn = stack.enter_context(served.connect())
            readers[conn] = stack.enter_context(conn.makefile("rb"))
            opened[conn] = (kind, time.monotonic())  # before the head: its body's clock is later
            conn.sendall(heads[kind])
            if kind == "answered":
                assert read_answer(readers[conn]).status == 200
        ended, last_byte, probes = hold_and_trickle(
            served, opened, trickles, read_end, BODY_TIMEOUT + SLACK
        )
    held = sorted(opened[c][0] for c in opened if c not in ended)
    assert not held, f"still open {SLACK} s after the body timeout: {held}"
    for conn, at in ended.items():
        kind, since = opened[conn]
        # Never before its time (so neither by the head's clock, which is shorter)...
        assert at - since > EARLY_BODY, f"a {kind} body was cut off early"
        # ...and a trickled byte did not give it more.
        assert at - last_byte[conn] < EARLY_BODY, f"trickling stretched a {kind} body"
    assert len(answers) == 20
    for answer in answers.values():
        assert answer.status == 408, answer
        assert answer.problem()["detail"] == "the request body did not arrive within 4 s"
        assert answer.headers["connection"] == "close"
        assert answer.closed
    beside = [took for answered, took in probes if answered < min(ended.values())]
    assert len(beside) >= 3, "too few /healthz answered while the slow bodies were held"
    assert max(took for _, took in probes) < PROBE_WITHIN, probes


def send_in_pieces(conn: socket.socket, head: bytes, pieces: list[bytes]) -> None:
    """`head`, then each piece after a pause: each comes in a read of its own, and the
    server must not answer a body that is not yet whole."""
    conn.sendall(head)
    for piece in pieces:
        assert not select.select([conn], [], [], TRICKLE_EVERY)[0], "answered before the end"
        conn.sendall(piece)


def test_large_bodies_and_bodies_in_quick_pieces_are_answered(served: Served) -> None:
    batch = json.dumps({"events": [event(f"big-{i:05d}-{'r' * 90}") for i in range(7000)]})
    assert len(batch) > 2**20
    one, two = event_body("in-pieces-1"), event_body("in-pieces-2")
    with exchange(served) as (conn, answers):
        conn.sendall(post_head(b"/api/events/batch", served.token, len(batch)) + batch.encode())
        answer = read_answer(answers)
        assert answer.status == 200, answer
        assert len(json.loads(answer.body)["results"]) == 7000
        head = post_head(b"/api/events", served.token, len(one))
        send_in_pieces(conn, head, [one[:10], one[10:30], one[30:]])
        assert read_answer(answers).status == 201
        head_at = time.monotonic()
        send_in_pieces(conn, post_head(b"/api/events", served.token, None), chunks(two, 3))
        assert read_answer(answers).status == 201
        # The body's clock stopped with its body: idle, the connection outlives its time
        # (uvicorn's keep-alive timeout, 5 s from the answer, ends it later).
        idle = head_at + BODY_TIMEOUT + 0.5 - time.monotonic()
        assert not select.select([conn], [], [], max(0.0, idle))[0], "the connection ended"
        conn.sendall(HEALTHZ)
        assert read_answer(answers).status == 200


def test_the_body_of_a_request_answered_before_it_came_is_not_taken_for_a_head(
    served: Served,
) -> None:
    """A route that does not read its body answers at once; the body, over the head limit,
    comes after the answer and is dropped as a body, not refused as a head (431)."""
    length = 2 * HEAD_LIMIT
    with exchange(served) as (conn, answers):
        conn.sendall(HEALTHZ.replace(b"\r\n\r\n", b"\r\nContent-Length: %d\r\n\r\n" % length))
        assert read_answer(answers).status == 200
        # With the start of the next head, in the read that ends the body.
        send_in_pieces(conn, b"x" * length + HEALTHZ[:10], [HEALTHZ[10:]])
        assert read_answer(answers).status == 200


@dataclass
class Reading:
    """A plain app on a server with a one-second body timeout (and a long header timeout,
    so a refused connection stays open until the test closes it)."""

    served: Served
    outcomes: queue.Queue[str]
    """What each read of /read came to."""
    release: threading.Event
    """Lets /held read its body, and /read-then-hold answer."""


HELD_BODY_TIMEOUT = 1.0


@pytest.fixture
def reading() -> Iterator[Reading]:
    outcomes: queue.Queue[str] = queue.Queue()
    release = threading.Event()
    app = FastAPI()

    @app.post("/read")
    async def read(request: Request) -> Response:
        try:
            outcomes.put(f"read {len(await request.body())}")
        except ClientDisconnect:
            outcomes.put("disconnected")
        return Response()

    @app.post("/held")
    async def held(request: Request) -> dict[str, int]:
        await asyncio.to_thread(release.wait, SLACK * 2)
        return {"bytes": len(await request.body())}

    @app.post("/read-then-hold")
    async def read_then_hold(request: Request) -> Response:
        await request.body()
        await asyncio.to_thread(release.wait, SLACK * 2)
        return Response()

    settings = ServerSettings(header_timeout=3600, body_timeout=HELD_BODY_TIMEOUT)
    with running(app, settings=settings) as url:
        yield Reading(Served(port_of(url)), outcomes, release)


def test_a_late_body_wakes_the_app_waiting_for_it(reading: Reading) -> None:
    with exchange(reading.served) as (conn, answers):
        conn.sendall(
            b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        )
        assert read_answer(answers).status == 408
        # While the connection is still open: the app is not left waiting for its end.
        assert reading.outcomes.get(timeout=SLACK) == "disconnected"


def test_time_the_server_does_not_read_is_not_counted_against_the_body(
    reading: Reading,
) -> None:
    """uvicorn stops reading a body the app has yet to take past 64 KiB: the client waits on
    the server then, and its body's clock starts again rather than answer 408."""
    body = b"x" * 2**20
    head = b"POST /held HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    with exchange(reading.served) as (conn, answers):
        sender = threading.Thread(target=conn.sendall, args=(head + body,))
        sender.start()  # blocks while the server does not read
        try:
            # Three body timeouts while /held does not read.
            assert not select.select([conn], [], [], 3 * HELD_BODY_TIMEOUT)[0], "answered"
        finally:
            reading.release.set()
            sender.join(SLACK)
        answer = read_answer(answers)
    assert answer.status == 200, answer
    assert json.loads(answer.body) == {"bytes": len(body)}


def test_a_late_body_behind_a_running_request_ends_the_connection_unanswered(
    reading: Reading,
) -> None:
    """A 408 now would come before the answer of the request still running ahead of it."""
    running_one = b"POST /read-then-hold HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi"
    late_one = b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
    with exchange(reading.served) as (conn, _):
        try:
            conn.sendall(running_one + late_one)  # pipelined, the second body unfinished
            assert select.select([conn], [], [], SLACK)[0], "the connection was held"
            assert_ended(conn)
        finally:
            reading.release.set()
