"""API keys: random, shown once, stored only as a hash, compared in constant time.

A key reads `sg_<id>_<secret>`. The id is public (it names the key in listings and the audit
log); the secret is 256 random bits, of which the store keeps a SHA-256 digest. Secrets that
random need no slow hash: nobody can guess one from its digest.

>>> from spendgate.store import open_store
>>> store = open_store("memory://")
>>> token, key = create_key(store, "ci", "write", actor="setup", now=0)
>>> ring = KeyRing(store)
>>> ring.verify(token) == key
True
>>> ring.verify(token[:-1] + "x") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable

from spendgate.errors import StoreUnreachableError, ValidationError
from spendgate.events import check_id
from spendgate.store.base import KEY_SCOPES, ApiKey, ControlStore, KeyScope

log = logging.getLogger("spendgate")

PREFIX = "sg_"
DEFAULT_REFRESH_SECONDS = 2.0
"""How long a key ring trusts its copy of the keys (revocations elsewhere reach it by then)."""
_MISS_REFRESH_SECONDS = 0.25  # an unknown id re-reads at most this often: no store flood
_TOKEN = re.compile(r"sg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def hash_secret(secret: str) -> str:
    """The digest a key's secret is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def allows(granted: KeyScope, needed: KeyScope) -> bool:
    """Whether a key of scope `granted` may do what needs `needed` (admin > write > read)."""
    return KEY_SCOPES.index(granted) >= KEY_SCOPES.index(needed)


def check_scope(scope: object) -> KeyScope:
    """A key scope, validated."""
    if scope not in KEY_SCOPES:
        raise ValidationError("scope", scope, f"one of {', '.join(KEY_SCOPES)}")
    return scope


def create_key(
    store: ControlStore,
    name: str,
    scope: str,
    *,
    services: Iterable[str] | None = None,
    actor: str,
    now: int,
) -> tuple[str, ApiKey]:
    """Make and store a new key; returns the token (shown once, never stored) and the record."""
    clean_name = check_id(name, "name")
    limited = None if services is None else tuple(check_id(s, "services") for s in services)
    if limited is not None and not limited:
        raise ValidationError("services", [], "at least one service, or none to allow all")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        key_id=key_id,
        name=clean_name,
        scope=check_scope(scope),
        services=limited,
        secret_hash=hash_secret(secret),
        created_at=now,
        created_by=actor,
    )
    store.add_key(key)
    return f"{PREFIX}{key_id}_{secret}", key


class KeyRing:
    """The store's keys, kept in memory and read again every `refresh_every` seconds.

    `verify()` is a dictionary look-up and one digest: no store round trip per request. A key
    created or revoked through this ring counts at once; through another process, within
    `refresh_every` seconds (an unknown id also triggers a read, at most every 0.25 s).
    While the store does not answer, the keys last read stay in force (read again every
    `refresh_every` seconds), so that a request is answered on its merits (an authorize
    fails closed) rather than refused for want of its key.
    """

    def __init__(
        self, store: ControlStore, *, refresh_every: float = DEFAULT_REFRESH_SECONDS
    ) -> None:
        self.store = store
        self.refresh_every = refresh_every
        self._keys: dict[str, ApiKey] = {}
        self._read_at = -1e18
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read every key from the store now."""
        keys = {k.key_id: k for k in self.store.keys()}  # noqa: SIM118 - a method
        with self._lock:
            self._keys = keys
            self._read_at = time.monotonic()

    def keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, as last read."""
        self._fresh()
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def _fresh(self, *, missing: bool = False) -> None:
        age = time.monotonic() - self._read_at
        if age >= self.refresh_every or (missing and age >= _MISS_REFRESH_SECONDS):
            try:
                self.refresh()
            except StoreUnreachableError as exc:
                if self._read_at < 0:  # never read: there are no keys to go on with
                    raise
                with self._lock:
                    self._read_at = time.monotonic()  # try again in `refresh_every`
                log.warning("API keys not read again (the last read stay in force): %s", exc)

    def verify(self, token: str) -> ApiKey | None:
        """The live key a token belongs to, or `None` (malformed, unknown, wrong, revoked)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        self._fresh()
        key = self._keys.get(key_id)
        if key is None:
            self._fresh(missing=True)
            key = self._keys.get(key_id)
        digest = hash_secret(secret)
        # Compare even for an unknown id, so timing does not tell which ids exist.
        expected = key.secret_hash if key is not None else "0" * len(digest)
        if not hmac.compare_digest(expected, digest) or key is None:
            return None
        return key if key.revoked_at is None else None

    def create(
        self,
        name: str,
        scope: str,
        *,
        services: Iterable[str] | None = None,
        actor: str,
        now: int,
    ) -> tuple[str, ApiKey]:
        """`create_key()`, seen by this ring at once."""
        token, key = create_key(self.store, name, scope, services=services, actor=actor, now=now)
        self.refresh()
        return token, key

    def revoke(self, key_id: str, *, actor: str, now: int) -> ApiKey | None:
        """Revoke a key; it fails every request from now on (in this process at once)."""
        key = self.store.revoke_key(key_id, actor=actor, at=now)
        self.refresh()
        return key
