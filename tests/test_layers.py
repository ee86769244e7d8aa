"""The runtime's layers import downwards only, and no runtime modules import each other in a cycle.

Layers, lowest first: the root modules (errors, files, paths, inputs, cli_errors, images,
scores) <- model/, data/, crf/ <- segment/ <- report/ <- infer/, with the public API (runtime/__init__.py)
on top of them all. Every import counts: at module level,
inside functions and under ``if TYPE_CHECKING:`` (a type-only import is still a reference
back up). tests/test_packaging.py checks the direction between the stages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
# "": the root modules
LAYERS = {"": 0, "model": 1, "data": 1, "crf": 1, "segment": 2, "report": 3, "infer": 4, "api": 5}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "tseg." + ".".join(parts)


MODULES = {_module_name(path): path for path in RUNTIME.rglob("*.py")}


def _imported(path: Path) -> set[tuple[int, str]]:
    """(line, runtime module) for every import in a file; ``from pkg import sub`` names the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            found |= {(node.lineno, name) for name in subs or {node.module}}
    return {(line, name) for line, name in found if name in MODULES}


def _graph() -> dict[str, set[str]]:
    """Module -> the runtime modules it imports, leaving out its own parent packages
    (importing a submodule loads them anyway: that is not an edge back)."""
    graph = {}
    for name, path in MODULES.items():
        parents = {name.rsplit(".", depth)[0] for depth in range(1, name.count("."))}
        graph[name] = {target for _, target in _imported(path)} - parents - {name}
    return graph


def _layer(module: str) -> str:
    """The subpackage of a runtime module: "" for a root module, "api" for tseg.runtime itself."""
    parts = module.split(".")[2:]
    if not parts:
        return "api"
    return parts[0] if parts[0] in LAYERS else ""


def test_every_runtime_module_has_a_layer():
    assert {_layer(name) for name in MODULES} == set(LAYERS)


def test_layers_import_downwards_only():
    """A module imports its own layer or lower ones (model/, data/ and crf/ may use each other: next test)."""
    upward = []
    for name, path in MODULES.items():
        for line, target in sorted(_imported(path)):
            if _layer(target) != _layer(name) and LAYERS[_layer(target)] > LAYERS[_layer(name)]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target}")
    assert not upward, "\n".join(upward)


def test_subpackages_of_one_layer_do_not_import_each_other():
    """model/, data/ and crf/ share a layer: an edge between two of them goes one way only."""
    edges = {(_layer(a), _layer(b)) for a, targets in _graph().items() for b in targets}
    mutual = sorted((a, b) for a, b in edges if a < b and (b, a) in edges and a != b)
    assert not mutual, f"subpackages importing each other: {mutual}"


def test_no_import_cycles_between_runtime_modules():
    """No two modules import each other, directly or through others (Tarjan's strongly connected components)."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_checks_see_type_checking_and_function_level_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tseg.runtime.segment.segmenter import Segmenter\n"
        "def f():\n    from tseg.runtime.crf import dense\n"
    )
    found = {name for _, name in _imported(source)}
    assert found == {"tseg.runtime.segment.segmenter", "tseg.runtime.crf.dense"}
