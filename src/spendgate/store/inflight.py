"""The calls in flight on a SQL store: what lets `Store.close()` be called from any thread, at
any time, while others are inside store calls, without closing a connection under one."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Collection

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

    `admit_only()` refuses new calls earlier, from every thread but some: a gate about to
    close lets its writer write what is queued, and nobody else start a call that would
    compete with it for the store (on SQLite, whose lock is not handed out in turn, later
    calls in tight loops kept a queued write waiting past the gate's whole `close()` time).
    """

    __slots__ = (
        "__weakref__",
        "_admitted",
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
        self._admitted: frozenset[int] | None = None  # thread idents; None: every thread

    def enter(self) -> None:
        """A call begins; raises `StoreClosedError` once `close()` has begun, or from a
        thread `admit_only()` left out."""
        with self._lock:
            if self.closed or (
                self._admitted is not None and threading.get_ident() not in self._admitted
            ):
                raise StoreClosedError(self.where)
            self._busy += 1

    def admit_only(self, threads: Collection[threading.Thread]) -> None:
        """From now on, refuse new calls from every thread but `threads` (calls in flight
        go on); `close()` then refuses theirs too. A second call admits its threads too (two
        threads closing one gate)."""
        idents = frozenset(t.ident for t in threads if t.ident is not None)
        with self._lock:
            self._admitted = idents | (self._admitted or frozenset())

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
