"""The `postgresql://` URL: libpq's connection string, and the options spendgate reads from it
(see `store/postgres.py` for what each does)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from spendgate.errors import ValidationError
from spendgate.money import number_text
from spendgate.store.base import url_flag

DEFAULT_POOL_SIZE = 10
DEFAULT_TIMEOUT = 1.5
"""Seconds a call waits for a connection (from the pool, or a new one) before it gives up
and the store counts as unreachable: `authorize()` and `reserve()` then fail closed."""
MAX_TIMEOUT = 600.0
CLOCKS = ("caller", "database")
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class Options:
    """A `postgresql://` URL, read and checked."""

    conninfo: str
    """libpq's connection string, `search_path` set to the schema if one is named."""
    pool_conninfo: str
    """The same, for the pool: a connection attempt takes no longer than a call waits."""
    where: str
    """The server and database as messages name them (without user or password)."""
    schema: str | None
    pool_size: int
    timeout: float
    database_clock: bool
    migrate: bool

    @classmethod
    def read(cls, url: str) -> Options:
        """The options of `url`; `ValidationError` naming the first one that is wrong."""
        conninfo, options = parse_url(url)
        schema = options.get("schema")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValidationError(
                "url schema", schema, "a name of letters, digits and _ (not starting with a digit)"
            )
        try:
            pool_size = int(options.get("pool_size", DEFAULT_POOL_SIZE))
        except ValueError:
            pool_size = 0
        if pool_size < 1:
            raise ValidationError("url pool_size", options["pool_size"], "a whole number >= 1")
        timeout = _seconds(options.get("timeout"), DEFAULT_TIMEOUT)
        clock = options.get("clock", "caller")
        if clock not in CLOCKS:
            raise ValidationError("url clock", clock, f"one of {', '.join(CLOCKS)}")
        migrate = url_flag(options.get("migrate", "true"), "url migrate")
        info = conninfo_to_dict(conninfo)
        where = (
            f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}"
        )
        if schema is not None:
            conninfo = make_conninfo(conninfo, options=f"-csearch_path={schema}")
        # libpq counts whole seconds, at least 2; the URL's own `connect_timeout` wins.
        pool_conninfo = conninfo
        if "connect_timeout" not in conninfo_to_dict(conninfo):
            pool_conninfo = make_conninfo(conninfo, connect_timeout=max(2, math.ceil(timeout)))
        return cls(
            conninfo,
            pool_conninfo,
            where,
            schema,
            pool_size,
            timeout,
            clock == "database",
            migrate,
        )


def _seconds(text: str | None, default: float) -> float:
    """The `timeout` option: seconds above 0, at most `MAX_TIMEOUT`."""
    try:
        value = default if text is None else float(number_text(text, "url timeout"))
    except ValidationError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise ValidationError(
            "url timeout",
            text if text is not None else default,
            f"a number of seconds above 0 and at most {MAX_TIMEOUT:g}, such as 2",
        )
    return value


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split a `postgresql://` URL into libpq's connection string and spendgate's options."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValidationError("url", url, "postgresql://USER@HOST[:PORT]/DATABASE")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("schema", "pool_size", "migrate", "clock", "timeout")}
    theirs = [(k, v) for k, v in query if k not in ours]
    libpq = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(theirs), ""))
    try:
        if "," not in parts.netloc:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValidationError(
            "url port", _hide_password(url), "a port number such as 5432"
        ) from None
    try:
        conninfo_to_dict(libpq)
    except psycopg.ProgrammingError as exc:
        raise ValidationError(
            "url", _hide_password(url), f"a valid postgresql:// URL ({first_line(exc)})"
        ) from None
    return libpq, ours


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL (for Alembic) of a spendgate `postgresql://` URL, schema included."""
    conninfo, options = parse_url(url)
    schema = options.get("schema")
    if schema is not None:
        conninfo = make_conninfo(conninfo, options=f"-csearch_path={schema}")
    return conninfo_url(conninfo)


def conninfo_url(conninfo: str) -> str:
    info = conninfo_to_dict(conninfo)
    query = {
        k: str(v)
        for k, v in info.items()
        if k not in ("user", "password", "host", "port", "dbname")
    }
    user = quote(str(info.get("user", "")), safe="")
    password = info.get("password")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" * bool(user))
    host = str(info.get("host", ""))
    if "," in host or host.startswith("/"):
        query["host"] = host
        host = ""
    port = f":{info['port']}" if "port" in info and host else ""
    dbname = quote(str(info.get("dbname", "")), safe="")
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql+psycopg://{auth}{host}{port}/{dbname}{tail}"


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
