"""Shared fixtures: a frozen clock, and the table of backends every contract test runs on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spendgate import Config, Gate
from spendgate.config import parse
from spendgate.store import open_store
from spendgate.store.base import Store
from spendgate.testing import FrozenClock

BACKENDS = ("memory", "sqlite")

# litellm, where the LLM tests import it, must use the table it ships: never the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def backend_url(backend: str, tmp_path: Path) -> str:
    """A fresh store URL of the given backend."""
    if backend == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'spendgate.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once per backend."""
    return backend_url(request.param, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A fresh store, once per backend."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only when the test says so."""
    return FrozenClock()


def small_config(limit: str = "1.00", **budget: object) -> Config:
    """One paid source at $0.01 a request, one free source, one hard daily budget."""
    return parse(
        {
            "sources": {
                "paid_api": {"price": "0.01/request"},
                "free_api": {"price": "free"},
                "legacy": {"unpriced": "allow"},
                "mystery": {},
            },
            "budgets": [{"name": "daily", "limit": limit, **budget}],
        }
    )


@pytest.fixture
def gate(store_url: str, clock: FrozenClock) -> Iterator[Gate]:
    """A gate on a fresh store (once per backend) with `small_config()`."""
    g = Gate.open(store_url, config=small_config(), clock=clock)
    yield g
    g.close()
