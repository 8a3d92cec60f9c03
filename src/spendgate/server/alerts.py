"""Alerts over HTTP: history, acknowledge, silence, heartbeats, test notifications, the
outbox, and the alert configuration (the seed's `/api/cost/alerts/configure`)."""

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from spendgate.alert_settings import (
    ALERTS_DEFINITION,
    TRANSPORTS,
    AlertSettings,
    ChannelSettings,
    parse_alerts,
)
from spendgate.alerts import channels
from spendgate.alerts.channels import DeliveryError
from spendgate.alerts.notices import alert_dict
from spendgate.errors import NotFoundError, ValidationError
from spendgate.money import from_nanos
from spendgate.redaction import redact
from spendgate.server.auth import Principal, require
from spendgate.server.context import Context, context
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.server.schemas import (
    AlertConfigIn,
    AlertConfigOut,
    AlertOut,
    HeartbeatIn,
    HeartbeatOut,
    NotificationOut,
    SilenceIn,
    TestIn,
    TestOut,
)
from spendgate.store.base import Notification, NotificationState
from spendgate.windows import from_micros

log = logging.getLogger("spendgate.alerts")
router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)
Ctx = Annotated[Context, Depends(context)]
# Alerts and their configuration span every service: limited keys are refused (heartbeats
# name their service: a limited key may send its own).
Reader = Annotated[Principal, Depends(require("read", services="all"))]
Writer = Annotated[Principal, Depends(require("write", services="all"))]
OwnWriter = Annotated[Principal, Depends(require("write", services="own"))]
Admin = Annotated[Principal, Depends(require("admin", services="all"))]
AlertId = Annotated[str, Path(min_length=1, max_length=300)]
KIND = "alerts"


@router.get("/api/alerts", response_model=list[AlertOut])
def alert_history(
    ctx: Ctx,
    who: Reader,
    state: Literal["firing", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="fired_at, µs")] = None,
) -> Any:
    """Alerts, newest first: every firing and resolved alert is kept."""
    return [
        alert_dict(a, ctx.gate.config)
        for a in ctx.gate.store.alerts(state=state, limit=limit, before=before)
    ]


def _found(ctx: Context, alert_id: str) -> Any:
    alert = ctx.gate.store.alert(alert_id)
    if alert is None:
        raise NotFoundError("alert", alert_id)
    return alert


@router.post("/api/alerts/{alert_id:path}/acknowledge", response_model=AlertOut)
def acknowledge(alert_id: AlertId, ctx: Ctx, who: Writer) -> Any:
    """Acknowledge an alert: it stops repeating (its resolution is still announced)."""
    alert = ctx.gate.store.acknowledge(alert_id, actor=who.actor, at=ctx.now_us())
    if alert is None:
        raise NotFoundError("alert", alert_id)
    return alert_dict(alert, ctx.gate.config)


@router.post("/api/alerts/{alert_id:path}/silence", response_model=AlertOut)
def silence(alert_id: AlertId, body: SilenceIn, ctx: Ctx, who: Writer) -> Any:
    """Silence an alert for a while: no notification of it until then."""
    until = ctx.now_us() + round(body.seconds * 1_000_000)
    alert = ctx.gate.store.silence(alert_id, until=until, actor=who.actor, at=ctx.now_us())
    if alert is None:
        raise NotFoundError("alert", alert_id)
    return alert_dict(alert, ctx.gate.config)


@router.post("/api/heartbeats", response_model=HeartbeatOut)
def heartbeat(body: HeartbeatIn, ctx: Ctx, who: OwnWriter) -> Any:
    """A service is alive (the service-offline rule listens for events and heartbeats)."""
    who.check_services([body.service])
    now = ctx.now_us()
    ctx.gate.store.heartbeat(body.service, now)
    return {"service": body.service, "at": from_micros(now).isoformat()}


def _when(micros: int | None) -> str | None:
    return None if micros is None else from_micros(micros).isoformat()


def notification_dict(n: Notification) -> dict[str, Any]:
    """An outbox row as the API shows it."""
    return {
        "key": n.key,
        "alert_id": n.alert_id,
        "channel": n.channel,
        "state": n.state,
        "created_at": _when(n.created_at),
        "attempts": n.attempts,
        "next_attempt_at": _when(n.next_attempt_at),
        "delivered_at": _when(n.delivered_at),
        "dead_at": _when(n.dead_at),
        # Redacted again: rows written before redaction existed may hold a token.
        "last_error": None if n.last_error is None else redact(n.last_error),
    }


@router.get("/api/alerts/{alert_id:path}/notifications", response_model=list[NotificationOut])
def notifications(alert_id: AlertId, ctx: Ctx, who: Admin) -> Any:
    """An alert's notifications and their delivery (attempts, errors, when delivered; dead
    letters, whose channel was deleted)."""
    _found(ctx, alert_id)
    return [notification_dict(n) for n in ctx.gate.store.notifications(alert_id=alert_id)]


@router.get("/api/notifications", response_model=list[NotificationOut])
def all_notifications(
    ctx: Ctx,
    who: Admin,
    state: NotificationState | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """Every alert's notifications, newest first (`state=dead`: the dead letters, ended
    undelivered because their channel was deleted)."""
    return [notification_dict(n) for n in ctx.gate.store.notifications(state=state, limit=limit)]


@router.post("/api/alerts/test", response_model=TestOut)
def test_channel(body: TestIn, ctx: Ctx, who: Admin) -> Any:
    """Send a test notification through one channel now (not through the outbox)."""
    from spendgate.alerts.notices import test_message

    settings = ctx.gate.config.alerts
    channel = settings.channel(body.channel)
    try:
        channels.send(
            channel, test_message(channel, settings, ctx.now_us(), ctx.gate.config.currency)
        )
    except DeliveryError as exc:
        # The caller learns only that it failed; what answered is for the server's log.
        log.warning("test notification not delivered: %s: %s", exc, exc.detail)
        return {"channel": body.channel, "delivered": False, "error": str(exc)}
    return {"channel": body.channel, "delivered": True, "error": None}


# -- configuration ----------------------------------------------------------------------------

_SEED = {
    "free_source_success_below_85": "free_source_rate_below",
    "cost_per_request_spike": "cost_per_request_above",
    "api_rate_limit_approaching": "rate_limit_fraction",
}


def seed_channel(channel: ChannelSettings) -> Any:
    """A channel in the seed's `notification_channels` shape: `email` as its list of
    addresses, `slack` as its channel name, `sms` as its number (a list if several), the
    dashboard and the log as `true`; a URL's channel as its table (credentials hidden)."""
    if channel.kind in ("dashboard", "log"):
        return True
    if channel.kind == "email":
        return list(channel.to)
    if channel.kind in ("slack", "sms") and len(channel.to) == 1:
        return channel.to[0]
    if channel.kind == "sms":
        return list(channel.to)
    return channel.to_spec()


def seed_view(s: AlertSettings) -> dict[str, Any]:
    """The seed's `alert_thresholds` (numbers, as the seed compares them) and
    `notification_channels` (`seed_channel()`) for the settings."""
    spec = s.to_spec()
    fractions = [float(f) for f in s.budget_fractions]
    thresholds = {
        "daily_budget_80_percent": fractions[0] if fractions else None,
        "daily_budget_100_percent": fractions[-1] if fractions else None,
        **{seed: spec[ours] for seed, ours in _SEED.items()},
        "service_offline": s.service_offline_after is not None,
    }
    # A number, as the seed compares it (`cost > cost_per_request_spike`); the exact decimal
    # text is `settings.cost_per_request_above`.
    spike = s.cost_per_request_above
    thresholds["cost_per_request_spike"] = None if spike is None else float(from_nanos(spike))
    channels = {c.name: seed_channel(c) for c in s.channels}
    return {"alert_thresholds": thresholds, "notification_channels": channels}


def _config_out(ctx: Context) -> dict[str, Any]:
    ctx.gate.refresh()
    s = ctx.gate.config.alerts
    found = _definition(ctx)
    return {
        "success": True,
        **seed_view(s),
        "settings": s.to_spec(),
        "revision": None if found is None else found.revision,
        "changed_by": None if found is None else found.changed_by,
    }


def _definition(ctx: Context) -> Any:
    return next(
        (d for d in ctx.gate.store.definitions() if d.kind == KIND and d.name == ALERTS_DEFINITION),
        None,
    )


def to_table(body: AlertConfigIn, current: AlertSettings) -> dict[str, Any]:
    """The `[alerts]` keys a configure request sets (the seed's names translated)."""
    table: dict[str, Any] = {}
    given = (
        body.alert_thresholds.model_dump(exclude_unset=True, mode="json")
        if body.alert_thresholds
        else {}
    )
    low = given.pop("daily_budget_80_percent", None)
    high = given.pop("daily_budget_100_percent", None)
    if low is not None or high is not None:
        fractions = [float(f) for f in current.budget_fractions] or [0.8, 1.0]
        # The seed's two names set the lowest and highest rung; the rungs between stay.
        table["budget_fractions"] = [
            low if low is not None else fractions[0],
            *fractions[1:-1],
            high if high is not None else fractions[-1],
        ]
    for seed, ours in _SEED.items():
        if given.get(seed) is not None:
            table[ours] = given.pop(seed)
        given.pop(seed, None)
    offline = given.pop("service_offline", None)
    if offline is False:
        table["service_offline_after"] = False
    elif offline is True and current.service_offline_after is None:
        table["service_offline_after"] = "15m"
    table.update({k: v for k, v in given.items() if v is not None})
    if body.notification_channels is not None:
        table["channels"] = {
            name: value
            if isinstance(value, bool | str | list)
            else value.model_dump(exclude_none=True)
            for name, value in body.notification_channels.items()
        }
    if body.dashboard_url is not None:
        table["dashboard_url"] = body.dashboard_url
    for key in TRANSPORTS.values():  # `false` unsets one
        if getattr(body, key) is not None:
            table[key] = getattr(body, key)
    return table


def _as_posted(exc: ValidationError) -> ValidationError:
    """An error in the `[alerts]` table named as the request names the field: a channel under
    `notification_channels`, a transport at the top level."""
    name = exc.field
    if name.startswith("alerts.channels."):
        name = "notification_channels." + name.removeprefix("alerts.channels.")
    elif name.removeprefix("alerts.") in TRANSPORTS.values():
        name = name.removeprefix("alerts.")
    return ValidationError(name, exc.value, exc.expected)


@router.get("/api/cost/alerts/configure", response_model=AlertConfigOut)
def alert_config(ctx: Ctx, who: Reader) -> Any:
    """The alert rules and channels in effect (the seed's thresholds until configured;
    channel URLs shown without their credentials and tokens)."""
    return _config_out(ctx)


@router.post("/api/cost/alerts/configure", response_model=AlertConfigOut)
def configure_alerts(body: AlertConfigIn, ctx: Ctx, who: Admin) -> Any:
    """Change alert rules, transports and channels (the seed's `update_configuration`): what
    is given replaces what is in effect; checked whole (every apprise URL parsed, every
    recipient checked, each recipients' channel's transport set) before it is stored;
    audited. An error names the field as posted (`notification_channels.email[1]`)."""
    ctx.gate.refresh()
    found = _definition(ctx)
    stored: dict[str, Any] = dict(found.spec) if found is not None and found.spec else {}
    changes = to_table(body, ctx.gate.config.alerts)
    merged = {**stored, **changes}
    if "channels" in stored and "channels" in changes:
        merged["channels"] = {**stored["channels"], **changes["channels"]}
    try:
        settings = parse_alerts(merged, ctx.gate.base_config.alerts)  # validated whole
        channels.validate(settings)
    except ValidationError as exc:
        raise _as_posted(exc) from None
    ctx.gate.store.define(
        KIND,
        ALERTS_DEFINITION,
        merged,
        expected=0 if found is None else found.revision,
        action="update" if found is not None else "create",
        actor=who.actor,
        at=ctx.now_us(),
    )
    return _config_out(ctx)


# An alert's id may hold a slash (a budget named `team/a`), written %2F: the id matches the
# rest of the path, so this route comes after those that end in a word of their own.
@router.get("/api/alerts/{alert_id:path}", response_model=AlertOut)
def one_alert(alert_id: AlertId, ctx: Ctx, who: Reader) -> Any:
    """One alert."""
    return alert_dict(_found(ctx, alert_id), ctx.gate.config)
