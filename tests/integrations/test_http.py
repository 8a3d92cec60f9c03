"""Metered HTTP clients against a real local server that counts what it receives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from spendgate import BudgetExceededError, Gate, UnknownSourceError, ValidationError, to_nanos
from spendgate.config import parse
from spendgate.http import AsyncMeteredTransport, MeteredTransport, metered_session, route_table
from spendgate.testing import FrozenClock
from tests.integrations.conftest import paid_gate


class Upstream(ThreadingHTTPServer):
    """A paid API stand-in: /geocode answers 200 with a body, /broken 503, counting requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[str] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Upstream

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.received.append(self.path)
        size = int(self.path.rpartition("=")[2]) if "size=" in self.path else 100
        status = 503 if self.path.startswith("/broken") else 200
        body = b"x" * size
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gate(store_url: str, clock: FrozenClock) -> Iterator[Gate]:
    cfg = parse(
        {
            "sources": {
                "geocoder": {"price": "0.01/request"},
                "tiles": {"price": {"MB": "0.01"}},
            },
            "budgets": [{"name": "daily", "limit": "0.03"}],
        }
    )
    g = Gate.open(store_url, config=cfg, clock=clock)
    yield g
    g.close()


ROUTES = {"127.0.0.1/geocode": "geocoder", "127.0.0.1/broken": "geocoder"}
TILES = {"127.0.0.1/tiles": "tiles"}


def test_a_refused_request_never_reaches_the_server(gate: Gate, upstream: Upstream) -> None:
    with httpx.Client(transport=MeteredTransport(gate, "enrichment", ROUTES)) as client:
        for _ in range(3):
            assert client.get(f"{upstream.base}/geocode?q=1").status_code == 200
        with pytest.raises(BudgetExceededError):
            client.get(f"{upstream.base}/geocode?q=4")
        assert client.get(f"{upstream.base}/free/status").status_code == 200  # not metered
    assert upstream.received.count("/geocode?q=1") == 3
    assert "/geocode?q=4" not in upstream.received
    (status,) = gate.status()
    assert (status.spent_nanos, status.reserved_nanos) == (to_nanos("0.03"), 0)
    assert [e.source for e in gate.events()] == ["geocoder"] * 3


def test_a_per_mb_source_is_charged_for_the_body(gate: Gate, upstream: Upstream) -> None:
    with pytest.raises(ValidationError, match="priced by volume"):
        MeteredTransport(gate, "images", TILES)
    transport = MeteredTransport(gate, "images", TILES, estimate="0.02")
    with httpx.Client(transport=transport) as client:
        client.get(f"{upstream.base}/tiles?size={2**20}")
    (event,) = gate.events()
    assert event.cost == to_nanos("0.01")
    assert event.units["bytes"] == 2**20


def test_an_error_response_is_booked_as_a_failure(gate: Gate, upstream: Upstream) -> None:
    with httpx.Client(transport=MeteredTransport(gate, "enrichment", ROUTES)) as client:
        assert client.get(f"{upstream.base}/broken").status_code == 503
    (event,) = gate.events()
    assert (event.success, event.failure_reason) == (False, "HTTP 503")


def test_no_response_releases_the_hold(gate: Gate) -> None:
    transport = MeteredTransport(gate, "enrichment", {"127.0.0.1": "geocoder"})
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get("http://127.0.0.1:9/geocode")  # nothing listens on the discard port
    assert gate.status()[0].balance.used == 0
    assert gate.events() == []


def test_async_transport(gate: Gate, upstream: Upstream) -> None:
    async def main() -> None:
        transport = AsyncMeteredTransport(gate, "enrichment", ROUTES)
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                await client.get(f"{upstream.base}/geocode?q=1")
            with pytest.raises(BudgetExceededError):
                await client.get(f"{upstream.base}/geocode?q=4")

    asyncio.run(main())
    assert upstream.received.count("/geocode?q=1") == 3
    assert gate.status()[0].spent_nanos == to_nanos("0.03")


def test_requests_session(gate: Gate, upstream: Upstream) -> None:
    session = metered_session(gate, "enrichment", ROUTES)
    for _ in range(3):
        assert session.get(f"{upstream.base}/geocode?q=1").status_code == 200
    with pytest.raises(BudgetExceededError):
        session.get(f"{upstream.base}/geocode?q=4")
    assert upstream.received.count("/geocode?q=1") == 3
    assert "/geocode?q=4" not in upstream.received


def test_bad_routes_are_refused(gate: Gate) -> None:
    with pytest.raises(ValidationError, match="routes"):
        MeteredTransport(gate, "svc", {})
    with pytest.raises(UnknownSourceError):
        MeteredTransport(gate, "svc", {"api.example.com": "nowhere"})


def test_http_routes_must_be_bare_hosts_and_settleable(clock: FrozenClock) -> None:
    with paid_gate(clock) as gate:
        for key in ("https://maps.example.com", "maps.example.com:443"):
            with pytest.raises(ValidationError, match="no scheme, no port"):
                MeteredTransport(gate, "svc", {key: "maps"})
        with pytest.raises(ValidationError, match="priced per"):
            MeteredTransport(gate, "svc", {"feed.example.com": "databento_mbo"}, estimate="1")
    source_for = route_table({"api.example.com/v4": "maps"})
    assert source_for("api.example.com", "/v4/tiles") == "maps"
    assert source_for("api.example.com", "/v40/tiles") is None
