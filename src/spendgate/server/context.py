"""What every route works with: the gate, its analyst and control, the keys, the live hub."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from spendgate.analytics import Analyst
from spendgate.control import Control
from spendgate.gate import Gate
from spendgate.keys import KeyRing
from spendgate.server.settings import ServerSettings
from spendgate.windows import to_micros


@dataclass(slots=True)
class Context:
    """The server's parts, made once at start-up and shared by every request."""

    gate: Gate
    settings: ServerSettings
    keys: KeyRing
    analyst: Analyst
    control: Control

    def now(self) -> datetime:
        """The gate's time."""
        return self.gate.clock()

    def now_us(self) -> int:
        """The gate's time in microseconds."""
        return to_micros(self.gate.clock())


async def context(request: Request) -> Context:
    """The server's context (a FastAPI dependency; `async`, so no thread hop per request)."""
    ctx: Context = request.app.state.context
    return ctx
