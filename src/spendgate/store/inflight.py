"""The calls in flight on a SQL store: what lets `Store.close()` be called from any thread, at
any time, while others are inside store calls, without closing a connection under one."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable

from spendgate.errors import StoreClosedError
from spendgate.store.base import CLOSE_WAIT


class InFlight:
    """The calls in flight on a store, and whether it is closed: what makes `close()` safe to
    call from any thread while others are inside store calls.

    Each contract method runs between `enter()`, which refuses a closed store, and `exit()`.
    `close()` refuses new calls, waits up to `wait` seconds for those in flight, and runs the
    backend's `release` (closing its connections) once none is left: at once when they
    drained in time, else in the thread of the last one to leave. So no connection is ever
    closed under a call that uses it, and `close()` returns within its bound. A call pays two
    uncontended lock round trips.
    """

    __slots__ = (
        "__weakref__",
        "_busy",
        "_gave_up",
        "_idle",
        "_lock",
        "_release",
        "closed",
        "where",
    )

    def __init__(self, where: str, release: Callable[[], None]) -> None:
        self.where = where
        self.closed = False
        self._release = release
        self._after_fork()
        _IN_FLIGHT.add(self)

    def _after_fork(self) -> None:
        # A forked child has none of its parent's threads, so none of their calls; and a lock
        # another thread held at the fork would stay held in the child forever.
        self._lock = threading.Lock()
        self._busy = 0
        self._gave_up = False
        self._idle = threading.Event()

    def enter(self) -> None:
        """A call begins; raises `StoreClosedError` once `close()` has begun."""
        with self._lock:
            if self.closed:
                raise StoreClosedError(self.where)
            self._busy += 1

    def exit(self) -> None:
        """A call ends, however it ended. The last call of a store whose `close()` stopped
        waiting releases the store itself."""
        with self._lock:
            self._busy -= 1
            if self._busy or not self.closed:
                return
            late = self._gave_up
        if not late:
            self._idle.set()
            return
        with contextlib.suppress(Exception):  # the call itself is done: closing is best effort
            self._release()

    def close(self, wait: float = CLOSE_WAIT) -> bool:
        """Refuse new calls; release the store once the calls in flight are done. Whether
        it was released when this returns (a second `close()` does nothing, returns False)."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            drained = self._busy == 0
        if not drained:
            drained = self._idle.wait(wait)
        if not drained:
            with self._lock:
                # Still busy: the last call to leave releases. (Re-read under the lock: it
                # may have left between the wait timing out and here.)
                drained = self._busy == 0
                self._gave_up = not drained
        if drained:
            self._release()
        return drained


_IN_FLIGHT: weakref.WeakSet[InFlight] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for calls in list(_IN_FLIGHT):
        calls._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
