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
)
Index("ix_events_ts", events.c.ts)

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
