"""Time, injected: everything that needs "now" takes a `Clock`.

The core never reads the clock; the gate asks its clock once per call. Tests pass a
`spendgate.testing.FrozenClock` and move it forward instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current time: an aware `datetime` in UTC."""

    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    """The machine's clock, in UTC."""
    return datetime.now(UTC)
