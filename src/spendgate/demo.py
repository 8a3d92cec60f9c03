"""The demo workload: the seed's five services, free sources first, paid ones through the gate.

Each simulated request tries the free image sources in order, each with a realistic success
rate; only when all of them fail does it ask the gate for a paid call (Mapbox, then Google).
When the budget refuses, the request ends with the seed's `use_free_sources_only`. Every
request becomes one event, so the figures shown afterwards come from the store.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from spendgate.config import SEED_SOURCES, Config, parse
from spendgate.errors import BudgetExceededError
from spendgate.gate import Gate
from spendgate.testing import FrozenClock

SERVICES = ("scraper", "enrichment", "image_processor", "lead_generator", "ml_inference")
FREE_SOURCES = {
    # source: chance it serves a request
    "extended_cache": 0.35,
    "openstreetmap_tiles": 0.30,
    "local_super_resolution": 0.20,
    "geographic_batch": 0.15,
    "synthetic_generation": 0.10,
}
PAID_SOURCES = ("mapbox_satellite", "google_maps_optimized")  # cheapest first
PAID_SUCCESS = 0.97


def demo_config() -> Config:
    """The seed's sources and a small daily budget, so a short run shows every decision."""
    return parse(
        {
            "sources": SEED_SOURCES,
            "budgets": [
                {
                    "name": "daily",
                    "limit": "0.60",
                    "emergency": "0.20",
                    "thresholds": {"warn": 0.8, "stop": 1.0},
                },
                {
                    "name": "enrichment",
                    "limit": "0.10",
                    "scope": "service:enrichment",
                    "thresholds": {"warn": 0.6, "degrade": 0.7, "stop": 1.0},
                },
            ],
        }
    )


@dataclass
class Tally:
    """What the demo saw happen, counted independently of the store."""

    decisions: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, decision: str | None, served_by: str) -> None:
        """Count one request's outcome."""
        with self.lock:
            if decision is not None:
                self.decisions[decision] += 1
            self.served_by[served_by] += 1


def one_request(gate: Gate, rng: random.Random, tally: Tally, n: int) -> None:
    """Serve one request free-first; pay only if the budget allows."""
    service = SERVICES[n % len(SERVICES)]
    attempted: list[str] = []
    fallbacks: list[tuple[str, str]] = []
    for source, chance in FREE_SOURCES.items():
        attempted.append(source)
        if rng.random() < chance:
            gate.record(
                service,
                source,
                sources_used=[source],
                free_sources_attempted=attempted,
                fallbacks_triggered=fallbacks,
                cache_hits=int(source == "extended_cache"),
                quality_score=round(rng.uniform(0.7, 0.95), 2),
                processing_time=round(rng.uniform(0.05, 0.4), 3),
            )
            tally.add(None, "free")
            return
        fallbacks.append((source, "no imagery for this location"))
    emergency = rng.random() < 0.02
    for source in PAID_SOURCES:
        try:
            with gate.spend(service, source, emergency=emergency, priority=n % 7 == 0) as call:
                ok = rng.random() < PAID_SUCCESS
                call.set_cost(
                    None if ok else "0",
                    success=ok,
                    failure_reason=None if ok else "upstream 503",
                    sources_used=[source] if ok else [],
                    free_sources_attempted=attempted,
                    paid_apis_used=[source],
                    fallbacks_triggered=fallbacks,
                    quality_score=0.97 if ok else None,
                )
        except BudgetExceededError as refused:
            # The request still happened: it is one failed event, so the free-source success
            # rate counts it.
            gate.record(
                service,
                attempted[-1],
                success=False,
                failure_reason=f"free sources failed; paid refused by {refused.budget}",
                free_sources_attempted=attempted,
                fallbacks_triggered=fallbacks,
            )
            tally.add("denied", "refused: use_free_sources_only")
            return
        assert call.decision is not None
        tally.add(call.decision.status, source if ok else "failed")
        if ok:
            return
        fallbacks.append((source, "upstream 503"))


def run(
    gate: Gate,
    clock: FrozenClock,
    requests: int,
    *,
    seed: int = 7,
    workers: int = 8,
    progress: Callable[[int], Any] | None = None,
) -> Tally:
    """Run `requests` simulated requests on `workers` threads, moving the clock as they go."""
    tally = Tally()
    step = timedelta(hours=14) / max(requests, 1)  # a working day, compressed

    def job(n: int) -> None:
        one_request(gate, random.Random(seed * 1_000_003 + n), tally, n)
        clock.advance(step)
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(job, range(requests)))
    return tally


def start_of_today(now: datetime | None = None) -> datetime:
    """08:00 UTC today: the simulated day starts at the office."""
    now = now or datetime.now(UTC)
    return now.replace(hour=8, minute=0, second=0, microsecond=0)
