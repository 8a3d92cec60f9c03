"""Metering a streamed feed by data volume and connected time (the second seed).

A `StreamMeter` watches one paid stream (a market-data feed priced per MB and per connected
hour). `record(nbytes)` per message is a few integer operations under a lock: the meter
draws on a local *lease*, a hold on the budget taken through the gate, and settles the
usage in batches (one store round trip per batch, not per message). When the budget will not
grant another lease, the meter is `stopped`: `should_continue()` turns false, and the caller
stops the stream. Levels follow each budget's own ladder (its `warn`, `degrade` and `stop`
rungs: the seed's `streaming` budget warns at 0.6 and stops at 0.8), the highest any budget
has reached, with hysteresis: once raised, a level only falls back to `normal` below
`restore_below` (0.3).

```python
meter = StreamMeter(gate, "mbo_stream", "databento_mbo")
meter.start()
for message in feed:
    meter.record(len(message))
    if not meter.should_continue():
        break
meter.stop()
```
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from spendgate.budgets import Budget, BudgetStatus
from spendgate.errors import BudgetExceededError, ValidationError
from spendgate.gate import Gate
from spendgate.markets import DAILY_HALTS, MarketHours, MarketState, TradingDays, trading_days
from spendgate.money import Nanos, from_nanos, money_text, to_nanos
from spendgate.store.stream_days import STREAM_UNITS, TRADING_DATE
from spendgate.windows import duration_micros, to_micros

StreamLevel = Literal["normal", "warn", "degraded", "stopped"]
LEVELS: tuple[StreamLevel, ...] = ("normal", "warn", "degraded", "stopped")
STEPS: tuple[StreamLevel, StreamLevel, StreamLevel] = ("warn", "degraded", "stopped")
"""The levels a ladder's warn, degrade and stop lines raise a meter to."""
DEFAULT_RESTORE_BELOW = Decimal("0.3")
DEFAULT_FLUSH_EVERY = 10_000  # messages between settlements, whatever their size
BYTES_PER_MB = 2**20  # the seed's bytes / 1024 / 1024
__all__ = [
    "DAILY_HALTS",
    "STREAM_UNITS",
    "DailyUsage",
    "MarketHours",
    "MarketState",
    "StreamMeter",
    "UsageStats",
    "usage_history",
]

LevelCallback = Callable[[StreamLevel, StreamLevel], Any]


@dataclass(frozen=True, slots=True)
class UsageStats:
    """The seed's `get_usage_stats()`, as of a time (money in nano-units)."""

    events_processed: int
    bytes_processed: int
    estimated_cost: Nanos
    budget_remaining: Nanos
    runtime_hours: float
    level: StreamLevel
    as_of: datetime

    @property
    def cost_per_event(self) -> Nanos:
        """Estimated cost over events processed (over one when there were none)."""
        return self.estimated_cost // max(self.events_processed, 1)

    @property
    def data_efficiency(self) -> float:
        """Events per KB, as in the seed."""
        return self.events_processed / max(self.bytes_processed / 1024, 1)

    def to_dict(self) -> dict[str, Any]:
        """The seed's fields, JSON-ready."""
        return {
            "events_processed": self.events_processed,
            "bytes_processed": self.bytes_processed,
            "estimated_cost": money_text(self.estimated_cost),
            "budget_remaining": money_text(self.budget_remaining),
            "runtime_hours": self.runtime_hours,
            "cost_per_event": money_text(self.cost_per_event),
            "data_efficiency": self.data_efficiency,
            "level": self.level,
            "as_of": self.as_of.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One trading day of the seed's `usage_monitoring` table (the store's view of the same
    name): `id` and `created_at` are its first event's row id and time."""

    date: date
    events_processed: int
    data_bytes: int
    estimated_cost: Nanos
    connection_hours: float
    id: int
    created_at: datetime


class StreamMeter:
    """Meter one streamed source for one service against every budget that applies to it."""

    def __init__(
        self,
        gate: Gate,
        service: str,
        source: str,
        *,
        lease: Decimal | str | None = None,
        thresholds: tuple[Decimal, Decimal, Decimal] | None = None,
        restore_below: Decimal = DEFAULT_RESTORE_BELOW,
        on_level_change: LevelCallback | None = None,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        market: MarketHours | None = None,
    ) -> None:
        self.gate = gate
        self.binding = gate.bind(service, source)
        price = self.binding.price(self._now_us()).price
        units = set(price.units) if price is not None else set()
        if price is None or not units or not units <= {"MB", "hour"}:
            raise ValidationError(
                "source",
                source,
                'a stream priced per MB and/or per hour, e.g. { MB = "0.01", hour = "1.00" }',
            )
        settings = gate.config.streams
        self.monitoring = settings.monitoring
        self._ttl = gate.config.reservation_ttl
        self.lease_size = to_nanos(settings.lease if lease is None else lease, "lease")
        if self.lease_size <= 0:
            raise ValidationError("lease", lease, "an amount above zero")
        self._budgets: tuple[Budget, ...] = self.binding.budgets(None)
        if thresholds is None:
            # Each budget by its own ladder: the meter warns, degrades and stops where the
            # budget says it does.
            self._lines = {b.name: _ladder_of(b) for b in self._budgets}
        else:
            warn, degraded, stopped = (Decimal(t) for t in thresholds)
            if not 0 < restore_below < warn < degraded < stopped <= 1:
                raise ValidationError(
                    "thresholds",
                    [str(restore_below), str(warn), str(degraded), str(stopped)],
                    "0 < restore_below < warn < degraded < stopped <= 1",
                )
            self._lines = {b.name: (warn, degraded, stopped) for b in self._budgets}
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValidationError("flush_every", flush_every, "a whole number of messages >= 1")
        self._restore_below = restore_below
        self._on_level_change = on_level_change
        self._flush_every = flush_every
        self.market = market
        # Usage is kept by trading day: the market's, else the configured calendar's.
        self.days: TradingDays = market if market is not None else trading_days(settings)
        self._day: date | None = None
        self._day_ends = datetime.max.replace(tzinfo=UTC)
        # A byte's price in nano-units, kept as a fraction (per MB / 2^20) to stay exact.
        per = dict.fromkeys(units, 0)
        self._mb_nanos = price.cost({**per, "MB": 1}) if "MB" in units else 0
        self._hour_nanos = price.cost({**per, "hour": 1}) if "hour" in units else 0
        self._lock = threading.Lock()
        self._level: StreamLevel = "normal"
        self._events = 0
        self._bytes = 0
        self._settled = 0  # nano-units settled by this meter
        self._pending_events = 0
        self._pending_bytes = 0
        self._flush_at_bytes = 0
        self._flush_by = datetime.max.replace(tzinfo=UTC)
        self._lease_id: str | None = None
        self._started: datetime | None = None
        self._connected = False
        self._changes: list[tuple[StreamLevel, StreamLevel]] = []
        self._last_flush: datetime | None = None

    # -- the stream's life ------------------------------------------------------------------

    def start(self) -> None:
        """Connected time starts counting; the first lease is taken."""
        with self._lock:
            if self._connected:
                raise ValidationError("stream", "started", "stop() before starting again")
            now = self.gate.clock()
            self._started = self._last_flush = now
            self._connected = True
            self._day, self._day_ends = self.days.trading_date(now), self.days.trading_day_end(now)
            statuses = self._statuses()
            self._renew(statuses)
            self._update_level(statuses)
        self._tell()

    def stop(self) -> None:
        """Disconnect: settle what is pending, give back the rest of the lease, and stop
        counting connected time. Stopping twice is harmless."""
        with self._lock:
            if self._connected:
                self._flush(final=True)
                self._connected = False
                self._flush_at_bytes = 0  # a late message is settled at once
        self._tell()

    def record(self, nbytes: int) -> None:
        """Count one message of `nbytes` bytes. Cheap: integers under a lock."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValidationError("nbytes", nbytes, "a whole number of bytes, zero or more")
        if self._started is None:
            raise ValidationError("stream", "not started", "start() before record()")
        with self._lock:
            now = self.gate.clock()
            if now >= self._day_ends and self._connected:
                self._flush()  # the trading day ended: its usage is booked on it
            self._events += 1
            self._bytes += nbytes
            self._pending_events += 1
            self._pending_bytes += nbytes
            if (
                self._pending_bytes >= self._flush_at_bytes
                or self._pending_events >= self._flush_every
                or now >= self._flush_by
            ):
                self._flush()
        if self._changes:
            self._tell()

    def flush(self) -> None:
        """Settle pending usage now (data and connected time) and renew the lease.

        A stream that goes quiet should call this now and then (at least every half
        `reservation_ttl`): connected time accrues without messages to notice it.
        """
        with self._lock:
            self._flush()
        self._tell()

    def _tell(self) -> None:
        """Run the level callback for changes made under the lock (it may call the meter)."""
        with self._lock:
            changes, self._changes = self._changes, []
        if self._on_level_change is not None:
            for old, new in changes:
                self._on_level_change(old, new)

    # -- answers ----------------------------------------------------------------------------

    @property
    def level(self) -> StreamLevel:
        """`normal`, `warn`, `degraded` or `stopped`."""
        return self._level

    @property
    def connected(self) -> bool:
        """Whether the stream is started (between `start()` and `stop()`)."""
        return self._connected

    def should_continue(self) -> bool:
        """False once the stream reached its stop line, while it holds no lease (other
        callers hold the room left; `flush()` later asks again), and while its market is
        closed (a running stream stops at the close; `should_start()` is true again at the
        next open)."""
        if self.market is not None and not self.market.is_open(self.gate.clock()):
            return False
        with self._lock:  # never between a settlement and the next lease
            return self._level != "stopped" and (not self.monitoring or self._lease_id is not None)

    def should_start(self, auth: Callable[[], bool] | bool = True) -> bool:
        """The seed's gate for starting a stream: market open, budget left, auth confirmed.

        Asked before `start()` (the seed's order), "budget left" is room under every
        applicable budget's stop line; on a running stream, `should_continue()`."""
        market_open = self.market is None or self.market.is_open(self.gate.clock())
        if not market_open:
            return False
        with self._lock:
            if self._connected or not self.monitoring:
                budget_left = self._level != "stopped" and (
                    not self.monitoring or self._lease_id is not None
                )
            else:
                budget_left = self._room(self._statuses()) > 0
        return budget_left and (auth() if callable(auth) else auth)

    def assert_budget_safe(self) -> None:
        """The seed's check: raise `BudgetExceededError` once the stream's cost (settled and
        pending) has reached an applicable budget's limit, with the numbers. The stop line,
        below the limit, stops the stream first (`should_continue()`); this is the net under
        it."""
        with self._lock:
            pending = self._pending_cost(self.gate.clock())
        statuses = self._statuses()
        for b in self._budgets:
            spent = statuses[b.name].spent_nanos + pending
            if spent >= b.limit:
                raise BudgetExceededError(
                    b.name,
                    from_nanos(0),
                    from_nanos(0),
                    f"{b.window.kind.upper()} BUDGET EXCEEDED: ${money_text(spent)} >= "
                    f"${money_text(b.limit)} (budget {b.name!r}, scope {b.scope})",
                )

    def usage_stats(self) -> UsageStats:
        """The seed's usage statistics for this meter's run."""
        with self._lock:
            now = self.gate.clock()
            pending = self._pending_cost(now)
            _, used, limit = self._tightest()
            started = self._started or now
            until = now if self._connected else (self._last_flush or now)
            return UsageStats(
                events_processed=self._events,
                bytes_processed=self._bytes,
                estimated_cost=self._settled + pending,
                budget_remaining=limit - used - pending,
                runtime_hours=(until - started).total_seconds() / 3600,
                level=self._level,
                as_of=now,
            )

    def history(self, days: int = 30) -> list[DailyUsage]:
        """The seed's daily `usage_monitoring` rows for this source, newest first."""
        return usage_history(
            self.gate, self.binding.source, service=self.binding.service, days=days
        )

    # -- inside the lock ---------------------------------------------------------------------

    def _now_us(self) -> int:
        return to_micros(self.gate.clock())

    def _pending_cost(self, now: datetime) -> Nanos:
        if self._last_flush is None or not self._connected:
            return 0
        seconds = Decimal(duration_micros(now - self._last_flush)) / 1_000_000
        price = self.binding.price(self._now_us()).price
        assert price is not None
        return price.cost({"bytes": self._pending_bytes, "seconds": seconds})

    def _flush(self, *, final: bool = False) -> None:
        now = self.gate.clock()
        if self._started is None:
            raise ValidationError("stream", "not started", "start() before record()")
        while self._connected and now >= self._day_ends:
            # A trading day ended since the last settlement: what was pending (every message
            # came before the end, or record() would have settled it) and the connected time
            # up to the end are booked on that day; an idle stream's later days, connected
            # time only, each on its own.
            self._settle(self._day_ends)
            ended = self._day_ends
            self._day, self._day_ends = (
                self.days.trading_date(ended),
                self.days.trading_day_end(ended),
            )
        self._settle(now)
        statuses = self._statuses()  # read once: a lease does not change what was spent
        if not final and self._connected:
            self._renew(statuses)
        self._update_level(statuses)

    def _settle(self, until: datetime) -> None:
        """Book the pending usage, and the connected time up to `until`, on its trading day:
        against the lease, or (stopped, but data still arrived) truthfully without one."""
        # After stop() no connected time accrues; a message that raced the stop is still
        # booked (against no lease), on the trading day it arrived in.
        elapsed = until - (self._last_flush or until) if self._connected else timedelta(0)
        seconds = Decimal(duration_micros(elapsed)) / 1_000_000
        units: dict[str, Decimal | int | str] = {
            "bytes": self._pending_bytes,
            "seconds": seconds,
            "events": self._pending_events,
        }
        day = self._day if self._connected and self._day else self.days.trading_date(until)
        if self._lease_id is not None:
            cost = self.gate.commit(self._lease_id, units=units).cost or 0
        else:
            labels = {TRADING_DATE: day.isoformat()}
            recorded = self.gate.record(
                self.binding.service, self.binding.source, units=units, labels=labels
            )
            cost = recorded.cost or 0
        self._settled += cost
        self._pending_bytes = self._pending_events = 0
        self._last_flush = until
        self._lease_id = None

    def _renew(self, statuses: dict[str, BudgetStatus]) -> None:
        """Take the next lease: smaller as the budget nears its stop line; none past it."""
        if not self.monitoring:  # COST_MONITORING_ENABLED=false: count, book, never hold
            self._lease_id = None
            self._flush_at_bytes = 2**62
            self._flush_by = self.gate.clock() + timedelta(minutes=5)
            return
        size = min(self.lease_size, self._room(statuses))
        if size <= 0:
            self._lease_id = None
            self._flush_at_bytes = 0
            return
        assert self._day is not None  # set by start()
        decision = self.gate.reserve(
            self.binding.service,
            self.binding.source,
            from_nanos(size),
            priority=True,
            ttl=self._ttl,
            labels={TRADING_DATE: self._day.isoformat()},  # its settlement's trading day
        )
        self._lease_id = decision.reservation_id if decision.approved else None
        # Settle before the data, or the connected time, could spend half the lease each: a
        # settlement then always lands within the hold the budget granted.
        self._flush_at_bytes = (
            size * BYTES_PER_MB // (2 * self._mb_nanos) if self._mb_nanos else 2**62
        )
        now = self.gate.clock()
        self._flush_by = (
            now + timedelta(hours=size / (2 * self._hour_nanos))
            if self._hour_nanos
            else datetime.max.replace(tzinfo=UTC)
        )
        # ...and well before the lease's own time runs out, or it would expire unsettled and
        # its room be given to others while this stream still spends it.
        self._flush_by = min(self._flush_by, now + self._ttl / 2)
        if self._lease_id is None:
            self._flush_at_bytes = 0
            self._flush_by = now

    def _statuses(self) -> dict[str, BudgetStatus]:
        """One reading of every budget, shared by the lease and the level of a settlement."""
        return {s.budget.name: s for s in self.gate.status()}

    def _room(self, statuses: dict[str, BudgetStatus]) -> Nanos:
        """What may still be held before the stop line of every applicable budget, counting
        the holds of other callers (another meter's lease, say)."""
        return min(
            (
                int(b.limit * self._lines[b.name][2]) - statuses[b.name].balance.used
                for b in self._budgets
            ),
            default=self.lease_size,
        )

    def _tightest(
        self, statuses: dict[str, BudgetStatus] | None = None
    ) -> tuple[Budget | None, Nanos, Nanos]:
        """The applicable budget nearest its limit: (budget, spent, limit)."""
        statuses = statuses if statuses is not None else self._statuses()
        best: tuple[Budget | None, Nanos, Nanos] = (None, 0, 2**62)
        best_fraction = Decimal(-1)
        for b in self._budgets:
            status = statuses[b.name]
            fraction = Decimal(status.spent_nanos) / b.limit
            if fraction > best_fraction:
                best, best_fraction = (b, status.spent_nanos, b.limit), fraction
        return best

    def _update_level(self, statuses: dict[str, BudgetStatus]) -> None:
        if not self.monitoring:
            return
        _, spent, limit = self._tightest(statuses)
        fraction = Decimal(spent) / limit
        rank = LEVELS.index
        new: StreamLevel = "normal"
        for b in self._budgets:  # the highest level any budget's own ladder has reached
            used = Decimal(statuses[b.name].spent_nanos) / b.limit
            for line, level in zip(self._lines[b.name], STEPS, strict=True):
                if used >= line and rank(level) > rank(new):
                    new = level
        if rank(new) < rank(self._level) and fraction >= self._restore_below:
            # Hysteresis: falling back, a level holds until usage is below restore_below (a
            # stopped stream may resume, at most degraded, once it is under its stop line).
            new = LEVELS[max(rank(new), min(rank(self._level), rank("degraded")))]
        if new != self._level:
            old, self._level = self._level, new
            self._changes.append((old, new))  # told to the callback once the lock is released


def _ladder_of(budget: Budget) -> tuple[Decimal, Decimal, Decimal]:
    """A budget's warn, degrade and stop lines as the meter's warn, degraded and stopped. A
    rung the budget lacks is no level of its own: no degrade rung, and the meter goes from
    warn to stopped (degraded at the stop line); no stop rung, and it stops at the limit,
    where the gate refuses anyway."""
    rungs = {t.action: t.fraction for t in budget.thresholds}
    stop = rungs.get("stop", Decimal(1))
    degrade = rungs.get("degrade", stop)
    return rungs.get("warn", degrade), degrade, stop


def usage_history(
    gate: Gate, source: str, *, service: str | None = None, days: int = 30
) -> list[DailyUsage]:
    """A streamed source's usage by trading day, newest first: the seed's `usage_monitoring`
    rows (messages, bytes, cost and connected hours) dated from `days` before today's trading
    day on (the seed's `date >= date('now', '-30 days')`), read from the store (on SQL
    stores, its `usage_monitoring` view). For one service, or all of them summed."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise ValidationError("days", days, "a whole number of days from 1 to 3660")
    gate.config.prices.pricing(source)  # an unknown source is an error, not an empty list
    today = trading_days(gate.config.streams).trading_date(gate.clock())
    since = (today - timedelta(days=days)).isoformat()
    per_day: dict[str, DailyUsage] = {}
    for row in gate.store.stream_days(since, source, service):
        seen = per_day.get(row.date)
        per_day[row.date] = DailyUsage(
            date.fromisoformat(row.date),
            row.events_processed + (seen.events_processed if seen else 0),
            row.data_bytes + (seen.data_bytes if seen else 0),
            row.cost + (seen.estimated_cost if seen else 0),
            row.connection_time + (seen.connection_hours if seen else 0.0),
            min(row.id, seen.id) if seen else row.id,
            min(row.created_at, seen.created_at) if seen else row.created_at,
        )
    return sorted(per_day.values(), key=lambda d: d.date, reverse=True)
