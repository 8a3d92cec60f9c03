"""The dashboard: server-rendered pages at `/` and `/services/{name}`, browser sign-in and
sign-out, and the two JSON routes only the dashboard needs (charts and streams).

The pages are shells: without a session they show the sign-in form and nothing else; signed
in, the page's script reads every figure from the protected JSON routes (with the session
cookie) and follows `/ws/cost-monitoring`. Templates and static files (the script, the
stylesheet and the vendored Chart.js with its licence) ship inside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

import spendgate
from spendgate.server.auth import Principal, require, same_origin, session_of
from spendgate.server.context import Context, context
from spendgate.server.cost import known_service
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.server.schemas import Figures
from spendgate.server.sessions import SESSION_COOKIE, Sessions, SignIns
from spendgate.server.views import charts, streams

HERE = Path(__file__).parent
STATIC = StaticFiles(directory=HERE / "static")
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter()
Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, Depends(require("read", services="all"))]
OwnReader = Annotated[Principal, Depends(require("read", services="own"))]
SIGNIN_PATH = "/signin"

# The page loads nothing from elsewhere: a CDN or injected script is refused by the browser.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("version", spendgate.__version__)
    response = templates.TemplateResponse(request, template, values, status_code=status)
    response.headers.update(HEADERS)
    return response


def _signin_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    return _page(request, "signin.html", status, error=error)


def _signed_in(request: Request, response: Response, key_id: str) -> Response:
    """Start a session for `key_id` and set its cookie on `response`."""
    sessions: Sessions = request.app.state.sessions
    session_id, _ = sessions.start(key_id)
    settings = request.app.state.context.settings
    secure = request.url.scheme == "https" or settings.url.startswith("https://")
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="strict", secure=secure, path="/"
    )
    return response


def dashboard_page(request: Request) -> Response:
    """The dashboard, or the sign-in form without a session."""
    found = session_of(request)
    if found is None:
        return _signin_form(request)
    session, key = found
    return _page(request, "dashboard.html", csrf=session.csrf, key=key)


def service_page(request: Request) -> Response:
    """One service's page, or the sign-in form without a session."""
    service_name = request.path_params["service_name"]
    found = session_of(request)
    if found is None:
        return _signin_form(request)
    session, key = found
    return _page(request, "service.html", csrf=session.csrf, key=key, service=service_name)


def signin_link(request: Request) -> Response:
    """The URL `spendgate serve` prints: a one-time token becomes a session cookie, and the
    browser is sent on to `/` (so the token leaves the address bar and history)."""
    token = request.query_params.get("token")
    if token is None:
        return _signin_form(request)
    signins: SignIns = request.app.state.signins
    key_id = signins.consume(token)
    if key_id is None:
        return _signin_form(request, "that sign-in link was used already or has expired", 401)
    return _signed_in(request, RedirectResponse("/", status_code=303), key_id)


async def signin_with_key(request: Request) -> Response:
    """The sign-in form: an API key, posted (never in a URL), becomes a session cookie."""
    if not same_origin(request):
        return _signin_form(request, "sign in from this server's own page", 403)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("key") or [""])[0].strip()
    key = request.app.state.keys.verify(token) if token else None
    if key is None:
        return _signin_form(request, "that API key is unknown, malformed or revoked", 401)
    if key.services is not None:
        return _signin_form(
            request, "the dashboard shows every service: use a key that is not limited", 403
        )
    return _signed_in(request, RedirectResponse("/", status_code=303), key.key_id)


async def signout(request: Request) -> Response:
    """End the session (the form carries its CSRF token) and clear the cookie."""
    found = session_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sent = form.get("csrf", [""])[0]
    if found is not None and found[0].csrf_matches(sent):
        request.app.state.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# The pages are plain routes, not API routes: they need no key (see auth.PUBLIC_PATHS) and are
# not part of the OpenAPI document.
router.add_route("/", dashboard_page, methods=["GET"])
router.add_route("/services/{service_name:path}", service_page, methods=["GET"])
router.add_route(SIGNIN_PATH, signin_link, methods=["GET"])
router.add_route(SIGNIN_PATH, signin_with_key, methods=["POST"])
router.add_route("/signout", signout, methods=["POST"])


@router.get(
    "/api/dashboard/charts", response_model=Figures, tags=["dashboard"], responses=ERROR_RESPONSES
)
async def dashboard_charts(
    ctx: Ctx,
    who: OwnReader,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Any:
    """Spend over time: today by minute and the last 30 days by day, for every service (with
    the month's forecast and its interval) or for one."""
    if service is None:
        who.check_unlimited()
    else:
        who.check_services([service])
        known_service(ctx, service)
    # The forecast fits models the first time each day: off the event loop.
    return await run_in_threadpool(charts, ctx, service)


@router.get(
    "/api/dashboard/streams", response_model=Figures, tags=["dashboard"], responses=ERROR_RESPONSES
)
async def dashboard_streams(ctx: Ctx, who: Reader) -> Any:
    """Each streamed source today (bytes, messages, hours, cost, level) and whether its
    market is open."""
    return await run_in_threadpool(streams, ctx)
