"""The database schema, in SQLAlchemy Core: one definition for every SQL dialect.

Alembic migrations build it (`spendgate db upgrade`); a test checks that the migrated database
matches these tables. Times are integer microseconds since the Unix epoch (UTC); money is
integer nano-units; JSON columns hold text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    text,
)

metadata = MetaData()

budget_buckets = Table(
    "budget_buckets",
    metadata,
    Column("budget", String(200), primary_key=True),
    Column("bucket", BigInteger, primary_key=True, autoincrement=False),
    Column("spent", BigInteger, nullable=False, server_default=text("0")),
    Column("reserved", BigInteger, nullable=False, server_default=text("0")),
    Column("overshoot", BigInteger, nullable=False, server_default=text("0")),
    sqlite_with_rowid=False,
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("service", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("actual", BigInteger),
    Column("emergency", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("settled_at", BigInteger),
    # [[budget, bucket, span_start, cap], ...]: where the hold sits, for settling and expiry.
    Column("slots", Text, nullable=False),
    Column("labels", Text),  # JSON: the event of a commit made by another process needs them
    sqlite_with_rowid=False,
)
# Only pending holds can expire; the partial index keeps the sweep a short probe.
Index(
    "ix_reservations_pending_expiry",
    reservations.c.expires_at,
    sqlite_where=reservations.c.state == "pending",
    postgresql_where=reservations.c.state == "pending",
)

events = Table(
    "events",
    metadata,
    # A time-ordered surrogate key keeps inserts appending; request_id is the idempotency key.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(200), nullable=False, unique=True),
    Column("fingerprint", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("service", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("cost", BigInteger),  # NULL = unpriced, never $0
    Column("paid", Boolean, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("failure_reason", Text),
    Column("cache_hits", Integer, nullable=False, server_default=text("0")),
    Column("batch_processing", Boolean, nullable=False, server_default=text("false")),
    Column("quality_score", Float),
    Column("processing_time", Float),
    Column("price_version", String(250)),
    Column("reservation_id", String(200)),
    Column("emergency", Boolean, nullable=False, server_default=text("false")),
    # units, sources_used, free_sources_attempted, paid_apis_used, fallbacks_triggered, labels
    Column("detail", Text),
    # The first of its `location`/`region` labels: where the call was made (reports sum it).
    Column("location", Text),
)
Index("ix_events_ts", events.c.ts)
# Only events that say where: a month's geography reads these, not the month's every event.
Index(
    "ix_events_located",
    events.c.ts,
    sqlite_where=events.c.location.isnot(None),
    postgresql_where=events.c.location.isnot(None),
)

# Events summed per minute, hour and UTC day, service and source, in the events' transaction
# (see spendgate.rollups): every read of figures comes from here, never from a scan of events.
rollups = Table(
    "rollups",
    metadata,
    Column("step", BigInteger, primary_key=True, autoincrement=False),  # bucket length, µs
    Column("bucket", BigInteger, primary_key=True, autoincrement=False),
    Column("service", String(200), primary_key=True),
    Column("source", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("unpriced", BigInteger, nullable=False),
    Column("paid", BigInteger, nullable=False),
    Column("successes", BigInteger, nullable=False),
    Column("free_successes", BigInteger, nullable=False),
    Column("cache_hits", BigInteger, nullable=False),
    Column("cached", BigInteger, nullable=False),
    Column("batched", BigInteger, nullable=False),
    Column("batched_cost", BigInteger, nullable=False),
    Column("quality_sum", Float, nullable=False),
    Column("quality_count", BigInteger, nullable=False),
    Column("time_sum", Float, nullable=False),
    Column("time_count", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

quota_usage = Table(
    "quota_usage",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("unit", String(100), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("used", String(64), nullable=False),  # exact decimal text
)

# -- the control plane: API keys, definitions made over the API, and the audit of both -------

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("services", Text),  # JSON list; NULL = every service
    Column("secret_hash", String(128), nullable=False),  # never the secret itself
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", BigInteger),
    sqlite_with_rowid=False,
)

definitions = Table(
    "definitions",
    metadata,
    Column("kind", String(50), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("spec", Text),  # JSON; NULL = deleted (the row stays, to hide the file's definition)
    Column("revision", BigInteger, nullable=False),  # the audit entry that last changed it
    Column("changed_at", BigInteger, nullable=False),
    Column("changed_by", String(200), nullable=False),
    sqlite_with_rowid=False,
)

# Revisions are numbered by the writer (the newest plus one, under the control-plane lock), not
# by a sequence: a sequence hands out numbers in start order, which need not be commit order.
audit_log = Table(
    "audit_log",
    metadata,
    Column("revision", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(50), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("name", String(200), nullable=False),
    Column("before", Text),  # JSON, NULL = nothing before (a creation)
    Column("after", Text),  # JSON, NULL = nothing after (a deletion)
    sqlite_with_rowid=False,
)

# -- alerts and their notifications ----------------------------------------------------------

# One row per alert; the id names what it is about (`budget:daily:0.8:<window start>`), so
# every process that sees the same condition inserts the same row, once.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(300), primary_key=True),
    Column("rule", String(50), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("fired_at", BigInteger, nullable=False),
    Column("value", String(64)),
    Column("threshold", String(64)),
    Column("window_start", BigInteger),
    Column("detail", Text),  # JSON
    Column("resolved_at", BigInteger),
    Column("acknowledged_at", BigInteger),
    Column("acknowledged_by", String(200)),
    Column("silenced_until", BigInteger),
    Column("rounds", Integer, nullable=False, server_default=text("0")),  # notification rounds
    Column("notified_at", BigInteger),
    sqlite_with_rowid=False,
)
Index("ix_alerts_rule_scope", alerts.c.rule, alerts.c.scope)
Index("ix_alerts_fired_at", alerts.c.fired_at)

# The transactional outbox: notifications are written with the alert's round, and dispatchers
# claim due rows for a while (`claimed_until`), so a dead dispatcher's rows go to another.
outbox = Table(
    "outbox",
    metadata,
    Column("key", String(400), primary_key=True),  # <alert_id>/<round>/<channel>
    Column("alert_id", String(300), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("claimed_by", String(200)),
    Column("claimed_until", BigInteger),
    Column("delivered_at", BigInteger),
    Column("last_error", Text),
    # A dead letter: ended undelivered (its channel was deleted), never claimed again.
    Column("dead_at", BigInteger),
    sqlite_with_rowid=False,
)
# Only rows neither delivered nor dead are ever due: the partial index keeps a claim a short
# probe.
_DUE = and_(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
Index("ix_outbox_due", outbox.c.next_attempt_at, sqlite_where=_DUE, postgresql_where=_DUE)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("service", String(200), primary_key=True),
    Column("at", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# One row, replaced by `Store.probe_write()`: a health check's write that never grows the
# database, however often it runs.
write_probe = Table(
    "write_probe",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# -- views -----------------------------------------------------------------------------------

VIEWS = frozenset({"stream_usage", "usage_monitoring"})
"""Views the migrations create over the tables above, written per dialect in their revision:
`stream_usage` and `usage_monitoring` (0009), the second seed's table of stream usage by
trading day (see `spendgate.store.stream_days`)."""
