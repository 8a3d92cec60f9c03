"""The exceptions spendgate raises. One root, and every error carries its data.

Expected outcomes (a denied call, a duplicate event) are return values, not exceptions; the
classes here are for misuse (bad input, a conflicting retry) and for failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

StoreFailure = Literal[
    "disk full", "read-only", "store busy", "store unreachable", "store closed", "store error"
]
"""What kind of store failure an error is, in words safe to show anywhere: never a path,
host, database name or driver text (see `StoreError.reason`)."""


class SpendgateError(Exception):
    """The root of every error spendgate raises.

    Every one pickles (to another process, a task queue) with its fields, whatever its
    constructor takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt_error, (type(self), self.args, dict(self.__dict__))


def rebuilt_error(
    kind: type[SpendgateError], args: tuple[Any, ...], state: dict[str, Any]
) -> SpendgateError:
    """An error unpickled: made without its constructor, with its message and fields."""
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class ValidationError(SpendgateError, ValueError):
    """Bad input: names the field, what was given, and what would be valid.

    >>> str(ValidationError("reset_hour", 25, "an hour from 0 to 23"))
    'reset_hour: got 25; expected an hour from 0 to 23'
    """

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: got {value!r}; expected {expected}")


class CounterLimitError(ValidationError):
    """A write refused because it would carry a stored total past the most it may hold.

    Budget usage, rollup sums and quota counters are 64-bit integers in the store; each is
    bounded well inside that range so that every sum a read makes stays exact. `counter`
    names the total, `value` is what the write would add (or bring it to), and `bound` its
    limit, both as text in the counter's own unit. Nothing of the write is stored.

    >>> CounterLimitError("budget 'daily' spent + reserved", "5", "1000000000").bound
    '1000000000'
    """

    def __init__(self, counter: str, value: str, bound: str) -> None:
        super().__init__(
            counter, value, f"an amount that keeps it at or below {bound} (the most it may hold)"
        )
        self.counter = counter
        self.bound = bound


class UnstorableError(ValidationError):
    """A write the store's database refused for a value it cannot hold (the database's own
    check, behind spendgate's). Only the write that carries the value fails: other callers'
    writes that shared its transaction are written again without it."""

    def __init__(self, what: str, value: object, reason: str) -> None:
        super().__init__(what, value, f"a value the store can hold ({reason})")


class ConfigError(SpendgateError):
    """A configuration file that cannot be read or does not describe a valid setup."""


class UnknownSourceError(ValidationError):
    """A call names a source the configuration does not know."""

    def __init__(self, source: str, known: list[str]) -> None:
        shown = ", ".join(sorted(known)[:20]) or "none configured"
        super().__init__("source", source, f"one of the configured sources ({shown})")
        self.source = source


class UnpricedSourceError(SpendgateError):
    """A paid call to a source with no price: refused rather than booked at $0."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(
            f"source {source!r} has no price: give it one in spendgate.toml "
            f'([sources.{source}] price = ...) or allow it explicitly with unpriced = "allow"'
        )


class ConflictError(SpendgateError):
    """An idempotency key reused with a different payload."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(
            f"{kind} {key!r} already exists with a different payload; "
            "a retry must send the same payload, a new call needs a new key"
        )


class NotFoundError(SpendgateError):
    """A named thing (a budget, a source, a key, a reservation) that does not exist."""

    def __init__(self, kind: str, name: str, known: list[str] | None = None) -> None:
        self.kind = kind
        self.name = name
        hint = ""
        if known is not None:
            shown = ", ".join(sorted(known)[:20]) or "none"
            hint = f"; known: {shown}"
        super().__init__(f"no {kind} named {name!r}{hint}")


class ExistsError(SpendgateError):
    """A create of something that already exists under that name."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} already exists; change it with an update instead")


class ChangedError(SpendgateError):
    """A definition changed by someone else since it was read: read it again, then retry."""

    def __init__(self, what: str, expected: int, found: int) -> None:
        self.what = what
        self.expected = expected
        self.found = found
        super().__init__(
            f"{what} changed meanwhile (now at revision {found}, expected {expected}); "
            "read it again and retry"
        )


class ReservationStateError(SpendgateError):
    """A reservation that cannot take the asked step (committed twice, released twice, unknown)."""

    def __init__(self, reservation_id: str, state: str, action: str) -> None:
        self.reservation_id = reservation_id
        self.state = state
        self.action = action
        super().__init__(f"cannot {action} reservation {reservation_id!r}: it is {state}")


class BudgetExceededError(SpendgateError):
    """A paid call refused because a budget would be broken.

    Carries the budget that decided, the amount asked and the amount remaining (in the
    deployment currency, as `Decimal`).
    """

    def __init__(
        self,
        budget: str | None,
        requested: Decimal,
        remaining: Decimal,
        message: str | None = None,
    ) -> None:
        self.budget = budget
        self.requested = requested
        self.remaining = remaining
        where = f"budget {budget!r}" if budget else "the budget"
        super().__init__(
            message
            or f"{where} refuses {requested} (remaining {remaining}); "
            "use free sources only, or mark the call emergency if it is one"
        )


class StoreError(SpendgateError):
    """The store could not be opened or answered with something unexpected.

    Its message may name the store's file or server (for the server's log); `reason` says
    only what kind of failure it was, for health reports and HTTP answers.
    """

    reason: StoreFailure = "store error"

    def __init__(self, message: str, *, reason: StoreFailure | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class StoreClosedError(StoreError):
    """A call on a store (or a gate) after its `close()`: open a new one to go on.

    `where` names the store. A call already in flight when `close()` began finishes, or
    raises this error if it needed the store again after that.
    """

    reason: StoreFailure = "store closed"

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"{where}: the store is closed (open a new one to go on)")


class StoreUnreachableError(StoreError):
    """The store did not answer in time: its server is down or out of reach, or every
    connection to it stayed busy. `authorize()` and `reserve()` fail closed on it."""

    reason: StoreFailure = "store unreachable"


class OutcomeUnknownError(StoreUnreachableError):
    """A write whose connection was lost while it committed, and that could not be looked
    up again within the store's timeout: it may or may not have been stored. Its id (the
    reservation id, the request id) finds out once the store answers."""


def check_keys(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse a table with a key it may not have, naming the first and the keys it may."""
    unknown = sorted(set(spec) - allowed)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValidationError(
            key, spec[unknown[0]], f"one of the keys {', '.join(sorted(allowed))}"
        )
