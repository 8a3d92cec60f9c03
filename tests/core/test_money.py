"""Exact money: parsing amounts to nano-units, back to Decimal, and showing them; exact
whatever decimal context the caller has set."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendgate import Gate
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.money import (
    MAX_AMOUNT,
    MAX_NANOS,
    NANOS_PER_UNIT,
    decimal_to_nanos,
    format_money,
    from_nanos,
    money_text,
    plain_number,
    to_decimal,
    to_nanos,
)
from spendgate.testing import FrozenClock

# Decimals of at most 9 places between 0 and MAX_AMOUNT: exactly representable in nano-units.
nine_places = st.decimals(
    min_value=Decimal(0), max_value=MAX_AMOUNT, places=9, allow_nan=False, allow_infinity=False
)
nanos = st.integers(min_value=0, max_value=MAX_NANOS)


# -- accepted inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.002", 2_000_000),
        (0.002, 2_000_000),  # a float is read through its shortest repr, not its binary value
        (Decimal("0.002"), 2_000_000),
        ("2000", 2_000 * NANOS_PER_UNIT),
        (".5", 500_000_000),
        ("5.", 5 * NANOS_PER_UNIT),
        ("$1.50", 1_500_000_000),
        ("  3  ", 3 * NANOS_PER_UNIT),
        (0, 0),
        (7, 7 * NANOS_PER_UNIT),
        ("0.000000001", 1),
        (0.1, 100_000_000),
        (0.1 + 0.2, 300_000_000),  # repr is 0.30000000000000004: rounds to the nano
        (1e-9, 1),
        ("10000000", MAX_NANOS),  # MAX_AMOUNT itself is allowed
        (MAX_AMOUNT, MAX_NANOS),
    ],
)
def test_to_nanos_accepts(value: object, expected: int) -> None:
    assert to_nanos(value) == expected


def test_to_nanos_rounds_half_even_below_a_nano() -> None:
    assert to_nanos("1.0000000005") == 1_000_000_000  # tie -> even
    assert to_nanos("1.0000000015") == 1_000_000_002  # tie -> even
    assert to_nanos("1.00000000051") == 1_000_000_001
    assert decimal_to_nanos(Decimal("0.0000000004999")) == 0


def test_float_is_read_through_its_repr() -> None:
    # The binary value of 0.002 is 0.002000000000000000041633...; that must not leak in.
    binary = 0.002
    assert Decimal(binary) != Decimal("0.002")
    assert to_decimal(binary) == Decimal("0.002")


def test_from_nanos_examples() -> None:
    assert from_nanos(2_000_000) == Decimal("0.002")
    assert str(from_nanos(2_000_000)) == "0.002"
    assert str(from_nanos(10 * NANOS_PER_UNIT)) == "10"  # not 1E+1
    assert str(from_nanos(1_500_000_000)) == "1.5"
    assert str(from_nanos(0)) == "0"
    assert from_nanos(1) == Decimal("0.000000001")
    assert from_nanos(-250_000_000) == Decimal("-0.25")


@settings(max_examples=300)
@given(nine_places)
def test_decimal_round_trip_is_exact(amount: Decimal) -> None:
    n = to_nanos(amount)
    assert n == amount * NANOS_PER_UNIT
    assert from_nanos(n) == amount
    assert to_nanos(f"{amount:f}") == n  # text has no exponent: 0E-9 is not money's text


@settings(max_examples=300)
@given(nanos)
def test_nanos_round_trip_is_exact(n: int) -> None:
    assert to_nanos(from_nanos(n)) == n
    assert to_nanos(money_text(n)) == n


@settings(max_examples=200)
@given(
    st.decimals(min_value=Decimal(0), max_value=Decimal(10**6), places=9).filter(
        lambda d: len(d.normalize().as_tuple().digits) <= 15
    )
)
def test_float_of_a_short_decimal_costs_the_decimal(amount: Decimal) -> None:
    # A float with at most 15 significant digits prints back as that decimal.
    assert to_nanos(float(amount)) == to_nanos(amount)


# -- refused inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        -1,
        "-0.01",
        Decimal("-0.000000001"),
        -0.5,
        float("nan"),
        "NaN",
        Decimal("NaN"),
        Decimal("sNaN"),
        float("inf"),
        float("-inf"),
        "inf",
        "Infinity",
        Decimal("Infinity"),
        True,
        False,
        "10000000.000000001",
        10**7 + 1,
        1e8,
        "1e30",
        Decimal("1E+1000"),
        "$1,5",
        "1,5",
        "1,000",
        "abc",
        "",
        "   ",
        "1.2.3",
        "0x10",
        "1 000",
        "$",
        # Text is ASCII digits and one point: no second spelling of an amount.
        "2_000",
        "1e3",
        "1E-3",
        "１",  # fullwidth digit
        "١٢",  # Arabic-Indic digits
        "۱",  # extended Arabic-Indic
        "१",  # Devanagari
        "\u00a01",  # no-break space
        "1\u20002",
        "$-1",
        "+1",
        "$$1",
        "2.50/1M",
        None,
        [1],
        {"amount": 1},
        b"1",
    ],
)
def test_to_nanos_refuses_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as err:
        to_nanos(value, "budgets.daily.limit")
    assert err.value.field == "budgets.daily.limit"
    assert str(err.value).startswith("budgets.daily.limit: got ")


def test_refusal_says_what_would_be_valid() -> None:
    with pytest.raises(ValidationError, match="zero or more"):
        to_nanos("-1", "cost")
    with pytest.raises(ValidationError, match="finite"):
        to_nanos(float("nan"), "cost")
    with pytest.raises(ValidationError, match="at most 10,000,000"):
        to_nanos("10000000.1", "cost")
    with pytest.raises(ValidationError, match="ASCII digits and at most one point"):
        to_nanos("1e3", "cost")
    with pytest.raises(ValidationError, match="boolean"):
        to_nanos(True, "cost")


def test_default_field_name_is_amount() -> None:
    with pytest.raises(ValidationError) as err:
        to_nanos("-1")
    assert err.value.field == "amount"


# -- the caller's decimal context ----------------------------------------------------------


def test_money_ignores_the_callers_decimal_context(clock: FrozenClock) -> None:
    cfg = parse({"sources": {"llm": {"price": {"input_token": "2.50/1M"}}},
                 "budgets": [{"name": "daily", "limit": "100000"}]})  # fmt: skip
    with Gate.open("memory://", config=cfg, clock=clock) as gate, localcontext() as ctx:
        ctx.prec = 6
        result = gate.record("svc", "llm", units={"input_token": 1_234_567_891})
        assert result.cost == 3_086_419_727_500


# -- showing money ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos_value", "currency", "places", "shown"),
    [
        (12_345_678_900, "USD", 2, "$12.35"),
        (0, "USD", 2, "$0.00"),
        (10 * NANOS_PER_UNIT, "USD", 2, "$10.00"),
        (1_500_000, "USD", 2, "$0.0015"),  # sub-cent stays visible
        (1, "USD", 2, "$0.000000001"),
        (-500_000_000, "USD", 2, "-$0.50"),
        (-1_500_000, "USD", 2, "-$0.0015"),
        (1_234_567_890_000_000, "USD", 2, "$1,234,567.89"),
        (125_000_000, "USD", 2, "$0.12"),  # half-even
        (135_000_000, "USD", 2, "$0.14"),  # half-even
        (10_000_000, "USD", 2, "$0.01"),
        (3_100_000_000, "EUR", 2, "€3.10"),
        (3_100_000_000, "GBP", 2, "£3.10"),
        (3_100_000_000, "CHF", 2, "CHF 3.10"),
        (-3_100_000_000, "CHF", 2, "-CHF 3.10"),
        (1_234_567, "USD", 4, "$0.0012"),
        (12_345, "USD", 4, "$0.000012345"),
    ],
)
def test_format_money(nanos_value: int, currency: str, places: int, shown: str) -> None:
    assert format_money(nanos_value, currency, places) == shown


@pytest.mark.parametrize(
    ("value", "grouped", "text"),
    [
        (20420.0, False, "20420"),
        (20420.0, True, "20,420"),
        (0.00001, False, "0"),
        (1e16, False, "10000000000000000"),
        (0.45, False, "0.45"),
        (Decimal("2.50"), False, "2.5"),
        (-0.00001, False, "0"),
        (100, False, "100"),
    ],
)
def test_plain_numbers_are_never_in_exponent_form(value: float, grouped: bool, text: str) -> None:
    assert plain_number(value, grouped=grouped) == text
