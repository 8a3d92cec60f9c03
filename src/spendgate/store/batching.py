"""Group commit: many concurrent writers share one transaction, and each returns only once
its item is durably committed.

A durable commit costs a disk flush (~130 µs here), so one transaction per event caps a store
at a few thousand events a second. Here callers queue their items; one writer thread takes
everything queued so far, writes it in one transaction and wakes the callers of that batch.
While it writes, the next batch fills. No caller waits on a timer: an idle writer takes the
first item at once, so a lone caller pays one commit and nothing more.

Callers may be threads (`submit`) or asyncio tasks (`asubmit`). Waking a blocked thread costs
an OS context switch and a turn at the GIL (about 14 µs an event with 64 threads here, see
docs/benchmarks.md); waking a task costs one callback per event loop and batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from spendgate.errors import StoreClosedError, StoreError
from spendgate.store.base import CLOSE_WAIT

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_BATCH = 2000
_LIVE: weakref.WeakSet[GroupCommitter[Any, Any]] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for committer in list(_LIVE):
        committer._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


class Failed:
    """An item's own error: a `write` may return it for an item that failed alone (its
    caller gets the error, the batch's other callers their results), and a batch that had
    to be written in parts holds it for the items that failed."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _unwrap(result: object) -> object:
    if isinstance(result, Failed):
        raise result.error
    return result


def _halves(groups: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    middle = len(groups) // 2
    return [groups[:middle], groups[middle:]]


class _Batch(Generic[T, R]):
    __slots__ = ("done", "error", "finished", "futures", "groups", "items", "results")

    def __init__(self) -> None:
        self.items: list[T] = []
        # (first index, count) of each caller's items: a caller's items stand or fall together
        self.groups: list[tuple[int, int]] = []
        self.results: Sequence[R | Failed] = ()
        self.error: BaseException | None = None
        self.done = threading.Event()
        # asyncio callers: (their loop, their future, their item's index)
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[R], int]] = []
        self.finished: list[Callable[[], None]] = []  # told on the writer's thread, first

    def finish(self) -> None:
        """Wake every caller: threads through the event, each event loop with one callback."""
        for told in self.finished:
            told()
        self.done.set()
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], int]]] = {}
        for loop, future, index in self.futures:
            by_loop.setdefault(loop, []).append((future, index))
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(self._settle, waiters)

    def _settle(self, waiters: list[tuple[asyncio.Future[R], int]]) -> None:
        for future, index in waiters:
            if future.done():  # its caller was cancelled
                continue
            result = self.results[index] if self.error is None else None
            if self.error is not None:
                future.set_exception(self.error)
            elif isinstance(result, Failed):
                future.set_exception(result.error)
            else:
                future.set_result(cast(R, result))


class GroupCommitter(Generic[T, R]):
    """Funnel `submit()` calls from any number of threads into batched `write()` calls.

    `write` gets a list of items and returns one result per item, in order, all in one
    transaction: if it raises, nothing of the batch was committed. One caller's bad item
    must not fail the others, so a batch that fails is written again in halves (by caller:
    the items of one `submit_many()` stay together), each half split again while it fails,
    until only the callers whose items fail are left; each of them gets its own error and
    every other caller its result. No item is committed twice: a part is written again only
    after its transaction failed, which rolled it back whole. A `StoreError` is the store
    itself failing (unreachable, closed, an outcome it cannot tell): it is never tried
    again, and every caller of the batch, or of what is left of it, gets it.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "spendgate-group-commit",
        where: str = "the group committer",
    ) -> None:
        self._write = write
        self._where = where  # what a call after `close()` is told is closed
        self._max_batch = max_batch
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[_Batch[T, R]] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        _LIVE.add(self)
        self.batches = 0
        self.items = 0
        self._writing = 0  # items of the batch being written

    def submit(self, item: T) -> R:
        """Queue `item`, wait until its batch is committed, and return its result."""
        batch, index = self._enqueue([item])
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return cast(R, _unwrap(batch.results[index]))

    async def asubmit(self, item: T, *, finished: Callable[[], None] | None = None) -> R:
        """`submit()` for asyncio: the caller's task waits, its event loop does not.

        A cancelled caller's item may still be committed (it was queued): retrying with the
        same idempotency key tells. `finished` is called on the writer's thread once the
        item's batch is over, whether its task still waits or its loop runs (at once, if
        the item is refused).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._cond:
            try:
                batch, index = self._enqueue_locked([item])
            except BaseException:  # closed: no batch will tell
                if finished is not None:
                    finished()
                raise
            batch.futures.append((loop, future, index))
            if finished is not None:
                batch.finished.append(finished)
        return await future

    def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items together (kept in one batch) and return their results."""
        if not items:
            return []
        batch, index = self._enqueue(list(items))
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return [cast(R, _unwrap(r)) for r in batch.results[index : index + len(items)]]

    def _enqueue(self, items: list[T]) -> tuple[_Batch[T, R], int]:
        with self._cond:
            return self._enqueue_locked(items)

    def _enqueue_locked(self, items: list[T]) -> tuple[_Batch[T, R], int]:
        if self._closed:
            raise StoreClosedError(self._where)
        self._ensure_thread()
        if not self._queue or len(self._queue[-1].items) + len(items) > self._max_batch:
            self._queue.append(_Batch())
        batch = self._queue[-1]
        index = len(batch.items)
        batch.items.extend(items)
        batch.groups.append((index, len(items)))
        self._cond.notify()
        return batch, index

    @property
    def waiting(self) -> int:
        """Items submitted and not yet answered: queued, or in the batch being written."""
        with self._cond:
            return self._writing + sum(len(b.items) for b in self._queue)

    @property
    def thread(self) -> threading.Thread | None:
        """The writer thread (`None` until the first item)."""
        with self._cond:
            return self._thread

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _after_fork(self) -> None:
        # A forked child inherits the object but not the writer thread, and must not write
        # its parent's queued items (their callers live in the parent): it starts empty.
        self._cond = threading.Condition()
        self._queue = []
        self._writing = 0
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue.pop(0)
                self._writing = len(batch.items)
            try:
                batch.results = self._commit(batch)
            except BaseException as exc:  # handed to every caller of the batch
                batch.error = exc
            self.batches += 1
            self.items += len(batch.items)
            with self._cond:
                self._writing = 0
            batch.finish()

    def _commit(self, batch: _Batch[T, R]) -> Sequence[R | Failed]:
        """Write a batch whole; if one caller's items fail it, isolate them (see the class)."""
        try:
            return self._write(batch.items)
        except StoreError:
            raise  # the store itself failed: every caller must hear it
        except Exception:
            if len(batch.groups) == 1:
                raise  # one caller: the error is its own
        results: list[R | Failed | None] = [None] * len(batch.items)
        halves = _halves(batch.groups)
        outage: list[StoreError] = []
        for half in halves:
            self._isolate(batch.items, half, results, outage)
        return cast(list[R | Failed], results)

    def _isolate(
        self,
        items: list[T],
        groups: list[tuple[int, int]],
        results: list[R | Failed | None],
        outage: list[StoreError],
    ) -> None:
        """Write the items of `groups` in one transaction, or, if that fails, each half of
        them in turn, until the groups that fail are alone; fill in `results`. Once the
        store itself fails (`outage`), what is not written yet gets that error untried:
        each try would wait for a store that does not answer."""
        if not outage:
            part = [item for first, count in groups for item in items[first : first + count]]
            try:
                written = self._write(part)
            except StoreError as exc:
                outage.append(exc)
            except Exception as exc:
                if len(groups) > 1:
                    for half in _halves(groups):
                        self._isolate(items, half, results, outage)
                    return
                first, count = groups[0]
                results[first : first + count] = [Failed(exc)] * count
                return
            else:
                at = 0
                for first, count in groups:
                    results[first : first + count] = written[at : at + count]
                    at += count
                return
        failed = Failed(outage[0])
        for first, count in groups:
            results[first : first + count] = [failed] * count

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        """Refuse new items, write what is queued, then stop the writer thread; wait at most
        `timeout` seconds for it. Whether it has stopped.

        Every queued caller still hears back: if the writer outlives the wait (a write stuck
        on the store's lock), it goes on, and once the store is closed what is left fails
        with `StoreClosedError`. Safe to call more than once.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()
