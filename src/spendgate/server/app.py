"""The FastAPI application: `create_app(gate)` wires routes, keys, errors, limits and the
live feed around one gate.

```python
from spendgate import Gate
from spendgate.server import create_app

app = create_app(Gate.open("sqlite:///spendgate.db"))   # serve with any ASGI server
```
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import spendgate
from spendgate.analytics import Analyst
from spendgate.control import Control
from spendgate.gate import Gate
from spendgate.keys import KeyRing
from spendgate.server import (
    admin,
    alerts,
    cost,
    ingest,
    live,
    metrics,
    pages,
    problems,
    reports,
)
from spendgate.server.auth import (
    SECURITY_SCHEME,
    Principal,
    api_routes,
    check_routes,
    require,
    route_scope,
)
from spendgate.server.background import Background
from spendgate.server.context import Context, context
from spendgate.server.fastpath import EventFastPath, read_body, replay
from spendgate.server.schemas import HealthOut
from spendgate.server.sessions import Sessions, SignIns
from spendgate.server.settings import ServerSettings

DESCRIPTION = """Budgets that refuse a paid API call before the money is spent.

Every route but `/healthz` needs an API key (`Authorization: Bearer sg_…`) with a scope:
`read`, `write` (record, authorize, reserve) or `admin` (budgets, prices, alerts, keys).
Errors are RFC 9457 problem details naming the field and what is valid. Money is written as
exact decimal strings."""


log = logging.getLogger("spendgate.server")


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit first, then hand the body on.
        body = await read_body(receive, self.limit)
        if body is None:  # over the limit (or the client went away: it sees nothing)
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, f"request bodies are limited to {self.limit:,} bytes")
        await response(scope, receive, send)


def create_app(
    gate: Gate, settings: ServerSettings | None = None, *, keys: KeyRing | None = None
) -> FastAPI:
    """The HTTP API, live feed and metrics over `gate` (which the caller closes)."""
    settings = settings or ServerSettings()
    ring = keys or KeyRing(gate.store)
    ctx = Context(gate, settings, ring, Analyst(gate), Control(gate))
    hub = live.Hub(ctx)

    work = Background(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        work.start()
        try:
            yield
        finally:
            # Threads end before what they use: the loops stop (by the shutdown grace, or
            # the earlier deadline a signal set) before the caller closes the gate.
            work.stop()
            await hub.stop()
            left = await work.wait()
            if left:
                log.error(
                    "still running after the shutdown grace period: %s (abandoned)",
                    ", ".join(left),
                )

    app = FastAPI(
        title="spendgate",
        version=spendgate.__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind a key
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.state.keys = ring
    app.state.hub = hub
    app.state.background = work
    app.state.metrics = metrics.registry(ctx)
    app.state.sessions = Sessions()  # the dashboard's browser sessions (see pages.py)
    app.state.signins = SignIns()
    problems.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.fast_path:
        # Outermost: plain single events skip the framework (see fastpath.py).
        app.add_middleware(EventFastPath, ring=ring, ctx=ctx, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(ingest.router)  # first: the most frequent routes match soonest
    app.include_router(cost.router)
    app.include_router(admin.router)
    app.include_router(alerts.router)
    app.include_router(reports.router)
    app.include_router(live.router)
    app.include_router(pages.router)
    app.mount("/static", pages.STATIC, name="static")
    _operations(app)
    check_routes(app)
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with errors as `application/problem+json` (what they are)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        document.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = (
            SECURITY_SCHEME
        )
        for route in api_routes(app.routes):
            # The document writes `{name:path}` as `{name}`, as `path_format` does.
            if route_scope(route) is None or route.path_format not in document["paths"]:
                continue
            for method in route.methods or ():
                operation = document["paths"][route.path_format].get(method.lower())
                if operation is not None:
                    operation["security"] = [{"bearer": []}]
        for methods in document["paths"].values():
            for operation in methods.values():
                for code, response in operation["responses"].items():
                    content = response.get("content", {})
                    if code[0] in "45" and "application/json" in content:
                        content[problems.MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = document
    return app.openapi_schema


def _operations(app: FastAPI) -> None:
    """Health, metrics and the OpenAPI document."""

    @app.get(
        "/healthz",
        response_model=HealthOut,
        tags=["ops"],
        responses={503: {"model": HealthOut, "description": "The store or its writes fail."}},
    )
    def healthz(ctx: Annotated[Context, Depends(context)]) -> Any:
        """Whether the server's store answers and takes writes (no key needed): 503 once the
        store has not answered within its timeout (1.5 s by default for PostgreSQL), or while
        this process's latest write failed (a full disk, a read-only store). Writes nothing
        while writes succeed; while they fail, one small write at most every 10 s tells when
        they work again."""
        health = ctx.gate.check_health()  # a failed ping is also noted as an outage
        return JSONResponse(health.to_dict(), status_code=200 if health.ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {metrics.CONTENT_TYPE: {}}}, **problems.ERROR_RESPONSES},
    )
    def prometheus(
        who: Annotated[Principal, Depends(require("read", services="filtered"))],
    ) -> Response:
        """Prometheus metrics (text format). A key limited to services is shown only their
        series (and their budgets'): not the figures that span every service."""
        if who.limited:
            text = metrics.exposition(metrics.registry(app.state.context, who.key.services))
        else:
            text = metrics.exposition(app.state.metrics)
        return Response(text, media_type=metrics.CONTENT_TYPE)

    @app.get("/openapi.json", tags=["ops"], include_in_schema=False)
    def openapi(who: Annotated[Principal, Depends(require("read", services="any"))]) -> Any:
        """This API's OpenAPI document."""
        return app.openapi()
