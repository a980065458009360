"""2-D maps of cell embeddings: UMAP (umap-learn), PCA and t-SNE (scikit-learn), cached.

Why the extras around the libraries:
- cache: the explorer re-asks for the same map whenever a layer or colouring changes, so results
  are kept by a BLAKE2 hash of the array's bytes + the parameters (in memory, optionally on disk);
- numba: UMAP's numba kernels compile on first use (tens of seconds); ``NUMBA_CACHE_DIR`` points at
  a user cache folder so later sessions reuse what numba can cache (pynndescent's neighbour search),
  and :func:`warm_up` pays the rest early (e.g. while the user is still segmenting);
- large sets: above ``max_fit`` cells UMAP is fitted on a random subsample and the other cells are
  placed with ``UMAP.transform`` (in chunks, cancellable); D > 50 is PCA-reduced to 50 first;
- quality: :func:`trustworthiness` (scikit-learn) says how well the map keeps neighbourhoods.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._paths import user_cache_dir
from ._progress import Progress, ProgressGen, check_cancel, run_to_completion

METHODS = ("umap", "pca", "tsne")
_MEMORY_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMORY_CACHE_SIZE = 16
_TRANSFORM_CHUNK = 5000
SHORT_LAYOUT_ABOVE = 2000  # cells; umap-learn itself uses 500 epochs up to 10k cells, then 200
_EXACT_NEIGHBOURS_BELOW = 4096  # umap-learn's switch from exact neighbours to NN-descent
_UMAP_COMPILED = False  # NN-descent's numba kernels ran in this process (compiled)


def configure_numba_cache(folder: str | Path | None = None) -> Path:
    """Point numba's on-disk cache at ``folder`` (default: the user cache) unless already set.

    Only kernels declared ``cache=True`` are stored: most of pynndescent's (UMAP's neighbour
    search), few of umap's own, which :func:`warm_up` compiles once per session instead.
    """
    path = Path(os.environ.get("NUMBA_CACHE_DIR") or folder or user_cache_dir() / "numba")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: numba falls back to its own default, still correct
        return path
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    try:  # numba reads the variable at import; refresh it if numba is already loaded
        import sys

        if "numba" in sys.modules:
            sys.modules["numba"].config.reload_config()
    except Exception:  # a read-only config must never stop a projection
        pass
    return path


configure_numba_cache()


@dataclass
class Projection:
    """A map with what it took: ``coords`` (N, 2) float32 and its neighbourhood quality."""

    coords: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    trustworthiness: float | None = None
    n_fit: int = 0  # cells the model was fitted on (< N when UMAP used a subsample)


def content_key(vectors: np.ndarray, **params) -> str:
    """BLAKE2 hash of the array's dtype, shape and bytes plus the parameters."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{vectors.dtype.str}{vectors.shape}".encode())
    digest.update(np.ascontiguousarray(vectors).view(np.uint8).reshape(-1))
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def clear_cache() -> None:
    """Forget every in-memory projection."""
    _MEMORY_CACHE.clear()


def _cache_get(key: str, cache_dir: Path | None) -> np.ndarray | None:
    if key in _MEMORY_CACHE:
        _MEMORY_CACHE.move_to_end(key)
        return _MEMORY_CACHE[key]
    if cache_dir is not None and (cache_dir / f"{key}.npy").exists():
        coords = np.load(cache_dir / f"{key}.npy")
        _cache_put(key, coords, None)
        return coords
    return None


def _cache_put(key: str, coords: np.ndarray, cache_dir: Path | None) -> None:
    _MEMORY_CACHE[key] = coords
    _MEMORY_CACHE.move_to_end(key)
    while len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE:
        _MEMORY_CACHE.popitem(last=False)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.tmp.npy"
        np.save(tmp, coords)
        os.replace(tmp, cache_dir / f"{key}.npy")


def _validate(vectors, method: str, n_components: int) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose one of {METHODS}")
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise ValueError(f"vectors must be an (N, D) matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError("vectors contain NaN / inf or are not numeric; re-run the embedding")
    if x.shape[0] < 3:
        raise ValueError(f"a map needs at least 3 cells, got {x.shape[0]}")
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"n_components must be between 1 and {min(x.shape)}, got {n_components}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _pca(x: np.ndarray, n: int, random_state) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=n, random_state=random_state).fit_transform(x).astype(np.float32)


def _construct(cls, name: str, **params):
    """``cls(**params)``; a misspelt parameter becomes a ValueError that names it."""
    try:
        return cls(**params)
    except TypeError as err:
        raise ValueError(f"{name} does not take these parameters: {err}") from None


def _iter_umap(x, n_components, random_state, max_fit, cancel, params):
    with warnings.catch_warnings():  # "TensorFlow not installed": only ParametricUMAP needs it
        warnings.simplefilter("ignore", ImportWarning)
        import umap

    global _UMAP_COMPILED
    n = x.shape[0]
    params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", **params}
    params["n_neighbors"] = min(int(params["n_neighbors"]), n - 1)
    if min(n, max_fit) > SHORT_LAYOUT_ABOVE:  # 200 layout epochs: same trustworthiness, 2-3x faster
        params.setdefault("n_epochs", 200)
    if n <= n_components + 2:  # the spectral start needs more cells than eigenvectors
        params.setdefault("init", "random")
    model = _construct(umap.UMAP, "UMAP", n_components=n_components, random_state=random_state,
                       **params)
    if random_state is not None:
        model.n_jobs = 1  # what UMAP does anyway with a seed; set here so it does not warn
    first = "" if _UMAP_COMPILED else " (the session's first map also compiles UMAP, ~30 s)"
    if n <= max_fit:
        yield Progress(1, 3, f"UMAP: fitting {n} cells{first}")
        coords = model.fit_transform(x)
        _UMAP_COMPILED = _UMAP_COMPILED or n > _EXACT_NEIGHBOURS_BELOW
        return coords
    rng = np.random.default_rng(random_state)
    fit_rows = np.sort(rng.choice(n, size=max_fit, replace=False))
    yield Progress(1, 3, f"UMAP: fitting a random {max_fit} of {n} cells{first}")
    coords = np.empty((n, n_components), dtype=np.float32)
    coords[fit_rows] = model.fit_transform(x[fit_rows])
    _UMAP_COMPILED = _UMAP_COMPILED or max_fit > _EXACT_NEIGHBOURS_BELOW
    rest = np.setdiff1d(np.arange(n), fit_rows)
    for start in range(0, rest.size, _TRANSFORM_CHUNK):
        check_cancel(cancel)
        yield Progress(2, 3, f"UMAP: placing cells {start}/{rest.size} beside the fitted map")
        rows = rest[start : start + _TRANSFORM_CHUNK]
        coords[rows] = model.transform(x[rows])
    return coords


def iter_projection(
    vectors,
    method: str = "umap",
    *,
    n_components: int = 2,
    random_state: int | None = 0,
    max_fit: int = 20000,
    pca_dims: int = 50,
    quality: bool = True,
    cache_dir: str | Path | None = None,
    cancel: threading.Event | None = None,
    **params,
) -> ProgressGen[Projection]:
    """Map ``vectors`` (N, D) to ``n_components`` dims; returns a :class:`Projection`.

    ``params`` go to ``umap.UMAP`` / ``sklearn.manifold.TSNE`` (e.g. ``n_neighbors``,
    ``min_dist``, ``perplexity``). ``random_state=None`` is faster (parallel UMAP) but not
    reproducible and never cached.
    """
    x = _validate(vectors, method, n_components)
    settings = dict(method=method, n_components=n_components, random_state=random_state,
                    max_fit=max_fit, pca_dims=pca_dims, **params)
    cache_path = Path(cache_dir) if cache_dir is not None else None
    key = content_key(x, **settings) if random_state is not None else None
    check_cancel(cancel)
    yield Progress(0, 3, f"{method.upper()}: preparing {x.shape[0]} cells")
    coords = _cache_get(key, cache_path) if key else None
    n_fit = min(x.shape[0], max_fit) if method == "umap" else x.shape[0]  # cache hits too
    if coords is None:
        reduced = x
        if method != "pca" and x.shape[1] > pca_dims and x.shape[0] > pca_dims:
            reduced = _pca(x, pca_dims, random_state)
        if method == "pca":
            coords = _pca(x, n_components, random_state)
        elif method == "tsne":
            from sklearn.manifold import TSNE

            yield Progress(1, 3, f"t-SNE: fitting {x.shape[0]} cells")
            perplexity = min(float(params.pop("perplexity", 30.0)), (x.shape[0] - 1) / 3)
            model = _construct(TSNE, "t-SNE", n_components=n_components, init="pca",
                               random_state=random_state, perplexity=perplexity, **params)
            coords = model.fit_transform(reduced)
        else:
            coords = yield from _iter_umap(
                reduced, n_components, random_state, max_fit, cancel, params
            )
        coords = np.asarray(coords, dtype=np.float32)
        if key:
            _cache_put(key, coords, cache_path)
    check_cancel(cancel)
    score = None
    if quality and x.shape[0] >= 4:  # fewer cells have no neighbourhoods to keep
        yield Progress(2, 3, "measuring trustworthiness")
        score = trustworthiness(x, coords, random_state=random_state or 0)
    yield Progress(3, 3, "map ready")
    return Projection(coords, method, settings, score, n_fit)


def projection(vectors, method: str = "umap", **kwargs) -> Projection:
    """Synchronous :func:`iter_projection`."""
    return run_to_completion(iter_projection(vectors, method, **kwargs))


def iter_project(vectors, method: str = "umap", **kwargs) -> ProgressGen[np.ndarray]:
    """Like :func:`iter_projection` but returns only the (N, 2) float32 coordinates."""
    kwargs.setdefault("quality", False)
    result = yield from iter_projection(vectors, method, **kwargs)
    return result.coords


def project(vectors, method: str = "umap", **kwargs) -> np.ndarray:
    """Synchronous :func:`iter_project`: (N, n_components) float32, cached."""
    return run_to_completion(iter_project(vectors, method, **kwargs))


def trustworthiness(
    X, Y, n_neighbors: int = 10, *, max_samples: int = 5000, random_state: int = 0
) -> float:
    """scikit-learn's trustworthiness in [0, 1] (1 = map keeps every neighbourhood).

    It needs all pairwise distances, so above ``max_samples`` cells a random subsample is scored.
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    if X.shape[0] > max_samples:
        rows = np.random.default_rng(random_state).choice(X.shape[0], max_samples, replace=False)
        X, Y = X[rows], Y[rows]
    n_neighbors = min(n_neighbors, X.shape[0] // 2 - 1)
    if n_neighbors < 1:
        raise ValueError("trustworthiness needs at least 4 cells")
    return float(sk_trustworthiness(X, Y, n_neighbors=n_neighbors))


def warm_up() -> float:
    """Run a tiny UMAP (fit + transform, seeded like :func:`project`) so numba compiles, or loads
    from its cache, the kernels a real map needs now; returns the seconds it took."""
    import time

    global _UMAP_COMPILED
    import pynndescent

    start = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    run_to_completion(iter_projection(x, "umap", n_neighbors=5, max_fit=48, quality=False,
                                      n_epochs=10))
    # above 4096 cells UMAP finds neighbours with NN-descent, whose kernels numba cannot cache
    pynndescent.NNDescent(x, n_neighbors=5, random_state=0, n_jobs=1).neighbor_graph  # noqa: B018
    _UMAP_COMPILED = True
    return time.perf_counter() - start
