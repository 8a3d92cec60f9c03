"""Budget windows: day, week and month aligned to an IANA time zone with a reset hour, or rolling.

A calendar window starts when the local wall clock of its zone passes the reset hour on the
first day of the period. Where that wall time does not exist (the spring-forward gap) the
window starts at the instant the clock jumps past it; where it happens twice (fall back) it
starts at the first. Boundaries are computed in UTC, so every instant belongs to exactly one
window.

>>> from datetime import datetime, timezone
>>> w = Window("day", tz="America/New_York", reset_hour=6)
>>> start, end = w.bounds(datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc))
>>> start.isoformat(), end.isoformat()
('2026-03-08T10:00:00+00:00', '2026-03-09T10:00:00+00:00')
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from spendgate.errors import ValidationError
from spendgate.money import number_text, plain_number

WindowKind = Literal["day", "week", "month", "rolling"]
WINDOW_KINDS: tuple[WindowKind, ...] = ("day", "week", "month", "rolling")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def zone(name: str, field_name: str = "timezone") -> ZoneInfo:
    """Look up an IANA zone, refusing unknown names with a clear error."""
    if not isinstance(name, str):
        raise ValidationError(field_name, name, "an IANA time zone name such as 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a directory
        near = sorted(z for z in available_timezones() if name.lower() in z.lower())[:5]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ValidationError(
            field_name, name, f"an IANA time zone such as 'UTC' or 'Europe/Paris'{hint}"
        ) from None


def to_micros(at: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (the store's time)."""
    return duration_micros(at - EPOCH)


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime of integer microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)


LATEST = datetime(9000, 1, 1, tzinfo=UTC)
TIME_RULE = "a time from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z"
"""The times spendgate stores and places in windows: far enough inside Python's calendar
(years 1 to 9999) that no zone, window or duration around them leaves it."""
FIRST_DAY = date(1971, 1, 1)
LAST_DAY = date(8998, 12, 31)
"""The days (and months) spendgate reports on: the stored times with a year to spare at
each end, so that a day's zone, the weeks before it and its month stay inside them."""
DAY_RULE = f"a date as YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_DURATION = timedelta(days=3660)
"""The longest duration (a rolling window, a TTL, an alert's window): ten years."""
_AT_MOST = f"of at most {MAX_DURATION.days}d"


def require_aware(at: object, field_name: str = "time") -> datetime:
    """A timezone-aware datetime inside `TIME_RULE`'s range: anything else cannot be placed
    in a window (and past it, a window's bounds would leave the calendar)."""
    if not isinstance(at, datetime) or not _has_offset(at):
        raise ValidationError(field_name, at, "a timezone-aware datetime (e.g. with tzinfo=UTC)")
    if not EPOCH <= at < LATEST:
        raise ValidationError(field_name, at.isoformat(), TIME_RULE)
    return at


MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the gate's clock an event may be dated. A caller whose clock runs a
little fast is tolerated; further ahead is a mistake (a wrong zone, a wrong day), and such
an event would count in windows that have not begun."""
_MAX_SKEW_US = MAX_CLOCK_SKEW // timedelta(microseconds=1)
_SKEW_TEXT = f"{MAX_CLOCK_SKEW // timedelta(minutes=1)} minutes"


def require_not_ahead(at: datetime, at_us: int, now: datetime, field_name: str = "time") -> None:
    """Refuse an event's time `at` (`at_us` its microseconds) if it is more than
    `MAX_CLOCK_SKEW` ahead of `now`, the gate's clock: the one rule for every face that
    takes an event's time. The error says what the clock reads and the latest time allowed.
    """
    if at_us - to_micros(now) > _MAX_SKEW_US:
        raise ValidationError(
            field_name,
            at.isoformat(),
            f"a time at most {_SKEW_TEXT} ahead of the clock, which reads {now.isoformat()}: "
            f"no later than {(now + MAX_CLOCK_SKEW).isoformat()}",
        )


def _has_offset(at: datetime) -> bool:
    try:
        return at.utcoffset() is not None
    except ValueError:  # a tzinfo whose offset is a day or more
        return False


def parse_date(value: object, field_name: str) -> date:
    """A local date (a `date` or `YYYY-MM-DD` text) inside `DAY_RULE`'s range."""
    day: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _DAY.fullmatch(value):
        with contextlib.suppress(ValueError):  # no such day, such as 2026-02-30
            day = date.fromisoformat(value)
    if day is None or not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationError(field_name, value, DAY_RULE)
    return day


@dataclass(frozen=True, slots=True)
class Window:
    """A budget period.

    `kind` is `day`, `week`, `month` (calendar windows in zone `tz`, starting at `reset_hour`
    local time; weeks start on `week_start`, 0 = Monday) or `rolling` (the last `length`,
    kept in buckets of `granularity`; a rolling budget counts whole buckets, so it may count
    up to one bucket more than `length`, never less).
    """

    kind: WindowKind = "day"
    tz: str = "UTC"
    reset_hour: int = 0
    week_start: int = 0
    length: timedelta | None = None
    granularity: timedelta | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in WINDOW_KINDS:
            raise ValidationError("window", self.kind, f"one of {', '.join(WINDOW_KINDS)}")
        if isinstance(self.reset_hour, bool) or not isinstance(self.reset_hour, int):
            raise ValidationError("reset_hour", self.reset_hour, "a whole hour from 0 to 23")
        if not 0 <= self.reset_hour <= 23:
            raise ValidationError("reset_hour", self.reset_hour, "a whole hour from 0 to 23")
        if (
            isinstance(self.week_start, bool)
            or not isinstance(self.week_start, int)
            or not 0 <= self.week_start <= 6
        ):
            raise ValidationError("week_start", self.week_start, "0 (Monday) to 6 (Sunday)")
        object.__setattr__(self, "_zone", zone(self.tz))
        if self.kind == "rolling":
            if self.length is None or not timedelta(0) < self.length <= MAX_DURATION:
                raise ValidationError(
                    "length", self.length, f"a positive duration such as '24h', {_AT_MOST}"
                )
            gran = (
                self.granularity
                if self.granularity is not None
                else _default_granularity(self.length)
            )
            if gran <= timedelta(0) or gran > self.length:
                raise ValidationError(
                    "granularity", self.granularity, "a positive duration no longer than length"
                )
            object.__setattr__(self, "granularity", gran)
        elif self.length is not None or self.granularity is not None:
            field_name = "length" if self.length is not None else "granularity"
            value = self.length if self.length is not None else self.granularity
            raise ValidationError(field_name, value, "nothing: only rolling windows have one")

    @property
    def zone(self) -> ZoneInfo:
        """The window's time zone."""
        return self._zone

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        """The `[start, end)` of the window that contains `at`, both in UTC.

        For a rolling window this is the bucket that contains `at`.
        """
        at = require_aware(at).astimezone(UTC)
        if self.kind == "rolling":
            assert self.granularity is not None
            step = duration_micros(self.granularity)
            start_us = to_micros(at) // step * step
            return from_micros(start_us), from_micros(start_us + step)
        local_day = at.astimezone(self._zone).date()
        start = self._start_on(self._period_first_day(local_day))
        if start > at:
            start = self._start_on(self._period_first_day(self._previous_period_day(local_day)))
        end = self._start_on(self._next_period_first_day(self._period_first_day_of(start)))
        if end <= at:  # only when a reset falls inside a DST repeat; step forward once more
            start, end = end, self._start_on(self._next_period_first_day(self._local_day(end)))
        return start, end

    def span_start(self, at: datetime) -> datetime:
        """Where the budget's counting starts for a call at `at`.

        The window start for calendar windows; for rolling windows the start of the oldest
        bucket still inside `length`.
        """
        start, _ = self.bounds(at)
        if self.kind != "rolling":
            return start
        assert self.length is not None
        assert self.granularity is not None
        oldest = at.astimezone(UTC) - self.length
        step = duration_micros(self.granularity)
        return from_micros(to_micros(oldest) // step * step)

    def day_of(self, at: datetime) -> tuple[date, datetime, datetime]:
        """The local day that contains `at` by this window's calendar (its zone and reset
        hour): its date and its `[start, end)` in UTC.

        >>> Window("month", "America/New_York", 6).day_of(datetime(2026, 3, 2, 10, tzinfo=UTC))[0]
        datetime.date(2026, 3, 1)
        """
        day = self if self.kind == "day" else Window("day", self.tz, self.reset_hour)
        start, end = day.bounds(at)
        return start.astimezone(self._zone).date(), start, end

    # -- calendar arithmetic on local dates ---------------------------------------------------

    def _start_on(self, day: date) -> datetime:
        """The instant the local clock first reads `reset_hour` (or later) on `day`."""
        wall = datetime.combine(day, time(self.reset_hour))
        first = wall.replace(tzinfo=self._zone).astimezone(UTC)  # fold=0: first occurrence
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:
            return first
        # The reset hour falls in a DST gap: the window starts when the clock jumps over it,
        # which is not always on the hour (Pacific/Chatham jumps 02:45 -> 03:45). Search
        # between the two readings of the missing time for the first instant at or past it.
        lo = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        hi = first
        if lo > hi:
            lo, hi = hi, lo
        while hi - lo > timedelta(microseconds=1):
            mid = lo + (hi - lo) / 2
            if mid.astimezone(self._zone).replace(tzinfo=None) >= wall:
                hi = mid
            else:
                lo = mid
        return hi

    def _local_day(self, at: datetime) -> date:
        return at.astimezone(self._zone).date()

    def _period_first_day_of(self, start: datetime) -> date:
        return self._period_first_day(self._local_day(start))

    def _period_first_day(self, day: date) -> date:
        if self.kind == "week":
            return day - timedelta(days=(day.weekday() - self.week_start) % 7)
        if self.kind == "month":
            return day.replace(day=1)
        return day

    def _previous_period_day(self, day: date) -> date:
        first = self._period_first_day(day)
        return first - timedelta(days=1)

    def _next_period_first_day(self, first: date) -> date:
        if self.kind == "week":
            return first + timedelta(days=7)
        if self.kind == "month":
            return (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        return first + timedelta(days=1)


def duration_micros(delta: timedelta) -> int:
    """A duration as integer microseconds (exact, unlike `total_seconds()`)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _default_granularity(length: timedelta) -> timedelta:
    # 60 buckets per window: a rolling day counts at most 24 minutes extra.
    return max(length / 60, timedelta(seconds=1))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def duration_text(span: timedelta) -> str:
    """A duration as `parse_duration()` reads it back: plain seconds, never in exponent form
    (30 days is `"2592000s"`, not `"2.592e+06s"`).

    >>> duration_text(timedelta(days=30)), duration_text(timedelta(milliseconds=1500))
    ('2592000s', '1.5s')
    """
    return f"{plain_number(span.total_seconds(), 6)}s"


def parse_duration(text: str | int | float | timedelta, field_name: str) -> timedelta:
    """Read `"90s"`, `"15m"`, `"24h"`, `"7d"`, `"2w"` or a number of seconds as a duration."""
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, bool):
        raise ValidationError(field_name, text, "a duration such as '30s', '15m', '24h' or '7d'")
    elif isinstance(text, int | float):
        try:
            value = timedelta(seconds=text)
        except (ValueError, OverflowError):
            raise ValidationError(field_name, text, "a finite duration") from None
    else:
        raw = text.strip().lower()
        unit = _DURATION_UNITS.get(raw[-1:]) if raw else None
        number = raw[:-1] if unit else raw
        try:
            # The number by the one rule for numbers (`1_0s`, `１s` and `1e3s` are refused).
            seconds = number_text(number, field_name) * (unit or 1)
            value = timedelta(seconds=float(seconds))
        except (ValidationError, ValueError, OverflowError):
            raise ValidationError(
                field_name, text, "a duration such as '30s', '15m', '24h' or '7d'"
            ) from None
    if value <= timedelta(0):
        raise ValidationError(field_name, text, "a positive duration")
    if value > MAX_DURATION:
        raise ValidationError(field_name, text, f"a duration {_AT_MOST}")
    return value
