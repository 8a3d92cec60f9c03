"""A gate the integrations' tests share, beside the fixtures of tests/conftest.py."""

from __future__ import annotations

from spendgate import Gate
from spendgate.config import parse
from spendgate.testing import FrozenClock


def paid_gate(clock: FrozenClock, **extra: object) -> Gate:
    """An in-memory gate with one free source (`osm`), two paid per request (`maps` at
    $0.002, `pricey` at $0.003), a stream (`databento_mbo`, per MB and per hour) and a $1.00
    daily budget, plus any `budgets=[...]` given."""
    return Gate.open(
        "memory://",
        clock=clock,
        config=parse(
            {
                "sources": {
                    "osm": {"price": "free"},
                    "maps": {"price": "0.002"},
                    "pricey": {"price": "0.003"},
                    "databento_mbo": {"price": {"MB": "0.01", "hour": "1.00"}},
                },
                "budgets": [{"name": "daily", "limit": "1.00"}, *extra.get("budgets", [])],
            }
        ),
    )  # type: ignore[misc]
