"""The CLI: a thin shell over the library. Every command has help and a docs entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main
from typer.testing import CliRunner

from spendgate import Gate
from spendgate.cli import app, shell
from spendgate.cli.shell import show
from spendgate.store import migrate
from spendgate.testing import FrozenClock

runner = CliRunner()
DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def commands(group: typer.core.TyperGroup, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.core.TyperGroup):
            out += commands(cmd, f"{prefix}{name} ")
        else:
            out.append(f"{prefix}{name}")
    return out


ALL = commands(typer.main.get_command(app))  # type: ignore[arg-type]


def test_the_command_table_is_complete() -> None:
    assert set(ALL) >= {
        "status",
        "record",
        "demo",
        "budgets list",
        "prices list",
        "db upgrade",
        "db current",
    }


@pytest.mark.parametrize("command", ALL)
def test_every_command_has_help_and_docs(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert f"spendgate {command}" in DOCS.read_text(), f"docs/cli.md does not document {command}"


def test_record_then_status(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    first = runner.invoke(
        app,
        [
            "record",
            "enrichment",
            "google_maps_optimized",
            "--db",
            db,
            "--request-id",
            "r1",
            "--label",
            "customer=acme",
        ],
    )
    assert first.exit_code == 0, first.output
    assert "created: r1 ($0.002)" in first.output
    again = runner.invoke(
        app,
        [
            "record",
            "enrichment",
            "google_maps_optimized",
            "--db",
            db,
            "--request-id",
            "r1",
            "--label",
            "customer=acme",
        ],
    )
    assert "exists: r1" in again.output
    status = runner.invoke(app, ["status", "--db", db, "--json"])
    assert status.exit_code == 0, status.output
    daily, streaming = json.loads(status.output)
    assert (daily["name"], daily["spent"], daily["limit"]) == ("daily", "0.002", "10")
    assert (streaming["name"], streaming["spent"], streaming["limit"]) == ("streaming", "0", "25")
    assert daily["as_of"]


def test_json_output_writes_money_as_decimal_text_with_its_currency(tmp_path: Path) -> None:
    """$8.081 of the seed's $10 daily budget: past its 80% line ($8)."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(
        app, ["record", "enrichment", "google_maps_optimized", "--cost", "8.081", "--db", db]
    )
    assert result.exit_code == 0, result.output
    status = runner.invoke(app, ["status", "--db", db, "--json"])
    daily, _ = json.loads(status.output)  # the seed's daily budget; the stream's has nothing
    assert (daily["spent"], daily["remaining"], daily["currency"]) == ("8.081", "1.919", "USD")
    alerts = runner.invoke(app, ["alerts", "list", "--db", db, "--json"])
    assert alerts.exit_code == 0, alerts.output
    (alert,) = json.loads(alerts.output)
    assert (alert["value"], alert["threshold"]) == ("8.081", "8")
    assert (alert["unit"], alert["currency"]) == ("USD", "USD")
    live = runner.invoke(app, ["live", "--db", db, "--json"])
    figures = json.loads(live.output)
    assert figures["currency"] == "USD"
    assert figures["live_figures"]["budget_remaining"]["value"] == "1.919"


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(app, ["record", "svc", "nowhere", "--db", db])
    assert result.exit_code == 2
    assert "source: got 'nowhere'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, ["record", "svc", "google_maps_optimized", "--cost", "-1", "--db", db]
    )
    assert result.exit_code == 2
    assert "amount of zero or more" in result.output
    result = runner.invoke(
        app, ["record", "svc", "google_maps_optimized", "--unit", "oops", "--db", db]
    )
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output
    status = runner.invoke(app, ["status", "--db", db, "--json"])
    assert json.loads(status.output)[0]["spent"] == "0"


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "spendgate.toml"
    cfg.write_text('[[budgets]]\nname = "daily"\nlimit = "10"\nreset_hour = 24\n')
    result = runner.invoke(app, ["budgets", "list", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "reset_hour: got 24" in result.output


def test_budgets_and_prices_list() -> None:
    budgets = runner.invoke(app, ["budgets", "list", "--json", "--db", "memory://"])
    assert json.loads(budgets.output)[0]["emergency"] == "50"
    prices = runner.invoke(app, ["prices", "list", "--json", "--db", "memory://"])
    by_source = {row["source"]: row["price"] for row in json.loads(prices.output)}
    assert by_source["google_maps_optimized"] == "0.002/request"
    assert by_source["openstreetmap_tiles"] == "free"
    assert by_source["databento_mbo"] == "0.01/MB; 1/hour"


def test_budgets_and_prices_list_show_what_is_in_effect_on_the_store(tmp_path: Path) -> None:
    """The file's definitions with the store's on top: what `status`, the server and the
    dashboard run with, not the file alone."""
    from spendgate.control import Control

    cfg = tmp_path / "spendgate.toml"
    cfg.write_text(
        '[sources.paid_api]\nprice = "0.01/request"\n\n[[budgets]]\nname = "daily"\nlimit = "10"\n'
    )
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    with Gate.open(db, config=cfg) as gate:  # the server, say, changed them over the API
        control = Control(gate)
        control.patch("budget", "daily", {"limit": "20"}, actor="api")
        control.create("budget", "scraper", {"limit": "3", "scope": "service:s"}, actor="api")
        control.create("source", "geo", {"price": "0.5/request"}, actor="api")
    args = ["--db", db, "--config", str(cfg)]
    listed = runner.invoke(app, ["budgets", "list", "--json", *args])
    assert listed.exit_code == 0, listed.output
    by_name = {b["name"]: b for b in json.loads(listed.output)}
    assert (by_name["daily"]["limit"], by_name["scraper"]["scope"]) == ("20", "service:s")
    table = runner.invoke(app, ["budgets", "list", *args])
    assert "Budgets in effect on" in table.output
    assert "scraper" in table.output
    prices = runner.invoke(app, ["prices", "list", "--json", *args])
    assert {r["source"]: r["price"] for r in json.loads(prices.output)}["geo"] == "0.5/request"
    forecast = json.loads(runner.invoke(app, ["forecast", "--json", *args]).output)
    assessment = forecast["budget_assessment"]
    assert assessment["monthly_budget_from"]["budget"] == "daily"
    assert assessment["monthly_budget_from"]["scope"] == "all"
    days = assessment["monthly_budget_from"]["basis"].rsplit(" x ", 1)[1].split()[0]
    assert assessment["monthly_budget"] == str(20 * int(days))
    live = runner.invoke(app, ["live", *args])
    assert "(budget daily, scope all)" in live.output
    assert "(scope all)" in live.output


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    missing = runner.invoke(app, ["db", "current", "--db", db])
    assert missing.exit_code == 2
    assert "no such database" in missing.output
    assert not (tmp_path / "fresh.db").exists()
    gone = runner.invoke(app, ["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'no' / 'x.db'}"])
    assert gone.exit_code == 2
    assert "does not exist" in gone.output
    up = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert up.exit_code == 0, up.output
    assert f"schema at {migrate.head()}" in up.output
    assert runner.invoke(app, ["db", "current", "--db", db]).output.startswith(migrate.head())


def test_demo_runs_and_shows_every_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Tuesday afternoon: the market trades all the demo's day (on a Sunday the stream,
    # which follows market hours, stays disconnected).
    monkeypatch.setattr(shell, "clock", FrozenClock(datetime(2026, 5, 5, 20, tzinfo=UTC)))
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = runner.invoke(app, ["demo", "--db", db, "--requests", "1500"])
    assert result.exit_code == 0, result.output
    assert "Budgets (as of" in result.output
    assert "approved:" in result.output
    assert "denied:" in result.output
    assert "market-data stream:" in result.output
    # Eight threads feed the stream: it must run to its stop line, not end early on a race.
    assert "level stopped" in result.output
    assert "degraded -> stopped" in result.output
    status = runner.invoke(app, ["status", "--db", db, "--json"])
    assert status.exit_code == 0


def test_measured_figures_are_plain_numbers_never_exponents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `spendgate live` printed a runway of 20,420 seconds as "2.042e+04".
    figures = {"runway_seconds": 20420.0, "rate": 0.0245, "tiny": 0.00001, "loss": -1234.5}
    show("figures", figures, as_json=False)
    out = capsys.readouterr().out
    assert "e+" not in out
    assert "e-0" not in out
    rows = dict(line.strip("│ ").split("│")[0:2] for line in out.splitlines() if "│" in line)
    shown = {k.strip(): v.strip() for k, v in rows.items()}
    assert shown == {"runway_seconds": "20,420", "rate": "0.0245", "tiny": "0", "loss": "-1,234.5"}


def test_a_day_without_data_shows_as_a_dash_not_none(capsys: pytest.CaptureFixture[str]) -> None:
    # The weekly report's trend lists have `None` for a day before the first event.
    show("week", {"cost_trend": [None, None, "3", "0"], "daily_average": None}, as_json=False)
    out = capsys.readouterr().out
    rows = dict(line.strip("│ ").split("│")[0:2] for line in out.splitlines() if "│" in line)
    shown = {k.strip(): v.strip() for k, v in rows.items()}
    assert shown == {"cost_trend": "-, -, 3, 0", "daily_average": "-"}


def test_trends_take_the_seeds_period_and_stable_rule(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    recorded = runner.invoke(
        app, ["record", "enrichment", "google_maps_optimized", "--cost", "1", "--db", db]
    )
    assert recorded.exit_code == 0, recorded.output
    args = ["--db", db, "--json"]
    result = runner.invoke(
        app, ["trends", "--time-period", "2_weeks", "--stable-rule", "seed", *args]
    )
    assert result.exit_code == 0, result.output
    trends = json.loads(result.output)
    assert (trends["days"], trends["time_period"], trends["stable_rule"]) == (14, "2_weeks", "seed")
    assert set(trends["predictions"]) == {
        "next_month_cost",
        "cost_optimization_opportunities",
        "efficiency_forecast",
    }
    assert json.loads(runner.invoke(app, ["trends", "--days", "7", *args]).output)["days"] == 7
    bad = runner.invoke(app, ["trends", "--days", "3_moons", "--db", db])
    assert bad.exit_code == 2
    assert "time_period: got '3_moons'" in bad.output
    assert "Traceback" not in bad.output
    bad = runner.invoke(app, ["trends", "--stable-rule", "flat", "--db", db])
    assert (bad.exit_code, "stable_rule" in bad.output) == (2, True)
