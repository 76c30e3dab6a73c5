"""The restructure's figures, read from the source with ast: import circles, imports up the layers, functions over
60 lines and modules over 400 lines (for the whole package, and for the parts given with --area).

Usage::

    python benchmarks/house_figures.py [--root PATH] [--area cli distributed io jobs _qt ...]

``--root`` is a checkout (default: this one); the layer order is the one
tests/test_layers.py writes.  Prints the counts and the names behind them.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _layers():
    spec = importlib.util.spec_from_file_location("layer_table", HERE / "tests" / "test_layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("napari_autosam", type(sys)("napari_autosam"))  # the table needs no package import
    sys.modules["napari_autosam"].__file__ = str(HERE / "napari_autosam" / "__init__.py")
    spec.loader.exec_module(module)
    return module.LAYERS


def modules_of(root: Path) -> dict[str, Path]:
    out = {}
    for path in (root / "napari_autosam").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def edges_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges = {}
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                t = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                names = [f"{t}.{a.name}" if f"{t}.{a.name}" in modules else t for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        edges[module] = targets
    return edges


def circles(modules, edges) -> list[list[str]]:
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if sum(1 for m in component if modules[m].name != "__init__.py") > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE)
    parser.add_argument("--area", nargs="*", default=None, help="units (sub-packages or top-level modules)")
    args = parser.parse_args(argv)
    modules = modules_of(args.root.resolve())
    edges = edges_of(modules)
    rank = {u: i for i, (_, units) in enumerate(_layers()) for u in units}
    area = set(args.area) if args.area else None

    def mine(module):
        return area is None or unit(module) in area

    found_circles = [c for c in circles(modules, edges) if any(mine(m) for m in c)]
    up = sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts
                if mine(m) and rank.get(unit(t), -1) > rank.get(unit(m), 99))
    long_functions, long_modules = [], []
    for module, path in sorted(modules.items()):
        if not mine(module):
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            long_modules.append(f"{module} {text.count(chr(10))}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long_functions.append(f"{module}:{node.name} {length}")
    print(f"area: {', '.join(sorted(area)) if area else 'whole package'} ({sum(map(mine, modules))} modules)")
    for title, rows in (("import circles", [", ".join(c) for c in found_circles]), ("imports up the layers", up),
                        ("functions over 60 lines", long_functions), ("modules over 400 lines", long_modules)):
        print(f"{title}: {len(rows)}")
        for row in rows:
            print(f"  {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
