"""The server's settings: flags, environment (`SPENDGATE_*`), defaults, in that order."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from spendgate.store import DEFAULT_URL

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 32 * 2**20  # a batch of 10,000 events fits with room to spare
MAX_BATCH = 10_000
DEFAULT_SHUTDOWN_GRACE = 10.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0  # a 32 MiB body (the body limit) at 5 Mbit/s, with room to spare
DEFAULT_MAX_HEADER_BYTES = 16 * 2**10  # Node's default; a browser's head is well under it


class ServerSettings(BaseSettings):
    """How `spendgate serve` runs. Each field may be set as `SPENDGATE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SPENDGATE_", extra="ignore")

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    db: str = DEFAULT_URL
    config: str | None = None
    cors_origins: list[str] = []
    """Origins allowed to call the API from a browser; none (CORS off) by default."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1024)
    fast_path: bool = True
    """Answer a plain single-event `POST /api/events` without the framework's layers (the
    same answer, over twice the requests a second: docs/benchmarks.md). Off, every request
    takes the full route: a way to rule the fast path out when looking into a problem."""
    ws_interval: float = Field(default=0.25, gt=0, le=10)
    """How often live clients are sent changes (seconds): at most 1/ws_interval a second."""
    ws_queue: int = Field(default=64, ge=1, le=10_000)
    """Alerts queued for one slow live client before it is dropped."""
    alerting: bool = True
    """Evaluate alert rules and deliver notifications in this process (any number of
    processes may: they share the work through the store)."""
    dispatch_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between delivery rounds when the outbox is idle."""
    report_dir: str | None = None
    """Write each month's report (every format) into REPORT_DIR/YYYY-MM once it is over."""
    report_channel: str | None = None
    """An alert channel to announce each scheduled report through."""
    shutdown_grace: float = Field(default=DEFAULT_SHUTDOWN_GRACE, ge=1, le=3600)
    """Seconds a stop (SIGTERM, SIGINT) may take: requests in flight and background work
    get until shortly before it ends (a second before, or half of it under 2 s), then what
    is left is cut off and the server closes the store and exits."""
    header_timeout: float = Field(default=DEFAULT_HEADER_TIMEOUT, ge=1, le=3600)
    """Seconds a client has to send a request's whole head (request line and headers),
    counted from when its connection opens or, kept alive, from the first byte after an
    answer; then the connection is closed. Bytes arriving meanwhile do not restart the
    count (see `connections`)."""
    body_timeout: float = Field(default=DEFAULT_BODY_TIMEOUT, ge=1, le=3600)
    """Seconds a client has to send a request's whole body once its head is complete; then
    it is answered 408 (or, its answer begun, closed). Bytes arriving meanwhile do not
    restart the count (see `connections`)."""
    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024, le=2**20)
    """The most bytes a request's head may take; a longer one gets 431 and is closed."""
    public_url: str | None = None
    """The URL people open (alerts link to it); by default http://HOST:PORT."""

    @property
    def url(self) -> str:
        """Where the server is reached."""
        return self.public_url or f"http://{self.host}:{self.port}"
