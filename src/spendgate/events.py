"""Events: one costed use of a source (the seed's `cost_entry`), and their idempotency keys.

An event's `request_id` is its idempotency key. Its `fingerprint` digests what the caller
said (not what spendgate filled in, such as the time of an event that gave none), so a retry
of the same call matches and a different call under the same key does not.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from spendgate.errors import ValidationError
from spendgate.money import Nanos, money_text, to_nanos

RecordStatus = Literal["created", "exists", "conflict"]
# Bounds on what a caller may write into an event (or a hold). An event is a row read back
# by every report and listing: these keep its worst case near 100 KB, far above what any
# real call says of itself (a few labels of a few words; one error message).
MAX_ID_LENGTH = 200
"""A request or reservation id, a service, a source, a name in a list of sources."""
MAX_KEY_LENGTH = 100
"""A label's key, a unit's name."""
MAX_LABEL_LENGTH = 500
"""A label's value."""
MAX_TEXT_LENGTH = 1000
"""Free text: a failure reason, a fallback's reason."""
MAX_LABELS = 32
"""Labels on one call."""
LOCATION_LABELS = ("location", "region")
"""The labels that say where a call was made (the seed's geographic analysis), in order."""
MAX_ITEMS = 32
"""Names in each list of sources, fallbacks, units of one call."""
MAX_COUNT = 10**9  # cache hits and other counts: far above any real call, far inside int64
MAX_MEASURE = 1e12  # quality scores, seconds


TEXT_RULE = "text without NUL characters or lone surrogates (such as \\ud800)"
# In a `str`, every surrogate code point is a lone one: a valid pair is decoded as one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether every backend can store `text`: PostgreSQL refuses NUL in text, and a lone
    surrogate (`"\\ud800"`, which `json.loads` lets through) has no UTF-8 form at all."""
    if "\x00" in text:
        return False
    if text.isascii():  # the common case, checked in C without encoding anything
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: object, field_name: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Free text (a failure reason, a label's value): a string every backend can store, of
    at most `max_length` characters."""
    if not isinstance(value, str):
        raise ValidationError(field_name, value, "a string")
    if len(value) > max_length:
        raise ValidationError(field_name, _clipped(value), f"at most {max_length} characters")
    if not storable(value):
        raise ValidationError(field_name, value, TEXT_RULE)
    return value


def _clipped(text: str) -> str:
    """Overlong text as an error shows it: its start and its length."""
    return f"{text[:40]}... ({len(text)} characters)"


def storable_text(text: str) -> str:
    """`text` with what no backend can store (NUL, lone surrogates) replaced by U+FFFD: for
    text spendgate writes itself from what others said, such as an exception's message."""
    return text if storable(text) else _UNSTORABLE.sub("\ufffd", text)


def check_id(value: object, field_name: str, max_length: int = MAX_ID_LENGTH) -> str:
    """A key or a name (request id, service, source, label key): a non-empty printable
    string of at most `max_length` characters (so never NUL nor a lone surrogate, which are
    not printable)."""
    if not isinstance(value, str) or not value or len(value) > max_length:
        shown = _clipped(value) if isinstance(value, str) and len(value) > max_length else value
        raise ValidationError(
            field_name, shown, f"a non-empty string of at most {max_length} characters"
        )
    if not value.isprintable():
        raise ValidationError(field_name, value, "printable characters only")
    return value


def check_flags(*, emergency: object = False, priority: object = False) -> None:
    """`emergency` and `priority` must be real booleans: an emergency is taken explicitly,
    never by a truthy string like "false". (Every call checks them: two identity tests.)"""
    if emergency.__class__ is bool and priority.__class__ is bool:
        return
    for name, value in (("emergency", emergency), ("priority", priority)):
        if not isinstance(value, bool):
            raise ValidationError(name, value, "True or False")


def check_labels(labels: Mapping[str, object] | None) -> dict[str, str]:
    """Free-form labels: at most 32, each a key of up to 100 printable characters to a value
    of up to 500 characters."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        raise ValidationError(
            "labels", _count(labels), f"a mapping of at most {MAX_LABELS} string keys"
        )
    out: dict[str, str] = {}
    for key, value in labels.items():
        check_id(key, "labels", MAX_KEY_LENGTH)
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise ValidationError(f"labels.{key}", value, "a string (or a whole number)")
        out[key] = check_text(str(value), f"labels.{key}", MAX_LABEL_LENGTH)
    return out


def _count(value: object) -> object:
    """A collection too long to show in an error: how many items it had."""
    if isinstance(value, Mapping | list | tuple) and len(value) > MAX_ITEMS:
        return f"{len(value)} items"
    return value


def fingerprint(*parts: object) -> str:
    """A short stable digest of a call's payload, for telling a retry from a conflict."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Fallback:
    """A source that was tried and failed, and why."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class SourceCost:
    """One source's part in a call (an item of the seed's `source_cost_breakdown`): what it
    cost (nano-units), whether it answered, why not, and how much it added to the result."""

    source: str
    cost: Nanos = 0
    success: bool = True
    failure_reason: str | None = None
    quality_contribution: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The seed's breakdown item, JSON-ready (money as exact decimal text)."""
        out: dict[str, Any] = {
            "source": self.source,
            "cost": money_text(self.cost),
            "success": self.success,
        }
        if self.failure_reason is not None:
            out["failure_reason"] = self.failure_reason
        if self.quality_contribution is not None:
            out["quality_contribution"] = self.quality_contribution
        return out


SEED_ALIASES = (("timestamp", "time"), ("total_cost", "cost"))
"""The seed's names for `record()`'s own arguments: its `cost_entry` says `timestamp` and
`total_cost` where spendgate says `time` and `cost`."""


def seed_aliases(
    cost: object, time: object, details: Mapping[str, Any]
) -> tuple[object, object, Mapping[str, Any]]:
    """`cost`, `time` and the other details with the seed's names (`total_cost`,
    `timestamp`) folded in: either name may be given, or both if they agree. A `timestamp`
    without a zone is UTC, as the seed writes it (`datetime.utcnow()`); a `time` must say
    its zone."""
    if "timestamp" not in details and "total_cost" not in details:
        return cost, time, details
    rest = dict(details)
    given = {"time": time, "cost": cost}
    for seed_name, name in SEED_ALIASES:
        if seed_name not in rest:
            continue
        value = rest.pop(seed_name)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the seed's `datetime.utcnow()`
        ours = given[name]
        if ours is not None and value is not None and not _same(name, ours, value):
            raise ValidationError(
                f"{name}/{seed_name}",
                {name: ours, seed_name: value},
                f"one of {name} and {seed_name} (the seed's name for it), or both equal",
            )
        if ours is None:
            given[name] = value
    return given["cost"], given["time"], rest


def _same(name: str, ours: object, theirs: object) -> bool:
    if name == "cost":
        return to_nanos(ours, "cost") == to_nanos(theirs, "total_cost")
    return ours == theirs


def implied_source(details: Mapping[str, Any]) -> str:
    """The source of a seed's cost entry that names none (its tracker knows only the
    service): the one source its `source_cost_breakdown` says cost money, else the first of
    its `sources_used` (or of its breakdown). Several that cost money are refused: the whole
    cost would count against one source's budgets."""
    parts = Details.parse(
        {k: details[k] for k in ("sources_used", "source_cost_breakdown") if k in details}
    )
    costly = [p.source for p in parts.source_cost_breakdown if p.cost]
    if len(costly) > 1:
        raise ValidationError(
            "source",
            None,
            f"the source to book this cost against: the breakdown has {len(costly)} that "
            f"cost money ({', '.join(costly)}); record one event per paid source",
        )
    named = costly or list(parts.sources_used) or [p.source for p in parts.source_cost_breakdown]
    if not named:
        raise ValidationError("source", None, "a source name (or sources_used naming it)")
    return named[0]


@dataclass(frozen=True, slots=True)
class Details:
    """The seed's descriptive fields of an event, validated.

    `Details.parse()` reads them from keyword arguments; `NO_DETAILS` is the common case of
    none given, kept as one shared value so the hot path builds nothing.
    """

    success: bool = True
    failure_reason: str | None = None
    sources_used: tuple[str, ...] = ()
    free_sources_attempted: tuple[str, ...] = ()
    paid_apis_used: tuple[str, ...] = ()
    fallbacks_triggered: tuple[Fallback, ...] = ()
    cache_hits: int = 0
    batch_processing: bool = False
    quality_score: float | None = None
    processing_time: float | None = None
    source_cost_breakdown: tuple[SourceCost, ...] = ()
    image_resolution: str | None = None
    enhancement_applied: bool | None = None
    completeness_score: float | None = None
    free_sources_success_rate: float | None = None
    cache_hit: bool | None = None

    @classmethod
    def parse(cls, given: Mapping[str, Any]) -> Details:
        """Validate the fields a caller gave, naming the first bad one."""
        if not given:
            return NO_DETAILS
        unknown = sorted(set(given) - set(DETAIL_FIELDS))
        if unknown:
            raise ValidationError(
                unknown[0], given[unknown[0]], f"one of {', '.join(DETAIL_FIELDS)}"
            )
        success = given.get("success", True)
        if not isinstance(success, bool):
            raise ValidationError("success", success, "true or false")
        failure_reason = given.get("failure_reason")
        if failure_reason is not None:
            check_text(failure_reason, "failure_reason")
        cache_hits = given.get("cache_hits", 0)
        if (
            isinstance(cache_hits, bool)
            or not isinstance(cache_hits, int)
            or not 0 <= cache_hits <= MAX_COUNT
        ):
            raise ValidationError(
                "cache_hits", cache_hits, f"a whole number from 0 to {MAX_COUNT:,}"
            )
        batch = given.get("batch_processing", False)
        if not isinstance(batch, bool):
            raise ValidationError("batch_processing", batch, "true or false")
        cache_hit = _maybe_flag(given.get("cache_hit"), "cache_hit")
        if cache_hit is not None and "cache_hits" in given and cache_hit != (cache_hits > 0):
            raise ValidationError(
                "cache_hit/cache_hits",
                {"cache_hit": cache_hit, "cache_hits": cache_hits},
                "cache_hit true with cache_hits of 1 or more, or false with 0",
            )
        if cache_hit and "cache_hits" not in given:
            cache_hits = 1  # the seed's flag counts as one hit, so hit rates see it
        resolution = given.get("image_resolution")
        if resolution is not None:
            if isinstance(resolution, bool) or not isinstance(resolution, str | int):
                raise ValidationError(
                    "image_resolution", resolution, 'text such as "1024x1024" (or a number)'
                )
            resolution = check_text(str(resolution), "image_resolution", MAX_LABEL_LENGTH)
        rate = measure(given.get("free_sources_success_rate"), "free_sources_success_rate")
        if rate is not None and rate > 1:
            raise ValidationError("free_sources_success_rate", rate, "a fraction from 0 to 1")
        return cls(
            success=success,
            failure_reason=failure_reason,
            sources_used=_names(given.get("sources_used", ()), "sources_used"),
            free_sources_attempted=_names(
                given.get("free_sources_attempted", ()), "free_sources_attempted"
            ),
            paid_apis_used=_names(given.get("paid_apis_used", ()), "paid_apis_used"),
            fallbacks_triggered=tuple(
                _fallback(f)
                for f in _items(
                    given.get("fallbacks_triggered", ()), "fallbacks_triggered", "fallbacks"
                )
            ),
            cache_hits=cache_hits,
            batch_processing=batch,
            quality_score=measure(given.get("quality_score"), "quality_score"),
            processing_time=measure(given.get("processing_time"), "processing_time"),
            source_cost_breakdown=tuple(
                _source_cost(item, i)
                for i, item in enumerate(
                    _items(
                        given.get("source_cost_breakdown", ()),
                        "source_cost_breakdown",
                        "sources' costs",
                    )
                )
            ),
            image_resolution=resolution,
            enhancement_applied=_maybe_flag(
                given.get("enhancement_applied"), "enhancement_applied"
            ),
            completeness_score=measure(given.get("completeness_score"), "completeness_score"),
            free_sources_success_rate=rate,
            cache_hit=cache_hit,
        )

    def breakdown_total(self) -> Nanos | None:
        """The sum of `source_cost_breakdown`'s costs (the seed's `total_cost`), or `None`
        when no breakdown was given."""
        if not self.source_cost_breakdown:
            return None
        return sum(part.cost for part in self.source_cost_breakdown)

    def key(self) -> tuple[object, ...]:
        """What a fingerprint digests of these fields (empty when none were given)."""
        if self is NO_DETAILS:
            return ()
        # processing_time is left out: a retry of the same call never takes as long.
        values = detail_values(self)
        return values[:_PROCESSING_TIME] + values[_PROCESSING_TIME + 1 :]


NO_DETAILS = Details()
DETAIL_FIELDS = Details.__match_args__
DetailValues = tuple[
    bool,
    str | None,
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    tuple[Fallback, ...],
    int,
    bool,
    float | None,
    float | None,
    tuple[SourceCost, ...],
    str | None,
    bool | None,
    float | None,
    float | None,
    bool | None,
]
"""`Details`' fields in `DETAIL_FIELDS` order, typed one by one (see `new_event`)."""


def detail_values(d: Details) -> DetailValues:
    """`d`'s fields in `DETAIL_FIELDS` order, which is `Event`'s order for them."""
    return (
        d.success,
        d.failure_reason,
        d.sources_used,
        d.free_sources_attempted,
        d.paid_apis_used,
        d.fallbacks_triggered,
        d.cache_hits,
        d.batch_processing,
        d.quality_score,
        d.processing_time,
        d.source_cost_breakdown,
        d.image_resolution,
        d.enhancement_applied,
        d.completeness_score,
        d.free_sources_success_rate,
        d.cache_hit,
    )


_NO_DETAIL_VALUES = detail_values(NO_DETAILS)
_PROCESSING_TIME = DETAIL_FIELDS.index("processing_time")


def measure(value: object, field_name: str) -> float | None:
    """A measurement that is not money (a quality score, seconds): finite, zero or more."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(field_name, value, "a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0 <= number <= MAX_MEASURE:
        raise ValidationError(field_name, value, f"a finite number from 0 to {MAX_MEASURE:g}")
    return number


def _names(value: object, field_name: str) -> tuple[str, ...]:
    """A list of source names (a lone string is refused: it is not a list of names)."""
    return tuple(check_id(v, field_name) for v in _items(value, field_name, "source names"))


def _items(value: object, field_name: str, what: str = "items") -> list[object]:
    """A list of at most `MAX_ITEMS`."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(field_name, value, f"a list of {what}")
    items = list(value)
    if len(items) > MAX_ITEMS:
        raise ValidationError(field_name, _count(items), f"a list of at most {MAX_ITEMS} {what}")
    return items


def _maybe_flag(value: object, field_name: str) -> bool | None:
    """A flag the caller may leave out (or send as null)."""
    if value is not None and not isinstance(value, bool):
        raise ValidationError(field_name, value, "true, false or null")
    return value


def _source_cost(value: object, index: int) -> SourceCost:
    """An item of `source_cost_breakdown`: a `SourceCost`, or the seed's mapping of
    `source`, `cost`, `success`, `failure_reason` and `quality_contribution`."""
    where = f"source_cost_breakdown[{index}]"
    if isinstance(value, SourceCost):
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(where, value, "a mapping with source and cost")
    unknown = sorted(set(value) - set(SourceCost.__match_args__))
    if unknown:
        names = ", ".join(SourceCost.__match_args__)
        raise ValidationError(f"{where}.{unknown[0]}", value[unknown[0]], f"one of {names}")
    success = value.get("success", True)
    if not isinstance(success, bool):
        raise ValidationError(f"{where}.success", success, "true or false")
    reason = value.get("failure_reason")
    cost = value.get("cost", 0)
    return SourceCost(
        source=check_id(value.get("source"), f"{where}.source"),
        cost=to_nanos(0 if cost is None else cost, f"{where}.cost"),
        success=success,
        failure_reason=None if reason is None else check_text(reason, f"{where}.failure_reason"),
        quality_contribution=measure(
            value.get("quality_contribution"), f"{where}.quality_contribution"
        ),
    )


def _fallback(value: object) -> Fallback:
    if isinstance(value, Fallback):
        return value
    if isinstance(value, Mapping):
        return Fallback(
            check_id(value.get("source"), "fallbacks_triggered.source"),
            check_text(str(value.get("reason", "unknown")), "fallbacks_triggered.reason"),
        )
    if isinstance(value, tuple | list) and len(value) == 2:  # (source, reason)
        return Fallback(
            check_id(value[0], "fallbacks_triggered.source"),
            check_text(str(value[1]), "fallbacks_triggered.reason"),
        )
    raise ValidationError("fallbacks_triggered", value, "(source, reason) pairs")


SERVICE_FIELDS = (
    "image_resolution",
    "enhancement_applied",
    "completeness_score",
    "free_sources_success_rate",
    "cache_hit",
)
"""The typed fields the seed's trackers add for their own service (an image's resolution,
an enrichment's completeness...): stored with the event and shown when given."""


@dataclass(frozen=True, slots=True)
class Event:
    """One costed use of a source.

    `cost` is nano-units, or `None` for a source allowed to be unpriced (such events are
    counted as unpriced, never as $0). `paid` says whether the source charges at all.
    """

    request_id: str
    time: datetime
    service: str
    source: str
    cost: Nanos | None
    fingerprint: str
    units: Mapping[str, Decimal] = field(default_factory=dict)
    paid: bool = False
    success: bool = True
    failure_reason: str | None = None
    sources_used: tuple[str, ...] = ()
    free_sources_attempted: tuple[str, ...] = ()
    paid_apis_used: tuple[str, ...] = ()
    fallbacks_triggered: tuple[Fallback, ...] = ()
    cache_hits: int = 0
    batch_processing: bool = False
    quality_score: float | None = None
    processing_time: float | None = None
    source_cost_breakdown: tuple[SourceCost, ...] = ()
    image_resolution: str | None = None
    enhancement_applied: bool | None = None
    completeness_score: float | None = None
    free_sources_success_rate: float | None = None
    cache_hit: bool | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    price_version: str | None = None
    reservation_id: str | None = None
    emergency: bool = False

    @property
    def unpriced(self) -> bool:
        """Whether the event's source had no price (it is counted as such, never as $0)."""
        return self.cost is None

    @property
    def location(self) -> str | None:
        """Where the call was made: the first of `LOCATION_LABELS` its labels carry."""
        labels = self.labels
        if labels:
            for key in LOCATION_LABELS:
                if key in labels:
                    return labels[key]
        return None

    def detail(self) -> dict[str, Any]:
        """The list- and mapping-valued fields, JSON-ready, leaving out empty ones."""
        out: dict[str, Any] = {}
        if self.units:
            out["units"] = {k: str(v) for k, v in self.units.items()}
        for name in ("sources_used", "free_sources_attempted", "paid_apis_used"):
            value = getattr(self, name)
            if value:
                out[name] = list(value)
        if self.fallbacks_triggered:
            out["fallbacks_triggered"] = [
                {"source": f.source, "reason": f.reason} for f in self.fallbacks_triggered
            ]
        if self.source_cost_breakdown:
            out["source_cost_breakdown"] = [p.to_dict() for p in self.source_cost_breakdown]
        for name in SERVICE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.labels:
            out["labels"] = dict(self.labels)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The seed's cost entry, JSON-ready (money as exact decimal strings)."""
        return {
            "request_id": self.request_id,
            "timestamp": self.time.isoformat(),
            "service": self.service,
            "source": self.source,
            "total_cost": None if self.cost is None else money_text(self.cost),
            "unpriced": self.unpriced,
            "paid": self.paid,
            "success": self.success,
            "failure_reason": self.failure_reason,
            "cache_hits": self.cache_hits,
            "batch_processing": self.batch_processing,
            "quality_score": self.quality_score,
            "processing_time": self.processing_time,
            "price_version": self.price_version,
            "reservation_id": self.reservation_id,
            "emergency": self.emergency,
            **self.detail(),
        }


_EVENT_FIELDS = Event.__match_args__
_HEAD, _TAIL = 8, 4  # Event's fields before its details, and after them
assert _EVENT_FIELDS[_HEAD:-_TAIL] == DETAIL_FIELDS, "Event's detail fields left Details' order"


def new_event(
    head: tuple[str, datetime, str, str, Nanos | None, str, Mapping[str, Decimal], bool],
    details: Details,
    tail: tuple[Mapping[str, str], str | None, str | None, bool],
) -> Event:
    """An `Event` from its fields in order: (request_id, time, service, source, cost,
    fingerprint, units, paid), the details, then (labels, price_version, reservation_id,
    emergency). The hot path's way to build one: 28 keyword arguments cost more to match
    than everything else an event's construction does. mypy checks each position's type;
    the assertion above, that no two fields of one type swapped places."""
    values = _NO_DETAIL_VALUES if details is NO_DETAILS else detail_values(details)
    return Event(*(head + values + tail))


def seed_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The breakdown and service fields of a stored `Event.detail()`, as `Event` arguments."""
    out: dict[str, Any] = {name: detail[name] for name in SERVICE_FIELDS if name in detail}
    if "source_cost_breakdown" in detail:
        out["source_cost_breakdown"] = tuple(
            SourceCost(
                p["source"],
                to_nanos(p["cost"], "cost"),
                p["success"],
                p.get("failure_reason"),
                p.get("quality_contribution"),
            )
            for p in detail["source_cost_breakdown"]
        )
    return out


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What became of one `record()`: `created`, `exists` (an identical retry) or `conflict`.

    `budget_day` (the seed's `record_expense` name) is the local day the event counts in:
    by the calendar (zone, reset hour) of the first day/week/month budget over its service
    and source, else the UTC date; `None` for a `conflict`.
    """

    request_id: str
    status: RecordStatus
    cost: Nanos | None = None
    budget_day: date | None = None

    @property
    def created(self) -> bool:
        """Whether this call wrote the event (rather than finding it already there)."""
        return self.status == "created"
