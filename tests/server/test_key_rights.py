"""Every key stays inside its rights (issue 16): an authorization matrix generated from the
route table, and the rules for minting and revoking keys.

The matrix walks every HTTP route and the WebSocket of the real app (in process, on a real
SQLite store) with every kind of key (read, write, admin; for every service, limited to
`scraper`, limited to `mailer`; revoked; none) sent as a bearer token or as a dashboard
session cookie with, without, or with a wrong CSRF token. Each cell's answer is derived from
the route's declared scope and service rule (`require(scope, services=...)`), never written
per route: the sample requests below only fill in valid values (they always act for the
`scraper` service), so that an allowed cell is not a 404 or 422 by accident.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute
from starlette.websockets import WebSocketDisconnect

from spendgate import Gate
from spendgate.config import parse
from spendgate.keys import allows
from spendgate.server import ServerSettings, create_app
from spendgate.server.auth import (
    PUBLIC_PATHS,
    SAFE_METHODS,
    SERVICE_RULES,
    api_routes,
    check_routes,
    declare,
    require,
    route_rule,
    route_scope,
    websocket_routes,
)
from spendgate.server.context import Context
from spendgate.server.sessions import CSRF_HEADER, SESSION_COOKIE
from spendgate.store.base import KEY_SCOPES, Alert, KeyScope
from spendgate.testing import FrozenClock
from tests.serving import bearer, running

ALERT_ID = "test:scraper"


def config() -> Any:
    """Two sources; a budget for everything and one for each of two services."""
    return parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}, "free_api": {"price": "free"}},
            "budgets": [
                {"name": "daily", "limit": "1000"},
                {"name": "scraper-daily", "limit": "100", "scope": "service:scraper"},
                {"name": "mailer-daily", "limit": "100", "scope": "service:mailer"},
            ],
        }
    )


@pytest.fixture
def gate(tmp_path: Path, clock: FrozenClock) -> Iterator[Gate]:
    g = Gate.open(f"sqlite:///{tmp_path / 'rights.db'}", config=config(), clock=clock)
    yield g
    g.close()


@pytest.fixture
def app(gate: Gate) -> FastAPI:
    return create_app(gate)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def ctx_of(app: FastAPI) -> Context:
    ctx: Context = app.state.context
    return ctx


# -- key kinds and how they are sent -----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of caller: a key's scope and services (`scope` None: no key at all)."""

    label: str
    scope: KeyScope | None
    services: tuple[str, ...] | None = None
    revoked: bool = False


LIMITS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("all", None),
    ("scraper", ("scraper",)),
    ("mailer", ("mailer",)),
)
KINDS = (
    *(Kind(f"{s}/{n}", s, v) for s in KEY_SCOPES for n, v in LIMITS),
    *(Kind(f"{s}/{n}/revoked", s, v, True) for s in KEY_SCOPES for n, v in LIMITS[:2]),
)
NOBODY = Kind("nobody", None)
KEYED_MODES = ("bearer", "cookie", "cookie-without-csrf", "cookie-wrong-csrf")
NOBODY_MODES = ("nothing", "unknown-cookie", "malformed-bearer", "unknown-bearer")
WS_MODES = ("bearer", "query-token", "cookie", "cookie-cross-site")


@dataclass
class Credentials:
    """A token and a dashboard session (cookie, CSRF token) for one kind of key."""

    token: str
    session: str
    csrf: str


def credentials(app: FastAPI, kind: Kind) -> Credentials:
    ctx = ctx_of(app)
    token, key = ctx.keys.create(
        kind.label.replace("/", "-"), kind.scope or "read", services=kind.services,
        actor="test", now=ctx.now_us(),
    )  # fmt: skip
    session, state = app.state.sessions.start(key.key_id)  # as /signin would
    if kind.revoked:
        ctx.keys.revoke(key.key_id, actor="test", now=ctx.now_us())
    return Credentials(token, session, state.csrf)


def headers_for(kind: Kind, mode: str, found: Credentials | None) -> dict[str, str]:
    if found is None:
        return {
            "nothing": {},
            "unknown-cookie": {"Cookie": f"{SESSION_COOKIE}=not-a-session"},
            "malformed-bearer": {"Authorization": "Bearer not a key"},
            "unknown-bearer": bearer("sg_000000000000_" + "A" * 43),
        }[mode]
    cookie = {"Cookie": f"{SESSION_COOKIE}={found.session}"}
    return {
        "bearer": bearer(found.token),
        "cookie": {**cookie, CSRF_HEADER: found.csrf},
        "cookie-without-csrf": cookie,
        "cookie-wrong-csrf": {**cookie, CSRF_HEADER: found.csrf[::-1] + "x"},
        "query-token": {},
        "cookie-cross-site": {**cookie, "Origin": "http://evil.example"},
    }[mode]


# -- what each cell must answer ------------------------------------------------------------------


def expected(scope: KeyScope, rule: str, method: str, kind: Kind, mode: str) -> int | None:
    """The refusal (401 or 403) a cell must get, or None where the call is allowed: from the
    route's declared scope and service rule, and the conventions of the sample requests
    (each acts for the `scraper` service)."""
    assert rule in SERVICE_RULES, f"undeclared service rule {rule!r}"
    if mode == "cookie-cross-site":  # a WebSocket opened by another site's page
        return 403
    if kind.scope is None or kind.revoked:
        return 401
    if mode in ("cookie-without-csrf", "cookie-wrong-csrf") and method not in SAFE_METHODS:
        return 403
    if not allows(kind.scope, scope):
        return 403
    if kind.services is None or rule in ("filtered", "any"):
        return None
    if rule == "all":
        return 403
    return None if "scraper" in kind.services else 403  # "own": the request is scraper's


# -- sample requests: valid values only, fresh state where a call consumes it --------------------


@dataclass
class Sample:
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class World:
    app: FastAPI
    names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def ctx(self) -> Context:
        return ctx_of(self.app)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.names)}"

    def budget(self) -> str:
        name = self.fresh("b")
        spec = {"limit": "5", "scope": "service:scraper"}
        self.ctx.control.create("budget", name, spec, actor="test")
        return name

    def price(self) -> str:
        name = self.fresh("p")
        self.ctx.control.create("source", name, {"price": "0.01/request"}, actor="test")
        return name

    def hold(self) -> str:
        decision = self.ctx.gate.reserve("scraper", "paid_api", "0.01", ttl=600)
        assert decision.reservation_id is not None
        return decision.reservation_id

    def victim(self) -> str:
        """A key any admin for `scraper` may revoke."""
        _, key = self.ctx.keys.create(
            self.fresh("victim"), "read", services=["scraper"], actor="test", now=0
        )
        return key.key_id


EVENT = {"service": "scraper", "source": "free_api"}
CALL = {"service": "scraper", "source": "paid_api"}
SAMPLES: dict[tuple[str, str], Callable[[World], Sample]] = {
    ("POST", "/api/events"): lambda w: Sample("/api/events", body=EVENT),
    ("POST", "/api/events/batch"): lambda w: Sample("/api/events/batch", body={"events": [EVENT]}),
    ("POST", "/api/authorize"): lambda w: Sample("/api/authorize", body=CALL),
    ("POST", "/api/reservations"): lambda w: Sample(
        "/api/reservations", body={**CALL, "ttl_seconds": 600}
    ),
    ("GET", "/api/reservations/{reservation_id}"): lambda w: Sample(
        f"/api/reservations/{w.hold()}"
    ),
    ("POST", "/api/reservations/{reservation_id}/commit"): lambda w: Sample(
        f"/api/reservations/{w.hold()}/commit", body={}
    ),
    ("POST", "/api/reservations/{reservation_id}/release"): lambda w: Sample(
        f"/api/reservations/{w.hold()}/release"
    ),
    ("GET", "/api/streams/usage"): lambda w: Sample(
        "/api/streams/usage", {"source": "free_api", "service": "scraper"}
    ),
    ("GET", "/cost/services/{service_name}/metrics"): lambda w: Sample(
        "/cost/services/scraper/metrics"
    ),
    ("GET", "/api/cost/service/{service_name}/performance"): lambda w: Sample(
        "/api/cost/service/scraper/performance"
    ),
    ("GET", "/api/cost/daily/{date}"): lambda w: Sample(
        f"/api/cost/daily/{w.ctx.now().date().isoformat()}"
    ),
    ("GET", "/api/dashboard/charts"): lambda w: Sample(
        "/api/dashboard/charts", {"service": "scraper"}
    ),
    ("GET", "/api/reports/monthly/{month}"): lambda w: Sample(
        f"/api/reports/monthly/{w.ctx.now():%Y-%m}", {"format": "json"}
    ),
    ("GET", "/api/reports/weekly"): lambda w: Sample("/api/reports/weekly", {"format": "json"}),
    ("POST", "/api/budgets"): lambda w: Sample(
        "/api/budgets", body={"name": w.fresh("new"), "limit": "5", "scope": "service:scraper"}
    ),
    ("GET", "/api/budgets/{name}"): lambda w: Sample("/api/budgets/scraper-daily"),
    ("PUT", "/api/budgets/{name}"): lambda w: Sample(
        f"/api/budgets/{w.budget()}", body={"limit": "6", "scope": "service:scraper"}
    ),
    ("PATCH", "/api/budgets/{name}"): lambda w: Sample(
        f"/api/budgets/{w.budget()}", body={"limit": "7"}
    ),
    ("DELETE", "/api/budgets/{name}"): lambda w: Sample(f"/api/budgets/{w.budget()}"),
    ("POST", "/api/prices"): lambda w: Sample(
        "/api/prices", body={"name": w.fresh("new"), "price": "0.01/request"}
    ),
    ("GET", "/api/prices/{name}"): lambda w: Sample("/api/prices/paid_api"),
    ("PUT", "/api/prices/{name}"): lambda w: Sample(
        f"/api/prices/{w.price()}", body={"price": "0.02/request"}
    ),
    ("PATCH", "/api/prices/{name}"): lambda w: Sample(
        f"/api/prices/{w.price()}", body={"price": "0.03/request"}
    ),
    ("DELETE", "/api/prices/{name}"): lambda w: Sample(f"/api/prices/{w.price()}"),
    ("POST", "/api/keys"): lambda w: Sample(
        "/api/keys", body={"name": w.fresh("minted"), "scope": "read", "services": ["scraper"]}
    ),
    ("DELETE", "/api/keys/{key_id}"): lambda w: Sample(f"/api/keys/{w.victim()}"),
    ("GET", "/api/alerts/{alert_id}"): lambda w: Sample(f"/api/alerts/{ALERT_ID}"),
    ("GET", "/api/alerts/{alert_id}/notifications"): lambda w: Sample(
        f"/api/alerts/{ALERT_ID}/notifications"
    ),
    ("POST", "/api/alerts/{alert_id}/acknowledge"): lambda w: Sample(
        f"/api/alerts/{ALERT_ID}/acknowledge"
    ),
    ("POST", "/api/alerts/{alert_id}/silence"): lambda w: Sample(
        f"/api/alerts/{ALERT_ID}/silence", body={"seconds": 60}
    ),
    ("POST", "/api/heartbeats"): lambda w: Sample("/api/heartbeats", body={"service": "scraper"}),
    ("POST", "/api/alerts/test"): lambda w: Sample("/api/alerts/test", body={"channel": "log"}),
    ("POST", "/api/cost/alerts/configure"): lambda w: Sample("/api/cost/alerts/configure", body={}),
}


def sample(world: World, method: str, path: str) -> Sample:
    """The request for a route: its sample, else the path with `scraper` in every parameter."""
    make = SAMPLES.get((method, path))
    if make is not None:
        return make(world)
    return Sample(re.sub(r"\{[^}]+\}", "scraper", path), body={} if method != "GET" else None)


def http_table(app: FastAPI) -> list[tuple[str, str, KeyScope | None, str | None]]:
    """(method, path, scope, rule) of every HTTP route, as the app declares them."""
    return [
        (method, route.path_format, route_scope(route), route_rule(route))
        for route in api_routes(app.routes)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def seed(client: TestClient, app: FastAPI) -> None:
    """Events for both services (so `scraper` is a known service) and one alert."""
    ctx = ctx_of(app)
    token, _ = ctx.keys.create("seeder", "write", actor="test", now=0)
    for service in ("scraper", "mailer"):
        r = client.post("/api/events", json={**CALL, "service": service}, headers=bearer(token))
        assert r.status_code == 201, r.text
    alert = Alert(ALERT_ID, "test", "service:scraper", "warning", "firing", ctx.now_us())
    assert ctx.gate.store.fire(alert)


def refused(response: httpx.Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.json().get("status") == status
    )


# -- the matrix ---------------------------------------------------------------------------------


@pytest.mark.timeout(900)  # every route for every key kind: 34 s alone, past 180 s under load
def test_every_route_and_key_kind_answers_as_its_declared_rule_says(
    client: TestClient, app: FastAPI
) -> None:
    seed(client, app)
    world = World(app)
    found = {kind: credentials(app, kind) for kind in KINDS}
    table = http_table(app)
    assert len(table) >= 40  # the whole API, not an empty table
    wrong: list[str] = []
    cells = allowed_2xx = 0
    ok_routes: set[tuple[str, str]] = set()
    for method, path, scope, rule in table:
        if path in PUBLIC_PATHS:
            assert (scope, rule) == (None, None), f"{method} {path}: public with a rule"
            continue
        assert scope is not None, f"{method} {path}: no scope"
        assert rule in SERVICE_RULES, f"{method} {path}: no service rule"
        callers = [(k, m, found[k]) for k in KINDS for m in KEYED_MODES]
        callers += [(NOBODY, m, None) for m in NOBODY_MODES]
        for kind, mode, creds in callers:
            want = expected(scope, rule, method, kind, mode)
            request = sample(world, method, path)
            r = client.request(
                method, request.path, params=request.params, json=request.body,
                headers=headers_for(kind, mode, creds),
            )  # fmt: skip
            cells += 1
            cell = f"{method} {path} [{scope}, {rule}] {kind.label} {mode}: {r.status_code}"
            if want is None:
                if r.status_code in (401, 403):
                    wrong.append(f"{cell} (want allowed) {r.text[:200]}")
                elif r.is_success:
                    allowed_2xx += 1
                    ok_routes.add((method, path))
            elif not refused(r, want):
                wrong.append(f"{cell} (want {want} problem) {r.text[:200]}")
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong[:60])
    # The samples are good enough that every protected route succeeded somewhere (an allowed
    # cell is a real answer, not a 404 or 422 that happens not to be 401/403).
    protected = {(m, p) for m, p, s, _ in table if s is not None}
    assert protected - ok_routes == set(), "routes that never succeeded"
    assert allowed_2xx > len(protected)


def test_the_websocket_answers_as_its_declared_rule_says(client: TestClient, app: FastAPI) -> None:
    routes = list(websocket_routes(app.routes))
    assert [r.path for r in routes] == ["/ws/cost-monitoring"]
    scope, rule = route_scope(routes[0]), route_rule(routes[0])
    assert scope is not None
    assert rule in SERVICE_RULES
    found = {kind: credentials(app, kind) for kind in KINDS}
    callers = [(k, m, found[k]) for k in KINDS for m in WS_MODES]
    callers += [(NOBODY, m, None) for m in NOBODY_MODES]
    wrong = []
    for kind, mode, creds in callers:
        want = expected(scope, rule, "GET", kind, mode)
        headers = headers_for(kind, mode, creds)
        if mode != "cookie-cross-site" and "Cookie" in headers:
            headers["Origin"] = "http://testserver"  # a page of this very server
        url = routes[0].path
        if mode == "query-token" and creds is not None:
            url += f"?token={creds.token}"
        try:
            with client.websocket_connect(url, headers=headers) as ws:
                first = ws.receive_json()
            got = "allowed" if first["type"] == "cost_state" else repr(first)
        except WebSocketDisconnect as closed:
            got = f"closed {closed.code}"
        # A refusal is a close before the handshake completes: HTTP 403 to a real client.
        if got != ("allowed" if want is None else "closed 1008"):
            wrong.append(f"{kind.label} {mode}: {got}, want {want or 'allowed'}")
    assert not wrong, "\n".join(wrong)


# -- a browser's origin -------------------------------------------------------------------------


ORIGINS = [
    # (the server as reached, its public URL, the page's Origin, the same origin?)
    ("http://testserver", None, "http://testserver", True),
    ("http://testserver", None, "http://testserver:80", True),  # the default port, written
    ("http://testserver", None, "HTTP://TestServer", True),
    ("http://testserver", None, "https://testserver", False),  # another scheme
    ("http://testserver", None, "https://testserver:80", False),
    ("http://testserver", None, "http://testserver:8080", False),  # another port
    ("http://testserver", None, "http://evil.example", False),
    ("http://testserver", None, "null", False),  # a sandboxed page or a file
    ("http://testserver", None, "http://testserver:99999", False),  # not a port
    ("http://testserver:8765", None, "http://testserver:8765", True),
    ("http://testserver:8765", None, "http://testserver", False),  # port 80, implied
    ("https://testserver", None, "https://testserver:443", True),
    ("https://testserver", None, "https://testserver", True),
    ("https://testserver", None, "http://testserver", False),
    # Behind a proxy that terminates TLS and passes neither the scheme nor the host on:
    # the public URL is this server's origin too.
    ("http://127.0.0.1:8765", "https://spend.example", "https://spend.example", True),
    ("http://127.0.0.1:8765", "https://spend.example", "http://spend.example", False),
    ("http://127.0.0.1:8765", "https://spend.example", "https://evil.example", False),
]


@pytest.mark.parametrize(("server", "public", "origin", "same"), ORIGINS)
def test_a_browser_origin_must_match_scheme_host_and_port(
    gate: Gate, server: str, public: str | None, origin: str, same: bool
) -> None:
    """One check serves the dashboard's sign-in form and the live feed's session cookie."""
    app = create_app(gate, ServerSettings(public_url=public))
    found = credentials(app, Kind("read/all", "read"))
    feed = server.replace("http", "ws", 1) + "/ws/cost-monitoring"
    with TestClient(app, base_url=server) as client:
        signed_in = client.post(
            "/signin", data={"key": found.token}, headers={"Origin": origin},
            follow_redirects=False,
        )  # fmt: skip
        assert signed_in.status_code == (303 if same else 403), signed_in.text
        cookie = {"Cookie": f"{SESSION_COOKIE}={found.session}", "Origin": origin}
        try:
            with client.websocket_connect(feed, headers=cookie) as ws:
                got = ws.receive_json()["type"]
        except WebSocketDisconnect as closed:
            got = f"closed {closed.code}"
    assert got == ("cost_state" if same else "closed 1008")


def test_a_trusted_proxy_tells_the_scheme(gate: Gate) -> None:
    """Behind a proxy on loopback (uvicorn trusts it), `X-Forwarded-Proto: https` makes an
    http connection's request https, so an https page of the same host and port is this
    server's own; an http page then is not."""
    app = create_app(gate)
    found = credentials(app, Kind("read/all", "read"))
    with running(app) as url:
        host = url.removeprefix("http://")
        for forwarded, origin, status in [
            ("https", f"https://{host}", 303),
            ("https", f"http://{host}", 403),
            (None, f"https://{host}", 403),
            (None, f"http://{host}", 303),
        ]:
            headers = {"Origin": origin}
            if forwarded is not None:
                headers["X-Forwarded-Proto"] = forwarded
            signed_in = httpx.post(
                f"{url}/signin", data={"key": found.token}, headers=headers, timeout=30
            )
            assert signed_in.status_code == status, (forwarded, origin, signed_in.text)


# -- a route without a declared rule ------------------------------------------------------------


async def scope_only() -> None:
    """A dependency with a scope but no service rule (as `require` was before the rules)."""


scope_only.scope = "read"  # type: ignore[attr-defined]
ScopeOnly = Annotated[None, Depends(scope_only)]


def test_a_route_without_a_service_rule_stops_the_app(gate: Gate) -> None:
    check_routes(create_app(gate))  # as created: every route declares its scope and rule

    no_scope = create_app(gate)

    @no_scope.get("/api/new")
    def new() -> None: ...

    with pytest.raises(RuntimeError, match=r"/api/new declares no API key scope"):
        check_routes(no_scope)

    half = create_app(gate)

    @half.get("/api/half")
    def halfway(who: ScopeOnly) -> None: ...

    with pytest.raises(RuntimeError, match=r"/api/half declares no service rule"):
        check_routes(half)

    socket = create_app(gate)

    @socket.websocket("/ws/undeclared")
    async def undeclared(websocket: WebSocket) -> None: ...

    with pytest.raises(RuntimeError, match=r"/ws/undeclared declares no API key scope"):
        check_routes(socket)

    with pytest.raises(ValueError, match="services must be one of"):
        require("read", services="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="services must be one of"):
        declare("read", services="")  # type: ignore[arg-type]
    # And the matrix's own check: an undeclared rule cannot be given an expected answer.
    with pytest.raises(AssertionError, match="undeclared service rule"):
        expected("read", "", "GET", KINDS[0], "bearer")


def test_route_rules_are_declared_as_documented(app: FastAPI) -> None:
    """The rules a reviewer reads in docs/server.md are the ones the routes declare."""
    rules: dict[str, set[str]] = {}
    routes: list[BaseRoute] = [*api_routes(app.routes), *websocket_routes(app.routes)]
    for route in routes:
        path = getattr(route, "path_format", "")
        for method in sorted(getattr(route, "methods", None) or {"WS"}):
            rules.setdefault(str(route_rule(route)), set()).add(f"{method} {path}")
    assert rules["filtered"] == {"GET /metrics", "GET /api/budgets/status", "GET /api/keys"}
    assert rules["any"] == {"GET /openapi.json"}
    assert "WS /ws/cost-monitoring" in rules["all"]
    assert {"POST /api/keys", "DELETE /api/keys/{key_id}", "POST /api/events"} <= rules["own"]
    assert {f"{m} /api/budgets/{{name}}" for m in ("PUT", "PATCH", "DELETE")} <= rules["all"]


# -- minting and revoking keys ------------------------------------------------------------------


def mint(client: TestClient, token: str, scope: str, services: list[str] | None) -> httpx.Response:
    body = {"name": "minted", "scope": scope, "services": services}
    return client.post("/api/keys", json=body, headers=bearer(token))


def test_a_limited_admin_stays_inside_its_rights_and_an_unlimited_one_may_do_anything(
    client: TestClient, app: FastAPI
) -> None:
    ctx = ctx_of(app)

    def key(scope: KeyScope, services: list[str] | None) -> tuple[str, str]:
        token, made = ctx.keys.create("k", scope, services=services, actor="test", now=0)
        return token, made.key_id

    root, _ = key("admin", None)
    limited, limited_id = key("admin", ["scraper"])
    for scope, services in (
        ("admin", None),  # the hole of issue 16: `{"services": null}` gave 201
        ("read", None),
        ("admin", ["scraper", "mailer"]),  # wider than its own
        ("write", ["mailer"]),  # another service
    ):
        r = mint(client, limited, scope, services)
        assert refused(r, 403), (scope, services, r.text)
        assert "may not create a key with more rights" in r.json()["detail"]
    # Within its rights it may mint, and what it mints is limited as asked.
    for scope in KEY_SCOPES:
        r = mint(client, limited, scope, ["scraper"])
        assert r.status_code == 201, r.text
        assert r.json()["key"]["services"] == ["scraper"]
    child = mint(client, limited, "write", ["scraper"]).json()["token"]
    assert refused(client.get("/api/cost/current", headers=bearer(child)), 403)
    event = {"service": "mailer", "source": "free_api"}
    assert refused(client.post("/api/events", json=event, headers=bearer(child)), 403)
    event["service"] = "scraper"
    assert client.post("/api/events", json=event, headers=bearer(child)).status_code == 201

    # Revoking: never a key with more rights; one within them, yes.
    _, wide_id = key("read", None)
    _, other_id = key("read", ["mailer"])
    _, both_id = key("read", ["scraper", "mailer"])
    _, peer_id = key("admin", ["scraper"])
    for victim in (wide_id, other_id, both_id):
        r = client.delete(f"/api/keys/{victim}", headers=bearer(limited))
        assert refused(r, 403), r.text
        assert "may not revoke a key with more rights" in r.json()["detail"]
    assert all(k.revoked_at is None for k in ctx.keys.keys() if k.key_id != limited_id)  # noqa: SIM118
    assert client.delete(f"/api/keys/{peer_id}", headers=bearer(limited)).status_code == 200
    assert refused(client.delete("/api/keys/000000000000", headers=bearer(limited)), 404)
    # It lists only the keys within its rights.
    listed = client.get("/api/keys", headers=bearer(limited)).json()
    assert listed
    assert all(k["services"] == ["scraper"] for k in listed)
    assert {wide_id, other_id, both_id}.isdisjoint(k["key_id"] for k in listed)

    # An unlimited admin may mint anything and revoke anything (the limited admin too).
    for scope, services in (("admin", None), ("read", ["scraper", "mailer"])):
        assert mint(client, root, scope, services).status_code == 201
    for victim in (wide_id, other_id, both_id, limited_id):
        r = client.delete(f"/api/keys/{victim}", headers=bearer(root))
        assert r.status_code == 200, r.text
        assert r.json()["revoked_at"] is not None
    assert refused(mint(client, limited, "read", ["scraper"]), 401)  # revoked: it is over


def test_a_limited_admin_cannot_change_shared_settings(client: TestClient, app: FastAPI) -> None:
    """The other holes of issue 16: budgets, prices, alert channels and the audit log."""
    token, _ = ctx_of(app).keys.create("k", "admin", services=["scraper"], actor="t", now=0)
    calls = [
        ("PATCH", "/api/budgets/daily", {"limit": "1"}),
        ("PATCH", "/api/budgets/scraper-daily", {"limit": "1"}),
        ("PUT", "/api/prices/paid_api", {"price": "0.00/request"}),
        ("POST", "/api/cost/alerts/configure", {"notification_channels": {"log": False}}),
        ("GET", "/api/audit", None),
    ]
    for method, path, body in calls:
        r = client.request(method, path, json=body, headers=bearer(token))
        assert refused(r, 403), (method, path, r.text)
        assert "limited to some services" in r.json()["detail"]


# -- limited keys see only their services' figures ---------------------------------------------


def test_limited_keys_see_only_their_services_figures(client: TestClient, app: FastAPI) -> None:
    seed(client, app)
    ctx = ctx_of(app)
    for service in ("scraper", "mailer"):  # a decision each: counted by service
        assert ctx.gate.authorize(service, "paid_api").approved
    everyone, _ = ctx.keys.create("all", "read", actor="t", now=0)
    scraper, _ = ctx.keys.create("s", "read", services=["scraper"], actor="t", now=0)

    def series(token: str) -> set[str]:
        r = client.get("/metrics", headers=bearer(token))
        assert r.status_code == 200, r.text
        return {line for line in r.text.splitlines() if line and not line.startswith("#")}

    full, mine = series(everyone), series(scraper)
    assert any('service="mailer"' in s for s in full)
    assert any('budget="daily"' in s for s in full)
    assert any(s.startswith("spendgate_free_source_success_ratio") for s in full)
    assert mine
    assert mine < full
    assert not any('service="mailer"' in s or "mailer-daily" in s for s in mine)
    budgets = {m.group(1) for s in mine if (m := re.search(r'budget="([^"]+)"', s))}
    assert budgets == {"scraper-daily"}
    assert not any(s.startswith("spendgate_free_source") for s in mine)
    decided = 'spendgate_reservation_decisions_total{decision="approved",service="%s"} 1.0'
    assert {decided % "scraper", decided % "mailer"} <= full
    assert decided % "scraper" in mine
    assert any(s.startswith("spendgate_spend") and 'service="scraper"' in s for s in mine)

    def status(token: str) -> list[str]:
        r = client.get("/api/budgets/status", headers=bearer(token))
        assert r.status_code == 200, r.text
        return sorted(b["name"] for b in r.json())

    assert status(everyone) == ["daily", "mailer-daily", "scraper-daily"]
    assert status(scraper) == ["scraper-daily"]
