"""LLM calls: prices from the table the `litellm` package ships (offline), token usage read
from OpenAI- and Anthropic-style responses, and drop-in clients that reserve before a call
is sent and commit what the response used.

```python
sources = litellm_prices(models=["gpt-4o"])       # {"gpt-4o": {"price": {...}}}
print(to_toml(sources))                           # [sources."gpt-4o"] price = {...}
units = usage_from_openai(response)               # {"input_token": ..., "output_token": ...}
client = wrap(OpenAI(), gate, service="chatbot")  # an OpenAI client that cannot overspend
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from spendgate.llm.prices import (
    FIELDS,
    LITELLM_FILE,
    MODES,
    USE_MODES,
    litellm_price_file,
    litellm_prices,
    to_toml,
)
from spendgate.llm.usage import (
    MODALITIES,
    OUTPUT_UNITS,
    PROMPT_UNITS,
    REGIONS,
    SERVICE_TIERS,
    TIERS,
    TIMED,
    VARIANTS,
    billable,
    billed_variant,
    served_tier,
    service_tier,
    tier_unit,
    usage_from_anthropic,
    usage_from_openai,
    variant,
)

if TYPE_CHECKING:
    from spendgate.gate import Gate

_Client = TypeVar("_Client")


def wrap(
    client: _Client,
    gate: Gate,
    *,
    service: str,
    source: str | Mapping[str, str] | Callable[[str], str] | None = None,
    labels: Mapping[str, str] | None = None,
    max_output_tokens: int = 4096,
    media_tokens: int = 10_000,
    prompt_margin: int = 4096,
    context_tokens: int | None = None,
    hold_ttl: timedelta | float | str = timedelta(hours=1),
    transport: Any = None,
) -> _Client:
    """`client` (an `openai` or `anthropic` client, sync or async) with every paid call
    priced before it is sent, held on the budgets, and settled with the usage it reports.
    See `spendgate.llm.clients` (loaded on use: it needs the SDKs' `httpx2`)."""
    from spendgate.llm import clients

    return clients.wrap(
        client,
        gate,
        service=service,
        source=source,
        labels=labels,
        max_output_tokens=max_output_tokens,
        media_tokens=media_tokens,
        prompt_margin=prompt_margin,
        context_tokens=context_tokens,
        hold_ttl=hold_ttl,
        transport=transport,
    )


__all__ = [
    "FIELDS",
    "LITELLM_FILE",
    "MODALITIES",
    "MODES",
    "OUTPUT_UNITS",
    "PROMPT_UNITS",
    "REGIONS",
    "SERVICE_TIERS",
    "TIERS",
    "TIMED",
    "USE_MODES",
    "VARIANTS",
    "billable",
    "billed_variant",
    "litellm_price_file",
    "litellm_prices",
    "served_tier",
    "service_tier",
    "tier_unit",
    "to_toml",
    "usage_from_anthropic",
    "usage_from_openai",
    "variant",
    "wrap",
]
