"""One paid call in progress: `Gate.spend()` as a context manager, `Gate.metered()` as a
decorator. Reserve on entry, commit on a clean exit, release on any exception (cancellation
and `KeyboardInterrupt` included).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from spendgate.decisions import Decision
from spendgate.errors import BudgetExceededError, SpendgateError
from spendgate.events import Details
from spendgate.money import from_nanos, to_nanos
from spendgate.pricing import Usage, clean_usage
from spendgate.store.base import CommitResult


class Spender(Protocol):
    """What a paid call in progress needs of its gate (a `Gate` is one). Written here rather
    than importing `Gate`, which builds `Spend`s: the two modules do not import each other."""

    @property
    def reserve(self) -> Callable[..., Decision]: ...

    @property
    def commit(self) -> Callable[..., CommitResult]: ...

    @property
    def release(self) -> Callable[[str], object]: ...

    @property
    def spend(self) -> Callable[..., Spend]: ...


P = ParamSpec("P")
R = TypeVar("R")


class Spend:
    """One paid call in progress (see `Gate.spend()`); a sync and async context manager."""

    def __init__(
        self,
        gate: Spender,
        service: str,
        source: str,
        estimate: Decimal | int | str | None,
        options: dict[str, Any],
    ) -> None:
        self.gate = gate
        self.service = service
        self.source = source
        self._estimate = estimate
        self._options = options
        self.decision: Decision | None = None
        self.result: CommitResult | None = None
        self._final: dict[str, Any] = {}
        self._settled = False

    @property
    def reservation_id(self) -> str | None:
        """The hold taken on entry."""
        return self.decision.reservation_id if self.decision else None

    def set_cost(
        self,
        actual: Decimal | int | str | None = None,
        *,
        units: Usage | None = None,
        **details: Any,
    ) -> None:
        """Say what the call really cost (and any event details); committed on exit.

        Checked here, so that a bad value fails inside the `with` block (where the call can
        still be handled) and never makes the commit on exit fail after the money was spent.
        """
        Details.parse(details)
        checked = None if actual is None else from_nanos(to_nanos(actual, "actual"))
        self._final = {"actual": checked, "units": clean_usage(units) if units else None,
                       **details}  # fmt: skip

    def commit(self, actual: Decimal | int | str | None = None, **details: Any) -> CommitResult:
        """Commit now rather than on exit."""
        if self.reservation_id is None:
            raise SpendgateError("commit: the call was not reserved (enter the context first)")
        self.result = self.gate.commit(self.reservation_id, actual, **details)
        self._settled = True
        return self.result

    def release(self) -> None:
        """Give the hold back now (the call will not be made)."""
        if self.reservation_id is not None and not self._settled:
            self._settled = True
            self.gate.release(self.reservation_id)

    def _enter(self) -> Spend:
        self.decision = self.gate.reserve(
            self.service, self.source, self._estimate, **self._options
        )
        raise_if_denied(self.decision)
        return self

    def _exit(self, failed: bool) -> None:
        if self._settled or self.reservation_id is None:
            return
        if failed:
            # If even the release fails, the hold expires by its TTL; the caller's own error
            # is the one to see.
            with contextlib.suppress(SpendgateError):
                self.release()
            return
        self.commit(**self._final)

    def __enter__(self) -> Spend:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc_type is not None)

    async def __aenter__(self) -> Spend:
        # The store call runs in a worker thread so the event loop keeps going. If this task
        # is cancelled meanwhile, the hold taken by the thread is released when it lands.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._enter)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Rare, and the one place the loop does a store write itself: a release, on the
            # loop's own thread, so it cannot be lost to an executor shutting down.
            future.add_done_callback(lambda _: self._exit(failed=True))
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The durable commit (or release) runs in a worker thread, so the loop keeps going; a
        # cancellation while it runs stops the waiting, not the settling.
        loop = asyncio.get_running_loop()
        await asyncio.shield(loop.run_in_executor(None, self._exit, exc_type is not None))


def raise_if_denied(decision: Decision) -> None:
    """`BudgetExceededError` for a refused decision, with the budget and amounts."""
    if not decision.approved:
        raise BudgetExceededError(
            decision.budget,
            from_nanos(decision.requested),
            from_nanos(decision.remaining if decision.remaining is not None else 0),
        )


def metered(
    gate: Spender,
    service: str,
    source: str,
    estimate: Decimal | int | str | None,
    *,
    cost: Callable[[Any], Decimal | int | str | None] | None,
    options: dict[str, Any],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The decorator behind `Gate.metered()`: each call of the function is one `spend()`."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with gate.spend(service, source, estimate, **options) as call:
                    result = await fn(*args, **kwargs)
                    if cost is not None:
                        call.set_cost(cost(result))
                    return result

            return cast(Callable[P, R], run_async)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with gate.spend(service, source, estimate, **options) as call:
                result = fn(*args, **kwargs)
                if cost is not None:
                    call.set_cost(cost(result))
                return result

        return run

    return decorate
