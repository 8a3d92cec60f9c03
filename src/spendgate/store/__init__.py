"""Storage: one contract (`Store`), a backend chosen by URL.

- `sqlite:///spendgate.db`: the embedded default, safe across threads and processes.
- `postgresql://user@host/db`: one budget and one ledger shared by many hosts.
- `memory://`: in-process, for tests.

Backends are imported only when their URL is used.
"""

from __future__ import annotations

from spendgate.errors import ValidationError
from spendgate.store.base import Store

DEFAULT_URL = "sqlite:///spendgate.db"
_SCHEMES = ("sqlite", "postgresql", "memory")


def open_store(url: str = DEFAULT_URL) -> Store:
    """Open the store at `url`, bringing its schema up to date."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValidationError("url", url, "a store URL such as sqlite:///spendgate.db or memory://")
    if scheme == "memory":
        from spendgate.store.memory import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from spendgate.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from spendgate.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValidationError("url", url, f"a URL whose scheme is one of {', '.join(_SCHEMES)}")


__all__ = ["DEFAULT_URL", "Store", "open_store"]
