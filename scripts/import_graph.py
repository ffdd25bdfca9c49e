"""The import graph of shmi_spark: print it, or check it has no cycle and no cross-module private import.

    python scripts/import_graph.py            # modules and what each imports, package by package
    python scripts/import_graph.py --dot      # the module graph for Graphviz (dot -Tpng)
    python scripts/import_graph.py --check    # exit 1 on a cycle or an import of another module's _name

Every import counts, at module level or inside a function (an import moved
into a function to dodge a cycle is still a cycle), except those under
``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "shmi_spark"
#: Packages in pipeline order, for printing.
ORDER = ["errors", "config", "data", "io", "hes", "model", "indicator", "pipeline", "session", "cli", "commands",
         "synth"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path, modules: set[str]) -> tuple[set[str], list[str]]:
    """(shmi_spark modules imported, private names imported from other modules) of one file."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    here = module_name(path)
    found: set[str] = set()
    private: list[str] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                else:
                    found.add(node.module)
                    if alias.name.startswith("_") and alias.name != "__version__" and node.module != here:
                        private.append(f"{here} imports {node.module}.{alias.name}")
    found = {m for m in found if m in modules and m != here}
    return found, private


def graph() -> tuple[dict[str, set[str]], list[str]]:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in files}
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for p in files:
        found, priv = imports(p, modules)
        # a module's own package __init__ is not a dependency worth drawing
        edges[module_name(p)] = {m for m in found if not module_name(p).startswith(m + ".")}
        private += priv
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _rank(module: str) -> tuple[int, str]:
    g = _group(module)
    return (ORDER.index(g) if g in ORDER else len(ORDER), module)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle or a cross-module private import")
    parser.add_argument("--dot", action="store_true", help="print the graph for Graphviz")
    args = parser.parse_args()
    edges, private = graph()
    if args.dot:
        print("digraph shmi_spark {\n  rankdir=LR; node [shape=box, fontsize=10];")
        for group in ORDER:
            members = sorted(m for m in edges if _group(m) == group)
            if members:
                nodes = " ".join(f'"{m}";' for m in members)
                print(f'  subgraph "cluster_{group}" {{ label="{group}"; {nodes} }}')
        for m in sorted(edges):
            for dep in sorted(edges[m]):
                print(f'  "{m}" -> "{dep}";')
        print("}")
    elif not args.check:
        for m in sorted(edges, key=_rank):
            deps = ", ".join(d.removeprefix(PACKAGE + ".") for d in sorted(edges[m], key=_rank))
            print(f"{m.removeprefix(PACKAGE + '.'):<28} ← {deps or '-'}")
    problems = [f"import cycle: {' ↔ '.join(c)}" for c in cycles(edges)] + [f"private import: {p}" for p in private]
    for p in problems:
        print(p, file=sys.stderr)
    if args.check:
        print(f"import graph: {len(edges)} modules, {sum(len(v) for v in edges.values())} imports, "
              f"{len(problems)} problem(s)")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
