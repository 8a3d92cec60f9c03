"""API keys on every route: `Authorization: Bearer sg_…` with a scope (read, write, admin),
optionally limited to services. A browser signed in to the dashboard sends its session cookie
instead (see `sessions`); it acts as the key the session is bound to, and its state-changing
requests must carry the session's CSRF token.

Each protected route declares the scope it needs with `Depends(require("write"))`; the route
table is checked at start-up so that a new route cannot forget to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from spendgate.keys import KeyRing, allows
from spendgate.server.sessions import CSRF_HEADER, SESSION_COOKIE, Session, Sessions
from spendgate.store.base import ApiKey, KeyScope

PUBLIC_PATHS = frozenset({"/healthz"})
"""Routes anyone may call (static files are public too, and so are the dashboard's pages:
plain routes outside the API that, without a session, show only the sign-in form; every
figure they show comes from the protected routes)."""
TOKEN_QUERY = "token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key: sg_<id>_<secret>",
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, as verified."""

    key: ApiKey

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.key.key_id} ({self.key.name})"

    def may_use(self, service: str) -> bool:
        """Whether the key may act for `service`."""
        return self.key.services is None or service in self.key.services

    def check_services(self, services: Iterable[str]) -> None:
        """Refuse (403) a call for a service outside the key's list."""
        for service in services:
            if not self.may_use(service):
                raise HTTPException(
                    403,
                    f"this key is limited to services {', '.join(self.key.services or ())}"
                    f"; it may not act for {service!r}",
                )

    def check_unlimited(self) -> None:
        """Refuse (403) a key limited to services on a route that spans every service."""
        if self.key.services is not None:
            raise HTTPException(
                403, "this key is limited to some services; this route needs a key for all"
            )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def require(scope: KeyScope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys of at least `scope` and returns the caller."""

    async def principal(request: Request) -> Principal:
        # The header is read directly (not through a security sub-dependency, which costs
        # every request a second dependency); app.py declares the scheme in the document.
        header = request.headers.get("authorization")
        if header is None:
            key = session_key(request)
            if key is None:
                raise _unauthorized("an API key is required: Authorization: Bearer sg_…")
            check_csrf(request)
        else:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("send the API key as Authorization: Bearer sg_…")
            ring: KeyRing = request.app.state.keys
            key = ring.verify(token.strip())
        if key is None:
            raise _unauthorized("the API key is unknown, malformed or revoked")
        if not allows(key.scope, scope):
            raise HTTPException(403, f"this route needs a key with scope {scope!r}")
        return Principal(key)

    principal.scope = scope  # type: ignore[attr-defined]  # read by check_routes()
    return principal


def session_of(connection: HTTPConnection) -> tuple[Session, ApiKey] | None:
    """The dashboard session a request's cookie names and the live key it is bound to, or
    `None` (no cookie, unknown or expired session, key revoked or gone)."""
    sessions: Sessions | None = getattr(connection.app.state, "sessions", None)
    session = sessions.get(connection.cookies.get(SESSION_COOKIE)) if sessions else None
    if session is None:
        return None
    ring: KeyRing = connection.app.state.keys
    for key in ring.keys():  # noqa: SIM118 - a method
        if key.key_id == session.key_id:
            return (session, key) if key.revoked_at is None else None
    return None


def session_key(connection: HTTPConnection) -> ApiKey | None:
    """The live key a request's session cookie stands for, or `None`."""
    found = session_of(connection)
    return None if found is None else found[1]


def check_csrf(request: Request) -> None:
    """Refuse (403) a cookie-authenticated state-changing request without the session's CSRF
    token in `X-Spendgate-CSRF` (another site cannot read the token, so cannot send it)."""
    if request.method in SAFE_METHODS:
        return
    found = session_of(request)
    if found is None or not found[0].csrf_matches(request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"a signed-in browser must send its {CSRF_HEADER} header")


def same_origin(connection: HTTPConnection) -> bool:
    """Whether a browser's `Origin` (when it sent one) is this server's own."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    host = connection.headers.get("host", "")
    return origin.partition("://")[2] == host


def websocket_key(websocket: WebSocket, ring: KeyRing) -> ApiKey | None:
    """The key a WebSocket authenticates with: its token (header or query) as before, else a
    session cookie from a page of this very server (a cross-site page is refused)."""
    token = websocket_token(websocket)
    if token:
        return ring.verify(token)
    return session_key(websocket) if same_origin(websocket) else None


def websocket_token(websocket: WebSocket) -> str | None:
    """A WebSocket's token: the Authorization header, else the `token` query parameter
    (browsers cannot set headers on a WebSocket)."""
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return websocket.query_params.get(TOKEN_QUERY)


def route_scope(route: APIRoute) -> KeyScope | None:
    """The scope a route requires, or `None` for a public one."""
    for dependency in route.dependant.dependencies:
        scope = getattr(dependency.call, "scope", None)
        if scope is not None:
            return scope  # type: ignore[no-any-return]
    return None


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every HTTP route, those of included routers too (which FastAPI may hold by reference)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def check_routes(app: FastAPI) -> None:
    """Refuse to start if any route but the public ones lacks a scope."""
    for route in api_routes(app.routes):
        if route.path not in PUBLIC_PATHS and route_scope(route) is None:
            raise RuntimeError(f"route {route.path} declares no API key scope")
