"""The request and response bodies of the HTTP API (pydantic models, for the OpenAPI document).

Money travels as exact decimal strings (`"0.002"`); a request may also give a JSON number.
Money and quantities written as text follow money's one rule for numbers (`Money`,
`Quantity`). Booleans are JSON's `true` and `false` only (`StrictBool`: neither `"false"`
nor `1`), and a number is never a boolean. Bodies refuse unknown fields, so a typo is an
error, not ignored.

Text a store cannot keep (NUL, lone surrogates such as `\\ud800`, which JSON can spell) is
refused with 422 naming the field: by the gate for events, authorize and reservations (it
checks them for every caller, and the hottest route pays nothing twice), and here, by the
`Text` and `NameText` types, for every other body. Lengths are bounded here as well as in
the gate (`spendgate.events`), so that the OpenAPI document states them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from spendgate.errors import StoreFailure, ValidationError
from spendgate.events import (
    MAX_ID_LENGTH,
    MAX_ITEMS,
    MAX_KEY_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    MAX_TEXT_LENGTH,
    TEXT_RULE,
    storable,
)
from spendgate.money import MAX_AMOUNT, MONEY_PATTERN, NUMBER, number_text
from spendgate.server.settings import MAX_BATCH

Name = str
NAME = Field(min_length=1, max_length=MAX_ID_LENGTH)


def _text(value: str) -> str:
    if not storable(value):
        raise ValueError(f"expected {TEXT_RULE}")
    return value


def _name(value: str) -> str:
    if not value.isprintable():
        raise ValueError("expected printable characters only")
    return value


def _number(money: bool) -> BeforeValidator:
    """Text read by money's rule (`spendgate.money.number_text`); a JSON number as it is."""

    def read(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return number_text(value, "", money=money)
        except ValidationError as exc:
            rule = {"rule": exc.expected}
            raise PydanticCustomError("number_text", "expected {rule}", rule) from None

    return BeforeValidator(read)


Text = Annotated[str, AfterValidator(_text)]
"""Free text every store can keep."""
NameText = Annotated[str, AfterValidator(_name)]
"""A name (a service, a key, a channel): printable characters only."""
Money = Annotated[
    Decimal,
    _number(money=True),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": int(MAX_AMOUNT)},
                {"type": "string", "pattern": MONEY_PATTERN},
            ]
        }
    ),
]
"""An amount: a JSON number, or text of ASCII digits with at most one point (optionally
after `$`), such as `"2.50"`; never `"1_000"`, `"1e3"` or other scripts' digits."""
Quantity = Annotated[
    Decimal,
    _number(money=False),
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": f"^{NUMBER}$"}]}
    ),
]
"""A quantity of a unit: a JSON number, or text of ASCII digits with at most one point."""
UnitName = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
Units = Annotated[dict[UnitName, Quantity], Field(max_length=MAX_ITEMS)]
"""Quantities of the source's priced units (or its raw measurements), e.g. `{"MB": 2}`."""


def _off(value: bool) -> bool:
    if value:
        raise ValueError("expected false (to turn the rule off) or a number")
    return value


Off = Annotated[StrictBool, AfterValidator(_off), WithJsonSchema({"const": False})]
"""`false`, turning an alert rule off (never `0` or `"false"`)."""
LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_LENGTH)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
"""Free-form labels: at most 32, keys of up to 100 characters, values of up to 500."""
SourceName = Annotated[str, NAME]
SourceNames = Annotated[list[SourceName], Field(max_length=MAX_ITEMS)]
Reason = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class SourceCostIn(Body):
    """One source's part in a call (an item of the seed's `source_cost_breakdown`)."""

    source: SourceName
    cost: Money = Decimal(0)
    success: StrictBool = True
    failure_reason: Reason | None = None
    quality_contribution: StrictFloat | None = None


class EventIn(Body):
    """One use of a source by a service (the seed's cost entry).

    The seed's names are taken beside spendgate's: `timestamp` for `time`, `total_cost` for
    `cost` (both may be given if they agree).
    """

    service: str = NAME
    source: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description=(
            "The source used; if left out (as in the seed's cost entry), the one that cost "
            "money in `source_cost_breakdown`, else the first of `sources_used`."
        ),
    )
    cost: Money | None = Field(None, description="What the call cost; else it is priced.")
    units: Units | None = Field(None, description='Quantities of priced units, e.g. {"MB": 2}.')
    request_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    time: AwareDatetime | None = Field(
        None,
        description=(
            "When it happened (default: now): from 1970 to at most 5 minutes ahead of the "
            "server's clock."
        ),
    )
    labels: Labels | None = None
    emergency: StrictBool = False
    success: StrictBool = True
    failure_reason: Reason | None = None
    sources_used: SourceNames | None = None
    free_sources_attempted: SourceNames | None = None
    paid_apis_used: SourceNames | None = None
    fallbacks_triggered: list[tuple[SourceName, Reason]] | None = Field(None, max_length=MAX_ITEMS)
    cache_hits: StrictInt = Field(0, ge=0)
    batch_processing: StrictBool = False
    quality_score: StrictFloat | None = None
    processing_time: StrictFloat | None = None
    timestamp: datetime | None = Field(
        None, description="The seed's name for `time`; without a zone it is UTC, as the seed's."
    )
    total_cost: Money | None = Field(None, description="The seed's name for `cost`.")
    source_cost_breakdown: list[SourceCostIn] | None = Field(
        None,
        max_length=MAX_ITEMS,
        description="Each source's cost and outcome; their sum is the cost (if none is given).",
    )
    image_resolution: LabelValue | StrictInt | None = None
    enhancement_applied: StrictBool | None = None
    completeness_score: StrictFloat | None = None
    free_sources_success_rate: StrictFloat | None = Field(None, ge=0, le=1)
    cache_hit: StrictBool | None = None

    def arguments(self) -> dict[str, Any]:
        """`Gate.record()`'s keyword arguments (fields left out are not passed)."""
        return self.model_dump(exclude_unset=True)


class EventBatch(Body):
    """Up to 10,000 events, stored in one transaction."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class RecordOut(BaseModel):
    """What became of one event: `created`, `exists` (a retry) or `conflict`."""

    status: Literal["created", "exists", "conflict"]
    request_id: str
    cost: str | None = Field(
        description="Exact decimal text of currency units; null for an unpriced source."
    )
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    budget_day: str | None = Field(
        None,
        description="The seed's `budget_day`: the local day (YYYY-MM-DD) the event counts "
        "in, by the calendar of the first day/week/month budget over its service and source "
        "(else UTC); null for a conflict.",
    )


class BatchOut(BaseModel):
    """One result per event, in order, and the counts."""

    results: list[RecordOut]
    created: int
    exists: int
    conflict: int


class CallIn(Body):
    """A paid call to decide on or hold for."""

    service: str = NAME
    source: str = NAME
    amount: Money | None = Field(None, description="Expected cost; else priced from units.")
    requested_amount: Money | None = Field(
        None, description="The seed's name for `amount` (`check_budget_availability`)."
    )
    units: Units | None = None
    labels: Labels | None = None
    emergency: StrictBool = False
    priority: StrictBool = False

    def asked(self) -> Any:
        """The amount asked for, by either name (both only if they agree)."""
        if self.requested_amount is None:
            return self.amount
        if self.amount is not None and Decimal(str(self.amount)) != Decimal(
            str(self.requested_amount)
        ):
            raise ValidationError(
                "amount/requested_amount",
                f"{self.amount} / {self.requested_amount}",
                "one of the two, or both equal",
            )
        return self.requested_amount


class ReserveIn(CallIn):
    """A hold: `amount` is the estimate; `ttl_seconds` how long before it expires."""

    ttl_seconds: StrictFloat | None = Field(None, gt=0, le=86_400)
    reservation_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)


class CommitIn(Body):
    """What a held call really cost (else its estimate), and its event's details."""

    actual: Money | None = None
    units: Units | None = None
    request_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    success: StrictBool = True
    failure_reason: Reason | None = None
    cache_hits: StrictInt = Field(0, ge=0)
    quality_score: StrictFloat | None = None
    processing_time: StrictFloat | None = None


class DecisionOut(BaseModel):
    """The seed's approval: approved, emergency_approved or denied, with what remains."""

    budget_available: bool
    approval_status: Literal["approved", "emergency_approved", "denied"]
    requested_amount: str
    remaining_budget: str | None
    budget: str | None
    level: str
    as_of: str
    emergency_budget_used: bool | None = None
    alternative_action: str | None = None
    reason: str | None = None
    reservation_id: str | None = None
    currency: str = Field(description="The currency of every amount here (ISO 4217).")


class CommitOut(BaseModel):
    """A settled reservation."""

    reservation_id: str
    request_id: str
    cost: str | None
    overshoot: str
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    hold_expired: bool


class ReleaseOut(BaseModel):
    """A returned hold: `released`, or `expired` if its time had run out."""

    reservation_id: str
    state: str


class ReservationOut(BaseModel):
    """A stored reservation."""

    reservation_id: str
    state: str
    service: str
    source: str
    amount: str
    actual: str | None
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    emergency: bool
    created_at: str
    expires_at: str
    labels: dict[str, str]


class BudgetStatusOut(BaseModel):
    """Where a budget stands in its window, as of a time."""

    model_config = ConfigDict(extra="allow")

    name: str
    limit: str
    spent: str
    reserved: str
    remaining: str
    used_percent: float
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    level: str
    window_start: str
    window_end: str
    as_of: str


class ManagedOut(BaseModel):
    """A budget or source in effect: its table, and whether it came from the file or the API."""

    kind: Literal["budget", "source"]
    name: str
    spec: dict[str, Any]
    origin: Literal["file", "api"]
    revision: int | None
    changed_at: str | None
    changed_by: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="What the change may not do as meant, e.g. a service scope that matches "
        "no event recorded yet.",
    )


class BudgetIn(Body):
    """A budget's `[[budgets]]` table (see docs/configuration.md#budgets)."""

    model_config = ConfigDict(extra="allow")

    name: NameText | None = Field(None, min_length=1, max_length=200)


class SourceIn(Body):
    """A source's `[sources.NAME]` table (see docs/configuration.md#sources-and-prices)."""

    model_config = ConfigDict(extra="allow")

    name: NameText | None = Field(None, min_length=1, max_length=200)


class AuditOut(BaseModel):
    """One change: who, when, what, before and after."""

    revision: int
    at: str
    actor: str
    action: str
    kind: str
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class KeyIn(Body):
    """A new API key."""

    name: NameText = NAME
    scope: Literal["read", "write", "admin"]
    services: list[NameText] | None = Field(None, min_length=1, max_length=1000)


class KeyOut(BaseModel):
    """A key's public fields (never its secret or hash)."""

    key_id: str
    name: str
    scope: str
    services: list[str] | None
    created_at: str
    created_by: str
    revoked_at: str | None


class NewKeyOut(BaseModel):
    """A new key: `token` is shown this once and stored nowhere."""

    token: str
    key: KeyOut


class Figure(BaseModel):
    """A live figure, the time it is as of, and what it counts: `scope` `all` (every event
    since `since`, the start of the day) or, with `budget`, that budget's scope."""

    value: Any
    as_of: str
    scope: str | None
    budget: str | None = None
    since: str | None = None


class StatusBlock(BaseModel):
    """The seed's status block."""

    budget_health: str
    free_source_performance: str
    cost_efficiency: str | None = Field(
        description="Savings vs the configured traditional cost per request; null when none "
        "is configured."
    )


class SeedLiveMetrics(BaseModel):
    """The seed's `get_live_cost_metrics()`: its seven names as plain numbers (money in
    currency units, the runway in seconds; null where there is no figure), `as_of` beside
    them. The exact amounts are the decimal text of `live_figures`."""

    as_of: str
    current_daily_spend: float
    budget_remaining: float | None
    free_source_success_rate: float
    requests_per_minute: float
    cost_per_request: float
    projected_daily_total: float
    time_until_budget_exhausted: float | None


class CurrentOut(BaseModel):
    """Live metrics: the seed's numbers (`live_metrics`) and spendgate's figures of them
    (`live_figures`), each with its `as_of`."""

    model_config = ConfigDict(extra="allow")

    as_of: str
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    live_metrics: SeedLiveMetrics
    live_figures: dict[str, Figure]
    status: StatusBlock


class DashboardData(BaseModel):
    """The seed's dashboard sections."""

    live_metrics: SeedLiveMetrics
    live_figures: dict[str, Figure]
    daily_summary: dict[str, Any]
    service_breakdown: dict[str, Any]
    optimization_opportunities: list[dict[str, Any]]
    alerts_and_warnings: list[dict[str, Any]]
    historical_trends: dict[str, Any]
    budgets: list[dict[str, Any]]


class DashboardOut(BaseModel):
    """The seed's `/cost/dashboard/live` answer."""

    success: bool
    timestamp: str
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    data: DashboardData
    status: StatusBlock


class Figures(BaseModel):
    """A JSON document of figures (see docs/analytics.md for each one's fields)."""

    model_config = ConfigDict(extra="allow")

    as_of: str | None = None


class AlertThresholds(Body):
    """The seed's alert thresholds, and the rest of the `[alerts]` rules (see
    docs/alerts.md). `false` turns a rule off; fields left out keep their settings."""

    daily_budget_80_percent: StrictFloat | None = Field(None, gt=0, le=10)
    daily_budget_100_percent: StrictFloat | None = Field(None, gt=0, le=10)
    free_source_success_below_85: StrictFloat | Off | None = None
    cost_per_request_spike: Money | Off | None = None
    service_offline: StrictBool | None = None
    api_rate_limit_approaching: StrictFloat | Off | None = None
    budget_fractions: list[StrictFloat] | None = Field(None, min_length=1, max_length=20)
    forecast_fraction: StrictFloat | Off | None = None
    anomaly_factor: StrictFloat | Off | None = None
    service_offline_after: Text | StrictFloat | None = Field(None, description='e.g. "15m"')
    window: Text | StrictFloat | None = None
    min_requests: StrictInt | None = None
    hysteresis: StrictFloat | None = None
    repeat_every: Text | StrictFloat | None = None
    evaluate_every: Text | StrictFloat | None = None


Recipient = Annotated[Text, Field(max_length=320)]
Recipients = Annotated[
    list[Any],
    Field(max_length=50),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "maxItems": 50}),
]
"""An email, Slack or SMS channel's recipients, checked one by one where the file's are
(`spendgate.alert_settings`), so that an error names the one that is wrong
(`notification_channels.email[1]`)."""
TransportURL = Annotated[Text, Field(min_length=1, max_length=2000)]


class ChannelIn(Body):
    """A channel: an apprise URL, a Slack incoming webhook, a signed JSON webhook, or
    recipients (`to`) sent through the transport `[alerts]` sets for their kind."""

    kind: Literal["apprise", "webhook", "log", "dashboard", "email", "slack", "sms"] | None = None
    url: Text | None = Field(None, max_length=2000)
    to: Recipient | Recipients | None = Field(
        None, description="email addresses, a Slack channel such as #cost-alerts, numbers"
    )
    severities: list[Literal["info", "warning", "critical"]] | None = None
    secret: Text | None = Field(None, min_length=16, max_length=500)


class AlertConfigIn(Body):
    """Alert rules, transports and channels; what is given replaces what is in effect."""

    alert_thresholds: AlertThresholds | None = None
    notification_channels: dict[NameText, StrictBool | Text | Recipients | ChannelIn] | None = (
        Field(
            None,
            description="NAME: true/false (dashboard, log), an apprise URL (text with ://), the "
            "seed's recipients (email: [addresses], slack: '#channel', sms: '+1...' or a list; "
            "each through its transport), or a table.",
        )
    )
    dashboard_url: Text | None = Field(None, max_length=2000)
    smtp_url: TransportURL | Off | None = Field(
        None, description="mailto:// or mailtos:// URL of the SMTP server (no recipients)"
    )
    slack_webhook: TransportURL | Off | None = Field(
        None, description="the Slack workspace's incoming-webhook URL"
    )
    sms_url: TransportURL | Off | None = Field(
        None,
        description="an apprise SMS URL (numbers added as targets), or an http(s) JSON gateway",
    )


class AlertConfigOut(BaseModel):
    """The alert configuration in effect: the seed's view and the whole `[alerts]` table."""

    success: bool
    alert_thresholds: dict[str, Any]
    notification_channels: dict[str, Any]
    settings: dict[str, Any]
    revision: int | None
    changed_by: str | None


class AlertOut(BaseModel):
    """An alert and where it stands: spendgate's fields beside the seed's alert shape
    (`alert_id`, `type`, `severity`, `timestamp`, `title`, `description`, `data`,
    `recommended_actions`, `notification_channels`), the same on every face."""

    alert_id: str
    type: str = Field(
        description="The seed's alert type: `high_usage` (a budget line below its limit), "
        "`budget_exceeded` (at or past it), `budget_forecast`, `free_source_rate_low`, "
        "`cost_spike`, `spend_anomaly`, `service_offline`, `rate_limit_approaching`, "
        "`unpriced_usage`, `approved_unchecked`, `store_unreachable`, `report_ready`, `test`."
    )
    rule: str = Field(description="spendgate's rule that raised it (`budget`, `forecast`...).")
    scope: str
    severity: str = Field(description="info, warning or critical.")
    state: str
    timestamp: str = Field(description="When it fired (ISO 8601), as `fired_at`.")
    title: str
    description: str = Field(description="One sentence: what happened, with its figures.")
    data: dict[str, Any] = Field(
        description="The alert's figures as JSON numbers (the seed formats them with `:.2f`; "
        "the exact decimal text is in `value`, `threshold`, `limit` and `detail`). A budget "
        "alert's: `usage_percentage` (a fraction: 0.85 is 85%), `current_usage`, "
        "`daily_budget` (the budget's limit for its own window, which `window` names: day, "
        "week, month or rolling), `remaining_budget` (negative past the limit), `overage` "
        "(`budget_exceeded` only), `budget`, `scope`, `window_start`, `threshold` (the "
        "line), `fraction`, `rung` (the ladder's action at the line, if any). Other rules: "
        "their measured value and threshold by name, and their detail."
    )
    recommended_actions: list[str]
    notification_channels: list[str] = Field(
        description="The configured channels this alert goes to (each takes some severities)."
    )
    value: str | None = Field(
        description="What was measured, in `unit`: amounts as exact decimal text of currency "
        'units ("0.081"), fractions as decimals, durations as seconds ("120s"), counts.'
    )
    threshold: str | None = Field(description="The line it was judged against, in `unit`.")
    unit: str | None = Field(
        description="The unit of value and threshold: the currency (ISO 4217) for amounts, "
        "else fraction, seconds, requests or calls; null for an alert without figures."
    )
    currency: str = Field(description="The currency of every amount in the alert (ISO 4217).")
    limit: str | None = Field(
        description="A budget or forecast alert's budget limit its figures are of (kept from "
        "when it fired), exact decimal text; null for other rules."
    )
    fired_at: str
    resolved_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    silenced_until: str | None
    notifications_sent: int
    detail: dict[str, Any]


class SilenceIn(Body):
    """How long to silence an alert."""

    seconds: StrictFloat = Field(gt=0, le=30 * 86_400)


class HeartbeatIn(Body):
    """A service saying it is alive (for the service-offline rule)."""

    service: NameText = NAME


class HeartbeatOut(BaseModel):
    """A heartbeat recorded."""

    service: str
    at: str


class TestIn(Body):
    """A channel to send a test notification through."""

    channel: NameText = Field(min_length=1, max_length=100)


class TestOut(BaseModel):
    """Whether the channel took the test notification."""

    channel: str
    delivered: bool
    error: str | None


class NotificationOut(BaseModel):
    """One outbox row: a notification and its delivery."""

    key: str
    alert_id: str
    channel: str
    state: Literal["pending", "delivered", "dead"] = Field(
        description="pending (to be tried, again), delivered, or dead: ended undelivered "
        "because its channel was deleted, never tried again"
    )
    created_at: str
    attempts: int
    next_attempt_at: str
    delivered_at: str | None
    dead_at: str | None
    last_error: str | None


class StreamDayOut(BaseModel):
    """One trading day of the seed's `usage_monitoring` table (the store's view of that
    name holds the same rows)."""

    id: int = Field(description="the row's id: its first event's, as in the store's view")
    date: str = Field(description="the trading date (the exchange session's), YYYY-MM-DD")
    events_processed: int
    data_bytes: int
    estimated_cost: str = Field(
        description="exact decimal text (the view's column is the seed's REAL)"
    )
    currency: str = Field(description="The currency of every amount here (ISO 4217).")
    connection_time: float = Field(description="hours connected")
    created_at: str = Field(description="the row's first event's time, UTC ISO 8601")


class HealthOut(BaseModel):
    """Whether the server's store answers and takes writes (`spendgate.health.Health`)."""

    status: Literal["ok", "degraded"]
    store: Literal["ok", "unreachable"]
    writes: Literal["ok", "failing"] = Field(
        description="failing while this process's latest write failed, until one succeeds"
    )
    last_write_error_at: str | None = Field(
        description="when a write last failed (kept once writes succeed again)"
    )
    last_write_error: StoreFailure | None = Field(
        description="what kind of failure that was (never a path or host)"
    )
    as_of: str
