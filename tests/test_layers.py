"""The package's imports run one way: each module imports only what stands on its floor or below, and no chain of
imports (at module level or inside functions) comes back to where it started."""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pe_dense")

# from the ground up; a module may import its own floor and those below, never above
FLOORS = [
    ("ground", ["pe_dense.errors", "pe_dense.io", "pe_dense.patches"]),
    ("core", ["pe_dense.specs", "pe_dense.modeling"]),
    ("parts", ["pe_dense.checkpoint", "pe_dense.detector_checkpoint", "pe_dense.optim", "pe_dense.data",
               "pe_dense.export", "pe_dense.analysis", "pe_dense.pictures", "pe_dense.factory", "pe_dense.convert",
               "pe_dense.features", "pe_dense.clip"]),
    ("face", ["pe_dense"]),  # pe_dense/__init__.py: what `import pe_dense` gives
    ("features", ["pe_dense.detectron2", "pe_dense.mmseg", "pe_dense.tracking", "pe_dense.probe", "pe_dense.predict",
                  "pe_dense.demo", "pe_dense.classify", "pe_dense.segment", "pe_dense.projection"]),
    ("command line", ["pe_dense.cli"]),
]


def _modules():
    out = {}
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = path
    return out


def _floor(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    assert best is not None, f"{module} stands on no floor: add it to FLOORS in {__file__}"
    return best[0]


def _imports(module: str, path: str, modules):
    """The package modules that ``module`` imports, anywhere in the file (lazy imports inside functions too)."""
    is_pkg = path.endswith("__init__.py")
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from X import name`: the submodule X.name when there is one, else X
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in modules:  # pe_dense.x.y.attr -> the module that holds it
                n = n.rpartition(".")[0]
            if n and n.startswith("pe_dense") and n != module:
                found.add(n)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_module_imports_only_its_floor_and_below(graph):
    up = [f"{m} ({FLOORS[_floor(m)][0]}) imports {t} ({FLOORS[_floor(t)][0]})"
          for m, targets in sorted(graph.items()) for t in sorted(targets) if _floor(t) > _floor(m)]
    assert not up, "imports that run back up:\n" + "\n".join(up)


def test_the_shared_helpers_import_nothing_of_the_package(graph):
    for m in ("pe_dense.io", "pe_dense.errors"):
        assert not graph[m], f"{m} imports {graph[m]}"


def test_no_module_imports_the_command_line(graph):
    assert not [m for m, t in graph.items() if "pe_dense.cli" in t]


def test_no_import_cycle(graph):
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_lazy_and_relative_imports(graph):
    """The walk itself: it finds the imports inside functions and the relative ones (else the tests above pass on
    nothing)."""
    assert "pe_dense.factory" in graph["pe_dense.tracking.cli"]  # `from ..factory import` inside a function
    assert "pe_dense.modeling.rope" in graph["pe_dense.modeling.vit"]  # relative, at module level
