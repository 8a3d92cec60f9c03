"""`Analyst`: reads the rollups and budgets through a gate and answers where the money went
and where it is heading. Every read is a handful of rollup rows, whatever the event count.

>>> from spendgate import Gate
>>> from spendgate.analytics import Analyst
>>> gate = Gate.open("memory://")
>>> analyst = Analyst(gate)
>>> analyst.live().to_dict()["live_figures"]["current_daily_spend"]["value"]
'0'
>>> gate.close()
"""

from __future__ import annotations

import threading
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from spendgate.analytics import forecast as forecasting
from spendgate.analytics import opportunities as rules
from spendgate.analytics.live import MIN_INTRADAY_HOURS, RATE_WINDOW, BudgetView, LiveMetrics
from spendgate.analytics.summaries import (
    BudgetPeriod,
    Cells,
    DailyBreakdown,
    Day,
    MonthlyAssessment,
    NextMonth,
    PeriodBudget,
    ServicePerformance,
    Summary,
    WeeklyReport,
    efficiency_outlook,
    merge_cells,
    period_budget,
    series_trends,
)
from spendgate.analytics.trends import StableRule
from spendgate.budgets import Budget, BudgetStatus
from spendgate.errors import ValidationError
from spendgate.gate import Gate
from spendgate.money import Nanos
from spendgate.rollups import Tally, floor_minute, total
from spendgate.settings import AnalyticsSettings, Config
from spendgate.store.base import LedgerStore
from spendgate.windows import (
    Window,
    from_micros,
    parse_date,
    require_aware,
    to_micros,
)

Period = Literal["today", "week", "month"]
PERIODS = ("today", "week", "month")
MAX_DAYS = 366
FORECAST_HISTORY = 120  # days of history a forecast is fitted and backtested on
SEASON = 7  # spend has a weekly rhythm
OUTLOOKS_KEPT = 4  # outlooks an analyst keeps (a day's history, a few horizons and levels)
NEXT_MONTH_DAYS = 30  # the seed's next_month_cost: the next 30 days, today included
_FAR = to_micros(datetime(9000, 1, 1, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class Frame:
    """What an analyst measures by under one configuration: the budgets, the one live
    metrics measure against, and the calendar days, weeks and months are counted in."""

    budgets: tuple[Budget, ...]
    settings: AnalyticsSettings
    budget: Budget | None
    days: Window
    weeks: Window
    months: Window

    @classmethod
    def of(cls, budgets: tuple[Budget, ...], s: AnalyticsSettings) -> Frame:
        """The frame of `budgets` under `[analytics]` settings `s`."""
        budget = _primary(budgets, s.budget)
        calendar = budget.window if budget and budget.window.kind != "rolling" else None
        tz = s.timezone or (calendar.tz if calendar else "UTC")
        reset = (
            s.reset_hour if s.reset_hour is not None else (calendar.reset_hour if calendar else 0)
        )
        return cls(
            budgets,
            s,
            budget,
            Window("day", tz, reset),
            Window("week", tz, reset, calendar.week_start if calendar else 0),
            Window("month", tz, reset),
        )


class Analyst:
    """Live metrics, summaries, budget analysis, trends, forecasts and opportunities.

    Days are counted in the `[analytics]` time zone from its reset hour (by default those of
    the budget it measures against). It follows the gate's configuration: a budget changed
    elsewhere (over the API, by another process) is measured by its new definition as soon
    as the gate sees it (within a second). Thread-safe; one per gate is enough.
    """

    def __init__(self, gate: Gate, settings: AnalyticsSettings | None = None) -> None:
        self.gate = gate
        self._settings = settings
        self._frame: tuple[Config, Frame] | None = None
        self._outlooks: dict[tuple[object, ...], forecasting.Outlook] = {}
        self._lock = threading.Lock()

    @property
    def frame(self) -> Frame:
        """The budgets and calendar of the configuration in effect (made again only when
        the gate's configuration changed)."""
        config = self.gate.config
        cached = self._frame
        if cached is not None and cached[0] is config:
            return cached[1]
        frame = Frame.of(config.budgets, self._settings or config.analytics)
        self._frame = (config, frame)
        return frame

    @property
    def budget(self) -> Budget | None:
        """The budget live metrics measure against: the one `[analytics] budget` names, else
        the first over everything, else the first."""
        return self.frame.budget

    @property
    def days(self) -> Window:
        """Days in the reporting zone, from its reset hour."""
        return self.frame.days

    @property
    def weeks(self) -> Window:
        """Weeks in the reporting zone."""
        return self.frame.weeks

    @property
    def months(self) -> Window:
        """Months in the reporting zone."""
        return self.frame.months

    @property
    def traditional_cost(self) -> Nanos | None:
        """The traditional cost per request savings are counted against (nano-units), or
        `None` when `[analytics] traditional_cost_per_request` is not configured."""
        return self.frame.settings.traditional_cost

    # -- reading ------------------------------------------------------------------------------

    @property
    def _ledger(self) -> LedgerStore:
        """All of the gate's store an analyst reads: the rollups' tallies (budgets' standing
        comes through the gate)."""
        return self.gate.store

    def _cells(
        self, spans: Sequence[tuple[datetime, datetime]], service: str | None = None
    ) -> Sequence[Cells]:
        """Tallies by (service, source) for each span, in one store read."""
        rows = self._ledger.tallies([(to_micros(a), to_micros(b)) for a, b in spans])
        out: list[dict[tuple[str, str], Tally]] = [{} for _ in spans]
        for i, sv, so, t in rows:
            if service is None or sv == service:
                out[i][(sv, so)] = t
        return out

    def _day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The `[start, end)` of a local day: the window that starts on `day` at the reset
        hour (found from twelve hours of wall time after it, inside it whatever the reset
        hour and however long a daylight-saving day)."""
        reset = datetime(day.year, day.month, day.day, self.days.reset_hour, tzinfo=self.days.zone)
        return self.days.bounds(reset + timedelta(hours=12))

    def _local_day(self, at: datetime) -> date:
        start, _ = self.days.bounds(at)
        return start.astimezone(self.days.zone).date()

    def _series(self, last: date, count: int, service: str | None = None) -> list[Day]:
        """`count` local days ending with `last`: one read of the tallies, then one of where
        each service's data begins (in that order: a first event can only move earlier, so
        every day with events in the tallies read is marked as having data)."""
        days = [date.fromordinal(last.toordinal() - count + 1 + i) for i in range(count)]
        bounds = [self._day_bounds(d) for d in days]
        cells = self._cells(bounds, service)
        firsts = self.first_days()
        if service is not None:
            firsts = {service: firsts[service]} if service in firsts else {}
        return [
            Day(d, a, b, c, frozenset(sv for sv, first in firsts.items() if first <= d))
            for d, (a, b), c in zip(days, bounds, cells, strict=True)
        ]

    def series(self, last: date, count: int, service: str | None = None) -> list[Day]:
        """`count` local days ending with `last` (of one service, when given), in one read;
        days before the first event are marked as without data (`Day.data`)."""
        return self._series(last, check_days(count), service)

    def first_days(self) -> dict[str, date]:
        """Each service's first day with data: the local day of its first event."""
        return {
            sv: self._local_day(from_micros(minute))
            for sv, minute in self._ledger.first_minutes().items()
        }

    def first_event(self) -> datetime | None:
        """When the store's first event happened (to the minute), or `None` before any."""
        minutes = self._ledger.first_minutes().values()
        return from_micros(min(minutes)) if minutes else None

    def first_day(self, service: str | None = None) -> date | None:
        """The first local day with data: the day of the store's first event (of
        `service`'s, when given), or `None` before any. Days before it are "no data", not $0
        days. One cheap store read, never cached: an event recorded later with an earlier
        time moves it."""
        firsts = self.first_days()
        return firsts.get(service) if service is not None else min(firsts.values(), default=None)

    def local_day(self, at: datetime) -> date:
        """The local day (in the reporting zone, from its reset hour) that contains `at`."""
        return self._local_day(at)

    def known_services(self) -> list[str]:
        """Services that recorded events, or that a budget is scoped to."""
        found = {sv for _, sv, _, _ in self._ledger.tallies([(0, _FAR)])}
        found |= {
            b.scope.value
            for b in self.gate.config.budgets
            if b.scope.kind == "service" and b.scope.value
        }
        return sorted(found)

    def _check_service(self, service: str | None) -> None:
        if service is None:
            return
        known = self.known_services()
        if service not in known:
            raise ValidationError(
                "service",
                service,
                f"a service with recorded events ({', '.join(known) or 'none yet'})",
            )

    # -- the figures --------------------------------------------------------------------------

    def live(self, statuses: Sequence[BudgetStatus] | None = None) -> LiveMetrics:
        """Current daily spend, budget remaining, rates, projection and runway, as of now.

        `statuses` are every budget's standing as `gate.status()` just read them: a face
        that shows them beside the live metrics passes them, so that both are one reading
        (the same limit, spent and time); without them the budget is read now.
        """
        frame = self.frame
        if statuses is None:
            statuses = self.gate.status() if frame.budget is not None else ()
        now = statuses[0].as_of if statuses else self.gate.clock()
        start, end = frame.days.bounds(now)
        # Rollups count whole minutes: the recent window starts on one, and runs to now
        # inclusive, so its length is exactly what its buckets cover.
        recent_start = max(start, from_micros(floor_minute(to_micros(now))) - RATE_WINDOW)
        inclusive = now + timedelta(microseconds=1)
        today, recent = self._cells([(start, end), (recent_start, inclusive)])
        return LiveMetrics(
            now,
            start,
            end,
            total(today),
            total(recent),
            now - recent_start,
            _budget_view(frame.budget, statuses, recent),
            frame.settings.traditional_cost,
            self.gate.config.currency,
            self.first_event(),
        )

    def summary(
        self,
        period: Period | None = "today",
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        service: str | None = None,
    ) -> Summary:
        """A period's figures by service and source: `today`, `week`, `month` (the current
        one), or any `since`/`until` range (dates are local days; `until` is exclusive)."""
        now = self.gate.clock()
        if since is not None or until is not None:
            if since is None or until is None:
                missing = "since" if since is None else "until"
                raise ValidationError(missing, None, "a date or time: a range needs both ends")
            a, b = self._instant(since, "since"), self._instant(until, "until")
            if b <= a:
                raise ValidationError("until", until, f"a time after since ({a.isoformat()})")
        else:
            a, b = self._period(period, now)
        self._check_service(service)
        (cells,) = self._cells([(a, b)], service)
        return Summary(a, b, now, cells, service, self.gate.config.currency)

    def _period(self, period: object, now: datetime) -> tuple[datetime, datetime]:
        windows = {"today": self.days, "week": self.weeks, "month": self.months}
        if period not in windows:
            raise ValidationError("period", period, f"one of {', '.join(PERIODS)}")
        return windows[str(period)].bounds(now)

    def _instant(self, value: object, field_name: str) -> datetime:
        if isinstance(value, datetime):
            return require_aware(value, field_name)
        return self._day_bounds(parse_date(value, field_name))[0]

    def daily(self, day: date | str) -> DailyBreakdown:
        """One local day: its summary and its hours (`data` False before the first event:
        no data, not a $0 day under budget)."""
        d = parse_date(day, "date")
        start, end = self._day_bounds(d)
        hours = []
        at = start
        while at < end:
            hours.append((at, min(at + timedelta(hours=1), end)))
            at += timedelta(hours=1)
        cells = self._cells([(start, end), *hours])
        summary = Summary(start, end, self.gate.clock(), cells[0], None, self.gate.config.currency)
        first = self.first_day()
        return DailyBreakdown(
            summary,
            d,
            [(h[0], total(c)) for h, c in zip(hours, cells[1:], strict=True)],
            self.period_budget("day", start),
            data=first is not None and d >= first,
        )

    def service_performance(self, service: str, days: int = 7) -> ServicePerformance:
        """A service's last `days` local days, today included; days before the service's
        first event have no data, and its trend lines are fitted on the days from it."""
        n = check_days(days)
        self._check_service(service)
        now = self.gate.clock()
        series = self._series(self._local_day(now), n, service)
        return ServicePerformance(service, series, now, self.gate.config.currency)

    def period_budget(
        self, period: BudgetPeriod, at: datetime | None = None
    ) -> PeriodBudget | None:
        """The budget a day's or a month's total spend is measured against, with the budget
        and scope it comes from (`summaries.period_budget()`, the one rule every face
        shows), in the month containing `at` (by default now)."""
        frame = self.frame
        month = frame.months.bounds(self.gate.clock() if at is None else at)
        return period_budget(frame.budgets, frame.settings.budget, period, month)

    def daily_limit(self, at: datetime | None = None) -> Decimal | None:
        """The day's budget of total spend (see `period_budget()`) in currency units, in the
        month containing `at` (by default now); `period_budget("day", at).amount_nanos` is
        the same in nano-units."""
        found = self.period_budget("day", at)
        return None if found is None else found.amount

    def weekly_report(self, end: date | str | None = None) -> WeeklyReport:
        """The seed's weekly budget analysis: seven days ending with `end` (yesterday). Its
        average, utilisation and days under or over budget count the days from the first
        event (`days_with_data`); a day before it is "no data", not a $0 day under budget."""
        now = self.gate.clock()
        last = (
            parse_date(end, "end")
            if end is not None
            else date.fromordinal(self._local_day(now).toordinal() - 1)
        )
        days = self._series(last, 7)
        before = self._series(date.fromordinal(last.toordinal() - 7), 7)
        found = rules.find(
            merge_cells(d.cells for d in days),
            merge_cells(d.cells for d in before),
            self.gate.config.prices.sources,
            timedelta(days=7),
        )
        return WeeklyReport(
            days,
            self.period_budget("day", now),
            self.traditional_cost,
            now,
            found,
            self.gate.config.currency,
        )

    def trends(
        self,
        days: int | str = 30,
        *,
        service: str | None = None,
        stable_rule: StableRule = "relative",
    ) -> dict[str, object]:
        """The seed's trend analysis over the last `days` complete local days (a number, or
        the seed's period token: "3_months", "2_weeks", "90_days", "1_year"; see
        `period_days()`): overall lines and each service's (cost, volume and cost per
        request), each fitted on the days from its first event (`days_with_data` of them
        overall), never on zeros before it; and the seed's `predictions`.

        The seed's names sit beside spendgate's: `overall_cost_trend` (= `cost_trend`), and
        per service `efficiency_trend` (= `cost_per_request_trend`, as in the monthly report)
        and `volume_trend` (= `request_volume_trend`). `stable_rule="seed"` decides "stable"
        by the seed's |slope| < 0.01 instead of spendgate's unit-free rule.
        """
        now = self.gate.clock()
        today = self._local_day(now)
        n = period_days(days, today)
        self._check_service(service)
        series = self._series(date.fromordinal(today.toordinal() - 1), n, service)
        services = sorted({sv for d in series for sv, _ in d.cells})
        overall = {k: v.to_dict() for k, v in series_trends(series, rule=stable_rule).items()}
        per_service = {
            sv: {k: v.to_dict() for k, v in series_trends(series, sv, rule=stable_rule).items()}
            for sv in services
        }
        for lines in (overall, *per_service.values()):
            lines["efficiency_trend"] = lines["cost_per_request_trend"]
            lines["volume_trend"] = lines["request_volume_trend"]
        overall["overall_cost_trend"] = overall["cost_trend"]
        return {
            "days": n,
            "time_period": days if isinstance(days, str) else f"{n}_days",
            "days_with_data": sum(d.data for d in series),
            "as_of": now.isoformat(),
            "stable_rule": stable_rule,
            **overall,
            "service_specific_trends": per_service,
            "predictions": {
                "next_month_cost": self.next_month_forecast().to_dict(),
                "cost_optimization_opportunities": [o.to_dict() for o in self.opportunities(n)],
                "efficiency_forecast": efficiency_outlook(overall),
            },
        }

    def next_month_forecast(self) -> NextMonth:
        """The seed's `next_month_cost`: the forecast core's projection of the next
        `NEXT_MONTH_DAYS` local days, today included (today never below what it has spent),
        on the same history and by the same rule as `monthly_forecast()`."""
        now = self.gate.clock()
        today, series, history, observed, intraday = self._forecast_history(now)
        outlook = self._outlook(
            tuple(history), NEXT_MONTH_DAYS, forecasting.DEFAULT_LEVEL, observed
        )
        start, _ = self._day_bounds(today)
        _, end = self._day_bounds(date.fromordinal(today.toordinal() + NEXT_MONTH_DAYS - 1))
        return NextMonth(
            start,
            end,
            NEXT_MONTH_DAYS,
            outlook,
            series[-1].total.cost,
            now,
            self.gate.config.currency,
            intraday,
        )

    def _forecast_history(
        self, now: datetime
    ) -> tuple[date, list[Day], list[float], float | None, timedelta | None]:
        """Today, the series of days from the first event (at most `FORECAST_HISTORY`) to
        today, and the history a forecast is fitted on (see `_history()`)."""
        today = self._local_day(now)
        first = self.first_event()
        oldest = (
            today
            if first is None
            else min(
                today,  # a first event ahead of the clock (a writer's clock minutes fast)
                max(self._local_day(first), date.fromordinal(today.toordinal() - FORECAST_HISTORY)),
            )
        )
        series = self._series(today, today.toordinal() - oldest.toordinal() + 1)
        history, observed, intraday = self._history(series, first, now)
        return today, series, history, observed, intraday

    def monthly_forecast(self, *, level: float = forecasting.DEFAULT_LEVEL) -> MonthlyAssessment:
        """Where the month is heading: the forecast `forecast.outlook()` chooses for the days
        left (with its method, confidence, interval and why), every method's projection and
        backtest beside it, and the assessment against the monthly budget.

        The history is the complete days from the first event (days before it are no data),
        at most `FORECAST_HISTORY` of them. A first day whose data began less than
        `MIN_INTRADAY_HOURS` before its end is left out (so few hours say nothing of a day);
        a first day that began later than its start counts for the part it covers. With no
        complete day, today counts for the hours it has once it has `MIN_INTRADAY_HOURS` of
        data; before that there is no projection ("insufficient history").
        """
        now = self.gate.clock()
        today, series, history, observed, intraday = self._forecast_history(now)
        month_start, month_end = self.months.bounds(now)
        month_first = self._local_day(month_start)
        last_day = self._local_day(month_end - timedelta(microseconds=1))
        horizon = last_day.toordinal() - today.toordinal() + 1
        outlook = self._outlook(tuple(history), horizon, level, observed)
        in_month = [d for d in series if d.day >= month_first]
        spent = sum(d.total.cost for d in in_month)
        today_spent = in_month[-1].total.cost if in_month else 0
        return MonthlyAssessment(
            month_start,
            month_end,
            today.toordinal() - month_first.toordinal() + 1,
            last_day.toordinal() - today.toordinal(),
            spent,
            spent - today_spent,
            today_spent,
            outlook,
            self.period_budget("month", now),
            now,
            today,
            self.gate.config.currency,
            intraday=intraday,
        )

    def _history(
        self, series: Sequence[Day], first: datetime | None, now: datetime
    ) -> tuple[list[float], float | None, timedelta | None]:
        """The daily totals a forecast is fitted on, how many days they cover (`None`: each a
        whole day), and when they are today's hours alone, how many; see
        `monthly_forecast()`."""
        if first is None or first > now:
            return [], None, None
        need = MIN_INTRADAY_HOURS
        complete = list(series[:-1])
        covered = 1.0
        if complete:
            start, end = self._day_bounds(complete[0].day)
            covered = (end - max(first, start)) / (end - start)
            # Under six hours says nothing of a day; and once a model can be fitted, a partial
            # first day would read to it as a quiet whole one.
            if end - max(first, start) < need or (
                covered < 1 and len(complete) > forecasting.model_history(SEASON)
            ):
                complete, covered = complete[1:], 1.0
        if complete:
            totals = [d.total.cost / 1e9 for d in complete]
            return totals, (len(totals) - 1 + covered if covered < 1 else None), None
        start, end = self._day_bounds(series[-1].day)
        hours = now - max(first, start)
        if hours < need:
            return [], None, None
        return [series[-1].total.cost / 1e9], hours / (end - start), hours

    def _outlook(
        self, history: tuple[float, ...], horizon: int, level: float, observed: float | None
    ) -> forecasting.Outlook:
        """Fitting and backtesting take a second or two: a day's history is fitted once per
        horizon and level (the last `OUTLOOKS_KEPT` of them are kept)."""
        key = (history, horizon, level, observed)
        with self._lock:
            found = self._outlooks.get(key)
        if found is None:
            found = forecasting.outlook(
                history, horizon, season=SEASON, level=level, observed=observed
            )
            with self._lock:
                # The month's horizon and next_month_cost's: keep a few, newest last.
                kept = list(self._outlooks.items())[-(OUTLOOKS_KEPT - 1) :]
                self._outlooks = {**dict(kept), key: found}
        return found

    def monthly_budget(self, at: datetime | None = None) -> Decimal | None:
        """The month's budget of total spend (see `period_budget()`) in currency units, for
        the month containing `at` (by default this month); `period_budget("month",
        at).amount_nanos` is the same in nano-units."""
        found = self.period_budget("month", at)
        return None if found is None else found.amount

    def projected_crossing(self, fraction: float) -> date | None:
        """The local day the month's projected spend first reaches `fraction` (0.8 = 80%) of
        the monthly budget, or `None`: what alert rules ask."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not fraction > 0:
            raise ValidationError("fraction", fraction, "a share of the budget above 0, e.g. 0.8")
        return self.monthly_forecast().crossing(float(fraction))

    def opportunities(self, days: int = 7) -> list[rules.Opportunity]:
        """Savings to be had, over the last `days` (today included), largest first."""
        n = check_days(days)
        now = self.gate.clock()
        window = timedelta(days=n)
        now_cells, before = self._cells([(now - window, now), (now - 2 * window, now - window)])
        return rules.find(now_cells, before, self.gate.config.prices.sources, window)

    def opportunities_between(self, since: datetime, until: datetime) -> list[rules.Opportunity]:
        """Savings to be had over `[since, until)`, against the span of equal length before
        it, largest first."""
        a, b = require_aware(since, "since"), require_aware(until, "until")
        if b <= a:
            raise ValidationError("until", until, f"a time after since ({a.isoformat()})")
        cells, before = self._cells([(a, b), (a - (b - a), a)])
        return rules.find(cells, before, self.gate.config.prices.sources, b - a)


def _budget_view(
    budget: Budget | None, statuses: Sequence[BudgetStatus], recent: Cells
) -> BudgetView | None:
    """The measured budget as `statuses` have it, with its own recent spend (the rollups
    know a call's service and source, not its labels: a label's spend is `None`)."""
    if budget is None:
        return None
    status = next((s for s in statuses if s.budget.name == budget.name), None)
    if status is None:
        return None
    b = status.budget
    in_scope = (
        None
        if b.scope.kind == "label"
        else total({k: t for k, t in recent.items() if b.scope.matches(*k)})
    )
    return BudgetView(
        b.name,
        str(b.scope),
        b.limit,
        status.balance.used,
        status.window_end,
        None if in_scope is None else in_scope.cost,
    )


def _primary(budgets: Sequence[Budget], name: str | None) -> Budget | None:
    """The named budget, else the first over everything, else the first."""
    if name is not None:
        return next((b for b in budgets if b.name == name), None)
    for b in budgets:
        if b.scope.kind == "all":
            return b
    return budgets[0] if budgets else None


_UNITS = {"day": 0, "week": 0, "month": 1, "year": 12}


def period_days(value: object, today: date) -> int:
    """A window of whole days ending yesterday: a number (1 to 366, or its digits), or the
    seed's period token "N_days", "N_weeks", "N_months", "N_years" (singular too: "1_month";
    bare "week", "month", "year" mean one). Months and years are calendar ones: "3_months" on
    20 October is the days from 20 July, 92 of them.

    >>> period_days("3_months", date(2026, 10, 20)), period_days("2_weeks", date(2026, 10, 20))
    (92, 14)
    """
    if isinstance(value, str):
        token = value.strip().lower()
        whole = _count(token)
        if whole is not None:
            return _period_check(value, whole)
        count, _, unit = token.rpartition("_")
        unit = unit[:-1] if unit.endswith("s") else unit
        k = 1 if count == "" else _count(count)
        if unit in _UNITS and k is not None:
            if unit in {"day", "week"}:
                return _period_check(value, k * (7 if unit == "week" else 1))
            months = k * _UNITS[unit]
            y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
            back = date(y, m + 1, min(today.day, monthrange(y, m + 1)[1])) if y > 0 else None
            return _period_check(value, MAX_DAYS + 1 if back is None else (today - back).days)
        raise ValidationError(
            "time_period",
            value,
            f"a number of days (1 to {MAX_DAYS}) or a period such as 30_days, 2_weeks, "
            "3_months, 1_year",
        )
    return check_days(value)


def _count(text: str) -> int | None:
    """ASCII digits as a count (other scripts' digits are not), else `None`. Past nine
    significant digits the count is cut there: still far past any period, and never a
    4,301-digit number for `int()` to refuse."""
    if not text.isascii() or not text.isdigit():
        return None
    return int(text.lstrip("0")[:10] or "0")


def _period_check(value: str, days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(
            "time_period", value, f"a period of 1 to {MAX_DAYS} days (this one is {days})"
        )
    return days


def check_days(days: object) -> int:
    """A window of whole days, 1 to 366."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValidationError("days", days, f"a whole number of days from 1 to {MAX_DAYS}")
    return days
