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


def test_docks_keep_to_napari_public_api():
    """napari hands plugin docks a ``PublicOnlyProxy`` of the viewer and will block private
    access through it: no module may unwrap the proxy or name it."""
    offenders = [
        f"{path.relative_to(PACKAGE)}: {word}"
        for path in PACKAGE.rglob("*.py")
        for word in ("__wrapped__", "PublicOnlyProxy", "real_viewer")
        if word in path.read_text()
    ]
    assert not offenders, offenders


def test_the_triton_guard_runs_once_where_the_docks_import():
    """One call, in the dock package: core modules (backbones...) import with no side effect,
    and a process holding Mesa's LLVM that opens a dock can no longer import Triton."""
    calls = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "keep_triton_away_from_mesa_llvm"
    ]
    assert calls == ["widgets/__init__.py"]
    llvm = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libLLVM*.so*"))
    if not llvm:
        return  # no system LLVM to stand in for Mesa's here: the call site is all we can check
    code = (
        f"import ctypes, sys; ctypes.CDLL({str(llvm[0])!r}); "
        f"import {NAME}.cells; assert 'triton' not in sys.modules; "
        f"import {NAME}.widgets; print(sys.modules['triton'] is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "True"
