"""The server's commands: `serve`, `keys`, `alerts`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from spendgate.cli.shell import (
    ConfigOption,
    DbOption,
    JsonOption,
    alerts_app,
    app,
    console,
    errors,
    failures,
    keys_app,
    load_config,
    open_gate,
    say,
)
from spendgate.clock import system_clock
from spendgate.errors import NotFoundError, ValidationError
from spendgate.store import DEFAULT_URL, open_store
from spendgate.windows import from_micros, to_micros

# -- server -------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="SPENDGATE_HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(envvar="SPENDGATE_PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8765,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            envvar="SPENDGATE_SHUTDOWN_GRACE",
            min=1,
            max=3600,
            help="Seconds a stop (SIGTERM, Ctrl-C) may take before what is left is cut off.",
        ),
    ] = 10.0,
    header_timeout: Annotated[
        float,
        typer.Option(
            envvar="SPENDGATE_HEADER_TIMEOUT",
            min=1,
            max=3600,
            help="Seconds a client has to send a request's headers, from when its connection "
            "opens (kept alive: from its first byte after an answer); then it is closed.",
        ),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            envvar="SPENDGATE_BODY_TIMEOUT",
            min=1,
            max=3600,
            help="Seconds a client has to send a request's body once its headers are in; "
            "then it is answered 408 and closed.",
        ),
    ] = 60.0,
) -> None:
    """Serve the REST API, the live WebSocket and /metrics until SIGTERM or Ctrl-C (a
    second one exits at once). A port in use or a store that does not answer: one line and
    exit status 2, before any key is made."""
    from spendgate import serve as serving
    from spendgate.server import ServerSettings

    with failures():
        settings = ServerSettings(
            host=host,
            port=port,
            db=db,
            shutdown_grace=shutdown_grace,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
        )
        serving.run(settings, load_config(config), echo=say)


ScopeOption = Annotated[str, typer.Option("--scope", help="read, write or admin.")]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. ci or enrichment.")],
    scope: ScopeOption = "read",
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Limit the key to this service (repeatable)."),
    ] = None,
    db: DbOption = DEFAULT_URL,
) -> None:
    """Make an API key. Its token is printed this once; the store keeps only a hash."""
    from spendgate.keys import create_key

    with failures():
        store = open_store(db)
        try:
            token, key = create_key(
                store, name, scope, services=service, actor="cli", now=to_micros(system_clock())
            )
        finally:
            store.close()
    errors.print(f"key {key.key_id} ({key.scope}) made; its token, shown this once:")
    console.file.write(token + "\n")


@keys_app.command("list")
def keys_list(db: DbOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """List API keys (ids, names, scopes, services; never secrets)."""
    from spendgate.store.base import key_record

    with failures():
        store = open_store(db)
        try:
            keys = store.keys()
        finally:
            store.close()
    rows = [key_record(k) for k in keys]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("key", "name", "scope", "services", "created", "revoked")
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            k.scope,
            ", ".join(k.services) if k.services is not None else "all",
            from_micros(k.created_at).strftime("%Y-%m-%d %H:%M"),
            "-" if k.revoked_at is None else from_micros(k.revoked_at).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see keys list).")],
    db: DbOption = DEFAULT_URL,
) -> None:
    """Revoke an API key: every request with it fails from then on."""
    with failures():
        store = open_store(db)
        try:
            key = store.revoke_key(key_id, actor="cli", at=to_micros(system_clock()))
        finally:
            store.close()
        if key is None:
            raise NotFoundError("key", key_id)
    console.print(f"key {key_id} revoked", highlight=False)


# -- alerts -------------------------------------------------------------------------------


@alerts_app.command("list")
def alerts_list(
    state: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Alert history, newest first: rule, scope, severity, state, when, notifications."""
    from spendgate.alerts.notices import alert_dict

    with open_gate(db, config) as gate:
        if state not in (None, "firing", "resolved"):
            raise ValidationError("--state", state, "firing or resolved")
        found = [
            alert_dict(a, gate.config)
            for a in gate.store.alerts(state=state, limit=limit)  # type: ignore[arg-type]
        ]
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table("fired", "severity", "state", "alert", "acknowledged", "sent", title="Alerts")
    for a in found:
        table.add_row(
            a["fired_at"][:19],
            a["severity"],
            a["state"],
            a["title"],
            a["acknowledged_by"] or "-",
            str(a["notifications_sent"]),
        )
    console.print(table if found else "no alerts")


@alerts_app.command("check")
def alerts_check(
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Also deliver due notifications.")
    ] = True,
) -> None:
    """Judge every alert rule once and deliver what is due (for cron, without a server)."""
    from spendgate.alerts import AlertEngine, Dispatcher, channels

    with open_gate(db, config) as gate:
        channels.validate(gate.config.alerts)
        outcome = AlertEngine(gate).evaluate()
        sent = Dispatcher(gate).run_once() if deliver else None
    console.print(
        f"fired {len(outcome.fired)}, resolved {len(outcome.resolved)}, "
        f"notifications queued {outcome.enqueued}"
        + (
            f", delivered {sent.delivered}, failed {sent.failed}, dead (channel deleted) "
            f"{sent.dead}"
            if sent
            else ""
        ),
        highlight=False,
    )


@alerts_app.command("test")
def alerts_test(
    channel: Annotated[str, typer.Argument(help="A channel name from [alerts.channels].")],
    db: DbOption = DEFAULT_URL,
    config: ConfigOption = None,
) -> None:
    """Send a test notification through one channel, now."""
    from spendgate.alerts import channels
    from spendgate.alerts.notices import test_message

    with open_gate(db, config) as gate:
        settings = gate.config.alerts
        target = settings.channel(channel)
        channels.validate(settings)
        channels.send(
            target, test_message(target, settings, to_micros(gate.clock()), gate.config.currency)
        )
    console.print(f"test notification delivered to {channel}", highlight=False)
