"""LLM prices from litellm's table, and usage read from OpenAI- and Anthropic-style responses."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from spendgate import Gate, ValidationError, to_nanos
from spendgate.cli import app
from spendgate.config import parse
from spendgate.errors import ConfigError
from spendgate.llm import (
    MODALITIES,
    MODES,
    REGIONS,
    TIERS,
    VARIANTS,
    billable,
    billed_variant,
    litellm_prices,
    served_tier,
    service_tier,
    tier_unit,
    to_toml,
    usage_from_anthropic,
    usage_from_openai,
    variant,
)
from spendgate.money import from_nanos
from spendgate.pricing import Price
from spendgate.settings import parse_source
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
    assert sorted(sources) == ["claude-x", "gpt-4o", "text-embedding-3-small"]
    assert sources["text-embedding-3-small"] == {"price": {"input_token": "0.00000002"}}
    assert sources["gpt-4o"]["price"] == {
        "input_token": "0.0000025",
        "output_token": "0.00001",
        "cached_input_token": "0.00000125",
        "cache_write_token": "0.0000025",  # no cache price: billed as ordinary input
    }
    assert list(litellm_prices(table, models=["claude-*"])) == ["claude-x"]


def _one(row: Mapping[str, Any], tmp_path: Path, name: str = "m") -> dict[str, Any]:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({name: {"mode": "chat", **row}}))
    return litellm_prices(path).get(name, {})


def _cost(spec: Mapping[str, Any], **units: int) -> Decimal:
    price = parse_source("m", spec).versions[0]
    return from_nanos(price.cost(dict.fromkeys(price.named, 0) | units))


LONG = {  # the case: long-prompt rates five times the base ones above 100k
    "input_cost_per_token": 1e-07,
    "output_cost_per_token": 5e-07,
    "input_cost_per_token_above_100k_tokens": 5e-07,
    "output_cost_per_token_above_100k_tokens": 2.5e-06,
}


def test_a_long_prompt_is_priced_at_its_long_prompt_rates(tmp_path: Path) -> None:
    spec = _one(LONG, tmp_path)
    assert spec["size_units"] == ["input_token", "cached_input_token", "cache_write_token"]
    assert _cost(spec, input_token=150_000, output_token=20_000) == Decimal("0.125")
    assert _cost(spec, input_token=100_000, output_token=20_000) == Decimal("0.02")  # not above
    # Cached tokens count in the prompt's size, and follow the input rate when unpriced.
    assert _cost(spec, input_token=60_000, cached_input_token=60_000) == Decimal("0.06")
    # xAI bills the long-prompt rate from the size itself.
    xai = _one({**LONG, "litellm_provider": "xai"}, tmp_path)
    assert _cost(xai, input_token=100_000) == Decimal("0.05")
    assert _cost(xai, input_token=99_999) == Decimal("0.0099999")


def test_a_hard_budget_refuses_a_long_prompt_the_base_rate_would_let_through(
    tmp_path: Path,
) -> None:
    config = parse(
        {"sources": {"m": _one(LONG, tmp_path)}, "budgets": [{"name": "d", "limit": "0.10"}]}
    )
    units = {"input_token": 150_000, "output_token": 20_000}
    units |= {"cached_input_token": 0, "cache_write_token": 0}
    with Gate.open("memory://", config=config, clock=FrozenClock()) as gate:
        decision = gate.reserve("ml", "m", units=units)  # $0.125 here, $0.025 at base rates
        assert not decision.approved
        assert decision.requested == to_nanos("0.125")
        assert gate.reserve("ml", "m", units=units | {"input_token": 100_000}).approved


def test_a_zero_rate_is_free_and_no_price_is_no_model(tmp_path: Path) -> None:
    free_output = _one({"input_cost_per_token": 1e-06, "output_cost_per_token": 0.0}, tmp_path)
    assert free_output["price"]["output_token"] == "0"
    assert _cost(free_output, input_token=1000, output_token=5000) == Decimal("0.001")
    free = _one({"input_cost_per_token": 0, "output_cost_per_token": 0}, tmp_path)
    assert _cost(free, input_token=1000, output_token=5000) == 0
    assert _one({"max_tokens": 10}, tmp_path) == {}  # no price at all: refused, never free
    assert _one({"output_cost_per_token": 1e-06}, tmp_path) == {}  # prompts have no price


def test_ranged_tiers_price_the_whole_call_at_the_prompts_tier(tmp_path: Path) -> None:
    spec = _one(
        {
            "tiered_pricing": [
                {
                    "range": [0, 32000],
                    "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06,
                },
                {"range": [32000, 128000], "input_cost_per_token": 2e-06},
            ],
            "output_cost_per_token": 3e-06,
        },
        tmp_path,
    )
    assert _cost(spec, input_token=32_000, output_token=1000) == Decimal("0.034")
    # Above 32k every token is at the second tier, output at the model's own rate.
    assert _cost(spec, input_token=32_001, output_token=1000) == Decimal("0.067002")
    assert _cost(spec, input_token=200_000, output_token=0) == Decimal("0.4")  # past the last


def test_fireworks_bills_unpriced_cache_reads_at_half_the_input_rate(tmp_path: Path) -> None:
    row = {"litellm_provider": "fireworks_ai", "input_cost_per_token": 1e-06}
    spec = _one({**row, "output_cost_per_token": 1e-06}, tmp_path)
    assert spec["price"]["cached_input_token"] == "0.0000005"


def test_the_toml_loads_back_into_a_config(table: Path, tmp_path: Path) -> None:
    text = to_toml(litellm_prices(table) | {"long": _one(LONG, tmp_path)})
    config = parse(tomllib.loads(text))
    assert config.prices.pricing("long").to_spec() == _one(LONG, tmp_path) | {
        "size_tiers": [
            {"above": "100000", "price": {"input_token": "0.0000005", "output_token": "0.0000025",
                                          "cached_input_token": "0.0000005",
                                          "cache_write_token": "0.0000005"}}
        ]
    }  # fmt: skip
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
    assert usage_from_openai(body) == ZEROS | {
        "input_token": 1000,
        "output_token": 300,
        "cached_input_token": 200,
        "cache_write_token": 0,
    }
    sdk = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=10, completion_tokens=5, prompt_tokens_details=None)
    )
    assert usage_from_openai(sdk)["input_token"] == 10
    with pytest.raises(
        ValidationError, match=r"prompt_tokens_details.*cached_input_token.*at most prompt_tokens"
    ):
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
    assert "3 models written" in result.output
    assert '[sources."gpt-4o"]' in out.read_text()
    bad = CliRunner().invoke(app, ["prices", "import-litellm", "--file", str(tmp_path / "no.json")])
    assert bad.exit_code == 2
    assert "no such file" in bad.output


# A Monday 10:00 in Beijing: inside DeepSeek's peak hours, when its table rows' standard
# rates are what it bills (see the off-peak test below).
PEAK = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
OFF_PEAK = PEAK.replace(hour=12)  # 20:00 in Beijing


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never the network
    return pytest.importorskip("litellm")


def _grid(spec: Mapping[str, Any], embedding: bool) -> list[tuple[int, int, int, int]]:
    """(prompt, cached, cache writes, completion) token counts: a short prompt, and each
    side of every prompt-size tier, each plain, with cache reads, writes, and both."""
    sizes = {1000} | {int(t["above"]) + d for t in spec.get("size_tiers", ()) for d in (0, 1)}
    grid = []
    for prompt in sorted(s for s in sizes if s > 0):  # a call always has a prompt
        if embedding:
            grid.append((prompt, 0, 0, 0))
        else:
            splits = [(0, 0), (prompt // 4, 0), (0, prompt // 8), (prompt // 4, prompt // 8)]
            grid += [(prompt, cached, writes, 1000) for cached, writes in splits]
    return grid


def _ours(
    price: Price, prompt: int, cached: int, writes: int, completion: int, *, tier: str | None = None
) -> float:
    units = {"input_token": prompt - cached - writes}
    if "output_token" in price.named:
        units |= {"output_token": completion, "cached_input_token": cached}
        units |= {"cache_write_token": writes}
    return _dollars(price, billable(units, price, tier))


def _dollars(price: Price, units: Mapping[str, int]) -> float:
    """What `units` cost on `price` in dollars, every other unit of their variant at 0."""
    variants = {price.variant_of(unit) for unit in units} or {None}
    zeros = dict.fromkeys((u for u in price.named if price.variant_of(u) in variants), 0)
    return float(from_nanos(price.cost(zeros | units)))


def _tiers(price: Price) -> list[str | None]:
    """The standard rates and the variants `price` prices apart."""
    return [None, *(t for t in VARIANTS if price.accepts(tier_unit("input_token", t)))]


# What litellm is told of a call billed in a variant: a service tier, the region and speed
# Anthropic reports in the usage, or where an OpenAI or Vertex AI call was sent.
_SPEEDS = {"fast_mode": ("fast", None), "us": (None, "us"), "fast_mode_us": ("fast", "us")}
_PLACES = {
    "us": {"data_residency": "us"},  # us.api.openai.com
    "eu": {"data_residency": "eu"},
    "fedramp": {"data_residency": "fedramp"},  # gov.api.openai.com
    "regional": {"vertex_location": "us-east5"},
}


def _batch_cost(*args: Any, **kwargs: Any) -> tuple[float, float]:
    from litellm.cost_calculator import batch_cost_calculator

    result: tuple[float, float] = batch_cost_calculator(*args, **kwargs)
    return result


def _cost_in(
    litellm: Any, name: str, row: Mapping[str, Any], usage: Any, variant: str | None
) -> float:
    """litellm's cost, in dollars, of `usage` on the row `name` billed in `variant`."""
    if variant == "off_peak":
        from litellm._internal_context import pinned_billing_time

        with pinned_billing_time(OFF_PEAK):
            return _theirs(litellm, name, row, usage_object=usage)
    if variant in _SPEEDS and row.get("provider_specific_entry"):
        usage.speed, usage.inference_geo = _SPEEDS[variant]
        # litellm applies the multipliers to a model found by its name, not to a row given
        # as a deployment's own prices (the multiplier rows' names find their own rows).
        return _theirs(litellm, name, row, by_name=True, usage_object=usage)
    tier, place = variant, {}
    for region in REGIONS:
        if variant == region or (variant or "").endswith(f"_{region}"):
            tier = None if variant == region else variant.removesuffix(f"_{region}")  # type: ignore[union-attr]
            place = _PLACES[region]
    if tier == "batch":
        return float(
            sum(
                _batch_cost(
                    usage, model=name, custom_llm_provider=row.get("litellm_provider"),
                    model_info=row, **place,
                )
            )
        )  # fmt: skip
    return _theirs(litellm, name, row, usage_object=usage, service_tier=tier, **place)


def _theirs(
    litellm: Any, name: str, row: Mapping[str, Any], *, by_name: bool = False, **usage: Any
) -> float:
    """litellm's cost of `usage` on the row `name` (given: see the grid test; `by_name`:
    found by its name, as a call finds it), in dollars."""
    given = {} if by_name else {"requested_model_info_override": row}
    return float(
        sum(
            litellm.cost_per_token(
                model=name, custom_llm_provider=row.get("litellm_provider"), **given, **usage
            )
        )
    )


def _table() -> dict[str, Any]:
    """litellm's table as spendgate imports it: an alias (`alias_of`) as the row it names,
    and a row with no mode by what it prices (tokens as a chat model's, characters as
    speech)."""
    from spendgate.llm import litellm_price_file

    table = json.loads(litellm_price_file().read_text())
    out = {}
    for name, given in table.items():
        if not isinstance(given, dict):
            continue
        row = table.get(given.get("alias_of"), given)
        if "mode" not in row:
            by_character = "input_cost_per_character" in row and "input_cost_per_token" not in row
            row = {**row, "mode": "audio_speech" if by_character else "chat"}
        out[name] = row
    return out


def test_aliases_and_rows_with_no_mode_are_priced_as_litellm_prices_them() -> None:
    """An alias (`azure/gpt-astra-latest`, which litellm serves as `azure/gpt-6-astra`) has
    its row's source; a row with no mode is priced by what it prices: Fireworks' rates by
    model size by the token, Deepgram's speech by the character."""
    _litellm()
    from spendgate.llm import litellm_price_file

    raw = json.loads(litellm_price_file().read_text())
    sources = litellm_prices()
    aliases = {n: r["alias_of"] for n, r in raw.items() if isinstance(r, dict) and "alias_of" in r}
    assert len(aliases) >= 90
    for alias, target in aliases.items():
        assert sources.get(alias) == sources.get(target), alias
    astra = raw["azure/gpt-6-astra"]["input_cost_per_token"]
    assert Decimal(sources["azure/gpt-astra-latest"]["price"]["input_token"]) == Decimal(
        repr(astra)
    )
    assert sources["fireworks-ai-up-to-4b"]["price"]["output_token"] == "0.0000001"
    assert sources["deepgram/aura"] == {"price": {"character": "0.000015"}}
    modeless = [n for n, r in raw.items() if isinstance(r, dict) and not r.get("mode")]
    priced = [n for n in modeless if n in sources and n not in aliases]
    assert len(priced) == 10, priced  # the rest are aliases, or rows with no price


def _same(ours: float, theirs: float) -> bool:
    """Equal to 1e-9 relative (litellm adds floats; spendgate rounds once to a nano)."""
    return abs(ours - theirs) <= 1e-9 * abs(theirs) + 1e-9


def test_every_token_priced_model_costs_what_litellm_costs() -> None:
    """For every model imported from the installed litellm's table, over a grid of token
    counts that crosses every prompt-size tier: spendgate's cost equals litellm's own
    `cost_per_token()` for the same row, at a peak hour (see the off-peak test).

    litellm is given the row itself (`requested_model_info_override`): by name alone it
    finds another row for some models (`gemini-exp-1206` finds `gemini/gemini-exp-1206`'s
    free one, `perplexity/perplexity/sonar` finds `perplexity/sonar`), while spendgate
    imports each row under its own name.
    """
    litellm = _litellm()
    from litellm._internal_context import pinned_billing_time
    from litellm.types.utils import Usage

    table = _table()
    sources = {
        name: s
        for name, s in litellm_prices().items()
        if "input_token" in s["price"] and table[name]["mode"] not in IMAGE_MODES
    }
    modes = {table[name]["mode"] for name in sources}
    assert modes == {*MODES, "audio_transcription", "audio_speech"}
    assert sum(1 for spec in sources.values() if "size_tiers" in spec) >= 300
    compared, tiered, differ, seen = 0, 0, [], set()
    with pinned_billing_time(PEAK):
        for name, spec in sources.items():
            row = table[name]
            price = parse_source(name, spec).versions[0]
            embedding = row["mode"] == "embedding"
            for prompt, cached, writes, completion in _grid(spec, embedding):
                if writes and row.get("litellm_provider") == "deepseek":
                    continue  # DeepSeek reports cache hits and misses, never cache writes
                for tier in _tiers(price):
                    if cached and tier == "batch" and _free_cache_in_batch(row):
                        continue  # the one exception: see the test below
                    usage = Usage(
                        prompt_tokens=prompt,
                        completion_tokens=completion,
                        total_tokens=prompt + completion,
                        cache_read_input_tokens=cached,
                        cache_creation_input_tokens=writes,
                    )  # fmt: skip, as cost_per_token() builds it from counts
                    theirs = _cost_in(litellm, name, row, usage, tier)
                    ours = _ours(price, prompt, cached, writes, completion, tier=tier)
                    compared += 1
                    tiered += tier is not None
                    seen.add(tier)
                    if not _same(ours, theirs):
                        differ.append((name, tier, prompt, cached, writes, ours, theirs))
    assert compared >= 20_000
    assert tiered >= 4_000
    assert set(VARIANTS) - seen <= {  # every variant the table prices
        f"{tier}_{region}" for tier in TIERS for region in REGIONS
    }, set(VARIANTS) - seen
    assert {"batch", "eu", "fedramp", "regional", "priority_eu", "batch_regional"} <= seen
    assert not differ, differ[:20]


def _free_cache_in_batch(row: Mapping[str, Any]) -> bool:
    """A row litellm books the cached prompt tokens of a batch at $0 for: one with batch
    rates for output only and no cache price."""
    no_batch_prompt = row.get("input_cost_per_token_batches") is None
    return no_batch_prompt and row.get("cache_read_input_token_cost") is None


def test_cached_tokens_in_a_batch_are_never_free(tmp_path: Path) -> None:
    """The exception to litellm's batch costs: a row with batch rates for output only and
    no cache price (`bedrock_mantle/.../google.gemma-4-e2b`, the one such row) has its batch
    prompt billed at half its prompt rate, and litellm bills cached tokens at half a cache
    price it does not have: $0. A cached token is a prompt token the model has no cache
    price for, so spendgate bills it at the batch prompt rate, never $0."""
    row = {"mode": "chat", "input_cost_per_token": 4.8e-08, "output_cost_per_token": 9.6e-08,
           "output_cost_per_token_batches": 4.8e-08}  # fmt: skip
    assert _free_cache_in_batch(row)
    price = parse_source("m", _one(row, tmp_path)).versions[0]
    assert price.variants == ("batch",)
    units = ZEROS | {"input_token": 600, "cached_input_token": 400, "output_token": 10}
    billed = billable(units, price, "batch")
    assert {k: v for k, v in billed.items() if v} == {
        "batch_input_token": 600, "batch_cached_input_token": 400, "batch_output_token": 10
    }  # fmt: skip
    assert all(unit.startswith("batch_") for unit in billed)
    assert price.cost(billed) == to_nanos("0.000024480")  # 1000 x 2.4e-8 + 10 x 4.8e-8


def test_variants_litellm_does_not_price_apart_are_not_imported(tmp_path: Path) -> None:
    base = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    # A tier's rate of null is no rate: the standard one stands, as litellm bills it.
    nulls = _one({**base, "input_cost_per_token_flex": None,
                  "cache_read_input_token_cost_flex": None}, tmp_path)  # fmt: skip
    assert not any(unit.startswith("flex_") for unit in nulls["price"])
    half = _one({**base, "output_cost_per_token_flex": 1e-06,
                 "cache_read_input_token_cost_flex": None}, tmp_path)  # fmt: skip
    assert half["price"]["flex_input_token"] == half["price"]["flex_cached_input_token"]
    # litellm prices a row's `tiered_pricing` ranges whatever the tier.
    ranged = _one({**base, "input_cost_per_token_priority": 5e-06, "tiered_pricing": [
        {"range": [0, 32000], "input_cost_per_token": 1e-06}]}, tmp_path)  # fmt: skip
    assert not any(unit.startswith("priority_") for unit in ranged["price"])
    # Anthropic's multipliers, on its API and Claude on Bedrock alike.
    entry = {"provider_specific_entry": {"us": 1.1, "fast": 2}}
    anthropic = _one({**base, **entry, "litellm_provider": "anthropic"}, tmp_path)
    assert anthropic["price"]["us_input_token"] == "0.0000011"
    assert anthropic["price"]["fast_mode_us_output_token"] == "0.0000044"
    bedrock = _one({**base, "provider_specific_entry": {"us": 1.1}}, tmp_path)
    assert bedrock["price"]["us_output_token"] == "0.0000022"
    assert "fast_mode_input_token" not in bedrock["price"]
    # Zero tokens beside a price per song: a paid call, never booked at $0, so left out.
    lyria = {"mode": "audio_speech", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
             "output_cost_per_image": 0.08}  # fmt: skip
    assert _one(lyria, tmp_path) == {}
    for bad_row, field in [
        ({"provider_specific_entry": {"us": 0}}, r"provider_specific_entry\.us"),
        ({"provider_specific_entry": [1.1]}, "provider_specific_entry"),
        ({"input_cost_per_token": "1e999999999"}, "input_cost_per_token"),
        ({"output_cost_per_token": 1e300}, "output_cost_per_token"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"m": {**base, **bad_row}}))
        with pytest.raises(ConfigError, match=field):
            litellm_prices(bad)


def test_a_call_is_billed_in_the_variant_its_price_has(tmp_path: Path) -> None:
    row = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
           "input_cost_per_token_priority": 2e-06, "litellm_provider": "anthropic",
           "provider_specific_entry": {"us": 1.1, "fast": 2}}  # fmt: skip
    price = parse_source("m", _one(row, tmp_path)).versions[0]
    plain = parse_source("p", _one({**row, "provider_specific_entry": {}}, tmp_path)).versions[0]
    assert variant(price, "priority", inference_geo="us") == "priority"  # a tier first
    assert variant(price, None, inference_geo="us", speed="fast") == "fast_mode_us"
    assert variant(price, None, inference_geo="global", speed="fast") == "fast_mode"
    assert variant(price, "flex") is None  # not a tier it has: its standard rates
    assert variant(plain, None, inference_geo="us") is None
    # From a response: OpenAI's tier beside the usage, Anthropic's region inside it.
    assert billed_variant(price, "auto", {"service_tier": "priority", "usage": {}}) == "priority"
    assert billed_variant(price, None, {"usage": {"inference_geo": "US", "speed": "fast"}}) == (
        "fast_mode_us"
    )
    assert billed_variant(price, "priority", {"input_tokens": 1}, served="default") is None
    units = ZEROS | {"input_token": 10, "output_token": 4, "cached_input_token": 0}
    for name in ("fast", "Priority", "priority"):  # litellm's other name, any case
        billed = billable(units, price, name)
        assert billed["priority_input_token"] == 10
        assert not {"input_token", "us_input_token"} & billed.keys()  # other variants': none
        assert price.cost(billed) == to_nanos("0.000028")  # 10 x 2e-6 + 4 x 2e-6


def test_a_call_sent_to_a_region_is_billed_at_its_premium(tmp_path: Path) -> None:
    """OpenAI's regional (`eu.api.openai.com`, `us.api.openai.com`) and FedRAMP endpoints,
    and Vertex AI's regional ones, bill 10% more for the models whose rows say so: every
    tier of the model, batches included, is priced there too, and a call is billed in its
    tier in its region where the price has that, else in its tier."""
    row = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06,
           "input_cost_per_token_priority": 2e-06, "output_cost_per_token_priority": 8e-06,
           "input_cost_per_token_batches": 5e-07, "output_cost_per_token_batches": 2e-06,
           "regional_processing_uplift_multiplier_eu": 1.1,
           "fedramp_uplift_multiplier": 1.1, "litellm_provider": "openai"}  # fmt: skip
    spec = _one(row, tmp_path)
    assert spec["variants"] == ["priority", "batch", "eu", "priority_eu", "batch_eu",
                                "fedramp", "priority_fedramp", "batch_fedramp"]  # fmt: skip
    assert spec["price"]["priority_eu_input_token"] == "0.0000022"
    assert spec["price"]["batch_fedramp_output_token"] == "0.0000022"
    pricing = parse_source("m", spec)
    assert parse_source("m", pricing.to_spec()) == pricing  # as a store keeps it
    price = pricing.versions[0]
    assert variant(price, "priority", region="eu") == "priority_eu"
    assert variant(price, None, region="eu") == "eu"
    assert variant(price, "flex", region="fedramp") == "fedramp"  # no flex: standard there
    assert variant(price, "priority", region="us") == "priority"  # no US premium
    assert variant(price, "priority", region="EU") == "priority_eu"  # any case
    with pytest.raises(ValidationError, match="region"):
        variant(price, None, region="mars")  # a region it does not know is not standard
    assert billed_variant(price, "auto", {"service_tier": "priority"}, region="eu") == (
        "priority_eu"
    )
    units = ZEROS | {"input_token": 1000, "output_token": 100, "cached_input_token": 0}
    billed = billable(units, price, "batch_eu")
    assert {k: v for k, v in billed.items() if v} == {
        "batch_eu_input_token": 1000, "batch_eu_output_token": 100
    }  # fmt: skip
    assert all(unit.startswith("batch_eu_") for unit in billed)
    assert price.cost(billed) == to_nanos("0.00077")  # (1000 x 5e-7 + 100 x 2e-6) x 1.1
    # Each variant's units stand alone: a call in one needs none of the others'.
    assert price.variant_of("batch_eu_input_token") == "batch_eu"
    assert price.variant_of("eu_input_token") == "eu"
    assert price.variant_of("input_token") is None
    with pytest.raises(ValidationError, match="every priced unit"):
        price.cost({"batch_eu_input_token": 1000})  # its output tokens left out
    # A variant's units are the standard ones, every one, named with the variant first.
    partial = {"input_token": "1", "output_token": "2", "batch_input_token": "0.5"}
    with pytest.raises(ValidationError, match="batch_output_token"):
        parse_source("h", {"price": partial, "variants": ["batch"]})
    with pytest.raises(ValidationError, match="after a standard unit"):
        parse_source("h", {"price": {"input_token": "1", "output_token": "2"},
                           "variants": ["output"]})  # fmt: skip


def test_variants_are_checked_names(tmp_path: Path) -> None:
    base = {"price": {"input_token": "1", "batch_input_token": "0.5"}}
    for bad in ("batch", [1], ["Batch"], ["a b"], ["x"] * 65):
        with pytest.raises(ValidationError, match="variants"):
            parse_source("m", {**base, "variants": bad})
    price = parse_source("m", {**base, "variants": ["batch"]}).versions[0]
    assert price.cost({"batch_input_token": 2}) == to_nanos(1)
    assert price.cost({"input_token": 2}) == to_nanos(2)


def test_models_priced_per_use_take_the_unit_their_mode_bills(tmp_path: Path) -> None:
    rows = {
        "whisper": {"mode": "audio_transcription", "input_cost_per_second": 0.0001,
                    "output_cost_per_second": 0.0002},
        "transcribe": {"mode": "audio_transcription", "input_cost_per_second": 0.0001,
                       "input_cost_per_audio_token": 6e-06, "output_cost_per_token": 1e-05,
                       "input_cost_per_token": 2.5e-06},
        "tts": {"mode": "audio_speech", "input_cost_per_character": 1.5e-05,
                "input_cost_per_token": 1e-06},
        "dall-e": {"mode": "image_generation", "output_cost_per_image": 0.04,
                   "input_cost_per_pixel": 1e-08},
        "pixels": {"mode": "image_generation", "input_cost_per_pixel": 1e-08,
                   "output_cost_per_token": 0.0},
        "gpt-image": {"mode": "image_generation", "output_cost_per_image": 0.04,
                      "output_cost_per_image_token": 4e-05, "input_cost_per_token": 5e-06},
        "seedream": {"mode": "image_generation", "output_cost_per_image": 0.03,
                     "output_cost_per_image_token": 4e-05},
        "video": {"mode": "video_generation", "output_cost_per_second": 0.5,
                  "output_cost_per_second_720p": 0.3, "input_cost_per_image": 0.01},
        "ocr": {"mode": "ocr", "ocr_cost_per_page": 0.001},
        "parse": {"mode": "ocr", "ocr_cost_per_credit": 0.015},
        "rerank": {"mode": "rerank", "input_cost_per_query": 0.002, "input_cost_per_token": 0.0},
        "search": {"mode": "search", "input_cost_per_query": 0.005},
        "ranged": {"mode": "search", "tiered_pricing": [{"max_results_range": [1, 10],
                                                         "input_cost_per_query": 0.005}]},
        "nothing": {"mode": "image_edit"},
        "exa": {"mode": "search", "tiered_pricing": [
            {"input_cost_per_query": 0.005, "max_results_range": [0, 25]},
            {"input_cost_per_query": 0.025, "max_results_range": [26, 100]}]},
    }  # fmt: skip
    file = tmp_path / "t.json"
    file.write_text(json.dumps(rows))
    prices = {name: spec["price"] for name, spec in litellm_prices(file).items()}
    assert prices == {
        "whisper": {"audio_second": "0.0002"},  # the output rate first, as litellm bills it
        "transcribe": {  # by the token: the row prices tokens
            "input_token": "0.0000025", "output_token": "0.00001",
            "cached_input_token": "0.0000025", "cache_write_token": "0.0000025",
            "input_audio_token": "0.000006",
        },
        "tts": {"character": "0.000015"},
        "dall-e": {"image": "0.04"},
        "gpt-image": {  # by the token; text output with no rate of its own: the image rate
            "input_token": "0.000005", "output_token": "0.00004",
            "cached_input_token": "0.000005", "cache_write_token": "0.000005",
            "output_image_token": "0.00004",
        },
        "seedream": {"image": "0.03"},  # no prompt price: per image
        "pixels": {"pixel": "0.00000001"},
        "video": {"video_second": "0.5", "video_second_720p": "0.3", "input_image": "0.01"},
        "ocr": {"page": "0.001", "annotated_page": "0.001"},
        "parse": {"credit": "0.015"},
        "rerank": {"search_unit": "0.002"},
        "search": {"query": "0.005"},
        "ranged": {"query": "0.005"},  # one range of results asked for: one rate
        "exa": {"query": "0.005", "max_results": "0"},  # and a size tier above 25 results
    }  # fmt: skip
    # A model with no price is left out: a call to it is refused, never free.
    config = parse(tomllib.loads(to_toml(litellm_prices(file))))
    gate = Gate.open("memory://", config=config, clock=FrozenClock())
    with gate:
        assert gate.record("speech", "tts", units={"character": 1000}).cost == to_nanos("0.015")
        wide = {"query": 2, "max_results": 30}  # each query at the rate of 26-100 results
        assert gate.record("search", "exa", units=wide).cost == to_nanos("0.05")
        with pytest.raises(ValidationError, match="video_second"):
            gate.record("video", "video", units={"seconds": 8})


def _image_asked(name: str) -> tuple[str, dict[str, Any]]:
    """The model and what a call asks of it that a row named for a quality, size or steps
    (`hd/1024-x-1792/dall-e-3`) prices: that row is the price of such a call."""
    parts = name.split("/")
    asked: dict[str, Any] = {"size": "512-x-768", "quality": None, "steps": 50}
    for i, part in enumerate(parts[:-1]):
        if re.fullmatch(r"[0-9]+-x-[0-9]+", part):
            asked["size"] = part
        elif part == "max-x-max":
            pass  # no size litellm can ask for
        elif part in ("hd", "standard", "low", "medium", "high"):
            asked["quality"] = part
        elif part.endswith("-steps"):
            asked["steps"] = 51 if part == "max-steps" else 50
        else:
            continue
        parts[i] = ""
    return "/".join(part for part in parts if part), asked


def _theirs_image(name: str, row: Mapping[str, Any], unit: str, q: int) -> float:
    """litellm's cost of `q` of an image unit on the row `name`: its image route, given the
    row (`image`, q images of the row's size, 512 x 768 when unnamed; `pixel`, that many
    pixels of it), or by the model's name as a call finds it, which is how litellm prices
    a resolution (`image_4k`, q images at it, of low quality for xAI's) or an image of
    known size (`megapixel`, one image of q megapixels)."""
    from litellm.litellm_core_utils.llm_cost_calc.utils import CostCalculatorUtils
    from litellm.types.utils import ImageObject, ImageResponse

    model, asked = _image_asked(name)
    width, height = map(int, asked["size"].split("-x-"))
    n = q // (width * height) if unit == "pixel" else 1 if unit == "megapixel" else q
    made = [ImageObject(b64_json="AA==") for _ in range(n)]
    params: dict[str, Any] = {"steps": asked["steps"], "quality": asked["quality"]}
    params["image_size"] = {"width": width, "height": height}  # how fal.ai asks for a size
    if unit == "megapixel":
        size = {"width": 1024, "height": 1024 * q}
        made = [ImageObject(b64_json="AA==", provider_specific_fields=size)]
    elif unit.startswith("image_"):
        key = next(k for k in row if k.startswith("output_cost_per_image_") and
                   k.lower().replace(".", "_") == f"output_cost_per_{unit}")  # fmt: skip
        params["resolution"] = key.removeprefix("output_cost_per_image_")
        if row["litellm_provider"] == "xai":
            params["resolution"], asked["quality"] = params["resolution"].lower(), "low"
    call = "image_edit" if row["mode"] == "image_edit" else "image_generation"
    return float(CostCalculatorUtils.route_image_generation_cost_calculator(
        model=model, custom_llm_provider=row["litellm_provider"], n=n, size=asked["size"],
        completion_response=ImageResponse(data=made), quality=asked["quality"],
        call_type=call, optional_params=params,
        model_info=row if unit in ("image", "pixel") else None,
    ))  # fmt: skip


def _theirs_per_use(
    litellm: Any, name: str, row: Mapping[str, Any], unit: str, q: int, *, results: int | None
) -> float:
    """litellm's cost of `q` of `unit` on the row `name`, from the cost function of its mode
    (a search asking for `results` results)."""
    from litellm import cost_calculator
    from litellm.llms.base_llm.ocr.transformation import OCRResponse, OCRUsageInfo
    from litellm.search.cost_calculator import search_provider_cost_per_query

    provider = row.get("litellm_provider")
    at = {"model": name, "custom_llm_provider": provider}
    if unit == "audio_second":
        return sum(litellm.cost_per_token(**at, call_type="transcription",
                                          audio_transcription_file_duration=q))  # fmt: skip
    if unit == "character":
        return sum(litellm.cost_per_token(**at, call_type="speech", prompt_characters=q))
    if unit in ("image", "pixel") or unit.startswith(("image_", "megapixel")):
        return _theirs_image(name, row, unit, q)
    if unit.startswith("video_second"):
        resolution = unit.removeprefix("video_second").removeprefix("_") or None
        return float(cost_calculator.default_video_cost_calculator(
            **at, duration_seconds=q, model_info=row, video_resolution=resolution))  # fmt: skip
    if unit in ("batch_page", "batch_annotated_page"):
        counts = {
            "batch_page": "pages_processed",
            "batch_annotated_page": "pages_processed_annotation",
        }
        usage = OCRUsageInfo(**{counts[unit]: q})
        return sum(cost_calculator.ocr_batch_cost(**at, usage_info=usage, model_info=row))
    if unit in ("page", "annotated_page", "credit"):
        counts = {"page": "pages_processed", "annotated_page": "pages_processed_annotation"}
        usage = OCRUsageInfo(**{counts.get(unit, "credits"): q})
        response = OCRResponse(pages=[], model=name, usage_info=usage)
        return sum(cost_calculator.ocr_cost(**at, response=response))
    if unit in ("search_unit", "token"):
        billed = {"search_units" if unit == "search_unit" else "total_tokens": q}
        return sum(cost_calculator.rerank_cost(**at, billed_units=billed))
    assert unit == "query", unit
    asked = {"max_results": results} if results is not None else None
    return sum(search_provider_cost_per_query(**at, number_of_queries=q, optional_params=asked))


@pytest.mark.filterwarnings("ignore::UserWarning")  # litellm's own models, built on first use
def test_every_model_priced_per_use_costs_what_litellm_costs() -> None:
    """For every model imported priced per unit of what a call does (transcription by the
    second, speech by the character, images, video by the second at each resolution, OCR
    pages and credits, rerank search units, search queries), each unit alone at a few
    quantities: spendgate's cost equals the cost function litellm uses for the mode."""
    litellm = _litellm()
    from spendgate.llm import USE_MODES

    table = _table()
    sources = {n: s for n, s in litellm_prices().items() if table[n]["mode"] in USE_MODES}
    per_use = {n: s for n, s in sources.items() if "input_token" not in s["price"]}
    assert {table[n]["mode"] for n in per_use} == set(USE_MODES)
    assert len(per_use) >= 600
    assert sum("batch_page" in s["price"] for s in per_use.values()) >= 7  # Mistral's OCR
    compared, differ, uncosted, by_tokens = 0, [], set(), set()
    for name, spec in per_use.items():
        row = table[name]
        price = parse_source(name, spec).versions[0]
        # A search priced by the results it asks for: each side of every range's edge.
        edges = {t.above + d for t in price.size_tiers for d in (0, 1)} or {None}
        for unit in price.named:
            if unit in ("input_image", "max_results"):  # litellm adds the first apart
                continue
            pixels = math.prod(map(int, _image_asked(name)[1]["size"].split("-x-")))
            quantities = (1, 7, 60) if unit != "pixel" else (pixels, 3 * pixels)
            for q, results in itertools.product(quantities, sorted(edges, key=str)):
                asked = {"max_results": results} if results is not None else {}
                ours = _dollars(price, {unit: q, **asked})
                if "gpt-image" in name and row["litellm_provider"] in ("openai", "azure"):
                    # litellm costs an OpenAI gpt-image call by its tokens
                    by_tokens.add(name)
                    continue
                try:
                    theirs = _theirs_per_use(litellm, name, row, unit, q, results=results)
                except litellm.exceptions.ModelNotMappedError:  # litellm cannot cost it at all
                    uncosted.add(name)
                    continue
                compared += 1
                if not _same(ours, theirs):
                    differ.append((name, unit, q, results, ours, theirs))
    assert compared >= 2_000
    assert not differ, differ[:20]
    # The exceptions (docs/llm.md): litellm's Bedrock route looks these rows up under a size
    # and steps they do not have, and finds none; OpenAI's per-image prices of gpt-image
    # models by quality and size, which litellm leaves to the token count of the call.
    assert {table[name]["litellm_provider"] for name in uncosted} == {"bedrock"}
    assert len(uncosted) <= 12, sorted(uncosted)
    assert {table[name]["litellm_provider"] for name in by_tokens} == {"openai", "azure"}


IMAGE_MODES = ("image_generation", "image_edit")


@pytest.mark.filterwarnings("ignore::UserWarning")  # litellm's own models, built on first use
def test_image_models_priced_by_the_token_cost_what_litellm_costs() -> None:
    """Image models whose rows price tokens (`gpt-image-1`, Gemini's image models) report
    token usage: read with `usage_from_openai(..., image=True)` and `billable()`, it costs
    what litellm's image route costs the same usage at, for every such model."""
    _litellm()
    from litellm.litellm_core_utils.llm_cost_calc.utils import CostCalculatorUtils
    from litellm.types.utils import ImageObject, ImageResponse, ImageUsage

    table = _table()
    sources = {
        n: s
        for n, s in litellm_prices().items()
        if table[n]["mode"] in IMAGE_MODES and "input_token" in s["price"]
    }
    assert len(sources) >= 50
    compared, differ, uncosted = 0, [], set()
    for name, spec in sources.items():
        row = table[name]
        price = parse_source(name, spec).versions[0]
        for text, images, made in [(40, 0, 1056), (25, 500, 4160), (1000, 1000, 0)]:
            details = {"text_tokens": text, "image_tokens": images}
            usage = {"input_tokens": text + images, "output_tokens": made,
                     "total_tokens": text + images + made,
                     "input_tokens_details": details}  # fmt: skip
            response = ImageResponse(data=[ImageObject(b64_json="AA==")], usage=ImageUsage(**usage))
            call = "image_edit" if row["mode"] == "image_edit" else "image_generation"
            if row["litellm_provider"] == "databricks":
                uncosted.add(name)  # litellm's image route has no calculator for Databricks
                continue
            # A call to a Vertex AI model is made as `vertex_ai` (its row's provider names
            # the table it comes from).
            provider = row["litellm_provider"].removesuffix("-language-models")
            theirs = float(CostCalculatorUtils.route_image_generation_cost_calculator(
                model=name, custom_llm_provider=provider, n=1,
                completion_response=response, call_type=call, model_info=row,
            ))  # fmt: skip
            units = billable(usage_from_openai({"usage": usage}, image=True), price)
            ours = _dollars(price, units)
            compared += 1
            if not _same(ours, theirs):
                differ.append((name, text, images, made, ours, theirs))
    assert compared >= 140
    assert not differ, differ[:20]
    assert len(uncosted) <= 4


def test_off_peak_hours_are_billed_at_the_off_peak_rates() -> None:
    """Rows with `off_peak_pricing` (DeepSeek's V4 models, and Tencent's resale of them):
    DeepSeek bills a call at its off-peak rates outside its peak hours (09:00-12:00 and
    14:00-18:00 Beijing time on weekdays) and at twice them inside. The rows' hours become
    the source's `variant_hours`; for every hour of a week, a call made in it costs what
    litellm costs it at that hour."""
    litellm = _litellm()
    from litellm._internal_context import pinned_billing_time
    from litellm.types.utils import Usage

    table = _table()
    sources = litellm_prices()
    off_peak = [name for name in sources if "off_peak_pricing" in table[name]]
    assert len(off_peak) >= 10
    compared, billed_off_peak = 0, 0
    for name in off_peak:
        row = table[name]
        price = parse_source(name, sources[name]).versions[0]
        assert price.variants == ("off_peak",)
        for hour in range(7 * 24):
            when = datetime(2026, 12, 7, tzinfo=UTC) + timedelta(hours=hour, minutes=30)
            tier = variant(price, None, during=(when, when + timedelta(minutes=2)))
            billed_off_peak += tier == "off_peak"
            units = billable(ZEROS | {"input_token": 9000, "cached_input_token": 1000,
                                      "output_token": 1000}, price, tier)  # fmt: skip
            usage = Usage(prompt_tokens=10_000, completion_tokens=1000, total_tokens=11_000,
                          cache_read_input_tokens=1000)  # fmt: skip
            with pinned_billing_time(when):
                theirs = _theirs(litellm, name, row, usage_object=usage)
            compared += 1
            assert _same(_dollars(price, units), theirs), (name, when, tier)
    assert billed_off_peak == len(off_peak) * (7 * 24 - 5 * 7)  # 7 peak hours a weekday


def test_a_call_is_billed_off_peak_only_when_all_of_it_is() -> None:
    weekday = {"hours_utc": ["00:00-01:00", "10:00-00:00"], "weekdays": [1, 2, 3, 4, 5]}
    hours = {"off_peak": {"windows": [weekday,
                                      {"hours_utc": "00:00-00:00", "weekdays": [6, 7]}],
                          "weekday_timezone": "Asia/Shanghai"}}  # fmt: skip
    spec = {"price": {"input_token": "2", "off_peak_input_token": "1"},
            "variants": ["off_peak"], "variant_hours": hours}  # fmt: skip
    pricing = parse_source("m", spec)
    assert parse_source("m", pricing.to_spec()) == pricing  # as a store keeps it
    price = pricing.versions[0]
    monday = datetime(2026, 12, 7, tzinfo=UTC)
    minutes = timedelta(minutes=1)
    assert price.timed_variant(monday.replace(hour=12), monday.replace(hour=12)) == "off_peak"
    assert price.timed_variant(monday.replace(hour=9), monday.replace(hour=9)) is None
    # Into the window, out of it, or across a peak in between: the standard rates.
    assert price.timed_variant(monday.replace(hour=9, minute=59), monday.replace(hour=10)) is None
    assert (
        price.timed_variant(
            monday.replace(hour=23, minute=59), monday + timedelta(days=1, minutes=1)
        )
        == "off_peak"
    )  # across midnight: still off-peak
    at_ten = monday.replace(hour=10)
    assert price.timed_variant(at_ten, at_ten + 61 * minutes) == "off_peak"
    assert price.timed_variant(monday.replace(hour=12), monday.replace(hour=11)) is None
    assert price.timed_variant(monday.replace(minute=30), monday.replace(hour=10)) is None
    # The weekend by Shanghai's calendar: Friday 16:00 UTC is Saturday there.
    weekend = {"windows": [{"hours_utc": "00:00-00:00", "weekdays": [6, 7]}]}
    weekend["weekday_timezone"] = "Asia/Shanghai"  # type: ignore[assignment]
    saturday = parse_source("w", {**spec, "variant_hours": {"off_peak": weekend}}).versions[0]
    friday = monday + timedelta(days=4)
    assert saturday.timed_variant(friday.replace(hour=17), friday.replace(hour=17)) == "off_peak"
    assert saturday.timed_variant(friday.replace(hour=15), friday.replace(hour=15)) is None
    during = (friday.replace(hour=17), friday.replace(hour=17))
    assert variant(saturday, None, during=during) == "off_peak"
    assert variant(saturday, None, during=during, region="eu") == "off_peak"  # no EU rates


def test_off_peak_rates_are_the_ones_litellm_reads(tmp_path: Path) -> None:
    """An off-peak block's prompt, output, cache and reasoning rates, at every prompt size
    (as litellm lays them over a call); any other rate in it (audio here) is not read by
    litellm, so the standard one stands; hours that do not read leave the row at its
    standard (peak) rates."""
    litellm = _litellm()
    from litellm._internal_context import pinned_billing_time
    from litellm.types.utils import Usage

    block = {"input_cost_per_token": 1e-07, "output_cost_per_token": 4e-07,
             "input_cost_per_audio_token": 1e-08,
             "windows": [{"hours_utc": "10:00-00:00", "weekdays": [1, 2, 3, 4, 5]}]}  # fmt: skip
    row = {"mode": "chat", "litellm_provider": "deepseek", "input_cost_per_token": 2e-07,
           "output_cost_per_token": 8e-07, "input_cost_per_audio_token": 1e-06,
           "input_cost_per_token_above_200k_tokens": 4e-07,
           "output_cost_per_token_above_200k_tokens": 1.6e-06}  # fmt: skip
    row["off_peak_pricing"] = block
    price = parse_source("m", _one(row, tmp_path)).versions[0]
    during = (OFF_PEAK, OFF_PEAK)
    assert variant(price, None, during=during) == "off_peak"
    for prompt, audio in ((1000, 0), (1000, 500), (250_000, 0), (250_000, 1000)):
        units = ZEROS | {"input_token": prompt - audio, "input_audio_token": audio,
                         "output_token": 1000, "cached_input_token": 0}  # fmt: skip
        ours = _dollars(price, billable(units, price, "off_peak"))
        usage = Usage(prompt_tokens=prompt, completion_tokens=1000, total_tokens=prompt + 1000,
                      prompt_tokens_details={"audio_tokens": audio})  # fmt: skip
        with pinned_billing_time(OFF_PEAK):
            theirs = _theirs(litellm, "m", row, usage_object=usage)
        assert _same(ours, theirs), (prompt, audio, ours, theirs)
    loose = {**row, "off_peak_pricing": {**block, "windows": [{"hours_utc": "10:00-00:00",
                                                               "weekdays": ["mon"]}]}}  # fmt: skip
    assert "variants" not in _one(loose, tmp_path)  # booked at the peak rates


def test_a_time_to_bill_at_is_checked() -> None:
    hours = {"off_peak": {"windows": [{"hours_utc": "10:00-00:00"}]}}
    spec = {"price": {"input_token": "2", "off_peak_input_token": "1"},
            "variants": ["off_peak"], "variant_hours": hours}  # fmt: skip
    price = parse_source("m", spec).versions[0]
    naive = datetime(2026, 12, 7, 12)  # a host's local time would shift every window
    with pytest.raises(ValidationError, match="start"):
        price.timed_variant(naive, naive)
    with pytest.raises(ValidationError, match="end"):
        price.timed_variant(OFF_PEAK, datetime.max.replace(tzinfo=UTC))
    long = OFF_PEAK - timedelta(days=2)
    assert price.timed_variant(long, OFF_PEAK) is None  # longer than a day: standard


@pytest.mark.parametrize(
    ("hours", "field"),
    [
        ({"off_peak": {"windows": [{"hours_utc": "25:00-01:00"}]}}, "hours_utc"),
        ({"off_peak": {"windows": [{"hours_utc": "10:00-11:00", "weekdays": [0]}]}}, "weekdays"),
        ({"off_peak": {"windows": []}}, "windows"),
        ({"off_peak": {"windows": [{"hours": "10:00-11:00"}]}}, "windows"),
        (
            {"off_peak": {"windows": [{"hours_utc": "10:00-11:00"}], "weekday_timezone": "Mars/X"}},
            "weekday_timezone",
        ),
        ({"night": {"windows": [{"hours_utc": "10:00-11:00"}]}}, "variant_hours"),
        (
            {"off_peak": {"windows": [{"hours_utc": "10:00-11:00"}], "weekday_timezone": "Europe"}},
            "weekday_timezone",
        ),
        (
            {"off_peak": {"windows": [{"hours_utc": "10:00-11:00", "weekdays": [1] * 8}]}},
            "weekdays",
        ),
        (
            {
                "off_peak": {
                    "windows": [
                        {"hours_utc": [f"{h:02d}:00-{h:02d}:30" for h in range(24)]},
                        {"hours_utc": [f"{h:02d}:30-{h:02d}:45" for h in range(24)]},
                    ]
                }
            },
            "windows",
        ),
        ("off_peak", "variant_hours"),
    ],
)
def test_bad_variant_hours_are_a_clear_error(hours: object, field: str) -> None:
    spec = {"price": {"input_token": "2", "off_peak_input_token": "1"}, "variants": ["off_peak"]}
    with pytest.raises(ValidationError, match=field):
        parse_source("m", {**spec, "variant_hours": hours})


def test_a_missing_count_is_an_error_never_zero() -> None:
    for body in ({"usage": None}, {}, {"usage": {"prompt_tokens": 5}}):
        with pytest.raises(ValidationError, match=r"prompt_tokens|completion_tokens"):
            usage_from_openai(body)
    with pytest.raises(ValidationError, match="output_tokens"):
        usage_from_openai({"usage": {"input_tokens": 5}})
    with pytest.raises(ValidationError, match="input_tokens"):
        usage_from_anthropic({"usage": {"prompt_tokens": 5, "completion_tokens": 1}})


ZEROS = dict.fromkeys([*MODALITIES, "cache_write_token"], 0)


def test_usage_in_every_openai_shape() -> None:
    responses_api = {
        "input_tokens": 1000,
        "output_tokens": 700,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens_details": {"reasoning_tokens": 600},
    }
    assert usage_from_openai({"usage": responses_api}) == ZEROS | {
        "input_token": 900,
        "cached_input_token": 100,
        "output_token": 100,
        "reasoning_token": 600,
    }
    embeddings = {"prompt_tokens": 8, "total_tokens": 8}
    assert usage_from_openai({"usage": embeddings}) == ZEROS | {
        "input_token": 8,
        "output_token": 0,
        "cached_input_token": 0,
    }
    audio = {
        "prompt_tokens": 500,
        "completion_tokens": 300,
        "prompt_tokens_details": {
            "cached_tokens": 120,
            "audio_tokens": 200,
            "cached_tokens_details": {"audio_tokens": 20},
        },
        "completion_tokens_details": {"audio_tokens": 250, "reasoning_tokens": 0},
    }
    assert usage_from_openai(audio) == ZEROS | {
        "input_token": 200,  # 500 - 120 cached - 180 audio not cached
        "cached_input_token": 100,
        "cached_input_audio_token": 20,
        "input_audio_token": 180,
        "output_token": 50,
        "output_audio_token": 250,
    }
    too_many = {"prompt_tokens": 10, "completion_tokens": 5}
    too_many |= {"completion_tokens_details": {"reasoning_tokens": 6}}
    with pytest.raises(ValidationError, match=r"completion_tokens_details.*at most"):
        usage_from_openai(too_many)


def test_anthropic_cache_writes_kept_an_hour_are_apart() -> None:
    message = {
        "input_tokens": 50,
        "output_tokens": 10,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    }
    assert usage_from_anthropic(message) == ZEROS | {
        "input_token": 50,
        "output_token": 10,
        "cached_input_token": 1000,
        "cache_write_token": 100,
        "cache_write_1h_token": 200,
    }


def test_billable_counts_kinds_a_model_does_not_price_as_what_they_are_billed_as() -> None:
    plain = parse_source("m", {"price": {"input_token": "1", "output_token": "2",
                                         "cached_input_token": "0.5"}}).versions[0]  # fmt: skip
    audio = plain.usage  # the bound method refuses units the price does not have
    units = ZEROS | {"input_token": 10, "output_token": 4, "cached_input_token": 1}
    units |= {"input_audio_token": 5, "reasoning_token": 3, "cached_input_audio_token": 2}
    with pytest.raises(ValidationError, match="input_audio_token"):
        audio(units)
    assert {k: v for k, v in billable(units, plain).items() if v} == {
        "input_token": 15,
        "output_token": 7,
        "cached_input_token": 3,
    }
    # A model with no cache prices bills cached tokens and cache writes as prompt tokens.
    bare = parse_source("b", {"price": {"input_token": "1", "output_token": "2"}}).versions[0]
    anthropic_units = usage_from_anthropic(
        {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4,
         "cache_creation_input_tokens": 2}
    )  # fmt: skip
    assert {k: v for k, v in billable(anthropic_units, bare).items() if v} == {
        "input_token": 16,
        "output_token": 1,
    }
    priced = parse_source("a", {"price": {"input_token": "1", "output_token": "2",
                                          "input_audio_token": "8"}}).versions[0]  # fmt: skip
    assert billable(units, priced)["input_audio_token"] == 5
    assert billable(units, priced)["output_token"] == 7


def test_the_tier_a_call_is_billed_in() -> None:
    """The tier a response says served the call wins when it is a priced tier or the
    standard one; else the tier the request named; `auto` and no tier are standard."""
    assert service_tier("auto", "priority") == "priority"
    assert service_tier("priority", "default") is None  # asked for, not granted
    assert service_tier("flex", None) == "flex"
    assert service_tier("fast") == "priority"  # litellm's other name for it
    assert service_tier("auto", None) is service_tier(None, "scale") is None
    assert service_tier("flex", "batch") == "flex"  # not a tier priced per call: as asked
    assert served_tier({"service_tier": "flex", "usage": {}}) == "flex"  # OpenAI's place
    assert served_tier({"usage": {"service_tier": "priority"}}) == "priority"  # Anthropic's
    assert served_tier({"usage": {"input_tokens": 1}}) is None


def test_billable_puts_tokens_in_the_tier_that_served_them(tmp_path: Path) -> None:
    row = {
        "mode": "chat",
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 4e-06,
        "output_cost_per_reasoning_token": 5e-06,
        "input_cost_per_token_priority": 2e-06,
        "output_cost_per_token_priority": 8e-06,
        "cache_read_input_token_cost_flex": 1e-07,
    }
    spec = _one(row, tmp_path)
    # A tier with no rate of its own for a kind takes the standard one; a tier with an
    # output rate of its own bills reasoning at it.
    assert spec["price"] == {
        "input_token": "0.000001",
        "output_token": "0.000004",
        "cached_input_token": "0.000001",
        "cache_write_token": "0.000001",
        "reasoning_token": "0.000005",
        "flex_input_token": "0.000001",
        "flex_output_token": "0.000004",
        "flex_cached_input_token": "0.0000001",
        "flex_cache_write_token": "0.000001",
        "flex_reasoning_token": "0.000005",
        "priority_input_token": "0.000002",
        "priority_output_token": "0.000008",
        "priority_cached_input_token": "0.000002",
        "priority_cache_write_token": "0.000002",
        "priority_reasoning_token": "0.000008",  # as its output: the tier prices output
    }
    price = parse_source("m", spec).versions[0]
    units = ZEROS | {"input_token": 10, "output_token": 4, "reasoning_token": 3}
    served = billable(units | {"cached_input_token": 0}, price, "priority")
    assert {k: v for k, v in served.items() if v} == {
        "priority_input_token": 10,
        "priority_output_token": 4,
        "priority_reasoning_token": 3,  # at the tier's output rate
    }
    assert not {"input_token", "flex_reasoning_token"} & served.keys()  # the other tiers'
    # A price that does not name its variants needs every unit: the others' are 0.
    unnamed = parse_source("u", {k: v for k, v in spec.items() if k != "variants"}).versions[0]
    assert billable(units, unnamed, "priority")["flex_reasoning_token"] == 0
    assert from_nanos(price.cost(served)) == Decimal("0.000076")  # 10 x $2/M + 7 x $8/M
    # A model that does not price a tier apart bills it at its standard rates.
    plain = parse_source("p", {"price": {"input_token": "1", "output_token": "2"}}).versions[0]
    assert {k: v for k, v in billable(units, plain, "flex").items() if v} == {
        "input_token": 10,
        "output_token": 7,
    }


def test_every_kind_of_token_costs_what_litellm_costs() -> None:
    """Reasoning, audio, image and cached tokens, and cache writes kept an hour, each alone
    and all together, for every imported chat model, on each side of every tier: the
    units `billable()` gives cost what litellm costs the same usage at."""
    litellm = _litellm()
    from litellm._internal_context import pinned_billing_time
    from litellm.types.utils import Usage

    table = _table()
    kinds: list[dict[str, int]] = [{}, *({k: 1} for k in ["a", "i", "r", "ao", "io", "h"])]
    kinds.append(dict.fromkeys(["c", "w", "a", "i", "r", "ao", "io", "h"], 1))
    compared, differ = 0, []
    with pinned_billing_time(PEAK):
        for name, spec in litellm_prices().items():
            row = table[name]
            if row["mode"] in ("embedding", *IMAGE_MODES) or "input_token" not in spec["price"]:
                continue
            price = parse_source(name, spec).versions[0]
            for prompt, *_ in _grid(spec, embedding=True):  # each prompt size once
                for kind in kinds:
                    q = prompt // 16
                    c, w, h, a, i = (q * kind.get(k, 0) for k in ["c", "w", "h", "a", "i"])
                    w = max(w, h)
                    r, ao, io = (100 * kind.get(k, 0) for k in ("r", "ao", "io"))
                    details: dict[str, Any] = {"cached_tokens": c, "cache_write_tokens": w}
                    details |= {"audio_tokens": a, "image_tokens": i}
                    if w:
                        details["cache_creation_token_details"] = {
                            "ephemeral_1h_input_tokens": h,
                            "ephemeral_5m_input_tokens": w - h,
                        }
                    usage = Usage(
                        prompt_tokens=prompt,
                        completion_tokens=1000,
                        total_tokens=prompt + 1000,
                        prompt_tokens_details=details,
                        completion_tokens_details={
                            "reasoning_tokens": r, "audio_tokens": ao, "image_tokens": io
                        },
                    )  # fmt: skip
                    units = {
                        "input_token": prompt - c - w - a - i,
                        "cached_input_token": c,
                        "cache_write_token": w - h,
                        "cache_write_1h_token": h,
                        "input_audio_token": a,
                        "input_image_token": i,
                        "output_token": 1000 - r - ao - io,
                        "reasoning_token": r,
                        "output_audio_token": ao,
                        "output_image_token": io,
                    }
                    for tier in _tiers(price):
                        if c and tier == "batch" and _free_cache_in_batch(row):
                            continue  # the one exception (see the test of it)
                        theirs = _cost_in(litellm, name, row, usage.model_copy(deep=True), tier)
                        billed = billable(units, price, tier)
                        ours = _dollars(price, billed)
                        compared += 1
                        if not _same(ours, theirs):
                            differ.append((name, tier, prompt, kind, ours, theirs))
    assert compared >= 40_000
    assert not differ, differ[:20]


def test_the_cli_lists_long_prompt_rates(tmp_path: Path) -> None:
    config = tmp_path / "spendgate.toml"
    config.write_text(to_toml({"long": _one(LONG, tmp_path)}))
    args = ["--db", "memory://", "--config", str(config)]
    listed = CliRunner().invoke(app, ["prices", "list", "--json", *args])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert row["price"] == (
        "0.0000001/input_token; 0.0000005/output_token; "
        "0.0000001/cached_input_token; 0.0000001/cache_write_token; "
        "above 100,000 input_token+cached_input_token+cache_write_token: "
        "0.0000005/input_token, 0.0000025/output_token, 0.0000005/cached_input_token, "
        "0.0000005/cache_write_token"
    )


def test_the_cli_lists_a_sources_variants(tmp_path: Path) -> None:
    row = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    row |= {"input_cost_per_token_batches": 5e-07, "output_cost_per_token_batches": 1e-06}
    config = tmp_path / "spendgate.toml"
    config.write_text(to_toml({"m": _one(row, tmp_path)}))
    assert 'variants = ["batch"]' in config.read_text()
    args = ["--db", "memory://", "--config", str(config)]
    listed = CliRunner().invoke(app, ["prices", "list", "--json", *args])
    assert listed.exit_code == 0, listed.output
    [listing] = json.loads(listed.output)
    assert "0.0000005/batch_input_token" in listing["price"]
    assert listing["price"].endswith("; variants: batch")
