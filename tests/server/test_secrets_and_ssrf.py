"""No secret leaves the process, and alert channels are no way into the private network.

Secrets: channels with tokens (a signed webhook, apprise URLs for JSON, email, Slack and
Telegram) and a PostgreSQL URL with a password are configured, then failures and test sends
are driven through a real server, the dispatcher, a broken store and a `spendgate serve`
process; no response body, log record, audit entry or process output holds a secret.

Server-side request forgery: channel destinations on loopback, link-local and private
addresses (and `localhost`) are refused when configured and again when sent (after DNS
resolution) unless `[alerts] allow_private_destinations` is set; a failed send never tells
what answered. Addresses in 10/8 and 169.254/16 are only ever checked, never connected to.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from spendgate import Gate
from spendgate.alerts import channels
from spendgate.alerts.channels import NOT_DELIVERED, DeliveryError, signature
from spendgate.alerts.dispatcher import Dispatcher
from spendgate.alerts.engine import AlertEngine
from spendgate.alerts.notices import alert_dict
from spendgate.config import parse
from spendgate.errors import StoreError, ValidationError
from spendgate.redaction import redact, redact_url
from spendgate.settings import ChannelSettings
from spendgate.store import open_store
from tests.conftest import POSTGRES_URL, postgres_or_skip
from tests.serving import app_for, bearer, free_port, make_keys, running

SPENDGATE = Path(sys.executable).with_name("spendgate")
ROLE = "sgsecret"
PG_PASSWORD = "pgPw-5ecret-Q7v1"
HOOK_TOKEN = "hookTok-9Zr2Lm"
WEBHOOK_SECRET = "whSecret-0123456789abcdef"
JSON_TOKEN = "jsonTok-4Kd8Pq"
MAIL_PASSWORD = "mailPw-6Hs3Wd"
SLACK_TOKENS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ")
TGRAM_TOKEN = "123456789:AAbotTokenSecret7x"
FTP_PASSWORD = "ftpPw-2Nc5Tb"
BAD_TOKEN = "badTok-8Yu4Ge"
SECRETS = (
    PG_PASSWORD,
    HOOK_TOKEN,
    WEBHOOK_SECRET,
    JSON_TOKEN,
    MAIL_PASSWORD,
    *SLACK_TOKENS,
    TGRAM_TOKEN,
    "AAbotTokenSecret7x",
    FTP_PASSWORD,
    BAD_TOKEN,
)
SLACK_URL = "slack://" + "/".join(SLACK_TOKENS)
TGRAM_URL = f"tgram://{TGRAM_TOKEN}/12315544"
WAIT = 60.0  # seconds: generous, the machine is shared and loaded


def leaked(texts: list[str]) -> list[tuple[str, str]]:
    """Each (secret, text) where a secret shows."""
    return [(s, t[:300]) for t in texts for s in SECRETS if s in t]


# -- real parts: receivers, a closed port, a resetting port, a PostgreSQL role ----------------


@dataclass
class Receiver:
    """An HTTP server on a loopback address that answers `status` and notes each request."""

    host: str = "127.0.0.1"
    status: int = 200
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        self.server = Server((self.host, 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def receiver6() -> Iterator[Receiver]:
    r = Receiver(host="::1").start()
    yield r
    r.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return free_port()


@contextlib.contextmanager
def resetting() -> Iterator[int]:
    """A loopback port whose listener accepts each connection and resets it at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(WAIT)
        listener.close()
        assert not thread.is_alive()


@pytest.fixture
def secret_pg_url() -> Iterator[str]:
    """A store URL with a password: the role `sgsecret` (made if absent; the test server
    trusts every password) on a schema of its own, dropped at the end."""
    postgres_or_skip()
    schema = f"sgsecret_{secrets.token_hex(5)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PG_PASSWORD}'")
        info = conninfo_to_dict(POSTGRES_URL)
        # Opening a store makes sure its schema exists, which needs CREATE on the database.
        conn.execute(f"GRANT CREATE ON DATABASE {info.get('dbname')} TO {ROLE}")
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}")
    where = f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info.get('dbname')}"
    try:
        yield f"postgresql://{ROLE}:{PG_PASSWORD}@{where}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def drop_table(url: str, table: str) -> None:
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.{table} CASCADE")


def alerting_config(channels_: dict[str, Any], *, allow: bool) -> Any:
    return parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}},
            "budgets": [{"name": "daily", "limit": "10.00"}],
            "alerts": {
                "forecast_fraction": False,
                "service_offline_after": False,
                "allow_private_destinations": allow,
                "channels": {"log": False, **channels_},
            },
        }
    )


# -- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK_URL, "slack://***"),
        (TGRAM_URL, "tgram://***"),
        (f"mailto://ops:{MAIL_PASSWORD}@smtp.example.com?to=a@b.c", "mailto://***@smtp.example.com/***"),
        (f"json://hooks.example.com/in?token={JSON_TOKEN}", "json://hooks.example.com/***"),
        (f"https://hooks.example.com/x?token={HOOK_TOKEN}", "https://hooks.example.com/***"),
        (f"postgresql://{ROLE}:{PG_PASSWORD}@db:5432/test", "postgresql://***@db:5432/***"),
        (f"discord://{BAD_TOKEN}/{JSON_TOKEN}", "discord://***"),
        ("not a url", "***"),
    ],
)  # fmt: skip
def test_a_url_is_shown_with_its_scheme_and_server_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    text = redact(f"sending to {url}: refused")
    assert not leaked([text])
    assert text.startswith("sending to ")
    assert text.endswith(": refused")


# -- no secret leaves -------------------------------------------------------------------------


def test_no_secret_leaves_in_responses_logs_audit_or_the_serve_banner(
    secret_pg_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    hook = f"http://127.0.0.1:{port}/hook?token={HOOK_TOKEN}"
    every = ["info", "warning", "critical"]
    cfg = alerting_config(
        {
            "hook": {"kind": "webhook", "url": hook, "secret": WEBHOOK_SECRET, "severities": every},
            "json": {"url": f"json://127.0.0.1:{port}/in?token={JSON_TOKEN}", "severities": every},
            "email": {
                "url": f"mailto://ops:{MAIL_PASSWORD}@127.0.0.1:{port}"
                "?from=sg@example.com&to=ops@example.com",
                "severities": every,
            },
        },
        allow=True,  # the receivers (down) are on loopback
    )
    texts: list[str] = []
    # A refresh each call: a broken store shows in the "not refreshed" log line at once.
    gate = Gate(open_store(secret_pg_url), cfg, refresh_every=0)
    try:
        keys = make_keys(gate)
        admin = bearer(keys.admin)
        with running(app_for(gate)) as base, httpx.Client(base_url=base, timeout=WAIT) as http:

            def call(method: str, path: str, status: int, body: Any = None) -> Any:
                r = http.request(method, path, json=body, headers=admin)
                texts.append(r.text)
                assert r.status_code == status, r.text
                return r.json()

            # Hosted apprise services with tokens: shown, audited, then removed again (they
            # would send to the internet).
            hosted = {"slack": SLACK_URL, "tgram": TGRAM_URL}
            configured = call(
                "POST", "/api/cost/alerts/configure", 200, {"notification_channels": hosted}
            )
            assert configured["notification_channels"]["slack"]["url"] == "slack://***"
            for bad in (f"ftp://user:{FTP_PASSWORD}@x/y", f"notascheme://u:{BAD_TOKEN}@x/y"):
                kind = "webhook" if bad.startswith("ftp") else "apprise"
                change = {"notification_channels": {"x": {"kind": kind, "url": bad}}}
                call("POST", "/api/cost/alerts/configure", 422, change)
            call("GET", "/api/cost/alerts/configure", 200)
            call("GET", "/api/audit", 200)
            call(
                "POST",
                "/api/cost/alerts/configure",
                200,
                {"notification_channels": {"slack": False, "tgram": False}},
            )

            # Test sends to receivers that are down: one plain answer for each.
            for name in ("hook", "json", "email"):
                sent = call("POST", "/api/alerts/test", 200, {"channel": name})
                assert sent == {
                    "channel": name,
                    "delivered": False,
                    "error": f"channel {name!r}: {NOT_DELIVERED}",
                }

            # Dispatcher rounds: every notification fails; the outbox says only that.
            gate.record("scraper", "paid_api", cost="9.00")  # 90% of the daily budget
            AlertEngine(gate).evaluate()
            Dispatcher(gate).run_once()
            deadline = time.monotonic() + WAIT  # the server's own dispatcher may hold some
            while True:
                errors = [
                    (n["channel"], n["last_error"])
                    for alert in call("GET", "/api/alerts", 200)
                    for n in call("GET", f"/api/alerts/{alert['alert_id']}/notifications", 200)
                ]
                failed = {c for c, e in errors if e is not None}
                if failed >= {"hook", "json", "email"} or time.monotonic() > deadline:
                    break
                Dispatcher(gate).run_once()
            assert failed >= {"hook", "json", "email"}, errors
            for channel_name, error in errors:
                assert error in (None, f"channel {channel_name!r}: {NOT_DELIVERED}")
            warnings = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
            assert any("ConnectError" in w for w in warnings)  # the reason stays in the log

            # A store error: a 503 that names neither the server nor the driver's text.
            drop_table(secret_pg_url, "heartbeats")
            r = http.post("/api/heartbeats", json={"service": "scraper"}, headers=admin)
            texts.append(r.text)
            assert r.status_code == 503
            assert r.json()["detail"] == (
                "the store could not do it: try again later (the server's log has the details)"
            )
            for shown in ("127.0.0.1", "5432", "/test", "sgsecret_", "heartbeats", "Undefined"):
                assert shown not in r.text
            assert any("UndefinedTable" in rec.getMessage() for rec in caplog.records)

            # Budgets and prices not refreshed from a broken store: logged without the password.
            drop_table(secret_pg_url, "audit_log")  # where the gate looks for changes
            gate.record("scraper", "paid_api", cost="0.01")
            refreshed = [m for m in (r.getMessage() for r in caplog.records) if "refreshed" in m]
            assert refreshed
            assert all("postgresql://127.0.0.1:5432/test" in m for m in refreshed)
    finally:
        gate.close()

    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert not leaked(texts)


class Relay:
    """A TCP relay to the test's PostgreSQL server on a port of its own. `cut()` closes it
    and every connection through it (to the store, its server is gone); `restore()` listens
    on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._spawn(self._accept, self._listener)

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        for s in [*([listener] if listener is not None else []), *sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            s.close()
        for t in self._threads:
            t.join(WAIT)
            assert not t.is_alive()
        self._threads = []

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.target, timeout=WAIT)
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._open += [client, server]
                self._spawn(self._pump, client, server)
                self._spawn(self._pump, server, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


def test_a_store_outage_is_told_without_the_server_s_address_or_password(
    secret_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Decisions made while the store does not answer, and the `store_unreachable` alert
    raised after, say what kind of failure it was: never the host, port, database, user or
    password that the driver's error carries (the log has that at DEBUG only, redacted)."""
    caplog.set_level(logging.DEBUG)
    info = conninfo_to_dict(POSTGRES_URL)
    relay = Relay(str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)))
    served = f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/"
    url = secret_pg_url.replace(served, f"127.0.0.1:{relay.port}/") + "&timeout=0.5"
    assert f":{relay.port}/" in url
    budget = {"name": "daily", "limit": "10.00"}
    strict = parse({"sources": {"paid_api": {"price": "0.01/request"}}, "budgets": [budget]})
    lenient = parse(
        {
            "sources": {"paid_api": {"price": "0.01/request"}},
            "budgets": [{**budget, "fail_open": True}],
        }
    )
    gate, open_gate = Gate.open(url, config=strict), Gate.open(url, config=lenient)
    engine = AlertEngine(gate)
    try:
        assert gate.authorize("scraper", "paid_api").approved
        assert open_gate.authorize("scraper", "paid_api").approved
        relay.cut()
        decisions = [
            gate.authorize("scraper", "paid_api"),
            gate.reserve("scraper", "paid_api"),
            open_gate.authorize("scraper", "paid_api"),
        ]
        assert [d.status for d in decisions] == ["denied", "denied", "approved"]
        assert decisions[0].reason == "store unreachable, budget 'daily' fails closed"
        assert decisions[2].reason == (
            "store unreachable, approved unchecked (fail-open budgets: 'daily')"
        )
        with pytest.raises(StoreError):
            engine.evaluate()
        relay.restore()
        deadline = time.monotonic() + WAIT
        while True:  # the pool connects again on the next call once the relay listens
            try:
                outcome = engine.evaluate()
                break
            except StoreError:
                assert time.monotonic() < deadline, "the store did not answer again"
        (fired,) = [a for a in outcome.fired if a.startswith("store_unreachable:")]
        alert = gate.store.alert(fired)
        assert alert is not None
        assert alert.detail["error"] == "store unreachable"
        assert alert.detail["denied"] == 2
        shown = [d.reason or "" for d in decisions] + [json.dumps(alert_dict(alert))]
    finally:
        open_gate.close()
        gate.close()
        relay.cut()
    # The lines that tell of the outage (others, such as "not refreshed from ...", name the
    # store by its `where` on purpose: see the test above).
    told = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and r.getMessage().startswith(("store unreachable", "alerts: the store does not answer"))
    ]
    assert any("store unreachable, call denied" in m for m in told)
    assert any("alerts: the store does not answer (store unreachable)" in m for m in told)
    where = ("127.0.0.1", str(relay.port), f"/{info.get('dbname')}", ROLE, PG_PASSWORD)
    assert [(w, t) for t in shown + told for w in where if w in t] == []
    # The driver's words and the server's address stay in the log, at DEBUG, with no password.
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(f"127.0.0.1:{relay.port}" in m for m in debug)
    assert not leaked([caplog.text, *debug])


@pytest.mark.slow
def test_the_serve_banner_and_output_hold_no_password(secret_pg_url: str, tmp_path: Path) -> None:
    port = closed_port()
    (tmp_path / "spendgate.toml").write_text(
        f"""
[alerts]
allow_private_destinations = true

[alerts.channels]
json = "json://127.0.0.1:{port}/in?token={JSON_TOKEN}"

[alerts.channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/h?token={HOOK_TOKEN}"
secret = "{WEBHOOK_SECRET}"
"""
    )
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    for _ in range(3):  # a free port taken meanwhile by another test: take another
        listen = free_port()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [str(SPENDGATE), "serve", "--db", secret_pg_url, "--port", str(listen),
                 "--config", str(tmp_path / "spendgate.toml")],
                stdout=stdout, stderr=stderr, cwd=tmp_path,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and process.poll() is None:  # start-up
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{listen}/healthz", timeout=2).is_success:
                        break
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=WAIT)
        if "in use" not in err.read_text():
            break
    output = out.read_text() + err.read_text()
    assert "spendgate: serving postgresql://127.0.0.1:5432/test on " in output, output
    assert not leaked([output])


# -- no server-side request forgery -----------------------------------------------------------

PRIVATE_HOSTS = [
    "127.0.0.1",
    "[::1]",
    "169.254.169.254",
    "10.1.2.3",
    "localhost",
    "0.0.0.0",
    "2130706433",
    "[::ffff:127.0.0.1]",
]


def _forms(host: str) -> dict[str, dict[str, Any]]:
    return {
        "hook": {"kind": "webhook", "url": f"http://{host}:8080/hook"},
        "json": {"url": f"json://{host}/in"},
        "email": {"url": f"mailto://ops:pw@example.com?smtp={host.strip('[]')}&to=a@b.c"},
    }


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
@pytest.mark.parametrize("form", ["hook", "json", "email"])
def test_a_private_destination_is_refused_at_configuration_time_unless_allowed(
    host: str, form: str
) -> None:
    channel = {form: _forms(host)[form]}
    with pytest.raises(ValidationError) as refused:
        alerting_config(channel, allow=False)
    assert refused.value.field == f"alerts.channels.{form}.url"
    assert "allow_private_destinations = true" in refused.value.expected
    allowed = alerting_config(channel, allow=True).alerts.channel(form)
    assert allowed.allow_private is True
    public = _forms("hooks.example.com")[form]
    assert alerting_config({form: public}, allow=False).alerts.channel(form).allow_private is False


def test_the_api_refuses_a_private_destination_and_cannot_allow_one(tmp_path: Path) -> None:
    gate = Gate.open(f"sqlite:///{tmp_path / 'sg.db'}", config=alerting_config({}, allow=False))
    try:
        admin = bearer(make_keys(gate).admin)
        with running(app_for(gate)) as base, httpx.Client(base_url=base, timeout=WAIT) as http:
            for host in ("169.254.169.254", "10.1.2.3", "127.0.0.1", "[::1]", "localhost"):
                hook = {"kind": "webhook", "url": f"http://{host}/latest/meta-data"}
                r = http.post(
                    "/api/cost/alerts/configure",
                    json={"notification_channels": {"hook": hook}},
                    headers=admin,
                )
                assert r.status_code == 422, r.text
                # Named as posted (the file's name is alerts.channels.hook.url).
                assert r.json()["errors"][0]["field"] == "notification_channels.hook.url"
            # The transports the seed's recipients go through are held to the same rule.
            for key, url in (
                ("smtp_url", "mailtos://u:p@10.1.2.3:587?from=a@example.com"),
                ("smtp_url", "mailtos://u:p@example.com?smtp=127.0.0.1&from=a@example.com"),
                ("slack_webhook", "http://169.254.169.254/latest/meta-data"),
                ("sms_url", "https://[::1]/sms"),
                ("sms_url", "json://localhost/sms"),
            ):
                r = http.post("/api/cost/alerts/configure", json={key: url}, headers=admin)
                assert r.status_code == 422, r.text
                assert r.json()["errors"][0]["field"] == key
                assert "allow_private_destinations" in r.text
                assert ":p@" not in r.text  # the password is not shown back
            # The allowance is the file's: the API has no way to set it.
            r = http.post(
                "/api/cost/alerts/configure",
                json={"alert_thresholds": {"allow_private_destinations": True}},
                headers=admin,
            )
            assert r.status_code == 422
            shown = http.get("/api/cost/alerts/configure", headers=admin).json()
            assert shown["settings"]["allow_private_destinations"] is False
            assert "hook" not in shown["settings"]["channels"]
    finally:
        gate.close()


def test_a_private_destination_is_refused_at_send_time_before_any_connection(
    receiver: Receiver, receiver6: Receiver
) -> None:
    # Channels made directly, as if a configuration check had been passed (or the name
    # resolved elsewhere then): the send checks again, after resolving the host.
    urls = [
        ("webhook", f"http://127.0.0.1:{receiver.port}/hook"),
        ("webhook", f"http://localhost:{receiver.port}/hook"),
        ("webhook", f"http://[::1]:{receiver6.port}/hook"),
        ("webhook", "http://169.254.169.254/latest/meta-data"),
        ("webhook", "http://10.1.2.3:8080/hook"),
        ("apprise", f"json://127.0.0.1:{receiver.port}/in"),
        ("apprise", f"json://localhost:{receiver.port}/in"),
        ("apprise", f"xml://[::1]:{receiver6.port}/in"),
        ("apprise", "json://169.254.169.254/in"),
        ("apprise", "mailto://ops:pw@example.com?smtp=10.0.0.5&to=a@b.c"),
    ]
    # The seed's recipients, through transports on private hosts.
    sent_through = [
        ("slack", f"http://127.0.0.1:{receiver.port}/hook", "#cost-alerts"),
        ("sms", f"http://localhost:{receiver.port}/sms", "+1234567890"),
        ("sms", f"json://[::1]:{receiver6.port}/sms", "+1234567890"),
        ("email", "mailto://ops:pw@10.0.0.5?from=a@example.com", "dev-team@fishmouth.io"),
    ]
    payload = {"key": "k", "data": {"a": 1}, "subject": "s", "html": "h", "sms": "s"}
    probes = [ChannelSettings("probe", kind, url) for kind, url in urls]  # type: ignore[arg-type]
    probes += [ChannelSettings("probe", k, url, to=(to,)) for k, url, to in sent_through]  # type: ignore[arg-type]
    for channel in probes:
        url = channel.url
        with pytest.raises(DeliveryError) as refused:
            channels.send(channel, payload)
        assert str(refused.value) == f"channel 'probe': {NOT_DELIVERED}", url
        assert "a private address" in refused.value.detail, (url, refused.value.detail)
    assert receiver.requests == []
    assert receiver6.requests == []
    # The machine's own name passes the configuration check (it is not `localhost`), and
    # is refused when sent if it resolves to a private address, as it does here.
    name = socket.gethostname()
    resolved = channels.addresses(name, receiver.port)
    if resolved and "127.0.0.1" in resolved:
        cfg = alerting_config(
            {"hook": {"kind": "webhook", "url": f"http://{name}:{receiver.port}/h"}}, allow=False
        )
        with pytest.raises(DeliveryError):
            channels.send(cfg.alerts.channel("hook"), payload)
        assert receiver.requests == []


def test_a_private_destination_is_delivered_to_when_allowed(
    receiver: Receiver, receiver6: Receiver
) -> None:
    cfg = alerting_config(
        {
            "hook": {
                "kind": "webhook",
                "url": f"http://localhost:{receiver.port}/hook?x=1",
                "secret": WEBHOOK_SECRET,
            },
            "hook6": {"kind": "webhook", "url": f"http://[::1]:{receiver6.port}/hook"},
            "json": f"json://127.0.0.1:{receiver.port}/in",
        },
        allow=True,
    )
    payload = {"key": "k1", "data": {"a": 1}, "subject": "s", "html": "<p>h</p>", "sms": "s"}
    for name in ("hook", "json", "hook6"):
        channels.send(cfg.alerts.channel(name), payload)
    (path, headers, body), (json_path, _, json_body) = receiver.requests
    # Connected to the checked address, while the request still names the URL's host.
    assert (path, headers["Host"]) == ("/hook?x=1", f"localhost:{receiver.port}")
    assert headers["X-Spendgate-Signature"] == signature(WEBHOOK_SECRET, body)
    assert json.loads(body) == {"a": 1}
    assert json_path.startswith("/in")
    assert json.loads(json_body)["title"] == "s"
    assert [h["Host"] for _, h, _ in receiver6.requests] == [f"[::1]:{receiver6.port}"]


def test_a_test_send_does_not_tell_what_answered(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 404
    gate = Gate.open(f"sqlite:///{tmp_path / 'sg.db'}", config=alerting_config({}, allow=True))
    try:
        admin = bearer(make_keys(gate).admin)
        with (
            resetting() as reset_port,
            running(app_for(gate)) as base,
            httpx.Client(base_url=base, timeout=WAIT) as http,
        ):
            answers = []
            for port in (closed_port(), receiver.port, reset_port):
                hook = {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}
                configured = http.post(
                    "/api/cost/alerts/configure",
                    json={"notification_channels": {"probe": hook}},
                    headers=admin,
                )
                assert configured.status_code == 200, configured.text
                r = http.post("/api/alerts/test", json={"channel": "probe"}, headers=admin)
                assert r.status_code == 200
                answers.append(r.json())
            assert len(receiver.requests) == 1  # the open port was reached, and answered 404
            plain = {
                "channel": "probe",
                "delivered": False,
                "error": f"channel 'probe': {NOT_DELIVERED}",
            }
            assert answers == [plain] * 3
    finally:
        gate.close()
