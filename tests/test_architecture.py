"""The package's shape: imports run one way between layers, no module imports
another in a cycle (not even lazily inside a function), modules stay small.

Every ``import`` statement of every module counts, wherever it stands: a
function-level import still ties the two modules together, and one under
``if TYPE_CHECKING:`` ties them for every reader and type checker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "phasic_mpi"

# What each layer may import besides itself. The base modules (errors, version,
# the typed-settings toolkit, the compiled _libphase) import nothing of the
# package but each other.
BASE = {"errors", "version", "settings", "_libphase"}
ALLOWED = {
    "model": set(),
    "inference": {"model"},
    "io": {"model"},
    "run": {"model", "inference", "io"},
    "analysis": {"model", "io"},
    "config": {"model", "inference", "io", "run"},
    "plotting": {"model", "io", "analysis"},
    "study": {"model", "inference", "io", "run", "analysis", "config"},
    "slurm": {"config"},
    "cli": {"model", "inference", "io", "run", "analysis", "config", "plotting", "study",
            "slurm"},
}
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Package modules that ``module`` imports (absolute names)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "phasic_mpi")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "phasic_mpi":
                found.add(target)
                # "from pkg import module" imports the module itself
                found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    sources = {p: _module_name(p) for p in PACKAGE.rglob("*.py")}
    modules = set(sources.values())
    graph = {}
    for path, name in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def test_layers_import_only_downwards():
    bad = []
    for module, targets in sorted(_graph().items()):
        layer = _layer(module)
        if layer == "<root>" or layer == "__main__":
            continue
        for target in sorted(targets):
            other = _layer(target)
            if other == layer or other in BASE:
                continue
            if layer in BASE or other not in ALLOWED.get(layer, set()):
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components; the package root re-exports the
    # public API (it imports everything and nothing imports it), so it is left out.
    graph = {m: {t for t in ts if t != "phasic_mpi"} for m, ts in graph.items() if m != "phasic_mpi"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_nothing_but_the_command_line_imports_the_package_root():
    offenders = [m for m, ts in _graph().items()
                 if "phasic_mpi" in ts and _layer(m) not in ("cli", "<root>")]
    assert not offenders, offenders


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_checker_sees_a_lazy_cycle(tmp_path):
    """The cycle check would catch a function-level or a type-only import (the old
    graph <-> moments)."""
    tree = ast.parse("def f():\n    from phasic_mpi.model import moments\n")
    assert "phasic_mpi.model.moments" in _imports(tree, "phasic_mpi.model.graph", False)
    typing_only = ast.parse("if TYPE_CHECKING:\n    from phasic_mpi.model.graph import Graph\n")
    assert "phasic_mpi.model.graph" in _imports(typing_only, "phasic_mpi.model.moments", False)


MAX_FUNCTION_LINES = 80
LONG_REASON = "# long:"


def test_functions_are_short_or_say_why():
    """No function body (docstring excluded) over 80 lines without a ``# long: why`` comment."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = node.body[0]
            docstring = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                         and isinstance(first.value.value, str))
            start = first.end_lineno + 1 if docstring and len(node.body) > 1 else first.lineno
            if node.end_lineno - start + 1 <= MAX_FUNCTION_LINES:
                continue
            head = lines[start - 1:start + 2]
            if not any(line.strip().startswith(LONG_REASON) for line in head):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not offenders, offenders
