"""Errors as RFC 9457 problem details: every 4xx is JSON naming the field and what is valid.

One place maps spendgate's exceptions and the framework's to HTTP statuses, so no route has to
think about it and no input ends in a 500 with a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from spendgate.errors import (
    BudgetExceededError,
    ChangedError,
    ConfigError,
    ConflictError,
    ExistsError,
    NotFoundError,
    OutcomeUnknownError,
    ReservationStateError,
    SpendgateError,
    StoreClosedError,
    StoreError,
    StoreFailure,
    UnpricedSourceError,
    ValidationError,
)
from spendgate.redaction import redact

log = logging.getLogger("spendgate.server")

MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    431: "Request header fields too large",
    500: "Internal error",
    503: "Store unavailable",
}


class FieldError(BaseModel):
    """One invalid field: where it is, and what would be valid."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: `title` and `status` always, `errors` for invalid fields."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response."""
    body = Problem(
        title=_TITLES.get(status, "Error"), status=status, detail=detail, errors=list(errors)
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def _value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def status_of(exc: SpendgateError) -> int:
    """The HTTP status of one of spendgate's errors."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ExistsError | ChangedError | ConflictError | ReservationStateError):
        return 409
    if isinstance(exc, ValidationError | UnpricedSourceError | ConfigError | BudgetExceededError):
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 400


_TOLD: dict[StoreFailure, str] = {
    "store unreachable": "the store is unreachable: try again shortly",
    "store busy": "the store is busy: try again shortly",
    "disk full": "the store's disk is full: writes fail until space is freed",
    "read-only": "the store is read-only: writes fail until it takes writes again",
}


def unavailable(exc: SpendgateError) -> str:
    """What a caller is told of a store error: what happened and what to do, never the
    store's file path, host, port, database or driver text (the server's log has those)."""
    if isinstance(exc, OutcomeUnknownError):
        return (
            "the store was lost while the write committed: its outcome is unknown "
            "(the same call again with the same id finds out)"
        )
    if isinstance(exc, StoreClosedError):
        return "the store is closed: the server is stopping"
    if isinstance(exc, StoreError) and exc.reason in _TOLD:
        return _TOLD[exc.reason]
    return "the store could not do it: try again later (the server's log has the details)"


def from_error(exc: SpendgateError) -> JSONResponse:
    """A problem for one of spendgate's errors."""
    status = status_of(exc)
    if status >= 500:
        log.error("store error: %s", redact(str(exc)))
        return problem(status, unavailable(exc))
    errors: list[FieldError] = []
    if isinstance(exc, ValidationError):
        errors.append(
            FieldError(field=exc.field, message=f"got {_value(exc.value)}; expected {exc.expected}")
        )
    return problem(status, str(exc), errors=errors)


def _location(loc: Sequence[Any]) -> str:
    """`("body", "events", 3, "cost")` -> `events[3].cost`."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or (str(loc[0]) if loc else "body")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    @app.exception_handler(SpendgateError)
    async def spendgate_error(request: Request, exc: SpendgateError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(field=_location(e.get("loc", ())), message=str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        first = errors[0] if errors else FieldError(field="body", message="invalid")
        return problem(422, f"{first.field}: {first.message}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to the caller; the log has it.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error; the server log has the details")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": _TITLES[code]}
    for code in (401, 403, 404, 409, 413, 422, 503)
}
"""The problem responses any protected route may give, for the OpenAPI document."""
