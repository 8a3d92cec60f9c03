"""Metered HTTP clients: an `httpx` transport (sync and async) and a `requests` adapter.

Each maps a request's host (and optionally a path prefix) to a source. Before a request to
a metered source is sent, its cost is reserved through the gate; if the budget refuses,
`BudgetExceededError` is raised and no byte leaves. After the response arrives its body is
read, so a source priced per MB is charged for the bytes received, and the reservation is
committed. A request that fails to get a response releases its hold.

```python
import httpx
from spendgate.http import MeteredTransport

client = httpx.Client(transport=MeteredTransport(gate, "enrichment", {
    "maps.googleapis.com": "google_maps_optimized",
    "api.mapbox.com/v4": "mapbox_satellite",
}))
client.get("https://maps.googleapis.com/maps/api/geocode/json?address=...")
```
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from spendgate.errors import SpendgateError, ValidationError
from spendgate.gate import Gate
from spendgate.money import from_nanos, to_nanos
from spendgate.pricing import Usage
from spendgate.spend import raise_if_denied
from spendgate.windows import to_micros

if TYPE_CHECKING:
    import requests

SETTLEABLE = frozenset({"request", "KB", "MB", "GB"})
"""What a response tells: one request, and the bytes of its body."""

SourceFor = Callable[[str, str], str | None]
"""Maps (host, path) to a source, or None for a request that is not metered."""


def route_table(routes: Mapping[str, str] | SourceFor) -> SourceFor:
    """A `SourceFor` from `{"host[/path-prefix]": source}`: the longest match wins."""
    if callable(routes):
        return routes
    if not isinstance(routes, Mapping) or not routes:
        raise ValidationError("routes", routes, 'a mapping such as {"api.mapbox.com": "mapbox"}')
    table: list[tuple[str, str, str]] = []
    for key, source in routes.items():
        if not isinstance(key, str) or not key or not isinstance(source, str) or not source:
            raise ValidationError("routes", {key: source}, "host[/path] -> source name")
        host, _, path = key.partition("/")
        if "://" in key or ":" in host:
            # A scheme or a port would never match a request's host: the call would go
            # unmetered without a word.
            raise ValidationError(
                "routes",
                key,
                "a bare host with an optional /path, e.g. 'api.mapbox.com/v4' (no scheme, no port)",
            )
        table.append((host.lower(), "/" + path if path else "", source))
    table.sort(key=lambda row: len(row[0]) + len(row[1]), reverse=True)

    def source_for(host: str, path: str) -> str | None:
        host = host.lower()
        for want_host, prefix, source in table:
            # A prefix matches whole path segments: /v4 covers /v4 and /v4/x, not /v40.
            if host == want_host and (
                path == prefix or path.startswith(prefix.rstrip("/") + "/") or not prefix
            ):
                return source
        return None

    return source_for


class _Meter:
    """What the transports and the adapter share: which source, reserve, settle."""

    def __init__(
        self,
        gate: Gate,
        service: str,
        routes: Mapping[str, str] | SourceFor,
        *,
        labels: Mapping[str, str] | None = None,
        priority: bool = False,
        emergency: bool = False,
        estimate: Decimal | str | None = None,
    ) -> None:
        self.gate = gate
        self.estimate = None if estimate is None else from_nanos(to_nanos(estimate, "estimate"))
        self.service = service
        self.source_for = route_table(routes)
        self.labels = dict(labels or {})
        self.priority = priority
        self.emergency = emergency
        for source in self._known_sources(routes):
            self._estimate_for(source)  # unknown, unpriced or unestimable: fail here, not per call

    @staticmethod
    def _known_sources(routes: Mapping[str, str] | SourceFor) -> list[str]:
        return [] if callable(routes) else list(routes.values())

    def _estimate_for(self, source: str) -> Decimal | None:
        """What to hold for one request: the price of a plain call, else `estimate`."""
        priced = self.gate.bind(self.service, source).price(_now_us(self.gate))
        units = set(priced.price.units) if priced.price is not None else set()
        if not units <= SETTLEABLE:
            raise ValidationError(
                "routes",
                source,
                f"a source priced per request and/or by data volume "
                f"({', '.join(sorted(SETTLEABLE))}); {source!r} is priced per "
                f"{', '.join(sorted(units))}, which a response does not tell",
            )
        if priced.plain_estimate is not None:
            return None  # the gate prices a plain call itself
        if self.estimate is None:
            raise ValidationError(
                "estimate",
                None,
                f"an amount to hold per request: {source!r} is priced by volume, and a "
                "response's size is known only once it has arrived",
            )
        return self.estimate

    def reserve(self, source: str) -> str:
        """Hold the cost of one request, or raise `BudgetExceededError` before sending."""
        decision = self.gate.reserve(
            self.service,
            source,
            self._estimate_for(source),
            labels=self.labels,
            priority=self.priority,
            emergency=self.emergency,
        )
        raise_if_denied(decision)
        assert decision.reservation_id is not None
        return decision.reservation_id

    def settle(self, reservation_id: str, source: str, status: int, size: int) -> None:
        """Commit the hold with what the response cost, the body's bytes included."""
        price = self.gate.bind(self.service, source).price(_now_us(self.gate)).price
        # Only the units the price has: any other would be refused.
        measured: Usage = {"request": 1, "bytes": size}
        units = {u: q for u, q in measured.items() if price is not None and price.accepts(u)}
        ok = status < 400
        self.gate.commit(
            reservation_id,
            units=units or None,
            success=ok,
            failure_reason=None if ok else f"HTTP {status}",
            sources_used=(source,) if ok else (),
        )


def _release_landed_hold(gate: Gate, reserving: asyncio.Future[str]) -> None:
    if not reserving.cancelled() and reserving.exception() is None:
        with contextlib.suppress(SpendgateError):  # else its TTL returns it
            gate.release(reserving.result())


def _now_us(gate: Gate) -> int:
    return to_micros(gate.clock())


class MeteredTransport(_Meter, httpx.BaseTransport):
    """An `httpx` transport that reserves before sending and commits after the response."""

    def __init__(
        self,
        gate: Gate,
        service: str,
        routes: Mapping[str, str] | SourceFor,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        _Meter.__init__(self, gate, service, routes, **options)
        self._inner = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`, metered when its host and path map to a source."""
        source = self.source_for(request.url.host, request.url.path)
        if source is None:
            return self._inner.handle_request(request)
        reservation_id = self.reserve(source)
        try:
            response = self._inner.handle_request(request)
            body = response.read()
        except BaseException:
            self.gate.release(reservation_id)
            raise
        self.settle(reservation_id, source, response.status_code, len(body))
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


class AsyncMeteredTransport(_Meter, httpx.AsyncBaseTransport):
    """`MeteredTransport` for `httpx.AsyncClient`; store calls run in worker threads."""

    def __init__(
        self,
        gate: Gate,
        service: str,
        routes: Mapping[str, str] | SourceFor,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        _Meter.__init__(self, gate, service, routes, **options)
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`, metered when its host and path map to a source."""
        source = self.source_for(request.url.host, request.url.path)
        if source is None:
            return await self._inner.handle_async_request(request)
        reserving = asyncio.ensure_future(asyncio.to_thread(self.reserve, source))
        try:
            reservation_id = await asyncio.shield(reserving)
        except asyncio.CancelledError:  # the hold lands anyway: give it back when it does
            reserving.add_done_callback(self._release_landed)
            raise
        try:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.gate.release, reservation_id))
            raise
        await asyncio.to_thread(
            self.settle, reservation_id, source, response.status_code, len(body)
        )
        return response

    def _release_landed(self, reserving: asyncio.Future[str]) -> None:
        _release_landed_hold(self.gate, reserving)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def metered_session(
    gate: Gate, service: str, routes: Mapping[str, str] | SourceFor, **options: Any
) -> requests.Session:
    """A `requests.Session` whose HTTP and HTTPS requests go through a metering adapter."""
    import requests
    from requests.adapters import HTTPAdapter

    meter = _Meter(gate, service, routes, **options)

    class MeteredAdapter(HTTPAdapter):
        def send(
            self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
        ) -> requests.Response:
            url = urlsplit(request.url or "")
            source = meter.source_for(url.hostname or "", url.path or "/")
            if source is None:
                return super().send(request, *args, **kwargs)
            reservation_id = meter.reserve(source)
            try:
                response = super().send(request, *args, **kwargs)
                size = len(response.content)
            except BaseException:
                gate.release(reservation_id)
                raise
            meter.settle(reservation_id, source, response.status_code, size)
            return response

    session = requests.Session()
    adapter = MeteredAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
