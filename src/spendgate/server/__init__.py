"""The spendgate server: a REST API, a live WebSocket feed and Prometheus metrics over a gate.

`create_app(gate)` builds the FastAPI application; `spendgate serve` runs it with uvicorn.
"""

from spendgate.server.app import create_app
from spendgate.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
