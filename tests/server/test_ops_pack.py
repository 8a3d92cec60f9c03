"""The operations pack (issue 21): the Prometheus rules and the Grafana dashboard that
`spendgate.ops` ships, checked against promtool and against what a real server exports.

promtool checks the rules and runs their unit tests (every alert has a case where it fires
and one where it does not). Every query of the dashboard, its variables substituted, must
parse as PromQL (promtool checks them as recording rules), and every series the dashboard
or the rules name must be one a real server's `/metrics` shows after a workload that
exercises every figure (or a recording rule the pack defines): a panel that names a series
no server exports fails here, not on a user's screen.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from spendgate import Gate, ops
from spendgate.config import parse
from spendgate.errors import ValidationError
from spendgate.testing import FrozenClock
from tests.serving import app_for, bearer, make_keys, running

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 18, 12, tzinfo=UTC)
CONFIG = {
    "sources": {
        "maps": {"price": "0.05/request"},
        "osm": {"price": "free"},
        "legacy": {"unpriced": "allow"},
    },
    "budgets": [
        {
            "name": "daily",
            "limit": "1.00",
            "emergency": "0.50",
            "thresholds": {"warn": 0.5, "degrade": 0.7, "stop": 0.9},
        },
        {"name": "scraper_day", "limit": "5.00", "scope": "service:scraper"},
        {"name": "tiny", "limit": "0.10", "scope": "service:scraper", "hard": False},
    ],
}
"""After the workload: daily at its degrade line (0.85 of 1.00), scraper_day below every
line, tiny (soft, never refusing) far past its limit."""
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "1h",
    "$job": "spendgate",
    "$budget": "daily",
    "$service": "scraper",
}
"""Grafana's variables as a dashboard's queries would have them, for promtool."""
SERIES = re.compile(r"\bspendgate[_:][a-z0-9_:]*")
"""A spendgate series (or recording rule) named in a query: `spendgate_…` or `spendgate:…`."""
MONEY = re.compile(
    r"spendgate_spend_total|spendgate_budget_(limit|used|spent|remaining|reserved|line|emergency)"
)


def load_yaml(name: str) -> Any:
    return yaml.safe_load(ops.path(name).read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ops.path(ops.DASHBOARD).read_text())
    return found


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query (rows only group them)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL query of the dashboard, by where it is: each panel's targets, and each
    variable's `label_values(SELECTOR, label)` selector."""
    out = {
        f"panel {p['id']} {t['refId']}": t["expr"] for p in panels(dashboard) for t in p["targets"]
    }
    for v in dashboard["templating"]["list"]:
        if v["type"] == "datasource":
            continue
        selector = re.fullmatch(r"label_values\((.+), *\w+\)", v["query"]["query"])
        assert selector is not None, v["name"]
        out[f"variable {v['name']}"] = selector.group(1)
    return out


def substituted(expr: str) -> str:
    """`expr` with Grafana's variables as concrete values."""
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(ops.RULES)["groups"] for r in g["rules"]]


def recorded() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def rule_texts() -> dict[str, str]:
    """Every rule's expression and its annotations' queries (as text that names series)."""
    out = {}
    for r in rules():
        name = r.get("record") or r["alert"]
        out[name] = r["expr"]
        for key, text in r.get("annotations", {}).items():
            out[f"{name} {key}"] = text
    return out


def promtool_run(promtool: str, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- a real server, every figure exercised -------------------------------------------------------


@pytest.fixture(scope="module")
def scrape() -> str:
    """What a real server's `/metrics` shows after paid, free and unpriced events, a hold
    left open, denied and emergency decisions, budgets up their ladders and the alerts their
    crossings raise."""
    gate = Gate.open("memory://", config=parse(CONFIG), clock=FrozenClock(NOW))
    keys = make_keys(gate)
    with gate, running(app_for(gate)) as url:
        for _ in range(16):
            gate.record("scraper", "maps")
        gate.record("enrichment", "osm")
        gate.record("enrichment", "legacy", success=False)
        assert gate.reserve("scraper", "maps", Decimal("0.05"), priority=True).approved
        assert gate.authorize("scraper", "maps", Decimal("0.05")).status == "denied"
        assert gate.authorize("scraper", "maps", Decimal("0.05"), emergency=True).approved
        r = httpx.get(f"{url}/metrics", headers=bearer(keys.read), timeout=30)
        assert r.status_code == 200, r.text
    return r.text


@pytest.fixture(scope="module")
def exported(scrape: str) -> set[str]:
    """The sample names of the scrape."""
    return {s.name for family in text_string_to_metric_families(scrape) for s in family.samples}


def unexported(texts: dict[str, str], exported: set[str]) -> dict[str, set[str]]:
    """The spendgate series each text names that neither the server exports nor a
    recording rule of the pack defines."""
    known = exported | recorded()
    out = {where: set(SERIES.findall(text)) - known for where, text in texts.items()}
    return {where: names for where, names in out.items() if names}


def test_the_workload_shows_every_family_with_samples(exported: set[str]) -> None:
    assert {
        "spendgate_info",
        "spendgate_alerts",
        "spendgate_budget_line",
        "spendgate_budget_window_end_timestamp_seconds",
        "spendgate_reservation_decisions_total",
        "spendgate_unpriced_requests_total",
    } <= exported


def test_a_series_no_server_exports_is_caught(exported: set[str]) -> None:
    texts = {"panel": "rate(spendgate_spend_total[1m]) / spendgate_budget_limitt"}
    assert unexported(texts, exported) == {"panel": {"spendgate_budget_limitt"}}
    assert unexported({"rule": "spendgate:not_a_rule"}, exported) == {
        "rule": {"spendgate:not_a_rule"}
    }


def test_every_series_the_dashboard_names_is_exported(
    dashboard: dict[str, Any], exported: set[str]
) -> None:
    assert unexported(dashboard_queries(dashboard), exported) == {}


def test_every_series_the_rules_name_is_exported(exported: set[str]) -> None:
    assert unexported(rule_texts(), exported) == {}


# -- promtool ---------------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str) -> None:
    out = promtool_run(promtool, "check", "rules", str(ops.path(ops.RULES)))
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    tests = Path(str(ops.path(ops.RULE_TESTS)))
    assert "SUCCESS" in promtool_run(promtool, "test", "rules", tests.name, cwd=tests.parent)


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ops.RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == quiet == alerts
    for r in rules():
        if "alert" in r:
            assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
            assert set(r["annotations"]) == {"summary", "description"}, r["alert"]


def test_every_dashboard_query_parses(
    dashboard: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    queries = dashboard_queries(dashboard)
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": substituted(expr)}
                    for i, expr in enumerate(queries.values())
                ],
            }
        ]
    }
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump(as_rules))
    out = promtool_run(promtool, "check", "rules", str(checked))
    assert f"SUCCESS: {len(queries)} rules found" in out


def test_the_alerts_judge_a_real_servers_figures(
    scrape: str, promtool: str, tmp_path: Path
) -> None:
    """The rules read the labels and values a server really exports (a rung's name, the
    currency): its scrape, held for a few minutes as Prometheus would have it, raises the
    budget alerts its figures call for, with their amounts, and no other."""
    series = [
        {"series": series_of(s.name, s.labels), "values": f"{s.value!r}x10"}
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    ]
    series.append({"series": series_of("up", {}), "values": "1x10"})
    level = "1 warn, 2 degrade, where only priority callers get paid calls"
    crossed = (
        "Budget tiny has used 0.85 USD of its 0.10 limit in its current window: a hard "
        "budget refuses paid calls now, but for emergency calls within its allowance."
    )
    warn = (
        "Budget daily has used 0.85 USD of its 1.00 limit; it stops at 0.90 "
        f"(ladder level 2: {level})."
    )

    def fired(alert: str, budget: str, severity: str, summary: str, text: str) -> dict[str, Any]:
        return {
            "eval_time": "5m",
            "alertname": alert,
            "exp_alerts": [
                {
                    "exp_labels": {"job": "spendgate", "budget": budget, "severity": severity},
                    "exp_annotations": {"summary": summary, "description": text},
                }
            ],
        }

    cases = {
        "rule_files": [str(ops.path(ops.RULES))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    fired(
                        "SpendgateBudgetCrossed",
                        "tiny",
                        "critical",
                        "spendgate budget tiny has crossed its stop line or its limit",
                        crossed,
                    ),
                    fired(
                        "SpendgateBudgetWarn",
                        "daily",
                        "warning",
                        "spendgate budget daily is past its warn line",
                        warn,
                    ),
                    *(
                        {"eval_time": "5m", "alertname": name, "exp_alerts": []}
                        for name in ("SpendgateStoreUnreachable", "SpendgateDown")
                    ),
                ],
                "promql_expr_test": [
                    {
                        "expr": "spendgate:budget_stop_line",
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": series_of(
                                    "spendgate:budget_stop_line", {"budget": b}, instance=False
                                ),
                                "value": v,
                            }
                            for b, v in (("daily", 0.9), ("scraper_day", 5.0), ("tiny", 0.1))
                        ],
                    }
                ],
            }
        ],
    }
    tests = tmp_path / "real-figures.test.yml"
    tests.write_text(yaml.safe_dump(cases))
    assert "SUCCESS" in promtool_run(promtool, "test", "rules", str(tests))


def series_of(name: str, labels: dict[str, str], *, instance: bool = True) -> str:
    """A series as promtool's tests write it, scraped by job `spendgate` (from one instance)."""
    more = {"job": "spendgate", **({"instance": "a:8765"} if instance else {})}
    pairs = ",".join(f"{k}={json.dumps(v)}" for k, v in {**labels, **more}.items())
    return f"{name}{{{pairs}}}"


# -- the dashboard's shape ----------------------------------------------------------------------


def test_the_dashboard_is_importable_with_a_prometheus_input(dashboard: dict[str, Any]) -> None:
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes spendgate's /metrics",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # Provisioned (not imported) dashboards resolve ${DS_PROMETHEUS} through a variable.
    chooser = variables.pop("DS_PROMETHEUS")
    assert (chooser["type"], chooser["query"]) == ("datasource", "prometheus")
    assert set(variables) == {"job", "budget", "service"}
    assert all(v["datasource"] == source for v in variables.values())
    assert variables["budget"]["multi"]
    assert variables["service"]["multi"]
    for p in panels(dashboard):
        assert p["title"], p["id"]
        assert p["description"], p["title"]
        assert p["datasource"] == source, p["title"]
        assert p["targets"], p["title"]
        assert all(t["datasource"] == source for t in p["targets"]), p["title"]


def test_panels_fit_the_grid_with_unique_ids(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, p["title"]
        assert grid["h"] > 0, p["title"]


def test_money_panels_show_currency_and_rates_use_the_rate_interval(
    dashboard: dict[str, Any],
) -> None:
    money = 0
    for p in panels(dashboard):
        exprs = [t["expr"] for t in p["targets"]]
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        # Money: an amount or a spend rate (a quotient, such as a runway, is not).
        if any(MONEY.search(e) and "/" not in e for e in exprs):
            money += 1
            assert unit.startswith("currency"), p["title"]
        else:
            assert not unit.startswith("currency"), p["title"]
        for e in exprs:
            for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]+)\]", e):
                assert window == "$__rate_interval", (p["title"], e)
    assert money >= 5


def test_the_dashboard_covers_what_the_issue_lists(dashboard: dict[str, Any]) -> None:
    named = " ".join(t["expr"] for p in panels(dashboard) for t in p["targets"])
    for series in (
        "spendgate_spend_total",  # spend rate
        "spendgate_budget_used",  # spend vs each budget
        "spendgate_budget_line",  # its ladder lines
        "spendgate_budget_remaining",  # remaining and runway
        "spendgate_budget_window_end_timestamp_seconds",
        "spendgate_free_source_success_ratio",  # free-source rate
        "spendgate_requests_by_pricing_total",
        "spendgate_reservation_decisions_total",  # approved / denied / emergency
        "spendgate_budget_reserved",  # reservations held
        "spendgate_alerts",  # alert states
        "spendgate_store_writes_failing",  # store health
    ):
        assert series in named, series


# -- where the files are ------------------------------------------------------------------------


def test_the_pack_is_found_through_the_installed_package() -> None:
    for name in ops.FILES:
        assert ops.path(name).is_file(), name
    with pytest.raises(ValidationError, match="name"):
        ops.path("grafana/other.json")
    printed = subprocess.run(
        [sys.executable, "-m", "spendgate.ops"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert printed == [str(ops.path(name)) for name in ops.FILES]


def test_the_wheel_carries_the_pack() -> None:
    """Every file of the pack matches a pattern of pyproject's package data (what the wheel
    and sdist take beside the code)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["spendgate"]
    for name in ops.FILES:
        assert any(fnmatch(f"ops/{name}", pattern) for pattern in patterns), name
