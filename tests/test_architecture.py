"""The layers of docs/architecture.md, checked: imports point down only, and the public API
is curated."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spendgate

SRC = Path(spendgate.__file__).parent
CORE = {
    "accounting",
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
    "destinations",
    "settings",
    "alert_settings",
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
    "holds": 3,
    "control": 3,
    "keys": 3,
    "router": 4,
    "streams": 4,
    "markets": 4,
    "http": 4,
    "llm": 4,
    "analytics": 4,
    "alerts": 4,
    "reports": 4,
    "cli": 5,
    "demo": 5,
    "serve": 5,
    "server": 5,
    "ops": 5,
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


def top_level_imports(path: Path, package: str) -> set[str]:
    """The spendgate modules `path` imports when it is loaded (top-level statements, and
    those under `if TYPE_CHECKING:` too: a cycle for the type checker is a cycle in the
    design), resolved to module names (`from spendgate.store import base` is the module
    `spendgate.store.base`)."""
    found: set[str] = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If):
            body += node.body + node.orelse
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spendgate.")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: from the package this module is in
                base = f"{package.rsplit('.', node.level - 1)[0]}.{base}"
            if base.startswith("spendgate"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("spendgate", *parts))


MODULES = {_module_name(p) for p in SRC.rglob("*.py")}


def test_no_module_imports_itself_back_within_a_layer() -> None:
    """Imports between modules of one layer must not go round in a circle: each module of a
    layer can be read knowing only those it imports."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {
            m
            for m in top_level_imports(path, package)
            if m != name and layer_of(m) == layer_of(name) and not name.startswith(m + ".")
        }
    cycles = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert cycles == []


def bound_names(path: Path, package: str) -> set[str]:
    """The public names a package's `__init__` binds at its top level: its definitions and
    assignments, and what it imports from its own modules (a name it imports from elsewhere
    for its own use, such as an error to raise, is not offered)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.module and (node.module == package or node.module.startswith(package + ".")):
                names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).partition(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("__init__.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_every_package_says_what_it_offers(path: Path) -> None:
    """A package's `__all__` is exactly the public names it offers (dunders such as
    `__version__` aside): nothing listed that it lacks, nothing public it forgot to list.
    A package that binds nothing (the migrations') needs none."""
    package = _module_name(path)
    offered = bound_names(path, package)
    tree = ast.parse(path.read_text())
    listed = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    if not listed and not offered:
        return
    assert listed, f"{package} offers {sorted(offered)} but has no __all__"
    names = {n for n in ast.literal_eval(listed[0]) if not n.startswith("__")}
    assert names == offered, package
