"""Prices: rate strings, flat, per-unit, multi-dimension and tiered prices, versions, the book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendgate.errors import UnknownSourceError, UnpricedSourceError, ValidationError
from spendgate.money import to_nanos
from spendgate.pricing import (
    Price,
    PriceBook,
    Rate,
    SourcePricing,
    Tier,
    canonical_unit,
    parse_rate,
    to_quantity,
)
from spendgate.windows import EPOCH, Window

MB = 2**20
FREE_QUOTA = {"request": [{"up_to": 10000, "price": "0"}, {"price": "0.005"}]}


# -- parse_rate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate", "unit"),
    [
        ("0.002", Decimal("0.002"), None),
        (0.002, Decimal("0.002"), None),
        (Decimal("0.002"), Decimal("0.002"), None),
        (2, Decimal(2), None),
        ("0.002/request", Decimal("0.002"), "request"),
        ("$0.002 / requests", Decimal("0.002"), "request"),
        ("0.002/call", Decimal("0.002"), "request"),
        ("2.50/1M", Decimal("0.0000025"), None),
        ("2.50/1M tokens", Decimal("0.0000025"), "token"),
        ("2.50 / 1m tokens", Decimal("0.0000025"), "token"),
        ("0.01/MB", Decimal("0.01"), "MB"),
        ("0.01/mb", Decimal("0.01"), "MB"),
        ("0.02/GB", Decimal("0.02"), "GB"),
        ("0.001/KB", Decimal("0.001"), "KB"),
        ("1.00/hour", Decimal(1), "hour"),
        ("1.00/hours", Decimal(1), "hour"),
        ("1.00/hr", Decimal(1), "hour"),
        ("0.05/min", Decimal("0.05"), "minute"),
        ("3/1K", Decimal("0.003"), None),
        ("3/1k records", Decimal("0.003"), "record"),
        ("1/1B", Decimal("0.000000001"), None),
        ("5/100 credits", Decimal("0.05"), "credit"),
        (".5/input_token", Decimal("0.5"), "input_token"),
        ("0", Decimal(0), None),
    ],
)
def test_parse_rate_forms(text: object, rate: Decimal, unit: str | None) -> None:
    assert parse_rate(text) == (rate, unit)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "",
        "-0.002",
        "-0.002/request",
        "1,5",
        "$1,5/request",
        "1e-3",
        "1_000/request",
        "１/request",
        "0.01/١٢ MB",
        "0.0 1/MB",
        "0.01\t/MB",
        "NaN",
        "inf",
        "0.002 per request",
        "0.002/request/hour",
        "0.002/0",
        "1/0K",
        "0.002//request",
        "20000000/1M",  # the amount itself is above MAX_AMOUNT
        True,
        None,
        float("nan"),
        float("inf"),
        -1,
        [0.002],
    ],
)
def test_parse_rate_refuses_naming_the_field(text: object) -> None:
    with pytest.raises(ValidationError) as err:
        parse_rate(text, "sources.maps.price")
    assert err.value.field == "sources.maps.price"


def test_canonical_unit() -> None:
    assert canonical_unit("requests") == "request"
    assert canonical_unit(" Requests ") == "request"
    assert canonical_unit("mb") == "MB"
    assert canonical_unit("MiB") == "MB"
    assert canonical_unit("tokens") == "token"
    assert canonical_unit("input_token") == "input_token"


@pytest.mark.parametrize("bad", [-1, "-1", "nan", float("inf"), True, None, "x", [1]])
def test_to_quantity_refuses(bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        to_quantity(bad, "units.MB")
    assert err.value.field == "units.MB"


@pytest.mark.parametrize("bad", ["1_000", "1e3", "１", "١٢", "1 000", "$1", "0x1"])
def test_to_quantity_text_is_ascii_digits_and_one_point(bad: str) -> None:
    with pytest.raises(ValidationError, match="ASCII digits") as err:
        to_quantity(bad, "units.MB")
    assert err.value.field == "units.MB"


def test_to_quantity_accepts() -> None:
    assert to_quantity(0.1, "q") == Decimal("0.1")
    assert to_quantity("1000", "q") == Decimal(1000)
    assert to_quantity(" 2.5 ", "q") == Decimal("2.5")
    assert to_quantity(3, "q") == 3
    assert to_quantity(Decimal("2.5"), "q") == Decimal("2.5")


# -- Price.parse: flat and per-unit -----------------------------------------------------------


@pytest.mark.parametrize("spec", ["free", "FREE", " Free ", 0, "0", {}, {"MB": "0"}])
def test_free_prices_cost_nothing_and_need_no_units(spec: object) -> None:
    price = Price.parse("osm", spec)
    assert price.free
    assert price.units == ()
    assert price.cost() == 0
    assert price.estimate() == 0
    # A unit it names costs nothing; one it does not name is refused, not ignored.
    if "MB" in price.named:
        assert price.cost({"MB": 5}) == 0
    else:
        with pytest.raises(ValidationError, match="only units of 'osm' \\(none: 'osm' is free\\)"):
            price.cost({"MB": 5})


@pytest.mark.parametrize("spec", ["0.002/request", "0.002", 0.002, "$0.002/req", "2/1K"])
def test_per_request_price(spec: object) -> None:
    price = Price.parse("google_maps_optimized", spec)
    assert price.units == ("request",)
    assert not price.free
    assert price.cost() == 2_000_000  # request defaults to one
    assert price.cost({}) == 2_000_000
    assert price.cost({"request": 3}) == 6_000_000
    assert price.cost({"requests": 3}) == 6_000_000
    assert price.estimate({"request": 3}) == 6_000_000
    assert price.cost({"request": 0}) == 0


def test_seed_mapbox_price() -> None:
    assert Price.parse("mapbox_satellite", "0.0015/request").cost() == 1_500_000


def test_per_unit_price_requires_its_unit() -> None:
    price = Price.parse("s3", "0.01/MB")
    assert price.units == ("MB",)
    assert price.cost({"MB": 50}) == to_nanos("0.50")
    assert price.cost({"mb": "2.5"}) == to_nanos("0.025")
    with pytest.raises(ValidationError) as err:
        price.cost()
    assert err.value.field == "units"
    assert "MB" in str(err.value)
    with pytest.raises(ValidationError):
        price.cost({"request": 1})
    with pytest.raises(ValidationError):
        price.estimate({})


def test_bytes_convert_to_binary_megabytes() -> None:
    price = Price.parse("s3", "0.01/MB")
    assert price.cost({"bytes": 50 * MB}) == price.cost({"MB": 50}) == to_nanos("0.5")
    # The seed's convention: bytes / 1024 / 1024, rounded once at the end (half-even).
    # 1e6 / 2**20 * 0.01 = 0.0095367431640625 -> 9,536,743 nanos.
    assert price.cost({"bytes": 1_000_000}) == 9_536_743
    kb = Price.parse("x", "0.001/KB")
    assert kb.cost({"bytes": 2048}) == to_nanos("0.002")
    gb = Price.parse("x", "0.10/GB")
    assert gb.cost({"bytes": 3 * 2**30}) == to_nanos("0.30")
    # A priced unit given directly wins over the raw measurement.
    assert price.cost({"MB": 1, "bytes": 50 * MB}) == to_nanos("0.01")


def test_seconds_convert_to_hours_and_minutes() -> None:
    price = Price.parse("stream", "1.00/hour")
    assert price.units == ("hour",)
    assert price.cost({"hour": 2}) == to_nanos(2)
    assert price.cost({"seconds": 7200}) == to_nanos(2)
    assert price.cost({"seconds": 5400}) == to_nanos("1.5")
    assert price.cost({"seconds": 1}) == 277_778  # 1/3600 of a unit, rounded to the nano
    per_minute = Price.parse("x", "0.06/minute")
    assert per_minute.cost({"seconds": 90}) == to_nanos("0.09")
    with pytest.raises(ValidationError):
        price.cost({"minute": 60})  # minutes are not converted to hours


def test_seed_streaming_model() -> None:
    # databento_mbo: $0.01 per MB of data and $1.00 per connected hour.
    price = Price.parse("databento_mbo", {"MB": "0.01", "hour": "1.00"})
    assert sorted(price.units) == ["MB", "hour"]
    assert price.cost({"MB": 50, "hour": 2}) == to_nanos("2.50")
    assert price.cost({"bytes": 50 * MB, "seconds": 7200}) == to_nanos("2.50")
    assert price.estimate({"MB": 50, "hour": 2}) == to_nanos("2.50")
    assert price.cost({"MB": 0, "hour": 0}) == 0
    for partial in ({"MB": 50}, {"hour": 2}, {"request": 1}, None):
        with pytest.raises(ValidationError) as err:
            price.cost(partial)
        assert err.value.field == "units"


def test_multi_dimension_tokens() -> None:
    price = Price.parse("gpt-4o", {"input_token": "2.50/1M", "output_token": "10.00/1M"})
    assert price.cost({"input_token": 1000, "output_token": 500}) == 7_500_000
    assert price.cost({"input_token": 1_000_000, "output_token": 1_000_000}) == to_nanos("12.50")
    with pytest.raises(ValidationError, match="output_token"):
        price.cost({"input_token": 1000})


def test_a_table_rate_naming_another_unit_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        Price.parse("x", {"MB": "0.01/hour"})
    assert err.value.field == "sources.x.price.MB"
    assert Price.parse("x", {"MB": "0.01/mb"}).cost({"MB": 1}) == to_nanos("0.01")


def test_a_free_dimension_next_to_a_paid_one_is_not_required() -> None:
    price = Price.parse("x", {"MB": "0", "hour": "1"})
    assert price.units == ("hour",)
    assert price.cost({"hour": 1}) == to_nanos(1)


def test_bad_usage_is_refused() -> None:
    price = Price.parse("x", "0.01/MB")
    for bad in (-1, "nan", True, float("inf"), "lots"):
        with pytest.raises(ValidationError) as err:
            price.cost({"MB": bad})
        assert err.value.field == "units.MB"


def test_a_cost_above_max_amount_is_refused() -> None:
    price = Price.parse("x", "1.00/hour")
    with pytest.raises(ValidationError) as err:
        price.cost({"hour": 10**8})
    assert err.value.field == "units"
    with pytest.raises(ValidationError):
        price.estimate({"hour": 10**8})


def test_bad_price_specs_name_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        Price.parse("maps", "-0.002/request")
    assert err.value.field == "sources.maps.price"
    with pytest.raises(ValidationError) as err:
        Price.parse("maps", {"MB": "lots"})
    assert err.value.field == "sources.maps.price.MB"
    with pytest.raises(ValidationError) as err:
        Price.parse("maps", True)
    assert err.value.field == "sources.maps.price"


def test_a_unit_given_twice_under_two_spellings_is_refused() -> None:
    # BUG: both spellings canonicalise to "request"; the second silently replaces the first,
    # and Price's own "each unit at most once" check never sees the duplicate.
    with pytest.raises(ValidationError):
        Price.parse("x", {"request": "0.001", "requests": "0.002"})


def test_a_flat_rate_and_tiers_for_the_same_unit_are_refused() -> None:
    # BUG: `price = "0.002/request"` plus `tiers.request = [...]` silently drops the flat rate.
    with pytest.raises(ValidationError):
        Price.parse("x", "0.002/request", tiers=FREE_QUOTA)


# -- tiers ------------------------------------------------------------------------------------


def test_tiered_free_quota() -> None:
    price = Price.parse("geocoder", None, tiers=FREE_QUOTA)
    (rate,) = price.rates
    assert rate.unit == "request"
    assert rate.tiers == (Tier(Decimal(10000), Decimal(0)), Tier(None, Decimal("0.005")))
    assert rate.period == Window("month")  # counted per calendar month in UTC by default
    assert not price.free
    assert price.tiered_rates == (rate,)
    assert price.cost() == 0
    assert price.cost({"request": 1}, {"request": Decimal(9999)}) == 0
    assert price.cost({"request": 1}, {"request": Decimal(10000)}) == to_nanos("0.005")
    assert price.cost({"request": 3}, {"request": Decimal(9999)}) == to_nanos("0.01")
    assert price.cost({"request": 10001}) == to_nanos("0.005")
    assert price.cost({"request": 20000}) == to_nanos("50")
    # An estimate cannot know the usage before it: it assumes the highest tier.
    assert price.estimate() == to_nanos("0.005")
    assert price.estimate({"request": 4}) == to_nanos("0.02")


def test_tiers_with_a_custom_period() -> None:
    period = Window("day", tz="Europe/London")
    price = Price.parse("x", None, tiers=FREE_QUOTA, period=period)
    assert price.rates[0].period == period


def test_rate_cost_across_three_tiers() -> None:
    rate = Rate(
        "request",
        (
            Tier(Decimal(10), Decimal(0)),
            Tier(Decimal(20), Decimal(2)),
            Tier(None, Decimal(1)),
        ),
    )
    assert rate.cost(Decimal(10)) == 0
    assert rate.cost(Decimal(15)) == 10
    assert rate.cost(Decimal(25)) == 25
    assert rate.cost(Decimal(5), Decimal(8)) == 6
    assert rate.cost(Decimal(30), Decimal(30)) == 30
    assert rate.cost(Decimal(0), Decimal(15)) == 0
    assert rate.max_rate == 2


def test_closed_tiers_continue_at_the_last_rate() -> None:
    price = Price.parse(
        "x", None, tiers={"request": [{"up_to": 10, "price": "0"}, {"up_to": 20, "price": "1"}]}
    )
    assert price.rates[0].tiers[-1] == Tier(None, Decimal(1))
    assert price.cost({"request": 25}) == to_nanos(15)


@st.composite
def tiered_rates(draw: st.DrawFn) -> Rate:
    bounds = sorted(
        set(draw(st.lists(st.integers(min_value=1, max_value=10_000), min_size=0, max_size=4)))
    )
    rates = draw(
        st.lists(
            st.decimals(min_value=0, max_value=100, places=4),
            min_size=len(bounds) + 1,
            max_size=len(bounds) + 1,
        )
    )
    ups: list[Decimal | None] = [Decimal(b) for b in bounds]
    ups.append(None)
    return Rate("request", tuple(Tier(u, r) for u, r in zip(ups, rates, strict=True)))


quantities = st.decimals(min_value=0, max_value=20_000, places=3)


@settings(max_examples=300)
@given(tiered_rates(), quantities, quantities, quantities)
def test_tiered_cost_is_additive(rate: Rate, before: Decimal, a: Decimal, b: Decimal) -> None:
    assert rate.cost(a, before) + rate.cost(b, before + a) == rate.cost(a + b, before)


@settings(max_examples=200)
@given(tiered_rates(), quantities, quantities)
def test_tiered_cost_is_bounded_by_its_tiers(rate: Rate, before: Decimal, q: Decimal) -> None:
    cost = rate.cost(q, before)
    assert min(t.rate for t in rate.tiers) * q <= cost <= rate.max_rate * q
    if rate.flat:
        assert cost == rate.tiers[0].rate * q


@settings(max_examples=200)
@given(tiered_rates(), quantities)
def test_tiered_cost_equals_a_unit_by_unit_sum(rate: Rate, before: Decimal) -> None:
    # Reference: walk whole units one at a time against the tier that contains each.
    start = int(before)
    n = 7
    expected = Decimal(0)
    for i in range(start, start + n):
        expected += next(t.rate for t in rate.tiers if t.up_to is None or i < t.up_to)
    assert rate.cost(Decimal(n), Decimal(start)) == expected


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "sources.x.tiers.request"),
        (
            [{"up_to": 10, "price": "0"}, {"up_to": 10, "price": "1"}],
            "sources.x.tiers.request[1].up_to",
        ),
        (
            [{"up_to": 10, "price": "0"}, {"up_to": 5, "price": "1"}],
            "sources.x.tiers.request[1].up_to",
        ),
        ([{"up_to": 0, "price": "0"}], "sources.x.tiers.request[0].up_to"),
        ([{"up_to": -5, "price": "0"}], "sources.x.tiers.request[0].up_to"),
        ([{"up_to": "many", "price": "0"}], "sources.x.tiers.request[0].up_to"),
        ([{"price": "1"}, {"price": "2"}], "sources.x.tiers.request[1]"),
        ([{"up_to": 10, "price": "-1"}], "sources.x.tiers.request[0].price"),
        ([{"up_to": 10}], "sources.x.tiers.request[0].price"),
        ([{"up_to": 10, "price": "lots"}], "sources.x.tiers.request[0].price"),
    ],
)
def test_bad_tiers_are_refused_naming_the_step(steps: list[dict[str, object]], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Price.parse("x", None, tiers={"request": steps})
    assert err.value.field == field


@pytest.mark.parametrize("steps", [["0.005"], "0.005", 5, [5, 6]])
def test_malformed_tier_lists_are_refused(steps: object) -> None:
    # BUG: a tier list that is not a list of tables (e.g. `tiers.request = "0.005"` or
    # `tiers.request = ["0.005"]` in TOML) crashes with AttributeError / TypeError.
    with pytest.raises(ValidationError) as err:
        Price.parse("x", None, tiers={"request": steps})  # type: ignore[dict-item]
    assert err.value.field.startswith("sources.x.tiers.request")


# -- versions ---------------------------------------------------------------------------------


def test_price_requires_an_aware_effective_from() -> None:
    with pytest.raises(ValidationError) as err:
        Price.parse("x", "1", effective_from=datetime(2026, 1, 1))
    assert err.value.field == "effective_from"


def test_version_name() -> None:
    at = datetime(2027, 1, 1, tzinfo=UTC)
    assert Price.parse("maps", "1", effective_from=at).version == "maps@2027-01-01T00:00:00Z"
    assert Price.parse("maps", "1").version == "maps@1970-01-01T00:00:00Z"


def test_version_name_of_a_non_utc_effective_from_is_in_utc() -> None:
    # BUG: the version is formatted with a literal "Z" from the datetime's own local fields,
    # so midnight in New York is named as midnight UTC (5 hours off).
    at = datetime(2026, 1, 1, tzinfo=ZoneInfo("America/New_York"))
    assert Price.parse("maps", "1", effective_from=at).version == "maps@2026-01-01T05:00:00Z"


def _versions() -> SourcePricing:
    return SourcePricing(
        "maps",
        (
            Price.parse("maps", "0.002/request"),
            Price.parse("maps", "0.0025/request", effective_from=datetime(2027, 1, 1, tzinfo=UTC)),
            Price.parse("maps", "0.003/request", effective_from=datetime(2028, 1, 1, tzinfo=UTC)),
        ),
    )


def test_source_pricing_picks_the_version_in_effect() -> None:
    pricing = _versions()
    change = datetime(2027, 1, 1, tzinfo=UTC)
    assert pricing.at(datetime(2026, 6, 1, tzinfo=UTC)).cost() == 2_000_000  # type: ignore[union-attr]
    assert pricing.at(change - timedelta(microseconds=1)).cost() == 2_000_000  # type: ignore[union-attr]
    assert pricing.at(change).cost() == 2_500_000  # type: ignore[union-attr]
    assert pricing.at(datetime(2027, 12, 31, tzinfo=UTC)).cost() == 2_500_000  # type: ignore[union-attr]
    assert pricing.at(datetime(2030, 1, 1, tzinfo=UTC)).cost() == 3_000_000  # type: ignore[union-attr]
    # Comparisons are by instant, whatever the zone of the question.
    ny_before = datetime(2026, 12, 31, 18, 59, tzinfo=ZoneInfo("America/New_York"))
    assert pricing.at(ny_before).cost() == 2_000_000  # type: ignore[union-attr]
    assert pricing.at(ny_before + timedelta(minutes=1)).cost() == 2_500_000  # type: ignore[union-attr]


def test_before_the_first_version_there_is_no_price() -> None:
    later = SourcePricing(
        "maps", (Price.parse("maps", "1", effective_from=datetime(2027, 1, 1, tzinfo=UTC)),)
    )
    assert later.at(datetime(2026, 1, 1, tzinfo=UTC)) is None
    book = PriceBook({"maps": later})
    with pytest.raises(UnpricedSourceError):
        book.price_at("maps", datetime(2026, 1, 1, tzinfo=UTC))
    assert book.price_at("maps", datetime(2027, 1, 1, tzinfo=UTC)) is later.versions[0]


# -- the book ---------------------------------------------------------------------------------


def test_price_book() -> None:
    book = PriceBook(
        {
            "maps": _versions(),
            "osm": SourcePricing("osm", (Price.parse("osm", "free"),)),
            "legacy": SourcePricing("legacy", (), allow_unpriced=True),
            "mystery": SourcePricing("mystery"),
        }
    )
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert book.price_at("maps", now).cost() == 2_000_000  # type: ignore[union-attr]
    assert book.price_at("osm", now).free  # type: ignore[union-attr]
    assert book.price_at("legacy", now) is None
    with pytest.raises(UnpricedSourceError) as unpriced:
        book.price_at("mystery", now)
    assert unpriced.value.source == "mystery"
    assert "unpriced" in str(unpriced.value)
    with pytest.raises(UnknownSourceError) as unknown:
        book.price_at("nowhere", now)
    assert unknown.value.field == "source"
    assert unknown.value.source == "nowhere"
    assert "maps" in str(unknown.value)
    with pytest.raises(UnknownSourceError):
        book.pricing("nowhere")
    assert book.pricing("maps") is book.sources["maps"]


def test_an_empty_book_knows_no_source() -> None:
    with pytest.raises(UnknownSourceError, match="none configured"):
        PriceBook().pricing("maps")


def test_effective_from_defaults_to_the_epoch() -> None:
    assert Price.parse("x", "1").effective_from == EPOCH


# -- size tiers: the rates of a whole call above a size (a long LLM prompt) -----------------

TOKENS = {"input_token": "1/1M", "output_token": "4/1M", "cached_input_token": "0"}
SIZE_UNITS = ["input_token", "cached_input_token"]
SIZE_TIERS = [
    {"above": 100_000, "price": {"input_token": "2/1M", "cached_input_token": "0.5/1M"}},
    {"above": 200_000, "price": {"output_token": "8/1M"}},
]


def sized_price() -> Price:
    return Price.parse("llm", TOKENS, size_units=SIZE_UNITS, size_tiers=SIZE_TIERS)


def test_a_size_tier_prices_every_unit_of_a_call_above_its_size() -> None:
    price = sized_price()
    call = {"input_token": 60_000, "output_token": 1000, "cached_input_token": 40_000}
    assert price.cost(call) == to_nanos("0.064")  # 100,000 is not above 100,000
    call["cached_input_token"] = 40_001  # the whole call now: a free unit gets a price
    assert price.cost(call) == to_nanos("0.1440005")
    # Above 200k, the second tier's output rate joins the first tier's input rates.
    big = {"input_token": 200_001, "output_token": 1000, "cached_input_token": 0}
    assert price.cost(big) == to_nanos("0.408002")
    assert not price.free
    assert price.estimate(call) == price.cost(call)


def test_a_size_unit_must_be_given_or_the_call_would_look_smaller() -> None:
    with pytest.raises(ValidationError, match="cached_input_token"):
        sized_price().cost({"input_token": 150_000, "output_token": 0})


@pytest.mark.parametrize(
    ("units", "tiers", "field"),
    [
        (SIZE_UNITS, [{"above": 5, "price": {"MB": "1"}}], "size_tiers[0].price.MB"),
        (SIZE_UNITS, [{"above": -1, "price": {"input_token": "1"}}], "size_tiers[0].above"),
        (SIZE_UNITS, [{"above": 5}], "size_tiers[0]"),
        (SIZE_UNITS, [{"above": 5, "price": {}}], "size_tiers[0].price"),
        (SIZE_UNITS, "lots", "size_tiers"),
        (SIZE_UNITS, [SIZE_TIERS[1], SIZE_TIERS[0]], "size_tiers[1].above"),
        (None, SIZE_TIERS, "size_units"),
        ("input_token", SIZE_TIERS, "size_units"),
        (SIZE_UNITS, None, "size_units"),
        (SIZE_UNITS, [{"above": 5, "price": {"input_token": "x"}}], "size_tiers[0].price.input"),
    ],
)
def test_bad_size_tiers_are_refused_naming_the_field(
    units: object, tiers: object, field: str
) -> None:
    with pytest.raises(ValidationError, match=re_field(field)):
        Price.parse("llm", TOKENS, size_units=units, size_tiers=tiers)


def re_field(field: str) -> str:
    return "sources\\.llm\\." + field.replace(".", "\\.").replace("[", "\\[").replace("]", "\\]")


def test_a_size_tier_on_a_quota_tiered_unit_is_refused() -> None:
    with pytest.raises(ValidationError, match="flat rate"):
        Price.parse(
            "llm",
            {"output_token": "1/1M"},
            tiers={"input_token": [{"up_to": 10, "price": "0"}, {"price": "1/1M"}]},
            size_units=["input_token"],
            size_tiers=[{"above": 5, "price": {"input_token": "2/1M"}}],
        )


def test_size_tiers_round_trip_through_the_configuration_form() -> None:
    price = sized_price()
    again = SourcePricing("llm", (price,)).to_spec()
    assert again["size_units"] == SIZE_UNITS
    assert (
        Price.parse(
            "llm", again["price"], size_units=again["size_units"], size_tiers=again["size_tiers"]
        )
        == price
    )


call_sizes = st.integers(0, 400_000)


@given(call_sizes, call_sizes, call_sizes, st.data())
def test_an_estimate_bounds_every_call_no_bigger(
    inp: int, out: int, cached: int, data: st.DataObject
) -> None:
    """An estimate from an upper bound of a call's units is never below what the call
    costs, whichever size tier the smaller real call falls in."""
    price = sized_price()
    bound = {"input_token": inp, "output_token": out, "cached_input_token": cached}
    real = {unit: data.draw(st.integers(0, q)) for unit, q in bound.items()}
    assert price.estimate(bound) >= price.cost(real)


def test_a_size_is_measured_as_the_price_measures_its_units() -> None:
    """Raw bytes convert to the MB a size counts; `request` is one when not given."""
    by_volume = Price.parse(
        "feed", {"MB": "1"}, size_units=["MB"], size_tiers=[{"above": 1, "price": {"MB": "2"}}]
    )
    assert by_volume.cost({"bytes": 2 * MB}) == to_nanos("4")  # 2 MB, above 1 MB: all at 2
    assert by_volume.estimate({"bytes": MB // 2}) == to_nanos("0.5")
    per_call = Price.parse(
        "api", {"request": "1"}, size_units=["request"],
        size_tiers=[{"above": 0, "price": {"request": "3"}}],
    )  # fmt: skip
    assert per_call.cost(None) == to_nanos("3")


def test_size_tiers_refuse_a_unit_twice_and_a_blank_size_unit() -> None:
    with pytest.raises(ValidationError, match=r"size_tiers\[0\]\.price\.mb"):
        Price.parse("s", {"MB": "1"}, size_units=["MB"],
                    size_tiers=[{"above": 5, "price": {"MB": "2", "mb": "3"}}])  # fmt: skip
    with pytest.raises(ValidationError, match=r"size_units\[1\]"):
        Price.parse("s", TOKENS, size_units=["input_token", " "], size_tiers=SIZE_TIERS)


def test_equal_prices_whatever_order_their_units_were_named_in() -> None:
    """A quota-tiered unit and a unit only the size counts: read back from its
    configuration form, the price is equal (the order units are named in does not count)."""
    price = Price.parse(
        "llm",
        {"input_token": "1/1M", "output_token": "4/1M"},
        tiers={"request": [{"up_to": 10, "price": "0"}, {"price": "0.01"}]},
        size_units=["input_token", "cached_input_token"],
        size_tiers=[{"above": 100, "price": {"input_token": "2/1M"}}],
    )
    spec = SourcePricing("llm", (price,)).to_spec()
    again = Price.parse(
        "llm", spec["price"], tiers=spec["tiers"], size_units=spec["size_units"],
        size_tiers=spec["size_tiers"],
    )  # fmt: skip
    assert again == price
    assert again != Price.parse(
        "llm", {"input_token": "1/1M", "output_token": "4/1M", "extra": "0"},
        tiers={"request": [{"up_to": 10, "price": "0"}, {"price": "0.01"}]},
        size_units=["input_token", "cached_input_token"],
        size_tiers=[{"above": 100, "price": {"input_token": "2/1M"}}],
    )  # fmt: skip
