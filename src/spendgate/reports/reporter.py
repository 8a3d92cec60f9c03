"""`Reporter`: reads what a report needs through an `Analyst` (a handful of reads of the
rollups whatever the number of events, and one grouped scan of the month's events for their
location labels) and builds the report model.

>>> from spendgate import Gate
>>> from spendgate.reports import Reporter
>>> gate = Gate.open("memory://")
>>> report = Reporter(gate).monthly(gate.clock().strftime("%Y-%m"))
>>> report.to_dict()["executive_summary"]["total_monthly_cost"]
'0'
>>> gate.close()
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from spendgate.alerts.notices import alert_dict
from spendgate.analytics import Analyst
from spendgate.errors import ValidationError
from spendgate.gate import Gate
from spendgate.reports import model
from spendgate.reports.model import Budgets, Previous, Report, Setting
from spendgate.store.base import Alert
from spendgate.windows import FIRST_DAY, LAST_DAY, to_micros

ALERTS_READ = 10_000  # alerts read at a time (the store's most), back to the period's start
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
MONTH_RULE = f"a month as YYYY-MM (01 to 12) from {FIRST_DAY:%Y-%m} to {LAST_DAY:%Y-%m}"


class Reporter:
    """Monthly and weekly reports of one gate's store, as the `Analyst` reads it (days in the
    `[analytics]` time zone from its reset hour, budgets measured as it measures them)."""

    def __init__(self, source: Gate | Analyst) -> None:
        self.analyst = source if isinstance(source, Analyst) else Analyst(source)

    @property
    def _gate(self) -> Gate:
        return self.analyst.gate

    def month_bounds(self, month: date | str) -> tuple[date, datetime, datetime]:
        """The month's first day and its `[start, end)` in the reporting zone; a month that
        has not begun, or one not written `YYYY-MM`, is a `ValidationError`."""
        first = parse_month(month)
        a = self.analyst
        start, end = a.months.bounds(datetime(first.year, first.month, 15, 12, tzinfo=a.days.zone))
        now = self._gate.clock()
        if start > now:
            current = a.local_day(now).strftime("%Y-%m")
            raise ValidationError("month", month, f"a month up to the current one ({current})")
        return first, start, end

    def monthly(self, month: date | str) -> Report:
        """The seed's monthly cost report for `month` (`YYYY-MM`, or any day in it).

        The current month is reported to date, with its forecast; a past month in full.
        """
        first, start, end = self.month_bounds(month)
        a = self.analyst
        now = self._gate.clock()
        summary = a.summary(None, since=start, until=end)
        first_day = a.local_day(start)
        last_day = a.local_day(end - timedelta(microseconds=1))
        days = a.series(last_day, last_day.toordinal() - first_day.toordinal() + 1)
        current = start <= now < end
        if current:  # the days to come carry nothing yet: they are not reported as $0 days
            today = a.local_day(now)
            days = [d for d in days if d.day <= today or d.total.requests]
        at = start + (end - start) / 2
        day_budget = a.period_budget("day", at)
        month_budget = a.period_budget("month", at)
        return model.monthly(
            first,
            summary,
            days,
            Budgets(
                None if day_budget is None else day_budget.amount_nanos,
                None if month_budget is None else month_budget.amount_nanos,
                a.traditional_cost,
                None if month_budget is None else month_budget.describe(),
            ),
            a.opportunities_between(start, end),
            generated_at=now,
            currency=self._gate.config.currency,
            timezone=a.days.tz,
            assessment=a.monthly_forecast() if current else None,
            locations=a.by_location(start, end),
            setting=self._setting(start, end, self._month_before(start, now, end)),
        )

    def weekly(self, end: date | str | None = None) -> Report:
        """The seed's weekly budget report: seven local days ending with `end` (by default
        yesterday), with the week's days, services and charts."""
        a = self.analyst
        figures = a.weekly_report(end)
        last = figures.days[-1].day
        now = self._gate.clock()
        if last > a.local_day(now):
            raise ValidationError("end", end, f"a day up to today ({a.local_day(now).isoformat()})")
        summary = model.week_summary(figures.days, now)
        week_start = figures.days[0].day
        previous = None
        if week_start - timedelta(days=7) >= FIRST_DAY:  # none before the calendar's start
            before = a.summary(None, since=week_start - timedelta(days=7), until=week_start)
            previous = Previous(
                week_start - timedelta(days=7), week_start - timedelta(days=1), before.total.cost
            )
        return model.weekly(
            figures.to_dict(),
            summary,
            figures.days,
            Budgets(figures.daily_limit_nanos, None, a.traditional_cost),
            generated_at=now,
            currency=self._gate.config.currency,
            timezone=a.days.tz,
            setting=self._setting(summary.since, summary.until, previous),
            found=figures.opportunities,
        )

    def _month_before(self, start: datetime, now: datetime, end: datetime) -> Previous | None:
        """The month before the one starting at `start`, over as long as this one has run
        (all of it for a month that is over): month to date against the same days before.
        None before the first month spendgate reports on."""
        a = self.analyst
        if a.local_day(start) <= FIRST_DAY:
            return None
        before_start, before_end = a.months.bounds(start - timedelta(days=15))
        until = min(before_end, before_start + (min(now, end) - start))
        cost = a.summary(None, since=before_start, until=until).total.cost
        return Previous(
            a.local_day(before_start), a.local_day(until - timedelta(microseconds=1)), cost
        )

    def _setting(self, since: datetime, until: datetime, previous: Previous | None) -> Setting:
        """The store, the previous period and the alerts fired in `[since, until)`."""
        config = self._gate.config
        alerts = [alert_dict(alert, config) for alert in self._alerts(since, until)]
        return Setting(self._gate.store.where, previous, alerts)

    def _alerts(self, since: datetime, until: datetime) -> Iterator[Alert]:
        """The alerts fired in `[since, until)`, newest first, read a page at a time (the
        store's largest). The store pages by time alone: alerts that share the microsecond a
        full page ends in are cut at it, which takes more than a page of alerts in a
        period."""
        first, before = to_micros(since), to_micros(until)
        while True:
            page = self._gate.store.alerts(limit=ALERTS_READ, before=before)
            for alert in page:
                if alert.fired_at < first:
                    return
                yield alert
            if len(page) < ALERTS_READ:
                return
            before = page[-1].fired_at


def parse_month(value: object) -> date:
    """A month: `YYYY-MM` text or a `date` in it, inside the days spendgate reports on
    (`spendgate.windows.FIRST_DAY` to `LAST_DAY`); its first day."""
    first: date | None = None
    if isinstance(value, datetime):
        first = value.date().replace(day=1)
    elif isinstance(value, date):
        first = value.replace(day=1)
    elif isinstance(value, str) and (m := _MONTH.fullmatch(value.strip())):
        year, month = int(m[1]), int(m[2])
        if 1 <= month <= 12:
            first = date(year, month, 1)
    if first is None or not FIRST_DAY <= first <= LAST_DAY:
        raise ValidationError("month", value, f"{MONTH_RULE}, e.g. 2026-10")
    return first


def monthly_report(source: Gate | Analyst, month: date | str) -> Report:
    """`Reporter(source).monthly(month)`."""
    return Reporter(source).monthly(month)


def weekly_report(source: Gate | Analyst, end: date | str | None = None) -> Report:
    """`Reporter(source).weekly(end)`."""
    return Reporter(source).weekly(end)
