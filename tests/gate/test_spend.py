"""`spend()` and `metered()`, the context manager and decorator around one paid call, on every
backend: a hold before the call, what it cost committed after it, the hold released on any
exception or cancellation."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from spendgate import BudgetExceededError, Gate, ValidationError, to_nanos
from spendgate.config import parse
from spendgate.testing import FrozenClock
from tests.gate.test_gate import reserved, spent


def test_spend_commits_what_the_call_cost(gate: Gate) -> None:
    with gate.spend("svc", "paid_api", "0.05") as call:
        call.set_cost("0.03", quality_score=0.9)
    assert call.result is not None
    assert call.result.cost == to_nanos("0.03")
    assert spent(gate) == Decimal("0.03")
    assert gate.events()[0].quality_score == 0.9


def test_spend_refuses_before_the_call(gate: Gate) -> None:
    gate.record("svc", "paid_api", cost="0.99")
    calls = []
    with pytest.raises(BudgetExceededError), gate.spend("svc", "paid_api", "0.05"):
        calls.append("made")
    assert calls == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_spend_releases_on_any_exception(gate: Gate, error: type[BaseException]) -> None:
    held = []

    def call_that_fails() -> None:
        with gate.spend("svc", "paid_api", "0.50"):
            held.append(reserved(gate))
            raise error

    with pytest.raises(error):
        call_that_fails()
    assert held == [to_nanos("0.50")]
    assert reserved(gate) == 0
    assert spent(gate) == 0
    assert gate.events() == []


def test_metered_decorator(gate: Gate) -> None:
    @gate.metered("svc", "paid_api", cost=lambda result: result["cost"])
    def geocode(address: str) -> dict[str, str]:
        return {"address": address, "cost": "0.04"}

    assert geocode("1 Main St")["address"] == "1 Main St"
    assert spent(gate) == Decimal("0.04")


def test_async_spend_and_decorator(gate: Gate) -> None:
    @gate.metered("svc", "paid_api")
    async def fetch() -> str:
        await asyncio.sleep(0)
        return "tile"

    async def main() -> None:
        assert await fetch() == "tile"
        async with gate.spend("svc", "paid_api", "0.02") as call:
            call.set_cost("0.02")

    asyncio.run(main())
    assert spent(gate) == Decimal("0.03")


def test_cancelled_async_call_releases_its_hold(gate: Gate) -> None:
    async def main() -> None:
        entered = asyncio.Event()

        async def paid_call() -> None:
            async with gate.spend("svc", "paid_api", "0.40"):
                entered.set()
                await asyncio.Event().wait()  # the API never answers

        task = asyncio.create_task(paid_call())
        await entered.wait()
        assert reserved(gate) == to_nanos("0.40")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert reserved(gate) == 0
    assert spent(gate) == 0


def test_cancelled_while_reserving_releases_the_hold_it_took(gate: Gate) -> None:
    async def main() -> None:
        # Cancel at once: the reservation runs in a worker thread and lands after the cancel.
        task = asyncio.create_task(gate.spend("svc", "paid_api", "0.40").__aenter__())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Wait for the worker thread to finish, then let its done-callback run on the loop.
        await asyncio.get_running_loop().shutdown_default_executor()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert reserved(gate) == 0


def test_a_free_call_passes_a_budget_that_is_over_its_cap(gate: Gate) -> None:
    gate.record("svc", "paid_api", cost="1.20")  # unreserved spend overshot the limit
    with gate.spend("svc", "free_api") as call:
        call.set_cost("0")
    assert call.decision is not None
    assert call.decision.approved
    with pytest.raises(BudgetExceededError):
        gate.spend("svc", "paid_api").__enter__()


def test_set_cost_checks_its_values_inside_the_block(gate: Gate) -> None:
    with pytest.raises(ValidationError, match="quality_score"), gate.spend("svc", "paid_api"):
        raise_from_set_cost(gate)
    assert gate.status()[0].reserved == 0


def raise_from_set_cost(gate: Gate) -> None:
    with gate.spend("svc", "paid_api") as call:
        call.set_cost("0.01", quality_score=-0.5)


def test_spend_on_a_tiered_price_uses_the_free_quota(store_url: str, clock: FrozenClock) -> None:
    cfg = parse(
        {
            "sources": {"geo": {"tiers": {"request": [{"up_to": 2, "price": "0"},
                                                      {"price": "0.005"}]}}},
            "budgets": [{"name": "daily", "limit": "10"}],
        }
    )  # fmt: skip
    with Gate.open(store_url, config=cfg, clock=clock) as gate:
        costs = []
        for _ in range(3):
            with gate.spend("svc", "geo") as call:
                pass
            assert call.result is not None
            costs.append(call.result.cost)
        assert costs == [0, 0, to_nanos("0.005")]
        assert gate.status()[0].spent_nanos == to_nanos("0.005")
