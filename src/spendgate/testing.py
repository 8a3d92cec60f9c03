"""Helpers for testing code that uses spendgate: a clock you move by hand.

>>> from datetime import timedelta
>>> clock = FrozenClock()
>>> before = clock()
>>> clock.advance(timedelta(hours=1)) - before
datetime.timedelta(seconds=3600)
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FrozenClock:
    """A clock that stands still until told to move. Thread-safe."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("start: expected a timezone-aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by `delta` (a timedelta or seconds); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("delta: time only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (forward only)."""
        when = when.astimezone(UTC)
        with self._lock:
            if when < self._now:
                raise ValueError("when: time only moves forward")
            self._now = when
