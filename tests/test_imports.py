"""The package's import graph has no cycle (imports inside functions count too), and
``import napari_reddino`` stays light: no torch, Qt, napari, matplotlib or dask."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_reddino"
NAME = "napari_reddino"


def _module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _targets(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Package modules an import statement loads (a submodule named by ``from X import y``
    counts as ``X.y``; a name defined in ``X`` counts as ``X``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:
            out.add(sub)
        elif source in modules:
            out.add(source)
    return out


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for module, path in modules.items():
        graph.add_node(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py", set(modules)):
                if target != module:
                    graph.add_edge(module, target)
    return graph


def test_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert graph.has_edge(f"{NAME}.cells", f"{NAME}.names")  # `from .names import ...`
    assert graph.has_edge(f"{NAME}.cli_run", f"{NAME}.report")  # inside a function
    assert graph.has_edge(f"{NAME}.widgets.embedding", f"{NAME}.widgets.segmentation")


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.simple_cycles(import_graph())]
    assert not cycles, f"import cycles: {cycles}"


def test_importing_the_package_stays_light():
    heavy = ("torch", "napari", "qtpy", "matplotlib", "dask", "anndata", "timm")
    code = (f"import sys, {NAME}; print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
