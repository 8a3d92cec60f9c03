"""Several `spendgate serve` processes on one PostgreSQL store: an event recorded through one
reaches the live feed of another, within a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.serving import bearer, free_port, receive_until

SPENDGATE = Path(sys.executable).with_name("spendgate")


@contextmanager
def serving(db: str, env: dict[str, str]) -> Iterator[str]:
    """`spendgate serve` in a process of its own; yields its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(SPENDGATE), "serve", "--db", db, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # start-up: waiting for another process, not for time to pass
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode() if process.stderr else "")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("spendgate serve did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_an_event_posted_to_one_process_reaches_the_live_feed_of_another(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "SPENDGATE_WS_INTERVAL": "0.1"}
    made = subprocess.run(
        [str(SPENDGATE), "keys", "create", "two", "--scope", "write", "--db", postgres_url],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    token = made.stdout.strip().splitlines()[-1]
    with serving(postgres_url, env) as first, serving(postgres_url, env) as second:
        ws_url = second.replace("http", "ws") + f"/ws/cost-monitoring?token={token}"
        with connect(ws_url) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "cost_state"
            start = time.monotonic()
            event = {"service": "scraper", "source": "google_maps_optimized"}
            posted = httpx.post(f"{first}/api/events", json=event, headers=bearer(token))
            assert posted.status_code == 201
            receive_until(
                ws,
                lambda m: (
                    m.get("data", {})
                    .get("live_figures", {})
                    .get("current_daily_spend", {})
                    .get("value")
                    == "0.002"
                ),
                seconds=1.0,
            )
            assert time.monotonic() - start < 1.0
