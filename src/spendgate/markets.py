"""Market hours and trading days, from exchange calendars (the second seed's market gate).

`MarketHours` says whether a market trades at a time, why not, and which **trading day** a
time belongs to. Stream usage is kept by trading day, by one rule that every face follows
(the meter writes the date on each settlement; history, REST, the dashboard and the store's
`usage_monitoring` view read it):

1. a time inside one of the calendar's sessions belongs to that session's date (a CME Globex
   session for D runs from 17:00 Chicago time on D-1 to 17:00 on D, so a message at 18:00 on
   Monday belongs to Tuesday);
2. any other time (a weekend, a holiday, between sessions, beyond the installed calendar)
   falls back to the date in the exchange's time zone, the day starting at the hour its
   sessions open when they open the evening before (CME: 17:00), else at midnight;
3. with no calendar configured (or one that cannot be loaded), the UTC date (`UTC_DAYS`).

Never an exception for a well-formed time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from spendgate.errors import ConfigError, SpendgateError, ValidationError
from spendgate.settings import StreamSettings
from spendgate.windows import require_aware

ONE_DAY = timedelta(days=1)


class TradingDays(Protocol):
    """The rule that dates stream usage: a time's trading date, and when that date ends."""

    def trading_date(self, at: datetime) -> date:
        """The trading date `at` (an aware datetime) belongs to."""
        ...

    def trading_day_end(self, at: datetime) -> datetime:
        """The first instant after `at` that belongs to another trading date."""
        ...


class UtcDays:
    """Trading days without a calendar: the UTC date."""

    def trading_date(self, at: datetime) -> date:
        """The UTC date of `at`."""
        return require_aware(at, "at").astimezone(UTC).date()

    def trading_day_end(self, at: datetime) -> datetime:
        """The next UTC midnight."""
        return datetime.combine(self.trading_date(at) + ONE_DAY, time(0), UTC)


UTC_DAYS = UtcDays()
"""The trading days of a deployment with no market calendar (`[streams] calendar` unset)."""


def trading_days(settings: StreamSettings) -> TradingDays:
    """The trading-day rule of a `[streams]` table: its calendar's, else UTC dates (also for
    a calendar that cannot be loaded: the dashboard's market tile says why)."""
    try:
        market = MarketHours.from_config(settings)
    except SpendgateError:  # an unknown calendar name, or exchange_calendars missing
        return UTC_DAYS
    return UTC_DAYS if market is None else market


DAILY_HALTS: dict[str, tuple[time, time]] = {"CMES": (time(16, 0), time(17, 0))}
"""Daily halts the installed calendars leave out, in the calendar's time zone: CME Globex
stops every trading day from 16:00 to 17:00 Chicago time (exchange_calendars' CMES runs its
sessions from 17:00 to 17:00 without it)."""


class MarketHours:
    """When a market is open, from `exchange_calendars` (CME Globex, `CMES`, by default).

    Weekends are closed unless `weekend_streaming` (the seed's `WEEKEND_STREAMING=false`);
    holidays and early closes come from the calendar. `trading_date()` dates a time by the
    exchange's sessions (see the module's rule).
    """

    def __init__(self, calendar: str = "CMES", *, weekend_streaming: bool = False) -> None:
        if not isinstance(calendar, str) or not calendar:
            raise ValidationError("calendar", calendar, "an exchange calendar name, e.g. CMES")
        try:
            import exchange_calendars as xc
        except ImportError:  # pragma: no cover - an extra of the package
            raise ConfigError(
                "market hours need exchange_calendars: pip install 'spendgate[markets]'"
            ) from None
        try:
            self._calendar = xc.get_calendar(calendar)
        except xc.errors.InvalidCalendarName:
            near = [n for n in xc.get_calendar_names() if calendar.upper()[:2] in n][:8]
            raise ValidationError(
                "calendar",
                calendar,
                f"an exchange calendar name such as {', '.join(near or ['CMES', 'XNYS'])}",
            ) from None
        self.name = calendar
        self.weekend_streaming = weekend_streaming
        self._last: tuple[datetime, MarketState] | None = None
        cal = self._calendar
        self.zone = ZoneInfo(str(cal.tz))
        # Sessions that open the evening before (CME Globex at 17:00) start the fallback's
        # day at that hour; others (a stock exchange opening at 09:30) at midnight.
        self.day_starts = cal.open_times[-1][1] if cal.open_offset < 0 else time(0)

    @classmethod
    def from_config(cls, settings: StreamSettings) -> MarketHours | None:
        """The market of a `[streams]` table (`None` when it names no calendar)."""
        if settings.calendar is None:
            return None
        return cls(settings.calendar, weekend_streaming=settings.weekend_streaming)

    def is_open(self, at: datetime) -> bool:
        """Whether the market trades at `at` (an aware datetime); see `state()`."""
        return self.state(at).open

    def state(self, at: datetime) -> MarketState:
        """Whether the market trades at `at`, and why not: a weekend (unless
        `weekend_streaming`), the exchange's daily halt (`DAILY_HALTS`), a holiday or the gap
        between sessions, or a time beyond the installed calendar (closed, with the
        calendar's range). Never raises for a well-formed time. Answers are kept per minute,
        so a meter asking on every message costs a comparison."""
        require_aware(at, "at")
        minute = at.astimezone(UTC).replace(second=0, microsecond=0)
        cached = self._last
        if cached is not None and cached[0] == minute:
            return cached[1]
        found = self._state(minute)
        self._last = (minute, found)
        return found

    def _state(self, minute: datetime) -> MarketState:
        import pandas as pd

        cal = self._calendar
        local = minute.astimezone(cal.tz)
        if not self.weekend_streaming and local.weekday() >= 5:
            return MarketState(False, "closed: weekend (WEEKEND_STREAMING is off)")
        halt = DAILY_HALTS.get(self.name)
        if halt is not None and halt[0] <= local.time() < halt[1]:
            return MarketState(
                False,
                f"closed: the daily halt, {halt[0]:%H:%M}-{halt[1]:%H:%M} {cal.tz}",
            )
        first, last = cal.first_minute, cal.last_minute
        if not first <= pd.Timestamp(minute) <= last:
            return MarketState(
                False,
                f"unknown: {minute.isoformat()} is beyond the installed {self.name} calendar "
                f"({first.date()} to {last.date()}); treated as closed (a newer "
                "exchange_calendars extends it)",
            )
        if cal.is_open_on_minute(pd.Timestamp(minute)):
            return MarketState(True, "open")
        return MarketState(False, "closed: outside the trading session (or a holiday)")

    def next_change(
        self, at: datetime, *, within: timedelta = timedelta(days=8)
    ) -> datetime | None:
        """The first whole minute after `at` at which the market opens or closes (a close,
        the daily halt, the weekend), or `None` if it does not within `within`: where a
        stream that follows the market must stop, or may start. Every edge of a market is a
        whole minute, so the answer is exact."""
        was_open = self.is_open(at)
        minute = at.astimezone(UTC).replace(second=0, microsecond=0)
        end = minute + within
        while minute < end:
            minute += timedelta(minutes=1)
            if self._state(minute).open != was_open:
                return minute
        return None

    # -- trading days -------------------------------------------------------------------------

    def trading_date(self, at: datetime) -> date:
        """The trading date of `at`: its session's date, else the fallback (see the module)."""
        import pandas as pd

        require_aware(at, "at")
        cal = self._calendar
        minute = pd.Timestamp(at.astimezone(UTC).replace(second=0, microsecond=0))
        if cal.first_minute <= minute <= cal.last_minute and cal.is_trading_minute(minute):
            return date.fromisoformat(
                cal.minute_to_session(minute, direction="none").strftime("%Y-%m-%d")
            )
        local = at.astimezone(self.zone)
        if self.day_starts != time(0) and local.time() >= self.day_starts:
            return local.date() + ONE_DAY
        return local.date()

    def trading_day_end(self, at: datetime) -> datetime:
        """The first instant after `at` whose trading date differs from `at`'s: a session's
        open or close, or the fallback's day start, whichever first changes the date."""
        current = self.trading_date(at)
        edge = at
        for _ in range(16):  # a few edges at most: a close, the gap, the next open
            edge = self._next_edge(edge)
            if self.trading_date(edge) != current:
                break
        return edge

    def _next_edge(self, after: datetime) -> datetime:
        """The next instant after `after` where the rule could change its answer."""
        import pandas as pd

        local = after.astimezone(self.zone)
        start = datetime.combine(local.date(), self.day_starts, self.zone)
        if start <= local:
            start = datetime.combine(local.date() + ONE_DAY, self.day_starts, self.zone)
        edges = [start.astimezone(UTC)]
        cal = self._calendar
        minute = pd.Timestamp(after.astimezone(UTC).replace(second=0, microsecond=0))
        if cal.first_minute <= minute < cal.last_minute:
            for step in (cal.next_open, cal.next_close):
                # Past the calendar's last session there is no such edge: the fallback's serves.
                with contextlib.suppress(ValueError):
                    edges.append(step(minute).to_pydatetime())
        return min(e for e in edges if e > after)


@dataclass(frozen=True, slots=True)
class MarketState:
    """Whether a market trades at a time (`open`) and, in a word or a line, why (`reason`:
    "open", "closed: ...", "unknown: ..." beyond the installed calendar)."""

    open: bool
    reason: str
