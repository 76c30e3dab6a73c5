"""Structure figures of the package, read with ast (nothing imported): import circles, imports that run
up the layer order, functions over 60 lines and modules over 400 lines; ``--area PREFIX ...`` limits the
per-module figures to modules under those dotted prefixes (circles count when one of their modules is there).

Run from the project root: ``python benchmarks/house_figures.py [--area napari_autosam.inference ...]``.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys

#: Lowest first: a module may import from its own layer or any layer listed before it.
LAYERS = (
    ("napari_autosam.progress", "napari_autosam.device", "napari_autosam.paths", "napari_autosam.losses"),
    ("napari_autosam.io", "napari_autosam.data", "napari_autosam.class_sets"),
    ("napari_autosam.sam",),
    ("napari_autosam.models",),
    ("napari_autosam.inference", "napari_autosam.annotations", "napari_autosam.slide_regions"),
    ("napari_autosam.training",),
    ("napari_autosam.distributed", "napari_autosam.jobs"),
    ("napari_autosam.cli", "napari_autosam.demo_loop"),
    ("napari_autosam._qt", "napari_autosam._reader", "napari_autosam._writer", "napari_autosam._sample_data",
     "napari_autosam._geojson", "napari_autosam.__main__"),
)


def layer(module: str) -> int | None:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (rank, len(p))
    return None if best is None else best[0]


def modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for p in root.rglob("*.py"):
        parts = list(p.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = p
    return found


def imports(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for m, p in mods.items():
        out = edges.setdefault(m, set())
        pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(n, ast.ImportFrom):
                base = ".".join(pkg[: len(pkg) - n.level + 1] + ([n.module] if n.module else [])) if n.level \
                    else n.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in n.names]
            elif isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and t.startswith("napari_autosam"):
                    out.add(t)
    return edges


def circles(edges: dict[str, set[str]], mods) -> list[list[str]]:
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return [c for c in comps if sum(1 for x in c if mods[x].name != "__init__.py") > 1]


def long_functions(path: pathlib.Path, limit: int = 60) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = child.end_lineno - child.lineno + 1
                if n > limit:
                    found.append((prefix + child.name, n))
                walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(tree)
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", nargs="*", default=["napari_autosam"], help="dotted module prefixes")
    args = parser.parse_args(argv)
    mods = modules(pathlib.Path("napari_autosam"))
    edges = imports(mods)

    def inside(m):
        return any(m == a or m.startswith(a + ".") for a in args.area)

    rings = [c for c in circles(edges, mods) if any(inside(m) for m in c)]
    up = sorted(f"{m} -> {t}" for m, ts in edges.items() if inside(m) for t in ts
                if layer(m) is not None and layer(t) is not None and layer(t) > layer(m))
    longs = [(m, name, n) for m, p in sorted(mods.items()) if inside(m) for name, n in long_functions(p)]
    big = [(m, len(p.read_text(encoding="utf-8").splitlines())) for m, p in sorted(mods.items()) if inside(m)]
    big = [(m, n) for m, n in big if n > 400]
    for c in rings:
        print("circle:", ", ".join(c))
    for a in up:
        print("up:", a)
    for m, name, n in longs:
        print(f"long: {m}.{name} {n}")
    for m, n in big:
        print(f"big: {m} {n}")
    print(f"{len(rings)} import circles, {len(up)} arrows up, {len(longs)} functions > 60 lines, "
          f"{len(big)} modules > 400 lines")


if __name__ == "__main__":
    main()
