"""spendgate: budgets that refuse a paid API call before the money is spent.

```python
import spendgate

gate = spendgate.Gate.open("sqlite:///spendgate.db", config="spendgate.toml")
with gate.spend("image_processor", "google_maps_optimized") as call:
    image = fetch_tile(lat, lng)
    call.set_cost("0.002")
```
"""

from spendgate.binding import Binding
from spendgate.budgets import Budget, BudgetStatus, Scope, Threshold
from spendgate.clock import Clock, system_clock
from spendgate.decisions import Decision
from spendgate.errors import (
    BudgetExceededError,
    ConfigError,
    ConflictError,
    ReservationStateError,
    SpendgateError,
    StoreClosedError,
    StoreError,
    UnknownSourceError,
    UnpricedSourceError,
    ValidationError,
)
from spendgate.events import Event, RecordResult
from spendgate.gate import Gate
from spendgate.money import from_nanos, to_nanos
from spendgate.pricing import Price, PriceBook
from spendgate.settings import Config
from spendgate.spend import Spend
from spendgate.store.base import CommitResult
from spendgate.windows import Window

__version__ = "0.1.0"

__all__ = [
    "Binding",
    "Budget",
    "BudgetExceededError",
    "BudgetStatus",
    "Clock",
    "CommitResult",
    "Config",
    "ConfigError",
    "ConflictError",
    "Decision",
    "Event",
    "Gate",
    "Price",
    "PriceBook",
    "RecordResult",
    "ReservationStateError",
    "Scope",
    "Spend",
    "SpendgateError",
    "StoreClosedError",
    "StoreError",
    "Threshold",
    "UnknownSourceError",
    "UnpricedSourceError",
    "ValidationError",
    "Window",
    "__version__",
    "from_nanos",
    "system_clock",
    "to_nanos",
]
