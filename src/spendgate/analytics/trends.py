"""The direction of a series: a least-squares line through it, read as a word and a strength.

`trend` fits `y = slope * x + intercept` with x = 0, 1, …, n-1 (`scipy.stats.linregress`) and
says whether the series is increasing, decreasing or stable, and how well a line describes it.

>>> t = trend([10.0, 12.0, 13.5, 15.0, 17.0])
>>> t.direction, t.strength, t.summary
('increasing', 'strong', 'strong increasing trend (r=0.998)')
>>> trend([4.0]).summary
'insufficient data (1 point)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from spendgate.errors import ValidationError

Direction = Literal["stable", "increasing", "decreasing", "insufficient_data"]
Strength = Literal["strong", "moderate", "weak"]
StableRule = Literal["relative", "seed"]
"""How "stable" is decided: "relative" (spendgate's, unit-free: the line moves less than a
share of the series' mean over its span) or "seed" (the seed's: |slope| < 0.01 per step, in
the series' own units)."""

DEFAULT_STABLE_CHANGE = 0.05
SEED_STABLE_SLOPE = 0.01
STABLE_RULES = ("relative", "seed")
STRONG_R = 0.8
MODERATE_R = 0.5


@dataclass(frozen=True, slots=True)
class Trend:
    """The linear trend of a series.

    `slope` is the change per step. `r` is Pearson's correlation of the values with their
    positions, and `strength` reads it: |r| > 0.8 strong, > 0.5 moderate, else weak.
    `p_value` (two-sided, null hypothesis slope = 0) and `standard_error` (of the slope) are
    None when they are undefined: with two points the line fits exactly and leaves no residual
    degrees of freedom, so scipy's p = 0 and standard error = 0 would claim a certainty two
    points cannot give. A constant series has no correlation to measure; it is reported as
    r = 0, p = 1 (no evidence of a trend), slope 0, weak and stable. With fewer than two points
    `direction` is "insufficient_data" and every statistic is None.
    """

    direction: Direction
    strength: Strength | None
    slope: float | None
    r: float | None
    p_value: float | None
    standard_error: float | None
    points: int
    summary: str
    rule: StableRule = "relative"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the direction is under "trend", and the seed's names
        `correlation` (= `r`) and `trend_summary` sit beside spendgate's. `trend_summary`
        is the seed's line, "weak stable trend (r=0.000)" too, where `summary` says
        "stable (r=0.000)"."""
        seed_line = (
            self.summary
            if self.strength is None or self.r is None
            else f"{self.strength} {self.direction} trend (r={self.r:.3f})"
        )
        return {
            "trend": self.direction,
            "strength": self.strength,
            "slope": self.slope,
            "r": self.r,
            "correlation": self.r,
            "p_value": self.p_value,
            "standard_error": self.standard_error,
            "points": self.points,
            "summary": self.summary,
            "trend_summary": seed_line,
            "stable_rule": self.rule,
        }


def trend(
    values: Sequence[float],
    *,
    stable_change: float = DEFAULT_STABLE_CHANGE,
    rule: StableRule = "relative",
) -> Trend:
    """The linear trend of `values`, taken as equally spaced steps.

    By the default `rule="relative"` the direction is unit-free: the series is "stable" when
    the fitted line changes over the whole span (|slope| * (n - 1)) by less than
    `stable_change` times the mean absolute value of the series, and when the series is all
    zeros. By `rule="seed"` it is the seed's: "stable" when |slope| < 0.01 per step, in the
    series' own units (dollars a day for a cost, a share a day for a rate). Otherwise it is
    "increasing" or "decreasing" by the sign of the slope. Fewer than two points give
    "insufficient_data" (never an exception). A non-finite value is a `ValidationError`
    naming its position.

    >>> trend([100.0, 101.0, 99.0, 100.0]).direction
    'stable'
    >>> trend([5.0, 4.0, 2.0, 1.0]).to_dict()["trend"]
    'decreasing'
    >>> trend([100.0, 100.5, 101.0], rule="seed").direction  # 0.5 a step is not < 0.01
    'increasing'
    """
    if not (math.isfinite(stable_change) and stable_change >= 0):
        raise ValidationError("stable_change", stable_change, "a finite number >= 0")
    if rule not in STABLE_RULES:
        raise ValidationError("stable_rule", rule, f"one of {', '.join(STABLE_RULES)}")
    ys = [float(v) for v in values]
    for i, v in enumerate(ys):
        if not math.isfinite(v):
            raise ValidationError(f"values[{i}]", v, "a finite number")
    n = len(ys)
    if n < 2:
        return Trend(
            "insufficient_data",
            None,
            None,
            None,
            None,
            None,
            n,
            f"insufficient data ({n} point{'' if n == 1 else 's'})",
            rule,
        )

    p_value: float | None
    standard_error: float | None
    if min(ys) == max(ys):
        # Zero variance: linregress would answer r = nan (and warn); there is simply no trend.
        slope, r, p_value = 0.0, 0.0, 1.0
        standard_error = 0.0 if n > 2 else None
    else:
        from scipy.stats import linregress  # heavy import, paid only when a trend is computed

        fit = linregress(range(n), ys)
        slope, r = float(fit.slope), float(fit.rvalue)
        p_value = _defined(float(fit.pvalue)) if n > 2 else None
        standard_error = _defined(float(fit.stderr)) if n > 2 else None

    strength: Strength = (
        "strong" if abs(r) > STRONG_R else "moderate" if abs(r) > MODERATE_R else "weak"
    )
    scale = sum(abs(v) for v in ys) / n
    direction: Direction
    if rule == "seed":
        flat = abs(slope) < SEED_STABLE_SLOPE
    else:
        flat = scale == 0 or abs(slope) * (n - 1) < stable_change * scale
    if flat:
        direction = "stable"
        summary = f"stable (r={r:.3f})"
    else:
        direction = "increasing" if slope > 0 else "decreasing"
        summary = f"{strength} {direction} trend (r={r:.3f})"
    return Trend(direction, strength, slope, r, p_value, standard_error, n, summary, rule)


def _defined(x: float) -> float | None:
    """`x`, or None when it is nan (a statistic scipy could not define)."""
    return None if math.isnan(x) else x
