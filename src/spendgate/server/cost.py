"""The seed's read endpoints: the live dashboard, service metrics, current figures, a day,
service performance, the monthly forecast, trends and optimization opportunities."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from spendgate.alerts.notices import alert_dict
from spendgate.errors import NotFoundError, ValidationError
from spendgate.server.auth import Principal, require
from spendgate.server.context import Context, context
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.server.schemas import CurrentOut, DashboardOut, Figures

router = APIRouter(tags=["cost"], responses=ERROR_RESPONSES)
Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, Depends(require("read", services="all"))]
OwnReader = Annotated[Principal, Depends(require("read", services="own"))]
Days = Annotated[int, Query(ge=1, le=366, description="Window in days.")]


def known_service(ctx: Context, service: str) -> str:
    """A service named in a path: one with recorded events (else 404)."""
    known = ctx.analyst.known_services()
    if service not in known:
        raise NotFoundError("service", service, known)
    return service


def dashboard(ctx: Context) -> dict[str, Any]:
    """The seed's dashboard data: live metrics, today's summary, the service breakdown,
    opportunities, warnings and 30 days of trends, each as of now."""
    analyst = ctx.analyst
    # One reading of the budgets for the live figures and the budget list beside them.
    standing = ctx.gate.status()
    live = analyst.live(standing)
    today = analyst.summary("today")
    figures = live.to_dict()
    statuses = [s.to_dict() for s in standing]
    # The alerts firing now, from the store (every process's, whichever raised them).
    warnings = [
        alert_dict(a, ctx.gate.config) for a in ctx.gate.store.alerts(state="firing", limit=100)
    ]
    return {
        "success": True,
        "timestamp": figures["as_of"],
        "currency": figures["currency"],
        "data": {
            "live_metrics": figures["live_metrics"],
            "live_figures": figures["live_figures"],
            "daily_summary": today.to_dict(),
            "service_breakdown": {
                "as_of": figures["as_of"],
                "services": {sv: t.to_dict() for sv, t in today.by_service().items()},
                "sources": {so: t.to_dict() for so, t in today.by_source().items()},
            },
            "optimization_opportunities": [o.to_dict() for o in analyst.opportunities()],
            "alerts_and_warnings": warnings,
            "historical_trends": analyst.trends(30),
            "budgets": statuses,
        },
        "status": figures["status"],
    }


@router.get("/cost/dashboard/live", response_model=DashboardOut)
def live_dashboard(ctx: Ctx, who: Reader) -> dict[str, Any]:
    """The live cost dashboard: every section the seed's dashboard shows."""
    return dashboard(ctx)


@router.get("/cost/services/{service_name:path}/metrics", response_model=Figures)
def service_metrics(
    service_name: str,
    ctx: Ctx,
    who: OwnReader,
    period: Literal["today", "week", "month"] = "today",
) -> dict[str, Any]:
    """A service's cost summary for today, this week or this month (the seed's
    `get_service_cost_summary`)."""
    who.check_services([service_name])
    known_service(ctx, service_name)
    return ctx.analyst.summary(period, service=service_name).to_dict()


@router.get("/api/cost/current", response_model=CurrentOut)
def current(ctx: Ctx, who: Reader) -> dict[str, Any]:
    """Live metrics: today's spend, budget remaining, rates, projection and runway."""
    return ctx.analyst.live().to_dict()


@router.get("/api/cost/daily/{date}", response_model=Figures)
def daily(date: str, ctx: Ctx, who: Reader) -> dict[str, Any]:
    """One day (YYYY-MM-DD, in the budget's time zone): totals, services, sources, hours."""
    return ctx.analyst.daily(date).to_dict()


@router.get("/api/cost/service/{service_name:path}/performance", response_model=Figures)
def service_performance(
    service_name: str, ctx: Ctx, who: OwnReader, days: Days = 7
) -> dict[str, Any]:
    """A service's last `days` days with trends."""
    who.check_services([service_name])
    known_service(ctx, service_name)
    return ctx.analyst.service_performance(service_name, days).to_dict()


@router.get("/api/cost/forecast/monthly", response_model=Figures)
async def monthly_forecast(ctx: Ctx, who: Reader) -> dict[str, Any]:
    """The month-end forecast (method, confidence, interval, why), each method beside it, the
    assessment against the monthly budget."""
    # Fitting takes a second or two the first time each day: off the event loop.
    forecast = await run_in_threadpool(ctx.analyst.monthly_forecast)
    return forecast.to_dict()


@router.get("/api/cost/trends", response_model=Figures)
async def trends(
    ctx: Ctx,
    who: Reader,
    *,
    time_period: Annotated[
        str | None,
        Query(description='The seed\'s period token ("3_months", "2_weeks", "90_days").'),
    ] = None,
    days: Annotated[int | None, Query(ge=1, le=366, description="Window in days.")] = None,
    service: str | None = None,
    stable_rule: Literal["relative", "seed"] = "relative",
) -> dict[str, Any]:
    """The seed's trend analysis (`CostTrendAnalyzer.analyze_cost_trends`) over the last
    complete days: every line with direction, strength, slope, correlation and summary,
    each service's, and the predictions (`next_month_cost` from the forecast core)."""
    if time_period is not None and days is not None:
        raise ValidationError("days", days, "either days or time_period, not both")
    period: int | str = time_period if time_period is not None else days or 30
    # The prediction fits the forecast models: off the event loop.
    return await run_in_threadpool(
        ctx.analyst.trends, period, service=service, stable_rule=stable_rule
    )


@router.get("/api/cost/optimization/opportunities", response_model=Figures)
def opportunities(ctx: Ctx, who: Reader, days: Days = 7) -> dict[str, Any]:
    """Ways to spend less, each with the saving it names, largest first."""
    found = ctx.analyst.opportunities(days)
    return {
        "as_of": ctx.now().isoformat(),
        "window_days": days,
        "currency": ctx.gate.config.currency,
        "window_start": (ctx.now() - timedelta(days=days)).isoformat(),
        "opportunities": [o.to_dict() for o in found],
    }
