"""The harness's import structure: `python tools/check_imports.py` exits 1 and lists every import cycle and every
import against the layers.

Layers follow the data flow (data -> adapters -> rankings -> evaluation -> records -> leaderboard / gate): a module
may import its own package, a package on a lower layer, or a package on its own layer. LAYERS lists them from the
bottom; a package missing from it is an error, so a new package has to be placed deliberately.

Every `import` and `from ... import` of a `harness` module counts, at module level or inside a function: an
import moved into a function to dodge a cycle is still a cycle in the design. `from harness.a import b` is an
import of the module `harness.a.b` when that is a module, else of `harness.a`. The graph's strongly connected
components of more than one module are the cycles (Tarjan's algorithm; iterative, so deep graphs are fine).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom first. A "package" is the second part of a module name (harness.data.store -> data; harness.errors -> errors).
LAYERS: list[set[str]] = [
    {"harness", "errors", "io", "settings", "registry"},  # the package's version, errors, atomic files, settings
    {"metrics"},  # measures (a registry of plugins) and paired tests: numpy and scipy only
    {"data"},  # compiled datasets and their views
    {"diagnostics"},  # the paper's §7 diagnostics over a dataset's views
    {"protocol"},  # the adapter contract, submissions, parameters, decodings, ranking checks, stored units
    {"records"},  # result records: schema, files, provenance
    {"evaluation"},  # scoring, comparison, significance: units -> records
    {"runner"},  # the whole chain for one submission: data -> adapter -> units -> evaluation
    {"baselines", "generative"},  # adapters (found by name through the registry, never imported by the runner)
    {"experiments", "gate", "leaderboard"},  # readers of records
    {"cli", "__main__"},
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT, package: str = "harness") -> dict[str, set[str]]:
    """{module: the harness modules it imports}, over every .py file of the package."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if child in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join(parts[:keep] + ([node.module] if node.module else []))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
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
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], layers: list[set[str]] = LAYERS) -> list[str]:
    """"a -> b" for every import of a package on a higher layer than the importer's, and "a: not in LAYERS" for a
    module of a package no layer names; sorted."""
    rank = {package: i for i, packages in enumerate(layers) for package in packages}
    found = set()
    for module, targets in graph.items():
        if layer_of(module) not in rank:
            found.add(f"{module}: its package {layer_of(module)!r} is in no layer of LAYERS")
            continue
        for target in targets:
            if rank.get(layer_of(target), -1) > rank[layer_of(module)]:
                found.add(f"{module} -> {target}")
    return sorted(found)


def main() -> int:
    graph = import_graph()
    found = cycles(graph)
    for component in found:
        print("cycle: " + " <-> ".join(component))
    upward = upward_imports(graph)
    for line in upward:
        print("against the layers: " + line)
    if not found and not upward:
        print(f"no import cycle and no import against the layers among the harness's {len(graph)} modules")
    return 1 if found or upward else 0


if __name__ == "__main__":
    sys.exit(main())
