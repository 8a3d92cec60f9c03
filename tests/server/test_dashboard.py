"""The dashboard: sign-in, sessions and CSRF over HTTP, then the page itself in Debian's
Chromium (Playwright) against a real uvicorn server on a temporary store.

Screenshots at desktop and phone width are written to `artifacts/` at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from spendgate import Gate, demo
from spendgate.alerts import Dispatcher
from spendgate.serve import dashboard_key, signin_link
from spendgate.server import ServerSettings
from spendgate.server.sessions import CSRF_HEADER, SESSION_COOKIE, SignIns
from spendgate.store.base import Notification
from spendgate.testing import FrozenClock
from spendgate.windows import to_micros
from tests.conftest import small_config
from tests.serving import Keys, app_for, bearer, make_keys, running

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# The machine's network is closed: a browser that tries to phone home must not wait on it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Served:
    """A gate on a temporary SQLite store, keys of every scope, and the app over it."""

    gate: Gate
    keys: Keys
    app: FastAPI


@pytest.fixture
def served(tmp_path: Path, clock: FrozenClock) -> Iterator[Served]:
    gate = Gate.open(f"sqlite:///{tmp_path / 'dash.db'}", config=small_config(), clock=clock)
    yield Served(gate, make_keys(gate), app_for(gate, ws_interval=0.05))
    gate.close()


def dead_letter(gate: Gate, alert_id: str, clock: FrozenClock) -> None:
    """Queue a round of `alert_id` for a channel called "pager", which the configuration
    does not have (deleted since): the dispatcher ends it as a dead letter."""
    now = to_micros(clock())
    row = Notification(f"{alert_id}/1/pager", alert_id, "pager", {}, now, 0, now)
    assert gate.store.enqueue(alert_id, 1, [row], now)
    assert Dispatcher(gate).run_once().dead == 1


def key_id(token: str) -> str:
    return token.split("_")[1]


def sign_in(client: TestClient, token: str) -> str:
    """Sign in with the form; returns the page's CSRF token."""
    r = client.post("/signin", data={"key": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/")
    found = re.search(r'name="spendgate-csrf" content="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


# -- sign-in, sessions and CSRF (HTTP) ---------------------------------------------------------


def test_without_a_session_the_page_asks_for_a_key_and_shows_no_data(served: Served) -> None:
    app, keys, gate = served.app, served.keys, served.gate
    gate.record("scraper", "paid_api")
    with TestClient(app) as client:
        for path in ("/", "/services/scraper"):
            page = client.get(path)
            assert page.status_code == 200
            assert 'name="key"' in page.text
            assert 'method="post"' in page.text
            assert "dashboard.js" not in page.text
            assert "0.01" not in page.text
        for path in ("/cost/dashboard/live", "/api/dashboard/charts", "/api/dashboard/streams"):
            assert client.get(path).status_code == 401
        # A wrong key, a revoked key and a key limited to services do not sign in.
        for token, status in (("sg_bad", 401), (keys.revoked, 401), (keys.scraper, 403)):
            r = client.post("/signin", data={"key": token}, follow_redirects=False)
            assert r.status_code == status
            assert SESSION_COOKIE not in r.cookies
        # The form is the only way a key is sent: in a body; a key in a URL signs nobody in.
        r = client.get("/signin", params={"key": keys.read})
        assert keys.read not in r.text
        assert SESSION_COOKIE not in r.cookies


def test_a_signin_link_works_once_and_sets_a_strict_http_only_cookie(served: Served) -> None:
    app, keys = served.app, served.keys
    token = app.state.signins.mint(key_id(keys.read))
    with TestClient(app) as client:
        r = client.get("/signin", params={"token": token}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback: a Secure cookie is never sent
        assert keys.read not in cookie
        assert token not in cookie
        assert client.get("/api/cost/current").status_code == 200
        assert "dashboard.js" in client.get("/").text
    with TestClient(app) as other:
        again = other.get("/signin", params={"token": token}, follow_redirects=False)
        assert again.status_code == 401
        assert SESSION_COOKIE not in again.cookies
    with TestClient(app, base_url="https://dash.example") as tls:
        r = tls.get("/signin", params={"token": app.state.signins.mint(key_id(keys.read))},
                    follow_redirects=False)  # fmt: skip
        assert "Secure" in r.headers["set-cookie"]


def test_signin_tokens_are_used_once_within_their_ttl() -> None:
    now = [0.0]
    signins = SignIns(ttl=60, clock=lambda: now[0])
    # Tokens minted together, for two keys: each names its own key.
    early, late = signins.mint("3f9a1c2b7d10"), signins.mint("3f9a1c2b7d10")
    other = signins.mint("0123456789ab")
    now[0] = 59.5
    assert signins.consume(early) == "3f9a1c2b7d10"  # within its ttl: the key it names
    assert signins.consume(early) is None  # once only
    assert signins.consume(other) == "0123456789ab"
    assert signins.consume("not-a-token") is None
    now[0] = 60.0
    assert signins.consume(late) is None  # its twin worked a moment ago: it expired


def test_cookie_requests_need_the_csrf_header_to_change_anything(served: Served) -> None:
    app, keys = served.app, served.keys
    event = {"service": "scraper", "source": "paid_api"}
    with TestClient(app) as client:
        csrf = sign_in(client, keys.write)
        assert client.post("/api/events", json=event).status_code == 403
        assert client.post("/api/events", json=event, headers={CSRF_HEADER: "x"}).status_code == 403
        assert (
            client.post("/api/events", json=event, headers={CSRF_HEADER: csrf}).status_code == 201
        )
        # The session acts as its key: a write key may not do what needs admin.
        assert client.get("/api/keys").status_code == 403
        # Bearer keys are unchanged and need no CSRF token.
        assert client.post("/api/events", json=event, headers=bearer(keys.write)).status_code == 201
    with TestClient(app) as client:
        r = client.post(
            "/signin", data={"key": keys.write}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        assert SESSION_COOKIE not in r.cookies


def test_revoking_the_key_or_signing_out_ends_the_session(served: Served) -> None:
    app, keys = served.app, served.keys
    with TestClient(app) as client:
        csrf = sign_in(client, keys.read)
        assert client.get("/api/cost/current").status_code == 200
        app.state.keys.revoke(key_id(keys.read), actor="test", now=1)
        assert client.get("/api/cost/current").status_code == 401
        assert 'name="key"' in client.get("/").text
    with TestClient(app) as client:
        csrf = sign_in(client, keys.admin)
        client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
        client.cookies.clear()
        assert client.get("/api/cost/current").status_code == 401


def test_the_websocket_takes_the_session_cookie_from_this_server_only(served: Served) -> None:
    app, keys = served.app, served.keys
    token = app.state.signins.mint(key_id(keys.read))
    with running(app) as url:
        r = httpx.get(f"{url}/signin", params={"token": token}, follow_redirects=False)
        cookie = {"Cookie": f"{SESSION_COOKIE}={r.cookies[SESSION_COOKIE]}"}
        ws_url = url.replace("http", "ws") + "/ws/cost-monitoring"
        with connect(ws_url, additional_headers={**cookie, "Origin": url}) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "cost_state"
        for headers in ({**cookie, "Origin": "https://evil.example"}, {"Origin": url}):
            with (
                pytest.raises(InvalidStatus) as refused,
                connect(ws_url, additional_headers=headers),
            ):
                pass
            assert refused.value.response.status_code == 403


def test_serve_mints_a_link_for_a_read_key_it_keeps(served: Served) -> None:
    gate = served.gate
    app = app_for(gate)
    first = dashboard_key(gate)
    assert dashboard_key(gate) == first  # made once per store
    stored = {k.key_id: k for k in gate.store.keys()}[first]  # noqa: SIM118
    assert stored.scope == "read"
    assert stored.services is None
    link = signin_link(app, ServerSettings(port=9999), first)
    assert link.startswith("http://127.0.0.1:9999/signin?token=")
    assert "sg_" not in link


# -- the page in a browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing: `make system` (apt-get install chromium) installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))


def test_the_dashboard_is_live_alerts_can_be_acknowledged_and_services_open(
    browser: Any, served: Served
) -> None:
    from playwright.sync_api import expect

    app, keys, gate = served.app, served.keys, served.gate

    gate.record("scraper", "paid_api")
    gate.record("enrichment", "free_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with running(app) as url:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/signin?token={app.state.signins.mint(key_id(keys.admin))}")
        assert page.url == f"{url}/"  # the token has left the address bar
        spent = page.locator("#tile-current_daily_spend .value")
        expect(spent).to_have_text("$0.0100", timeout=5000)
        expect(page.locator("#conn")).to_have_class(re.compile(r"\blive\b"), timeout=5000)
        expect(page.locator("#tile-current_daily_spend .as-of")).to_contain_text("as of")
        expect(page.locator("#services a", has_text="scraper")).to_be_visible()

        # An event recorded through the API moves the tile without a reload.
        event = {"service": "scraper", "source": "paid_api", "cost": "0.05"}
        assert httpx.post(f"{url}/api/events", json=event, headers=bearer(keys.write)).is_success
        expect(spent).to_have_text("$0.0600", timeout=2000)

        # Crossing 80% of the daily budget ($1.00) raises an alert on the page.
        event = {"service": "scraper", "source": "paid_api", "cost": "0.80"}
        assert httpx.post(f"{url}/api/events", json=event, headers=bearer(keys.write)).is_success
        alert = page.locator("#alerts li.alert", has_text="daily")
        expect(alert).to_contain_text("Budget daily at 86.0%", timeout=2000)
        expect(page.locator("#budgets [data-budget=daily] .badge")).to_have_text("warn")
        alert.get_by_role("button", name="Acknowledge").click()
        expect(alert).to_have_class(re.compile(r"\backnowledged\b"))
        # Acknowledged on the server, by the key the session stands for: the page says so
        # only once the server has answered (it said "acknowledged" at the click, and this
        # test read the store before the server had it on a loaded machine). A click before
        # the page has found the alert routes (in the API document) waits for them.
        expect(alert.locator(".ack-state")).to_have_text(
            re.compile(r"^acknowledged (on the server|by key:)"), timeout=15_000
        )
        (stored,) = gate.store.alerts(state="firing")
        assert stored.acknowledged_by is not None
        assert stored.acknowledged_by.startswith(f"key:{key_id(keys.admin)}")

        expect(page.locator("#chart-today")).to_be_visible()
        expect(page.locator("#streams tbody tr")).to_have_count(1, timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)
        page.set_viewport_size(PHONE)
        expect(page.locator("#tile-budget_remaining")).to_be_visible()
        # The charts follow the new width (a ResizeObserver); then nothing scrolls sideways.
        wait_until(page, f"document.documentElement.scrollWidth <= {PHONE['width']}")
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        page.set_viewport_size(DESKTOP)

        # The per-service page opens from the breakdown.
        page.locator("#services a", has_text="scraper").click()
        expect(page).to_have_url(f"{url}/services/scraper")
        expect(page.locator("#svc-total_cost .value")).to_have_text("$0.8600", timeout=5000)
        expect(page.locator("#sources tbody tr")).to_have_count(1)
        # Trends are fitted on request (scipy, imported on first use): slow on a busy machine.
        expect(page.locator("#trends li").first).to_be_visible(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "service-desktop.png"), full_page=True)
        assert console.errors == []
        context.close()


def test_the_budget_tile_its_gauge_and_its_row_are_one_budget_and_follow_a_new_limit(
    browser: Any, served: Served
) -> None:
    """Every tile says what it counts, and the budget tile's remaining amount, percentage
    and gauge are the budget's own figures (never today's total spend beside a budget's
    remainder): after a limit is PATCHed they move together, with the budget's row."""
    from playwright.sync_api import expect

    app, keys, gate = served.app, served.keys, served.gate
    gate.record("scraper", "paid_api", cost="0.30")
    with running(app) as url:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/signin?token={app.state.signins.mint(key_id(keys.admin))}")
        tile = page.locator("#tile-budget_remaining")
        fill = page.locator("#main-gauge .fill")
        row = page.locator("#budgets [data-budget=daily]")
        expect(tile.locator(".value")).to_have_text("$0.7000", timeout=5000)
        expect(tile.locator(".scope")).to_have_text("budget daily · scope all")
        expect(tile.locator(".note")).to_have_text("70.0% left · $0.3000 used")
        expect(fill).to_have_attribute("style", re.compile(r"width: 30(\.0)?%"))
        expect(page.locator("#tile-current_daily_spend .scope")).to_have_text("all spend today")
        expect(page.locator("#tile-time_until_budget_exhausted .scope")).to_have_text(
            "budget daily · scope all"
        )

        patched = httpx.patch(
            f"{url}/api/budgets/daily", json={"limit": "2.00"}, headers=bearer(keys.admin)
        )
        assert patched.status_code == 200, patched.text
        expect(tile.locator(".value")).to_have_text("$1.70", timeout=5000)
        expect(tile.locator(".note")).to_have_text("85.0% left · $0.3000 used")
        expect(fill).to_have_attribute("style", re.compile(r"width: 15(\.0)?%"))
        expect(row).to_contain_text("of $2.00")
        assert console.errors == []
        context.close()


def test_dead_letters_are_shown_to_an_admin_and_asked_for_by_no_one_else(
    browser: Any, served: Served, clock: FrozenClock
) -> None:
    from playwright.sync_api import expect

    app, keys, gate = served.app, served.keys, served.gate
    gate.record("scraper", "paid_api", cost="0.85")  # past 80% of the $1.00 daily budget
    (alert,) = gate.store.alerts()
    dead_letter(gate, alert.alert_id, clock)
    with running(app) as url:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/signin?token={app.state.signins.mint(key_id(keys.admin))}")
        dead = page.locator("#dead-letters li.dead")
        expect(dead).to_have_count(1, timeout=15_000)
        expect(dead).to_contain_text("Not delivered to pager")
        expect(dead).to_contain_text("channel 'pager' was deleted: not delivered")
        expect(page.locator("#dead-letters")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "dashboard-dead-letters.png"), full_page=True)
        assert console.errors == []
        context.close()

        # A read key may not read the outbox: its page has no such section, and asks for
        # nothing it would be refused (no 403 in the console).
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/signin?token={app.state.signins.mint(key_id(keys.read))}")
        expect(page.locator("#tile-current_daily_spend .value")).to_have_text("$0.8500")
        expect(page.locator("#alerts li.alert", has_text="at 85.0%")).to_be_visible(timeout=15_000)
        expect(page.locator("#dead-letters")).to_have_count(0)
        assert console.errors == []
        context.close()


def test_the_page_shows_nothing_without_a_valid_sign_in(browser: Any, served: Served) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    app, keys, gate = served.app, served.keys, served.gate

    gate.record("scraper", "paid_api")
    with running(app) as url:
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/signin?token=not-a-token")
        expect(page.locator(".error")).to_contain_text("expired")
        console.errors.clear()  # Chromium logs the refused link's 401 itself
        page.goto(f"{url}/")
        expect(page.locator("input[name=key]")).to_be_visible()
        expect(page.locator("#tiles")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "signin-phone.png"), full_page=True)
        page.fill("input[name=key]", keys.read)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#tile-current_daily_spend .value")).to_have_text("$0.0100")
        assert keys.read not in page.url
        assert console.errors == []
        # Revoking the key ends the session: the page falls back to the sign-in form (its
        # requests meanwhile are refused, which Chromium logs as 401s, and nothing else).
        app.state.keys.revoke(key_id(keys.read), actor="test", now=1)
        try:
            page.reload()
        except PlaywrightError as exc:
            # The page reloaded itself first, on a request refused 401 (`signedOut()`), which
            # aborts ours: either way it lands on the sign-in form (1 failure in a fresh-clone
            # run on a loaded machine). Any other error is one.
            if "ERR_ABORTED" not in str(exc):
                raise
        expect(page.locator("input[name=key]")).to_be_visible()
        assert all("401" in e for e in console.errors), console.errors
        context.close()


# -- every screen at phone and desktop width, light and dark ---------------------------------

LONG_SERVICE = "property_enrichment_with_a_very_long_service_name"
THEMES = ("light", "dark")
DARK_BACKGROUND = "rgb(15, 19, 24)"  # dashboard.css: --bg under prefers-color-scheme: dark

# Elements whose box reaches past the right edge of the viewport, unless a scroll container
# (overflow-x auto or scroll) between them and the page holds them: content a reader could
# not reach without the page scrolling sideways.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const held = (node) => {
    for (let up = node.parentElement; up && up !== document.body; up = up.parentElement) {
      if (/(auto|scroll)/.test(getComputedStyle(up).overflowX)) return true;
    }
    return false;
  };
  return Array.from(document.body.querySelectorAll("*")).filter((node) => {
    const box = node.getBoundingClientRect();
    return box.width > 0 && box.right > width + 0.5 && !held(node);
  }).map((node) => `${node.tagName}.${node.className}: ${node.textContent.slice(0, 40)}`);
}"""

# Each gauge's labels (the outermost of its elements with text of their own), with their
# boxes.
LADDER_BOXES = """() => Array.from(document.querySelectorAll(".gauge")).map((gauge) => {
  const own = (node) => Array.from(node.childNodes).some(
    (child) => child.nodeType === Node.TEXT_NODE && child.textContent.trim());
  const labels = Array.from(gauge.querySelectorAll("*")).filter(own);
  return labels.filter((label) => !labels.some((other) => other !== label && other.contains(label)))
    .map((label) => {
      const r = label.getBoundingClientRect();
      return { text: label.textContent, left: r.left, right: r.right, top: r.top,
               bottom: r.bottom };
    });
})"""

# Every chart's y-axis ticks as Chart.js drew them: value and the label's text.
Y_TICKS = """() => Array.from(document.querySelectorAll("canvas")).map((canvas) => {
  const chart = Chart.getChart(canvas);
  const y = chart && chart.scales.y;
  const ticks = y ? y.ticks.map((t) => ({ value: t.value, label: String(t.label) })) : null;
  return { id: canvas.id, ticks: ticks };
})"""

# Each table in its scroll container: whether it fits or the container scrolls; scrolled to
# the far right, whether the last column shows whole and the first (sticky) still shows; and
# any cell whose text is wider than the cell.
TABLES = """() => Array.from(document.querySelectorAll(".scroll")).map((box) => {
  const table = box.querySelector("table");
  const fits = table.getBoundingClientRect().width <= box.clientWidth + 0.5;
  const scrolls = /(auto|scroll)/.test(getComputedStyle(box).overflowX)
    && box.scrollWidth > box.clientWidth;
  box.scrollLeft = box.scrollWidth;
  const frame = box.getBoundingClientRect();
  const header = table.tHead.rows[0].cells;
  const first = header[0].getBoundingClientRect();
  const last = header[header.length - 1].getBoundingClientRect();
  const result = {
    id: table.id, fits: fits, scrolls: scrolls,
    lastShows: last.right <= frame.right + 0.5 && last.left >= frame.left - 0.5,
    firstShows: first.left >= frame.left - 0.5 && first.right <= frame.right + 0.5,
    clipped: Array.from(table.querySelectorAll("th, td"))
      .filter((cell) => cell.scrollWidth > cell.clientWidth + 1).map((cell) => cell.textContent),
  };
  box.scrollLeft = 0;
  return result;
})"""


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Served]:
    """A day of the demo's traffic (the seed's services and sources, three budgets whose
    ladders have rungs 10% apart, a market-data stream that reaches its stop line, alerts),
    three weeks of history, a service with a long name and a dead letter: the screens as a
    real day leaves them."""
    clock = FrozenClock(datetime(2026, 1, 20, 6, 0, tzinfo=UTC))
    gate = Gate.open(f"sqlite:///{tmp_path / 'busy.db'}", config=demo.demo_config(), clock=clock)
    for back in range(1, 20):
        day = clock() - timedelta(days=back)
        for i in range(5 + back % 4):
            gate.record("image_processor", "google_maps_optimized", time=day + timedelta(minutes=i))
    gate.record(LONG_SERVICE, "mapbox_satellite", labels=demo.PIPELINE)
    demo.run(gate, clock, 300, workers=1)
    dead_letter(gate, gate.store.alerts()[0].alert_id, clock)
    yield Served(gate, make_keys(gate), app_for(gate, ws_interval=0.05))
    gate.close()


def wait_until(page: Any, condition: str, timeout: float = 5000) -> None:
    """Wait for `condition` (a JavaScript expression) to hold on the page, checked every
    frame. Not `page.wait_for_function`: it compiles its predicate with `eval` inside the
    page, which the page's Content-Security-Policy forbids, so it fails at once (instead of
    waiting) whenever the condition is not yet true; a function given to `page.evaluate`
    is compiled by the browser's debugger protocol, outside the page's policy."""
    held = page.evaluate(
        f"""() => new Promise((resolve) => {{
          const end = performance.now() + {timeout};
          const check = () => {{
            if ({condition}) resolve(true);
            else if (performance.now() > end) resolve(false);
            else setTimeout(check, 20);
          }};
          check();
        }})"""
    )
    assert held, f"not within {timeout} ms: {condition}"


def decimals_needed(step: float) -> int:
    """The fewest decimals that write every multiple of `step` exactly."""
    return next(d for d in range(10) if abs(step * 10**d - round(step * 10**d)) < 1e-6)


def check_money_axis(chart: str, ticks: list[dict[str, Any]]) -> float:
    """A money axis reads each tick's own value, with no more decimals than its step needs
    (cents while the step is under a dollar), "$0" for zero and "k"/"M" for thousands and
    millions: never "$0.0000". Returns the step."""
    labels = [t["label"] for t in ticks]
    assert len(ticks) >= 2, (chart, labels)
    assert len(set(labels)) == len(labels), (chart, labels)
    step = abs(ticks[1]["value"] - ticks[0]["value"])
    for tick in ticks:
        value, label = tick["value"], tick["label"]
        if value == 0:
            assert label == "$0", (chart, labels)
            continue
        written = re.fullmatch(r"-?\$(\d+)(?:\.(\d+))?([kM]?)", label)
        assert written, (chart, labels)
        unit = {"": 1, "k": 1e3, "M": 1e6}[written.group(3)]
        digits = len(written.group(2) or "")
        assert abs(float(label.strip("-$kM")) * unit - abs(value)) < 1e-9 * unit, (chart, labels)
        cents = 2 if unit == 1 and step < 1 else 0
        assert digits <= max(decimals_needed(step / unit), cents), (chart, labels)
    return step


def check_layout(page: Any, width: int) -> None:
    """Nothing reaches past the viewport but inside a scroll container; the page itself
    never scrolls sideways (the charts resize after the first layout: waited for)."""
    wait_until(page, f"document.documentElement.scrollWidth <= {width}")
    assert page.evaluate("innerWidth") == width
    assert page.evaluate(OVERFLOWING) == []


def check_ladders(page: Any) -> int:
    """No two labels of a budget's ladder overlap, and none leaves the viewport; returns
    how many labels there are."""
    width = page.evaluate("document.documentElement.clientWidth")
    count = 0
    for boxes in page.evaluate(LADDER_BOXES):
        count += len(boxes)
        for box in boxes:
            assert box["left"] >= 0, box
            assert box["right"] <= width, box
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = (
                    a["right"] <= b["left"] or b["right"] <= a["left"]
                    or a["bottom"] <= b["top"] or b["bottom"] <= a["top"]
                )  # fmt: skip
                assert apart, (a, b)
    return count


def check_tables(page: Any) -> list[dict[str, Any]]:
    """Every table either fits its panel or scrolls inside it with its name column kept in
    view and its last column reachable; no cell's text is cut."""
    tables = page.evaluate(TABLES)
    for table in tables:
        assert table["fits"] or table["scrolls"], table
        assert table["lastShows"], table
        assert table["firstShows"], table
        assert table["clipped"] == [], table
    return tables


def check_axes(page: Any, charts: tuple[str, ...]) -> dict[str, float]:
    """The money axes of `charts` (each drawn with data: waited for); their steps."""
    for chart in charts:
        drawn = f"Chart.getChart('{chart}')"
        wait_until(
            page,
            f"typeof Chart !== 'undefined' && {drawn} !== undefined"
            f" && {drawn}.data.labels.length > 0 && {drawn}.scales.y.ticks.length > 1",
            timeout=15_000,
        )
    axes = {a["id"]: a["ticks"] for a in page.evaluate(Y_TICKS) if a["ticks"] is not None}
    return {chart: check_money_axis(chart, axes[chart]) for chart in charts}


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390", "1280"])
def test_every_screen_fits_phone_and_desktop_light_and_dark(
    browser: Any, busy: Served, viewport: dict[str, int], theme: str
) -> None:
    """Issue 21: at 390 and 1280 px, light and dark, on a busy day's data, every screen
    (sign-in, dashboard, its dead letters, a service's page) fits the width, the ladders'
    labels never overlap, tables fit or scroll with nothing cut, and money axes read
    "$0.05", not "$0.0500". Screenshots: artifacts/<screen>-<width>-<theme>.png."""
    from playwright.sync_api import expect

    app, keys = busy.app, busy.keys
    width = viewport["width"]
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(screen: str, target: Any = None) -> None:
        wait_until(page, "document.querySelector('.flash') === null")  # a new value's blink
        path = str(ARTIFACTS / f"{screen}-{width}-{theme}.png")
        if target is None:
            page.screenshot(path=path, full_page=True)
        else:
            target.screenshot(path=path)

    with running(app) as url:
        context = browser.new_context(viewport=viewport, color_scheme=theme)
        page = context.new_page()
        console = Console(page)
        page.goto(f"{url}/")
        expect(page.locator("input[name=key]")).to_be_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == DARK_BACKGROUND) == (theme == "dark"), background
        check_layout(page, width)
        shot("signin")

        page.goto(f"{url}/signin?token={app.state.signins.mint(key_id(keys.admin))}")
        expect(page.locator("#services tbody tr")).to_have_count(7, timeout=15_000)
        expect(page.locator("#sources tbody tr")).to_have_count(8)
        expect(page.locator("#streams tbody tr")).to_have_count(1, timeout=15_000)
        expect(page.locator("#budgets .budget")).to_have_count(3)
        expect(page.locator("#budgets [data-budget=streaming] .badge")).to_have_text("stop")
        expect(page.locator("#dead-letters li.dead")).to_have_count(1, timeout=15_000)
        expect(page.locator("#alerts li.alert", has_text=LONG_SERVICE)).to_be_visible()
        # The streaming budget's rungs are 10% apart; none of the ladders' labels (the tile's
        # gauge, daily's twice, and each budget's) lies over another, at either width.
        expect(page.locator("[data-budget=streaming] .ladder li")).to_have_text(
            ["warn 60%", "degrade 70%", "stop 80%"]
        )
        axes = check_axes(page, ("chart-today", "chart-days"))
        check_layout(page, width)
        assert check_ladders(page) == 2 + 2 + 3 + 3
        tables = check_tables(page)
        if width == PHONE["width"]:
            assert {t["id"] for t in tables if t["scrolls"]} >= {"services", "streams"}
        else:
            assert all(t["fits"] for t in tables), tables
        assert axes["chart-days"] >= 1  # a day of $12 on the stream: whole dollars
        # A point's tooltip writes its amount as the page writes money, not 12.0125.
        tooltip = page.evaluate(
            """() => Chart.getChart("chart-days").options.plugins.tooltip.callbacks.label(
                 { dataset: { label: "spent" }, parsed: { y: 12.0125 } })"""
        )
        assert tooltip == "spent: $12.01"
        shot("dashboard")
        shot("dead-letters", page.locator("article", has=page.locator("#dead-letters")))

        page.goto(f"{url}/services/image_processor")
        expect(page.locator("#sources tbody tr")).to_have_count(6, timeout=15_000)
        expect(page.locator("#trends li").first).to_be_visible(timeout=20_000)
        axes = check_axes(page, ("chart-today", "chart-days"))
        # A few tenths of a cent a minute: the axis keeps the digits that tell ticks apart.
        assert axes["chart-today"] < 0.01, axes
        check_layout(page, width)
        check_tables(page)
        shot("service")
        assert console.errors == []
        context.close()
