"""What may leave the process: URLs and error texts with their secrets hidden.

Channel URLs carry credentials and tokens (`mailto://user:pass@host`, `slack://TokenA/TokenB/
TokenC`, `tgram://bottoken/chatid`, `json://host/hook?token=...`) and database URLs carry
passwords. Every place that shows a URL or an error outside the process (responses, the
outbox's `last_error`, log records, the audit log, the serve banner) passes it through here,
and an `[alerts]` table passes through `redact_alerts` before the audit log shows it.
Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SERVER_SCHEMES = frozenset(
    {
        # HTTP and the JSON webhook; apprise's self-hosted services, whose URL host is the
        # server a message goes to; the store's URLs.
        "http",
        "https",
        "json",
        "jsons",
        "xml",
        "xmls",
        "form",
        "forms",
        "mailto",
        "mailtos",
        "gotify",
        "gotifys",
        "ntfy",
        "ntfys",
        "mmost",
        "mmosts",
        "rocket",
        "rockets",
        "matrix",
        "matrixs",
        "mqtt",
        "mqtts",
        "apprise",
        "apprises",
        "postgresql",
        "postgres",
        "sqlite",
        "memory",
    }
)
"""Schemes whose URL host names a server. Any other scheme (apprise's hosted services:
`slack://`, `tgram://`, `discord://`...) may hold a token where the host would be, so its
whole URL past the scheme is hidden."""

HIDDEN = "***"
# A URL runs to the next space or quote; punctuation that ends a sentence is not part of it.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^\s'\"<>]*[^\s'\"<>:,.;)])?")


def redact_url(url: str) -> str:
    """A URL safe to show: its scheme, and its host where the scheme has one; user,
    password, path and query hidden (`***`).

    >>> redact_url("mailto://user:pass@smtp.example.com?to=ops@example.com")
    'mailto://***@smtp.example.com/***'
    >>> redact_url("slack://TokenA/TokenB/TokenC")
    'slack://***'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return HIDDEN
    if scheme.lower().split("+", 1)[0] not in SERVER_SCHEMES:
        return f"{scheme}://{HIDDEN}" if rest else f"{scheme}://"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = authority.rsplit("@", 1)[-1]
    hidden = f"{HIDDEN}@" if "@" in authority else ""
    tail = f"/{HIDDEN}" if len(rest) > len(authority) else ""
    return f"{scheme}://{hidden}{host}{tail}"


def redact(text: str) -> str:
    """A message safe to show: every URL in it passed through `redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_alerts(spec: Mapping[str, Any]) -> dict[str, Any]:
    """An `[alerts]` table safe to show (the audit log keeps tables as given): channel and
    transport URLs (`smtp_url`, `slack_webhook`, `sms_url`) redacted, secrets hidden; a
    channel's recipients (addresses, a Slack channel, numbers) shown as given."""
    out = dict(spec)
    for key in ("smtp_url", "slack_webhook", "sms_url"):
        if isinstance(out.get(key), str):
            out[key] = redact_url(out[key])
    channels = out.get("channels")
    if isinstance(channels, Mapping):
        shown: dict[str, Any] = {}
        for name, value in channels.items():
            if isinstance(value, str):
                shown[name] = redact_url(value) if "://" in value else value
            elif isinstance(value, Mapping):
                table = dict(value)
                if isinstance(table.get("url"), str):
                    table["url"] = redact_url(table["url"])
                if "secret" in table:
                    table["secret"] = "(set)"
                shown[name] = table
            else:
                shown[name] = value
        out["channels"] = shown
    return out
