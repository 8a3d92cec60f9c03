"""Where the money went and where it is heading: live metrics, summaries, budget analysis,
trends, forecasts and optimization opportunities, all read from the rollups.

`Analyst(gate)` answers every question; the modules below it are pure.
"""

from spendgate.analytics.analyst import Analyst
from spendgate.analytics.forecast import Forecast, Outlook, Score
from spendgate.analytics.live import LiveMetrics
from spendgate.analytics.opportunities import Opportunity
from spendgate.analytics.summaries import (
    DailyBreakdown,
    MonthlyAssessment,
    ServicePerformance,
    Summary,
    WeeklyReport,
)
from spendgate.analytics.trends import Trend

__all__ = [
    "Analyst",
    "DailyBreakdown",
    "Forecast",
    "LiveMetrics",
    "MonthlyAssessment",
    "Opportunity",
    "Outlook",
    "Score",
    "ServicePerformance",
    "Summary",
    "Trend",
    "WeeklyReport",
]
