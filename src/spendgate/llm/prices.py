"""LLM prices from the table the `litellm` package ships, offline.

`litellm_prices()` reads the JSON file inside the installed package (or a file given), never
the network, and does not import litellm itself.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendgate.errors import ConfigError, ValidationError
from spendgate.llm.usage import BILLED_AS, MODALITIES, PROMPT_UNITS, SERVICE_TIERS, tier_unit
from spendgate.pricing import parse_variant_hours

LITELLM_FILE = "model_prices_and_context_window_backup.json"
# litellm's per-token fields, and the dimension each becomes in spendgate.
FIELDS = {
    "input_cost_per_token": "input_token",
    "output_cost_per_token": "output_token",
    "cache_read_input_token_cost": "cached_input_token",
    "cache_creation_input_token_cost": "cache_write_token",
}
MODES = (
    "chat",
    "completion",
    "responses",
    "embedding",
    "realtime",
    "moderation",
    "evaluation",
    "extraction",
    "decisions",
)
"""The modes priced by the token (evaluation, extraction and decision models are models
called like chat ones, priced by the token)."""
USE_MODES = (
    "audio_transcription",
    "audio_speech",
    "image_generation",
    "image_edit",
    "video_generation",
    "ocr",
    "rerank",
    "search",
)
"""The modes priced per unit of what a call does (a second of audio, a character, an image,
a page, a query), or by the token where the row prices tokens."""
# A video model's per-second rate at a resolution: `output_cost_per_second_720p`; an image
# model's per-image rate at one: `output_cost_per_image_4K`, `output_cost_per_image_0.5K`.
_RESOLUTION = re.compile(r"^output_cost_per_second_([0-9a-z]+)$")
_IMAGE_RESOLUTION = re.compile(r"^output_cost_per_image_([0-9]+(?:\.[0-9]+)?[kK]?)$")
_MEGAPIXEL = 1_048_576  # fal.ai bills an image's megapixels, rounded up, of 2**20 pixels
_FIELD_UNITS = {**FIELDS, **{field: unit for unit, (field, _) in MODALITIES.items()}}
# `input_cost_per_token_above_200k_tokens`: the rate for a whole call whose prompt is longer.
# Of the modalities, only audio prompt tokens and timed cache writes have such rates.
_ABOVE_PREFIXES = (
    *FIELDS,
    "input_cost_per_audio_token",
    "cache_creation_input_token_cost_above_1hr",
    "cache_creation_input_token_cost_above_12hr",
)
_ABOVE = re.compile(rf"^({'|'.join(_ABOVE_PREFIXES)})_above_([0-9]+)(k?)_tokens$")
# Providers whose long-prompt rates start at the size itself rather than above it.
_FROM_SIZE = frozenset({"xai"})
# Providers that bill cached prompt tokens at a share of the input rate when the table gives
# no cache price (Fireworks: half, as its prompt-caching documentation states).
_CACHE_READ_SHARE = {"fireworks_ai": Decimal("0.5")}


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
    """Source tables for every model in the table litellm can cost, by the token (`MODES`)
    or per use (`USE_MODES`): `{"price": {unit: rate}}`, with `size_units` and `size_tiers`
    for the rates of long prompts and `variants` for the ways a call may be billed apart.
    An alias (`alias_of`) is priced as the row it names.

    `models` keeps only names matching any of the given patterns (`fnmatch`, e.g. `gpt-4o*`).
    Rates are exact decimal strings of litellm's per-token costs; a rate of 0 is free, and a
    model with no token price at all is left out (a call to it is refused, never free).
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
        if patterns is not None and not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        target = spec.get("alias_of")
        row = table.get(target) if isinstance(target, str) else spec  # an alias: its row's
        if not isinstance(row, Mapping) or "alias_of" in row:
            continue  # an alias of nothing (litellm skips it too): left out, so refused
        source = _imported(row, f"{file.name}: {name}")
        if source is not None:
            out[name] = source
    return out


def _imported(spec: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """A row's source table, or `None` for a row spendgate does not price (see
    `litellm_prices`). A row with no mode is priced by the token where it prices tokens
    (Fireworks' rates by model size), by the character where it prices characters
    (Deepgram's speech), as litellm costs it."""
    mode = spec.get("mode")
    if mode is None:
        if "input_cost_per_token" in spec:
            mode = "chat"
        elif "input_cost_per_character" in spec:
            spec, mode = {**spec, "mode": "audio_speech"}, "audio_speech"
    if mode in MODES:
        source = _source(spec, where)
    elif mode in USE_MODES:
        source = _per_use(spec, where)
    else:
        return None
    return None if source is None or _free_but_paid(spec, source) else source


def _free_but_paid(spec: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """Whether `source` prices every unit at 0 while the row gives a rate above 0 for
    something else (Lyria's $0 tokens and its price per song): such a call is paid, and
    booking it at $0 would be a lie, so the model is left out (a call to it is refused)."""
    if any(Decimal(rate) for rate in source["price"].values()):
        return False
    return any(
        "cost" in key and isinstance(value, int | float) and value > 0
        for key, value in spec.items()
    )


def _source(spec: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """A model's source table, or `None` when the table gives it no token price.

    Each variant of the model's billing (see `_variants`) adds its units, named with the
    variant first (`priority_input_token`, `us_output_token`...): every rate of the model,
    as litellm bills a call in that variant."""
    standard = _rates(spec, where)
    if standard is None:
        return None
    variants = _variants(spec, where, standard)
    standard = _complete(standard, variants, where)
    price, tiers = standard
    sizes = {above: dict(rates) for above, rates in tiers}
    for variant, (rates, its_tiers) in variants.items():
        price |= {tier_unit(unit, variant): rate for unit, rate in rates.items()}
        for above, tier in its_tiers:
            sizes.setdefault(above, {}).update(
                (tier_unit(unit, variant), rate) for unit, rate in tier.items()
            )
    source: dict[str, Any] = {"price": {unit: f"{rate:f}" for unit, rate in price.items()}}
    if variants:
        source["variants"] = list(variants)
    if "off_peak" in variants:
        source["variant_hours"] = _off_peak_hours(spec, where)
    if sizes:
        source["size_units"] = [
            name
            for variant in (None, *variants)
            for unit in PROMPT_UNITS
            if (name := tier_unit(unit, variant)) in price
        ]
        source["size_tiers"] = [
            {"above": above, "price": {unit: f"{rate:f}" for unit, rate in tier.items()}}
            for above, tier in sorted(sizes.items())
        ]
    return source


_Rates = tuple[dict[str, Decimal], list[tuple[int, dict[str, Decimal]]]]


def _complete(standard: _Rates, variants: dict[str, _Rates], where: str) -> _Rates:
    """Give the standard rates and every variant's the same kinds of token, as a source
    with `variants` must (`Price.variants`): a kind one of them lacks costs what it is
    billed as there (`BILLED_AS`), at every size, as `billable()` would count it. A kind
    a variant prices that the standard rates cannot bill as another is dropped where it is
    0 throughout (a batch's $0 output of an embedding model). Changes `variants` in place;
    returns the standard rates, completed."""
    kinds = set(standard[0])
    for variant, (price, tiers) in variants.items():
        for unit in sorted(price.keys() - kinds, key=_billed_depth):
            if _billed_in(unit, kinds) is not None:
                kinds.add(unit)
            elif not price[unit] and not any(tier.get(unit) for _, tier in tiers):
                del price[unit]
                for _, tier in tiers:
                    tier.pop(unit, None)
            else:
                raise ConfigError(
                    f"{where}: {variant} rates for {unit}, which the standard rates cannot bill"
                )
    for price, tiers in (standard, *variants.values()):
        for unit in sorted(kinds - price.keys(), key=_billed_depth):
            target = _billed_in(unit, price.keys())
            if target is None:
                raise ConfigError(f"{where}: a variant has no rate for {unit}")
            price[unit] = price[target]
            for _, tier in tiers:
                if target in tier:
                    tier[unit] = tier[target]
    return standard


def _billed_in(unit: str, kinds: Iterable[str]) -> str | None:
    """The kind `unit` is billed as among `kinds` (itself, or the next in `BILLED_AS`)."""
    have = set(kinds)
    while unit not in have:
        if unit not in BILLED_AS:
            return None
        unit = BILLED_AS[unit]
    return unit


def _variants(spec: Mapping[str, Any], where: str, standard: _Rates) -> dict[str, _Rates]:
    """The ways a call to the model may be billed apart from the standard one (see
    `VARIANTS`), each with its rates and long-prompt tiers:

    - a service tier the row gives rates for (`input_cost_per_token_priority`...): the
      tier's own rates where the row gives them, the standard ones where it does not (a
      row with `tiered_pricing` has none: litellm prices its ranges whatever the tier);
    - `batch`, a call made through the Batch API, where the row gives batch rates (see
      `_batch`);
    - a region the row bills at a premium (`_UPLIFTS`: OpenAI's regional processing and
      FedRAMP endpoints, Vertex AI's regional endpoints): the standard rates, each tier's
      and the batch ones times its multiplier, in `us`, `priority_eu`, `batch_fedramp`...;
    - Anthropic's multipliers (`provider_specific_entry`, on Anthropic's API and Claude on
      Bedrock): `us`, a call kept in the US (`inference_geo`), and `fast_mode`, a call
      asking for `speed: "fast"`, each every rate times its multiplier, and
      `fast_mode_us`, both.
    """
    tiers: dict[str, _Rates] = {}
    for tier in _service_tiers(spec):
        served = _rates(_in_tier(spec, tier), f"{where} ({tier})")
        if served is None:
            raise ConfigError(f"{where}: the {tier} tier has rates but none for a prompt")
        tiers[tier] = served
    batch = _batch(spec, where)
    if batch is not None:
        tiers["batch"] = batch
    out = dict(tiers)
    off_peak = _off_peak(spec, where)
    if off_peak is not None:
        out["off_peak"] = off_peak
    for region, key in _UPLIFTS.items():
        times = _multiplier(spec.get(key), f"{where}.{key}")
        if times is not None:
            out[region] = _scaled(standard, times)
            out |= {f"{tier}_{region}": _scaled(rates, times) for tier, rates in tiers.items()}
    entry = spec.get("provider_specific_entry")
    if entry is not None and not isinstance(entry, Mapping):
        raise ConfigError(f"{where}.provider_specific_entry: expected an object, got {entry!r}")
    if entry:
        geo = _multiplier(entry.get("us"), f"{where}.provider_specific_entry.us")
        fast = _multiplier(entry.get("fast"), f"{where}.provider_specific_entry.fast")
        for name, times in (("us", geo), ("fast_mode", fast)):
            if times is not None:
                out[name] = _scaled(standard, times)
        if geo is not None and fast is not None:
            out["fast_mode_us"] = _scaled(standard, geo * fast)
    return out


def _off_peak(spec: Mapping[str, Any], where: str) -> _Rates | None:
    """The rates of a call made in the row's off-peak hours (`off_peak_pricing`: DeepSeek's
    V4 models), as litellm bills it: the block's prompt, output, cache and reasoning rates
    (`_OFF_PEAK_KEYS`, the ones litellm reads) over the standard ones, at every prompt
    size; a rate it does not give at the standard rate. `None` for a row with no hours that
    read (see `_off_peak_hours`), and for a row with service tiers or `tiered_pricing`
    (litellm lays the block over those too; no row has both): its calls are booked at its
    tiers' rates or its standard ones, the peak ones."""
    block = spec.get("off_peak_pricing")
    if block is None or _service_tiers(spec) or spec.get("tiered_pricing") is not None:
        return None
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}.off_peak_pricing: expected an object, got {block!r}")
    if _off_peak_hours(spec, where) is None:
        return None
    own = {k: block[k] for k in _OFF_PEAK_KEYS if block.get(k) is not None}
    served = _rates({**spec, **own}, f"{where}.off_peak_pricing")
    if served is None:
        raise ConfigError(f"{where}.off_peak_pricing: rates but none for a prompt")
    price, tiers = served
    fixed = {_FIELD_UNITS[key] for key in own if key in _FIELD_UNITS}  # at every size
    return price, [(a, t) for a, tier in tiers if (t := {u: r for u, r in tier.items()
                                                        if u not in fixed})]  # fmt: skip


_OFF_PEAK_KEYS = (
    *FIELDS,
    "output_cost_per_reasoning_token",
)


def _off_peak_hours(spec: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """The hours of `off_peak_pricing` as a source's `variant_hours` (the block's every-day
    `hours_utc` and its `windows` by weekday, on the calendar of `weekday_timezone`), or
    `None` when they do not read as `variant_hours` (litellm also takes weekday names and
    loose spellings of hours): the row's calls are then booked at its standard rates."""
    block = spec.get("off_peak_pricing")
    if not isinstance(block, Mapping):
        return None
    windows: list[Any] = []
    if block.get("hours_utc") is not None:
        windows.append({"hours_utc": block["hours_utc"]})
    rules = block.get("windows") or []
    windows += rules if isinstance(rules, list) else [rules]
    hours: dict[str, Any] = {"windows": windows}
    if block.get("weekday_timezone") is not None:
        hours["weekday_timezone"] = block["weekday_timezone"]
    try:
        parse_variant_hours({"off_peak": hours}, where)
    except ValidationError:
        return None
    return {"off_peak": hours}


# The multiplier litellm bills a call served in a region at (see `REGIONS`).
_UPLIFTS = {
    "us": "regional_processing_uplift_multiplier_us",
    "eu": "regional_processing_uplift_multiplier_eu",
    "fedramp": "fedramp_uplift_multiplier",
    "regional": "regional_endpoint_uplift_multiplier",
}
_BATCHES = "_batches"
_HALF = Decimal("0.5")
# `input_cost_per_token_above_200k_tokens`, and `..._tokens_batches`: a long-prompt rate.
_ANY_ABOVE = re.compile(r"_above_([0-9]+)(k?)_tokens(?:_batches)?$")


def _batch(spec: Mapping[str, Any], where: str) -> _Rates | None:
    """The rates of a call made through the Batch API, as litellm's `batch_cost_calculator`
    bills it, or `None` when the row gives no batch rate for tokens.

    With a batch prompt rate (`input_cost_per_token_batches`): prompt tokens at it, and
    audio, image and video prompt tokens at their own batch rates where the row gives them;
    cached tokens at the batch cache rate, else the standard one, else as prompt tokens;
    cache writes at the batch write rates, else the batch prompt rate; each with its
    long-prompt batch rates. Without one: every prompt token at half the standard prompt
    rate, cached tokens at half the cache rate and writes at half the write rate (else the
    prompt rate). Output, reasoning, audio and video output at the batch output rate, else
    half the standard one; image output tokens at their batch rate, else half their
    standard one, else as output.

    litellm's rates change at several prompt sizes, each rate at its own: the rates are
    worked out just above each size any of them changes at, and a size tier kept where
    they change."""
    if all(spec.get(f"{f}_cost_per_token{_BATCHES}") is None for f in ("input", "output")):
        return None
    inclusive = spec.get("litellm_provider") in _FROM_SIZE
    sizes = {0}
    for key, value in spec.items():
        size = _above_size(key)
        if size >= 0 and value is not None:
            sizes |= {size - 1, size}  # a rate from a size, or above it
    samples = [
        (size, _batch_at(spec, where, size + 1, inclusive=inclusive)) for size in sorted(sizes)
    ]
    units = {unit for _, rates in samples for unit in rates}
    for _, rates in samples:  # a kind priced apart at some sizes is billed as its kind at others
        for unit in sorted(units - rates.keys(), key=_billed_depth):
            rates[unit] = rates[BILLED_AS[unit]]
    units = {  # a kind priced as what it is billed as at every size is not apart
        unit
        for unit in units
        if unit not in BILLED_AS or any(r[unit] != r[BILLED_AS[unit]] for _, r in samples)
    }
    price = {unit: rate for unit, rate in samples[0][1].items() if unit in units}
    tiers: list[tuple[int, dict[str, Decimal]]] = []
    before = price
    for size, rates in samples[1:]:
        changed = {u: r for u, r in rates.items() if u in units and before.get(u) != r}
        if changed:
            tiers.append((size, changed))
            before = {**before, **changed}
    return price, tiers


def _billed_depth(unit: str) -> int:
    """How many steps `unit` is from a kind billed as itself (fill the nearest first)."""
    depth = 0
    while unit in BILLED_AS:
        unit, depth = BILLED_AS[unit], depth + 1
    return depth


def _batch_at(
    spec: Mapping[str, Any], where: str, prompt: int, *, inclusive: bool
) -> dict[str, Decimal]:
    """`_batch`'s rates for a call whose prompt is `prompt` tokens long."""

    def rate(key: str) -> Decimal | None:
        return _rate(spec.get(key), f"{where}.{key}")

    def batch(prefix: str) -> Decimal | None:
        """The prefix's batch rate at the highest long-prompt size the prompt is past."""
        own = re.compile(rf"{re.escape(prefix)}_above_[0-9]+k?_tokens{_BATCHES}")
        sizes = {
            size: key
            for key, value in spec.items()
            if value is not None
            and own.fullmatch(key)
            and _crosses(prompt, size := _above_size(key), inclusive)
        }
        if sizes:
            tier = rate(sizes[max(sizes)])
            if tier is not None:
                return tier
        return rate(f"{prefix}{_BATCHES}")

    def context(key: str, prompt: int) -> Decimal | None:
        """The rate `key` names at the highest long-prompt size the prompt is past, where a
        batch rate `key` takes its size from the standard rates' sizes too."""
        suffix = _BATCHES if key.endswith(_BATCHES) else ""
        base = key.removesuffix(suffix)
        sizes = [
            (size, name)
            for name, value in spec.items()
            if value is not None
            and name.startswith(f"{base}_above_")
            and name.endswith(("_tokens", f"_tokens{suffix}"))
            and _crosses(prompt, size := _above_size(name), False)
        ]
        if sizes:
            key = f"{max(sizes)[1].removesuffix(suffix)}{suffix}"
        return rate(key)

    def modality(key: str, fallback: Decimal, prompt: int = 0) -> Decimal:
        found = context(key, prompt)
        if found is None:
            found = rate(key)
        return fallback if found is None else found

    def halved(key: str) -> Decimal | None:
        plain = rate(key)
        return None if plain is None else (plain * _HALF).normalize()

    output = batch("output_cost_per_token")
    if output is None:
        output = halved("output_cost_per_token") or Decimal(0)
    out = {"output_token": output}
    image = rate(f"output_cost_per_image_token{_BATCHES}")
    if image is None:
        image = halved("output_cost_per_image_token")
    if image is not None:
        out["output_image_token"] = image
    prompt_rate = batch("input_cost_per_token")
    if prompt_rate is None:  # every prompt token at half its standard rate
        plain = rate("input_cost_per_token")
        if plain is None:
            raise ConfigError(f"{where}: batch rates for output but no price for a prompt")
        half = (plain * _HALF).normalize()
        cached, write = (
            halved("cache_read_input_token_cost"),
            halved("cache_creation_input_token_cost"),
        )
        return out | {
            "input_token": half,
            "cached_input_token": half if cached is None else cached,
            "cache_write_token": half if write is None else write,
        }
    out["input_token"] = prompt_rate
    out["input_audio_token"] = modality("input_cost_per_audio_token_batches", prompt_rate, prompt)
    out["input_image_token"] = modality("input_cost_per_image_token_batches", prompt_rate)
    out["input_video_token"] = modality("input_cost_per_video_token_batches", prompt_rate)
    batch_cached = batch("cache_read_input_token_cost")
    cached = batch_cached
    if cached is None:
        cached = context("cache_read_input_token_cost", prompt)
    out["cached_input_token"] = prompt_rate if cached is None else cached
    if cached is not None:
        audio = batch_cached
        if audio is None:
            audio = context("cache_read_input_audio_token_cost", prompt)
        out["cached_input_audio_token"] = modality(
            "cache_read_input_audio_token_cost_batches", cached if audio is None else audio
        )
    write = batch("cache_creation_input_token_cost")
    out["cache_write_token"] = prompt_rate if write is None else write
    for unit, prefix in (
        ("cache_write_1h_token", "cache_creation_input_token_cost_above_1hr"),
        ("cache_write_12h_token", "cache_creation_input_token_cost_above_12hr"),
    ):
        timed = batch(prefix)
        out[unit] = out["cache_write_token"] if timed is None else timed
    return out


def _above_size(key: str) -> int:
    match = _ANY_ABOVE.search(key)
    return -1 if match is None else int(match[1]) * (1000 if match[2] else 1)


def _crosses(prompt: int, size: int, inclusive: bool) -> bool:
    return size >= 0 and (prompt >= size if inclusive else prompt > size)


def _multiplier(value: object, where: str) -> Decimal | None:
    rate = _rate(value, where)
    if rate is not None and rate <= 0:
        raise ConfigError(f"{where}: expected a multiplier above 0, got {value!r}")
    return rate


def _scaled(rates: _Rates, times: Decimal) -> _Rates:
    price, tiers = rates
    return (
        {unit: (rate * times).normalize() for unit, rate in price.items()},
        [(above, {u: (r * times).normalize() for u, r in tier.items()}) for above, tier in tiers],
    )


def _per_use(spec: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """The source table of a model priced per unit of what a call does, as litellm's cost
    functions bill it, or `None` when the row gives no such price:

    - transcription: by the token where the row prices tokens (what OpenAI's token-priced
      models report), else `audio_second`, a second of the audio file (the row's output
      rate when above 0, else its input rate);
    - speech: `character`, a character of the text read, else by the token;
    - image generation and editing: `image`, an image made (the row's output rate per image,
      else its input rate per image, as litellm's provider calculators bill), or `pixel` (an
      image's width x height, for each image made); `image_4k`... an image at a resolution
      the row prices apart (fal.ai, xAI), and `megapixel`, fal.ai's price of an image of
      known size, per megapixel rounded up; or by the token where the row prices image
      tokens (`gpt-image-1`, Gemini's image models: their responses report tokens, and
      litellm costs them by those);
    - video generation: `video_second`, a second of video made, and `video_second_720p`...
      for each resolution the row prices apart; `input_image`, an image given to animate;
    - OCR: `credit` where the row prices credits, else `page` and `annotated_page` (at the
      annotation rate, else the page rate), and `batch_page` and `batch_annotated_page`
      where the row prices pages read through the Batch API (each at its batch rate, else
      as they are outside one);
    - rerank: `search_unit`, a query of up to 100 documents, or `token` for Voyage's and
      Jina's, which bill every token of a call; search: `query`, at the rate of the results
      it asks for (`max_results`) where the row prices by them; Parallel AI's own rules are
      not imported yet.
    """
    mode = spec["mode"]

    def rate(field: str) -> Decimal | None:
        return _rate(spec.get(field), f"{where}.{field}")

    price: dict[str, Decimal | None]
    if mode == "audio_speech":  # litellm: by the character where priced so, else by the token
        character = rate("input_cost_per_character")
        if character is None:
            return _source(spec, where)
        price = {"character": character}
    elif mode == "audio_transcription":  # by the token where the row prices tokens
        by_tokens = (
            _source(spec, where)
            if any(rate(field) is not None for field in _TRANSCRIPTION_TOKEN_FIELDS)
            else None
        )
        if by_tokens is not None:
            return by_tokens
        output, given = rate("output_cost_per_second"), rate("input_cost_per_second")
        price = {"audio_second": output if output or given is None else given}
    elif mode in ("image_generation", "image_edit"):
        by_tokens = _source(spec, where) if any(rate(f) for f in _IMAGE_TOKEN_FIELDS) else None
        if by_tokens is not None:
            return by_tokens  # by the tokens its responses report
        image = rate("output_cost_per_image")
        image = image if image is not None else rate("input_cost_per_image")
        price = {"image": image} if image is not None else {"pixel": rate("input_cost_per_pixel")}
        price |= {  # an image at a resolution priced apart: `image_4k` (fal.ai, xAI)
            f"image_{match[1].lower().replace('.', '_')}": rate(key)
            for key in spec
            if (match := _IMAGE_RESOLUTION.match(key))
        }
        per_pixel = rate("output_cost_per_pixel")
        if per_pixel and spec.get("litellm_provider") == "fal_ai":  # fal.ai: per megapixel
            price["megapixel"] = (per_pixel * _MEGAPIXEL).normalize()
    elif mode == "video_generation":
        per_second = rate("output_cost_per_video_per_second")
        resolutions = {}
        if per_second is None:
            per_second = rate("output_cost_per_second")
            resolutions = {
                f"video_second_{match[1]}": rate(key)
                for key in spec
                if (match := _RESOLUTION.match(key))
            }
        price = {
            "video_second": per_second,
            **resolutions,
            "input_image": rate("input_cost_per_image"),
        }
        if all(value is None for unit, value in price.items() if unit != "input_image"):
            return None
    elif mode == "ocr":
        credit, page = rate("ocr_cost_per_credit"), rate("ocr_cost_per_page")
        if credit is not None:
            price = {"credit": credit}
        else:
            annotated = rate("annotation_cost_per_page")
            price = {"page": page, "annotated_page": annotated if annotated is not None else page}
            batch_page = rate(f"ocr_cost_per_page{_BATCHES}")
            batch_annotated = rate(f"annotation_cost_per_page{_BATCHES}")
            if batch_page is not None or batch_annotated is not None:  # through the Batch API
                price["batch_page"] = batch_page if batch_page is not None else page
                if batch_annotated is None:
                    batch_annotated = annotated if annotated is not None else price["batch_page"]
                price["batch_annotated_page"] = batch_annotated
    elif mode == "rerank":  # Voyage and Jina bill every token of the call; the rest a query
        per_token = spec.get("litellm_provider") in ("voyage", "jina_ai")
        price = {"token": rate("input_cost_per_token")} if per_token else {}
        price["search_unit"] = None if per_token else rate("input_cost_per_query")
    elif spec.get("litellm_provider") == "parallel_ai":  # search: its own rules
        return None
    elif spec.get("tiered_pricing") is not None:
        return _by_results(spec["tiered_pricing"], f"{where}.tiered_pricing")
    else:
        price = {"query": rate("input_cost_per_query")}
    priced = {unit: value for unit, value in price.items() if value is not None}
    if not priced:
        return None
    source: dict[str, Any] = {"price": {unit: f"{value:f}" for unit, value in priced.items()}}
    if "batch_page" in priced:
        source["variants"] = ["batch"]
    return source


def _by_results(tiers: object, where: str) -> dict[str, Any]:
    """A search priced per query by the results it asks for (`max_results`, litellm's
    `tiered_pricing` of `max_results_range`): a size tier per range, sized by
    `max_results`, a unit of its own at 0. Past the last range, the last range's rate."""
    if not isinstance(tiers, list) or not tiers or not all(isinstance(t, Mapping) for t in tiers):
        raise ConfigError(
            f"{where}: expected a list of {{max_results_range, input_cost_per_query}}"
        )
    ranges = []
    for i, tier in enumerate(tiers):
        bounds = tier.get("max_results_range")
        per_query = _rate(tier.get("input_cost_per_query"), f"{where}[{i}].input_cost_per_query")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(type(b) is int and b >= 0 for b in bounds)
            or per_query is None
        ):
            raise ConfigError(
                f"{where}[{i}]: expected max_results_range [first, last] and input_cost_per_query"
            )
        ranges.append((bounds[0], per_query))
    ranges.sort(key=lambda r: r[0])
    if len(ranges) == 1:  # one rate whatever the results
        return {"price": {"query": f"{ranges[0][1]:f}"}}
    return {
        "price": {"query": f"{ranges[0][1]:f}", "max_results": "0"},
        "size_units": ["max_results"],
        "size_tiers": [
            {"above": first - 1, "price": {"query": f"{per_query:f}"}}
            for first, per_query in ranges[1:]
        ],
    }


# Rates that make a transcription model priced by the token, as litellm decides.
_TRANSCRIPTION_TOKEN_FIELDS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
)
# Rates that make an image model priced by the token: litellm's image route costs such a
# model by its tokens, and cannot cost one with only text token rates (Fireworks' FLUX).
_IMAGE_TOKEN_FIELDS = ("input_cost_per_image_token", "output_cost_per_image_token")


def _service_tiers(spec: Mapping[str, Any]) -> list[str]:
    """The service tiers a row prices apart: those some rate is given for (none for a row
    with `tiered_pricing`: litellm prices its ranges whatever the tier)."""
    if spec.get("tiered_pricing") is not None:
        return []
    return [
        tier
        for tier in SERVICE_TIERS
        if any(key.endswith(f"_{tier}") and value is not None for key, value in spec.items())
    ]


def _in_tier(spec: Mapping[str, Any], tier: str) -> dict[str, Any]:
    """The row as calls in `tier` are billed: its rates for the tier over the standard ones
    (a tier's rate of `null` is no rate: the standard one stands). A tier with an output
    rate of its own bills reasoning tokens at it, unless it prices them apart too: the
    standard reasoning rate is the standard tier's."""
    suffix = f"_{tier}"
    own = {
        key.removesuffix(suffix): value
        for key, value in spec.items()
        if key.endswith(suffix) and value is not None
    }
    served = {**spec, **own}
    if "output_cost_per_token" in own and "output_cost_per_reasoning_token" not in own:
        served.pop("output_cost_per_reasoning_token", None)
    return served


def _rates(spec: Mapping[str, Any], where: str) -> _Rates | None:
    """A model's rates and its long-prompt tiers in one service tier, or `None` when the
    table gives it no token price."""
    rates = {unit: _rate(spec.get(field), f"{where}.{field}") for field, unit in FIELDS.items()}
    ranged = _ranged(spec.get("tiered_pricing"), f"{where}.tiered_pricing", rates["output_token"])
    if ranged:  # the base rates stand for a prompt of 0 tokens only: any prompt has a tier
        first = ranged[0][1]
        for unit, rate in first.items():
            if rates.get(unit, rate) is None:
                rates[unit] = rate
    input_rate, output_rate = rates["input_token"], rates["output_token"]
    if input_rate is None:  # no price, or by output only: a prompt of tokens is not free
        return None
    if not output_rate:  # litellm: a model with no output rate bills text at its image rate
        image = _rate(
            spec.get("output_cost_per_image_token"), f"{where}.output_cost_per_image_token"
        )
        if image is not None:
            rates["output_token"] = image
    share = _CACHE_READ_SHARE.get(str(spec.get("litellm_provider")))
    if share is not None and rates["cached_input_token"] is None:
        rates["cached_input_token"] = (input_rate * share).normalize()
    price = {unit: rate for unit, rate in rates.items() if rate is not None}
    if spec.get("mode") != "embedding":  # an embedding has no cache to read or write
        # A provider that publishes no cache price bills cached tokens as ordinary input.
        price.setdefault("cached_input_token", input_rate)
        price.setdefault("cache_write_token", input_rate)
    tiers = ranged or _above(spec, where, cache_priced={u for u in price if rates[u] is not None})
    if spec.get("mode") != "embedding":
        for unit, (field, billed_as) in MODALITIES.items():
            own = _rate(spec.get(field), f"{where}.{field}")
            if own is not None:
                price[unit] = own
            elif any(unit in tier for _, tier in tiers):  # priced apart only when long
                price[unit] = price[billed_as]
    # Only the units the price has (an embedding's tiers price no cache); an empty tier goes.
    tiers = [
        (above, t) for above, tier in tiers if (t := {u: r for u, r in tier.items() if u in price})
    ]
    return price, tiers


def _above(
    spec: Mapping[str, Any], where: str, *, cache_priced: set[str]
) -> list[tuple[int, dict[str, Decimal]]]:
    """The long-prompt rates (`*_above_200k_tokens`), smallest size first.

    Above a size, each rate the row gives for it replaces the lower one for the whole call;
    cached tokens and cache writes with no price of their own follow the input rate.
    """
    sizes: dict[int, dict[str, Decimal]] = {}
    for key, value in spec.items():
        match = _ABOVE.match(key)
        if match is None:
            continue
        rate = _rate(value, f"{where}.{key}")
        if rate is None:
            continue
        size = int(match[2]) * (1000 if match[3] else 1)
        sizes.setdefault(size, {})[_FIELD_UNITS[match[1]]] = rate
    from_size = spec.get("litellm_provider") in _FROM_SIZE
    out = []
    for size in sorted(sizes):
        tier = sizes[size]
        if "input_token" in tier:
            for unit in ("cached_input_token", "cache_write_token"):
                if unit not in cache_priced:
                    tier.setdefault(unit, tier["input_token"])
        out.append((size - 1 if from_size else size, tier))  # whole tokens: from N is above N-1
    return out


def _ranged(
    tiers: object, where: str, output_rate: Decimal | None
) -> list[tuple[int, dict[str, Decimal]]]:
    """litellm's `tiered_pricing` list (`{range: [start, end], input_cost_per_token, ...}`):
    the tier whose range holds the prompt's size prices every token of the call, and a
    prompt past the last range stays in the last tier. Tier by tier: its rates, with
    cached tokens and cache writes at its input rate unless it prices them, and output at
    the model's own output rate unless it prices it; reasoning tokens at its reasoning rate,
    else its output rate when it has one."""
    if tiers is None:
        return []
    if not isinstance(tiers, list) or not all(isinstance(t, Mapping) for t in tiers):
        raise ConfigError(f"{where}: expected a list of {{range, input_cost_per_token, ...}}")
    out = []
    for i, tier in enumerate(tiers):
        bounds = tier.get("range")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        ):
            raise ConfigError(f"{where}[{i}].range: expected [start, end], got {bounds!r}")
        rates = {
            unit: rate
            for field, unit in FIELDS.items()
            if (rate := _rate(tier.get(field), f"{where}[{i}].{field}")) is not None
        }
        if "input_token" not in rates:
            raise ConfigError(f"{where}[{i}]: a tier with no input_cost_per_token")
        rates.setdefault("cached_input_token", rates["input_token"])
        rates.setdefault("cache_write_token", rates["input_token"])
        reasoning = _rate(
            tier.get("output_cost_per_reasoning_token"),
            f"{where}[{i}].output_cost_per_reasoning_token",
        )
        if reasoning is not None or "output_token" in rates:  # else as any call's reasoning
            rates["reasoning_token"] = reasoning if reasoning is not None else rates["output_token"]
        rates.setdefault("output_token", output_rate or Decimal(0))
        out.append((int(bounds[0]), rates))
    out.sort(key=lambda tier: tier[0])
    return out


def _rate(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        rate = Decimal(repr(value) if isinstance(value, float) else value)
        if not rate.is_finite() or rate < 0 or rate.adjusted() > _MAX_DIGITS:
            raise ConfigError(f"{where}: expected a price of zero or more, got {value!r}")
        return rate.normalize()  # 0 is a price: free
    except ArithmeticError:  # not a number, or one too large to hold
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


_MAX_DIGITS = 12  # a rate of a trillion dollars a unit is a typo, not a price


def to_toml(sources: Mapping[str, Mapping[str, Any]]) -> str:
    """`[sources."NAME"]` tables for `spendgate.toml`."""
    lines = []
    for name, spec in sorted(sources.items()):
        lines += [f"[sources.{json.dumps(name)}]", f"price = {_toml(spec['price'])}"]
        if "variants" in spec:
            lines.append(f"variants = {json.dumps(spec['variants'])}")
        if "variant_hours" in spec:
            lines.append(f"variant_hours = {_toml(spec['variant_hours'])}")
        if "size_tiers" in spec:
            lines.append(f"size_units = {json.dumps(spec['size_units'])}")
            tiers = ", ".join(
                f"{{ above = {tier['above']}, price = {_toml(tier['price'])} }}"
                for tier in spec["size_tiers"]
            )
            lines.append(f"size_tiers = [{tiers}]")
        lines.append("")
    return "\n".join(lines)


def _toml(value: object) -> str:
    """`value` (tables, lists, text and whole numbers) as an inline TOML value."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)
