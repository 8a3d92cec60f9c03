"""The evaluator: reads the figures the rules judge, fires and resolves alerts in the store,
and enqueues the notifications that are due. Run by the server on a schedule and by
`spendgate alerts check` (for cron).

Several evaluators (server processes) may run on one store: alerts are named by what they
are about and the period they were judged in, and each notification round is enqueued once
(`Store.enqueue`), so none is sent twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from spendgate.alerts import notices, rules
from spendgate.alerts.rules import BudgetStanding, Finding, Snapshot
from spendgate.errors import StoreError
from spendgate.gate import Gate
from spendgate.health import Outage
from spendgate.redaction import redact
from spendgate.rollups import Tally, total
from spendgate.settings import AlertSettings
from spendgate.store.base import Alert, AlertStore, LedgerStore, Notification
from spendgate.windows import from_micros, to_micros

log = logging.getLogger("spendgate.alerts")
BASELINE_DAYS = 7
KNOWN_FOR = timedelta(days=7)  # a service seen within this long is expected to keep talking


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation did."""

    fired: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()
    enqueued: int = 0


class AlertEngine:
    """Evaluates the rules against one gate's store."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._outages_seen = gate.outages["approved"]
        self.unreachable: Outage | None = None
        """An outage not yet reported: since when, and why, the store did not answer (an
        alert cannot be stored then: it is raised once the store answers again)."""

    @property
    def _alerts(self) -> AlertStore:
        """The gate's store as the evaluator writes it: alerts, their rounds, heartbeats.
        (The figures the rules judge are read from its ledger, `_ledger`.)"""
        return self.gate.store

    @property
    def _ledger(self) -> LedgerStore:
        """The gate's store as the evaluator reads figures from it: rollups' tallies."""
        return self.gate.store

    @property
    def settings(self) -> AlertSettings:
        """The alert settings in effect (the file's, with changes made at run time)."""
        return self.gate.config.alerts

    def evaluate(self) -> Outcome:
        """Judge every rule now, fire and resolve alerts, enqueue due notifications.

        A store that does not answer raises `StoreError` (and is logged); the outage becomes a
        critical `store_unreachable` alert once it answers again. So do the outages the
        gate's own calls ran into meanwhile (`gate.health`): an outage between two
        evaluations is reported too. Reservations whose outcome the outage left unknown are
        released (`Gate.resolve_unknown()`).
        """
        try:
            return self._evaluate()
        except StoreError as exc:
            seen = Outage(self.gate.clock(), exc.reason)
            self.unreachable = seen.merged(self.unreachable)
            # The alert and this line say what kind of failure it was; the error's text
            # (the server, the driver's words) only at DEBUG, redacted.
            log.critical("alerts: the store does not answer (%s)", exc.reason)
            log.debug("alerts: the store does not answer: %s", redact(str(exc)))
            raise

    def _evaluate(self) -> Outcome:
        self.gate.refresh()
        now = self.gate.clock()
        now_us = to_micros(now)
        store = self._alerts
        open_alerts = store.alerts(state="firing", limit=10_000)
        firing = {(a.rule, a.scope): a for a in open_alerts}
        fired: list[str] = []
        resolved: list[str] = []
        # The store answers: an outage seen meanwhile, by this evaluator or the gate, is over.
        taken = self.gate.health.take(now)
        if taken is not None:
            self.unreachable = taken.merged(self.unreachable)
        if self.unreachable is not None:
            self._report(self.unreachable, firing, now, fired, resolved)
            self.unreachable = None
        self.gate.resolve_unknown()
        # Alerts of a window (a budget's lines, its forecast) end with it: every one of them
        # (a budget has an alert per line of its ladder, all of one rule and scope).
        for alert in open_alerts:
            over = alert.rule in ("budget", "forecast") and self._window_over(alert, now)
            if over and store.resolve(alert.alert_id, now_us) is not None:
                resolved.append(alert.alert_id)
            if over and firing.get((alert.rule, alert.scope)) is alert:
                del firing[(alert.rule, alert.scope)]
        for finding in rules.findings(self.snapshot(now), self.settings):
            current = firing.get((finding.rule, finding.scope))
            if finding.judgement == "active" and current is None:
                if store.fire(_alert(finding, now_us)):
                    fired.append(finding.alert_id)
            elif (
                finding.judgement == "clear"
                and current is not None
                and store.resolve(current.alert_id, now_us, _resolved_value(finding)) is not None
            ):
                resolved.append(current.alert_id)
        return Outcome(tuple(fired), tuple(resolved), self.enqueue_due(now_us, resolved))

    def _report(
        self,
        outage: Outage,
        firing: dict[tuple[str, str], Alert],
        now: datetime,
        fired: list[str],
        resolved: list[str],
    ) -> None:
        """Fire the `store_unreachable` alert of an outage that is over.

        One alert per outage, however many evaluators saw it: an alert still firing whose
        span overlaps this one reports the same outage (another server on this store fired
        it). One that does not is an earlier outage: it is resolved, and this one fired
        (else an outage soon after another would be refused as a repeat).
        """
        until = outage.until or now
        key = ("store_unreachable", "all")
        current = firing.get(key)
        if current is not None and _overlaps(current, outage.since, until):
            return
        if current is not None:
            if self._alerts.resolve(current.alert_id, to_micros(now)) is not None:
                resolved.append(current.alert_id)
            del firing[key]
        alert = Alert(
            alert_id=f"store_unreachable:all:{to_micros(outage.since)}",
            rule="store_unreachable",
            scope="all",
            severity="critical",
            state="firing",
            fired_at=to_micros(now),
            value=f"{(until - outage.since).total_seconds():.0f}s",
            threshold="0s",
            detail={
                "since": outage.since.isoformat(),
                "until": until.isoformat(),
                "error": outage.error,
                "denied": outage.denied,
                "approved_unchecked": outage.approved,
            },
        )
        if self._alerts.fire(alert):
            fired.append(alert.alert_id)

    def _window_over(self, alert: Alert, now: datetime) -> bool:
        """Whether a budget alert's window has ended (or its budget is gone)."""
        budget = next((b for b in self.gate.config.budgets if b.name == alert.scope), None)
        if budget is None or alert.window_start is None:
            return True
        _, end = budget.window.bounds(from_micros(alert.window_start))
        return now >= end

    def enqueue_due(self, now_us: int, resolved: Sequence[str] = ()) -> int:
        """Enqueue every notification round that is due (of every firing alert, and of the
        alerts this evaluation resolved); how many notifications."""
        config = self.gate.config  # one reading: the channels and the alerts' budgets
        s = config.alerts
        count = 0
        store = self._alerts
        candidates = store.alerts(state="firing", limit=10_000)
        candidates += [a for a in map(store.alert, resolved) if a is not None]
        for alert in candidates:
            step = notices.due(alert, now_us, s.repeat_every)
            if step is None:
                continue
            round_, kind = step
            messages: list[Notification] = []
            for channel in notices.channels_for(alert, s):
                message = notices.render(alert, kind, round_, channel, config)
                messages.append(
                    Notification(
                        message.key, alert.alert_id, channel.name, message.payload(), now_us
                    )
                )
            if store.enqueue(alert.alert_id, round_, messages, now_us):
                count += len(messages)
        return count

    # -- the figures the rules judge ----------------------------------------------------------

    def snapshot(self, now: datetime) -> Snapshot:
        """Read what the scheduled rules judge, in a few rollup reads."""
        s = self.settings
        gate = self.gate
        now_us = to_micros(now)
        hour = now.replace(minute=0, second=0, microsecond=0)
        spans = [
            (now - s.window, now),
            (hour, now),
            (now - KNOWN_FOR, now),
            *(
                (hour - timedelta(days=d), hour - timedelta(days=d) + timedelta(hours=1))
                for d in range(1, BASELINE_DAYS + 1)
            ),
        ]
        offline = s.service_offline_after
        if offline is not None:
            spans.append((now - offline, now))
        limited = {
            name: p.rate_limit for name, p in gate.config.prices.sources.items() if p.rate_limit
        }
        spans += [(now - limit.per, now) for limit in limited.values()]
        rows = self._ledger.tallies([(to_micros(a), to_micros(b) + 1) for a, b in spans])
        cells: list[dict[tuple[str, str], Tally]] = [{} for _ in spans]
        for i, service, source, tally in rows:
            cells[i][(service, source)] = tally
        recent, this_hour, known = cells[0], cells[1], cells[2]
        baseline = [total(c).cost for c in cells[3 : 3 + BASELINE_DAYS]]
        at = 3 + BASELINE_DAYS
        last_seen: dict[str, datetime] = {}
        if offline is not None:
            active = {sv for sv, _ in cells[at]}
            at += 1
            beats = self._alerts.heartbeats()
            for service in {sv for sv, _ in known} | set(beats):
                heard = from_micros(beats[service]) if service in beats else None
                if service in active:
                    last_seen[service] = now
                elif heard is not None and now - heard < KNOWN_FOR:
                    last_seen[service] = heard
                elif heard is None:
                    last_seen[service] = now - offline  # quiet for at least that long
        source_requests = {}
        for (name, limit), found in zip(limited.items(), cells[at:], strict=True):
            used = sum(t.requests for (_, so), t in found.items() if so == name)
            source_requests[name] = (used, limit)
        outages = gate.outages["approved"]
        fail_open, self._outages_seen = outages - self._outages_seen, outages
        return Snapshot(
            now=now,
            period=rules.period_of(now_us, s.evaluate_every),
            recent=total(recent),
            hour_cost=total(this_hour).cost,
            hour_fraction=(now - hour) / timedelta(hours=1),
            baseline=baseline,
            budgets=self._standings(now, recent, s),
            last_seen=last_seen,
            source_requests=source_requests,
            unpriced_recent=total(recent).unpriced,
            fail_open=fail_open,
        )

    def _standings(
        self, now: datetime, recent: dict[tuple[str, str], Tally], s: AlertSettings
    ) -> list[BudgetStanding]:
        seconds = s.window.total_seconds()
        out = []
        for status in self.gate.status(now):
            b = status.budget
            if b.window.kind == "rolling":
                continue  # a rolling window never ends: nothing to forecast to
            scope = b.scope
            if scope.kind == "label":  # labels are not in the rollups: their pace is overstated
                cost = total(recent).cost
            else:
                cost = sum(t.cost for (sv, so), t in recent.items() if scope.matches(sv, so))
            out.append(
                BudgetStanding(
                    b,
                    status.balance.used,
                    to_micros(status.window_start),
                    status.window_end,
                    cost / seconds if seconds else 0.0,
                )
            )
        return out


def _resolved_value(finding: Finding) -> str | None:
    """The value an alert resolves with: the figure now, except that an outage's alert keeps
    how long the outage lasted (`None` leaves the stored value)."""
    return None if finding.rule == "store_unreachable" else finding.value


def _overlaps(alert: Alert, since: datetime, until: datetime) -> bool:
    """Whether a `store_unreachable` alert's outage overlaps `since`..`until`."""
    try:
        start = datetime.fromisoformat(str(alert.detail["since"]))
        end = datetime.fromisoformat(str(alert.detail["until"]))
    except (KeyError, TypeError, ValueError):
        return False
    return start <= until and since <= end


def _alert(finding: Finding, now_us: int) -> Alert:
    return Alert(
        alert_id=finding.alert_id,
        rule=finding.rule,
        scope=finding.scope,
        severity=finding.severity,
        state="firing",
        fired_at=now_us,
        value=finding.value,
        threshold=finding.threshold,
        window_start=finding.period,
        detail=dict(finding.detail),
    )
