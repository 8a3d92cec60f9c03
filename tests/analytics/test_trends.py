"""The linear trend of a series: direction, strength, the statistics, and the edge cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import linregress

from spendgate.analytics.trends import Trend, trend
from spendgate.errors import ValidationError


def test_increasing_series() -> None:
    t = trend([1.0, 2.0, 3.0, 4.0, 5.0])
    assert t.direction == "increasing"
    assert t.strength == "strong"
    assert t.slope == pytest.approx(1.0)
    assert t.r == pytest.approx(1.0)
    assert t.points == 5
    assert t.summary == "strong increasing trend (r=1.000)"


def test_decreasing_series() -> None:
    t = trend([50.0, 41.0, 35.0, 22.0, 18.0, 9.0])
    assert t.direction == "decreasing"
    assert t.strength == "strong"
    assert t.slope is not None
    assert t.slope < 0
    assert t.summary.startswith("strong decreasing trend (r=-0.99")


def test_small_wobble_around_a_level_is_stable() -> None:
    t = trend([100.0, 101.0, 99.0, 100.5, 100.0, 99.5])
    assert t.direction == "stable"
    assert t.summary.startswith("stable (r=")


@pytest.mark.parametrize(
    ("values", "band", "strength"),
    [
        ([1.0, 2.0, 3.0, 5.0, 4.0, 6.0], (0.8, 1.0), "strong"),
        ([1.0, 3.0, 2.0, 1.0, 4.0, 3.0], (0.5, 0.8), "moderate"),
        ([2.0, 5.0, 1.0, 4.0, 2.0, 3.0], (0.0, 0.5), "weak"),
    ],
)
def test_strength_follows_r(values: list[float], band: tuple[float, float], strength: str) -> None:
    r = float(linregress(range(len(values)), values).rvalue)
    assert band[0] < abs(r) <= band[1], "the example must sit inside its band"
    assert trend(values).strength == strength


def with_r(target: float) -> list[float]:
    """Six points whose correlation with their positions is `target` (0 < target < 1)."""
    x = np.arange(6.0) - 2.5
    e = np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
    e -= e @ x / (x @ x) * x  # noise orthogonal to the line: r = |x| / sqrt(|x|² + k²|e|²)
    k = math.sqrt(x @ x * (1 / target**2 - 1) / (e @ e))
    return list(10 + x + k * e)


@pytest.mark.parametrize(
    ("target", "strength"),
    [(0.49, "weak"), (0.51, "moderate"), (0.79, "moderate"), (0.81, "strong")],
)
def test_strength_thresholds_at_half_and_four_fifths(target: float, strength: str) -> None:
    t = trend(with_r(target))
    assert t.r == pytest.approx(target)
    assert t.strength == strength
    falling = trend([-v for v in with_r(target)])
    assert falling.r == pytest.approx(-target)
    assert falling.strength == strength


def test_constant_series_is_stable_with_no_correlation_and_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = trend([7.0, 7.0, 7.0, 7.0])
    assert (t.direction, t.strength, t.slope, t.r, t.p_value) == ("stable", "weak", 0.0, 0.0, 1.0)
    assert t.standard_error == 0.0


def test_all_zeros_is_stable() -> None:
    assert trend([0.0, 0.0, 0.0]).direction == "stable"


@pytest.mark.parametrize(("values", "summary"), [([], "(0 points)"), ([4.0], "(1 point)")])
def test_fewer_than_two_points_is_insufficient_data(values: list[float], summary: str) -> None:
    t = trend(values)
    assert t == Trend("insufficient_data", None, None, None, None, None, len(values), t.summary)
    assert t.summary == f"insufficient data {summary}"


def test_two_points_have_a_direction_but_no_p_value() -> None:
    t = trend([1.0, 3.0])
    assert (t.direction, t.strength, t.slope, t.r) == ("increasing", "strong", 2.0, 1.0)
    # No residual degrees of freedom: scipy's p = 0 and stderr = 0 would overstate certainty.
    assert t.p_value is None
    assert t.standard_error is None
    flat = trend([3.0, 3.0])
    assert (flat.direction, flat.r, flat.p_value, flat.standard_error) == ("stable", 0.0, 1.0, None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_names_its_position(bad: float) -> None:
    with pytest.raises(ValidationError) as info:
        trend([1.0, 2.0, bad, 4.0])
    assert info.value.field == "values[2]"
    assert isinstance(info.value, ValueError)


def test_stable_change_is_the_share_of_the_mean_the_line_may_move() -> None:
    # The fitted line rises 4 over the span; the mean is 100: a 4% change.
    values = [98.0, 99.0, 100.0, 101.0, 102.0]
    assert trend(values).direction == "stable"
    assert trend(values, stable_change=0.03).direction == "increasing"
    assert trend(values, stable_change=0.0).direction == "increasing"
    with pytest.raises(ValidationError):
        trend(values, stable_change=-0.1)


def test_agrees_with_scipy_linregress() -> None:
    rng = np.random.default_rng(7)
    values = list(np.linspace(10, 30, 40) + rng.normal(0, 4, 40))
    direct = linregress(range(40), values)
    t = trend(values)
    assert t.slope == pytest.approx(direct.slope)
    assert t.r == pytest.approx(direct.rvalue)
    assert t.p_value == pytest.approx(direct.pvalue)
    assert t.standard_error == pytest.approx(direct.stderr)


def test_to_dict_is_json_ready_with_the_spec_keys() -> None:
    d = trend([1.0, 2.0, 4.0]).to_dict()
    assert list(d) == [
        "trend",
        "strength",
        "slope",
        "r",
        "correlation",
        "p_value",
        "standard_error",
        "points",
        "summary",
        "trend_summary",
        "stable_rule",
    ]
    assert d["trend"] == "increasing"
    # The seed's names beside spendgate's, the same figures.
    assert (d["correlation"], d["trend_summary"]) == (d["r"], d["summary"])
    json.dumps(d)
    json.dumps(trend([]).to_dict())


def test_the_seeds_stable_rule_is_an_absolute_slope_below_one_cent_a_step() -> None:
    # The seed: `if abs(slope) < 0.01: trend_direction = 'stable'`, in the series' own units.
    creeping = [1000.0 + 0.009 * i for i in range(10)]  # slope 0.009: the seed calls it stable
    assert trend(creeping, rule="seed").direction == "stable"
    climbing = [0.10 + 0.011 * i for i in range(10)]  # slope 0.011 on a tiny series
    assert trend(climbing, rule="seed").direction == "increasing"
    assert trend([0.5 - 0.02 * i for i in range(5)], rule="seed").direction == "decreasing"
    # Spendgate's unit-free rule reads the same series by their size: the first is flat next
    # to its mean, the second more than doubles.
    assert trend(creeping).direction == "stable"
    assert trend(climbing).direction == "increasing"
    big = [100.0 + 0.5 * i for i in range(5)]  # +2% over the span: relative stable, seed not
    assert (trend(big).direction, trend(big, rule="seed").direction) == ("stable", "increasing")
    assert trend(big, rule="seed").to_dict()["stable_rule"] == "seed"
    assert trend([1.0], rule="seed").direction == "insufficient_data"


def test_an_unknown_stable_rule_names_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"stable_rule.*relative, seed"):
        trend([1.0, 2.0], rule="steady")  # type: ignore[arg-type]
