"""The package's shape, checked by reading the source (``ast``), never by importing it.

What counts as an import: every ``import`` / ``from ... import`` statement anywhere in a
module -- at module level, inside functions and methods (lazy imports are still
dependencies: they only move the moment the other module is loaded), and under
``if TYPE_CHECKING:``. ``from momentlens.x import y`` is an edge to ``momentlens.x.y``
when that is a module, else to ``momentlens.x``; relative imports are resolved. Calls to
``importlib.import_module`` are not import statements and are not seen (the model
registry loads its family modules that way, by design).

Rules (issue 14):

* no import cycle between modules;
* ``data/`` and ``models/`` import nothing from ``analysis/``, ``engine/``, ``cam/`` or
  ``commands/``; ``analysis/`` nothing from ``engine/``, ``cam/`` or ``commands/``;
  ``cam/`` nothing from ``engine/`` or ``commands/``; only ``cli/`` and ``commands/``
  import ``commands/``;
* no function or method outside ``cli/`` (argparse) longer than 60 lines (from its ``def`` line
  to its last line, docstring included, decorators not), no module longer than 400
  lines;
* no decision by a model's name prefix (``.startswith("r2d")`` and the like).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "momentlens"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400
FUNCTION_LENGTH_EXEMPT = ("momentlens.cli",)  # the argparse package

# (layer whose modules are checked, layers they must not import)
LAYER_RULES = [
    ("data", {"analysis", "engine", "cam", "commands"}),
    ("models", {"analysis", "engine", "cam", "commands"}),
    ("analysis", {"engine", "cam", "commands"}),
    ("cam", {"engine", "commands"}),
]
# Only these may import commands/.
COMMANDS_USERS = {"cli", "commands"}
NAME_PREFIXES = ("r2d", "r3d", "rx3d")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def _tree(name: str) -> ast.Module:
    path = _modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _layer(name: str) -> str:
    """``momentlens.data.layout`` -> ``data``; ``momentlens.cli`` -> ``cli``; the root -> ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve_from(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = _modules()[name].name == "__init__.py"
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(name: str, node: ast.AST) -> list[str]:
    modules = _modules()
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve_from(name, node)
        found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
        return []
    out = []
    for target in found:
        # `import momentlens.data.layout.x` names an attribute: keep the longest module.
        while target and target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in modules and target != name:
            out.append(target)
    return out


@cache
def _imports() -> dict[str, dict[str, int]]:
    """module -> {imported momentlens module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name in _modules():
        edges: dict[str, int] = {}
        for node in ast.walk(_tree(name)):
            for target in _targets(name, node):
                edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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


def _cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """One concrete cycle inside ``component``, as ``a:line -> b:line -> ... -> a``."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    queue = [start]
    while queue:  # breadth-first, so the cycle shown is a short one
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                path.reverse()
                hops = [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:] + [start])]
                return " -> ".join(hops + [start])
            if w not in parent:
                parent[w] = v
                queue.append(w)
    return ", ".join(component)


def test_the_import_graph_is_read() -> None:
    # Guards the checks below against passing on an empty or misread graph: a
    # module-level, a function-level and a package-relative import are all seen.
    graph = _imports()
    assert "momentlens.data.decode" in graph["momentlens.data.prepare"]
    assert "momentlens.data.encode" in graph["momentlens.data.prepare"]  # inside a function
    assert "momentlens.models.registry" in graph["momentlens"]  # inside __getattr__
    assert "momentlens.utils" in graph["momentlens.data.layouts.common"]


def test_no_import_cycle() -> None:
    graph = _imports()
    cycles = [_cycle_path(graph, c) for c in _cycles(graph)]
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


@pytest.mark.parametrize(("layer", "forbidden"), LAYER_RULES, ids=[r[0] for r in LAYER_RULES])
def test_layers_import_only_downwards(layer: str, forbidden: set[str]) -> None:
    bad = [f"{src} (line {line}) imports {dst}"
           for src, edges in _imports().items() if _layer(src) == layer
           for dst, line in sorted(edges.items()) if _layer(dst) in forbidden]
    assert not bad, f"{layer}/ imports from {', '.join(sorted(forbidden))}/:\n  " + "\n  ".join(bad)


def test_only_cli_and_commands_import_commands() -> None:
    bad = [f"{src} (line {line}) imports {dst}"
           for src, edges in _imports().items() if _layer(src) not in COMMANDS_USERS
           for dst, line in sorted(edges.items()) if _layer(dst) == "commands"]
    assert not bad, "commands/ imported outside cli/ and commands/:\n  " + "\n  ".join(bad)


def test_functions_fit_on_a_screen() -> None:
    long = []
    for name in _modules():
        if name == FUNCTION_LENGTH_EXEMPT[0] or name.startswith(FUNCTION_LENGTH_EXEMPT[0] + "."):
            continue
        for node in ast.walk(_tree(name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{_modules()[name].relative_to(SRC)}:{node.lineno} "
                                f"{node.name}: {lines} lines")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long))


def test_files_hold_one_idea() -> None:
    long = []
    for path in _modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_FILE_LINES:
            long.append(f"{path.relative_to(SRC)}: {lines} lines")
    assert not long, f"modules over {MAX_FILE_LINES} lines:\n  " + "\n  ".join(long)


def _prefix_constants(node: ast.Call) -> list[str]:
    values = []
    for arg in node.args:
        items = arg.elts if isinstance(arg, ast.Tuple) else [arg]
        values += [i.value for i in items if isinstance(i, ast.Constant)
                   and isinstance(i.value, str)]
    return [v for v in values if v.startswith(NAME_PREFIXES)]


def test_no_decision_by_model_name_prefix() -> None:
    # The AST check catches every spelling (quotes, tuples, longer prefixes such as
    # "r3d1"); the text check is the grep, also over non-Python files.
    bad = []
    for name, path in _modules().items():
        for node in ast.walk(_tree(name)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "startswith" and _prefix_constants(node)):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}: "
                           f"startswith({', '.join(map(repr, _prefix_constants(node)))})")
    grep = re.compile(r'startswith\("(?:r2d|r3d|rx3d)"\)')
    for path in sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), start=1):
            where = f"{path.relative_to(SRC)}:{lineno}"
            if grep.search(line) and not any(b.startswith(where + ":") for b in bad):
                bad.append(f"{where}: {line.strip()}")
    assert not bad, "model kind decided by name prefix:\n  " + "\n  ".join(bad)
