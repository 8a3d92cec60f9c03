"""Every spendgate error pickles with its message and fields, whatever its constructor takes
(an error crosses to another process, or into a task queue's result)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from spendgate.errors import (
    BudgetExceededError,
    ReservationStateError,
    SpendgateError,
    UnknownSourceError,
    ValidationError,
)


@pytest.mark.parametrize(
    "error",
    [
        BudgetExceededError("daily", Decimal("1.5"), Decimal("0.25")),
        ValidationError("units", {"MB": -1}, "a number of units of zero or more"),
        UnknownSourceError("gpt-9", ["gpt-4o"]),
        ReservationStateError("r1", "committed", "commit"),
        SpendgateError("plain"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_pickles_with_its_fields(error: SpendgateError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.__dict__ == error.__dict__
