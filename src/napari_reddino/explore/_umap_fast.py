"""umap-learn's fit without a per-session compile, reporting epochs and stopping on cancel.

Why: umap-learn declares its fuzzy-set and layout kernels without ``cache=True``, so numba
compiles them again in every new process (~10-30 s on 2 cores, longer than the map of 10k cells
itself). :func:`install` re-declares the same Python functions with ``cache=True`` (and
``nogil`` so the UI's threads keep running) and puts them where umap-learn looks them up; the
numerics are umap-learn's own. The per-epoch hook is how a layout reports progress and stops
when the user cancels: umap-learn's fit is one blocking call otherwise.
Only the seeded, single-threaded layout is replaced (``project()`` always seeds); numba's cache
index does not tell a parallel build of the same function from a serial one.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import warnings

from napari_reddino.progress import Cancelled, Progress, ProgressGen, check_cancel

_INSTALLED = False
_LOCK = threading.Lock()
_RUN = threading.local()  # the fit running in this thread: epochs done, cancel event


def _cached(dispatcher):
    """The same kernel as ``dispatcher``, compiled once and kept in numba's on-disk cache."""
    import numba

    options = {key: value for key, value in dispatcher.targetoptions.items()
               if key in ("fastmath", "parallel", "boundscheck", "error_model")}
    return numba.njit(cache=True, nogil=True, locals=dict(dispatcher.locals),
                      **options)(dispatcher.py_func)


def _hooked(kernel):
    """One layout epoch that first counts itself and honors the running fit's cancel event."""

    def epoch(*args):
        run = getattr(_RUN, "state", None)
        if run is not None:
            check_cancel(run["cancel"])
            run["epoch"] += 1
        return kernel(*args)

    epoch.kernel = kernel
    return epoch


def install() -> None:
    """Swap umap-learn's uncached kernels for cached ones (once per process)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        from napari_reddino._paths import configure_numba_cache

        configure_numba_cache()
        # every heavy import of a map, here under one lock: the explorer's background warm-up
        # and a map started meanwhile must not import the same packages from two threads
        importlib.import_module("sklearn.decomposition")
        with warnings.catch_warnings():  # "TensorFlow not installed": only ParametricUMAP
            warnings.simplefilter("ignore", ImportWarning)
            importlib.import_module("umap")
        fuzzy, layouts = sys.modules["umap.umap_"], sys.modules["umap.layouts"]
        fuzzy.smooth_knn_dist = _cached(fuzzy.smooth_knn_dist)
        fuzzy.compute_membership_strengths = _cached(fuzzy.compute_membership_strengths)
        serial = layouts._nb_optimize_layout_euclidean_single_epoch
        layouts._nb_optimize_layout_euclidean_single_epoch = _hooked(_cached(serial))
        _INSTALLED = True


def iter_fit(model, x, n_epochs: int, cancel: threading.Event | None = None,
             message: str = "UMAP") -> ProgressGen:
    """``model.fit_transform(x)`` in a helper thread; yields Progress per poll, returns the map.

    Cancel is honored at once here (the generator raises); the helper thread stops at its next
    epoch boundary (or after the neighbor/fuzzy-set stage, which cannot be interrupted).
    """
    install()
    state = {"epoch": 0, "cancel": threading.Event()}
    result: dict = {}

    def target() -> None:
        _RUN.state = state
        try:
            result["coords"] = model.fit_transform(x)
        except Cancelled:
            result["cancelled"] = True
        except BaseException as err:  # re-raised in the caller's thread
            result["error"] = err
        finally:
            _RUN.state = None

    thread = threading.Thread(target=target, name="reddino-umap-fit", daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        while thread.is_alive():
            thread.join(0.2)
            check_cancel(cancel)
            epoch = state["epoch"]
            stage = (f"layout epoch {epoch}/{n_epochs}" if epoch else
                     f"fuzzy graph + initial layout ({time.perf_counter() - start:.0f} s)")
            yield Progress(epoch, max(n_epochs, 1), f"{message}: {stage}")
    except BaseException:
        state["cancel"].set()
        raise
    if "error" in result:
        raise result["error"]
    if result.get("cancelled"):
        raise Cancelled("cancelled by the user")
    return result["coords"]
