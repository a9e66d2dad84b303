"""The project's imports point down its layers and close no circle (docs/DESIGN.md, "Layers").

Every `import` and `from ... import` of every project module is read from its source (those
inside functions too: a lazy import is still a dependency), resolved to the project module it
names, and checked: its layer must not be above the importer's, and the graph of modules must
have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the first entry that is its name or a prefix of it.
LAYERS = (
    ("iaa_common",),
    ("elta",),
    ("baselines",),
    ("bench.data",),
    ("bench.profiles",),
    ("bench.train",),
    ("bench.run",),
    ("tables",),
    ("figures",),
    ("bench.dev",),
    ("run_all",),
)
PACKAGES = ("iaa_common", "elta", "baselines", "bench", "tables", "figures")
NAMESPACES = {"bench": "bench.data"}  # a package holding only sub-packages: its lowest layer


def project_modules() -> dict[str, Path]:
    modules = {"run_all": ROOT / "run_all.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def layer(module: str) -> int:
    module = NAMESPACES.get(module, module)
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in prefixes):
            return index
    raise AssertionError(f"{module}: in no layer of tests/test_layers.py")


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports (a package's `__init__` when that is all it names)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level or None]
                if path.name == "__init__.py":
                    package = module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    for module in project_modules():
        layer(module)


def test_no_import_points_up_a_layer():
    upward = [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_closes_a_circle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert find_cycle(edges) == expected


def test_the_layer_check_sees_an_upward_import(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from bench.run.grid import Row\n")
    modules = project_modules()
    assert imported("baselines.fake", source, modules) == {"bench.run.grid"}
    assert layer("bench.run.grid") > layer("baselines.fake")
