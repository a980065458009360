"""``import napari_reddino`` stays light (no torch, Qt, napari, matplotlib or dask), docks keep to
napari's public API, and the Triton guard runs where the docks import.

The import graph's shape (stages downward only, no cycle, Qt only in widgets/, no napari in the
core, training/ on the public core) is import-linter's job: contracts in pyproject.toml, run by
``make lint`` and ``make test``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_reddino"
NAME = "napari_reddino"


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
        f"import {NAME}.io.cell_table; assert 'triton' not in sys.modules; "
        f"import {NAME}.widgets; print(sys.modules['triton'] is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "True"


def test_docks_imported_before_the_viewer_still_keep_triton_out():
    """#27 item 9: a script that imports the docks and only then opens a viewer (Mesa's LLVM
    loads with the canvas) segfaulted at the first Embed, in Triton's import."""
    llvm = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libLLVM*.so*"))
    if not llvm:
        pytest.skip("no system libLLVM to stand in for Mesa's")
    code = (
        f"import sys, ctypes; import {NAME}.widgets; assert 'triton' not in sys.modules; "
        f"ctypes.CDLL({str(llvm[0])!r})\n"
        "try:\n    import triton\nexcept ImportError as e:\n    print('refused', e.name)\n"
        "print(sys.modules.get('triton', 'absent'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, check=True)
    assert out.stdout.split() == ["refused", "triton", "None"], out.stdout + out.stderr
