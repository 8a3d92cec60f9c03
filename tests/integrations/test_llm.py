"""LLM prices from litellm's table, and usage read from OpenAI- and Anthropic-style responses."""

from __future__ import annotations

import json
import os
import tomllib
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from spendgate import Gate, ValidationError, to_nanos
from spendgate.cli import app
from spendgate.config import parse
from spendgate.errors import ConfigError
from spendgate.llm import litellm_prices, to_toml, usage_from_anthropic, usage_from_openai
from spendgate.money import from_nanos
from spendgate.pricing import Price
from spendgate.testing import FrozenClock

TABLE = {
    "sample_spec": {"mode": "chat", "input_cost_per_token": 0.0},
    "gpt-4o": {
        "mode": "chat",
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
    },
    "text-embedding-3-small": {"mode": "embedding", "input_cost_per_token": 2e-08},
    "claude-x": {
        "mode": "chat",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06,
    },
}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(TABLE))
    return path


def test_prices_come_from_the_table_as_exact_decimals(table: Path) -> None:
    sources = litellm_prices(table)
    assert sorted(sources) == ["claude-x", "gpt-4o"]  # priced chat models only
    assert sources["gpt-4o"]["price"] == {
        "input_token": "0.0000025",
        "output_token": "0.00001",
        "cached_input_token": "0.00000125",
        "cache_write_token": "0.0000025",  # no cache price: billed as ordinary input
    }
    assert list(litellm_prices(table, models=["claude-*"])) == ["claude-x"]


def test_the_toml_loads_back_into_a_config(table: Path, tmp_path: Path) -> None:
    text = to_toml(litellm_prices(table))
    config = parse(tomllib.loads(text))
    price = config.prices.price_at(
        "gpt-4o", config.prices.pricing("gpt-4o").versions[0].effective_from
    )
    assert price is not None
    assert price.cost(
        {"input_token": 1000, "output_token": 500, "cached_input_token": 0, "cache_write_token": 0}
    ) == to_nanos("0.0075")


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"m": {"mode": "chat", "input_cost_per_token": "lots"}}']
)
def test_a_bad_table_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"bad\.json"):
        litellm_prices(path)
    with pytest.raises(ConfigError, match="no such file"):
        litellm_prices(tmp_path / "missing.json")


def test_usage_from_openai_responses() -> None:
    body = {
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 200},
        }
    }
    assert usage_from_openai(body) == {
        "input_token": 1000,
        "output_token": 300,
        "cached_input_token": 200,
        "cache_write_token": 0,
    }
    sdk = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=10, completion_tokens=5, prompt_tokens_details=None)
    )
    assert usage_from_openai(sdk)["input_token"] == 10
    with pytest.raises(ValidationError, match="cached_tokens"):
        usage_from_openai(
            {
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 5},
                }
            }
        )
    with pytest.raises(ValidationError, match="prompt_tokens"):
        usage_from_openai({"usage": {"prompt_tokens": -1, "completion_tokens": 1}})


def test_usage_from_anthropic_prices_cache_reads_and_writes(table: Path) -> None:
    message = {
        "usage": {
            "input_tokens": 2000,
            "output_tokens": 400,
            "cache_read_input_tokens": 10000,
            "cache_creation_input_tokens": 1000,
        }
    }
    units = usage_from_anthropic(message)
    config = parse({"sources": litellm_prices(table), "budgets": [{"name": "d", "limit": "10"}]})
    with Gate.open("memory://", config=config, clock=FrozenClock()) as gate:
        result = gate.record("ml_inference", "claude-x", units=units)
    expected = (
        Decimal("2000") * Decimal("3e-6")
        + 400 * Decimal("1.5e-5")
        + 10000 * Decimal("3e-7")
        + 1000 * Decimal("3.75e-6")
    )
    assert from_nanos(result.cost or 0) == expected


def test_the_cli_writes_the_toml(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "llm.toml"
    result = CliRunner().invoke(
        app, ["prices", "import-litellm", "--file", str(table), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2 models written" in result.output
    assert '[sources."gpt-4o"]' in out.read_text()
    bad = CliRunner().invoke(app, ["prices", "import-litellm", "--file", str(tmp_path / "no.json")])
    assert bad.exit_code == 2
    assert "no such file" in bad.output


def test_costs_equal_litellms_own_for_at_least_200_models() -> None:
    """Every imported model's cost equals litellm.cost_per_token() for the same tokens,
    wherever litellm costs a model from its own table row.

    litellm costs some providers with code of its own instead (deepseek, for one, bills its
    "flash" models' prompts at the cache-hit rate, and the list grows between releases);
    spendgate imports the table's rows, so those models are compared with the row instead.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never the network
    litellm = pytest.importorskip("litellm")
    from spendgate.llm import litellm_price_file

    table = json.loads(litellm_price_file().read_text())
    prompt, completion = 100_000, 50_000
    equal, by_code, differ = 0, 0, []
    for name, spec in litellm_prices().items():
        try:
            theirs = sum(
                litellm.cost_per_token(
                    model=name, prompt_tokens=prompt, completion_tokens=completion
                )
            )
        except Exception:
            continue
        row = table[name]
        from_row = prompt * float(row.get("input_cost_per_token") or 0) + completion * float(
            row.get("output_cost_per_token") or 0
        )
        price = Price.parse(name, spec["price"])
        units = dict.fromkeys(price.units, 0) | {"input_token": prompt, "output_token": completion}
        ours = float(from_nanos(price.cost(units)))

        def same(a: float, b: float) -> bool:  # within a nano-unit of rounding
            return abs(a - b) <= 1e-9 + abs(b) * 1e-9

        if not same(theirs, from_row):
            by_code += 1  # litellm's own code, not its table: compare with the row
            theirs = from_row
        if same(ours, theirs):
            equal += 1
        else:
            differ.append((row.get("litellm_provider"), name, ours, theirs))
    assert equal >= 200
    assert by_code < equal / 10  # the exception, not the rule
    assert not differ, differ


def test_a_missing_count_is_an_error_never_zero() -> None:
    for body in ({"usage": None}, {}, {"usage": {"input_tokens": 5, "output_tokens": 1}}):
        with pytest.raises(ValidationError, match="prompt_tokens"):
            usage_from_openai(body)
    with pytest.raises(ValidationError, match="input_tokens"):
        usage_from_anthropic({"usage": {"prompt_tokens": 5, "completion_tokens": 1}})
