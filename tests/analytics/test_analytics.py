"""Analytics: every figure equals the same figure computed from the raw events (random data,
every backend); an empty store gives zeros and "insufficient data"; bad input is refused.
The optimization rules and the savings vs traditional are in test_opportunities.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from scipy import stats

from spendgate import Gate
from spendgate.analytics import Analyst
from spendgate.analytics import forecast as forecasting
from spendgate.analytics.analyst import period_days
from spendgate.analytics.summaries import from_today, period_budget
from spendgate.config import Config, parse
from spendgate.errors import ValidationError
from spendgate.events import Event
from spendgate.money import from_nanos, money_text, to_nanos
from spendgate.testing import FrozenClock
from tests.conftest import random_event

ZONE = "America/New_York"
NOW = datetime(2026, 10, 20, 17, 42, tzinfo=UTC)  # 13:42 in New York
SERVICES = ("scraper", "enrichment", "image_processor")


def config(limit: str = "5.00", window: str = "day", **analytics: object) -> object:
    return parse(
        {
            "sources": {
                "google_maps": {"price": "0.01/request", "capability": "imagery"},
                "osm_tiles": {"price": "free", "capability": "imagery"},
                "legacy": {"unpriced": "allow"},
            },
            "budgets": [
                {"name": "main", "limit": limit, "window": window, "timezone": ZONE},
                {"name": "scraper", "limit": "100", "scope": "service:scraper"},
            ],
            "analytics": analytics,
        }
    )


def local(day: date) -> tuple[datetime, datetime]:
    """A New York day as UTC bounds, computed without spendgate."""
    from zoneinfo import ZoneInfo

    z = ZoneInfo(ZONE)
    a = datetime(day.year, day.month, day.day, tzinfo=z)
    b = datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=z)
    return a.astimezone(UTC), b.astimezone(UTC)


def within(
    events: list[Event], a: datetime, b: datetime, service: str | None = None
) -> list[Event]:
    return [e for e in events if a <= e.time < b and (service is None or e.service == service)]


def cost(events: list[Event]) -> int:
    return sum(e.cost or 0 for e in events)


def cpr(events: list[Event]) -> int:
    priced = [e for e in events if e.cost is not None]
    return cost(priced) // len(priced) if priced else 0


def free_rate(events: list[Event]) -> float:
    return sum(e.success and not e.paid for e in events) / len(events) if events else 0.0


@pytest.fixture
def filled(store_url: str) -> Iterator[tuple[Gate, FrozenClock, list[Event]]]:
    """45 days of random traffic (more at weekends) ending at NOW, in New York days."""
    clock = FrozenClock(NOW)
    gate = Gate.open(store_url, config=config(), clock=clock)
    rng = random.Random(45)
    batch = []
    for i in range(1500):
        at = NOW - timedelta(seconds=rng.randrange(45 * 86400))
        batch.append(random_event(rng, f"e{i}", at, SERVICES))
    for i in range(40):  # the last quarter hour, for the live rates
        batch.append(
            {
                "request_id": f"live{i}",
                "service": "scraper",
                "source": "google_maps",
                "time": NOW - timedelta(seconds=20 * i + 1),
            }
        )
    gate.record_many(batch)
    yield gate, clock, gate.events()
    gate.close()


def test_summaries_equal_the_raw_events(filled: tuple[Gate, FrozenClock, list[Event]]) -> None:
    gate, _, events = filled
    analyst = Analyst(gate)
    for period, first in (("today", date(2026, 10, 20)), ("month", date(2026, 10, 1))):
        a = local(first)[0]
        b = local(date(2026, 10, 20))[1] if period == "today" else local(date(2026, 10, 31))[1]
        raw = within(events, a, b)
        s = analyst.summary(period).to_dict()
        assert s["total_cost"] == money_text(cost(raw))
        assert s["total_requests"] == len(raw)
        assert s["unpriced_requests"] == sum(e.cost is None for e in raw)
        assert s["free_source_success_rate"] == pytest.approx(free_rate(raw))
        assert s["cache_hit_rate"] == pytest.approx(sum(e.cache_hits > 0 for e in raw) / len(raw))
        assert s["average_cost_per_request"] == money_text(cpr(raw))
        assert s["batched_requests"] == sum(e.batch_processing for e in raw)
        scored = [e.quality_score for e in raw if e.quality_score is not None]
        assert s["quality_metrics"]["average_quality_score"] == pytest.approx(
            sum(scored) / len(scored)
        )
        for source in ("google_maps", "osm_tiles", "legacy"):
            mine = [e for e in raw if e.source == source]
            assert s["cost_by_source"].get(source, "0") == money_text(cost(mine))
        for service in SERVICES:
            mine = [e for e in raw if e.service == service]
            assert s["services"][service]["total_requests"] == len(mine)
            one = analyst.summary(period, service=service).to_dict()
            assert one["total_cost"] == money_text(cost(mine))


def test_a_range_summary_equals_the_raw_events(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    s = Analyst(gate).summary(None, since="2026-09-12", until="2026-10-02").to_dict()
    raw = within(events, local(date(2026, 9, 12))[0], local(date(2026, 10, 2))[0])
    assert s["total_requests"] == len(raw)
    assert s["total_cost"] == money_text(cost(raw))


def test_daily_breakdown_and_its_hours_equal_the_raw_events(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    day = date(2026, 10, 11)
    d = Analyst(gate).daily("2026-10-11").to_dict()
    a, b = local(day)
    raw = within(events, a, b)
    assert d["total_cost"] == money_text(cost(raw))
    assert len(d["hourly"]) == 24
    for hour in d["hourly"]:
        at = datetime.fromisoformat(hour["hour"])
        mine = within(events, at, at + timedelta(hours=1))
        assert (hour["requests"], hour["total_cost"]) == (len(mine), money_text(cost(mine)))
    assert d["budget_status"] == ("over_budget" if cost(raw) > to_nanos("5") else "under_budget")


def test_live_metrics_equal_the_raw_events(filled: tuple[Gate, FrozenClock, list[Event]]) -> None:
    gate, _, events = filled
    live = Analyst(gate).live()
    m = live.to_dict()["live_figures"]
    a, b = local(date(2026, 10, 20))
    today = within(events, a, b)
    recent = within(events, NOW - timedelta(minutes=15), NOW + timedelta(microseconds=1))
    assert m["current_daily_spend"]["value"] == money_text(cost(today))
    assert m["requests_per_minute"]["value"] == pytest.approx(len(recent) / 15)
    assert m["cost_per_request"]["value"] == money_text(cpr(today))
    assert m["free_source_success_rate"]["value"] == pytest.approx(free_rate(today))
    assert m["budget_remaining"]["value"] == money_text(to_nanos("5") - cost(today))
    elapsed = (NOW - a).total_seconds()
    pace = cost(recent) / (15 * 60)
    projected = cost(today) + pace * ((b - a).total_seconds() - elapsed)
    assert to_nanos(m["projected_daily_total"]["value"]) == pytest.approx(projected, rel=1e-6)
    runway = (to_nanos("5") - cost(today)) / pace
    if to_nanos("5") > cost(today):
        assert m["time_until_budget_exhausted"]["value"] == pytest.approx(runway, rel=1e-6)
    for figure in m.values():
        assert figure["as_of"] == NOW.isoformat()


def test_service_performance_and_weekly_report_equal_the_raw_events(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    analyst = Analyst(gate)
    perf = analyst.service_performance("enrichment", days=7).to_dict()
    days = [date(2026, 10, 14) + timedelta(days=i) for i in range(7)]
    for row, day in zip(perf["daily"], days, strict=True):
        raw = within(events, *local(day), service="enrichment")
        assert row["date"] == day.isoformat()
        assert (row["requests"], row["total_cost"]) == (len(raw), money_text(cost(raw)))
    week = analyst.weekly_report().to_dict()
    days = [date(2026, 10, 13) + timedelta(days=i) for i in range(7)]
    daily = [cost(within(events, *local(d))) for d in days]
    raw = within(events, local(days[0])[0], local(days[-1])[1])
    perf_ = week["budget_performance"]
    assert perf_["total_spent"] == money_text(sum(daily))
    assert perf_["days_over_budget"] == sum(c > to_nanos("5") for c in daily)
    assert perf_["days_under_budget"] == 7 - perf_["days_over_budget"]
    assert week["trend_analysis"]["cost_trend"] == [money_text(c) for c in daily]
    assert week["cost_efficiency"]["cost_per_request"] == money_text(cpr(raw))
    assert week["cost_efficiency"]["savings_vs_traditional"] is None  # no traditional cost set


def test_trends_equal_a_regression_on_the_raw_daily_series(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    t = Analyst(gate).trends(days=30)
    days = [date(2026, 9, 20) + timedelta(days=i) for i in range(30)]
    daily = [cost(within(events, *local(d))) / 1e9 for d in days]
    fit = stats.linregress(range(30), daily)
    assert t["cost_trend"]["slope"] == pytest.approx(fit.slope)
    assert t["cost_trend"]["r"] == pytest.approx(fit.rvalue)
    volume = [len(within(events, *local(d), service="scraper")) for d in days]
    fit = stats.linregress(range(30), volume)
    scraper = t["service_specific_trends"]["scraper"]["request_volume_trend"]
    assert scraper["slope"] == pytest.approx(fit.slope)


def test_the_monthly_forecast_projects_from_month_to_date(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    m = Analyst(gate).monthly_forecast()
    d = m.to_dict()
    month = within(events, local(date(2026, 10, 1))[0], local(date(2026, 10, 31))[1])
    assert d["current_spend"] == money_text(cost(month))
    assert (d["days_elapsed"], d["days_remaining"]) == (20, 11)
    assert d["chosen_method"] in d["projections"]
    for p in d["projections"].values():
        low, mid, high = (to_nanos(p["interval"]["low"]), to_nanos(p["projected_total"]),
                          to_nanos(p["interval"]["high"]))  # fmt: skip
        assert cost(month) <= low <= mid <= high
    assert d["backtest"]["seasonal_naive"]["origins"] >= 2
    crossing = m.crossing(0.0001)
    assert crossing == date(2026, 10, 20)  # already past a tiny share: today
    assert m.crossing(1000.0) is None


def test_python_reads_of_analytics_amounts_are_decimal_beside_their_nanos(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, _ = filled
    analyst = Analyst(gate)
    m = analyst.monthly_forecast()
    projection, projection_nanos = m.projection(), m.projection_nanos()
    assert projection is not None
    assert projection_nanos is not None
    day = analyst.period_budget("day")
    assert day is not None
    pairs = [
        (m.spent, m.spent_nanos),
        (m.base, m.base_nanos),
        (m.today, m.today_nanos),
        (m.monthly_budget, m.monthly_budget_nanos),
        (analyst.monthly_budget(), m.monthly_budget_nanos),
        *zip(projection, projection_nanos, strict=True),
        *zip(m.cumulative(), m.cumulative_nanos(), strict=True),
        (day.amount, day.amount_nanos),
        (analyst.daily_limit(), day.amount_nanos),
        (analyst.daily("2026-10-19").daily_limit, analyst.daily("2026-10-19").daily_limit_nanos),
        (analyst.weekly_report().daily_limit, analyst.weekly_report().daily_limit_nanos),
    ]
    for amount, nanos in pairs:
        assert isinstance(amount, Decimal)
        assert isinstance(nanos, int)
        assert amount == from_nanos(nanos)
    assert m.spent_nanos > 0
    assert day.amount == Decimal("5")
    assert m.to_dict()["current_spend"] == money_text(m.spent_nanos)  # the faces are unchanged


def test_an_empty_store_gives_zeros_and_insufficient_data(store_url: str) -> None:
    gate = Gate.open(store_url, config=config(), clock=FrozenClock(NOW))
    try:
        analyst = Analyst(gate)
        live = analyst.live().to_dict()
        assert live["live_figures"]["current_daily_spend"]["value"] == "0"
        assert live["live_figures"]["time_until_budget_exhausted"]["value"] is None
        assert live["status"]["free_source_performance"] == "no data"
        for period in ("today", "week", "month"):
            s = analyst.summary(period).to_dict()  # type: ignore[arg-type]
            assert (s["total_cost"], s["total_requests"]) == ("0", 0)
        assert analyst.daily("2026-10-01").to_dict()["total_requests"] == 0
        # No event yet: every day is "no data", never a $0 day under budget.
        assert analyst.first_day() is None
        week = analyst.weekly_report().to_dict()
        assert week["budget_performance"] == {
            **week["budget_performance"],
            "total_spent": "0",
            "days_with_data": 0,
            "daily_average": None,
            "budget_utilization": None,
            "days_under_budget": 0,
            "days_over_budget": 0,
        }
        assert week["trend_analysis"]["cost_trend"] == [None] * 7
        trends = analyst.trends(7)
        assert trends["days_with_data"] == 0
        assert trends["cost_trend"]["summary"] == "insufficient data (0 points)"
        forecast = analyst.monthly_forecast().to_dict()
        # No projection, but the seed's names are there, saying why.
        assert set(forecast["projections"]) == {"linear", "trend_based", "ml_forecast"}
        for p in forecast["projections"].values():
            assert (p["projected_total"], p["available"], p["confidence"]) == (None, False, "low")
            assert p["reason"].startswith("not fitted: 0 days of history")
        assert trends["predictions"]["next_month_cost"]["projected_total"] is None
        assert forecast["forecast"] is None
        assert forecast["chosen_because"] == "no history: nothing to project"
        assert analyst.opportunities() == []
        assert analyst.projected_crossing(0.8) is None
        perf = analyst.service_performance("scraper", 3).to_dict()
        assert (perf["total_requests"], perf["days_with_data"]) == (0, 0)
        assert [d["data"] for d in perf["daily"]] == [False] * 3
        assert perf["trends"]["cost_trend"]["trend"] == "insufficient_data"
    finally:
        gate.close()


def test_a_month_budget_s_daily_share_is_its_limit_over_the_month_s_days(store_url: str) -> None:
    """In integers: as a duration (`limit * timedelta(days=1)`), a limit of one currency unit
    or more overflowed, and every figure with a daily limit failed."""
    gate = Gate.open(store_url, config=config("3100", "month"), clock=FrozenClock(NOW))
    try:
        analyst = Analyst(gate)
        assert analyst.daily_limit() == Decimal("100")  # October has 31 days
        assert analyst.daily("2026-10-01").daily_limit_nanos == to_nanos("100")
        february = analyst.period_budget("day", datetime(2026, 2, 10, tzinfo=UTC))
        assert february is not None
        assert february.amount_nanos == to_nanos("3100") // 28
    finally:
        gate.close()


def budgets(*specs: dict[str, object], **analytics: object) -> Config:
    return parse(
        {
            "sources": {"google_maps": {"price": "0.01/request"}},
            "budgets": list(specs),
            "analytics": analytics,
        }
    )


OCTOBER = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("specs", "named", "month", "day", "from_budget"),
    [
        # A day budget over everything: 31 of its limits, whatever else is scoped.
        (
            [
                {"name": "label", "limit": "0.60", "scope": "label:pipeline=property"},
                {"name": "everything", "limit": "10"},
            ],
            None,
            "310",
            "10",
            "everything",
        ),
        # A month window over everything wins the month (and gives the day its share); the
        # day budget over everything wins the day.
        (
            [
                {"name": "day", "limit": "10"},
                {"name": "month", "limit": "200", "window": "month"},
            ],
            None,
            "200",
            "10",
            ("month", "day"),
        ),
        # A week: its limit x 31/7 (by whole days, as the days are counted).
        ([{"name": "week", "limit": "70", "window": "week"}], None, "310", "10", "week"),
        # Only scoped budgets: total spend has no budget to be measured against...
        ([{"name": "svc", "limit": "5", "scope": "service:scraper"}], None, None, None, None),
        # ...unless [analytics] names one, which then says whose scope it is.
        (
            [{"name": "svc", "limit": "5", "scope": "service:scraper"}],
            "svc",
            "155",
            "5",
            "svc",
        ),
    ],
)
def test_the_day_s_and_the_month_s_budget_follow_one_rule_and_name_their_budget(
    specs: list[dict[str, object]],
    named: str | None,
    month: str | None,
    day: str | None,
    from_budget: str | tuple[str, str] | None,
) -> None:
    cfg = budgets(*specs, **({"budget": named} if named else {}))
    found = {p: period_budget(cfg.budgets, named, p, OCTOBER) for p in ("month", "day")}
    if month is None:
        assert found == {"month": None, "day": None}
        return
    names = from_budget if isinstance(from_budget, tuple) else (from_budget, from_budget)
    for period, amount, name in (("month", month, names[0]), ("day", day, names[1])):
        value = found[period]
        assert value is not None
        assert value.amount_nanos == to_nanos(amount)
        shown = value.to_dict()
        assert shown["amount"] == amount
        assert shown["budget"] == name
        assert shown["scope"] == str(value.budget.scope)
        assert name in shown["basis"]


def test_every_analytics_face_shows_the_same_month_budget_naming_its_budget(
    store_url: str,
) -> None:
    gate = Gate.open(store_url, config=config("5.00"), clock=FrozenClock(NOW))
    try:
        analyst = Analyst(gate)
        expected = {
            "amount": "155",
            "budget": "main",
            "scope": "all",
            "window": "day",
            "basis": "the day limit of budget main x 31 days",
        }
        assert analyst.monthly_budget() == Decimal("155")
        forecast = analyst.monthly_forecast().to_dict()["budget_assessment"]
        assert (forecast["monthly_budget"], forecast["monthly_budget_from"]) == ("155", expected)
        day = analyst.daily("2026-10-20").to_dict()
        assert day["daily_budget"] == "5"
        assert day["daily_budget_from"]["basis"] == "the day limit of budget main"
        week = analyst.weekly_report().to_dict()["budget_performance"]
        assert week["daily_budget_from"]["budget"] == "main"
    finally:
        gate.close()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda a: a.summary("yesterday"), "period"),
        (lambda a: a.summary(service="nobody"), "service"),
        (lambda a: a.daily("20/10/2026"), "date"),
        (lambda a: a.daily(None), "date"),
        (lambda a: a.summary(None, since="2026-10-05", until="2026-10-01"), "until"),
        (lambda a: a.summary(None, since="2026-10-05"), "until"),
        (lambda a: a.service_performance("scraper", 0), "days"),
        (lambda a: a.trends(days=-3), "days"),
        (lambda a: a.opportunities(days=True), "days"),
        (lambda a: a.service_performance("nobody"), "service"),
        (lambda a: a.projected_crossing(0), "fraction"),
        (lambda a: a.weekly_report("last week"), "end"),
    ],
)
def test_bad_input_names_the_field(
    filled: tuple[Gate, FrozenClock, list[Event]], call: object, field: str
) -> None:
    gate, _, _ = filled
    with pytest.raises(ValidationError) as err:
        call(Analyst(gate))  # type: ignore[operator]
    assert err.value.field == field


def test_bad_analytics_config_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"analytics\.budget"):
        config(budget="nope")
    with pytest.raises(ValidationError, match=r"analytics\.timezone"):
        config(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match=r"analytics\.traditional_cost_per_request"):
        config(traditional_cost_per_request="-1")
    with pytest.raises(ValidationError, match=r"analytics\.colour"):
        config(colour="red")


def test_a_young_day_is_not_extrapolated_and_six_hours_give_a_low_confidence_run_rate(
    store_url: str,
) -> None:
    """One $5 event on a new store projected a month of $13,903 (the last minutes' pace times
    the month); now a day needs six hours of data before it is projected at all, and then
    the projection is a run rate over those hours, low confidence, with an interval."""
    start = datetime(2026, 11, 3, 5, 0, tzinfo=UTC)  # New York midnight, 3 November
    clock = FrozenClock(start + timedelta(minutes=30))
    gate = Gate.open(
        store_url,
        config=parse(
            {
                "sources": {"api": {"price": "5/request"}},
                "budgets": [{"name": "main", "limit": "620", "window": "month", "timezone": ZONE}],
            }
        ),
        clock=clock,
    )
    try:
        gate.record("svc", "api", time=start + timedelta(minutes=25))
        analyst = Analyst(gate)
        m = analyst.monthly_forecast()
        d = m.to_dict()
        assert m.forecast is None
        assert d["forecast"] is None
        assert d["confidence"] == "low"
        assert d["budget_assessment"]["projected_total"] is None
        assert d["budget_assessment"]["projected_vs_budget"] is None
        assert d["current_spend"] == "5"
        live = analyst.live().to_dict()["live_figures"]["projected_daily_total"]
        assert (live["value"], live["method"]) == (
            "5",
            "spent_so_far (under 6 hours of today's data)",
        )

        clock.set(start + timedelta(hours=6, minutes=25))  # six hours since the first event
        m = analyst.monthly_forecast()
        f = m.forecast
        assert f is not None
        assert (f.method, f.confidence) == ("intraday_run_rate", "low")
        # $20 a day (5 over a quarter day) for the 28 days left, today included.
        assert f.total == Decimal("560")
        assert f.reason == "insufficient history: 6.0 hours of data today; today's run rate"
        assert Decimal("5") <= f.low < f.total < f.high  # never below what is spent
        assert m.to_dict()["forecast"] == f.to_dict()
        live = analyst.live().to_dict()["live_figures"]["projected_daily_total"]
        assert live["method"] == "intraday_burn_rate"
    finally:
        gate.close()


def month_gate(url: str, now: datetime, reset_hour: int = 0) -> Gate:
    return Gate.open(
        url,
        config=parse(
            {
                "sources": {"api": {"price": "1/request"}},
                "budgets": [
                    {
                        "name": "main",
                        "limit": "1000",
                        "window": "month",
                        "timezone": ZONE,
                        "reset_hour": reset_hour,
                    }
                ],
            }
        ),
        clock=FrozenClock(now),
    )


def test_no_bound_of_the_month_is_below_what_it_has_spent(store_url: str) -> None:
    """One $5 day, then $50 today: the interval's low end was $49.78 with $55 spent."""
    now = datetime(2026, 12, 10, 20, 0, tzinfo=UTC)
    gate = month_gate(store_url, now)
    try:
        gate.record("svc", "api", cost="5", time=now - timedelta(days=1, hours=8))
        gate.record("svc", "api", cost="50", time=now - timedelta(hours=1))
        m = Analyst(gate).monthly_forecast()
        assert m.spent == Decimal("55")
        f = m.forecast
        assert f is not None
        assert m.spent <= f.low <= f.total <= f.high
        for method in m.outlook.forecasts:
            found = m.projection(method)
            assert found is not None
            assert all(bound >= m.spent for bound in found)
    finally:
        gate.close()


def test_an_event_ahead_of_the_clock_gives_no_forecast_rather_than_an_error(
    store_url: str,
) -> None:
    """A writer whose clock runs minutes fast, just before midnight: the store's first event
    is on tomorrow's local day."""
    now = datetime(2026, 12, 10, 4, 58, tzinfo=UTC)  # 23:58 in New York
    gate = month_gate(store_url, now)
    try:
        gate.record("svc", "api", time=now + timedelta(minutes=3))
        d = Analyst(gate).monthly_forecast().to_dict()
        assert d["forecast"] is None
        assert d["current_spend"] == "0"
    finally:
        gate.close()


def test_days_that_reset_in_the_afternoon_are_counted_in_their_own_window(
    store_url: str,
) -> None:
    """Days from 13:00 New York: $10 a day from 1 to 9 December and $3 on the 10th so far.
    Anchoring a day at its noon found the window before it, a day late."""
    now = at_local(date(2026, 12, 10), 20)
    gate = month_gate(store_url, now, reset_hour=13)
    try:
        gate.record_many(
            {
                "service": "svc",
                "source": "api",
                "cost": "10",
                "time": at_local(date(2026, 12, d), 15),
            }
            for d in range(1, 10)
        )
        gate.record("svc", "api", cost="3", time=at_local(date(2026, 12, 10), 14))
        analyst = Analyst(gate)
        assert analyst.daily("2026-12-10").summary.cost == Decimal("3")
        assert analyst.daily("2026-12-01").summary.cost == Decimal("10")
        m = analyst.monthly_forecast()
        assert (m.spent, m.today, m.base) == (Decimal("93"), Decimal("3"), Decimal("90"))
        assert m.outlook.points == 9  # the nine whole days, the first one included
    finally:
        gate.close()


# -- series start when the data starts -------------------------------------------------------


def at_local(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A New York time on `day`, in UTC."""
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(ZONE)).astimezone(
        UTC
    )


def calls(service: str, source: str, day: date, n: int, hour: int = 12) -> list[dict[str, object]]:
    return [{"service": service, "source": source, "time": at_local(day, hour)} for _ in range(n)]


THU, FRI, SAT, SUN, MON = (date(2026, 10, 15 + i) for i in range(5))  # Mon 12 to Sun 18: a week


def test_a_store_that_begins_mid_week_counts_only_the_days_with_data(store_url: str) -> None:
    """Events begin on the Thursday of the week Monday 12 to Sunday 18 October: Monday to
    Wednesday are "no data", not $0 days under budget; Saturday, free calls only, is data."""
    gate = Gate.open(store_url, config=config("5.00"), clock=FrozenClock(NOW))
    try:
        # The first call at 00:01 New York on Thursday: its UTC day began on Wednesday
        # evening in New York, so the first day is found by the minute, not the UTC day.
        gate.record("scraper", "google_maps", time=at_local(THU, 0, 1))
        gate.record_many(
            calls("scraper", "google_maps", THU, 299)  # $3
            + calls("scraper", "google_maps", FRI, 600)  # $6: over the $5 day
            + calls("enrichment", "osm_tiles", SAT, 50)  # $0, free calls: a day with data
            + calls("scraper", "google_maps", SUN, 300)  # $3
        )
        analyst = Analyst(gate)
        assert analyst.first_day() == THU
        assert analyst.first_day("enrichment") == SAT
        assert analyst.first_day("nobody") is None
        week = analyst.weekly_report("2026-10-18").to_dict()
        perf = week["budget_performance"]
        assert perf["total_spent"] == "12"
        assert perf["days_with_data"] == 4
        assert perf["daily_average"] == "3"  # $12 over four days, not seven
        assert perf["budget_utilization"] == pytest.approx(12 / 20)
        assert (perf["days_under_budget"], perf["days_over_budget"]) == (3, 1)
        lists = week["trend_analysis"]
        assert lists["cost_trend"] == [None, None, None, "3", "6", "0", "3"]
        assert lists["request_volume_trend"] == [None, None, None, 300, 600, 50, 300]
        assert lists["free_source_trend"] == [None, None, None, 0.0, 0.0, 1.0, 0.0]
        assert week["period"]["days_analyzed"] == 7
        # A day before the first event, asked for alone: no data, not $0 under budget.
        wednesday = analyst.daily("2026-10-14").to_dict()
        assert (wednesday["data"], wednesday["budget_status"]) == (False, None)
        assert wednesday["budget_utilization"] is None
        thursday = analyst.daily(THU).to_dict()
        assert (thursday["data"], thursday["budget_status"]) == (True, "under_budget")
    finally:
        gate.close()


@pytest.fixture
def young(store_url: str) -> Iterator[Gate]:
    """$3 a day of scraper calls from Thursday 15 October to Monday 19 (steady), and free
    enrichment calls from Saturday 17; the clock stands on Tuesday 20."""
    gate = Gate.open(store_url, config=config("5.00"), clock=FrozenClock(NOW))
    steady = [e for d in (THU, FRI, SAT, SUN, MON) for e in calls("scraper", "google_maps", d, 300)]
    later = [e for d in (SAT, SUN, MON) for e in calls("enrichment", "osm_tiles", d, 10)]
    gate.record_many(steady + later)
    yield gate
    gate.close()


def test_a_young_steady_series_is_not_a_trend_from_zeros(young: Gate) -> None:
    """With the 25 days before the first event as $0, this steady $3 a day read as a strong
    increasing trend; from the first event, it is five equal points: stable."""
    t = Analyst(young).trends(30)
    assert t["days_with_data"] == 5
    cost = t["cost_trend"]
    assert (cost["points"], cost["trend"], cost["slope"], cost["r"]) == (5, "stable", 0.0, 0.0)
    scraper = t["service_specific_trends"]["scraper"]
    for line in ("cost_trend", "request_volume_trend"):
        assert (scraper[line]["points"], scraper[line]["trend"]) == (5, "stable")
    enrichment = t["service_specific_trends"]["enrichment"]  # from its own first day, Saturday
    assert enrichment["request_volume_trend"]["points"] == 3
    assert enrichment["request_volume_trend"]["trend"] == "stable"
    assert Analyst(young).trends(30, service="enrichment")["days_with_data"] == 3


def test_one_day_of_data_is_insufficient_and_two_are_two_points(store_url: str) -> None:
    clock = FrozenClock(at_local(FRI, 9))
    gate = Gate.open(store_url, config=config("5.00"), clock=clock)
    try:
        analyst = Analyst(gate)
        gate.record_many(calls("scraper", "google_maps", THU, 100))
        t = analyst.trends(30)
        assert (t["days_with_data"], t["cost_trend"]["summary"]) == (
            1,
            "insufficient data (1 point)",
        )
        clock.set(at_local(SAT, 9))
        gate.record_many(calls("scraper", "google_maps", FRI, 300))
        t = analyst.trends(30)
        assert (t["days_with_data"], t["cost_trend"]["points"]) == (2, 2)
        assert t["cost_trend"]["slope"] == pytest.approx(2.0)  # $1 then $3
        assert t["cost_trend"]["p_value"] is None  # two points leave nothing to test a line by
    finally:
        gate.close()


def test_a_service_that_began_later_counts_from_its_own_first_event(young: Gate) -> None:
    analyst = Analyst(young)
    perf = analyst.service_performance("enrichment", 7).to_dict()  # 14 to 20 October
    assert [d["data"] for d in perf["daily"]] == [False] * 3 + [True] * 4
    assert perf["daily"][0] == {
        "date": "2026-10-14",
        "data": False,
        "total_cost": None,
        "requests": None,
        "free_source_rate": None,
        "cost_per_request": None,
    }
    assert perf["daily"][3]["requests"] == 10
    assert perf["daily"][-1]["requests"] == 0  # today, after its first event: data, $0
    assert perf["days_with_data"] == 4
    assert perf["trends"]["request_volume_trend"]["points"] == 4
    scraper = analyst.service_performance("scraper", 7).to_dict()
    assert scraper["days_with_data"] == 6  # Thursday 15 to today


# -- the seed's names (issue 20): CostTrendAnalyzer and generate_monthly_budget_forecast ------

SEED_TREND_KEYS = {  # the seed's calculate_trend() answer
    "trend",
    "strength",
    "slope",
    "correlation",
    "p_value",
    "standard_error",
    "trend_summary",
}


def test_trends_answer_with_the_seeds_names_over_its_period_token(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    analyst = Analyst(gate)
    # The seed: `analyze_cost_trends(time_period="3_months")`.
    trends = analyst.trends("3_months")
    assert trends["days"] == 92  # 20 July to 19 October, the complete days
    assert trends["time_period"] == "3_months"
    for name in (
        "overall_cost_trend",
        "free_source_success_trend",
        "request_volume_trend",
        "cost_per_request_trend",
    ):
        assert set(trends[name]) >= SEED_TREND_KEYS, name
    assert trends["overall_cost_trend"] == trends["cost_trend"]  # beside spendgate's name
    # Fitted on the days from the first event, the same regression as scipy's on raw events.
    first = min(analyst.local_day(e.time) for e in events)
    days = [first + timedelta(days=i) for i in range((date(2026, 10, 19) - first).days + 1)]
    fit = stats.linregress(range(len(days)), [cost(within(events, *local(d))) / 1e9 for d in days])
    line = trends["overall_cost_trend"]
    assert line["correlation"] == pytest.approx(fit.rvalue)
    assert line["trend_summary"] == line["summary"]
    assert line["trend_summary"].endswith(f"(r={fit.rvalue:.3f})")
    for service in SERVICES:
        lines = trends["service_specific_trends"][service]
        assert set(lines) >= {"cost_trend", "efficiency_trend", "volume_trend"}
        for name in ("cost_trend", "efficiency_trend", "volume_trend"):
            assert set(lines[name]) >= SEED_TREND_KEYS
        assert lines["efficiency_trend"] == lines["cost_per_request_trend"]
        assert lines["volume_trend"] == lines["request_volume_trend"]
        mine = [len(within(events, *local(d), service=service)) for d in days]
        fit = stats.linregress(range(len(days)), mine)
        assert lines["volume_trend"]["correlation"] == pytest.approx(fit.rvalue)
    predictions = trends["predictions"]
    assert set(predictions) == {
        "next_month_cost",
        "cost_optimization_opportunities",
        "efficiency_forecast",
    }
    assert predictions["cost_optimization_opportunities"] == [
        o.to_dict() for o in analyst.opportunities(92)
    ]
    efficiency = predictions["efficiency_forecast"]
    assert efficiency["cost_per_request_trend"] == trends["cost_per_request_trend"]["trend"]
    assert efficiency["outlook"] in {"improving", "worsening", "mixed", "stable"}


def test_next_month_cost_is_the_forecast_cores_projection(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, events = filled
    analyst = Analyst(gate)
    next_month = analyst.trends(30)["predictions"]["next_month_cost"]
    # The same history as the monthly forecast (whole days from the first whole day), the
    # same outlook() over the next 30 days from today, today never below what it spent.
    first = min(analyst.local_day(e.time) for e in events) + timedelta(days=1)
    days = [first + timedelta(days=i) for i in range((date(2026, 10, 19) - first).days + 1)]
    history = [cost(within(events, *local(d))) / 1e9 for d in days]
    expected = forecasting.outlook(history, 30, season=7)
    spent_today = cost(within(events, *local(date(2026, 10, 20))))
    mid, low, high = from_today(expected.best, spent_today)  # type: ignore[arg-type]
    assert next_month["projected_total"] == money_text(mid)
    assert next_month["interval"] == {"low": money_text(low), "high": money_text(high)}
    assert (next_month["method"], next_month["confidence"]) == (
        expected.chosen,
        expected.confidence,
    )
    assert next_month["days"] == 30
    assert next_month["start"] == local(date(2026, 10, 20))[0].isoformat()
    # One outlook rule: the month's forecast chose by the same history.
    month = analyst.monthly_forecast().to_dict()
    assert month["chosen_method"] == next_month["method"]


def test_the_seeds_stable_rule_is_offered_beside_spendgates(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, _ = filled
    analyst = Analyst(gate)
    seed = analyst.trends(30, stable_rule="seed")
    relative = analyst.trends(30)
    assert (seed["stable_rule"], relative["stable_rule"]) == ("seed", "relative")
    lines = [seed[k] for k in ("cost_trend", "free_source_success_trend", "request_volume_trend")]
    for service in seed["service_specific_trends"].values():
        lines += service.values()
    for line in lines:
        assert line["stable_rule"] == "seed"
        slope = line["slope"]
        flat = abs(slope) < 0.01  # the seed: `if abs(slope) < 0.01: 'stable'`
        expected = "stable" if flat else "increasing" if slope > 0 else "decreasing"
        assert line["trend"] == expected
    # Volumes of dozens of requests a day move more than 0.01 a day: the seed calls them
    # moving where spendgate's unit-free rule may call them stable; the statistics agree.
    assert seed["request_volume_trend"]["slope"] == relative["request_volume_trend"]["slope"]


@pytest.mark.parametrize(
    ("token", "days"),
    [
        ("3_months", 92),
        ("1_month", 30),
        ("month", 30),
        ("2_weeks", 14),
        ("week", 7),
        ("90_days", 90),
        ("1_year", 365),
        ("45", 45),
        (30, 30),
    ],
)
def test_the_seeds_period_tokens_are_calendar_periods(token: object, days: int) -> None:
    assert period_days(token, date(2026, 10, 20)) == days


@pytest.mark.parametrize(
    "token",
    [
        *("13_months", "fortnight", "3_moons", "0_days", "-1", 0, 400, "١٢", "١٢_days"),
        # Counts of 4,301 digits, which int() refuses (the schema fuzzer sent one: a 500).
        *("0" * 4301, "9" * 4301, f"{'9' * 4301}_months", f"{'9' * 4301}_weeks"),
    ],
)
def test_a_bad_period_names_its_field_and_the_valid_ones(token: object) -> None:
    with pytest.raises(ValidationError) as caught:
        period_days(token, date(2026, 10, 20))
    assert caught.value.field in {"time_period", "days"}
    assert "366" in str(caught.value)


def test_the_monthly_forecast_keeps_the_seeds_projection_names(
    filled: tuple[Gate, FrozenClock, list[Event]],
) -> None:
    gate, _, _ = filled
    d = Analyst(gate).monthly_forecast().to_dict()
    p = d["projections"]
    # The seed's three, each with projected_total, confidence and method.
    for name in ("linear", "trend_based", "ml_forecast"):
        assert {"projected_total", "confidence", "method", "model"} <= set(p[name]), name
        assert p[name]["confidence"] in {"low", "medium", "high"}
    assert p["linear"]["method"] == "linear_extrapolation"
    assert p["trend_based"]["method"] == "trend_analysis"
    # Honest about the model: exponential smoothing, not machine learning.
    assert p["ml_forecast"]["of"] == "seasonal"
    assert "Holt-Winters" in p["ml_forecast"]["model"]
    assert "not machine learning" in p["ml_forecast"]["model"]
    assert "damped-trend exponential smoothing" in p["trend_based"]["model"]
    # The same projections as spendgate's methods of those names, and the same confidence
    # rule: the chosen method's is the headline's.
    for name, method in (("trend_based", "trend"), ("ml_forecast", "seasonal")):
        same = {k: v for k, v in p[method].items() if k != "method"}
        assert {k: v for k, v in p[name].items() if k not in {"method", "of"}} == same
    assert p[d["chosen_method"]]["confidence"] == d["forecast"]["confidence"] == d["confidence"]
    for method, row in p.items():
        if method != d["chosen_method"] and row["confidence"] == "high":
            score = d["backtest"][row.get("of", method)]
            assert score["mase"] < score["baseline"]  # "high" only for a method that beat it
