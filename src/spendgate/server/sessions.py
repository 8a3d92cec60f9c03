"""Browser sign-in for the dashboard: one-time sign-in tokens and cookie sessions.

A person signs in either by opening the URL `spendgate serve` prints (it carries a one-time
sign-in token, never an API key) or by posting an API key to the sign-in form. Either way the
server makes a **session**: a random id sent back as an `HttpOnly; SameSite=Strict` cookie
(`Secure` too when the request came over https), bound to the id of the API key it stands
for. Every request with the cookie checks that key again, so revoking the key ends its
sessions. Each session also has a CSRF token the page sends back in `X-Spendgate-CSRF` on
every state-changing request.

Both live in this process's memory: a restart signs everyone out, and with several server
processes a person stays on the one that signed them in (or signs in on each).

>>> signins = SignIns(clock=lambda: 0.0)
>>> token = signins.mint("3f9a1c2b7d10")
>>> signins.consume(token), signins.consume(token)
('3f9a1c2b7d10', None)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "spendgate_session"
CSRF_HEADER = "X-Spendgate-CSRF"
DEFAULT_SIGNIN_TTL = 600.0
"""Seconds a printed sign-in URL stays usable (and it works once)."""
DEFAULT_SESSION_TTL = 12 * 3600.0
"""Seconds a session lasts from sign-in, whatever it does meanwhile."""
MAX_SESSIONS = 10_000  # a flood of sign-ins evicts the oldest, not the server's memory

Monotonic = Callable[[], float]


def _digest(secret: str) -> str:
    """Tokens and session ids are kept as digests: a memory dump does not sign anyone in."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SignIns:
    """One-time sign-in tokens, each bound to an API key id, usable once within `ttl`."""

    def __init__(self, *, ttl: float = DEFAULT_SIGNIN_TTL, clock: Monotonic = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def mint(self, key_id: str) -> str:
        """A new token for `key_id` (shown once: only its digest is kept)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[_digest(token)] = (key_id, now + self.ttl)
        return token

    def consume(self, token: str) -> str | None:
        """The key id a token was minted for, once; `None` if unknown, used or expired."""
        with self._lock:
            found = self._tokens.pop(_digest(token), None)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the API key it acts as and its CSRF token."""

    key_id: str
    csrf: str
    expires: float

    def csrf_matches(self, sent: str | None) -> bool:
        """Whether a request's CSRF header is this session's token (constant time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class Sessions:
    """Sessions of this process, by the digest of their cookie's id."""

    def __init__(self, *, ttl: float = DEFAULT_SESSION_TTL, clock: Monotonic = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, key_id: str) -> tuple[str, Session]:
        """A new session for `key_id`: the cookie's value (random, 256 bits) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(key_id, secrets.token_urlsafe(24), self._clock() + self.ttl)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session a cookie names, or `None` (unknown, ended or expired)."""
        if not session_id:
            return None
        digest = _digest(session_id)
        with self._lock:
            session = self._sessions.get(digest)
            if session is not None and session.expires <= self._clock():
                del self._sessions[digest]
                session = None
        return session

    def end(self, session_id: str | None) -> None:
        """Sign a session out (nothing happens for an unknown one)."""
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)
