"""The server's background work, in threads the server owns and stops: the alert evaluator,
the notification dispatcher and the monthly report writer.

Each loop waits on one stop flag between rounds, and each round is bounded: the evaluator's
is a few store reads and writes, the dispatcher checks the flag between sends (each send
bounded by the channels' timeout) and gives back what it claimed and did not send, and the
report writer writes one month at most. `create_app`'s lifespan starts them and, on the way
out, stops them and waits for them (until a deadline) before the gate they use is closed;
`spendgate serve` sets the flag as soon as a signal arrives, so they stop while requests in
flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from spendgate.alerts import AlertEngine, Dispatcher
from spendgate.errors import SpendgateError
from spendgate.server.context import Context
from spendgate.server.reports import write_monthly

log = logging.getLogger("spendgate.server")
REPORT_EVERY = 3600.0  # seconds between looks for a month to report
_POLL = 0.02  # seconds between looks at threads that are stopping


class Background:
    """The threads of one server: started with `start()`, stopped with `stop()`, waited for
    with `wait()` (or `join()` off the event loop)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.stopping = threading.Event()
        self.deadline: float | None = None
        """When the threads must have stopped (`time.monotonic()`), once `stop()` was called."""
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the loops the settings ask for."""
        settings = self.ctx.settings
        loops: list[tuple[str, Callable[[], None]]] = []
        if settings.alerting:
            loops += [("alert-evaluator", self._evaluating), ("dispatcher", self._dispatching)]
        if settings.report_dir is not None:
            loops.append(("report-writer", self._reporting))
        for name, loop in loops:
            # Daemon threads, so that one a bug kept busy past its deadline cannot keep the
            # process alive; the lifespan waits for them before the gate closes regardless.
            thread = threading.Thread(target=loop, name=f"spendgate-{name}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self, deadline: float | None = None) -> None:
        """Ask every loop to stop, by `deadline` (`time.monotonic()`; by default the
        settings' shutdown grace from now). An earlier deadline already set stands. Safe to
        call from a signal handler."""
        if deadline is None:
            deadline = time.monotonic() + self.ctx.settings.shutdown_grace
        if self.deadline is None or deadline < self.deadline:
            self.deadline = deadline
        self.stopping.set()

    def alive(self) -> list[str]:
        """The names of the threads still running."""
        return [t.name for t in self.threads if t.is_alive()]

    def join(self) -> list[str]:
        """Wait until every thread has stopped or the deadline passed (`stop()` first);
        the names of those still running."""
        for thread in self.threads:
            thread.join(max(0.0, self._left()))
        return self.alive()

    async def wait(self) -> list[str]:
        """`join()` for the event loop: it keeps serving while the threads finish."""
        while self.alive() and self._left() > 0:
            await asyncio.sleep(_POLL)
        return self.alive()

    def _left(self) -> float:
        assert self.deadline is not None, "stop() first"
        return self.deadline - time.monotonic()

    # -- the loops ----------------------------------------------------------------------

    def _evaluating(self) -> None:
        """Judge the alert rules on a schedule (every `[alerts] evaluate_every`)."""
        engine = AlertEngine(self.ctx.gate)
        while not self.stopping.is_set():
            try:
                engine.evaluate()
            except SpendgateError as exc:
                log.error("alert rules not evaluated: %s", exc)
            except Exception:  # a bug must not stop alerting for good: logged, tried again
                log.exception("alert rules not evaluated")
            self.stopping.wait(self.ctx.gate.config.alerts.evaluate_every.total_seconds())

    def _dispatching(self) -> None:
        """Deliver the outbox: a round a second, more at once while there is a backlog."""
        dispatcher = Dispatcher(self.ctx.gate)
        while not self.stopping.is_set():
            busy = False
            try:
                done = dispatcher.run_once(self.stopping)
                # Something was due: look again at once, there may be a backlog.
                busy = done.delivered + done.failed + done.dead > 0
            except SpendgateError as exc:
                log.error("notifications not dispatched: %s", exc)
            except Exception:  # a bug must not stop delivery for good: logged, tried again
                log.exception("notifications not dispatched")
            if not busy:
                self.stopping.wait(self.ctx.settings.dispatch_interval)

    def _reporting(self) -> None:
        """Write each month's report once it is over (looked for every hour)."""
        folder = self.ctx.settings.report_dir
        assert folder is not None
        while not self.stopping.is_set():
            try:
                written = write_monthly(self.ctx, Path(folder), self.ctx.settings.report_channel)
                if written:
                    log.info("monthly report written: %s", ", ".join(str(p) for p in written))
            except (SpendgateError, OSError) as exc:
                log.error("monthly report not written: %s", exc)
            except Exception:  # a bug must not stop the reports for good: logged, tried again
                log.exception("monthly report not written")
            self.stopping.wait(REPORT_EVERY)
