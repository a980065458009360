"""dask.distributed execution of the per-smear pipeline over many smears.

One task per smear (:func:`napari_reddino.runs.pipeline.run_smear_file`), on a ``LocalCluster`` of
single-threaded worker processes or on an existing scheduler. Each task writes its own folder
and done marker, so a rerun after a crash (of a worker or of the whole run) only does what is
missing; a smear that fails is recorded in ``failures.csv`` and the others carry on. Combining
the finished smears (table, UMAP, clusters, batch metrics) is :mod:`napari_reddino.runs.combine`,
run once at the end in the client process.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from napari_reddino.io.atomic import write_csv
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from napari_reddino.runs.pipeline import PipelineConfig, SmearStatus, run_smear_file

RUNS_TABLE = "runs.csv"
FAILURES_TABLE = "failures.csv"
SCHEDULER_TIMEOUT = 20.0  # seconds, for connecting to a scheduler and its handshake together


def _receive(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("it closed the connection")
        data += chunk
    return data


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> None:
    """Raise ConnectionError unless a dask scheduler answers at a ``tcp://`` address in time.

    A dask server speaks first: the frame count and sizes of its handshake. Reading them
    ourselves, with one deadline, tells a web server (which waits silently: dask's own client
    would hang) or another service (whose bytes dask reads as a frame size of exabytes) from a
    scheduler. Other protocols (tls://, ucx://) are left to dask.
    """
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port = rest.rpartition(":")
    what = f"dask scheduler {address!r}"
    if not port.isdigit() or not host:
        raise ConnectionError(f"{what}: give the address as tcp://HOST:PORT (e.g. the "
                              "'Scheduler at' line dask-scheduler prints)")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            total, n_frames = struct.unpack("<QQ", _receive(sock, 16, deadline))
    except TimeoutError as exc:
        raise ConnectionError(f"{what}: no answer within {timeout:g} s; is a dask scheduler "
                              "listening there (not its dashboard, not a web server)?") from exc
    except OSError as exc:
        raise ConnectionError(f"cannot reach {what}: {exc.strerror or exc}") from exc
    if not (0 < n_frames <= 64 and 8 * (n_frames + 1) <= total < 1 << 26):
        raise ConnectionError(f"{what}: the service there is not a dask scheduler (it does not "
                              "speak dask's protocol); check the host and port")


def gpu_count() -> int:
    """Number of CUDA devices this process sees (0 without torch.cuda)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def start_client(
    n_workers: int | None = None,
    *,
    scheduler: str | None = None,
    threads_per_worker: int = 1,
    dashboard_address: str | None = None,
):
    """A dask ``Client``: to ``scheduler`` if given, else to a new ``LocalCluster``.

    Local workers are processes with ``threads_per_worker`` threads each (torch and BLAS are
    capped to it, so workers do not fight for cores). With CUDA devices, each local worker
    advertises a ``GPU`` resource and smear tasks ask for one, so one smear runs per GPU.
    The dashboard listens on ``dashboard_address`` (default: a free port of 127.0.0.1, so a
    run never opens it to the network).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        deadline = time.monotonic() + SCHEDULER_TIMEOUT
        check_scheduler(scheduler, SCHEDULER_TIMEOUT)
        try:
            return Client(scheduler, timeout=max(1.0, deadline - time.monotonic()))
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach dask scheduler {scheduler!r}: {exc}") from exc
    gpus = gpu_count()
    if n_workers is None:
        n_workers = gpus or max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    threads = str(threads_per_worker)
    cluster = LocalCluster(
        n_workers=int(n_workers),
        threads_per_worker=threads_per_worker,
        processes=True,
        # a free port (never clash with 8787), on this machine only unless asked otherwise
        dashboard_address=dashboard_address or "127.0.0.1:0",
        silence_logs=logging.ERROR,
        resources={"GPU": 1} if gpus else None,
        env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    )
    return Client(cluster)


def _smear_task(path: str, out_dir: str, config: PipelineConfig, subject: str, threads: int):
    """Runs on a worker: pick this worker's GPU (if any) and process one smear."""
    if config.device == "auto" and gpu_count() > 1:
        from dataclasses import replace

        from distributed import get_worker

        digits = "".join(ch for ch in str(get_worker().name) if ch.isdigit()) or "0"
        config = replace(config, device=f"cuda:{int(digits) % gpu_count()}")
    return run_smear_file(path, out_dir, config, subject=subject, threads=threads)


@dataclass
class BatchResult:
    """One row per smear: ``image, subject, source, status, n_cells, seconds, error``."""

    runs: pd.DataFrame

    @property
    def failures(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "failed"].reset_index(drop=True)

    def count(self, status: str) -> int:
        return int((self.runs["status"] == status).sum())


def iter_run_batch(
    images: list[Path],
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    *,
    subjects: dict[str, str] | None = None,
    client=None,
    n_workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 1,
    cancel: threading.Event | None = None,
) -> ProgressGen[BatchResult]:
    """Process every smear as one dask task; write ``runs.csv`` and ``failures.csv``.

    Pass ``client`` to reuse one; otherwise one is started (and closed) here.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects = subjects or {}
    own_client = client is None
    if own_client:
        yield Progress(0, len(images), "starting dask workers")
        client = start_client(n_workers, scheduler=scheduler)
    try:
        statuses = yield from _iter_submit(
            client, images, out_dir, config, subjects, retries, cancel
        )
    finally:
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    runs = pd.DataFrame([s.as_row() for s in statuses])
    write_csv(runs, out_dir / RUNS_TABLE, "run table")
    result = BatchResult(runs)
    write_csv(result.failures, out_dir / FAILURES_TABLE, "failure table")
    return result


def _iter_submit(client, images, out_dir, config, subjects, retries, cancel):
    from distributed import as_completed

    threads = 1  # torch threads per task: one task per worker thread, no oversubscription
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    wants_gpu = any("GPU" in (w.get("resources") or {}) for w in workers.values())
    futures = {}
    for path in images:
        subject = subjects.get(path.name, "unknown")
        future = client.submit(
            _smear_task,
            str(path),
            str(out_dir),
            config,
            subject,
            threads,
            key=f"smear-{path.name}-{uuid.uuid4().hex[:8]}",
            pure=False,
            retries=retries,
            resources={"GPU": 1} if wants_gpu else None,
        )
        futures[future] = SmearStatus(path.name, subject, str(path), "failed")
    statuses = []
    yield Progress(0, len(futures), f"{len(futures)} smears submitted")
    try:
        for future in as_completed(futures):
            check_cancel(cancel)
            if future.status == "finished":
                status = future.result()
            else:  # raised after its retries, or its worker died too often (KilledWorker)
                status = futures[future]
                exc = future.exception()
                status.error = f"{type(exc).__name__}: {exc}"
            statuses.append(status)
            yield Progress(len(statuses), len(futures), f"{status.image}: {status.status}")
    finally:
        client.cancel(list(futures))
    return sorted(statuses, key=lambda s: s.image)


def run_batch(images, out_dir, config, **kwargs) -> BatchResult:
    """Sync wrapper of :func:`iter_run_batch`."""
    return run_to_completion(iter_run_batch(images, out_dir, config, **kwargs))
