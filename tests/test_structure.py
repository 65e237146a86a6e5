"""The package's shape: imports run one way (no module imports, directly or through
others, a module that imports it), and every module stays small enough to read whole."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hymoerec"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The hymoerec modules a file imports, at the top or inside a function; ``from
    hymoerec.x import y`` counts as importing ``hymoerec.x.y`` when that is a module."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in modules else node.module for name in names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        name: imported(ast.parse(path.read_text()), modules) - {name}
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_nothing_else() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = import_graph()
    assert "hymoerec.training.loop" in graph["hymoerec.training.run"]  # the graph is real
    assert cycles(graph) == []


def test_no_module_over_the_line_limit() -> None:
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert sizes["hymoerec.training.loop"] > 100  # the sizes are real
    assert {name: size for name, size in sizes.items() if size > MAX_LINES} == {}


def test_the_readme_layout_matches_the_package() -> None:
    """Every top-level module and package is in the README's layout table (a package as
    `name/`), and every file the table names exists."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    tops = {p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py")}
    tops -= {"__init__.py", "__main__.py"}
    expected = {f"`{top}/`" if (PACKAGE / top).is_dir() else f"`{top}`" for top in tops}
    assert sorted(name for name in expected if name not in layout) == []
    files = {path.name for path in PACKAGE.rglob("*.py")}
    named = set(re.findall(r"`([a-z_0-9]+\.py)`", layout))
    assert named and sorted(named - files) == []


def layout_rows() -> list[list[str]]:
    """The README layout table's rows, each as the top-level names in its first cell
    (`data/` -> data, `config.py` -> config)."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in layout.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            rows.append(
                [name.rstrip("/").removesuffix(".py") for name in re.findall(r"`([^`]+)`", first)]
            )
    return rows


def test_each_layout_row_imports_only_from_the_rows_above_it() -> None:
    order = {name: index for index, row in enumerate(layout_rows()) for name in row}
    assert order["schema"] < order["cli"]  # the table is read
    upward = []
    for module, targets in import_graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in order:
            continue  # hymoerec/__init__.py and __main__.py route to everything
        for target in targets:
            here, there = parts[1], target.split(".")[1] if "." in target else None
            if there in order and order[there] > order[here]:
                upward.append(f"{module} -> {target}")
    assert upward == []
