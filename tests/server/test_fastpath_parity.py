"""The event fast path (`server/fastpath.py`) answers exactly as the full route would.

A table of `POST /api/events` requests (valid ones, invalid bodies, missing and wrong keys,
a key limited to a service, a repeated id, a store outage) goes, in order, to two apps over
two identical fresh SQLite stores: one with the fast path on, one with it off
(`ServerSettings.fast_path`). Each answer's status, headers and body must be the same, the
two stores must end holding the same events, and each row says whether the fast path
answered it itself or handed it to the full route, so that the comparison cannot pass
vacuously (a fast path that answered nothing would also "agree").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from spendgate import Gate
from spendgate.keys import KeyRing
from spendgate.server import ServerSettings, create_app
from spendgate.server.fastpath import PATH, EventFastPath
from spendgate.testing import FrozenClock
from tests.conftest import small_config
from tests.serving import Keys, make_keys, running

FAST = "fast path"
FULL = "full route"


@dataclass(frozen=True)
class Row:
    """One request of the table and what must become of it."""

    name: str
    body: dict[str, Any] | bytes
    key: str | None = "write"
    """Which token (a `Keys` field, or a wrong one `token()` makes); `None`: no header."""
    scheme: str = "Bearer"
    status: int = 201
    answered_by: str = FAST
    headers: dict[str, str] = field(default_factory=dict)


def event(request_id: str, **fields: Any) -> dict[str, Any]:
    return {"service": "scraper", "source": "paid_api", "request_id": request_id, **fields}


ROWS = (
    Row("valid", event("e1")),
    Row(
        "valid, every field",
        event(
            "e2",
            cost="0.25",
            time="2026-01-02T03:04:05+01:00",
            labels={"team": "maps"},
            emergency=True,
            success=False,
            failure_reason="timeout",
            sources_used=["paid_api"],
            free_sources_attempted=["free_api"],
            paid_apis_used=["paid_api"],
            fallbacks_triggered=[["free_api", "empty"]],
            cache_hits=2,
            batch_processing=True,
            quality_score=0.5,
            processing_time=1.25,
        ),
    ),
    Row("valid, a free source", event("e3", source="free_api")),
    Row("valid, an unpriced source allowed", event("e4", source="legacy")),
    Row(
        "valid, a charset in the media type",
        event("e5"),
        headers={"content-type": "application/json; charset=utf-8"},
    ),
    Row("repeated id, same payload", event("e1"), status=200),
    Row(
        "repeated id, another payload", event("e1", source="free_api"), status=409, answered_by=FULL
    ),
    Row("invalid: no service", {"source": "paid_api"}, status=422, answered_by=FULL),
    Row("invalid: cost not money", event("bad1", cost="1.2.3"), status=422, answered_by=FULL),
    Row("invalid: unknown field", event("bad2", colour="red"), status=422, answered_by=FULL),
    Row("invalid: not JSON", b'{"service": "scraper",', status=422, answered_by=FULL),
    Row(
        "refused: a source with no price",
        event("bad3", source="mystery"),
        status=422,
        answered_by=FULL,
    ),
    Row(
        "refused: dated ahead of the clock",
        event("bad4", time="2026-01-05T12:05:00.000001Z"),  # the clock: 12:00, 5 min allowed
        status=422,
        answered_by=FULL,
    ),
    Row("valid, dated at the clock's allowance", event("e6", time="2026-01-05T13:05:00+01:00")),
    Row("no key", event("k1"), key=None, status=401, answered_by=FULL),
    Row("not Bearer", event("k2"), scheme="Basic", status=401, answered_by=FULL),
    Row("Bearer, no token", event("k3"), key="empty", status=401, answered_by=FULL),
    Row("wrong key: malformed", event("k4"), key="malformed", status=401, answered_by=FULL),
    Row("wrong key: unknown id", event("k5"), key="unknown", status=401, answered_by=FULL),
    Row("wrong key: wrong secret", event("k6"), key="wrong_secret", status=401, answered_by=FULL),
    Row("wrong key: revoked", event("k7"), key="revoked", status=401, answered_by=FULL),
    Row("wrong key: read scope", event("k8"), key="read", status=403, answered_by=FULL),
    Row("lower-case scheme", event("k9"), scheme="bearer"),
    Row("admin key", event("k10"), key="admin"),
    Row("limited key, its service", event("l1"), key="scraper"),
    Row(
        "limited key, another service",
        event("l2", service="geo"),
        key="scraper",
        status=403,
        answered_by=FULL,
    ),
    Row("limited key, repeated id", event("l1"), key="scraper", status=200),
)


def token(keys: Keys, name: str) -> str:
    """A token of `keys` by name, or a wrong one made from the write key."""
    write = keys.write
    _, key_id, secret = write.split("_", 2)
    wrong = {
        "empty": "",
        "malformed": "sg_not-a-key",
        "unknown": f"sg_{'0' * 12}_{secret}",
        "wrong_secret": f"sg_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",
    }
    return wrong[name] if name in wrong else str(getattr(keys, name))


@dataclass
class Served:
    """An app over a fresh store, and (fast path on) the event requests it handed on."""

    gate: Gate
    keys: Keys
    client: httpx.Client
    passed_on: list[str] | None

    def send(self, row: Row) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of `row`'s answer, checked against the row."""
        headers = {"content-type": "application/json", **row.headers}
        if row.key is not None:
            headers["authorization"] = f"{row.scheme} {token(self.keys, row.key)}".rstrip()
        body = row.body if isinstance(row.body, bytes) else json.dumps(row.body).encode()
        handed_on = len(self.passed_on or ())
        answer = self.client.post(PATH, content=body, headers=headers)
        assert answer.status_code == row.status, (row.name, answer.text)
        if self.passed_on is not None:
            by = FULL if len(self.passed_on) > handed_on else FAST
            assert by == row.answered_by, row.name
        # Header order is not significant in HTTP (a repeated header would still show); a
        # real server dates each answer to the second.
        headers_sent = sorted(h for h in answer.headers.multi_items() if h[0] != "date")
        return answer.status_code, headers_sent, answer.content


def watch_full_route(app: FastAPI) -> list[str]:
    """Build `app`'s layers now and note each request its fast path hands on (every real
    layer still runs: this only counts)."""
    app.middleware_stack = app.build_middleware_stack()
    layer: Any = app.middleware_stack
    while not isinstance(layer, EventFastPath):
        layer = layer.app
    inner = layer.app
    seen: list[str] = []

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # not the lifespan a real server sends
            seen.append(scope["path"])
        await inner(scope, receive, send)

    layer.app = counted
    return seen


@contextlib.contextmanager
def serving(
    path: Path, *, fast_path: bool, uvicorn: bool = False, ring: bool = False
) -> Iterator[Served]:
    """An app over a fresh SQLite store with `small_config()` and keys of every kind, called
    in-process or (`uvicorn`) through a real server on a loopback socket; with `ring`, a key
    ring that has read the keys and will not read them again."""
    with contextlib.ExitStack() as stack:
        gate = Gate.open(f"sqlite:///{path}", config=small_config(), clock=FrozenClock())
        stack.callback(gate.close)  # last: after the server and its threads have stopped
        keys = make_keys(gate)
        held = None
        if ring:
            held = KeyRing(gate.store, refresh_every=UNTIL_THE_TEST_ENDS)
            held.refresh()
        app = create_app(gate, ServerSettings(fast_path=fast_path), keys=held)
        # Off means off: else the table would compare the fast path with itself.
        assert any(m.cls is EventFastPath for m in app.user_middleware) is fast_path
        passed_on = watch_full_route(app) if fast_path else None
        if uvicorn:
            url = stack.enter_context(running(app))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=PATIENT))
        else:
            # Without its lifespan: no background threads, so a test may close the store.
            client = TestClient(app, base_url="http://127.0.0.1")
            stack.callback(client.close)
        yield Served(gate, keys, client, passed_on)


UNTIL_THE_TEST_ENDS = 24 * 3600.0


PATIENT = 30.0
"""Seconds a request to a test server may take on a loaded machine (each takes milliseconds)."""


@pytest.mark.parametrize("uvicorn", [False, True], ids=["in-process", "uvicorn"])
def test_the_fast_path_answers_every_request_as_the_full_route(
    tmp_path: Path, uvicorn: bool
) -> None:
    with (
        serving(tmp_path / "on.db", fast_path=True, uvicorn=uvicorn) as on,
        serving(tmp_path / "off.db", fast_path=False, uvicorn=uvicorn) as off,
    ):
        for row in ROWS:
            assert on.send(row) == off.send(row), row.name
        assert on.passed_on is not None
        assert set(on.passed_on) == {PATH}
        stored = on.gate.events()
        assert stored == off.gate.events()
    assert sorted(e.request_id for e in stored) == sorted(
        row.body["request_id"] for row in ROWS if row.status == 201 and isinstance(row.body, dict)
    )


OUTAGES = (
    # The keys were read before the store closed: the fast path takes the event, the gate
    # cannot write it, and the fast path answers the full route's 503 itself.
    pytest.param(True, Row("store closed, keys held", event("o1"), status=503), id="keys-held"),
    # Nothing was read: the key cannot be checked, so the full route answers (503 too).
    pytest.param(
        False,
        Row("store closed, keys unread", event("o2"), status=503, answered_by=FULL),
        id="keys-unread",
    ),
)


@pytest.mark.parametrize(("ring", "row"), OUTAGES)
def test_a_store_outage_is_answered_alike(tmp_path: Path, ring: bool, row: Row) -> None:
    """A real outage: the store closed under the running app (as when a server stops)."""
    with (
        serving(tmp_path / "on.db", fast_path=True, ring=ring) as on,
        serving(tmp_path / "off.db", fast_path=False, ring=ring) as off,
    ):
        on.gate.close()
        off.gate.close()
        status, headers, body = on.send(row)
        assert (status, headers, body) == off.send(row)
        assert json.loads(body)["detail"] == "the store is closed: the server is stopping"
