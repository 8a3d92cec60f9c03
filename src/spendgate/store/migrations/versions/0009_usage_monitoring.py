"""The second seed's `usage_monitoring` table, as views of the events.

`stream_usage` has one row per event that carries stream usage (units `bytes`, `seconds` or
`events`, or a `trading_date` label): its trading date, and its messages, bytes, connected
microseconds and cost as integers. `usage_monitoring` sums it per trading date, source and
service under the seed's names (see `spendgate.store.stream_days`, which reads
`stream_usage` the same way, bounded by time, and whose Python rule the contract tests hold
to these views).

The seed's SQL reads it unchanged on SQLite:
`SELECT date, estimated_cost, events_processed, connection_time FROM usage_monitoring
WHERE date >= date('now', '-30 days') ORDER BY date DESC`.

Written out per dialect here, not imported, so that the step stays what it was whatever
later code does.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SQLITE_LABEL = "json_extract(detail, '$.labels.trading_date')"
_SQLITE_EVENTS = f"""
CREATE VIEW stream_usage AS
SELECT id, ts, source, service,
       CASE WHEN {_SQLITE_LABEL} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
            THEN {_SQLITE_LABEL}
            ELSE date(ts / 1000000, 'unixepoch') END AS date,
       COALESCE(CAST(json_extract(detail, '$.units.events') AS INTEGER), 0) AS events,
       COALESCE(CAST(json_extract(detail, '$.units.bytes') AS INTEGER), 0) AS bytes,
       COALESCE(CAST(ROUND(CAST(json_extract(detail, '$.units.seconds') AS REAL)
                           * 1000000) AS INTEGER), 0) AS micros,
       COALESCE(cost, 0) AS cost
FROM events
WHERE {_SQLITE_LABEL} IS NOT NULL
   OR json_extract(detail, '$.units.bytes') IS NOT NULL
   OR json_extract(detail, '$.units.seconds') IS NOT NULL
   OR json_extract(detail, '$.units.events') IS NOT NULL
"""
_SQLITE_DAYS = """
CREATE VIEW usage_monitoring AS
SELECT MIN(id) AS id,
       date,
       SUM(events) AS events_processed,
       SUM(bytes) AS data_bytes,
       SUM(cost) / 1000000000.0 AS estimated_cost,
       SUM(micros) / 3600000000.0 AS connection_time,
       strftime('%Y-%m-%dT%H:%M:%S', MIN(ts) / 1000000, 'unixepoch')
           || printf('.%06d', MIN(ts) % 1000000) || '+00:00' AS created_at,
       source,
       service,
       SUM(cost) AS cost_nanos
FROM stream_usage
GROUP BY date, source, service
"""

_PG_LABEL = "d #>> '{labels,trading_date}'"
_PG_EVENTS = f"""
CREATE VIEW stream_usage AS
SELECT id, ts, source, service,
       CASE WHEN {_PG_LABEL} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$'
            THEN {_PG_LABEL}
            ELSE to_char(to_timestamp(ts / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')
            END AS date,
       COALESCE(trunc((d #>> '{{units,events}}')::numeric), 0)::bigint AS events,
       COALESCE(trunc((d #>> '{{units,bytes}}')::numeric), 0)::bigint AS bytes,
       COALESCE(round((d #>> '{{units,seconds}}')::numeric * 1000000), 0)::bigint AS micros,
       COALESCE(cost, 0) AS cost
FROM (SELECT id, ts, source, service, cost, detail::jsonb AS d FROM events) AS e
WHERE {_PG_LABEL} IS NOT NULL
   OR d #> '{{units,bytes}}' IS NOT NULL
   OR d #> '{{units,seconds}}' IS NOT NULL
   OR d #> '{{units,events}}' IS NOT NULL
"""
_PG_DAYS = """
CREATE VIEW usage_monitoring AS
SELECT MIN(id) AS id,
       date,
       SUM(events)::bigint AS events_processed,
       SUM(bytes)::bigint AS data_bytes,
       SUM(cost)::double precision / 1000000000.0::double precision AS estimated_cost,
       SUM(micros)::double precision / 3600000000.0::double precision AS connection_time,
       to_char(to_timestamp(MIN(ts) / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '.' || lpad(mod(MIN(ts), 1000000)::text, 6, '0') || '+00:00' AS created_at,
       source,
       service,
       SUM(cost)::bigint AS cost_nanos
FROM stream_usage
GROUP BY date, source, service
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(_PG_EVENTS if postgres else _SQLITE_EVENTS)
    op.execute(_PG_DAYS if postgres else _SQLITE_DAYS)


def downgrade() -> None:
    op.execute("DROP VIEW usage_monitoring")
    op.execute("DROP VIEW stream_usage")
