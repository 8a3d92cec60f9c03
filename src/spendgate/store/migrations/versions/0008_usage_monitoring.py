"""The second seed's `usage_monitoring` table, as a view of the events: one row per trading
date, source and service of the stream usage in the ledger (see
`spendgate.store.stream_days`, whose Python rule the contract tests hold to this view).

The seed's SQL reads it unchanged on SQLite:
`SELECT date, estimated_cost, events_processed, connection_time FROM usage_monitoring
WHERE date >= date('now', '-30 days') ORDER BY date DESC`.

Written out per dialect here, not imported, so that the step stays what it was whatever
later code does.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SQLITE_LABEL = "json_extract(detail, '$.labels.trading_date')"
_SQLITE = f"""
CREATE VIEW usage_monitoring AS
SELECT MIN(id) AS id,
       date,
       SUM(events_n) AS events_processed,
       SUM(bytes_n) AS data_bytes,
       SUM(cost_n) / 1000000000.0 AS estimated_cost,
       SUM(micros_n) / 3600000000.0 AS connection_time,
       strftime('%Y-%m-%dT%H:%M:%S', MIN(ts) / 1000000, 'unixepoch')
           || printf('.%06d', MIN(ts) % 1000000) || '+00:00' AS created_at,
       source,
       service,
       SUM(cost_n) AS cost_nanos
FROM (
    SELECT id, ts, source, service,
           CASE WHEN {_SQLITE_LABEL} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
                THEN {_SQLITE_LABEL}
                ELSE date(ts / 1000000, 'unixepoch') END AS date,
           COALESCE(CAST(json_extract(detail, '$.units.events') AS INTEGER), 0) AS events_n,
           COALESCE(CAST(json_extract(detail, '$.units.bytes') AS INTEGER), 0) AS bytes_n,
           COALESCE(CAST(ROUND(CAST(json_extract(detail, '$.units.seconds') AS REAL)
                               * 1000000) AS INTEGER), 0) AS micros_n,
           COALESCE(cost, 0) AS cost_n
    FROM events
    WHERE {_SQLITE_LABEL} IS NOT NULL
       OR json_extract(detail, '$.units.bytes') IS NOT NULL
       OR json_extract(detail, '$.units.seconds') IS NOT NULL
       OR json_extract(detail, '$.units.events') IS NOT NULL
) AS usage
GROUP BY date, source, service
"""

_PG_LABEL = "d #>> '{labels,trading_date}'"
_PG_UTC_DATE = "to_char(to_timestamp(ts / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_PG = f"""
CREATE VIEW usage_monitoring AS
SELECT MIN(id) AS id,
       date,
       SUM(events_n)::bigint AS events_processed,
       SUM(bytes_n)::bigint AS data_bytes,
       SUM(cost_n)::double precision / 1000000000.0::double precision AS estimated_cost,
       SUM(micros_n)::double precision / 3600000000.0::double precision AS connection_time,
       to_char(to_timestamp(MIN(ts) / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '.' || lpad(mod(MIN(ts), 1000000)::text, 6, '0') || '+00:00' AS created_at,
       source,
       service,
       SUM(cost_n)::bigint AS cost_nanos
FROM (
    SELECT id, ts, source, service,
           CASE WHEN {_PG_LABEL} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$'
                THEN {_PG_LABEL}
                ELSE {_PG_UTC_DATE} END AS date,
           COALESCE(trunc((d #>> '{{units,events}}')::numeric), 0) AS events_n,
           COALESCE(trunc((d #>> '{{units,bytes}}')::numeric), 0) AS bytes_n,
           COALESCE(round((d #>> '{{units,seconds}}')::numeric * 1000000), 0) AS micros_n,
           COALESCE(cost, 0) AS cost_n
    FROM (SELECT id, ts, source, service, cost, detail::jsonb AS d FROM events) AS e
    WHERE {_PG_LABEL} IS NOT NULL
       OR d #> '{{units,bytes}}' IS NOT NULL
       OR d #> '{{units,seconds}}' IS NOT NULL
       OR d #> '{{units,events}}' IS NOT NULL
) AS usage
GROUP BY date, source, service
"""


def upgrade() -> None:
    op.execute(_PG if op.get_bind().dialect.name == "postgresql" else _SQLITE)


def downgrade() -> None:
    op.execute("DROP VIEW usage_monitoring")
