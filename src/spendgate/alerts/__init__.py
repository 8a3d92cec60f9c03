"""Alerts that arrive once and wake the right people: rules, state, outbox, channels.

- Budget crossings are raised by the store in the transaction that crosses them, once per
  window (`store.alerting.crossing_alert`).
- `AlertEngine(gate).evaluate()` judges the scheduled rules (forecast, free-source rate,
  cost spike, anomaly, service offline, rate limit, spendgate's own health), fires and
  resolves alerts, and enqueues due notifications in the store's outbox.
- `Dispatcher(gate).run_once()` delivers the outbox through the channels, with retries.
"""

from spendgate.alerts.channels import DeliveryError, signature
from spendgate.alerts.dispatcher import Dispatcher, Round
from spendgate.alerts.engine import AlertEngine, Outcome

__all__ = ["AlertEngine", "DeliveryError", "Dispatcher", "Outcome", "Round", "signature"]
