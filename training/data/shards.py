"""Patch shards: many same-size uint8 patches per ``.npy`` file, listed in a JSON manifest.

Reading one PNG per sample costs a file open and a PNG decode, and every rank walked every patch
folder. A shard is one uncompressed ``(n, S, S, 3)`` uint8 ``.npy`` array: a sample is one
positioned read of ``S*S*3`` bytes, the very pixels the PNG held (PNG is lossless). The manifest
(``manifest.json``, written last and atomically, so its presence means a complete set) lists each
shard's file, sample count, size and sha256, the patch shape, and the source smears with the
position of each patch, so a rank computes its share from the counts alone.

Each epoch every rank reads a disjoint share: the shards are put in a random order (from
``(seed, epoch)``), their samples concatenated and rotated by a random offset, rank ``r`` takes
the ``r``-th block of ``count // world_size`` samples, and reads it in a random order of
``(seed, epoch, rank)``. Shares move across epochs, so every rank sees all samples over time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "napari-reddino-patch-shards"
VERSION = 1
SHARE_STREAM = 104_729  # a salt: share draws never coincide with the augmentation's streams
MAX_OPEN = 64  # open shard files per process (a run can list thousands of shards)


class ShardError(ValueError):
    """A manifest or shard that is missing, damaged or does not match its manifest."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest is 3.11+; the project supports 3.10
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/manifest.json`` when ``path`` is a folder."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def _save_shard(out: Path, number: int, images: list[np.ndarray]) -> dict:
    name = f"shard-{number:05d}.npy"
    tmp = out / f".{name}.tmp"
    with open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a name
        np.save(fh, np.stack(images))
    entry = {"file": name, "count": len(images), "bytes": tmp.stat().st_size,
             "sha256": _sha256(tmp)}  # fmt: skip
    os.replace(tmp, out / name)
    return entry


def write_shards(
    samples: Iterable[tuple[int, Path, object, np.ndarray]],
    out_dir: str | Path,
    *,
    kind: str,
    settings: dict,
    shard_size: int = 1024,
) -> dict:
    """Write ``(smear index, smear path, key, patch)`` samples as shards + manifest; return it.

    ``key`` locates a patch in its smear (``[y, x]`` of a tile, the label of a cell). An older
    manifest in ``out_dir`` is removed first, with the shards it listed, so a rewrite that
    stops half way never leaves a manifest that points at changed shards.
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = out / MANIFEST
    if old.is_file():
        try:
            listed = [s["file"] for s in json.loads(old.read_text())["shards"]]
        except (ValueError, KeyError, TypeError):
            listed = []
        old.unlink()
        for name in listed:
            (out / Path(name).name).unlink(missing_ok=True)
    shards: list[dict] = []
    sources: dict[int, dict] = {}
    buffer: list[np.ndarray] = []
    shape = None
    count = 0
    for index, path, key, patch in samples:
        patch = np.ascontiguousarray(patch, dtype=np.uint8)
        if shape is None:
            shape = patch.shape
        elif patch.shape != shape:
            raise ValueError(f"patch of {path} has shape {patch.shape}, the others {shape}")
        if index not in sources:
            sources[index] = {"path": str(path), "sha256": _sha256(Path(path)), "first": count,
                              "count": 0, "keys": []}  # fmt: skip
        sources[index]["count"] += 1
        sources[index]["keys"].append(np.asarray(key).tolist())
        buffer.append(patch)
        count += 1
        if len(buffer) == shard_size:
            shards.append(_save_shard(out, len(shards), buffer))
            buffer = []
    if buffer:
        shards.append(_save_shard(out, len(shards), buffer))
    if not count:
        raise ValueError(f"no patches were kept from the smears ({settings}); nothing written")
    manifest = {
        "format": FORMAT, "version": VERSION, "kind": kind, "patch_size": int(shape[0]),
        "sample_shape": list(shape), "dtype": "uint8", "count": count, "settings": settings,
        "shards": shards, "sources": list(sources.values()),
    }  # fmt: skip
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(_manifest_text(manifest))
    os.replace(tmp, out / MANIFEST)
    return manifest


def _manifest_text(manifest: dict) -> str:
    """JSON with one line per shard and per source smear: readable, and short for many tiles."""
    parts = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest.items()
             if k not in ("shards", "sources")]  # fmt: skip
    for name in ("shards", "sources"):
        rows = ",\n  ".join(json.dumps(entry) for entry in manifest[name])
        parts.append(f" {json.dumps(name)}: [\n  {rows}\n ]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _entry(shard: dict) -> tuple[str, int, int, str]:
    """A manifest's shard entry as ``(file, count, bytes, sha256)``, typed."""
    return str(shard["file"]), int(shard["count"]), int(shard["bytes"]), str(shard["sha256"])


def load_manifest(path: str | Path) -> dict:
    """The manifest at ``path`` (a file or a folder holding one), checked for consistency."""
    path = manifest_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no shard manifest {path}: write one with "
                                "'python -m training patches SMEARS --out DIR'")  # fmt: skip
    try:
        manifest = json.loads(path.read_text())
        header = manifest.get("format"), manifest.get("version")
        entries = [_entry(shard) for shard in manifest["shards"]]
        shape = [int(v) for v in manifest["sample_shape"]]
        count = int(manifest["count"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ShardError(f"{path} is not a readable shard manifest ({err!r})") from None
    if header != (FORMAT, VERSION):
        raise ShardError(f"{path} is not a {FORMAT} manifest of version {VERSION} "
                         f"(format {header[0]!r}, version {header[1]!r})")  # fmt: skip
    if any(Path(name).name != name for name, *_ in entries):
        raise ShardError(f"{path}: shard names must be plain file names beside the manifest")
    if sum(n for _, n, _, _ in entries) != count or len(shape) != 3 or shape[2] != 3:
        raise ShardError(f"{path}: its shards' counts or its sample shape {shape} do not match "
                         f"its count {count}")  # fmt: skip
    return manifest


def epoch_share(counts: list[int], *, seed: int, epoch: int, rank: int,
                world_size: int) -> np.ndarray:  # fmt: skip
    """Global sample indices ``rank`` reads in ``epoch``, in reading order (see the module)."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    share = total // world_size
    if share == 0:
        raise ValueError(f"{total} samples cannot be shared by {world_size} ranks")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    rng = np.random.default_rng([seed, SHARE_STREAM, epoch])
    order = rng.permutation(len(counts))
    offset = int(rng.integers(total))
    ends = np.cumsum(counts[order])
    positions = (offset + rank * share + np.arange(share)) % total
    k = np.searchsorted(ends, positions, side="right")
    starts = np.cumsum(counts) - counts
    indices = starts[order[k]] + positions - (ends - counts[order])[k]
    return indices[np.random.default_rng([seed, SHARE_STREAM, epoch, rank]).permutation(share)]


class PatchShards:
    """Random access to the samples of one or more manifests, shards verified on first use.

    Construction checks every shard exists with the manifest's size (cheap: a ``stat``); the
    sha256 of a shard is checked the first time this process reads from it (``verify``), so
    a rank hashes only the shards it reads. Returned patches are read-only views of fresh bytes.
    """

    def __init__(self, manifests: list[str | Path], *, verify: bool = True):
        if not manifests:
            raise ValueError("no shard manifests given")
        self.entries: list[tuple[Path, int, int, str]] = []
        shapes = set()
        for item in manifests:
            path = manifest_path(item)
            manifest = load_manifest(path)
            shapes.add(tuple(manifest["sample_shape"]))
            for name, count, size, digest in map(_entry, manifest["shards"]):
                self.entries.append((path.parent / name, count, size, digest))
        if len(shapes) != 1:
            raise ShardError(f"the manifests {list(map(str, manifests))} hold patches of "
                             f"different shapes {sorted(shapes)}")  # fmt: skip
        self.shape = shapes.pop()
        self.sample_bytes = int(np.prod(self.shape))
        self.counts = [count for _, count, _, _ in self.entries]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.verify = verify
        for file, _, size, _ in self.entries:
            if not file.is_file():
                raise FileNotFoundError(f"shard {file} listed in its manifest is missing")
            if file.stat().st_size != size:
                raise ShardError(f"shard {file} is damaged: {file.stat().st_size} bytes, its "
                                 f"manifest says {size}")  # fmt: skip
        self._verified: set[int] = set()
        self._open: dict[int, tuple] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict:  # open files stay in their process (spawned workers)
        return {**self.__dict__, "_open": {}}

    def shard_of(self, index: int) -> int:
        return int(np.searchsorted(self.starts, index, side="right")) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} outside {len(self)} samples")
        s = self.shard_of(index)
        fh, offset = self._handle(s)
        position = offset + (index - int(self.starts[s])) * self.sample_bytes
        if hasattr(os, "pread"):
            data = os.pread(fh.fileno(), self.sample_bytes, position)
        else:  # Windows: no positioned read
            fh.seek(position)
            data = fh.read(self.sample_bytes)
        if len(data) != self.sample_bytes:
            raise ShardError(f"shard {self.entries[s][0]} is damaged: sample {index} is cut short")
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def _handle(self, s: int) -> tuple:
        if self._pid != os.getpid():  # a forked worker: never share file offsets with the parent
            self._open, self._pid = {}, os.getpid()
        if s in self._open:
            return self._open[s]
        file, count, _, digest = self.entries[s]
        if self.verify and s not in self._verified:
            actual = _sha256(file)
            if actual != digest:
                raise ShardError(f"shard {file} is damaged: sha256 {actual}, its manifest says "
                                 f"{digest}")  # fmt: skip
            self._verified.add(s)
        fh = open(file, "rb", buffering=0)  # noqa: SIM115 (kept open: closed when evicted)
        try:
            major, minor = np.lib.format.read_magic(fh)
            read_header = getattr(np.lib.format, f"read_array_header_{major}_{minor}")
            shape, fortran, dtype = read_header(fh)
        except (ValueError, AttributeError) as err:
            fh.close()
            raise ShardError(f"shard {file} is damaged: not an .npy array ({err})") from None
        if tuple(shape) != (count, *self.shape) or dtype != np.uint8 or fortran:
            fh.close()
            raise ShardError(f"shard {file} holds {dtype} {shape}, its manifest says uint8 "
                             f"{(count, *self.shape)}")  # fmt: skip
        if len(self._open) >= MAX_OPEN:
            oldest = next(iter(self._open))
            self._open.pop(oldest)[0].close()
        self._open[s] = (fh, fh.tell())
        return self._open[s]


def write_patch_shards(sources: list[str | Path], out_dir: str | Path, *, size: int = 224,
                       min_foreground: float = 0.1, scale: float = 1.0,
                       shard_size: int = 1024) -> dict:  # fmt: skip
    """Tile every smear (:func:`training.data.patches.iter_tiles`) into shards + manifest."""
    from training.data.patches import iter_tiles

    tiles = iter_tiles(sources, size=size, min_foreground=min_foreground, scale=scale)
    settings = {"size": size, "min_foreground": min_foreground, "scale": scale}
    return write_shards(tiles, out_dir, kind="tiles", settings=settings, shard_size=shard_size)


def write_cell_shards(sources: list[str | Path], out_dir: str | Path, *, size: int = 112,
                      scale: float = 1.0, margin: float = 2.0,
                      shard_size: int = 1024) -> dict:  # fmt: skip
    """One crop per segmented cell (:func:`training.data.patches.iter_cell_crops`) as shards."""
    from training.data.patches import iter_cell_crops

    crops = iter_cell_crops(sources, size=size, scale=scale, margin=margin)
    settings = {"size": size, "scale": scale, "margin": margin}
    return write_shards(crops, out_dir, kind="cells", settings=settings, shard_size=shard_size)
