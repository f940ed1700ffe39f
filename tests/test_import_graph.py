"""The project's import graph, read with ``ast`` from every module (imports inside function bodies
included, since a lazy import still ties the modules together): no cycle, and layers point down
only (bins/cantor -> models/evaluation -> modules/processors/preprocessors -> utils)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bins", "cantor", "evaluation", "models", "modules", "preprocessors", "processors",
            "utils")
# Higher layers may import lower ones, never the reverse.
LAYER = {"utils": 0, "modules": 1, "processors": 1, "preprocessors": 1, "models": 2,
         "evaluation": 2, "bins": 3, "cantor": 3}


def module_files() -> dict[str, Path]:
    """{dotted module name: file} of every project module (a package is its __init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` (file ``path``) imports anywhere in its body. ``from a.b
    import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    resolved = set()
    for target in targets:
        # "import a.b.c" of a project module; the longest project prefix otherwise.
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts and ".".join(parts) != name:
            resolved.add(".".join(parts))
    return resolved


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a] of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_is_read_correctly():
    graph = import_graph()
    # Lazy imports inside function bodies count (bins import models only inside run()).
    assert "models.svc.registry" in graph["bins.svc.train"]
    assert "utils.schema" in graph["utils.config"]
    assert "processors.content.whisper" in graph["processors.content"]   # inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_point_down():
    upward = sorted(f"{name} imports {target}" for name, targets in import_graph().items()
                    for target in targets
                    if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]])
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
