"""The package layout DESIGN.md describes, held by tests: data flows one way between the packages
of `src/genofed` (no import cycle, imports inside functions included), and modules stay small."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "genofed"
MAX_LINES = 500


def _unit(path: Path) -> str:
    """The package a module belongs to ("errors" etc. for the top-level modules)."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    units = set()
    package = ".".join(("genofed", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(tree):  # every import, at module level or inside a function
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module or ""]).rstrip(".")]
            else:
                names = [node.module or ""]
            names += [f"{names[0]}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "genofed" or len(parts) < 2:
                continue
            if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
                units.add(parts[1])
    return units


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path)
        graph[unit] |= _imported_units(path) - {unit}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert {"store", "ingest", "files", "formats", "access", "server"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_data_flows_one_way() -> None:
    """The layers DESIGN.md draws: formats and store know nothing of what serves them."""
    graph = import_graph()
    assert graph["formats"] <= {"errors"}
    assert graph["store"] <= {"errors", "config", "formats"}
    assert "store" not in graph["errors"] and not graph["errors"]
    for serving in ("server", "cli", "demo"):
        for lower in ("store", "ingest", "formats", "access", "beacon", "files"):
            assert serving not in graph[lower], f"{lower} imports {serving}"
    # The portal sits on top: nothing it shows reaches it except through what the APIs serve.
    for lower in ("store", "ingest", "formats", "access", "beacon", "files", "analysis",
                  "federation", "catalogue"):
        assert "portal" not in graph[lower], f"{lower} imports portal"
    assert not graph["portal"] & {"server", "cli", "demo"}


def test_no_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
