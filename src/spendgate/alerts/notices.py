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

from spendgate.errors import ValidationError
from spendgate.money import DEFAULT_CURRENCY, format_money, money_text, number_text, to_nanos
from spendgate.settings import AlertSettings, ChannelSettings
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
ACTIONS = {
    "budget": [
        "Monitor free source success rates",
        "Consider enabling emergency budget if critical",
        "Review cost optimization opportunities",
    ],
    "forecast": ["Review the month's forecast", "Shift traffic to free sources"],
}


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


def _percent(alert: Alert) -> str:
    fraction = alert.detail.get("fraction")
    if alert.rule == "budget" and alert.value and alert.threshold and fraction:
        limit = _nanos(alert.threshold) / Decimal(str(fraction))
        if limit:
            return f"{_nanos(alert.value) / limit * 100:.1f}%"
    return f"{float(Decimal(str(fraction))) * 100:.0f}%" if fraction else ""


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


def render(
    alert: Alert,
    kind: Kind,
    round_: int,
    channel: ChannelSettings,
    settings: AlertSettings,
    *,
    limit: int | None = None,
    currency: str = DEFAULT_CURRENCY,
) -> Message:
    """The notification of round `round_` of `alert` for `channel`: the seed's budget email
    and Slack message for budgets, the same shape for every other rule."""
    budget = alert.rule == "budget"
    percent = _percent(alert)
    value, threshold = _shown(alert, currency)
    title = title_of(alert, currency)
    prefix = {"firing": "", "repeat": "Still firing: ", "resolved": "Resolved: "}[kind]
    when = from_micros(
        alert.resolved_at or alert.fired_at if kind == "resolved" else alert.fired_at
    )
    severity = "info" if kind == "resolved" else alert.severity
    dashboard = settings.dashboard_url
    actions = ACTIONS.get(alert.rule, ["Open the dashboard for details"])
    remaining = None
    if budget and limit is not None and alert.value is not None:
        remaining = limit - _nanos(alert.value)
    rows = [("Alert type", alert.rule), ("Time", when.isoformat()), ("Severity", severity.upper())]
    figures: list[tuple[str, str]] = []
    if budget:
        figures = [
            ("Budget", alert.scope),
            ("Limit", "-" if limit is None else format_money(limit, currency)),
            ("Current usage", value),
            ("Remaining", "-" if remaining is None else format_money(remaining, currency)),
            ("Usage percentage", percent),
        ]
    else:
        figures = [("Measured", value), ("Threshold", threshold)]
    subject = f"🚨 spendgate cost alert: {prefix}{title}"
    text_lines = [f"{prefix}{title}", *(f"{k}: {v}" for k, v in rows + figures)]
    if kind != "resolved":
        text_lines += ["Recommended actions:", *(f"- {a}" for a in actions)]
    if dashboard:
        text_lines.append(f"Dashboard: {dashboard}")
    html = (
        f"<h2>Cost {'Budget ' if budget else ''}Alert</h2>"
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
                "text": f"{alert.rule} alert for {alert.scope}",
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
        data={
            "key": key,
            "kind": kind,
            "round": round_,
            "alert_id": alert.alert_id,
            "rule": alert.rule,
            "scope": alert.scope,
            "severity": alert.severity,
            "state": alert.state,
            "title": title,
            "value": alert.value,
            "threshold": alert.threshold,
            "unit": unit_of(alert.rule, currency),
            "currency": currency,
            "fired_at": from_micros(alert.fired_at).isoformat(),
            "resolved_at": None
            if alert.resolved_at is None
            else from_micros(alert.resolved_at).isoformat(),
            "detail": dict(alert.detail),
            "limit": None if limit is None else money_text(limit),
            "dashboard_url": dashboard,
        },
    )


def _shown(alert: Alert, currency: str) -> tuple[str, str]:
    """An alert's value and threshold for people: amounts as money (`$0.081`)."""
    if alert.rule in MONEY_RULES:
        return _money(alert.value, currency), _money(alert.threshold, currency)
    return alert.value or "", alert.threshold or ""


def title_of(alert: Alert, currency: str = DEFAULT_CURRENCY) -> str:
    """An alert's one-line title (amounts in `currency`)."""
    value, threshold = _shown(alert, currency)
    return TITLES.get(alert.rule, alert.rule).format(
        scope=alert.scope, percent=_percent(alert), value=value, threshold=threshold
    )


def alert_dict(alert: Alert, currency: str = DEFAULT_CURRENCY) -> dict[str, Any]:
    """An alert, JSON-ready, with its title, and the `unit` of its value and threshold
    (`currency` for amounts, see `unit_of()`)."""

    def when(us: int | None) -> str | None:
        return None if us is None else from_micros(us).isoformat()

    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "scope": alert.scope,
        "severity": alert.severity,
        "state": alert.state,
        "title": title_of(alert, currency),
        "value": alert.value,
        "threshold": alert.threshold,
        "unit": unit_of(alert.rule, currency),
        "currency": currency,
        "fired_at": when(alert.fired_at),
        "resolved_at": when(alert.resolved_at),
        "acknowledged_at": when(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "silenced_until": when(alert.silenced_until),
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
    return render(alert, "firing", 1, channel, settings, currency=currency).payload()
