"""A client written only from the seeds' text, run against a served store and the library.

Everything a request says and every key a check reads is the seeds' own (seeds/000: the
cost trackers, `DailyBudgetController`, the dashboard and REST endpoints, the WebSocket, the
reports; seeds/004: the usage monitor, its environment and its SQL), copied from the
documents; only the service's address, an API key and the clock are spendgate's. The store
is a fresh install: no `spendgate.toml`, the seeds' defaults. Where the seed's own code reads
a response (`budget_remaining > 20`, the alert templates' `:.2f`), that code is run on it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from spendgate import BudgetExceededError, Gate
from spendgate.alert_settings import parse_alerts
from spendgate.config import apply_environment
from spendgate.reports import Reporter, write
from spendgate.settings import Config
from spendgate.streams import MarketHours, StreamMeter
from spendgate.testing import FrozenClock
from tests.alerts.test_alerts import Receiver
from tests.alerts.test_recipients import Envelopes, smtp_server
from tests.serving import Keys, app_for, bearer, make_keys, receive_until, running

# A Wednesday, 15:00 UTC (09:00 in Chicago): CME Globex trades; the seeds' day began at 00:00.
NOW = datetime(2026, 10, 21, 15, 0, tzinfo=UTC)


@dataclass
class Served:
    url: str
    keys: Keys
    gate: Gate
    clock: FrozenClock

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, headers=bearer(self.keys.admin), timeout=30)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def post(self, path: str, body: Any) -> Any:
        r = httpx.post(self.url + path, json=body, headers=bearer(self.keys.admin), timeout=30)
        assert r.status_code in (200, 201), f"POST {path}: {r.status_code} {r.text}"
        return r.json()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A fresh install (the seeds' defaults), served over a real socket."""
    clock = FrozenClock(NOW - timedelta(days=41))
    gate = Gate.open(f"sqlite:///{tmp_path / 'spendgate.db'}", clock=clock)
    keys = make_keys(gate)
    try:
        with running(app_for(gate, ws_interval=0.05)) as url:
            yield Served(url, keys, gate, clock)
    finally:
        gate.close()


# -- seeds/000: the cost trackers, as written ---------------------------------------------


def utcnow(served: Served) -> datetime:
    """The seeds' `datetime.utcnow()`: naive UTC (spendgate's clock, injected)."""
    return served.clock().replace(tzinfo=None)


def track_request_cost(
    served: Served, service_name: str, request_id: str, cost_data: dict[str, Any]
) -> Any:
    """`ServiceCostTracker.track_request_cost`: the seed's `cost_entry`, with the fields its
    trackers pass beside (breakdown, image and enrichment fields), sent as JSON."""
    cost_entry = {
        "request_id": request_id,
        "timestamp": utcnow(served),
        "total_cost": cost_data.get("total_cost", 0.0),
        "sources_used": cost_data.get("sources_used", []),
        "free_sources_attempted": cost_data.get("free_sources_attempted", []),
        "paid_apis_used": cost_data.get("paid_apis_used", []),
        "cache_hits": cost_data.get("cache_hits", 0),
        "batch_processing": cost_data.get("batch_processing", False),
        "quality_score": cost_data.get("quality_score", 0.0),
        "processing_time": cost_data.get("processing_time", 0.0),
    }
    extra = {k: v for k, v in cost_data.items() if k not in cost_entry}
    body = json.loads(json.dumps({"service": service_name, **cost_entry, **extra}, default=str))
    return served.post("/api/events", body)


COST_PER_SOURCE = {  # ImageProcessorCostTracker.cost_per_source
    "openstreetmap_tiles": 0.0,
    "local_super_resolution": 0.0,
    "extended_cache": 0.0,
    "geographic_batch": 0.0,
    "google_maps_optimized": 0.002,
    "mapbox_satellite": 0.0015,
    "synthetic_generation": 0.0,
}


def track_image_processing_cost(
    served: Served, property_id: str, processing_result: dict[str, Any]
) -> Any:
    """`ImageProcessorCostTracker.track_image_processing_cost`."""
    source_costs: list[dict[str, Any]] = []
    total_cost = 0.0
    for source in processing_result["sources_used"]:
        source_cost = COST_PER_SOURCE.get(source, 0.0)
        total_cost += source_cost
        source_costs.append(
            {
                "source": source,
                "cost": source_cost,
                "success": True,
                "quality_contribution": processing_result.get(f"{source}_quality", 0.0),
            }
        )
    for fallback in processing_result.get("fallbacks_triggered", []):
        source_costs.append(
            {
                "source": fallback,
                "cost": 0.0,
                "success": False,
                "failure_reason": processing_result.get(f"{fallback}_error", "unknown"),
            }
        )
    return track_request_cost(
        served,
        "image_processor",
        property_id,
        {
            "total_cost": total_cost,
            "sources_used": processing_result["sources_used"],
            "source_cost_breakdown": source_costs,
            "processing_time": processing_result.get("processing_time", 0.0),
            "quality_score": processing_result.get("quality_score", 0.0),
            "image_resolution": processing_result.get("image_resolution"),
            "enhancement_applied": processing_result.get("enhancement_applied", False),
        },
    )


def a_month_of_seed_traffic(served: Served) -> None:
    """Forty days and today of the seeds' three trackers, three times a day."""
    for day in range(41):
        for hour in (9, 12, 15):
            i = f"{day}-{hour}"
            served.clock.set(NOW - timedelta(days=40 - day) + timedelta(hours=hour - 15))
            track_image_processing_cost(
                served,
                f"property-{i}",
                {
                    "sources_used": ["openstreetmap_tiles", "google_maps_optimized"],
                    "fallbacks_triggered": ["mapbox_satellite"],
                    "mapbox_satellite_error": "timeout",
                    "google_maps_optimized_quality": 0.9,
                    "processing_time": 1.2,
                    "quality_score": 0.9,
                    "image_resolution": "1024x1024",
                    "enhancement_applied": True,
                },
            )
            # ImageProcessorWithCostTracking.process_satellite_image
            sources = ["extended_cache"] if hour == 12 else ["mapbox_satellite"]
            track_request_cost(
                served,
                "image_processor",
                f"satellite-{i}",
                {
                    "total_cost": 0.0 if hour == 12 else 0.0015,
                    "sources_used": sources,
                    "processing_time": 0.4,
                    "quality_score": 0.8,
                    "cache_hit": "cache" in sources,
                    "batch_processing": hour == 15,
                },
            )
            # EnrichmentServiceWithCostTracking.enrich_property_data
            track_request_cost(
                served,
                "enrichment_service",
                f"enrich-{i}",
                {
                    "total_cost": 0.0,
                    "sources_used": ["openstreetmap_tiles", "local_super_resolution"],
                    "processing_time": 0.7,
                    "completeness_score": 0.85,
                    "free_sources_success_rate": 1.0,
                },
            )
    served.clock.set(NOW)


def test_every_cost_entry_is_accepted_and_answers_with_its_budget_day(served: Served) -> None:
    served.clock.set(NOW)
    answer = track_image_processing_cost(
        served,
        "property-123",
        {
            "sources_used": ["openstreetmap_tiles", "google_maps_optimized"],
            "fallbacks_triggered": ["mapbox_satellite"],
            "processing_time": 2.5,
            "quality_score": 0.92,
            "image_resolution": "1024x1024",
            "enhancement_applied": True,
        },
    )
    assert answer["status"] == "created"
    assert Decimal(answer["cost"]) == Decimal("0.002")  # the seed's total_cost
    # DailyBudgetController.record_expense's budget_day: the seed's date (midnight UTC reset).
    assert answer["budget_day"] == NOW.date().isoformat()
    stored = served.gate.event("property-123")
    assert stored is not None
    assert (stored.image_resolution, stored.enhancement_applied) == ("1024x1024", True)
    assert [p.source for p in stored.source_cost_breakdown] == [
        "openstreetmap_tiles",
        "google_maps_optimized",
        "mapbox_satellite",
    ]


# -- seeds/000: DailyBudgetController ------------------------------------------------------


def check_budget_availability(
    served: Served, requested_amount: float, *, emergency: bool = False
) -> Any:
    return served.post(
        "/api/authorize",
        {
            "service": "image_processor",
            "source": "google_maps_optimized",
            "requested_amount": requested_amount,
            "emergency": emergency,
        },
    )


def test_budget_decisions_have_the_seeds_keys_and_numbers(served: Served) -> None:
    served.clock.set(NOW)
    approved = check_budget_availability(served, 0.002)
    assert approved["budget_available"] is True
    assert approved["approval_status"] == "approved"
    assert Decimal(approved["requested_amount"]) == Decimal("0.002")
    assert Decimal(approved["remaining_budget"]) == Decimal("10.00")  # daily_budget = 10.00
    # A $60 emergency call is over the seed's emergency_budget (50.00): denied.
    denied = check_budget_availability(served, 60.0, emergency=True)
    assert denied["approval_status"] == "denied"
    assert denied["budget_available"] is False
    assert denied["alternative_action"] == "use_free_sources_only"
    # The day's budget spent: an emergency call within $50 is emergency_approved.
    track_request_cost(
        served,
        "image_processor",
        "big-batch",
        {"total_cost": 10.0, "sources_used": ["google_maps_optimized"]},
    )
    emergency = check_budget_availability(served, 5.0, emergency=True)
    assert emergency["approval_status"] == "emergency_approved"
    assert emergency["emergency_budget_used"] is True
    assert Decimal(emergency["remaining_budget"]) == 0  # before the request, as the seed's
    ordinary = check_budget_availability(served, 5.0)
    assert (ordinary["approval_status"], Decimal(ordinary["remaining_budget"])) == ("denied", 0)


# -- seeds/000: the dashboard, REST endpoints and reports -------------------------------


TREND_KEYS = {"trend", "strength", "slope", "correlation", "p_value", "standard_error"}


def assert_trend(line: dict[str, Any]) -> None:
    """`CostTrendAnalyzer.calculate_trend`'s answer, or its `insufficient_data`."""
    if line["trend"] == "insufficient_data":
        return
    assert TREND_KEYS | {"trend_summary"} <= set(line)
    assert line["trend"] in ("stable", "increasing", "decreasing")
    assert line["strength"] in ("strong", "moderate", "weak")
    assert line["trend_summary"].startswith(f"{line['strength']} {line['trend']} trend (r=")


def test_the_dashboard_endpoints_and_reports_answer_with_the_seeds_keys(
    served: Served, tmp_path: Path
) -> None:
    a_month_of_seed_traffic(served)

    # FishMouthCostDashboard, GET /cost/dashboard/live, and the seed's own status code on it.
    live = served.get("/cost/dashboard/live")
    assert live["success"] is True
    assert live["timestamp"]
    data = live["data"]
    assert {
        "live_metrics",
        "daily_summary",
        "service_breakdown",
        "optimization_opportunities",
        "alerts_and_warnings",
        "historical_trends",
    } <= set(data)
    metrics = data["live_metrics"]
    assert {
        "current_daily_spend",
        "budget_remaining",
        "free_source_success_rate",
        "requests_per_minute",
        "cost_per_request",
        "projected_daily_total",
        "time_until_budget_exhausted",
    } <= set(metrics)
    status = {
        "budget_health": "healthy" if data["live_metrics"]["budget_remaining"] > 20 else "warning",
        "free_source_performance": "excellent"
        if data["live_metrics"]["free_source_success_rate"] > 0.90
        else "good",
        "cost_efficiency": f"{(1 - data['live_metrics']['cost_per_request'] / 2.40) * 100:.1f}% "
        "savings vs traditional",
    }
    assert status["budget_health"] == "warning"  # $10 a day: never above 20
    assert set(live["status"]) == set(status)
    # Today's three images ($0.002) and two satellite calls ($0.0015; one came from cache).
    assert metrics["current_daily_spend"] == pytest.approx(0.009)

    # GET /api/cost/current, /api/cost/daily/{date}, the service's performance and metrics.
    assert "live_metrics" in served.get("/api/cost/current")
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    day = served.get(f"/api/cost/daily/{yesterday}")
    assert Decimal(day["total_cost"]) == Decimal("0.009")
    served.get("/api/cost/service/image_processor/performance", days=7)
    summary = served.get("/cost/services/image_processor/metrics")
    assert {
        "total_cost",
        "total_requests",
        "free_source_success_rate",
        "cache_hit_rate",
        "average_cost_per_request",
        "cost_by_source",
    } <= set(summary)

    # CostForecaster.generate_monthly_budget_forecast: GET /api/cost/forecast/monthly.
    forecast = served.get("/api/cost/forecast/monthly")
    assert {"month", "days_elapsed", "days_remaining", "current_spend"} <= set(forecast)
    projections = forecast["projections"]
    assert projections["linear"]["method"] == "linear_extrapolation"
    for name in ("linear", "trend_based", "ml_forecast"):
        assert {"projected_total", "confidence", "method"} <= set(projections[name])
    assessment = forecast["budget_assessment"]
    assert {"monthly_budget", "projected_vs_budget", "budget_status", "recommended_actions"} <= set(
        assessment
    )
    assert assessment["budget_status"] in ("under_budget", "over_budget")
    assert Decimal(assessment["monthly_budget"]) == Decimal("10.00") * 31  # October
    served.get("/api/cost/optimization/opportunities")

    # CostTrendAnalyzer.analyze_cost_trends(time_period="3_months").
    trends = served.get("/api/cost/trends", time_period="3_months")
    for name in (
        "overall_cost_trend",
        "free_source_success_trend",
        "request_volume_trend",
        "cost_per_request_trend",
    ):
        assert_trend(trends[name])
    for service in ("image_processor", "enrichment_service"):
        lines = trends["service_specific_trends"][service]
        for name in ("cost_trend", "efficiency_trend", "volume_trend"):
            assert_trend(lines[name])
    assert {"next_month_cost", "cost_optimization_opportunities", "efficiency_forecast"} <= set(
        trends["predictions"]
    )

    # BudgetAnalyzer.generate_weekly_budget_report.
    weekly = served.get("/api/reports/weekly", format="json")
    assert weekly["period"]["days_analyzed"] == 7
    assert {"start_date", "end_date"} <= set(weekly["period"])
    assert {
        "total_spent",
        "daily_average",
        "budget_utilization",
        "days_under_budget",
        "days_over_budget",
    } <= set(weekly["budget_performance"])
    assert {
        "free_source_success_rate",
        "cost_per_request",
        "savings_vs_traditional",
        "most_cost_effective_service",
        "highest_cost_service",
    } <= set(weekly["cost_efficiency"])
    assert {"cost_trend", "free_source_trend", "request_volume_trend"} <= set(
        weekly["trend_analysis"]
    )
    assert "optimization_opportunities" in weekly

    # MonthlyReportGenerator.generate_monthly_report, over REST and written by the library.
    month = served.get("/api/reports/monthly/2026-09", format="json")
    assert month["report_metadata"]["report_type"] == "monthly_cost_analysis"
    assert month["report_metadata"]["currency"] == "USD"
    assert month["report_metadata"]["period"] == "September 2026"
    assert {
        "total_monthly_cost",
        "total_requests_processed",
        "cost_per_request",
        "free_source_success_rate",
        "cost_savings_vs_traditional",
        "budget_utilization",
    } <= set(month["executive_summary"])
    for row in month["daily_breakdown"]:
        assert {"date", "total_cost", "requests", "free_source_rate", "budget_status"} <= set(row)
    assert {
        "free_sources_performance",
        "cache_efficiency",
        "batch_processing_usage",
        "geographic_optimization",
    } <= set(month["cost_optimization_analysis"])
    assert {"cost_trend", "volume_trend", "efficiency_trend", "quality_trend"} <= set(
        month["trend_analysis"]
    )
    assert {"raw_data", "methodology", "data_sources"} <= set(month["appendices"])
    assert {"recommendations", "visualizations"} <= set(month)
    # MonthlyReportGenerator.export_report_formats(report, output_dir).
    written = {
        p.name
        for p in write(Reporter(served.gate).monthly("2026-09"), "pdf,xlsx,csv,json", tmp_path)
    }
    assert {
        "monthly_cost_report.pdf",
        "monthly_cost_data.xlsx",
        "monthly_cost_report.json",
        "monthly_cost_summary.csv",
    } <= written


def test_the_websocket_speaks_the_seeds_messages(served: Served) -> None:
    served.clock.set(NOW)
    ws_url = served.url.replace("http", "ws") + f"/ws/cost-monitoring?token={served.keys.read}"
    with connect(ws_url) as ws:
        json.loads(ws.recv(timeout=5))  # the current cost state, on connect
        track_request_cost(
            served,
            "image_processor",
            "ws-1",
            {"total_cost": 0.002, "sources_used": ["google_maps_optimized"]},
        )
        update = receive_until(ws, lambda m: m.get("type") == "cost_update")
        assert {"type", "timestamp", "data"} <= set(update)
        ws.send("request_current_metrics")
        receive_until(ws, lambda m: m.get("type") == "current_metrics")


# -- seeds/000: CostAlertSystem, its templates, the WebSocket's cost_alert ------------------

ALERT_CONFIG: dict[str, Any] = {  # CostAlertSystem.__init__, as update_configuration gets it
    "alert_thresholds": {
        "daily_budget_80_percent": 0.8,
        "daily_budget_100_percent": 1.0,
        "free_source_success_below_85": 0.85,
        "cost_per_request_spike": 0.01,  # Alert if cost per request > $0.01
        "service_offline": True,
        "api_rate_limit_approaching": 0.9,
    },
    "notification_channels": {
        "email": ["dev-team@fishmouth.io", "ops@fishmouth.io"],
        "slack": "#cost-alerts",
        "dashboard": True,
        "sms": "+1234567890",  # Emergency only
    },
}


def budget_warning_email(alert_data: dict[str, Any]) -> dict[str, Any]:
    """AlertNotificationTemplates.budget_warning_email, as written."""
    return {
        "subject": "Fish Mouth Cost Alert: Daily Budget "
        f"{alert_data['data']['usage_percentage'] * 100:.1f}% Used",
        "body": f"""
            <p><strong>Time:</strong> {alert_data["timestamp"]}</p>
            <p><strong>Severity:</strong> {alert_data["severity"].upper()}</p>
            <li>Daily Budget: ${alert_data["data"]["daily_budget"]:.2f}</li>
            <li>Current Usage: ${alert_data["data"]["current_usage"]:.2f}</li>
            <li>Remaining: ${alert_data["data"]["remaining_budget"]:.2f}</li>
            <li>Usage Percentage: {alert_data["data"]["usage_percentage"] * 100:.1f}%</li>
            {"".join(f"<li>{action}</li>" for action in alert_data["recommended_actions"])}
            """,
        "recipients": ["dev-team@fishmouth.io", "ops@fishmouth.io"],
    }


def slack_cost_alert(alert_data: dict[str, Any]) -> dict[str, Any]:
    """AlertNotificationTemplates.slack_cost_alert, as written."""
    color = "warning" if alert_data["severity"] == "warning" else "danger"
    return {
        "channel": "#cost-alerts",
        "attachments": [
            {
                "color": color,
                "title": alert_data["title"],
                "text": alert_data["description"],
                "fields": [
                    {
                        "title": "Current Usage",
                        "value": f"${alert_data['data']['current_usage']:.2f}",
                    },
                    {
                        "title": "Daily Budget",
                        "value": f"${alert_data['data']['daily_budget']:.2f}",
                    },
                    {
                        "title": "Percentage Used",
                        "value": f"{alert_data['data']['usage_percentage'] * 100:.1f}%",
                    },
                    {
                        "title": "Remaining",
                        "value": f"${alert_data['data']['remaining_budget']:.2f}",
                    },
                ],
            }
        ],
    }


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[tuple[Served, Envelopes, Receiver]]:
    """The fresh install with its alert transports set once in `[alerts]` (an SMTP server,
    a Slack webhook, an SMS gateway: real ones on loopback, which the file allows)."""
    slack, sms = Receiver(), Receiver()
    with smtp_server() as (inbox, smtp_url):
        seed = Config.seed()
        transports = {
            "allow_private_destinations": True,
            "smtp_url": smtp_url,
            "slack_webhook": slack.url,
            "sms_url": sms.url,
            "evaluate_every": "1s",  # the rounds are enqueued on the next evaluation
        }
        config = replace(seed, alerts=parse_alerts(transports, seed.alerts))
        clock = FrozenClock(NOW)
        gate = Gate.open(f"sqlite:///{tmp_path / 'alerts.db'}", config=config, clock=clock)
        keys = make_keys(gate)
        try:
            with running(app_for(gate, ws_interval=0.05)) as url:
                yield Served(url, keys, gate, clock), inbox, slack
        finally:
            gate.close()
            slack.close()
            sms.close()


def test_alerts_are_configured_sent_and_shaped_as_the_seed_says(
    alerting: tuple[Served, Envelopes, Receiver],
) -> None:
    served, inbox, slack = alerting
    # POST /api/cost/alerts/configure with the seed's configuration, word for word.
    answer = served.post("/api/cost/alerts/configure", ALERT_CONFIG)
    assert answer["alert_thresholds"] == ALERT_CONFIG["alert_thresholds"]
    channels = answer["notification_channels"]  # the seed's, and spendgate's log beside
    assert {k: channels[k] for k in ALERT_CONFIG["notification_channels"]} == ALERT_CONFIG[
        "notification_channels"
    ]

    ws_url = served.url.replace("http", "ws") + f"/ws/cost-monitoring?token={served.keys.read}"
    with connect(ws_url) as ws:
        json.loads(ws.recv(timeout=5))
        # $8.50 of the $10 daily budget: DailyBudgetController's high_usage (80% used).
        track_request_cost(
            served,
            "image_processor",
            "big-1",
            {"total_cost": 8.5, "sources_used": ["google_maps_optimized"]},
        )
        pushed = receive_until(
            ws, lambda m: m.get("type") == "cost_alert" and m["alert"]["type"] == "high_usage"
        )
    alert = pushed["alert"]
    for key in (
        "alert_id",
        "type",
        "severity",
        "timestamp",
        "title",
        "description",
        "data",
        "recommended_actions",
        "notification_channels",
    ):
        assert key in alert, key
    assert alert["severity"] == "warning"
    assert alert["data"]["usage_percentage"] == pytest.approx(0.85)
    assert alert["data"]["current_usage"] == pytest.approx(8.5)
    assert alert["data"]["daily_budget"] == pytest.approx(10.0)
    assert alert["data"]["remaining_budget"] == pytest.approx(1.5)
    # The seed's warning goes to email, slack and the dashboard; SMS is for critical ones.
    assert set(alert["notification_channels"]) >= {"email", "slack", "dashboard"}
    assert "sms" not in alert["notification_channels"]
    # The seed's own templates read it as they are written.
    email = budget_warning_email(alert)
    assert email["subject"].endswith("Daily Budget 85.0% Used")
    assert "Remaining: $1.50" in email["body"]
    assert slack_cost_alert(alert)["attachments"][0]["color"] == "warning"
    # The API's alert is the pushed one.
    listed = served.get("/api/alerts")
    assert any(a["alert_id"] == alert["alert_id"] and a["data"] == alert["data"] for a in listed)
    # Over the day's $10: budget_exceeded, with its overage.
    track_request_cost(
        served,
        "image_processor",
        "big-2",
        {"total_cost": 2.0, "sources_used": ["google_maps_optimized"]},
    )
    exceeded = [a for a in served.get("/api/alerts") if a["type"] == "budget_exceeded"]
    assert exceeded, "no budget_exceeded alert"
    assert exceeded[0]["data"]["overage"] == pytest.approx(0.5)
    assert exceeded[0]["severity"] == "critical"
    # Delivered: both addresses by email, the seed's channel on Slack.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not inbox.recipients() or not slack.accepted):
        time.sleep(0.05)  # another thread delivers: waiting on it, not on time to pass
    assert set(inbox.recipients()) >= set(ALERT_CONFIG["notification_channels"]["email"])
    assert any(json.loads(body).get("channel") == "#cost-alerts" for _, body, _ in slack.accepted)


# -- seeds/004: the usage monitor ------------------------------------------------------------


def test_the_usage_monitors_defaults_and_environment_are_honoured(tmp_path: Path) -> None:
    """`DAILY_STREAMING_BUDGET=25.0`, `EMERGENCY_STOP_THRESHOLD=0.8`, a warning at 60%, on
    a fresh install; `assert_budget_safe()` raises at the limit."""
    environ = {"DAILY_STREAMING_BUDGET": "25.0", "EMERGENCY_STOP_THRESHOLD": "0.8"}
    config: Config = apply_environment(Config.seed(), environ)
    clock = FrozenClock(NOW)
    with Gate.open(f"sqlite:///{tmp_path / 'mbo.db'}", config=config, clock=clock) as gate:
        levels: list[tuple[str, str]] = []
        monitor = StreamMeter(
            gate,
            "mbo_streaming_client",
            "databento_mbo",
            market=MarketHours("CMES"),
            on_level_change=lambda old, new: levels.append((old, new)),
        )
        assert monitor.should_start(True)  # is_futures_market_hours() and budget left
        monitor.start()
        spent: dict[str, Decimal] = {}
        while monitor.should_continue():
            monitor.record(1024 * 1024)  # a MB of MBO events at $0.01
            if monitor.level not in spent:
                monitor.flush()
                spent[monitor.level] = get_usage_stats(monitor)["estimated_cost"]
        monitor.flush()
        stats = get_usage_stats(monitor)
        # Warning at 60% of $25, the emergency stop at 80%: the seed's thresholds.
        assert [new for _, new in levels] == ["warn", "stopped"]
        assert Decimal("15") <= spent["warn"] < Decimal("15.02")
        assert Decimal("20") <= stats["estimated_cost"] < Decimal("20.02")
        # The seed's assert_budget_safe: raises once the day's stream cost reaches $25.
        monitor.assert_budget_safe()
        gate.record("mbo_streaming_client", "databento_mbo", cost="5.00")
        with pytest.raises(BudgetExceededError, match=r"\$25"):
            monitor.assert_budget_safe()
        monitor.stop()

        # MBODatabase.get_cost_history(days): the seed's SQL, unchanged, on the store's file
        # (its `date('now')` is the real date: the window reaches back to the pinned day).
        days = (date.today() - NOW.date()).days + 30
        history = get_cost_history(tmp_path / "mbo.db", days)
        assert [row["date"] for row in history] == [NOW.date().isoformat()]
        assert history[0]["events"] == stats["events_processed"]
        assert Decimal(str(history[0]["cost"])) == stats["estimated_cost"]
        assert history[0]["hours"] == 0  # the clock stood still: no connected time
        # The same rows over REST, under the table's names.
        keys = make_keys(gate)
        with running(app_for(gate)) as url:
            rows = httpx.get(
                f"{url}/api/streams/usage",
                params={"source": "databento_mbo"},
                headers=bearer(keys.admin),
            ).json()
        assert [
            {k: row[k] for k in ("date", "events_processed", "estimated_cost", "connection_time")}
            for row in rows
        ] == [
            {
                "date": NOW.date().isoformat(),
                "events_processed": stats["events_processed"],
                "estimated_cost": str(stats["estimated_cost"]),
                "connection_time": 0.0,
            }
        ]
        assert {"id", "data_bytes", "created_at"} <= set(rows[0])


def get_cost_history(db_path: Path, days: int = 30) -> list[dict[str, Any]]:
    """seeds/004 `get_cost_history`, as written."""
    with sqlite3.connect(db_path) as conn:
        cursor = conn.cursor()
        cursor.execute(
            """
            SELECT date, estimated_cost, events_processed, connection_time
            FROM usage_monitoring
            WHERE date >= date('now', '-{} days')
            ORDER BY date DESC
        """.format(days)  # noqa: UP032 (the seed's own formatting)
        )

        return [dict(zip(["date", "cost", "events", "hours"], row)) for row in cursor.fetchall()]  # noqa: B905


def get_usage_stats(monitor: StreamMeter) -> dict[str, Any]:
    """The seed's `get_usage_stats()`: its names, money read as numbers."""
    stats = monitor.usage_stats().to_dict()
    return {**stats, "estimated_cost": Decimal(stats["estimated_cost"])}
