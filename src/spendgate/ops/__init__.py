"""The operations pack: a Grafana dashboard and Prometheus recording and alerting rules over
`/metrics`, shipped inside the package so that an installed spendgate carries the files that
match its metrics (docs/operations.md says how to load them).

>>> from spendgate import ops
>>> ops.path(ops.RULES).name
'spendgate-rules.yml'

`python -m spendgate.ops` prints where each file is.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from spendgate.errors import ValidationError

__all__ = ["DASHBOARD", "FILES", "RULES", "RULE_TESTS", "path"]

DASHBOARD = "grafana/spendgate.json"
"""The Grafana dashboard, for Grafana's import or a provisioning folder."""
RULES = "prometheus/spendgate-rules.yml"
"""The recording and alerting rules, for `rule_files` in prometheus.yml."""
RULE_TESTS = "prometheus/spendgate-rules.test.yml"
"""The rules' unit tests: `promtool test rules` on this file (it names the rules beside it)."""
FILES = (DASHBOARD, RULES, RULE_TESTS)


def path(name: str) -> Traversable:
    """Where one of the pack's files (`DASHBOARD`, `RULES`, `RULE_TESTS`) is in the installed
    package: a real file, since spendgate installs unzipped."""
    if name not in FILES:
        raise ValidationError("name", name, f"one of the pack's files: {', '.join(FILES)}")
    return files(__name__).joinpath(name)
