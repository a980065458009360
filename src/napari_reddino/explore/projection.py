"""2-D maps of cell embeddings: UMAP (umap-learn), PCA and t-SNE (scikit-learn), cached.

Why the extras around the libraries:
- cache: the explorer re-asks for the same map whenever a layer or coloring changes, so results
  are kept by a BLAKE2 hash of the array's bytes + the parameters (in memory, optionally on disk);
- neighbors: UMAP's fuzzy set is built from the k-NN graph of :mod:`.neighbors`, the same
  graph clusters, batch metrics and label spreading use, found without numba's NN-descent (which
  compiled for ~30 s in every new process); D > 50 is PCA-reduced to 50 first;
- no compile: for cosine/euclidean maps with UMAP's usual options the fuzzy set and the layout
  are whole-array numpy steps (:mod:`._umap_layout`), so a session's first map waits for no
  numba; any other option goes to umap-learn's own fit, its kernels cached on disk
  (:mod:`._umap_fast`, ``NUMBA_CACHE_DIR`` in the user cache folder);
- every cell is placed by the same fit, with progress per layout epoch and cancel at any point;
- quality: :func:`trustworthiness` (scikit-learn) says how well the map keeps neighborhoods.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_reddino import names as nm
from napari_reddino._paths import configure_numba_cache  # noqa: F401  (re-exported for callers)
from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.neighbors import DEFAULT_K, content_key, iter_feature_graph
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

__all__ = ["content_key"]  # re-exported: callers key their own caches the same way
METHODS = nm.MAP_METHODS
_MEMORY_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMORY_CACHE_SIZE = 16
_WARMING = {False: threading.Event(), True: threading.Event()}  # by "with NN-descent"
SHORT_LAYOUT_ABOVE = 2000  # cells; umap-learn itself uses 500 epochs up to 10k cells, then 200


@dataclass
class Projection:
    """A map with what it took: ``coords`` (N, 2) float32 and its neighborhood quality."""

    coords: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    trustworthiness: float | None = None
    n_fit: int = 0  # cells the model was fitted on (all of them)


def clear_cache() -> None:
    """Forget every in-memory projection, neighbor graph and reduced matrix."""
    from napari_reddino.explore.neighbors import clear_cache as clear_neighbors

    _MEMORY_CACHE.clear()
    clear_neighbors()


def _cache_get(key: str, cache_dir: Path | None) -> np.ndarray | None:
    if key in _MEMORY_CACHE:
        _MEMORY_CACHE.move_to_end(key)
        return _MEMORY_CACHE[key]
    if cache_dir is not None and (cache_dir / f"{key}.npy").exists():
        try:
            coords = np.load(cache_dir / f"{key}.npy")
        except (OSError, ValueError, EOFError):  # a damaged cache file: make the map again
            return None
        _cache_put(key, coords, None)
        return coords
    return None


def _cache_put(key: str, coords: np.ndarray, cache_dir: Path | None) -> None:
    _MEMORY_CACHE[key] = coords
    _MEMORY_CACHE.move_to_end(key)
    while len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE:
        _MEMORY_CACHE.popitem(last=False)
    if cache_dir is not None:
        from napari_reddino.io.atomic import WriteError, replacing

        try:  # a cache: a full disk costs the next run a recomputation, never this map
            with replacing(cache_dir / f"{key}.npy", "map cache") as tmp, open(tmp, "wb") as f:
                np.save(f, coords)
        except WriteError as error:
            warnings.warn(f"map not cached: {error}", stacklevel=3)


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


def layout_epochs(n: int) -> int:
    """Layout epochs for ``n`` cells above ``SHORT_LAYOUT_ABOVE``: 200 up to 10k cells (umap-learn
    uses 500 there, for the same trustworthiness), then fewer as each epoch moves more points:
    200 * sqrt(10k / n), at least 40 (100k: 63, 250k: 40; 250k cells kept 0.9743 at 40 epochs,
    0.9744 at 60). See docs/benchmarks.md."""
    return int(np.clip(round(200 * np.sqrt(10_000 / max(n, 1))), 40, 200))


FAST_UMAP_PARAMS = frozenset({"n_neighbors", "min_dist", "spread", "n_epochs", "learning_rate",
                               "metric"})


def _iter_umap(x, n_components, random_state, cancel, params, graph_k, pca_dims):
    n = x.shape[0]
    params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", **params}
    params["n_neighbors"] = max(2, min(int(params["n_neighbors"]), n - 1))
    if n > SHORT_LAYOUT_ABOVE:
        params.setdefault("n_epochs", layout_epochs(n))
    if params["metric"] in ("cosine", "euclidean") and set(params) <= FAST_UMAP_PARAMS:
        return (yield from _iter_umap_numpy(x, n_components, random_state, cancel, params,
                                            graph_k, pca_dims))
    return (yield from _iter_umap_learn(x, n_components, random_state, cancel, params,
                                        graph_k, pca_dims))


def _iter_umap_numpy(x, n_components, random_state, cancel, params, graph_k, pca_dims):
    """The shared neighbor graph -> fuzzy set -> PCA start -> vectorized layout
    (:mod:`._umap_layout`): no numba anywhere, so no compile in any session."""
    from napari_reddino.explore import _umap_layout

    n, k = x.shape[0], params["n_neighbors"]
    reduced, graph = yield from iter_feature_graph(
        x, max(graph_k, k), metric=params["metric"], pca_dims=pca_dims,
        random_state=0 if random_state is None else random_state, cancel=cancel)
    fuzzy = _umap_layout.fuzzy_graph(*graph.others(k - 1))  # umap-learn counts the cell itself
    start = _umap_layout.initial_layout(reduced, n_components,
                                        np.random.default_rng(random_state))
    n_epochs = int(params.get("n_epochs") or 500)
    return (yield from _umap_layout.iter_layout(
        fuzzy, start, n_epochs, min_dist=float(params["min_dist"]),
        spread=float(params.get("spread", 1.0)),
        learning_rate=float(params.get("learning_rate", 1.0)), random_state=random_state,
        cancel=cancel, message=f"UMAP of {n} cells"))


def _iter_umap_learn(x, n_components, random_state, cancel, params, graph_k, pca_dims):
    """umap-learn's own fit, for what the numpy layout does not do (other metrics, densMAP,
    supervised maps, ...); its kernels come from numba's disk cache (:mod:`._umap_fast`)."""
    from napari_reddino.explore import _umap_fast

    _umap_fast.install()  # imports first, one thread at a time (see install)
    n = x.shape[0]
    if n <= n_components + 2:  # the spectral start needs more cells than eigenvectors
        params.setdefault("init", "random")
    metric = params["metric"]
    if metric in ("cosine", "euclidean") and n > params["n_neighbors"]:
        reduced, graph = yield from iter_feature_graph(
            x, max(graph_k, params["n_neighbors"]), metric=metric, pca_dims=pca_dims,
            random_state=0 if random_state is None else random_state, cancel=cancel)
        knn = graph.umap_knn(params["n_neighbors"])
        params.update(precomputed_knn=(*knn, None), force_approximation_algorithm=True)
    else:  # another metric: umap-learn searches itself (and compiles NN-descent)
        from napari_reddino.explore.neighbors import reduce_features

        reduced = reduce_features(x, pca_dims, random_state)
    import umap

    with warnings.catch_warnings():  # "knn_search_index is not an NNDescent": no transform
        warnings.simplefilter("ignore", UserWarning)
        model = _construct(umap.UMAP, "UMAP", n_components=n_components,
                           random_state=random_state, **params)
    if random_state is not None:
        model.n_jobs = 1  # what UMAP does anyway with a seed; set here so it does not warn
    n_epochs = int(params.get("n_epochs") or (500 if n <= 10_000 else 200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coords = yield from _umap_fast.iter_fit(model, reduced, n_epochs, cancel,
                                                f"UMAP of {n} cells")
    return coords


def iter_projection(
    vectors,
    method: str = DEFAULTS.map_method,
    *,
    n_components: int = 2,
    random_state: int | None = DEFAULTS.random_state,
    pca_dims: int = DEFAULTS.pca_dims,
    graph_k: int = DEFAULT_K,
    quality: bool = True,
    cache_dir: str | Path | None = None,
    cancel: threading.Event | None = None,
    **params,
) -> ProgressGen[Projection]:
    """Map ``vectors`` (N, D) to ``n_components`` dims; returns a :class:`Projection`.

    ``params`` go to ``umap.UMAP`` / ``sklearn.manifold.TSNE`` (e.g. ``n_neighbors``,
    ``min_dist``, ``metric``, ``perplexity``). UMAP's neighbors come from the shared graph
    (:func:`.neighbors.iter_feature_graph`, ``graph_k`` neighbors, ``metric`` cosine by
    default). ``random_state=None`` is not reproducible and never cached.
    """
    x = _validate(vectors, method, n_components)
    settings = dict(method=method, n_components=n_components, random_state=random_state,
                    pca_dims=pca_dims, **params)
    cache_path = Path(cache_dir) if cache_dir is not None else None
    key = content_key(x, **settings) if random_state is not None else None
    check_cancel(cancel)
    yield Progress(0, 3, f"{method.upper()}: preparing {x.shape[0]} cells")
    coords = _cache_get(key, cache_path) if key else None
    if coords is None:
        if method == "pca":
            coords = _pca(x, n_components, random_state)
        elif method == "tsne":
            from sklearn.manifold import TSNE

            from napari_reddino.explore.neighbors import reduce_features

            reduced = reduce_features(x, pca_dims, random_state)
            yield Progress(1, 3, f"t-SNE: fitting {x.shape[0]} cells")
            perplexity = min(float(params.pop("perplexity", 30.0)), (x.shape[0] - 1) / 3)
            model = _construct(TSNE, "t-SNE", n_components=n_components, init="pca",
                               random_state=random_state, perplexity=perplexity, **params)
            coords = model.fit_transform(reduced)
        else:
            coords = yield from _iter_umap(x, n_components, random_state, cancel, params,
                                           graph_k, pca_dims)
        coords = np.asarray(coords, dtype=np.float32)
        if key:
            _cache_put(key, coords, cache_path)
    check_cancel(cancel)
    score = None
    if quality and x.shape[0] >= 4:  # fewer cells have no neighborhoods to keep
        yield Progress(2, 3, "measuring trustworthiness")
        score = trustworthiness(x, coords, random_state=random_state or 0)
    yield Progress(3, 3, "map ready")
    return Projection(coords, method, settings, score, x.shape[0])


def projection(vectors, method: str = "umap", **kwargs) -> Projection:
    """Synchronous :func:`iter_projection`."""
    return run_to_completion(iter_projection(vectors, method, **kwargs))


def iter_project(vectors, method: str = DEFAULTS.map_method, **kwargs) -> ProgressGen[np.ndarray]:
    """Like :func:`iter_projection` but returns only the (N, 2) float32 coordinates."""
    kwargs.setdefault("quality", False)
    result = yield from iter_projection(vectors, method, **kwargs)
    return result.coords


def project(vectors, method: str = DEFAULTS.map_method, **kwargs) -> np.ndarray:
    """Synchronous :func:`iter_project`: (N, n_components) float32, cached."""
    return run_to_completion(iter_project(vectors, method, **kwargs))


def trustworthiness(
    X, Y, n_neighbors: int = 10, *, max_samples: int = 5000, random_state: int = 0
) -> float:
    """scikit-learn's trustworthiness in [0, 1] (1 = map keeps every neighborhood).

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


def warm_up(neighbors_index: bool = False) -> float:
    """Run a tiny seeded UMAP so its imports are done before the user's first map; with
    ``neighbors_index`` also compile NN-descent (numba, once per process), which maps of more
    than ``neighbors.EXACT_MAX`` cells use. Returns the seconds it took; run it off the UI
    thread."""
    import time

    from napari_reddino.explore.neighbors import warm_up_index

    start = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    run_to_completion(iter_projection(x, "umap", n_neighbors=5, quality=False, n_epochs=10))
    if neighbors_index:
        warm_up_index()
    return time.perf_counter() - start


def warm_up_in_background(neighbors_index: bool = False) -> None:
    """:func:`warm_up` once per process in a daemon thread (the explorer dock calls it on open,
    and with ``neighbors_index`` once it holds many cells), so the user's first map finds
    UMAP imported and its kernels loaded."""
    flag = _WARMING[bool(neighbors_index)]
    if flag.is_set():
        return
    flag.set()

    def warm() -> None:
        with contextlib.suppress(Exception):  # the real map reports problems, not the warm-up
            warm_up(neighbors_index)

    threading.Thread(target=warm, name="reddino-umap-warm-up", daemon=True).start()
