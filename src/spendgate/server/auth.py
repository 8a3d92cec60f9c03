"""API keys on every route: `Authorization: Bearer sg_…` with a scope (read, write, admin),
optionally limited to services. A browser signed in to the dashboard sends its session cookie
instead (see `sessions`); it acts as the key the session is bound to, and its state-changing
requests must carry the session's CSRF token.

Each protected route declares, in one place, the scope it needs and its service rule (what
a key limited to some services may do there): `Depends(require("write", services="own"))`.
The route table is checked at start-up so that a new route cannot forget either; the
WebSocket declares both with `declare()`. The rules (see `SERVICE_RULES`):

- `all`: the route spans every service; a limited key is refused (403) before the handler.
- `own`: the route acts for the services its request names; the handler refuses (403) one
  outside the key's list (`Principal.check_services`, `check_grant`, `check_revoke`).
- `filtered`: the route answers with only the key's services' figures (`sees_budget`...).
- `any`: the route shows nothing of any service (the API document): any key of the scope.

Whatever the route, a key never creates or revokes a key with more rights than its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, WebSocketRoute

from spendgate.budgets import Budget
from spendgate.keys import KeyRing, allows
from spendgate.server.sessions import CSRF_HEADER, SESSION_COOKIE, Session, Sessions
from spendgate.store.base import ApiKey, KeyScope

PUBLIC_PATHS = frozenset({"/healthz"})
"""Routes anyone may call (static files are public too, and so are the dashboard's pages:
plain routes outside the API that, without a session, show only the sign-in form; every
figure they show comes from the protected routes)."""
TOKEN_QUERY = "token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ServiceRule = Literal["all", "own", "filtered", "any"]
SERVICE_RULES: tuple[ServiceRule, ...] = get_args(ServiceRule)
"""What a key limited to some services may do on a route (see the module's docstring)."""

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

    @property
    def limited(self) -> bool:
        """Whether the key is limited to some services."""
        return self.key.services is not None

    def sees_budget(self, budget: Budget) -> bool:
        """Whether the key may see `budget`'s figures (see `budget_visible`)."""
        return budget_visible(budget, self.key.services)

    def holds(self, scope: KeyScope, services: Iterable[str] | None) -> bool:
        """Whether a key of `scope` limited to `services` (`None`: all) has no more rights
        than this one: a scope no higher, and services among this key's."""
        if not allows(self.key.scope, scope):
            return False
        if self.key.services is None:
            return True
        return services is not None and set(services) <= set(self.key.services)

    def check_grant(self, scope: KeyScope, services: Iterable[str] | None) -> None:
        """Refuse (403) to create a key with more rights than this one."""
        if not self.holds(scope, services):
            raise HTTPException(
                403,
                f"this key ({self._rights()}) may not create a key with more rights: "
                f"{_rights(scope, services)}",
            )

    def check_revoke(self, other: ApiKey) -> None:
        """Refuse (403) to revoke a key with more rights than this one."""
        if not self.holds(other.scope, other.services):
            raise HTTPException(
                403,
                f"this key ({self._rights()}) may not revoke a key with more rights: "
                f"{_rights(other.scope, other.services)}",
            )

    def _rights(self) -> str:
        return _rights(self.key.scope, self.key.services)

    def check_unlimited(self) -> None:
        """Refuse (403) a key limited to services on a route that spans every service."""
        if self.key.services is not None:
            raise HTTPException(
                403, "this key is limited to some services; this route needs a key for all"
            )


def budget_visible(budget: Budget, services: Iterable[str] | None) -> bool:
    """Whether a key limited to `services` (`None`: all) may see `budget`'s figures: every
    budget for an unlimited key; for a limited one, only a budget scoped to one of its
    services (a budget of scope `all`, a source or a label counts other services' spend)."""
    if services is None:
        return True
    return budget.scope.kind == "service" and budget.scope.value in set(services)


def _rights(scope: KeyScope, services: Iterable[str] | None) -> str:
    where = "every service" if services is None else "services " + ", ".join(services)
    return f"scope {scope}, {where}"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(header: str, ring: KeyRing, scope: KeyScope) -> Principal:
    """The caller an `Authorization` header names, with a key of at least `scope`; 401 or
    403 otherwise. Every route's Bearer key goes through here, the event fast path's too
    (`fastpath.py`), so a rule on keys is written once."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send the API key as Authorization: Bearer sg_…")
    return admit(ring.verify(token.strip()), scope)


def admit(key: ApiKey | None, scope: KeyScope) -> Principal:
    """The caller a verified key (`None`: none) stands for, if it has at least `scope`;
    401 or 403 otherwise (a Bearer key, or the one a dashboard session is bound to)."""
    if key is None:
        raise _unauthorized("the API key is unknown, malformed or revoked")
    if not allows(key.scope, scope):
        raise HTTPException(403, f"this route needs a key with scope {scope!r}")
    return Principal(key)


def require(scope: KeyScope, *, services: ServiceRule) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys of at least `scope` and returns the caller; with
    `services="all"` it also refuses keys limited to services (the other rules are the
    handler's to apply: see the module's docstring)."""
    if services not in SERVICE_RULES:
        raise ValueError(f"services must be one of {', '.join(SERVICE_RULES)}, not {services!r}")

    async def principal(request: Request) -> Principal:
        # The header is read directly (not through a security sub-dependency, which costs
        # every request a second dependency); app.py declares the scheme in the document.
        header = request.headers.get("authorization")
        if header is None:
            key = session_key(request)
            if key is None:
                raise _unauthorized("an API key is required: Authorization: Bearer sg_…")
            check_csrf(request)
            who = admit(key, scope)
        else:
            who = authenticate(header, request.app.state.keys, scope)
        if services == "all":
            who.check_unlimited()
        return who

    principal.scope = scope  # type: ignore[attr-defined]  # read by check_routes()
    principal.service_rule = services  # type: ignore[attr-defined]
    return principal


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def declare(scope: KeyScope, *, services: ServiceRule) -> Callable[[Endpoint], Endpoint]:
    """Declare a WebSocket endpoint's scope and service rule (it authenticates itself: a
    WebSocket has no dependency to do it); `check_routes` reads them."""
    if services not in SERVICE_RULES:
        raise ValueError(f"services must be one of {', '.join(SERVICE_RULES)}, not {services!r}")

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.scope = scope  # type: ignore[attr-defined]
        endpoint.service_rule = services  # type: ignore[attr-defined]
        return endpoint

    return mark


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


DEFAULT_PORTS = {"http": 80, "https": 443}
WEB_SCHEMES = {"ws": "http", "wss": "https"}
"""The page scheme a WebSocket's request scheme stands for (browsers send a page's origin)."""


def _origin(url: str) -> tuple[str, str, int] | None:
    """A URL's origin, its port made explicit; `None` if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port if parts.port is not None else DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range or not a number
        return None
    if parts.hostname is None or port is None:
        return None
    return parts.scheme, parts.hostname, port


def same_origin(connection: HTTPConnection) -> bool:
    """Whether a browser's `Origin` (when it sent one) is this server's own: the same
    scheme, host and port (80 and 443 written or implied alike) as the request came to, or
    as the public URL. The request's scheme is the one the server saw, which a proxy it
    trusts (uvicorn's: on loopback, or as `FORWARDED_ALLOW_IPS` says) sets with
    `X-Forwarded-Proto`; its host and port are the `Host` header's. A proxy that passes
    on neither is covered by `SPENDGATE_PUBLIC_URL`, the URL people open."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    theirs = _origin(origin)
    if theirs is None:
        return False  # "null" (a sandboxed page, a file) or malformed: no one's
    scheme = WEB_SCHEMES.get(connection.scope["scheme"], connection.scope["scheme"])
    ours = _origin(f"{scheme}://{connection.headers.get('host', '')}")
    public = _origin(connection.app.state.context.settings.url)
    return theirs in (ours, public)


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


def _declared(route: BaseRoute, attribute: str) -> Any:
    if isinstance(route, APIRoute):
        for dependency in route.dependant.dependencies:
            found = getattr(dependency.call, attribute, None)
            if found is not None:
                return found
        return None
    return getattr(getattr(route, "endpoint", None), attribute, None)


def route_scope(route: BaseRoute) -> KeyScope | None:
    """The scope a route (HTTP or WebSocket) requires, or `None` for a public one."""
    return _declared(route, "scope")  # type: ignore[no-any-return]


def route_rule(route: BaseRoute) -> ServiceRule | None:
    """The service rule a route declares, or `None` (a public route, or a defect)."""
    return _declared(route, "service_rule")  # type: ignore[no-any-return]


def _all_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (which FastAPI may hold by reference)."""
    for route in routes:
        yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _all_routes(included.routes)


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every HTTP route, those of included routers too."""
    return (r for r in _all_routes(routes) if isinstance(r, APIRoute))


def websocket_routes(routes: Iterable[BaseRoute]) -> Iterator[WebSocketRoute]:
    """Every WebSocket route, those of included routers too."""
    return (r for r in _all_routes(routes) if isinstance(r, WebSocketRoute))


def check_routes(app: FastAPI) -> None:
    """Refuse to start if any route (HTTP or WebSocket) but the public ones lacks a scope
    or a service rule."""
    routes: list[BaseRoute] = [*api_routes(app.routes), *websocket_routes(app.routes)]
    for route in routes:
        path = getattr(route, "path", "?")
        if path in PUBLIC_PATHS:
            continue
        if route_scope(route) is None:
            raise RuntimeError(f"route {path} declares no API key scope")
        if route_rule(route) not in SERVICE_RULES:
            raise RuntimeError(
                f"route {path} declares no service rule: require(scope, services=...) with "
                f"one of {', '.join(SERVICE_RULES)}"
            )
