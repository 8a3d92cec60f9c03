"""When an alert is due a notification, and what it says. Pure.

A firing alert is announced once (round 1), repeated every `repeat_every` while it fires
unacknowledged and unsilenced, and its resolution is announced once. Rounds are numbered so
that several evaluators enqueue each one once (`Store.enqueue`).

An alert's `value` and `threshold` are text in one form per rule (`unit_of()`): amounts of
the deployment currency as exact decimal text (`"0.081"`, never nano-units), a fraction
as a decimal (`"0.4500"`), a duration as seconds (`"120s"`), a count as digits. Every face
that shows an alert (the HTTP API, the WebSocket, the JSON webhook, Slack, email, SMS, the
CLI) says its `unit` and, for amounts, its `currency`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from spendgate.budgets import Budget
from spendgate.errors import ValidationError
from spendgate.money import (
    DEFAULT_CURRENCY,
    Nanos,
    decimal_to_nanos,
    format_money,
    from_nanos,
    money_number,
    money_text,
    number_text,
    to_nanos,
)
from spendgate.settings import AlertSettings, ChannelSettings, Config
from spendgate.store.base import Alert
from spendgate.windows import duration_micros, from_micros

Kind = Literal["firing", "repeat", "resolved"]
COLOURS = {"info": "good", "warning": "warning", "critical": "danger"}
TITLES = {
    "budget": "Budget {scope} at {percent}",
    "forecast": "Budget {scope} heading past {percent} before its window ends",
    "free_source_rate": "Free-source success rate {value} below {threshold}",
    "cost_spike": "Cost per request {value} above {threshold}",
    "anomaly": "Spend this hour {value} against a usual {threshold}",
    "service_offline": "Service {scope} silent for {value}",
    "rate_limit": "Source {scope} at {value} requests of its quota",
    "unpriced_usage": "Unpriced usage seen ({value} calls)",
    "fail_open": "Calls approved unchecked while the store was unreachable ({value})",
    "store_unreachable": "The store did not answer for {value}",
    "test": "spendgate test notification",
    "report": "Monthly cost report for {scope} is ready",
}
TYPES = {
    "forecast": "budget_forecast",
    "free_source_rate": "free_source_rate_low",
    "cost_spike": "cost_spike",
    "anomaly": "spend_anomaly",
    "service_offline": "service_offline",
    "rate_limit": "rate_limit_approaching",
    "unpriced_usage": "unpriced_usage",
    "fail_open": "approved_unchecked",
    "store_unreachable": "store_unreachable",
    "test": "test",
    "report": "report_ready",
}
"""The seed's alert `type` of each rule; a budget alert's is `high_usage` below its limit and
`budget_exceeded` at or past it (the seed's `DailyBudgetController`), see `type_of()`."""
DESCRIPTIONS = {
    "high_usage": "Budget {scope} ({window}) has used {percent} of its limit of {limit}: "
    "{value} used, {remaining} left.",
    "budget_exceeded": "Budget {scope} ({window}) has reached {percent} of its limit of "
    "{limit}: {value} used, {overage} over.",
    "budget_forecast": "At its recent pace budget {scope} ({window}) is heading for {value} "
    "by the end of its window, past its line of {threshold}.",
    "free_source_rate_low": "Free sources served {value} of recent requests, below the "
    "{threshold} expected.",
    "cost_spike": "The average cost per request, {value}, is above the alert line of {threshold}.",
    "spend_anomaly": "Spend this hour is running at {value}, against a usual {threshold} "
    "for this hour.",
    "service_offline": "Service {scope} has sent no event or heartbeat for {value} (the "
    "alert line is {threshold}).",
    "rate_limit_approaching": "Source {scope} has taken {value} requests in its quota "
    "period, at or past the alert line of {threshold}.",
    "unpriced_usage": "{value} calls to sources without a price were recorded recently.",
    "approved_unchecked": "{value} calls were approved without a budget check while the "
    "store was unreachable.",
    "store_unreachable": "The store did not answer for {value}; calls in that time were "
    "decided without it.",
    "test": "A test notification from spendgate.",
    "report_ready": "The monthly cost report for {scope} has been written.",
}
_BUDGET_ACTIONS = [
    "Monitor free source success rates",
    "Consider enabling emergency budget if critical",
    "Review cost optimization opportunities",
]
ACTIONS = {
    "high_usage": _BUDGET_ACTIONS,
    "budget_exceeded": ["Route requests to free sources until the budget resets", *_BUDGET_ACTIONS],
    "budget_forecast": ["Review the month's forecast", "Shift traffic to free sources"],
    "free_source_rate_low": [
        "Check the free sources' health and errors",
        "Review cache hit rates",
        "Expect more paid calls until free sources recover",
    ],
    "cost_spike": [
        "Find the service or source behind the higher cost per request",
        "Review cost optimization opportunities",
    ],
    "spend_anomaly": ["Find the service spending more than usual this hour"],
    "service_offline": ["Check that the service is running and can reach spendgate"],
    "rate_limit_approaching": [
        "Spread the source's requests over its quota period",
        "Shift requests to free sources",
    ],
    "unpriced_usage": ["Give the sources a price (spendgate.toml or PUT /api/prices)"],
    "approved_unchecked": [
        "Check the store's health",
        "Review the spend approved while it was unchecked",
    ],
    "store_unreachable": ["Check the store's health and the connection to it"],
}
"""The seed's `recommended_actions` of each alert type (a budget's are the seed's own)."""
DEFAULT_ACTIONS = ["Open the dashboard for details"]
FIGURES: dict[str, tuple[str, str | None]] = {
    "forecast": ("projected_usage", "forecast_line"),
    "free_source_rate": ("free_source_success_rate", "threshold"),
    "cost_spike": ("cost_per_request", "threshold"),
    "anomaly": ("hour_spend_pace", "threshold"),
    "service_offline": ("silent_seconds", "threshold_seconds"),
    "rate_limit": ("requests", "threshold"),
    "unpriced_usage": ("unpriced_calls", None),
    "fail_open": ("approved_unchecked", None),
    "store_unreachable": ("outage_seconds", None),
}
"""What an alert's `value` and `threshold` are called in its `data` (as numbers), for the
rules other than `budget` (whose `data` is the seed's)."""
_DETAIL_NUMBERS = frozenset({"fraction", "limit", "used", "usual_hour"})
"""Detail items kept as decimal text that `data` gives as numbers."""


MONEY_RULES = frozenset({"budget", "forecast", "cost_spike", "anomaly"})
"""The rules whose value and threshold are amounts of the deployment currency."""
UNITS = {
    "free_source_rate": "fraction",
    "service_offline": "seconds",
    "store_unreachable": "seconds",
    "rate_limit": "requests",
    "unpriced_usage": "calls",
    "fail_open": "calls",
}
"""What the value and threshold of the other rules measure."""


def unit_of(rule: str, currency: str = DEFAULT_CURRENCY) -> str | None:
    """What an alert's value and threshold measure: `currency` for amounts (decimal text of
    currency units), else `fraction`, `seconds`, `requests` or `calls`; `None` for an alert
    without figures (a test notification, a report)."""
    return currency if rule in MONEY_RULES else UNITS.get(rule)


def due(alert: Alert, now: int, repeat_every: timedelta) -> tuple[int, Kind] | None:
    """The notification round `alert` is due at `now`, if any."""
    silenced = alert.silenced_until is not None and alert.silenced_until > now
    if alert.state == "firing":
        if silenced:
            return None
        if alert.rounds == 0:
            return 1, "firing"
        last = alert.notified_at or alert.fired_at
        if alert.acknowledged_at is None and now - last >= duration_micros(repeat_every):
            return alert.rounds + 1, "repeat"
        return None
    # Resolved: announced once, if its firing was.
    resolved = alert.resolved_at
    if alert.rounds > 0 and resolved is not None and (alert.notified_at or 0) < resolved:
        return alert.rounds + 1, "resolved"
    return None


@dataclass(frozen=True, slots=True)
class Message:
    """One notification in every form a channel may want."""

    key: str
    subject: str
    text: str
    html: str
    sms: str
    slack: dict[str, Any]
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """What the outbox keeps."""
        return {
            "key": self.key,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "sms": self.sms,
            "slack": self.slack,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class _Facts:
    """What every face of one alert says, worked out once: the budget it is about (as
    defined now), its limit and usage (nano-units), and its usage as a percentage."""

    budget: Budget | None
    limit: Nanos | None
    used: Nanos | None
    percent: str


def _facts(alert: Alert, config: Config) -> _Facts:
    about_budget = alert.rule in ("budget", "forecast")
    budget = (
        next((b for b in config.budgets if b.name == alert.scope), None) if about_budget else None
    )
    limit = _limit(alert, budget) if about_budget else None
    used: Nanos | None = None
    if alert.rule == "budget":
        used = _amount(alert.value)
    elif alert.rule == "forecast":
        used = _amount(alert.detail.get("used"))
    fraction = _fraction(alert)
    if alert.rule == "budget" and used is not None and limit:
        percent = f"{Decimal(used) / limit * 100:.1f}%"
    else:
        percent = "" if fraction is None else f"{float(fraction) * 100:.0f}%"
    return _Facts(budget, limit, used, percent)


def _limit(alert: Alert, budget: Budget | None) -> Nanos | None:
    """The limit a budget alert's figures are of: the one kept with the alert when it fired
    (`detail.limit`), else the budget's now, else what its line and fraction imply (an alert
    kept before its limit was)."""
    kept = _amount(alert.detail.get("limit"))
    if kept:
        return kept
    if budget is not None:
        return budget.limit
    line, fraction = _amount(alert.threshold), _fraction(alert)
    if line is None or not fraction:
        return None
    return decimal_to_nanos(from_nanos(line) / fraction)


def _fraction(alert: Alert) -> Decimal | None:
    raw = alert.detail.get("fraction")
    try:
        return None if raw is None else number_text(str(raw), "fraction")
    except ValidationError:
        return None


def _amount(text: object) -> Nanos | None:
    """An amount an alert holds (decimal text of currency units) in nano-units, if it is one."""
    if not isinstance(text, str):
        return None
    try:
        return _nanos(text)
    except ValidationError:
        return None


def _nanos(text: str) -> int:
    """An amount an alert holds (decimal text of currency units) in nano-units."""
    return to_nanos(number_text(text, "value", money=True), "value")


def _money(value: str | None, currency: str) -> str:
    """An alert's amount for people (`$0.081`); text that is not an amount as it is."""
    if value is None:
        return "-"
    try:
        return format_money(_nanos(value), currency)
    except ValidationError:
        return value


def _figure(rule: str, text: object) -> float | int | None:
    """One of an alert's figures (`value`, `threshold`, a detail) as the JSON number the
    seed's templates format: amounts in currency units, fractions as fractions, seconds,
    counts; `None` if it is not a number."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return None
    if isinstance(text, int | float):
        return text
    try:
        number = number_text(text.removesuffix("s"), "value")
    except ValidationError:
        return None
    if rule in MONEY_RULES:
        return money_number(to_nanos(number, "value"))
    whole = number == number.to_integral_value() and UNITS.get(rule) != "fraction"
    return int(number) if whole else float(number)


def type_of(alert: Alert) -> str:
    """The seed's `type` of an alert: a budget line below the limit is `high_usage`, at or
    past it `budget_exceeded` (the seed's `DailyBudgetController`); the other rules' are in
    `TYPES`."""
    if alert.rule == "budget":
        fraction = _fraction(alert)
        over = alert.severity == "critical" if fraction is None else fraction >= 1
        return "budget_exceeded" if over else "high_usage"
    return TYPES.get(alert.rule, alert.rule)


def _data(alert: Alert, facts: _Facts) -> dict[str, Any]:
    """The seed's `data` of an alert: for a budget, its usage against its limit as numbers
    (`usage_percentage` a fraction, `current_usage`, `daily_budget`: the budget's limit for
    its own window, `remaining_budget`, and `overage` once exceeded), which budget and
    window; for the other rules their figures, named (`FIGURES`)."""
    rule = alert.rule
    data: dict[str, Any] = {}
    if rule in ("budget", "forecast"):
        b, limit, used = facts.budget, facts.limit, facts.used
        data["budget"] = alert.scope
        data["window"] = None if b is None else b.window.kind
        data["scope"] = None if b is None else str(b.scope)
        data["window_start"] = _when(alert.window_start)
        if used is not None and limit:
            data["usage_percentage"] = float(Decimal(used) / limit)
            data["current_usage"] = money_number(used)
            data["daily_budget"] = money_number(limit)
            data["remaining_budget"] = money_number(limit - used)
            if type_of(alert) == "budget_exceeded":
                data["overage"] = money_number(max(used - limit, 0))
    if rule == "budget":
        data["threshold"] = _figure(rule, alert.threshold)
        fraction = _fraction(alert)
        data["fraction"] = None if fraction is None else float(fraction)
        data["rung"] = alert.detail.get("rung")
        return data
    named = FIGURES.get(rule)
    if named is not None:
        data[named[0]] = _figure(rule, alert.value)
        if named[1] is not None:
            data[named[1]] = _figure(rule, alert.threshold)
    for key, item in alert.detail.items():
        if key == "used" and rule == "forecast":
            continue  # it is current_usage
        data.setdefault(key, _figure(rule, item) if key in _DETAIL_NUMBERS else item)
    if rule in ("service_offline", "rate_limit"):
        data["service" if rule == "service_offline" else "source"] = alert.scope
    return data


def _description(alert: Alert, facts: _Facts, config: Config) -> str:
    """The seed's `description`: one sentence of what happened, with the figures."""
    currency = config.currency
    value, threshold = _shown(alert, currency)
    if UNITS.get(alert.rule) == "fraction":
        value, threshold = (_as_percent(x) for x in (value, threshold))
    limit, used = facts.limit, facts.used
    money = {
        "limit": "-" if limit is None else format_money(limit, currency),
        "remaining": "-" if limit is None or used is None else format_money(limit - used, currency),
        "overage": "-"
        if limit is None or used is None
        else format_money(max(used - limit, 0), currency),
    }
    kind = type_of(alert)
    if kind == "high_usage" and limit is not None and used is not None and used >= limit:
        kind = "budget_exceeded"  # a lower line crossed by a call that went past the limit
    template = DESCRIPTIONS.get(kind)
    if template is None:
        return title_of(alert, config) + "."
    return template.format(
        scope=alert.scope,
        window="-" if facts.budget is None else f"{facts.budget.window.kind} window",
        percent=facts.percent,
        value=value,
        threshold=threshold,
        **money,
    )


def _as_percent(text: str) -> str:
    try:
        return f"{float(number_text(text, 'value')) * 100:.1f}%"
    except ValidationError:
        return text


def _when(us: int | None) -> str | None:
    return None if us is None else from_micros(us).isoformat()


def render(
    alert: Alert, kind: Kind, round_: int, channel: ChannelSettings, config: Config
) -> Message:
    """The notification of round `round_` of `alert` for `channel`: the seed's budget email
    and Slack message for budgets, the same shape for every other rule; its `data` (the JSON
    webhook's body) is the alert as `alert_dict()` shows it, with the round."""
    settings, currency = config.alerts, config.currency
    shown = alert_dict(alert, config)
    facts = _facts(alert, config)
    budget = alert.rule == "budget"
    value, threshold = _shown(alert, currency)
    title = shown["title"]
    prefix = {"firing": "", "repeat": "Still firing: ", "resolved": "Resolved: "}[kind]
    when = from_micros(
        alert.resolved_at or alert.fired_at if kind == "resolved" else alert.fired_at
    )
    severity = "info" if kind == "resolved" else alert.severity
    dashboard = settings.dashboard_url
    actions = shown["recommended_actions"]
    limit, used = facts.limit, facts.used
    rows = [("Alert type", alert.rule), ("Time", when.isoformat()), ("Severity", severity.upper())]
    figures: list[tuple[str, str]] = []
    if budget:
        figures = [
            ("Budget", alert.scope),
            ("Limit", "-" if limit is None else format_money(limit, currency)),
            ("Current usage", value),
            (
                "Remaining",
                "-" if limit is None or used is None else format_money(limit - used, currency),
            ),
            ("Usage percentage", facts.percent),
        ]
    else:
        figures = [("Measured", value), ("Threshold", threshold)]
    subject = f"🚨 spendgate cost alert: {prefix}{title}"
    text_lines = [
        f"{prefix}{title}",
        shown["description"],
        *(f"{k}: {v}" for k, v in rows + figures),
    ]
    if kind != "resolved":
        text_lines += ["Recommended actions:", *(f"- {a}" for a in actions)]
    if dashboard:
        text_lines.append(f"Dashboard: {dashboard}")
    html = (
        f"<h2>Cost {'Budget ' if budget else ''}Alert</h2>"
        + f"<p>{shown['description']}</p>"
        + "".join(f"<p><strong>{k}:</strong> {v}</p>" for k, v in rows)
        + "<h3>Budget Status</h3>" * budget
        + "<ul>"
        + "".join(f"<li>{k}: {v}</li>" for k, v in figures)
        + "</ul>"
        + (
            "<h3>Recommended Actions</h3><ul>" + "".join(f"<li>{a}</li>" for a in actions) + "</ul>"
            if kind != "resolved"
            else ""
        )
        + (f'<p><a href="{dashboard}">View Live Cost Dashboard</a></p>' if dashboard else "")
    )
    slack_fields = [
        {"title": k, "value": v, "short": True} for k, v in (figures[1:5] if budget else figures)
    ]
    slack: dict[str, Any] = {
        "attachments": [
            {
                "color": COLOURS[severity],
                "title": f"{prefix}{title}",
                "text": shown["description"],
                "fields": slack_fields,
                "actions": [{"type": "button", "text": "View Dashboard", "url": dashboard}]
                if dashboard
                else [],
            }
        ]
    }
    key = f"{alert.alert_id}/{round_}/{channel.name}"
    return Message(
        key=key,
        subject=subject,
        text="\n".join(text_lines),
        html=html,
        sms=f"spendgate {severity.upper()}: {prefix}{title}"[:300],
        slack=slack,
        data={"key": key, "kind": kind, "round": round_, **shown, "dashboard_url": dashboard},
    )


def _shown(alert: Alert, currency: str) -> tuple[str, str]:
    """An alert's value and threshold for people: amounts as money (`$0.081`)."""
    if alert.rule in MONEY_RULES:
        return _money(alert.value, currency), _money(alert.threshold, currency)
    return alert.value or "", alert.threshold or ""


def title_of(alert: Alert, config: Config | None = None) -> str:
    """An alert's one-line title (amounts in the configuration's currency)."""
    config = Config() if config is None else config
    value, threshold = _shown(alert, config.currency)
    if UNITS.get(alert.rule) == "fraction":  # a rate reads as a percentage
        value, threshold = (_as_percent(x) for x in (value, threshold))
    return TITLES.get(alert.rule, alert.rule).format(
        scope=alert.scope,
        percent=_facts(alert, config).percent,
        value=value,
        threshold=threshold,
    )


def channels_for(alert: Alert, settings: AlertSettings) -> list[ChannelSettings]:
    """The channels an alert goes to: those that take its severity (the seed's `sms` only
    `critical`). The evaluator enqueues to these, and the alert's `notification_channels`
    names them."""
    return [c for c in settings.channels if alert.severity in c.severities]


def alert_dict(alert: Alert, config: Config | None = None) -> dict[str, Any]:
    """An alert, JSON-ready, as every face shows it (the HTTP API, the WebSocket's
    `cost_alert`, the JSON webhook's body, `spendgate alerts list --json`).

    spendgate's fields (its `rule`, `value` and `threshold` as exact text with their `unit`,
    `currency` for amounts; `limit`, the budget's limit its figures are of, same text) beside
    the seed's (`CostAlertSystem.create_budget_alert`): `alert_id`, `type`, `severity`,
    `timestamp` (when it fired), `title`, `description`, `data` (figures as numbers, see
    `_data()`), `recommended_actions`, `notification_channels` (the configured channels that
    take its severity). `config` is the configuration in effect (its currency, budgets,
    channels); the defaults when left out.
    """
    config = Config() if config is None else config
    currency = config.currency
    facts = _facts(alert, config)
    return {
        "alert_id": alert.alert_id,
        "type": type_of(alert),
        "rule": alert.rule,
        "scope": alert.scope,
        "severity": alert.severity,
        "state": alert.state,
        "timestamp": _when(alert.fired_at),
        "title": title_of(alert, config),
        "description": _description(alert, facts, config),
        "data": _data(alert, facts),
        "recommended_actions": list(ACTIONS.get(type_of(alert), DEFAULT_ACTIONS)),
        "notification_channels": [c.name for c in channels_for(alert, config.alerts)],
        "value": alert.value,
        "threshold": alert.threshold,
        "unit": unit_of(alert.rule, currency),
        "currency": currency,
        "limit": None if facts.limit is None else money_text(facts.limit),
        "fired_at": _when(alert.fired_at),
        "resolved_at": _when(alert.resolved_at),
        "acknowledged_at": _when(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "silenced_until": _when(alert.silenced_until),
        "notifications_sent": alert.rounds,
        "detail": dict(alert.detail),
    }


def test_message(
    channel: ChannelSettings,
    settings: AlertSettings,
    now: int,
    currency: str,
) -> dict[str, Any]:
    """A test notification for `channel` (what `spendgate alerts test` sends)."""
    alert = Alert(
        alert_id=f"test:{channel.name}:{now}",
        rule="test",
        scope=channel.name,
        severity="info",
        state="firing",
        fired_at=now,
    )
    config = Config(currency=currency, alerts=settings)
    return render(alert, "firing", 1, channel, config).payload()
