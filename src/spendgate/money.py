"""Exact money: integers of nano-units (10^-9) of the deployment currency.

Every amount in the store and in every comparison is an `int` of nano-units (`Nanos`).
`Decimal` is for the edges (parsing user input, showing figures). `float` is accepted as input
only through its shortest decimal repr (so `0.002` means exactly 0.002) and never used for
arithmetic on money.

>>> to_nanos("0.002")
2000000
>>> from_nanos(2_000_000)
Decimal('0.002')
>>> format_money(12_345_678_900)
'$12.35'
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import ParamSpec, TypeVar

from spendgate.errors import ValidationError

Nanos = int
"""An amount of money in nano-units (10^-9) of the deployment currency."""

NANOS_PER_UNIT = 10**9
DEFAULT_CURRENCY = "USD"
# Every stored integer must fit a signed 64-bit column (9.2e18 nanos) with room to add hundreds
# of maximal amounts, so one amount (a call's cost, a budget's limit) is at most ten million
# currency units (1e16 nano-units). Anything larger is a typo, not a budget.
MAX_AMOUNT = Decimal(10**7)
MAX_NANOS: Nanos = int(MAX_AMOUNT) * NANOS_PER_UNIT
# Sums are bounded too: a stored total (a budget window's usage, a rollup's cost, a quota
# counter) holds at most a billion currency units (1e18 nano-units), a hundred maximal
# amounts. A statement adds at most that much again to a total, so everything it computes
# stays below 3e18, far inside 64 bits (9.2e18): SQLite never turns a sum into a float and
# PostgreSQL never reports `bigint out of range`. A write that would pass it is refused.
MAX_TOTAL_AMOUNT = Decimal(10**9)
MAX_TOTAL: Nanos = int(MAX_TOTAL_AMOUNT) * NANOS_PER_UNIT

P = ParamSpec("P")
T = TypeVar("T")

EXACT = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""The context all money and price arithmetic runs in, whatever the caller's context says:
60 digits hold any amount and any per-unit rate exactly; rounding to nano-units is explicit."""


def exact(fn: Callable[P, T]) -> Callable[P, T]:
    """Run `fn` in the `EXACT` decimal context (a caller's `prec=6` must not change money)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with localcontext(EXACT):
            return fn(*args, **kwargs)

    return run


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
"""A number as people write one in text: ASCII digits with at most one point (`2.50`, `.5`).
Python's `Decimal` takes far more (`"1_000"`, `"1e3"`, Unicode digits such as `"١٢"`,
`"NaN"`): each would be a second spelling of an amount, so text is read by this rule only."""
MONEY_PATTERN = rf"^\$?{NUMBER}$"
"""The rule for an amount written as text: a `NUMBER`, optionally after `$` (a JSON Schema
pattern; the HTTP API's `Money` type states it)."""
MONEY_RULE = (
    'an amount written with ASCII digits and at most one point, optionally after "$", such as '
    '"2.50" (no spaces, underscores or exponents)'
)
NUMBER_RULE = (
    'a number written with ASCII digits and at most one point, such as "2.5" (no spaces, '
    "underscores or exponents)"
)
_MONEY = re.compile(rf"(-?)\$?({NUMBER})")
_NUMBER = re.compile(rf"(-?)({NUMBER})")
_BLANK = " \t\r\n"  # what may surround a number in text (and nothing inside it)


def plain_number(value: float | Decimal, places: int = 4, *, grouped: bool = False) -> str:
    """A measured figure (seconds, a rate, a ratio) written out: never in exponent form
    (20420.0 is `20420`, or `20,420` `grouped` for people, never `2.042e+04`), `places`
    decimals at most, no trailing zeros.

    >>> plain_number(20420.0), plain_number(0.00001), plain_number(1234.5, grouped=True)
    ('20420', '0', '1,234.5')
    """
    if not math.isfinite(value):
        return str(value)
    text = f"{value:{',' if grouped else ''}.{places}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def currency_symbol(currency: str) -> str | None:
    """The symbol people read for `currency` (`$` for USD), or `None` if it has none here."""
    return _SYMBOLS.get(currency)


@exact
def to_decimal(value: object, field: str = "amount") -> Decimal:
    """Read a money-like input (`Decimal`, `int`, `str`, `float`) as an exact, finite `Decimal`.

    Refuses booleans, NaN, infinities, negative numbers and amounts above `MAX_AMOUNT`, naming
    `field` in the error.
    """
    return _decimal(value, field)


def _decimal(value: object, field: str) -> Decimal:
    """`to_decimal()`, in any context: it converts and compares, which never rounds (a NaN,
    whose comparison would trap, is refused before)."""
    if isinstance(value, bool):
        raise ValidationError(field, value, "a number of currency units, not a boolean")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips: 0.002 -> "0.002", not 0.00200000000004.
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        amount = number_text(value, field, money=True)
    else:
        raise ValidationError(field, value, f"a number such as 0.002, or {MONEY_RULE}")
    if not amount.is_finite():
        raise ValidationError(field, value, "a finite number")
    if amount.is_signed():  # "-0" too: the rule has no sign
        raise ValidationError(field, value, "an amount of zero or more")
    if amount > MAX_AMOUNT:
        raise ValidationError(field, value, f"an amount of at most {MAX_AMOUNT:,}")
    return amount


def number_text(text: str, field: str, *, money: bool = False) -> Decimal:
    """A number written as text, by the one rule for it (`NUMBER`: ASCII digits with at most
    one point; with `money`, optionally after `$`). A leading `-` is read, so that a negative
    amount is refused for what it is by the caller; spaces may surround the number, never
    stand inside it.

    >>> number_text(" $2.50", "limit", money=True)
    Decimal('2.50')
    """
    match = (_MONEY if money else _NUMBER).fullmatch(text.strip(_BLANK))
    if match is None:
        raise ValidationError(field, text, MONEY_RULE if money else NUMBER_RULE)
    return Decimal(match[1] + match[2])


def to_nanos(value: object, field: str = "amount") -> Nanos:
    """Convert a money input to nano-units, rounding half-even to the nearest nano-unit."""
    if type(value) is str:  # callers repeat the same few amounts: read each once
        return _text_nanos(value, field)
    return decimal_to_nanos(_decimal(value, field))  # one decimal context, not two


@functools.lru_cache(maxsize=4096)
def _text_nanos(text: str, field: str) -> Nanos:
    return decimal_to_nanos(to_decimal(text, field))


@exact
def decimal_to_nanos(amount: Decimal) -> Nanos:
    """Round an exact `Decimal` amount of currency units to nano-units (half-even)."""
    return int((amount * NANOS_PER_UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))


@exact
def from_nanos(nanos: Nanos) -> Decimal:
    """The exact `Decimal` value of an amount of nano-units, without trailing zeros."""
    value = Decimal(nanos).scaleb(-9).normalize()
    # normalize() writes 10 as 1E+1; whole amounts keep plain digits.
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def money_text(nanos: Nanos) -> str:
    """An amount as an exact decimal string for machines: `"0.0000001"`, never `"1E-7"`."""
    return f"{from_nanos(nanos):f}"


def money_number(nanos: Nanos) -> float:
    """An amount as the plain JSON number the seeds compare and format (`live_metrics`, an
    alert's `data`): its exact decimal text, read. Never the only form of an amount: the
    exact text (`money_text()`) goes beside it."""
    return float(money_text(nanos))


@exact
def format_money(nanos: Nanos, currency: str = DEFAULT_CURRENCY, places: int = 2) -> str:
    """Show an amount for people: `$12.35`, `-$0.50`, `EUR 3.10` for unknown symbols.

    Sub-cent amounts keep enough places to stay visible (`$0.0015`).
    """
    value = from_nanos(abs(nanos))
    if value and value < Decimal(10) ** -places:
        shown = f"{value:f}"
    else:
        shown = f"{value.quantize(Decimal(10) ** -places, rounding=ROUND_HALF_EVEN):,f}"
    sign = "-" if nanos < 0 else ""
    symbol = currency_symbol(currency)
    return f"{sign}{symbol}{shown}" if symbol else f"{sign}{currency} {shown}"
