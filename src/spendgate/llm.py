"""LLM calls: prices from the table the `litellm` package ships, and token usage read from
OpenAI- and Anthropic-style responses.

Everything is offline: `litellm_prices()` reads the JSON file inside the installed package
(or a file given), never the network, and does not import litellm itself.

```python
sources = litellm_prices(models=["gpt-4o"])       # {"gpt-4o": {"price": {...}}}
print(to_toml(sources))                           # [sources."gpt-4o"] price = {...}
units = usage_from_openai(response)               # {"input_token": ..., "output_token": ...}
gate.record("ml_inference", "gpt-4o", units=units)
```
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from spendgate.errors import ConfigError, ValidationError

LITELLM_FILE = "model_prices_and_context_window_backup.json"
# litellm's per-token fields, and the dimension each becomes in spendgate.
FIELDS = {
    "input_cost_per_token": "input_token",
    "output_cost_per_token": "output_token",
    "cache_read_input_token_cost": "cached_input_token",
    "cache_creation_input_token_cost": "cache_write_token",
}
MODES = ("chat", "completion", "responses")


def litellm_price_file() -> Path:
    """The model price table inside the installed `litellm` package."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "litellm is not installed: pip install litellm, or give the table with --file PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / LITELLM_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: the installed litellm ships no price table there")
    return path


def litellm_prices(
    path: str | Path | None = None, *, models: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Source tables (`{"price": {unit: rate}}`) for every priced chat model in the table.

    `models` keeps only names matching any of the given patterns (`fnmatch`, e.g. `gpt-4o*`).
    Rates are exact decimal strings of litellm's per-token costs.
    """
    file = Path(path) if path is not None else litellm_price_file()
    try:
        table = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not JSON ({exc})") from None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{file}: expected an object of model name -> prices")
    patterns = list(models) if models is not None else None
    out: dict[str, dict[str, Any]] = {}
    for name, spec in table.items():
        if name == "sample_spec" or not isinstance(spec, Mapping):
            continue
        if spec.get("mode") not in MODES:
            continue
        if patterns is not None and not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        price = {}
        for field, unit in FIELDS.items():
            rate = _rate(spec.get(field), f"{file.name}: {name}.{field}")
            if rate is not None:
                price[unit] = f"{rate:f}"
        if price.get("input_token") and price.get("output_token"):
            # A model with no cache prices bills cached tokens as ordinary input: priced so,
            # they are never counted as free.
            price.setdefault("cached_input_token", price["input_token"])
            price.setdefault("cache_write_token", price["input_token"])
            out[name] = {"price": price}
    return out


def _rate(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        rate = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not rate.is_finite() or rate < 0:
        raise ConfigError(f"{where}: expected a price of zero or more, got {value!r}")
    return rate.normalize() if rate else None


def to_toml(sources: Mapping[str, Mapping[str, Any]]) -> str:
    """`[sources."NAME"]` tables for `spendgate.toml`."""
    lines = []
    for name, spec in sorted(sources.items()):
        rates = ", ".join(f"{unit} = {json.dumps(rate)}" for unit, rate in spec["price"].items())
        lines += [f"[sources.{json.dumps(name)}]", f"price = {{ {rates} }}", ""]
    return "\n".join(lines)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _required(value: Any, field: str) -> int:
    """A count the response must give: a missing one would silently cost $0."""
    if value is None:
        raise ValidationError(field, None, "the token count (the response has no usage for it)")
    return _count(value, field)


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, value, "a whole number of tokens, zero or more")
    return value


def usage_from_openai(response: Any) -> dict[str, int]:
    """Token units from an OpenAI-style response (a dict or an SDK object) or its `usage`.

    Cached prompt tokens (`prompt_tokens_details.cached_tokens`) are priced apart from the
    rest of the prompt, as OpenAI bills them.
    """
    usage = _get(response, "usage") or response
    prompt = _required(_get(usage, "prompt_tokens"), "usage.prompt_tokens")
    completion = _required(_get(usage, "completion_tokens"), "usage.completion_tokens")
    details = _get(usage, "prompt_tokens_details")
    cached = _count(
        _get(details, "cached_tokens") if details else None,
        "usage.prompt_tokens_details.cached_tokens",
    )
    if cached > prompt:
        raise ValidationError(
            "usage.prompt_tokens_details.cached_tokens", cached, f"at most prompt_tokens ({prompt})"
        )
    # Every dimension is given, zeros included: a price that has a dimension needs its count.
    return {
        "input_token": prompt - cached,
        "output_token": completion,
        "cached_input_token": cached,
        "cache_write_token": 0,
    }


def usage_from_anthropic(response: Any) -> dict[str, int]:
    """Token units from an Anthropic-style response (a dict or an SDK object) or its `usage`.

    Cache reads and cache writes are their own dimensions, as Anthropic bills them.
    """
    usage = _get(response, "usage") or response
    units = {
        "input_token": _required(_get(usage, "input_tokens"), "usage.input_tokens"),
        "output_token": _required(_get(usage, "output_tokens"), "usage.output_tokens"),
    }
    read = _count(_get(usage, "cache_read_input_tokens"), "usage.cache_read_input_tokens")
    write = _count(_get(usage, "cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
    units["cached_input_token"] = read
    units["cache_write_token"] = write
    return units
