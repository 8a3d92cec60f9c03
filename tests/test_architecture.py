"""The layers of docs/architecture.md, checked: imports point down only, and the public API
is curated."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spendgate

SRC = Path(spendgate.__file__).parent
CORE = {
    "money",
    "pricing",
    "windows",
    "budgets",
    "decisions",
    "events",
    "rollups",
    "errors",
    "clock",
    "testing",
    "redaction",
}
LAYER = {
    **dict.fromkeys(CORE, 0),
    "config": 1,
    "store": 2,
    "binding": 3,
    "spend": 3,
    "gate": 3,
    "health": 3,
    "leases": 3,
    "control": 3,
    "keys": 3,
    "router": 4,
    "streams": 4,
    "http": 4,
    "llm": 4,
    "analytics": 4,
    "alerts": 4,
    "reports": 4,
    "cli": 5,
    "demo": 5,
    "serve": 5,
    "server": 5,
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "spendgate" or len(parts) < 2:
        return None
    return LAYER.get(parts[1])


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    module = "spendgate." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    mine = layer_of(module)
    if mine is None:
        return
    for imported in imports(path):
        theirs = layer_of(imported)
        if theirs is not None:
            assert theirs <= mine, f"{module} (layer {mine}) imports {imported} (layer {theirs})"


def test_core_does_no_io() -> None:
    forbidden = {"sqlite3", "os", "sqlalchemy", "socket", "threading", "asyncio", "subprocess"}
    for name in CORE - {"testing"}:
        for imported in imports(SRC / f"{name}.py"):
            assert imported.split(".")[0] not in forbidden, f"{name} imports {imported}"


def test_public_api_is_sorted_and_complete() -> None:
    assert spendgate.__all__ == sorted(spendgate.__all__)
    for name in spendgate.__all__:
        assert hasattr(spendgate, name), name
