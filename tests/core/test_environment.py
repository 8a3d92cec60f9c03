"""The second seed's environment variables override spendgate.toml (applied by the shells)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spendgate import Gate, to_nanos
from spendgate.cli import app
from spendgate.config import apply_environment, load, parse
from spendgate.errors import ConfigError
from spendgate.streams import StreamMeter
from spendgate.testing import FrozenClock

EXAMPLE = Path(__file__).parents[2] / "examples" / "spendgate.toml"


def test_the_seeds_variables_override_the_file() -> None:
    config = apply_environment(
        load(EXAMPLE),
        {
            "DAILY_STREAMING_BUDGET": "30.0",
            "EMERGENCY_STOP_THRESHOLD": "0.75",
            "WEEKEND_STREAMING": "true",
            "COST_MONITORING_ENABLED": "false",
        },
    )
    streaming = config.budget("streaming")
    assert streaming.limit == to_nanos("30.0")
    assert [(t.action, t.fraction) for t in streaming.thresholds] == [
        ("warn", Decimal("0.6")),
        ("degrade", Decimal("0.7")),
        ("stop", Decimal("0.75")),
    ]
    assert config.streams.weekend_streaming is True
    assert config.streams.monitoring is False
    assert apply_environment(load(EXAMPLE), {}) == load(EXAMPLE)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DAILY_STREAMING_BUDGET": "-5"}, "DAILY_STREAMING_BUDGET"),
        ({"DAILY_STREAMING_BUDGET": "lots"}, "DAILY_STREAMING_BUDGET"),
        ({"EMERGENCY_STOP_THRESHOLD": "0.5"}, "EMERGENCY_STOP_THRESHOLD"),  # below degrade
        ({"EMERGENCY_STOP_THRESHOLD": "11"}, "EMERGENCY_STOP_THRESHOLD"),
        ({"WEEKEND_STREAMING": "sometimes"}, "WEEKEND_STREAMING"),
        ({"COST_MONITORING_ENABLED": "2"}, "COST_MONITORING_ENABLED"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        apply_environment(load(EXAMPLE), environ)


def test_a_streaming_budget_must_exist_to_apply_to() -> None:
    with pytest.raises(ConfigError, match="named 'streaming'"):
        apply_environment(parse({}), {"DAILY_STREAMING_BUDGET": "25"})


def test_on_a_fresh_install_the_seeds_values_apply_to_the_default_streaming_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No spendgate.toml: the defaults carry the seed's `streaming` budget ($25 a day, warn
    0.6, stop 0.8), so the seed's own .env works as it is."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAILY_STREAMING_BUDGET", "25.0")
    monkeypatch.setenv("EMERGENCY_STOP_THRESHOLD", "0.8")
    result = CliRunner().invoke(app, ["budgets", "list", "--json", "--db", "memory://"])
    assert result.exit_code == 0, result.output
    streaming = next(b for b in json.loads(result.stdout) if b["name"] == "streaming")
    assert streaming["limit"] == "25"
    assert streaming["scope"] == "source:databento_mbo"


def test_an_error_naming_a_toml_table_prints_it_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rich read "[[budgets]]" in the message as markup and printed "a [] table"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spendgate.toml").write_text('[[budgets]]\nname = "other"\nlimit = "1"\n')
    monkeypatch.setenv("DAILY_STREAMING_BUDGET", "25")
    result = CliRunner().invoke(app, ["budgets", "list", "--db", "memory://"])
    assert result.exit_code == 2
    assert "a [[budgets]] table named 'streaming'" in result.output


def test_the_cli_applies_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_STREAMING_BUDGET", "42")
    result = CliRunner().invoke(
        app, ["budgets", "list", "--json", "--config", str(EXAMPLE), "--db", "memory://"]
    )
    assert result.exit_code == 0, result.output
    assert '"limit": "42"' in result.output


@pytest.mark.parametrize(
    ("stop", "level"),
    [("0.75", "stopped"), (None, "degraded")],
    ids=["stop-at-0.75", "the-files-0.8"],
)
def test_the_stop_threshold_reaches_the_meter(stop: str | None, level: str) -> None:
    """At 76% of the streaming budget a meter stops under EMERGENCY_STOP_THRESHOLD=0.75,
    while the file's own stop line (0.8) only degrades it."""
    environ = {"DAILY_STREAMING_BUDGET": "5"}  # the tightest budget: the daily one is $10
    if stop is not None:
        environ["EMERGENCY_STOP_THRESHOLD"] = stop
    config = apply_environment(load(EXAMPLE), environ)
    with Gate.open("memory://", config=config, clock=FrozenClock()) as gate:
        gate.record("other", "databento_mbo", cost="3.70")  # 74%: past degrade (0.7)
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        assert (meter.level, meter.should_continue()) == ("degraded", True)
        meter.record(10 * 2**20)  # 10 MB at $0.01: $3.80, 76% of $5
        meter.flush()
        spent = {s.budget.name: s.spent_nanos for s in gate.status()}
        assert spent["streaming"] == to_nanos("3.80")
        assert meter.level == level
        assert meter.should_continue() is (level != "stopped")


def test_monitoring_off_counts_and_books_but_never_stops() -> None:
    config = apply_environment(
        load(EXAMPLE), {"COST_MONITORING_ENABLED": "false", "DAILY_STREAMING_BUDGET": "1"}
    )
    with Gate.open("memory://", config=config, clock=FrozenClock()) as gate:
        meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
        meter.start()
        for _ in range(200):
            meter.record(2**20)  # $2.00 of data against a $1.00 budget
        meter.stop()
        assert meter.should_continue()
        assert meter.level == "normal"
        streaming = next(s for s in gate.status() if s.budget.name == "streaming")
        assert streaming.spent_nanos == to_nanos("2.00")
