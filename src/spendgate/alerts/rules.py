"""Alert rules: measured values in, findings out. Pure.

Each rule judges one scope (a budget, a service, a source, everything) and says whether its
condition is `active`, `clear` (back past the threshold by the hysteresis band: a firing
alert resolves) or inside the band (nothing changes). The engine reads the values from the
store; budget crossings are not judged here at all: the store raises them in the transaction
that crosses (see `store.alerting.crossing_alert`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from spendgate.budgets import Budget
from spendgate.money import Nanos, decimal_to_nanos, from_nanos, money_text, plain_number
from spendgate.pricing import RateLimit
from spendgate.rollups import Tally
from spendgate.settings import AlertSettings, Severity

Judgement = Literal["active", "clear", "hold"]


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule saw for one scope. `key` names the condition for the period it is judged
    in, so processes that judge alike name the same alert."""

    rule: str
    scope: str
    judgement: Judgement
    severity: Severity
    value: str
    threshold: str
    period: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        """The id of the alert this finding raises."""
        return f"{self.rule}:{self.scope}:{self.period}"


def judge_above(value: float, threshold: float, band: float) -> Judgement:
    """Active at or above `threshold`; clear below it by `band` of it; else hold."""
    if value >= threshold:
        return "active"
    return "clear" if value < threshold * (1 - band) else "hold"


def judge_below(value: float, threshold: float, band: float) -> Judgement:
    """Active below `threshold`; clear at or above it by `band` of it; else hold."""
    if value < threshold:
        return "active"
    return "clear" if value >= threshold * (1 + band) else "hold"


@dataclass(frozen=True, slots=True)
class BudgetStanding:
    """A budget in its current window: what the forecast rule projects."""

    budget: Budget
    used: Nanos
    window_start: int  # µs
    window_end: datetime
    burn_per_second: float  # nano-units a second, lately


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The values the scheduled rules judge, read at `now` (`period` is the evaluation's
    time bucket, µs)."""

    now: datetime
    period: int
    recent: Tally
    """Every event in the last `settings.window`."""
    hour_cost: Nanos = 0
    """Spend so far in this hour."""
    hour_fraction: float = 1.0
    """How much of this hour has passed."""
    baseline: Sequence[Nanos] = ()
    """Spend in the same hour of each of the previous days."""
    budgets: Sequence[BudgetStanding] = ()
    last_seen: Mapping[str, datetime] = field(default_factory=dict)
    """Each known service's last event or heartbeat."""
    source_requests: Mapping[str, tuple[int, RateLimit]] = field(default_factory=dict)
    """Requests in each rate-limited source's quota period, and its quota."""
    unpriced_recent: int = 0
    fail_open: int = 0
    """Calls approved unchecked since the last evaluation (a fail-open budget)."""


def findings(snap: Snapshot, s: AlertSettings) -> list[Finding]:
    """Every scheduled rule's finding for `snap`."""
    out: list[Finding] = []
    out += _free_source_rate(snap, s)
    out += _cost_spike(snap, s)
    out += _anomaly(snap, s)
    out += _forecast(snap, s)
    out += _offline(snap, s)
    out += _rate_limits(snap, s)
    out += _health(snap)
    return out


def _free_source_rate(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    if s.free_source_rate_below is None or snap.recent.requests < s.min_requests:
        return
    rate = snap.recent.free_source_success_rate
    yield Finding(
        "free_source_rate",
        "all",
        judge_below(rate, s.free_source_rate_below, s.hysteresis),
        "warning",
        f"{rate:.4f}",
        plain_number(s.free_source_rate_below),
        snap.period,
        {"requests": snap.recent.requests, "window_seconds": s.window.total_seconds()},
    )


def _cost_spike(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    if s.cost_per_request_above is None or snap.recent.requests < s.min_requests:
        return
    per_request = snap.recent.cost_per_request
    yield Finding(
        "cost_spike",
        "all",
        judge_above(per_request, s.cost_per_request_above, s.hysteresis),
        "warning",
        money_text(per_request),
        money_text(s.cost_per_request_above),
        snap.period,
        {"requests": snap.recent.requests},
    )


def _anomaly(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    """Spend this hour, at its pace, against the same hour on the previous days."""
    if s.anomaly_factor is None or len(snap.baseline) < 3 or snap.hour_fraction <= 0:
        return
    usual = sorted(snap.baseline)[len(snap.baseline) // 2]  # the median day
    if usual <= 0:
        return
    pace = snap.hour_cost / max(snap.hour_fraction, 1 / 60)
    yield Finding(
        "anomaly",
        "all",
        judge_above(pace, usual * s.anomaly_factor, s.hysteresis),
        "warning",
        money_text(round(pace)),
        money_text(round(usual * s.anomaly_factor)),
        snap.period,
        {"usual_hour": money_text(usual), "factor": s.anomaly_factor},
    )


def _forecast(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    """A budget whose current pace crosses the fraction before its window ends."""
    if s.forecast_fraction is None:
        return
    for b in snap.budgets:
        line = decimal_to_nanos(from_nanos(b.budget.limit) * s.forecast_fraction)
        left = max((b.window_end - snap.now).total_seconds(), 0.0)
        projected = b.used + b.burn_per_second * left
        crossed = b.used >= line  # the budget's own alert says so: the forecast is over
        yield Finding(
            "forecast",
            b.budget.name,
            "clear" if crossed else judge_above(projected, line, s.hysteresis),
            "warning",
            money_text(round(projected)),
            money_text(line),
            b.window_start,  # once per window
            {
                "fraction": str(s.forecast_fraction),
                "window_end": b.window_end.isoformat(),
                "used": money_text(b.used),
            },
        )


def _offline(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    if s.service_offline_after is None:
        return
    for service, seen in sorted(snap.last_seen.items()):
        quiet = snap.now - seen
        yield Finding(
            "service_offline",
            service,
            "active" if quiet >= s.service_offline_after else "clear",
            "critical",
            f"{quiet.total_seconds():.0f}s",
            f"{s.service_offline_after.total_seconds():.0f}s",
            snap.period,
            {"last_seen": seen.isoformat()},
        )


def _rate_limits(snap: Snapshot, s: AlertSettings) -> Iterable[Finding]:
    if s.rate_limit_fraction is None:
        return
    for source, (used, limit) in sorted(snap.source_requests.items()):
        yield Finding(
            "rate_limit",
            source,
            judge_above(used, limit.requests * s.rate_limit_fraction, s.hysteresis),
            "warning",
            str(used),
            plain_number(limit.requests * s.rate_limit_fraction),
            snap.period,
            {"quota": limit.requests, "per_seconds": limit.per.total_seconds()},
        )


def _health(snap: Snapshot) -> Iterable[Finding]:
    # An outage is raised once the store answers again (the engine does it); answering now,
    # it is over: a firing one resolves.
    yield Finding("store_unreachable", "all", "clear", "critical", "0s", "0s", snap.period)
    yield Finding(
        "unpriced_usage",
        "all",
        "active" if snap.unpriced_recent else "clear",
        "info",
        str(snap.unpriced_recent),
        "0",
        snap.period,
    )
    yield Finding(
        "fail_open",
        "all",
        "active" if snap.fail_open else "clear",
        "critical",
        str(snap.fail_open),
        "0",
        snap.period,
    )


def period_of(now_us: int, every: timedelta) -> int:
    """The evaluation bucket `now_us` falls in."""
    step = max(int(every.total_seconds() * 1_000_000), 1)
    return now_us - now_us % step
