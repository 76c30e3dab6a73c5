"""Imports point one way: no module imports from a layer above its own (read from the source with ast).

The layer order is written once, here (docs/architecture.md shows the same
table).  A unit is a sub-package (``io``, ``jobs``, …) or a top-level module
(``paths``, ``demo_loop``, …); units in one layer may import each other,
and every unit of the package must be placed in a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_autosam

#: Lowest first.  Each unit may import its own layer and the layers before it.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"__init__", "progress", "paths", "device", "qt_platform"}),
    ("files and data", {"io", "losses", "class_sets", "annotations", "slide_regions", "data",
                        "_sample_data"}),
    ("sam", {"sam"}),
    ("models", {"models"}),
    ("inference", {"inference", "measure"}),
    ("training", {"training"}),
    ("jobs", {"jobs", "demo_loop", "project"}),
    ("distributed", {"distributed"}),
    ("napari", {"_qt", "_reader", "_writer", "_geojson_hooks"}),
    ("cli", {"cli", "__main__"}),
]

ROOT = Path(napari_autosam.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ["napari_autosam", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path, modules: dict[str, Path]):
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield node.lineno, name


def upward_imports() -> list[str]:
    rank = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
    modules = _modules()
    found = []
    for module, path in sorted(modules.items()):
        for line, target in _imports(module, path, modules):
            here, there = rank[_unit(module)], rank[_unit(target)]
            if there > here:
                found.append(f"{path.relative_to(ROOT.parent)}:{line}: {module} ({LAYERS[here][0]}) imports "
                             f"{target} ({LAYERS[there][0]})")
    return found


def test_every_unit_has_a_layer():
    placed = {unit for _, units in LAYERS for unit in units}
    assert sorted({_unit(m) for m in _modules()} - placed) == []


def test_no_import_runs_up_the_layers():
    assert upward_imports() == []
