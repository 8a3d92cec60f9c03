"""Where alerts may not go unless allowed: loopback, link-local and private hosts.

Pure checks, used twice: reading `[alerts.channels]` refuses a URL whose host is private as
written, and a channel checks every address its host resolves to at send time (`[alerts]
allow_private_destinations` lifts both).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs, urlsplit

from spendgate.redaction import SERVER_SCHEMES

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"(?:(?:0x[0-9a-f]*|[0-9]+)\.?){1,4}")


def private_address(address: str) -> bool:
    """Is this IP address one that alerts may not reach unless allowed? Loopback (127/8,
    ::1), link-local (169.254/16, fe80::/10), private (10/8, 172.16/12, 192.168/16,
    fc00::/7), unspecified (0.0.0.0, ::) and every other non-global or multicast address,
    IPv4 addresses inside IPv6 ones (mapped, 6to4, Teredo, NAT64) included."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and private_address(str(inner)):
            return True
    return not ip.is_global or ip.is_multicast


def private_host(host: str) -> bool:
    """Is this host, as written in a URL, private before any DNS lookup: a private IP
    literal, `localhost` or a name under `.localhost`, no host, or a number that is not a
    dotted-quad address (`2130706433`, `0x7f.1`: resolvers read these as addresses)."""
    name = host.strip("[]").rstrip(".").lower()
    if name in ("", "localhost") or name.endswith(".localhost"):
        return True
    try:
        return private_address(name)
    except ValueError:
        return _NUMERIC_HOST.fullmatch(name) is not None


def channel_hosts(url: str) -> list[str]:
    """The hosts a channel URL names as servers to send to: the URL's host for HTTP,
    webhooks, email and apprise's self-hosted services, and an email URL's `smtp=`
    server. Apprise's hosted services (Slack, Telegram...) send to their provider only."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SERVER_SCHEMES:
        return []
    try:
        parts = urlsplit(url)
        hosts = [parts.hostname or ""]
    except ValueError:
        return [""]
    if scheme.lower() in ("mailto", "mailtos"):
        hosts += parse_qs(parts.query).get("smtp", [])
    return hosts
