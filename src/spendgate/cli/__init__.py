"""The `spendgate` command: a thin shell over the library. Parse, call, render.

Every command takes `--db URL` (env `SPENDGATE_DB`, default `sqlite:///spendgate.db`) and
`--config PATH` (env `SPENDGATE_CONFIG`; default `./spendgate.toml` if it exists, else the
seed's defaults). Errors print one line saying what is wrong and exit with status 2.

One module a concern: `shell` (what every command shares), `figures`, `ledger`, `service`,
`reporting`, `simulation`; each registers its commands on `app` when imported.
"""

from spendgate.cli import figures, ledger, reporting, service, simulation
from spendgate.cli.shell import app, main

__all__ = ["app", "figures", "ledger", "main", "reporting", "service", "simulation"]
