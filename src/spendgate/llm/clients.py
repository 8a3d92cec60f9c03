"""Drop-in LLM clients: an `openai` or `anthropic` client (sync or async) whose every paid call
is priced before it is sent, held against the budgets, and settled with the usage the
response reports.

```python
from openai import OpenAI
from spendgate.llm import wrap

client = wrap(OpenAI(), gate, service="chatbot")   # still an OpenAI, to the type checker too
reply = client.chat.completions.create(model="gpt-4o", messages=[...], max_tokens=500)
```

The client's HTTP traffic goes through a transport (`httpx2`, which both SDKs use) that reads
each request before it leaves: a call to a metered endpoint (chat completions, completions,
responses, embeddings, messages) is priced from a safe upper bound of its tokens, and the
hold is reserved on every budget it counts against. A refusal raises `BudgetExceededError`
before any byte is sent. The response's usage (for a stream, from its last events) is what
is committed; an error response releases the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

import httpx2

from spendgate.errors import SpendgateError, ValidationError, rebuilt_error
from spendgate.gate import Gate
from spendgate.holds import new_request_id
from spendgate.llm.usage import (
    OUTPUT_UNITS,
    PROMPT_UNITS,
    SERVICE_TIERS,
    TIER_NAMES,
    VARIANTS,
    billable,
    billed_variant,
    service_tier,
    tier_unit,
    usage_from_anthropic,
    usage_from_openai,
)
from spendgate.money import EXACT, exact
from spendgate.pricing import Price
from spendgate.spend import raise_if_denied
from spendgate.windows import MAX_CLOCK_SKEW, parse_duration, to_micros

log = logging.getLogger(__name__)

Client = TypeVar("Client")
Endpoint = Literal["chat", "completion", "responses", "embeddings", "messages"]
SourceFor = str | Mapping[str, str] | Callable[[str], str] | None

# The endpoints that cost money, by the end of their path, and what each is.
ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", "chat"),
    ("/completions", "completion"),
    ("/responses", "responses"),
    ("/embeddings", "embeddings"),
    ("/messages", "messages"),
)
FREE_PATHS = ("/messages/count_tokens", "/responses/input_tokens", "/files", "/uploads")
"""POST endpoints that cost nothing, passed through unmetered. Any other POST to a path the
client does not meter is refused: it could be a paid call nobody priced."""
# A prompt's parts that cost tokens their bytes do not bound (an image's URL is short).
_MEDIA_PARTS = frozenset(
    {"image_url", "input_image", "image", "input_audio", "audio", "input_file", "file",
     "document", "video", "video_url"}
)  # fmt: skip
# The service tiers a request may name: unset or `auto` may be served in any tier (the
# project's or the organisation's setting decides), `default` and Anthropic's
# `standard_only` in the standard tier only; a priced tier in itself or the standard one.
_ANY_TIER = (None, "auto")
_STANDARD_TIER = ("default", "standard_only")
# Anthropic's region and speed: unset, the region may be the US (a workspace's default
# decides); `fast` costs Anthropic's fast-mode multiplier.
_GEOS = (None, "global", "us")
_SPEEDS = (None, "standard", "fast")
_TIERS_NAMED = (*_ANY_TIER, *_STANDARD_TIER, *TIER_NAMES)
_TIERED = frozenset({None, *VARIANTS})
_PROMPT_UNITS = [tier_unit(unit, tier) for tier in _TIERED for unit in PROMPT_UNITS]
_OUTPUT_UNITS = [tier_unit(unit, tier) for tier in _TIERED for unit in OUTPUT_UNITS]
# The service tier of each unit a token-priced source may name.
_UNIT_TIER: dict[str, str | None] = {
    **{tier_unit(u, t): t for t in _TIERED for u in (*PROMPT_UNITS, *OUTPUT_UNITS)},
    "request": None,
}
_PATHS_KEPT = 64  # paths whose endpoint a meter remembers
# OpenAI's hosts that serve a call in a region billed at a premium (see `REGIONS`).
_REGION_HOSTS = {
    "us.api.openai.com": "us",
    "eu.api.openai.com": "eu",
    "gov.api.openai.com": "fedramp",
}
_VERTEX = "aiplatform.googleapis.com"  # Vertex AI's global endpoint; any other is regional
# The fields that limit a call's output, the one to send a cap in first.
_LIMITS: dict[Endpoint, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completion": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}
# What pulls into a Responses API prompt tokens its request's bytes do not hold: an earlier
# response or a conversation kept by the provider, a stored prompt (`{"id": ...}`).
_CONTEXT_FIELDS = ("previous_response_id", "conversation", "prompt")
# Tools the provider runs itself, billed apart (per search, per session) and adding tokens.
_SERVER_TOOLS = ("web_search", "web_fetch", "file_search", "code_interpreter",
                 "code_execution", "computer", "mcp", "image_generation")  # fmt: skip
# Errors that mean the request never left: nothing can have been billed.
_NOT_SENT = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.UnsupportedProtocol,
)


@dataclass(frozen=True)
class Options:
    """How a wrapped client meters its calls.

    `source` names the source a call is priced and counted as: `None` (the default) takes
    the request's `model`; a string names one source for every call; a mapping or a
    function maps the model to the source. `max_output_tokens` is sent with a request that
    sets no output limit, so that the bound holds. A prompt is bounded by its request's UTF-8
    bytes (a token is at least one byte) plus `prompt_margin` tokens (what a provider adds
    around messages and tools: Anthropic's tool preambles reach about 2,200) plus
    `media_tokens` for each image, audio clip, file or video, plus `context_tokens` for a
    request that pulls in context the provider keeps (`previous_response_id`,
    `conversation`, a stored `prompt`): such a request is refused while that is `None`.
    `hold_ttl` is how long a call's hold lasts (a long stream must not outlive it: an
    expired hold's money could be reserved by another call).
    """

    service: str
    source: SourceFor = None
    labels: Mapping[str, str] = field(default_factory=dict)
    max_output_tokens: int = 4096
    media_tokens: int = 10_000
    prompt_margin: int = 4096
    context_tokens: int | None = None
    hold_ttl: timedelta = timedelta(hours=1)
    free_paths: tuple[str, ...] = FREE_PATHS

    def __post_init__(self) -> None:
        for name in ("max_output_tokens", "media_tokens", "prompt_margin", "context_tokens"):
            value = getattr(self, name)
            if name == "context_tokens" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(name, value, "a whole number of tokens, zero or more")
        if self.max_output_tokens < 1:
            raise ValidationError("max_output_tokens", 0, "a whole number above zero")
        if self.hold_ttl <= timedelta(0):
            raise ValidationError("hold_ttl", str(self.hold_ttl), "a duration above zero")


@dataclass
class _Call:
    """One metered request: where it goes, what it is priced as, and the request to send."""

    endpoint: Endpoint
    source: str
    request: httpx2.Request
    bound: Decimal
    price: Price | None
    """The price the call was bounded with: which kinds of token it prices apart."""
    tier: object = None
    """The service tier the request asked for."""
    variants: frozenset[str | None] = frozenset({None})
    """The variants the request may be billed in, which its hold covers."""
    hidden_usage: bool = False
    """Usage was asked for on the caller's behalf: its stream chunk is not shown."""
    region: str | None = None
    """The region the request was sent to, by its host (`_region`)."""
    started: datetime | None = None
    """When the call was priced, before it was sent: with the time it is booked, the hours
    it was made in (a variant billed by the hour, `Price.variant_hours`)."""


class _Meter:
    """What the sync and async transports share: read a request, bound it, settle it."""

    def __init__(
        self, gate: Gate, options: Options, sdk_error: type[Exception] | None = None
    ) -> None:
        self.gate = gate
        self.options = options
        self.sdk_error = sdk_error
        self._bounds: dict[tuple[int, frozenset[str | None]], tuple[Price, _Steps]] = {}
        self._kinds: dict[type[SpendgateError], type[SpendgateError]] = {}
        self._endpoints: dict[str, Endpoint | Literal["free"]] = {}

    def refused(self, exc: SpendgateError) -> SpendgateError:
        """`exc`, made an instance of the SDK's own error class too: an SDK passes its own
        errors to the caller as they are, where it would retry anything else as a broken
        connection and then hide it behind one (the `anthropic` package does)."""
        if self.sdk_error is not None and not isinstance(exc, self.sdk_error):
            kind = type(exc)
            both = self._kinds.get(kind)
            if both is None:
                both = type(
                    kind.__name__,
                    (kind, self.sdk_error),
                    {"__module__": kind.__module__, "__reduce__": _reduced_as(kind)},
                )
                self._kinds[kind] = both
            exc.__class__ = both
        return exc

    # -- before the request leaves ----------------------------------------------------------

    def prepare(self, request: httpx2.Request) -> _Call | None:
        """The metered call `request` is, or `None` for a request that costs nothing."""
        if request.method != "POST":
            return None
        path = request.url.path
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            endpoint = self._endpoint(path)
        if endpoint == "free":
            return None
        try:
            body = json.loads(request.content or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValidationError("request", path.rstrip("/"), "a JSON body") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise ValidationError("model", body.get("model") if isinstance(body, dict) else body,
                                  "the model the request names")  # fmt: skip
        tier = body.get("service_tier")
        if tier not in _TIERS_NAMED:
            raise ValidationError(
                "service_tier",
                tier,
                f"a tier priced per token: unset, 'auto', {', '.join(map(repr, _STANDARD_TIER))}"
                f" or {', '.join(map(repr, TIER_NAMES))} ('scale' and batches are not priced)",
            )
        for name, valid in (("inference_geo", _GEOS), ("speed", _SPEEDS)):
            if endpoint == "messages" and body.get(name) not in valid:
                raise ValidationError(name, body[name], "one of " + ", ".join(map(repr, valid)))
        stream = body.get("stream") is True
        changed = self._output_limit(endpoint, body)
        hidden = False
        if stream and endpoint in ("chat", "completion"):
            options = body.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                body["stream_options"] = {**(options or {}), "include_usage": True}
                hidden = changed = True
        source = self._source(body["model"])
        prompt = len(request.content) + self.options.prompt_margin
        prompt += self.options.media_tokens * _media_parts(body) + self._context(endpoint, body)
        sent = _resent(request, body) if changed else request
        now = self.gate.clock()
        price = self.gate.bind(self.options.service, source).price(to_micros(now)).price
        region = _region(request.url.host) if endpoint != "messages" else None
        variants = _variants(endpoint, body, region)
        if price is not None and price.variant_hours:  # by the hour it is made
            variants |= {hours.variant for hours in price.variant_hours}
        bound = self._bound(price, prompt, self._output_bound(endpoint, body), variants)
        return _Call(endpoint, source, sent, bound, price, tier, variants, hidden, region, now)

    def _endpoint(self, raw: str) -> Endpoint | Literal["free"]:
        """What a POST to `raw` is: a metered endpoint, or `free`; else refused. Remembered
        for the next call to the same path."""
        path = raw.rstrip("/")
        endpoint: Endpoint | Literal["free"] | None
        if any(path.endswith(free) for free in self.options.free_paths):
            endpoint = "free"
        else:
            endpoint = next((kind for end, kind in ENDPOINTS if path.endswith(end)), None)
        if endpoint is None or (endpoint != "free" and "/batches" in path):
            raise ValidationError(
                "request",
                path,
                "a call spendgate can price (chat completions, completions, responses, "
                "embeddings, messages) or a free one; batches and other paid endpoints are "
                "not metered, so they are refused rather than sent unguarded",
            )
        if len(self._endpoints) < _PATHS_KEPT:
            self._endpoints[raw] = endpoint
        return endpoint

    def _context(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """The tokens a request pulls in that its bytes do not hold; a request whose tools
        the provider runs itself is refused (they are billed apart, per use)."""
        for tool in body.get("tools") or ():
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind.startswith(_SERVER_TOOLS):
                raise ValidationError(
                    "tools", kind, "tools the caller runs (functions): tools the provider "
                    "runs itself are billed apart and not priced yet",
                )  # fmt: skip
        pulled = [
            name
            for name in _CONTEXT_FIELDS
            if endpoint == "responses"
            and body.get(name) is not None
            and (name != "prompt" or isinstance(body[name], dict))
        ]
        if not pulled:
            return 0
        if self.options.context_tokens is None:
            raise ValidationError(
                pulled[0], body[pulled[0]], "no context kept by the provider, or a bound for "
                "it: wrap(..., context_tokens=N), the most tokens it can bring",
            )  # fmt: skip
        return self.options.context_tokens

    def _output_limit(self, endpoint: Endpoint, body: dict[str, Any]) -> bool:
        """Send the configured cap with a request that sets no output limit (absent, or
        `None`: sent as `null`, that is no limit); whether the body changed."""
        if endpoint == "embeddings":
            return False
        keys = _LIMITS[endpoint]
        if any(body.get(key) is not None for key in keys):
            return False
        body[keys[0]] = self.options.max_output_tokens
        return True

    def _output_bound(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """The most output tokens the call can return, over every choice it asks for."""
        if endpoint == "embeddings":
            return 0
        limits = []
        for key in _LIMITS[endpoint]:
            limit = body.get(key)
            if limit is None:
                continue
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValidationError(key, limit, "a whole number of tokens")
            limits.append(limit)
        choices = 1
        if endpoint in ("chat", "completion"):
            for key in ("n", "best_of"):  # every candidate is billed, shown or not
                value = body.get(key, 1)
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValidationError(key, value, "a whole number above zero")
                choices = max(choices, value)
        return max(limits) * choices

    def _source(self, model: str) -> str:
        chosen = self.options.source
        if chosen is None:
            return model
        if isinstance(chosen, str):
            return chosen
        if isinstance(chosen, Mapping):
            return chosen.get(model, model)
        return chosen(model)

    def _bound(
        self, price: Price | None, prompt: int, output: int, variants: frozenset[str | None]
    ) -> Decimal:
        """The most a call with `prompt` and `output` tokens can cost: every prompt token at
        the dearest prompt rate and every output token at the dearest output rate, plus its
        request fee, in the dearest size tier a prompt of this size or smaller falls in and
        the dearest variant the request may be billed in (see `_variants`). Worked out in
        whole numbers of the rates' finest decimal place, so no decimal context rounds it (in
        a caller's `prec=3`, a bound rounded down would hold less than the call costs)."""
        if price is None:
            return Decimal(0)  # an allowed-unpriced source: stored as unpriced
        scale, steps, rates = self._steps(price, variants)
        most = max(
            prompt * top_in + output * top_out + fee
            for above, top_in, top_out, fee in steps
            if prompt > above
        )
        if most < _EXACT_WHOLE:  # no more digits than the exact context keeps: the same
            return Decimal(f"{most}E-{scale}")  # read from text: exact in any context
        return _rounded_bound(rates, prompt, output)

    def _steps(self, price: Price, variants: frozenset[str | None]) -> _Steps:
        """Per size tier (the base first, above size -1): the size it is above (a whole
        number of tokens, rounded down), the dearest prompt rate, the dearest output rate
        and the request fee, over `variants`; the rates in whole units of 10^-scale, the
        scale, and the rates as they are."""
        cached = self._bounds.get((id(price), variants))
        if cached is not None and cached[0] is price:
            return cached[1]
        prompt_units = [u for u in _PROMPT_UNITS if _UNIT_TIER[u] in variants]
        output_units = [u for u in _OUTPUT_UNITS if _UNIT_TIER[u] in variants]
        unknown = [u for u in price.units if u not in _UNIT_TIER]
        if unknown:
            raise ValidationError(
                "source",
                price.source,
                f"a source priced by the token; {price.source!r} is priced per "
                f"{', '.join(unknown)}, which a response does not tell",
            )
        # A variant is known by its prompt rate: one priced without it could not be booked.
        partial = {
            v
            for u in price.units
            if (v := _UNIT_TIER[u]) is not None and not price.accepts(tier_unit("input_token", v))
        }
        if partial:
            raise ValidationError(
                "source", price.source, f"a source whose variants each price input_token "
                f"({', '.join(sorted(partial))} do not: its calls could not be booked)",
            )  # fmt: skip
        if not set(price.size_units) <= set(_PROMPT_UNITS):
            raise ValidationError(
                "source", price.source, "a source whose size tiers are sized by the prompt "
                "(a call's output is not known before it is sent, so its tier could not be)",
            )  # fmt: skip
        rates = {r.unit: r.max_rate for r in price.rates}
        steps: list[tuple[Decimal, ...]] = []
        for above, size in ((Decimal(-1), ()), *((t.above, t.rates) for t in price.size_tiers)):
            rates.update(size)
            top_in = max((rates.get(u, Decimal(0)) for u in prompt_units), default=Decimal(0))
            top_out = max((rates.get(u, Decimal(0)) for u in output_units), default=Decimal(0))
            steps.append((above, top_in, top_out, rates.get("request", Decimal(0))))
        scale = max(_places(rate) for step in steps for rate in step[1:])
        whole = [  # a prompt is whole tokens: above 1.5 is above 1 (int() rounds to 0)
            (int(above), _whole(top_in, scale), _whole(top_out, scale), _whole(fee, scale))
            for above, top_in, top_out, fee in steps
        ]
        self._bounds[(id(price), variants)] = (price, (scale, whole, steps))
        return scale, whole, steps

    def _reserving(self, call: _Call, reservation_id: str) -> dict[str, Any]:
        return {
            "labels": self.options.labels,
            "ttl": self.options.hold_ttl,
            "reservation_id": reservation_id,
        }

    def reserve(self, call: _Call) -> str:
        rid = new_request_id()
        decision = self.gate.reserve(
            self.options.service, call.source, call.bound, **self._reserving(call, rid)
        )
        raise_if_denied(decision)
        return rid

    async def areserve(self, call: _Call) -> str:
        rid = new_request_id()
        try:
            decision = await self.gate.areserve(
                self.options.service, call.source, call.bound, **self._reserving(call, rid)
            )
        except asyncio.CancelledError:  # the hold may land all the same: take it back
            undo = asyncio.ensure_future(self._undo(call, rid))
            _UNDOING.add(undo)
            undo.add_done_callback(_UNDOING.discard)
            raise
        raise_if_denied(decision)
        return rid

    async def _undo(self, call: _Call, rid: str) -> None:
        """Release the hold a cancelled `areserve()` may have taken: asking again under its
        id answers with that hold if it landed (or takes it), and then it goes back."""
        with contextlib.suppress(SpendgateError):
            decision = await self.gate.areserve(
                self.options.service, call.source, call.bound, **self._reserving(call, rid)
            )
            if decision.approved:
                await self.gate.arelease(rid)

    # -- after the response ---------------------------------------------------------------

    def settlement(self, call: _Call, usage: Any, served: object = None) -> dict[str, Any]:
        """`commit()`'s arguments for a call whose response reported `usage`, served in the
        service tier `served` says. With no usage, or none that reads (a count missing or
        inconsistent), the hold is what is booked: the most the call could have cost, never
        less, and a warning says so."""
        if usage:
            read = usage_from_anthropic if call.endpoint == "messages" else usage_from_openai
            during = None
            if call.started is not None:  # widened: the provider's clock may differ from ours
                during = (call.started - MAX_CLOCK_SKEW, self.gate.clock() + MAX_CLOCK_SKEW)
            billed_in = billed_variant(
                call.price, call.tier, usage, served, region=call.region, during=during
            )
            if billed_in not in call.variants:  # the provider's word is what it bills
                log.warning("%s: the response says the call was billed as %s, which the "
                            "request did not ask for; booked so, above its hold",
                            call.source, billed_in)  # fmt: skip
            try:
                return {"units": billable(read(usage), call.price, billed_in)}
            except ValidationError as exc:
                log.warning("%s: the usage reported does not read (%s); booked at the hold",
                            call.source, exc)  # fmt: skip
                return {}
        log.warning("%s: no usage reported; booked at the hold", call.source)
        return {}

    def commit(self, reservation_id: str, arguments: dict[str, Any]) -> None:
        try:
            self.gate.commit(reservation_id, **arguments)
        except SpendgateError as exc:
            raise self.refused(exc) from exc.__cause__

    async def acommit(self, reservation_id: str, arguments: dict[str, Any]) -> None:
        try:  # shielded: a cancelled caller still has its call booked
            await asyncio.shield(self.gate.acommit(reservation_id, **arguments))
        except SpendgateError as exc:
            raise self.refused(exc) from exc.__cause__


_Steps = tuple[int, list[tuple[int, int, int, int]], list[tuple[Decimal, ...]]]
_EXACT_WHOLE = 10**EXACT.prec


@exact
def _rounded_bound(steps: list[tuple[Decimal, ...]], prompt: int, output: int) -> Decimal:
    """`_Meter._bound()` of a bound with more digits than the exact context keeps, worked
    out in it (as rounded as a cost of it would be)."""
    return max(
        prompt * top_in + output * top_out + fee
        for above, top_in, top_out, fee in steps
        if prompt > above
    )


def _places(value: Decimal) -> int:
    """The decimal places of a finite `value` (0 for a whole one)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return max(0, -exponent)


def _whole(value: Decimal, scale: int) -> int:
    """`value` times 10^scale, exactly, for a finite `value` of at most `scale` places."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    whole: int = int("".join(map(str, digits))) * 10 ** (exponent + scale)
    return -whole if sign else whole


def _reduced_as(kind: type[SpendgateError]) -> Callable[[SpendgateError], Any]:
    """A `__reduce__` that pickles an error as the spendgate class it was made from (the
    class made with the SDK's error is not importable by name)."""

    def reduce(self: SpendgateError) -> Any:
        return rebuilt_error, (kind, self.args, dict(self.__dict__))

    return reduce


_UNDOING: set[asyncio.Future[None]] = set()
"""Releases of holds whose reservation was cancelled, kept until they finish."""
_BOOKING: set[threading.Thread] = set()
"""Bookings of streams dropped unclosed, until they finish."""


def _resent(request: httpx2.Request, body: dict[str, Any]) -> httpx2.Request:
    """`request` with `body` (a limit or a usage option added) in place of its own."""
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
    content = json.dumps(body, separators=(",", ":")).encode()
    return httpx2.Request(
        request.method, request.url, headers=headers, content=content,
        extensions=request.extensions,
    )  # fmt: skip


def _media_parts(value: dict[str, Any] | list[Any]) -> int:
    """How many parts of a parsed JSON request body (a dict or a list, and so on down) are
    images, audio, files or video, wherever they are. Only the objects and arrays are
    visited: parsed JSON has no other containers (nor subclasses of these)."""
    items: Iterable[Any] = value
    found = 0
    if type(value) is dict:
        kind = value.get("type")
        found = 1 if isinstance(kind, str) and kind in _MEDIA_PARTS else 0
        items = value.values()
    for item in items:
        if type(item) is dict or type(item) is list:
            found += _media_parts(item)
    return found


def _region(host: str) -> str | None:
    """The region a request to `host` is served in, as `REGIONS` names it: OpenAI's
    regional and FedRAMP hosts, and Vertex AI's regional and multi-region endpoints
    (`us-central1-aiplatform.googleapis.com`, `aiplatform.eu.rep.googleapis.com`: its
    OpenAI-compatible API), every one but the global `aiplatform.googleapis.com`."""
    if host in _REGION_HOSTS:
        return _REGION_HOSTS[host]
    vertex_region = host.endswith(f"-{_VERTEX}") or (
        host.startswith("aiplatform.") and host.endswith(".rep.googleapis.com")
    )
    return "regional" if vertex_region else None


def _variants(
    endpoint: Endpoint, body: dict[str, Any], region: str | None = None
) -> frozenset[str | None]:
    """The variants a request may be billed in: a request naming no service tier (or
    `auto`) may be served in any (a project's or an organisation's setting decides),
    `default` (Anthropic's `standard_only`) in the standard tier only, and a tier it names in
    that tier or the standard one; an Anthropic request naming no region may be kept in the
    US, and one asking for `speed: "fast"` is in fast mode. A request sent to a region's
    host (`region`) is billed in each of those there, or as they are where the model has
    no premium there."""
    tier = body.get("service_tier")
    if tier in _ANY_TIER:
        out = {None, *SERVICE_TIERS}
    elif tier in _STANDARD_TIER:
        out = {None}
    else:
        out = {None, service_tier(tier)}
    if endpoint == "messages":
        geos = {None, "us"} if body.get("inference_geo") in (None, "us") else {None}
        fast = body.get("speed") == "fast"
        out |= {"_".join(filter(None, ("fast_mode" if fast else None, geo))) or None
                for geo in geos}  # fmt: skip
        if fast:
            out.add("fast_mode")
    if region is not None:
        out |= {region if v is None else f"{v}_{region}" for v in out}
    return frozenset(out)


def _settlement(meter: _Meter, call: _Call, body: bytes) -> dict[str, Any]:
    """`commit()`'s arguments for a call answered with `body`."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        return meter.settlement(call, None)
    return meter.settlement(call, data.get("usage"), data.get("service_tier"))


class _Events:
    """Server-sent events read as they pass: the usage they report, and the bytes to pass on
    (the usage chunk asked for on the caller's behalf left out). Lines may end in CR LF, LF
    or CR; they are passed on ending in LF, which means the same."""

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.usage: dict[str, Any] = {}
        self.served: object = None
        self.complete = False
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        # A CR at the very end may be half of a CR LF: keep it until the next chunk.
        whole = self._buffer[:-1] if self._buffer.endswith(b"\r") else self._buffer
        text = whole.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = text.rfind(b"\n\n")
        if end < 0:
            return b""
        self._buffer = text[end + 2 :] + self._buffer[len(whole) :]
        out = [event + b"\n\n" for event in text[:end].split(b"\n\n") if self._read(event)]
        return b"".join(out)

    def rest(self) -> bytes:
        """What is left when the stream ends (an event with no blank line after it)."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return rest
        return rest if self._read(rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n")) else b""

    def _read(self, event: bytes) -> bool:
        """Note what `event` reports; whether to pass it on."""
        data = b"\n".join(
            line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not data or data == b"[DONE]":
            return True
        try:
            payload = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return True
        if not isinstance(payload, dict):
            return True
        kind = payload.get("type")
        if self.call.endpoint == "messages":
            if kind == "message_start":
                self._note((payload.get("message") or {}).get("usage"))
            elif kind == "message_delta" and payload.get("usage"):
                self._note(payload["usage"])
                self.complete = True
            return True
        if self.call.endpoint == "responses":
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                response = payload.get("response") or {}
                if response.get("usage"):
                    self.usage, self.complete = dict(response["usage"]), True
                    self.served = response.get("service_tier")
            return True
        if payload.get("service_tier") is not None:
            self.served = payload["service_tier"]
        if payload.get("usage"):
            self.usage, self.complete = dict(payload["usage"]), True
            return not (self.call.hidden_usage and not payload.get("choices"))
        return True

    def _note(self, usage: Any) -> None:
        """Anthropic's counts, later events over earlier ones (a `null` is no count)."""
        if isinstance(usage, dict):
            self.usage.update((k, v) for k, v in usage.items() if v is not None)


class _Settled:
    """Settles one streamed call once: with the usage seen, else at the hold."""

    def __init__(self, meter: _Meter, call: _Call, reservation_id: str) -> None:
        self.meter, self.call, self.reservation_id = meter, call, reservation_id
        self.events = _Events(call)
        self.done = False

    def arguments(self) -> dict[str, Any]:
        self.done = True
        if not self.events.complete:
            log.warning("%s: the stream ended before its usage; booked at the hold",
                        self.call.source)  # fmt: skip
            return {}
        return self.meter.settlement(self.call, self.events.usage, self.events.served)

    def forgotten(self) -> None:
        """A stream dropped unclosed: booked at its hold, not left to expire unbooked. On a
        thread of its own: the collector may run this while this thread holds a store lock."""
        if not self.done:
            arguments = self.arguments()
            booking = threading.Thread(
                target=self._book, args=(arguments,), name="spendgate-dropped-stream"
            )
            with contextlib.suppress(RuntimeError):  # at interpreter exit: its TTL returns it
                _BOOKING.add(booking)
                booking.start()

    def _book(self, arguments: dict[str, Any]) -> None:
        try:
            with contextlib.suppress(SpendgateError):
                self.meter.gate.commit(self.reservation_id, **arguments)
        finally:
            _BOOKING.discard(threading.current_thread())


class _SettlingStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, settled: _Settled) -> None:
        self.inner, self.settled = inner, settled

    def __iter__(self) -> Iterator[bytes]:
        events = self.settled.events
        try:
            for chunk in self.inner:
                passed = events.feed(chunk)
                if passed:
                    yield passed
            rest = events.rest()
            if rest:
                yield rest
        finally:
            self._settle()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self._settle()

    def _settle(self) -> None:
        if not self.settled.done:
            s = self.settled
            s.meter.commit(s.reservation_id, s.arguments())

    def __del__(self) -> None:
        self.settled.forgotten()


class _AsyncSettlingStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, settled: _Settled) -> None:
        self.inner, self.settled = inner, settled

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = self.settled.events
        try:
            async for chunk in self.inner:
                passed = events.feed(chunk)
                if passed:
                    yield passed
            rest = events.rest()
            if rest:
                yield rest
        finally:
            await self._settle()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self._settle()

    async def _settle(self) -> None:
        if not self.settled.done:
            s = self.settled
            await s.meter.acommit(s.reservation_id, s.arguments())

    def __del__(self) -> None:
        self.settled.forgotten()


def _streamed(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _billed(response: httpx2.Response) -> bool:
    """Whether a response is a call the provider bills (an error or a redirect is not)."""
    return response.status_code < 300


def _relayed(
    response: httpx2.Response, call: _Call, stream: httpx2.SyncByteStream | httpx2.AsyncByteStream
) -> httpx2.Response:
    """`response` with its body read through `stream`."""
    return httpx2.Response(
        response.status_code, headers=response.headers, stream=stream,
        request=call.request, extensions=response.extensions,
    )  # fmt: skip


class LLMTransport(httpx2.BaseTransport):
    """The sync transport of a wrapped client: meters each paid call (see the module)."""

    def __init__(self, meter: _Meter, transport: httpx2.BaseTransport | None = None) -> None:
        self.meter = meter
        self._inner = transport if transport is not None else httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        meter = self.meter
        try:
            call = meter.prepare(request)
            if call is None:
                return self._inner.handle_request(request)
            reservation_id = meter.reserve(call)
        except SpendgateError as exc:
            raise meter.refused(exc) from exc.__cause__
        try:
            response = self._inner.handle_request(call.request)
        except _NOT_SENT:  # never left: nothing billed
            with contextlib.suppress(SpendgateError):  # else its TTL returns it
                meter.gate.release(reservation_id)
            raise
        except BaseException:  # sent: the provider may bill it
            meter.commit(reservation_id, {})
            raise
        if _billed(response) and _streamed(response):
            assert isinstance(response.stream, httpx2.SyncByteStream)
            settled = _Settled(meter, call, reservation_id)
            return _relayed(response, call, _SettlingStream(response.stream, settled))
        try:
            response.read()
        except BaseException:  # answered, then cut: billed all the same
            meter.commit(reservation_id, {})
            raise
        if _billed(response):
            meter.commit(reservation_id, _settlement(meter, call, response.content))
        else:
            try:
                meter.gate.release(reservation_id)
            except SpendgateError as exc:
                raise meter.refused(exc) from exc.__cause__
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncLLMTransport(httpx2.AsyncBaseTransport):
    """The async transport of a wrapped client: meters each paid call (see the module)."""

    def __init__(self, meter: _Meter, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.meter = meter
        self._inner = transport if transport is not None else httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        meter = self.meter
        try:
            call = meter.prepare(request)
            if call is None:
                return await self._inner.handle_async_request(request)
            reservation_id = await meter.areserve(call)
        except SpendgateError as exc:
            raise meter.refused(exc) from exc.__cause__
        try:
            response = await self._inner.handle_async_request(call.request)
        except _NOT_SENT:
            with contextlib.suppress(SpendgateError):
                await asyncio.shield(meter.gate.arelease(reservation_id))
            raise
        except BaseException:
            await meter.acommit(reservation_id, {})
            raise
        if _billed(response) and _streamed(response):
            assert isinstance(response.stream, httpx2.AsyncByteStream)
            settled = _Settled(meter, call, reservation_id)
            return _relayed(response, call, _AsyncSettlingStream(response.stream, settled))
        try:
            await response.aread()
        except BaseException:
            await meter.acommit(reservation_id, {})
            raise
        if _billed(response):
            await meter.acommit(reservation_id, _settlement(meter, call, response.content))
        else:
            try:
                await asyncio.shield(meter.gate.arelease(reservation_id))
            except SpendgateError as exc:
                raise meter.refused(exc) from exc.__cause__
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _sdk_error(client: object) -> type[Exception] | None:
    """The root error class of the SDK `client` comes from (`openai.OpenAIError`...)."""
    package = sys.modules.get(type(client).__module__.partition(".")[0])
    for name in ("OpenAIError", "AnthropicError"):
        base = getattr(package, name, None)
        if isinstance(base, type) and issubclass(base, Exception):
            return base
    return None


def wrap(
    client: Client,
    gate: Gate,
    *,
    service: str,
    source: SourceFor = None,
    labels: Mapping[str, str] | None = None,
    max_output_tokens: int = 4096,
    media_tokens: int = 10_000,
    prompt_margin: int = 4096,
    context_tokens: int | None = None,
    hold_ttl: timedelta | float | str = timedelta(hours=1),
    transport: httpx2.BaseTransport | httpx2.AsyncBaseTransport | None = None,
) -> Client:
    """`client` (an `openai` or `anthropic` client, sync or async) with every paid call
    metered through `gate` for `service`. The result is a copy of the same class, so the
    caller's type checker and IDE see the client they know. See `Options` for the rest;
    `transport` is the transport to send through (default: the client's own, so its proxy,
    TLS settings and connection pool stay)."""
    options = Options(
        service,
        source,
        dict(labels or {}),
        max_output_tokens=max_output_tokens,
        media_tokens=media_tokens,
        prompt_margin=prompt_margin,
        context_tokens=context_tokens,
        hold_ttl=parse_duration(hold_ttl, "hold_ttl"),
    )
    copy = getattr(client, "with_options", None)
    inner_client = getattr(client, "_client", None)
    if copy is None or not isinstance(inner_client, httpx2.Client | httpx2.AsyncClient):
        raise ValidationError(
            "client", type(client).__name__, "an openai or anthropic client (sync or async)"
        )
    own = getattr(inner_client, "_transport", None)  # the SDK's, with its settings
    meter = _Meter(gate, options, _sdk_error(client))
    if isinstance(inner_client, httpx2.AsyncClient):
        inner = transport if transport is not None else own
        if inner is not None and not isinstance(inner, httpx2.AsyncBaseTransport):
            raise ValidationError("transport", transport, "an httpx2.AsyncBaseTransport")
        http: httpx2.Client | httpx2.AsyncClient = httpx2.AsyncClient(
            transport=AsyncLLMTransport(meter, inner), timeout=None
        )
    else:
        inner = transport if transport is not None else own
        if inner is not None and not isinstance(inner, httpx2.BaseTransport):
            raise ValidationError("transport", transport, "an httpx2.BaseTransport")
        http = httpx2.Client(transport=LLMTransport(meter, inner), timeout=None)
    wrapped: Client = copy(http_client=http)
    return wrapped
