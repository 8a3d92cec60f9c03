"""Ingestion and spending control: record events (one or a batch), authorize, and the
two-phase reservation (reserve, commit, release); stream usage history."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from spendgate.decisions import Decision
from spendgate.errors import NotFoundError, ValidationError
from spendgate.events import RecordResult
from spendgate.money import money_text
from spendgate.server.auth import Principal, require
from spendgate.server.context import Context, context
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.server.schemas import (
    BatchOut,
    CallIn,
    CommitIn,
    CommitOut,
    DecisionOut,
    EventBatch,
    EventIn,
    RecordOut,
    ReleaseOut,
    ReservationOut,
    ReserveIn,
    StreamDayOut,
)
from spendgate.streams import usage_history
from spendgate.windows import from_micros

router = APIRouter(tags=["ingest"], responses=ERROR_RESPONSES)


Ctx = Annotated[Context, Depends(context)]
# Every route here acts for the services its request names (checked in the handler).
Writer = Annotated[Principal, Depends(require("write", services="own"))]
Reader = Annotated[Principal, Depends(require("read", services="own"))]
ReservationId = Annotated[str, Path(min_length=1, max_length=200)]


# A batch repeats a handful of costs (one per price); formatting each exactly took ~6% of a
# batch POST's server time (bench/bench_server.py), so the few distinct texts are remembered.
_cost_text = lru_cache(maxsize=4096)(money_text)


def record_out(result: RecordResult, currency: str) -> dict[str, Any]:
    """What an event's answer says (the fast path answers the same)."""
    return {
        "status": result.status,
        "request_id": result.request_id,
        "cost": None if result.cost is None else _cost_text(result.cost),
        "currency": currency,
        "budget_day": None if result.budget_day is None else result.budget_day.isoformat(),
    }


@router.post("/api/events", response_model=RecordOut, status_code=201)
async def record_event(event: EventIn, request: Request, who: Writer, response: Response) -> Any:
    """Record one event; idempotent by `request_id` (a retry answers `exists`, 200)."""
    who.check_services([event.service])
    # The context straight from the request, not as a dependency: every dependency FastAPI
    # solves costs this hot route a few percent of its time (bench/bench_server.py).
    ctx: Context = request.app.state.context
    result = await ctx.gate.arecord(**event.arguments())
    if result.status == "exists":
        response.status_code = 200
    return record_out(result, ctx.gate.config.currency)


@router.post("/api/events/batch", response_model=BatchOut)
def record_batch(batch: EventBatch, ctx: Ctx, who: Writer) -> Any:
    """Record up to 10,000 events in one transaction, one result each.

    Every event is checked first: one invalid event refuses the batch (422, naming it) and
    nothing is written; so does one the store refuses (a total past its bound, 422 naming
    it), which fails this batch only, not the requests that shared its commit. A reused
    `request_id` is `exists` (same payload) or `conflict`.
    """
    who.check_services({e.service for e in batch.events})
    gate = ctx.gate
    writes = []
    for i, event in enumerate(batch.events):
        try:
            writes.append(gate.prepare(**event.arguments()))
        except ValidationError as exc:
            raise ValidationError(f"events[{i}].{exc.field}", exc.value, exc.expected) from exc
    results = gate.record_prepared(writes)
    counts = {"created": 0, "exists": 0, "conflict": 0}
    for r in results:
        counts[r.status] += 1
    currency = gate.config.currency
    return {"results": [record_out(r, currency) for r in results], **counts}


def _decision(decision: Decision, ctx: Context) -> dict[str, Any]:
    return {**decision.to_dict(), "currency": ctx.gate.config.currency}


@router.post("/api/authorize", response_model=DecisionOut)
def authorize(call: CallIn, ctx: Ctx, who: Writer) -> Any:
    """May this call spend? Holds nothing (reserve for that)."""
    who.check_services([call.service])
    decision = ctx.gate.authorize(call.service, call.source, call.asked(), **_options(call))
    return _decision(decision, ctx)


def _options(call: CallIn) -> dict[str, Any]:
    """What authorize() and reserve() share beyond service, source and amount."""
    return {
        "units": call.units,
        "labels": call.labels,
        "emergency": call.emergency,
        "priority": call.priority,
    }


@router.post("/api/reservations", response_model=DecisionOut, status_code=201)
def reserve(call: ReserveIn, ctx: Ctx, who: Writer, response: Response) -> Any:
    """Hold the estimate on every budget the call counts against (201), or refuse (200,
    `approval_status: denied`, with the budget that refused)."""
    who.check_services([call.service])
    decision = ctx.gate.reserve(
        call.service,
        call.source,
        call.asked(),
        ttl=call.ttl_seconds,
        reservation_id=call.reservation_id,
        **_options(call),
    )
    if not decision.approved:
        response.status_code = 200
    return _decision(decision, ctx)


def _owned(ctx: Context, who: Principal, reservation_id: str) -> None:
    """A key limited to services may settle only its services' holds."""
    if who.key.services is None:
        return
    info = ctx.gate.store.reservation(reservation_id)
    if info is None:
        raise NotFoundError("reservation", reservation_id)
    who.check_services([info.service])


@router.get("/api/reservations/{reservation_id:path}", response_model=ReservationOut)
def reservation(reservation_id: ReservationId, ctx: Ctx, who: Reader) -> Any:
    """A reservation as stored (holds taken from a process's leases are not stored)."""
    info = ctx.gate.store.reservation(reservation_id)
    if info is None:
        raise NotFoundError("reservation", reservation_id)
    who.check_services([info.service])
    return {
        "reservation_id": info.reservation_id,
        "state": info.state,
        "service": info.service,
        "source": info.source,
        "amount": money_text(info.amount),
        "actual": None if info.actual is None else money_text(info.actual),
        "currency": ctx.gate.config.currency,
        "emergency": info.emergency,
        "created_at": from_micros(info.created_at).isoformat(),
        "expires_at": from_micros(info.expires_at).isoformat(),
        "labels": dict(info.labels),
    }


@router.post("/api/reservations/{reservation_id:path}/commit", response_model=CommitOut)
def commit(reservation_id: ReservationId, body: CommitIn, ctx: Ctx, who: Writer) -> Any:
    """Settle a hold with what the call cost (else its estimate) and record its event."""
    _owned(ctx, who, reservation_id)
    details = body.model_dump(exclude_unset=True, exclude={"actual", "units", "request_id"})
    result = ctx.gate.commit(
        reservation_id, body.actual, units=body.units, request_id=body.request_id, **details
    )
    return {
        "reservation_id": result.reservation_id,
        "request_id": result.request_id,
        "cost": None if result.cost is None else money_text(result.cost),
        "overshoot": money_text(result.overshoot),
        "currency": ctx.gate.config.currency,
        "hold_expired": result.hold_expired,
    }


@router.post("/api/reservations/{reservation_id:path}/release", response_model=ReleaseOut)
def release(reservation_id: ReservationId, ctx: Ctx, who: Writer) -> Any:
    """Return a hold unused (`released`, or `expired` if its time had run out)."""
    _owned(ctx, who, reservation_id)
    return {"reservation_id": reservation_id, "state": ctx.gate.release(reservation_id)}


@router.get("/api/streams/usage", response_model=list[StreamDayOut])
async def stream_usage(
    ctx: Ctx,
    who: Reader,
    source: Annotated[str, Query(min_length=1, max_length=200)],
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> Any:
    """A streamed source's usage by trading day (the seed's `usage_monitoring` rows, with
    the seed's names), newest first."""
    if service is None:
        who.check_unlimited()
    else:
        who.check_services([service])
    rows = await run_in_threadpool(usage_history, ctx.gate, source, service=service, days=days)
    return [
        {
            "id": r.id,
            "date": r.date.isoformat(),
            "events_processed": r.events_processed,
            "data_bytes": r.data_bytes,
            "estimated_cost": money_text(r.estimated_cost),
            "currency": ctx.gate.config.currency,
            "connection_time": r.connection_hours,
            "created_at": r.created_at.isoformat(timespec="microseconds"),
        }
        for r in rows
    ]
