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
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from spendgate.errors import ValidationError
from spendgate.money import Nanos, money_text

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


def check_flags(**flags: object) -> None:
    """Flags such as `emergency` and `priority` must be real booleans: an emergency is taken
    explicitly, never by a truthy string like "false"."""
    for name, value in flags.items():
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
        )

    def key(self) -> tuple[object, ...]:
        """What a fingerprint digests of these fields (empty when none were given)."""
        if self is NO_DETAILS:
            return ()
        return (
            self.success,
            self.failure_reason,
            self.sources_used,
            self.free_sources_attempted,
            self.paid_apis_used,
            self.fallbacks_triggered,
            self.cache_hits,
            self.batch_processing,
            self.quality_score,
            # processing_time is left out: a retry of the same call never takes as long.
        )


NO_DETAILS = Details()
DETAIL_FIELDS = Details.__match_args__


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
    labels: Mapping[str, str] = field(default_factory=dict)
    price_version: str | None = None
    reservation_id: str | None = None
    emergency: bool = False

    @property
    def unpriced(self) -> bool:
        """Whether the event's source had no price (it is counted as such, never as $0)."""
        return self.cost is None

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


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What became of one `record()`: `created`, `exists` (an identical retry) or `conflict`."""

    request_id: str
    status: RecordStatus
    cost: Nanos | None = None

    @property
    def created(self) -> bool:
        """Whether this call wrote the event (rather than finding it already there)."""
        return self.status == "created"
