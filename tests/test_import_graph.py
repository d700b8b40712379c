"""No module of the project imports itself back through others: the import graph of the
project's own modules, read from the source with ast, has no circle.

Every import statement counts, also one inside a function: a lazy import hides a circle
from the interpreter, not from the reader of the code.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SKIP = {"runs", "data", "docs", "demo_out", "pca_params", "__pycache__"}


def project_modules(root: Path) -> dict[str, Path]:
    """Module name -> file: packages and scripts at the root by their dotted names, the
    tests' helpers by their own names (tests/ is on the path), bench/ scripts as
    `bench.<name>` (each run with its own folder on the path)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(p.startswith(".") or p in _SKIP for p in parts):
            continue
        if parts[0] == "tests":
            name = parts[-1]
        elif parts[0] == "bench":
            name = "bench." + parts[-1]
        else:
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The module names an import statement asks for (`from a import b` asks for a and,
    should b be a module, a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = package.split(".") if package else []
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    module = ".".join((base if node.level else []) + ([node.module] if node.module else []))
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def _resolve(wanted: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of `wanted` loads (its longest known prefix)."""
    candidates = [wanted]
    if importer.startswith("bench."):
        candidates.insert(0, "bench." + wanted)  # a script's sibling comes first
    for name in candidates:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its source)."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for wanted in _imported(node, package):
                    target = _resolve(wanted, name, modules)
                    if target is not None and target != name:
                        edges.add(target)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                on_stack.add(target)
                work.append((target, iter(sorted(graph[target]))))
            elif target in on_stack:
                low[node] = min(low[node], index[target])
    return found


def test_the_projects_modules_import_in_no_circle():
    modules = project_modules(ROOT)
    assert {"pipeline", "extract.decode", "extract.decode.pyav", "model.training.train"} <= set(modules)
    graph = import_graph(modules)
    assert "extract.decode.frame_rule" in graph["extract.decode.pyav"]
    assert circles(graph) == []


def test_a_circle_is_found_also_through_a_lazy_import(tmp_path):
    """The check itself: a circle of three modules, one edge inside a function."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("import pkg.c as c\nthing = 1\n")
    (tmp_path / "pkg" / "c.py").write_text("def later():\n    from pkg import a\n")
    (tmp_path / "pkg" / "d.py").write_text("from . import a, b\n")  # into the circle, not on it
    graph = import_graph(project_modules(tmp_path))
    assert graph["pkg.d"] == {"pkg", "pkg.a", "pkg.b"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
