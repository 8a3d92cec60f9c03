"""Shared fixtures: a frozen clock, and the table of backends every contract test runs on.

PostgreSQL tests use `SPENDGATE_TEST_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`); each test session works in a schema of its own,
dropped at the end, so runs on one server never see each other. Without a server the
PostgreSQL tests are skipped, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import random
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from spendgate import Config, Gate
from spendgate.config import parse
from spendgate.store import open_store
from spendgate.store.base import Store
from spendgate.testing import FrozenClock

BACKENDS = ("memory", "sqlite", "postgresql")
POSTGRES_URL = os.environ.get(
    "SPENDGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
POSTGRES_TABLES = (
    "budget_buckets",
    "reservations",
    "events",
    "quota_usage",
    "rollups",
    "api_keys",
    "definitions",
    "audit_log",
    "alerts",
    "outbox",
    "heartbeats",
)

# litellm, where the LLM tests import it, must use the table it ships: never the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


_POSTGRES_FIXTURES = {"postgres_url", "postgres_schema"}
_POSTGRES_WORDS = ("POSTGRES_URL", "postgres_or_skip", "postgresql://")


@functools.cache
def _mentions_postgres(code: object) -> bool:
    try:
        source = inspect.getsource(code)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return any(word in source for word in _POSTGRES_WORDS)


def _needs_postgres(item: pytest.Item) -> bool:
    """Whether a test talks to PostgreSQL: through the fixtures, a `postgresql` backend
    parameter, its module (`test_postgres*.py`), its own code or a fixture's."""
    if _POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in map(str, callspec.params.values()):
        return True
    if item.path.name.startswith("test_postgres"):
        return True
    code = [getattr(item, "cls", None) or getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        code += [defs[-1].func for defs in info.name2fixturedefs.values() if defs]
    return any(_mentions_postgres(c) for c in code if c is not None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs PostgreSQL `postgres`: `pytest -m "not postgres"` runs the
    rest on a machine without one."""
    for item in items:
        if _needs_postgres(item):
            item.add_marker(pytest.mark.postgres)


def backend_url(backend: str, tmp_path: Path) -> str:
    """A fresh store URL of the given backend (PostgreSQL: see `postgres_url`)."""
    if backend == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'spendgate.db'}"


PATIENT = 30
"""Seconds a PostgreSQL store waits for the server in tests that are not about its timeout.
The default, 1.5 s, is for production (an unreachable store fails closed at once); on a
loaded CI machine a busy pool can take longer than that to hand over a connection, which
failed a state-machine run with `PoolTimeout` beside CPU hogs."""


def with_schema(url: str, schema: str, *, timeout: float | None = None) -> str:
    """`url` with spendgate's `timeout` option, when given, and its `schema` option set (last,
    as tests read it back from the end)."""
    if timeout is not None:
        url = f"{url}{'&' if '?' in url else '?'}timeout={timeout:g}"
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def postgres_or_skip() -> None:
    """Skip when no PostgreSQL answers (fail under CI=true, where one must)."""
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc).strip()[:120]}); "
            "start a server or point SPENDGATE_TEST_POSTGRES_URL at one to run these tests"
        )
        skip_unless_ci(message)


def skip_unless_ci(message: str) -> NoReturn:
    """Skip the test for what this machine lacks; fail under CI=true, where it must be."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of Prometheus's `promtool` (Debian's `prometheus` package, which `make
    system` installs); without it the test skips, or fails under CI=true."""
    found = shutil.which("promtool")
    if found is None:
        skip_unless_ci(
            "promtool is missing: `make system` (apt-get install prometheus) installs it"
        )
    return found


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """This session's schema on the test server, dropped at the end."""
    postgres_or_skip()
    schema = f"sgtest_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def postgres_url(postgres_schema: str) -> str:
    """A PostgreSQL store URL on an empty, migrated schema (this session's, emptied)."""
    url = with_schema(POSTGRES_URL, postgres_schema, timeout=PATIENT)
    open_store(url).close()  # creates and migrates the schema the first time
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = ", ".join(f"{postgres_schema}.{t}" for t in POSTGRES_TABLES)
        conn.execute(f"TRUNCATE {tables}")
    return url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once per backend."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
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


def in_a_forked_child(work: Callable[..., None], *args: object) -> Any:
    """What `work(*args, out)`, run in a forked child, puts on the queue `out` (the child
    is waited for)."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=work, args=(*args, out))
    child.start()
    answer = out.get(timeout=30)
    child.join(30)
    return answer


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


def random_event(
    rng: random.Random, request_id: str, at: datetime, services: Sequence[str]
) -> dict[str, object]:
    """One event of the analytics and report tests' random traffic: google_maps (paid,
    sometimes at an explicit $0.02), osm_tiles (free, twice as often) or legacy (unpriced),
    with random outcome, cache hits, batching, quality and processing time."""
    source = rng.choice(("google_maps", "osm_tiles", "osm_tiles", "legacy"))
    event: dict[str, object] = {
        "request_id": request_id,
        "service": rng.choice(services),
        "source": source,
        "time": at,
        "success": rng.random() < 0.9,
        "cache_hits": rng.choice((0, 0, 1)),
        "batch_processing": rng.random() < 0.25,
        "quality_score": round(rng.random(), 2),
        "processing_time": rng.random() * 3,
    }
    if source == "google_maps" and rng.random() < 0.3:
        event["cost"] = "0.02"
    return event
