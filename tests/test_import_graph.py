"""The package's import graph: no circles, and sensors never import the plugin machinery.

Built from the source with ``ast``: module-level imports (``if TYPE_CHECKING:`` blocks included: a
circle that only type hints close is still a circle) and, for the circle check, imports inside
functions too (a lazy import that closes a circle only hides it), so a new circle fails here before
it becomes an import-order bug.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "atomizer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import: the body, and the bodies of module-level if / try blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out.extend(_module_level(node.body + node.orelse))
        elif isinstance(node, ast.Try):
            out.extend(_module_level(node.body + node.orelse + node.finalbody))
            for handler in node.handlers:
                out.extend(_module_level(handler.body))
    return out


def imported(node: ast.stmt, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of atomizer that ``node`` imports (``from pkg import submodule`` -> the submodule)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    subs = {f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known}
    if subs and len(subs) == len(node.names):
        return subs
    return subs | ({source} if source in known else set())


def import_graph(*, all_levels: bool = False) -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = list(ast.walk(tree)) if all_levels else _module_level(tree.body)
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.stmt):
                deps |= imported(node, name, path.name == "__init__.py", known)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_built_from_real_imports():
    graph = import_graph()
    assert "atomizer.sensors.spec" in graph["atomizer.sensors.loader"]
    assert "atomizer.data.transforms" in graph["atomizer.data.base"]


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert cycles(import_graph()) == [], "modules that import each other at import time"
    assert cycles(import_graph(all_levels=True)) == [], "a circle closed by a lazy import"


def test_sensors_never_import_plugins():
    """Sensor specs and their resolution know nothing of the plugin host: the host hands them
    what plugins registered (any import, even one inside a function, counts)."""
    graph = import_graph(all_levels=True)
    bad = {
        module: sorted(d for d in deps if d.startswith("atomizer.plugins"))
        for module, deps in graph.items()
        if module.startswith("atomizer.sensors")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_every_lazy_import_names_something_that_exists():
    """Imports inside functions run only when the function does: check each names a real
    module attribute now, so a removed or renamed function cannot hide behind one."""
    import importlib

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, _module_level(tree.body)))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in top or node.level:
                continue
            if not (node.module or "").startswith("atomizer"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ModuleNotFoundError:
                        missing.append(f"{module_name(path)}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []
