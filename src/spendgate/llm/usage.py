"""Token usage read from OpenAI- and Anthropic-style responses, every kind of token apart,
and `billable()`, which counts the kinds a model does not price apart as what it bills them as.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from spendgate.errors import ValidationError
from spendgate.pricing import Price

MODALITIES = {
    "reasoning_token": ("output_cost_per_reasoning_token", "output_token"),
    "input_audio_token": ("input_cost_per_audio_token", "input_token"),
    "cached_input_audio_token": ("cache_read_input_audio_token_cost", "cached_input_token"),
    "input_image_token": ("input_cost_per_image_token", "input_token"),
    "input_video_token": ("input_cost_per_video_token", "input_token"),
    "output_audio_token": ("output_cost_per_audio_token", "output_token"),
    "output_image_token": ("output_cost_per_image_token", "output_token"),
    "output_video_token": ("output_cost_per_video_token", "output_token"),
    "cache_write_1h_token": ("cache_creation_input_token_cost_above_1hr", "cache_write_token"),
    "cache_write_12h_token": ("cache_creation_input_token_cost_above_12hr", "cache_write_token"),
}
"""Tokens some models price apart (litellm's field), and the unit they are billed as by a
model that does not: reasoning tokens as output, audio prompt tokens as input, cache writes
kept an hour as cache writes. A model's source names such a unit only when its row prices
it; `billable()` moves the tokens of a unit a price does not name to the unit it is billed
as."""
BILLED_AS = {
    **{unit: billed_as for unit, (_, billed_as) in MODALITIES.items()},
    "cached_input_token": "input_token",
    "cache_write_token": "input_token",
}
"""The kind each kind of token is billed as by a model that does not price it apart (a
model with no cache prices bills cached tokens and cache writes as prompt tokens)."""
PROMPT_UNITS = (
    "input_token",
    "cached_input_token",
    "cache_write_token",
    "input_audio_token",
    "cached_input_audio_token",
    "input_image_token",
    "input_video_token",
    "cache_write_1h_token",
    "cache_write_12h_token",
)
"""The units whose sum is a call's prompt size, which picks a long-prompt rate: providers
count cached tokens, cache writes and every kind of prompt token in the prompt."""
OUTPUT_UNITS = (
    "output_token",
    "reasoning_token",
    "output_audio_token",
    "output_image_token",
    "output_video_token",
)
"""The units a call's output is counted in."""
SERVICE_TIERS = ("flex", "priority", "balanced", "ultrafast")
"""The service tiers a model may price apart (litellm's `_flex`, `_priority`... rates)."""
TIERS = (*SERVICE_TIERS, "fast_mode", "batch")
"""The ways of serving a call a model may price apart: a service tier, Anthropic's fast
mode (`speed: "fast"`), or a batch (the Batch API: litellm's `_batches` rates)."""
REGIONS = ("us", "eu", "fedramp", "regional")
"""The places a model may bill a call served in at a premium: Anthropic's `inference_geo:
"us"` and OpenAI's `us.api.openai.com` (`us`), OpenAI's `eu.api.openai.com` (`eu`) and
`gov.api.openai.com` (`fedramp`), and a regional (not global) Vertex AI endpoint
(`regional`)."""
TIMED = ("off_peak",)
"""The variants a call is billed in by the hour it is made (DeepSeek's off-peak rates: a
price's `variant_hours`)."""
VARIANTS = (
    *TIERS,
    *REGIONS,
    *(f"{tier}_{region}" for tier in TIERS for region in REGIONS),
    *TIMED,
)
"""The ways a call may be billed apart from the standard one: a tier, a region, or a tier
in a region (`priority_eu`, `fast_mode_us`). A variant's tokens are units of their own,
named with the variant first (`priority_input_token`), so one source, and every budget on
it, counts a model's calls in every variant."""
TIER_NAMES = {**{tier: tier for tier in SERVICE_TIERS}, "fast": "priority"}
"""The service tiers a request may name that a model may price apart, and the tier each
is (litellm's `fast` is `priority`)."""
_STANDARD_NAMES = frozenset({"default", "standard"})


def tier_unit(unit: str, tier: str | None) -> str:
    """The unit `unit` is in service tier `tier` (`None`: the standard tier)."""
    return unit if tier is None else f"{tier}_{unit}"


def service_tier(requested: object, served: object = None) -> str | None:
    """The service tier a call is billed in, as its price names it (`None`: standard): the
    tier the response says served it when that is a priced tier or the standard one
    (`default`, `standard`), else the tier the request asked for (`auto` is standard)."""
    if isinstance(served, str):
        tier = TIER_NAMES.get(served.lower())
        if tier is not None or served.lower() in _STANDARD_NAMES:
            return tier
    return TIER_NAMES.get(requested.lower()) if isinstance(requested, str) else None


def variant(
    price: Price | None,
    tier: str | None,
    *,
    inference_geo: object = None,
    speed: object = None,
    region: str | None = None,
    during: tuple[datetime, datetime] | None = None,
) -> str | None:
    """The variant of `price` a call is billed in: its tier, the service tier `tier` (see
    `service_tier()`) where the price has it, else Anthropic's fast mode for the speed the
    response reports (`usage.speed`) where it has that; in its region, `us` for Anthropic's
    `inference_geo` or the `region` the call was sent to (see `REGIONS`), where the price
    has the tier there. A call in none of those, made `during` (its start and end) hours
    a variant of the price is billed in (`Price.timed_variant`: DeepSeek's off-peak hours),
    is in that variant. `None` is the standard rates (litellm bills the same way)."""
    if price is None:
        return None
    fast = isinstance(speed, str) and speed.lower() == "fast"
    served = None
    for candidate in (tier, "fast_mode" if fast else None):
        if candidate is not None and price.accepts(tier_unit("input_token", candidate)):
            served = candidate
            break
    if isinstance(inference_geo, str) and inference_geo.lower() == "us":
        region = "us"
    if region is not None:
        if not isinstance(region, str) or region.lower() not in REGIONS:
            raise ValidationError("region", region, f"one of {', '.join(REGIONS)}, or None")
        region = region.lower()
        there = region if served is None else f"{served}_{region}"
        if price.accepts(tier_unit("input_token", there)):
            return there
    if served is None and during is not None:
        return price.timed_variant(*during)
    return served


def billed_variant(
    price: Price | None,
    requested: object,
    response: Any,
    served: object = None,
    *,
    region: str | None = None,
    during: tuple[datetime, datetime] | None = None,
) -> str | None:
    """The variant of `price` a call that asked for service tier `requested`, sent to
    `region` and made `during` (its start and end), is billed in, by what its response (or
    the response's `usage`) reports: the tier that served it (`served`, else
    `served_tier(response)`), else Anthropic's region and speed (see `variant()`)."""
    usage = _get(response, "usage") or response
    tier = service_tier(requested, served if served is not None else served_tier(response))
    geo, speed = _get(usage, "inference_geo"), _get(usage, "speed")
    return variant(price, tier, inference_geo=geo, speed=speed, region=region, during=during)


def served_tier(response: Any) -> object:
    """The service tier an OpenAI- or Anthropic-style response says served it (OpenAI says
    it beside the usage, Anthropic inside it), or `None`."""
    served = _get(response, "service_tier")
    return served if served is not None else _get(_get(response, "usage"), "service_tier")


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:  # parsed JSON, the usual case: no abstract-class check
        return obj.get(key)
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _required(value: Any, field: str) -> int:
    """A count the response must give: a missing one would silently cost $0."""
    if value is None:
        raise ValidationError(field, None, "the token count (the response has no usage for it)")
    return _count(value, field)


def _count(value: Any, field: str) -> int:
    if type(value) is int and value >= 0:  # the usual count (never a bool: its type is bool)
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, value, "a whole number of tokens, zero or more")
    return value


def usage_from_openai(response: Any, *, image: bool = False) -> dict[str, int]:
    """Token units from an OpenAI-style response (a dict or an SDK object) or its `usage`:
    chat completions and completions (`prompt_tokens`, `completion_tokens`), the Responses
    API (`input_tokens`, `output_tokens`) and embeddings (`prompt_tokens` alone).

    Every kind of token OpenAI bills apart is its own unit: cached prompt tokens, audio
    prompt tokens (and cached ones), image prompt tokens; reasoning, audio and image output
    tokens. The counts OpenAI reports include them, so the plain units are what is left.
    Pass the result through `billable()` for a model that prices fewer kinds.

    `image=True` reads an image generation or edit's usage, whose output tokens are image
    tokens unless it says otherwise (`output_tokens_details`).
    """
    usage = _get(response, "usage") or response
    if _get(usage, "input_tokens") is not None and _get(usage, "prompt_tokens") is None:
        units = _openai_units(usage, "input_tokens", "output_tokens", "input_tokens_details",
                              "output_tokens_details")  # fmt: skip
        if image and _get(usage, "output_tokens_details") is None:
            units["output_image_token"] += units["output_token"]
            units["output_token"] = 0
        return units
    return _openai_units(
        usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details",
        "completion_tokens_details",
    )  # fmt: skip


def _openai_units(
    usage: Any, inp: str, out: str, inp_details: str, out_details: str
) -> dict[str, int]:
    prompt = _required(_get(usage, inp), f"usage.{inp}")
    embedding = _get(usage, out) is None and _get(usage, "total_tokens") == prompt
    completion = 0 if embedding else _required(_get(usage, out), f"usage.{out}")
    details, done = _get(usage, inp_details), _get(usage, out_details)
    where, done_where = f"usage.{inp_details}", f"usage.{out_details}"
    cached = _detail(details, "cached_tokens", where)
    cached_audio = min(
        _detail(_get(details, "cached_tokens_details"), "audio_tokens",
                f"{where}.cached_tokens_details"),
        cached,
    )  # fmt: skip
    writes = _detail(details, "cache_write_tokens", where)
    long_writes = _detail(
        _get(details, "cache_creation_token_details"), "ephemeral_12h_input_tokens",
        f"{where}.cache_creation_token_details",
    )  # fmt: skip
    prompt_kinds = {
        "cached_input_token": cached - cached_audio,
        "cached_input_audio_token": cached_audio,
        "cache_write_token": _rest(
            writes, {"cache_write_12h_token": long_writes}, where, "cache_write_tokens"
        ),
        "cache_write_12h_token": long_writes,
        "input_audio_token": max(_detail(details, "audio_tokens", where) - cached_audio, 0),
        "input_image_token": _detail(details, "image_tokens", where),
        "input_video_token": _detail(details, "video_tokens", where),
    }
    output_kinds = {
        "reasoning_token": _detail(done, "reasoning_tokens", done_where),
        "output_audio_token": _detail(done, "audio_tokens", done_where),
        "output_image_token": _detail(done, "image_tokens", done_where),
        "output_video_token": _detail(done, "video_tokens", done_where),
    }
    return (
        dict.fromkeys(MODALITIES, 0)
        | {
            "input_token": _rest(prompt, prompt_kinds, where, inp),
            "output_token": _rest(completion, output_kinds, done_where, out),
        }
        | prompt_kinds
        | output_kinds
    )


def _detail(details: Any, key: str, where: str) -> int:
    value = _get(details, key) if details else None
    if value is None:
        return 0
    if type(value) is int and value >= 0:  # the usual count: its name is only for an error
        return value
    return _count(value, f"{where}.{key}")


def _rest(total: int, parts: Mapping[str, int], where: str, of: str) -> int:
    """What is left of a count once the kinds it includes (named in an error) are taken out."""
    taken = sum(parts.values())
    if taken > total:
        given = {kind: count for kind, count in parts.items() if count}
        raise ValidationError(where, given, f"kinds of tokens adding up to at most {of} ({total})")
    return total - taken


def usage_from_anthropic(response: Any) -> dict[str, int]:
    """Token units from an Anthropic-style response (a dict or an SDK object) or its `usage`.

    Cache reads and cache writes are their own units, as Anthropic bills them, and writes
    kept an hour (`cache_creation.ephemeral_1h_input_tokens`) are apart from the rest.
    Pass the result through `billable()` for a model that prices fewer kinds.
    """
    usage = _get(response, "usage") or response
    read = _count(_get(usage, "cache_read_input_tokens"), "usage.cache_read_input_tokens")
    write = _count(_get(usage, "cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
    hour = _detail(_get(usage, "cache_creation"), "ephemeral_1h_input_tokens",
                   "usage.cache_creation")  # fmt: skip
    return dict.fromkeys(MODALITIES, 0) | {
        "input_token": _required(_get(usage, "input_tokens"), "usage.input_tokens"),
        "output_token": _required(_get(usage, "output_tokens"), "usage.output_tokens"),
        "cached_input_token": read,
        "cache_write_token": _rest(write, {"cache_write_1h_token": hour}, "usage.cache_creation",
                                   "cache_creation_input_tokens"),
        "cache_write_1h_token": hour,
    }  # fmt: skip


def billable(
    units: Mapping[str, int], price: Price | None, tier: str | None = None
) -> dict[str, int]:
    """`units` as `price` bills them: the tokens of a kind it does not price apart (see
    `BILLED_AS`) counted as the kind they are billed as, so an audio prompt token of a model
    with no audio rate is a prompt token, never free and never refused. A kind that is
    neither priced nor used is left out.

    `tier` is the variant the call was billed in (see `variant()`; a service tier by any of
    its names): its units are the variant's (`flex_input_token`), or the standard ones for a
    model that does not price it apart, which bills it at its standard rates; the other
    variants' units are 0."""
    if tier is not None and type(tier) is str:
        tier = TIER_NAMES.get(tier.lower(), tier)
    plan = _plan(price, tier)
    targets = plan.targets
    out: dict[str, int] = {}
    for unit, count in units.items():
        target = targets.get(unit)
        if target is None:
            target = plan.target(unit)
        name, moved = target
        if not moved or count:
            out[name] = out.get(name, 0) + count
    for name in plan.zeros:  # none of the other variants' tokens were used
        if name not in out:
            out[name] = 0
    return out


class _Plan:
    """What `billable()` does with each kind of token for one price and variant, worked
    out once: the unit each kind is counted as (and whether that is another kind), and the
    units of the other variants the price names, which are 0 (for a price that does not
    name its `variants`: one that does needs none of theirs)."""

    __slots__ = ("price", "targets", "tier", "zeros")

    def __init__(self, price: Price | None, tier: str | None) -> None:
        if tier is not None and (
            price is None or not price.accepts(tier_unit("input_token", tier))
        ):
            tier = None
        self.price, self.tier = price, tier
        self.targets: dict[str, tuple[str, bool]] = {}
        for unit in (*PROMPT_UNITS, *OUTPUT_UNITS, *BILLED_AS):
            self.target(unit)
        zeros: list[str] = []
        if price is not None and not price.variants:  # a price that names its variants
            for other in (None, *VARIANTS):
                if other != tier and price.accepts(tier_unit("input_token", other)):
                    zeros += (
                        name
                        for unit in (*PROMPT_UNITS, *OUTPUT_UNITS)
                        if price.accepts(name := tier_unit(unit, other)) and name not in zeros
                    )
        self.zeros = tuple(zeros)

    def target(self, unit: str) -> tuple[str, bool]:
        """The unit the tokens of kind `unit` are counted as, and whether that is another
        kind (its tokens then count only when there are some)."""
        price, tier = self.price, self.tier
        target = unit
        while target in BILLED_AS and (price is None or not price.accepts(tier_unit(target, tier))):
            target = BILLED_AS[target]
        found = (tier_unit(target, tier), target is not unit)
        if len(self.targets) < _PLAN_UNITS:  # names a caller gave: bounded
            self.targets[unit] = found
        return found


_PLANS: dict[tuple[int, str | None], _Plan] = {}
_PLANS_MAX = 256
_PLAN_UNITS = 64


def _plan(price: Price | None, tier: str | None) -> _Plan:
    """The `_Plan` of `price` and `tier`, remembered (by the price's identity) for the next
    call of the same model."""
    if tier is not None and type(tier) is not str:
        return _Plan(price, tier)  # not a tier's name: refused in the usual way, not kept
    key = (id(price), tier)
    plan = _PLANS.get(key)
    if plan is None or plan.price is not price:
        plan = _Plan(price, tier)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan
