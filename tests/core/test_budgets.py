"""Budgets: scopes, threshold ladders, caps and levels, and the decisions they make."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendgate.budgets import (
    DEFAULT_LADDER,
    STREAM_LADDER,
    Budget,
    BudgetStatus,
    Scope,
    Threshold,
    budget_from_config,
    parse_ladder,
    used_percent,
    validate_ladder,
)
from spendgate.decisions import USE_FREE_SOURCES_ONLY, Check, Decision, decide
from spendgate.errors import ValidationError
from spendgate.money import MAX_NANOS, to_nanos
from spendgate.store.base import Balance
from spendgate.windows import Window

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
D = Decimal


def usd(amount: str | int) -> int:
    return to_nanos(amount)


def daily() -> Budget:
    """The seed's budget: $10 a day, warn at 80%, stop at 100%, $50 for emergencies."""
    return Budget("daily", limit=usd(10), window=Window("day"), emergency=usd(50))


def streaming() -> Budget:
    """The seed's stream budget: $25, warn 60%, degrade 70%, stop 80%."""
    return Budget(
        "streaming",
        limit=usd(25),
        scope=Scope("source", "databento_mbo"),
        thresholds=STREAM_LADDER,
        emergency=usd(5),
    )


# -- scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("all", Scope()),
        ("  all ", Scope()),
        ("service:enrichment", Scope("service", "enrichment")),
        ("source:google_maps_optimized", Scope("source", "google_maps_optimized")),
        ("label:customer=acme", Scope("label", "customer", "acme")),
        ("label:env=a=b", Scope("label", "env", "a=b")),
        ("not:source:databento_mbo", Scope("not", "source:databento_mbo")),
        ("not:service:mbo_stream", Scope("not", "service:mbo_stream")),
    ],
)
def test_scope_parse(text: str, scope: Scope) -> None:
    assert Scope.parse(text) == scope
    assert Scope.parse(str(scope)) == scope


@pytest.mark.parametrize(
    "text",
    [
        "",
        "everything",
        "all:x",
        "service",
        "service:",
        "source:",
        "label:",
        "label:customer",
        "label:customer=",
        "label:=acme",
        "customer:acme",
        "Service:x",
        "not:",
        "not:all",
        "not:source",
        "not:source:",
        "not:label:k=v",
        "not:not:source:x",
    ],
)
def test_scope_parse_refuses_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        Scope.parse(text, "budgets.daily.scope")
    assert err.value.field == "budgets.daily.scope"


def test_scope_matches() -> None:
    acme = {"customer": "acme"}
    assert Scope().matches("svc", "src")
    assert Scope().matches("svc", "src", acme)
    assert Scope("service", "enrichment").matches("enrichment", "maps")
    assert not Scope("service", "enrichment").matches("scraper", "maps")
    assert not Scope("service", "enrichment").matches("maps", "enrichment")
    assert Scope("source", "maps").matches("enrichment", "maps")
    assert not Scope("source", "maps").matches("maps", "osm")
    label = Scope("label", "customer", "acme")
    assert label.matches("svc", "src", acme)
    assert label.matches("svc", "src", {"customer": "acme", "env": "prod"})
    assert not label.matches("svc", "src", {"customer": "globex"})
    assert not label.matches("svc", "src", {"client": "acme"})
    assert not label.matches("svc", "src", {})
    assert not label.matches("svc", "src", None)
    # Everything but one source (or service): the complement of that scope.
    but_stream = Scope.parse("not:source:databento_mbo")
    assert but_stream.matches("scraper", "google_maps")
    assert but_stream.matches("databento_mbo", "google_maps")  # a service of that name counts
    assert not but_stream.matches("mbo_stream", "databento_mbo")
    assert but_stream.left_out == Scope("source", "databento_mbo")
    but_service = Scope.parse("not:service:mbo_stream")
    assert but_service.matches("scraper", "databento_mbo")
    assert not but_service.matches("mbo_stream", "databento_mbo")
    assert Scope().left_out is None


@given(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "z"]))
def test_a_not_scope_and_its_complement_count_every_call_once(service: str, source: str) -> None:
    for inner in (Scope("source", "y"), Scope("service", "b")):
        rest = Scope.parse(f"not:{inner}")
        assert rest.matches(service, source) != inner.matches(service, source)


def test_scope_str() -> None:
    assert str(Scope()) == "all"
    assert str(Scope("service", "x")) == "service:x"
    assert str(Scope("source", "y")) == "source:y"
    assert str(Scope("label", "k", "v")) == "label:k=v"
    assert str(Scope("not", "source:s")) == "not:source:s"


# -- ladders ----------------------------------------------------------------------------------


def test_parse_ladder_table_form() -> None:
    assert parse_ladder({"warn": 0.8, "stop": 1.0}) == DEFAULT_LADDER
    # Table order does not matter: rungs are sorted by fraction.
    assert parse_ladder({"stop": 0.8, "degrade": 0.7, "warn": 0.6}) == STREAM_LADDER
    assert parse_ladder({"warn": "0.5"}) == (Threshold(D("0.5"), "warn"),)
    assert parse_ladder({"stop": 10}) == (Threshold(D(10), "stop"),)
    assert parse_ladder({}) == ()


def test_parse_ladder_list_form() -> None:
    ladder = parse_ladder(
        [
            {"fraction": 0.5, "action": "warn"},
            {"fraction": 0.75, "action": "warn"},
            {"fraction": 0.9, "action": "degrade"},
            {"fraction": 1.2, "action": "stop"},
        ]
    )
    assert ladder == (
        Threshold(D("0.5"), "warn"),
        Threshold(D("0.75"), "warn"),
        Threshold(D("0.9"), "degrade"),
        Threshold(D("1.2"), "stop"),
    )


def test_float_fractions_are_exact() -> None:
    (rung,) = parse_ladder({"warn": 0.7})
    assert rung.fraction == D("0.7")  # not 0.6999999999999999555910790149937...


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        # not strictly increasing
        ([{"fraction": 0.8, "action": "stop"}, {"fraction": 0.6, "action": "warn"}], "thresholds"),
        ([{"fraction": 0.8, "action": "warn"}, {"fraction": 0.8, "action": "stop"}], "thresholds"),
        ({"warn": 0.8, "stop": 0.8}, "thresholds"),
        # fractions outside (0, 10]
        ({"warn": 0}, "thresholds.warn"),
        ({"warn": -0.1}, "thresholds.warn"),
        ({"stop": 10.5}, "thresholds.stop"),
        ({"stop": "11"}, "thresholds.stop"),
        ({"stop": float("nan")}, "thresholds.stop"),
        ({"stop": float("inf")}, "thresholds.stop"),
        ({"stop": "lots"}, "thresholds.stop"),
        ({"stop": True}, "thresholds.stop"),
        ({"stop": None}, "thresholds.stop"),
        ([{"action": "stop"}], "thresholds.stop"),
        # unknown actions
        ({"warn": 0.8, "block": 1.0}, "thresholds.action"),
        ([{"fraction": 0.8, "action": "alert"}], "thresholds.action"),
        ([{"fraction": 0.8}], "thresholds.action"),
        ({"Stop": 1.0}, "thresholds.action"),
        # two stops, two degrades, degrade above stop
        ([{"fraction": 0.8, "action": "stop"}, {"fraction": 0.9, "action": "stop"}], "thresholds"),
        (
            [{"fraction": 0.5, "action": "degrade"}, {"fraction": 0.6, "action": "degrade"}],
            "thresholds",
        ),
        (
            [{"fraction": 0.8, "action": "stop"}, {"fraction": 0.9, "action": "degrade"}],
            "thresholds",
        ),
        ({"degrade": 0.9, "stop": 0.8}, "thresholds"),
        # not a ladder at all
        ("0.8", "thresholds"),
        (0.8, "thresholds"),
        (None, "thresholds"),
        ([0.8, 1.0], "thresholds[0]"),
    ],
)
def test_bad_ladders_are_refused_naming_the_field(spec: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_ladder(spec)
    assert err.value.field == field


def test_ladder_errors_use_the_given_field_name() -> None:
    with pytest.raises(ValidationError) as err:
        parse_ladder({"warn": 0.8, "stop": 0.8}, "budgets.daily.thresholds")
    assert err.value.field == "budgets.daily.thresholds"
    assert "strictly increase" in str(err.value)


def test_validate_ladder_checks_built_thresholds() -> None:
    assert validate_ladder(STREAM_LADDER) == STREAM_LADDER
    with pytest.raises(ValidationError):
        validate_ladder((Threshold(D(0), "warn"),))
    with pytest.raises(ValidationError):
        validate_ladder((Threshold(D(1), "block"),))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        validate_ladder((Threshold(D(1), "stop"), Threshold(D("0.5"), "warn")))


# -- budgets ----------------------------------------------------------------------------------


def test_budget_cap_default_ladder() -> None:
    b = daily()
    assert b.cap(priority=True, emergency=False) == usd(10)
    assert b.cap(priority=False, emergency=False) == usd(10)
    assert b.cap(priority=False, emergency=True) == usd(60)
    assert b.cap(priority=True, emergency=True) == usd(60)
    assert b.line("warn") == usd(8)
    assert b.line("stop") == usd(10)
    assert b.line("degrade") is None


def test_budget_cap_stream_ladder() -> None:
    b = streaming()
    assert b.line("warn") == usd(15)
    assert b.line("degrade") == usd("17.5")
    assert b.line("stop") == usd(20)
    assert b.cap(priority=True, emergency=False) == usd(20)
    assert b.cap(priority=False, emergency=False) == usd("17.5")
    assert b.cap(priority=False, emergency=True) == usd(25)
    assert b.cap(priority=True, emergency=True) == usd(25)


def test_budget_cap_without_a_stop_rung_is_the_limit() -> None:
    b = Budget("b", limit=usd(4), thresholds=(Threshold(D("0.5"), "warn"),))
    assert b.cap(priority=True, emergency=False) == usd(4)
    b = Budget("b", limit=usd(4), thresholds=())
    assert b.cap(priority=False, emergency=False) == usd(4)
    assert b.level(usd(100)) == "normal"


def test_budget_cap_with_a_stop_above_the_limit() -> None:
    b = Budget("b", limit=usd(4), thresholds=parse_ladder({"warn": 1.0, "stop": 1.25}))
    assert b.cap(priority=True, emergency=False) == usd(5)


def test_soft_budgets_never_refuse() -> None:
    b = Budget("soft", limit=usd(1), hard=False, emergency=usd(1))
    for priority in (True, False):
        for emergency in (True, False):
            assert b.cap(priority=priority, emergency=emergency) is None
    assert b.level(usd(5)) == "stop"


@pytest.mark.parametrize(
    ("used", "level"),
    [
        ("0", "normal"),
        ("14.999999999", "normal"),
        ("15", "warn"),
        ("17.499999999", "warn"),
        ("17.5", "degrade"),
        ("19.999999999", "degrade"),
        ("20", "stop"),
        ("1000", "stop"),
    ],
)
def test_budget_level(used: str, level: str) -> None:
    assert streaming().level(usd(used)) == level


def test_budget_level_default_ladder() -> None:
    b = daily()
    assert b.level(usd("7.99")) == "normal"
    assert b.level(usd("8.50")) == "warn"
    assert b.level(usd(10)) == "stop"


def test_threshold_lines_are_exact() -> None:
    b = Budget("b", limit=usd("0.03"), thresholds=parse_ladder({"warn": "0.333333333"}))
    # 0.03 * 0.333333333 = 0.00999999999 -> 9,999,999.99 nanos -> 10,000,000 (half-even).
    assert b.line("warn") == 10_000_000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "budgets.name"),
        ({"name": "   "}, "budgets.name"),
        ({"name": None}, "budgets.name"),
        ({"limit": 0}, "budgets.b.limit"),
        ({"limit": -1}, "budgets.b.limit"),
        ({"limit": MAX_NANOS + 1}, "budgets.b.limit"),
        ({"limit": True}, "budgets.b.limit"),
        ({"limit": 1.5}, "budgets.b.limit"),
        ({"limit": "10"}, "budgets.b.limit"),
        ({"emergency": -1}, "budgets.b.emergency"),
        ({"emergency": MAX_NANOS + 1}, "budgets.b.emergency"),
        ({"emergency_budget": -1}, "budgets.b.emergency_budget"),
        ({"thresholds": (Threshold(D(0), "warn"),)}, "budgets.b.thresholds.warn"),
        (
            {"thresholds": (Threshold(D(1), "stop"), Threshold(D(2), "stop"))},
            "budgets.b.thresholds",
        ),
    ],
)
def test_bad_budgets_are_refused(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "b", "limit": usd(1), **kwargs}
    with pytest.raises(ValidationError) as err:
        Budget(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_the_largest_limit_is_allowed() -> None:
    assert Budget("b", limit=MAX_NANOS, emergency=MAX_NANOS).cap(priority=True, emergency=True) == (
        2 * MAX_NANOS
    )


def test_budget_to_dict() -> None:
    assert streaming().to_dict() == {
        "name": "streaming",
        "limit": "25",
        "emergency": "5",
        "emergency_budget": "50",
        "scope": "source:databento_mbo",
        "window": "day",
        "timezone": "UTC",
        "reset_hour": 0,
        "hard": True,
        "thresholds": {"warn": "0.6", "degrade": "0.7", "stop": "0.8"},
        "leased": False,
        "fail_open": False,
    }


def test_budget_status_reads_decimal_amounts_and_keeps_nanos_under_their_own_names() -> None:
    b = Budget("daily", limit=usd("0.10"))
    status = BudgetStatus(b, NOW, NOW, Balance(usd("0.081"), usd("0.004"), usd("0.001")), NOW)
    assert (status.limit, status.spent, status.reserved, status.overshoot, status.remaining) == (
        D("0.1"),
        D("0.081"),
        D("0.004"),
        D("0.001"),
        D("0.015"),
    )
    assert all(
        isinstance(x, Decimal)
        for x in (status.limit, status.spent, status.reserved, status.remaining)
    )
    assert (status.spent_nanos, status.reserved_nanos, status.remaining_nanos) == (
        81_000_000,
        4_000_000,
        15_000_000,
    )
    assert (b.limit, b.limit_amount, b.emergency_amount) == (100_000_000, D("0.1"), D(0))
    shown = BudgetStatus(b, NOW, NOW, Balance(usd("0.081")), NOW, "EUR").to_dict()
    assert (shown["spent"], shown["remaining"], shown["limit"]) == ("0.081", "0.019", "0.1")
    assert shown["currency"] == "EUR"


@pytest.mark.parametrize(
    ("spent", "reserved", "overshoot", "taken"),
    [
        ("7.00", "0", "0", "0"),  # under the stop line (80% of $10)
        ("8.00", "0", "0", "0"),  # at it
        ("8.50", "0.25", "0", "0.75"),  # past it: spend and holds alike
        ("9.00", "0", "0.40", "0.60"),  # overshoot was never approved: not the allowance's
        ("9.50", "0.50", "0", "1.00"),  # at most the allowance ($1)
        ("12.00", "0", "1.50", "1.00"),  # a lowered limit: the allowance, not more
    ],
)
def test_emergency_use_is_what_the_budget_approved_past_its_stop_line(
    spent: str, reserved: str, overshoot: str, taken: str
) -> None:
    b = Budget("daily", limit=usd(10), emergency=usd(1), thresholds=STREAM_LADDER)
    balance = Balance(usd(spent), usd(reserved), usd(overshoot))
    status = BudgetStatus(b, NOW, NOW, balance, NOW)
    assert (status.emergency_used, status.emergency_used_nanos) == (D(taken), usd(taken))


def test_a_soft_budget_has_no_emergency_use() -> None:
    soft = Budget("daily", limit=usd(10), emergency=usd(1), hard=False)
    assert BudgetStatus(soft, NOW, NOW, Balance(usd(30)), NOW).emergency_used == 0


def test_a_long_rolling_window_round_trips_in_plain_seconds() -> None:
    """30 days is "2592000s" in the budget's table, never "2.592e+06s" (which no reader
    takes back: a budget created over the API with it could not be read again)."""
    b = budget_from_config(
        "month",
        {"limit": "5", "window": "rolling", "length": "30d", "granularity": "1h", "lease": True},
    )
    spec = b.to_spec()
    assert (spec["length"], spec["granularity"]) == ("2592000s", "3600s")
    assert budget_from_config("month", spec) == b


ladders = st.lists(
    st.decimals(min_value=D("0.01"), max_value=D(10), places=2), min_size=1, max_size=4, unique=True
).map(sorted)


@settings(max_examples=200)
@given(
    limit=st.integers(min_value=1, max_value=MAX_NANOS),
    emergency=st.integers(min_value=0, max_value=MAX_NANOS),
    fractions=ladders,
    with_degrade=st.booleans(),
    with_stop=st.booleans(),
    used_a=st.integers(min_value=0, max_value=2 * MAX_NANOS),
    used_b=st.integers(min_value=0, max_value=2 * MAX_NANOS),
)
def test_caps_and_levels_are_ordered(
    *,
    limit: int,
    emergency: int,
    fractions: list[Decimal],
    with_degrade: bool,
    with_stop: bool,
    used_a: int,
    used_b: int,
) -> None:
    actions = ["warn"] * len(fractions)
    if with_stop:
        actions[-1] = "stop"
    if with_stop and with_degrade and len(fractions) >= 2:
        actions[-2] = "degrade"
    ladder = tuple(Threshold(f, a) for f, a in zip(fractions, actions, strict=True))  # type: ignore[arg-type]
    b = Budget("b", limit=limit, emergency=emergency, thresholds=ladder)
    plain = b.cap(priority=False, emergency=False)
    full = b.cap(priority=True, emergency=False)
    extra = b.cap(priority=True, emergency=True)
    assert plain is not None
    assert full is not None
    assert plain <= full
    assert extra == full + emergency
    assert b.cap(priority=False, emergency=True) == extra
    order = ("normal", "warn", "degrade", "stop")
    lo, hi = sorted((used_a, used_b))
    assert order.index(b.level(lo)) <= order.index(b.level(hi))
    if with_stop:
        assert b.level(full) == "stop"
        assert b.level(full - 1) != "stop"


# -- decisions --------------------------------------------------------------------------------


def test_no_budget_applies() -> None:
    d = decide((), usd("0.002"), NOW)
    assert d.status == "approved"
    assert d.approved
    assert d.budget is None
    assert d.remaining is None
    assert d.alternative_action is None
    assert d.to_dict() == {
        "budget_available": True,
        "approval_status": "approved",
        "requested_amount": "0.002",
        "remaining_budget": None,
        "budget": None,
        "level": "normal",
        "as_of": NOW.isoformat(),
    }


def test_approved_names_the_tightest_budget() -> None:
    weekly = Budget("weekly", limit=usd(30), window=Window("week"))
    checks = (
        Check(daily(), usd(3), usd(10)),
        Check(weekly, usd(28), usd(30)),
    )
    d = decide(checks, usd(1), NOW, reservation_id="r-1")
    assert d.status == "approved"
    assert d.budget == "weekly"
    assert d.remaining == usd(3)  # before the call: 30 less the 27 used before it
    assert d.level == "warn"  # the highest level among the budgets
    assert d.reservation_id == "r-1"
    body = d.to_dict()
    assert body == {
        "budget_available": True,
        "approval_status": "approved",
        "requested_amount": "1",
        "remaining_budget": "3",
        "budget": "weekly",
        "level": "warn",
        "as_of": NOW.isoformat(),
        "reservation_id": "r-1",
    }
    assert "alternative_action" not in body
    assert "emergency_budget_used" not in body


def test_denied_names_the_refusing_budget() -> None:
    checks = (
        Check(Budget("monthly", limit=usd(100)), usd(50), usd(100)),
        Check(daily(), usd("9.995"), usd(10), refused=True),
    )
    d = decide(checks, usd("0.01"), NOW, reservation_id="r-2")
    assert d.status == "denied"
    assert not d.approved
    assert d.budget == "daily"
    assert d.remaining == usd("0.005")
    assert d.level == "warn"
    assert d.reservation_id is None  # nothing was held
    assert "daily" in d.reason
    assert "would exceed" in d.reason
    assert d.alternative_action == USE_FREE_SOURCES_ONLY == "use_free_sources_only"
    body = d.to_dict()
    assert body["budget_available"] is False
    assert body["approval_status"] == "denied"
    assert body["requested_amount"] == "0.01"
    assert body["remaining_budget"] == "0.005"
    assert body["budget"] == "daily"
    assert body["alternative_action"] == "use_free_sources_only"
    assert body["reason"] == d.reason
    assert "emergency_budget_used" not in body
    assert set(body) == {
        "budget_available",
        "approval_status",
        "requested_amount",
        "remaining_budget",
        "budget",
        "level",
        "as_of",
        "alternative_action",
        "reason",
    }


def test_the_first_refusing_budget_decides() -> None:
    a = Budget("a", limit=usd(5))
    b = Budget("b", limit=usd(5))
    c = Budget("c", limit=usd(5))
    checks = (
        Check(a, usd(1), usd(5)),
        Check(b, usd(5), usd(5), True),
        Check(c, usd(5), usd(5), True),
    )
    assert decide(checks, usd(1), NOW).budget == "b"


def test_denied_after_overshoot_reports_negative_remaining() -> None:
    d = decide((Check(daily(), usd(12), usd(10), refused=True),), usd(1), NOW)
    assert d.remaining == -usd(2)
    assert d.to_dict()["remaining_budget"] == "-2"
    assert "0 left before its stop line" in d.reason


def test_emergency_approved_when_only_the_allowance_lets_it_through() -> None:
    checks = (Check(daily(), usd("10.5"), usd(60)),)
    d = decide(checks, usd(1), NOW)
    assert d.status == "emergency_approved"
    assert d.approved
    assert d.budget == "daily"
    assert d.remaining == usd("0.5")  # before the call: 9.5 used of 10
    assert d.level == "stop"
    body = d.to_dict()
    assert body["emergency_budget_used"] is True
    assert body["approval_status"] == "emergency_approved"
    assert body["budget_available"] is True
    assert body["remaining_budget"] == "0.5"
    assert "alternative_action" not in body


def test_an_emergency_call_within_the_limit_is_just_approved() -> None:
    d = decide((Check(daily(), usd(9), usd(60)),), usd(1), NOW)
    assert d.status == "approved"
    assert "emergency_budget_used" not in d.to_dict()


def test_soft_budgets_over_their_limit_do_not_make_an_emergency() -> None:
    soft = Budget("soft", limit=usd(1), hard=False)
    d = decide((Check(soft, usd(3), None), Check(daily(), usd(2), usd(10))), usd(1), NOW)
    assert d.status == "approved"
    assert d.budget == "soft"  # the tightest, even though it never refuses
    assert d.level == "stop"


def test_a_degraded_budget_says_so() -> None:
    b = streaming()
    refused = Check(b, usd(17), b.cap(priority=False, emergency=False), refused=True)
    d = decide((refused,), usd(1), NOW)
    assert d.status == "denied"
    assert "degraded to priority callers" in d.reason
    full = Check(b, usd(19.5), b.cap(priority=True, emergency=False), refused=True)
    d = decide((full,), usd(1), NOW, priority=True)
    assert "would exceed" in d.reason


def test_decision_money_is_written_in_plain_decimals() -> None:
    # BUG: to_dict() uses str(from_nanos(...)), and Decimal writes amounts below 1e-6 in
    # exponent form: a request of 100 nanos shows as "1E-7", not "0.0000001".
    d = decide((Check(daily(), usd(1), usd(10)),), 100, NOW)
    body = d.to_dict()
    assert body["requested_amount"] == "0.0000001"
    assert "E" not in body["remaining_budget"]


def test_decision_is_a_value() -> None:
    d = Decision("approved", 1, 2, "daily", "normal", NOW)
    assert d == Decision("approved", 1, 2, "daily", "normal", NOW)
    with pytest.raises(AttributeError):
        d.status = "denied"  # type: ignore[misc]


# -- budgets from configuration tables --------------------------------------------------------


def test_budget_from_config() -> None:
    b = budget_from_config(
        "enrichment-weekly",
        {
            "limit": "30.00",
            "scope": "service:enrichment",
            "window": "week",
            "week_start": "Sunday",
            "timezone": "Europe/London",
            "reset_hour": 6,
            "emergency": 5,
            "emergency_budget": "2.50",
            "thresholds": {"warn": 0.5, "stop": 1.0},
            "hard": False,
        },
    )
    assert b.name == "enrichment-weekly"
    assert b.limit == usd(30)
    assert b.emergency == usd(5)
    assert b.emergency_budget == usd("2.50")
    assert b.scope == Scope("service", "enrichment")
    assert b.window == Window("week", tz="Europe/London", reset_hour=6, week_start=6)
    assert b.thresholds == parse_ladder({"warn": 0.5, "stop": 1.0})
    assert not b.hard


def test_budget_from_config_defaults() -> None:
    b = budget_from_config("d", {"limit": "10"})
    assert b.window == Window("day")
    assert b.scope == Scope()
    assert b.thresholds == DEFAULT_LADDER
    assert b.emergency == 0
    assert b.emergency_budget == usd(50)  # the seed's emergency_budget
    assert b.hard


def test_rolling_budget_from_config() -> None:
    b = budget_from_config(
        "llm", {"limit": "5", "window": "rolling", "length": "24h", "granularity": "10m"}
    )
    assert b.window.kind == "rolling"
    assert b.window.length is not None
    assert b.window.length.total_seconds() == 86_400
    assert b.window.granularity is not None
    assert b.window.granularity.total_seconds() == 600


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "budgets.d.limit"),
        ({"limit": "10", "limt": "5"}, "budgets.d.limt"),
        ({"limit": "-10"}, "budgets.d.limit"),
        ({"limit": "10", "hard": "yes"}, "budgets.d.hard"),
        ({"limit": "10", "week_start": "someday"}, "budgets.d.week_start"),
        ({"limit": "10", "week_start": 7}, "budgets.d.week_start"),
        ({"limit": "10", "week_start": True}, "budgets.d.week_start"),
        ({"limit": "10", "scope": "customer:acme"}, "budgets.d.scope"),
        ({"limit": "10", "emergency": "nan"}, "budgets.d.emergency"),
        ({"limit": "10", "emergency_budget": "-5"}, "budgets.d.emergency_budget"),
        ({"limit": "10", "thresholds": {"stop": 0}}, "budgets.d.thresholds.stop"),
        ({"limit": "10", "window": "rolling", "length": "soon"}, "budgets.d.length"),
    ],
)
def test_budget_from_config_refuses(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        budget_from_config("d", spec)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("used", "limit", "percent"),
    [
        ("0", "10", "0"),
        ("2.5", "3", "83.33"),  # 83.333...: two places
        ("0.0000005", "0.001", "0.05"),  # half up at the second place
        ("12.5", "10", "125"),  # past the limit (overshoot, emergency use)
        ("1", "0.000000001", "100000000000"),
    ],
)
def test_used_percent_is_the_one_percentage_every_face_shows(
    used: str, limit: str, percent: str
) -> None:
    got = used_percent(to_nanos(used), to_nanos(limit))
    assert got == D(percent)
    assert 100 - got == D(100) - D(percent)  # what is left adds up to 100 exactly


@given(st.integers(0, MAX_NANOS), st.integers(1, MAX_NANOS))
def test_used_percent_is_within_half_a_hundredth_of_the_exact_share(used: int, limit: int) -> None:
    from fractions import Fraction

    got = used_percent(used, limit)
    assert got == got.quantize(D("0.01"))
    assert abs(Fraction(got) - Fraction(used * 100, limit)) <= Fraction(1, 200)
