"""Label propagation over many cells: label.propagate vs scikit-learn's k-NN classifier.

    python benchmarks/propagation.py                      # 100k cells x 384-d, 50/200/500 labeled
    python benchmarks/propagation.py --cells 20000 --labeled 100 --threads 1

Both sides cast the same distance-weighted cosine votes of the k nearest labeled cells, so the
predicted classes must agree; the table shows the wall time of each (best of ``--repeats``; the
scikit-learn side is fit + predict_proba as a user would call it) and their ratio. The two sides
alternate, so a busy machine slows both alike; the load average is printed with the table, and
the CPU-time columns (ms of CPU this process used, all its threads) barely depend on load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from napari_reddino.label.propagate import propagate


def clustered_embeddings(n_cells: int, dim: int, n_classes: int, seed: int = 0):
    """Cells around ``n_classes`` random centers (float32), with their true class."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, dim)).astype(np.float32)
    truth = rng.integers(0, n_classes, n_cells)
    vectors = centers[truth] + 1.5 * rng.standard_normal((n_cells, dim), dtype=np.float32)
    return vectors, np.array([f"class{c}" for c in truth], dtype=object)


def timed(fn):
    """(wall seconds, CPU seconds of this process, result): CPU time barely moves with load."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--labeled", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="limit torch and BLAS/OpenMP threads on both sides (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)

    vectors, truth = clustered_embeddings(args.cells, args.dim, args.classes)
    print(f"{args.cells} cells x {args.dim}-d, {args.classes} classes, k={args.k}, "
          f"torch threads={torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    header = (f"{'labeled':>8} {'reddino ms':>11} {'sklearn ms':>11} {'speed-up':>9} "
              f"{'reddino cpu':>12} {'sklearn cpu':>12} {'same class':>11} {'max |conf diff|':>16}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(1)
    for n_labeled in args.labeled:
        rows = rng.choice(args.cells, n_labeled, replace=False)
        manual = np.full(args.cells, None, dtype=object)
        manual[rows] = truth[rows]

        def ours_run(manual=manual):
            return propagate(vectors, manual, k=args.k)

        def sklearn_run(rows=rows):
            model = KNeighborsClassifier(n_neighbors=args.k, metric="cosine", weights="distance")
            model.fit(vectors[rows], truth[rows].astype(str))
            return model.classes_, model.predict_proba(vectors)

        ours_run()  # warm-up: thread pools, allocator
        ours_times, sk_times = [], []
        for _ in range(args.repeats):  # alternate, so both sides see the same machine load
            *seconds, ours = timed(ours_run)
            ours_times.append(seconds)
            *seconds, (sk_classes, proba) = timed(sklearn_run)
            sk_times.append(seconds)
        (ours_s, ours_cpu), (sk_s, sk_cpu) = min(ours_times), min(sk_times)
        sk_pred = sk_classes[proba.argmax(axis=1)]
        unlabeled = np.ones(args.cells, dtype=bool)
        unlabeled[rows] = False
        same = (ours.classes[unlabeled] == sk_pred[unlabeled]).mean()
        conf_diff = np.abs(ours.confidence[unlabeled] - proba[unlabeled].max(axis=1)).max()
        print(f"{n_labeled:>8} {ours_s * 1e3:>11.0f} {sk_s * 1e3:>11.0f} "
              f"{sk_s / ours_s:>8.1f}x {ours_cpu * 1e3:>12.0f} {sk_cpu * 1e3:>12.0f} "
              f"{same:>11.4%} {conf_diff:>16.2e}")


if __name__ == "__main__":
    main()
