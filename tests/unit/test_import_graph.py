"""The shared library's modules import one way: no cycles, counting imports inside functions too
(a lazy import is still a dependency), and only the engine modules import a database. A kind
of storage defined in another package is loaded by name through the registry (a plugin), which
is not an import edge."""
from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "layers/shared/python"
DATABASE_MODULES = {"sqlite3", "pynamodb"}
ENGINES = {"cloudstrype.metadata.sqlite", "cloudstrype.metadata.dynamodb"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (LIBRARY / "cloudstrype").rglob("*.py"):
        parts = path.relative_to(LIBRARY).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    imported = set()
    for node in ast.walk(tree):
        for item in (node,):
            if isinstance(item, ast.Import):
                imported |= {alias.name for alias in item.names}
            elif isinstance(item, ast.ImportFrom):
                base = item.module or ""
                if item.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (item.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                imported.add(base)
                imported |= {f"{base}.{alias.name}" for alias in item.names}
    return imported


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {other for other in _imports(name, path) if other in modules}
            for name, path in modules.items()}


def test_no_import_cycles_in_the_shared_library():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # A package's __init__ importing its own submodules is not a cycle of meaning.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_only_the_engines_import_a_database():
    offenders = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in DATABASE_MODULES for n in names) and name not in ENGINES:
                offenders.append(name)
    assert not offenders, f"database imported outside the engines: {sorted(set(offenders))}"
