"""The package's layout stays one-way: no import cycles, and no module reaches into another's
private names. Read from the source (every import, lazy ones inside functions included; imports
for type checkers only are left out), so a cycle fails here before it fails at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import plot_ray

ROOT = Path(plot_ray.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The plot_ray module an import names (``a.b.c`` may be the module ``a.b`` and its name c)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every plot_ray import in a file, except under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.startswith("plot_ray")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plot_ray"):
            out += [(node.module, a.name) for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, name in _imports(path):
            resolved = _resolve(f"{target}.{name}" if name else target)
            if resolved and resolved != module:
                graph[module].add(resolved)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_of_plot_ray_imports_itself_back():
    assert _cycles(_graph()) == []


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{module}: {target}.{name}"
        for module, path in MODULES.items()
        for target, name in _imports(path)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []
