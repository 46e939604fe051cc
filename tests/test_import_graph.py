"""The package's import graph: no cycle, and ``modules/`` (the blocks) imports nothing above it.

The graph is read from the source (``ast``), not by importing: an edge ``a -> b`` for every ``import`` /
``from ... import`` of a package module in ``a``, at module level or inside a function (a lazy import). Lazy imports
count: they delay a cycle to the first call, they do not remove it, and a module that needs another only later still
depends on it. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. Importing a
submodule also runs its parent packages' ``__init__``; that implicit edge is not counted (every submodule would then
be in a cycle with its package's ``__init__``), so a package ``__init__`` that imports its submodules is fine.
Imports under ``if TYPE_CHECKING:`` are not counted (they never run). Strings resolved later (the patch table's
``"package.module:function"`` factories) are not imports either.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import yolo_mobilevit

PACKAGE = Path(yolo_mobilevit.__file__).parent
NAME = yolo_mobilevit.__name__
BLOCKS = f"{NAME}.modules"
#: What ``modules/`` may import from the rest of the package: leaf helpers that import nothing of the package.
BLOCKS_MAY_IMPORT = frozenset({f"{NAME}.errors"})


def module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str) -> dict[str, int]:
    """The package modules ``name`` imports: ``{module: first line}``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        for target in targets:
            if target in MODULES and target != name:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def find_cycle() -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _describe(cycle: list[str]) -> str:
    steps = [f"{a} (line {GRAPH[a][b]}) -> {b}" for a, b in itertools.pairwise(cycle)]
    return "import cycle:\n  " + "\n  ".join(steps)


def test_the_graph_is_read():
    """The reader sees the package's imports (a broken reader would find no cycle in anything)."""
    assert len(MODULES) > 30
    assert f"{NAME}.modules.layers" in GRAPH[f"{NAME}.modules.mobilenet"]  # module level, relative
    assert f"{NAME}.selftest" in GRAPH[f"{NAME}.integration"]  # inside a function
    assert f"{NAME}.modules" in GRAPH[f"{NAME}.builder"]  # from .modules import names -> the package


def test_no_import_cycle():
    cycle = find_cycle()
    assert cycle is None, _describe(cycle)


def test_cycle_finder_reports_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, f"{NAME}.errors", {f"{NAME}.builder": 1})  # builder imports errors
    cycle = find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and {f"{NAME}.errors", f"{NAME}.builder"} <= set(cycle)
    assert "line 1" in _describe(cycle)


def test_blocks_import_nothing_above_them():
    """``modules/`` is the bottom layer: every other part builds on it, it imports only itself and leaf helpers."""
    outside = {
        f"{name} (line {line}) imports {target}"
        for name, targets in GRAPH.items()
        if name == BLOCKS or name.startswith(f"{BLOCKS}.")
        for target, line in targets.items()
        if not (target == BLOCKS or target.startswith(f"{BLOCKS}.")) and target not in BLOCKS_MAY_IMPORT
    }
    assert not outside, sorted(outside)
    for leaf in BLOCKS_MAY_IMPORT:
        assert not GRAPH[leaf], f"{leaf} is allowed below modules/ as a leaf, but imports {sorted(GRAPH[leaf])}"
