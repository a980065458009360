"""Patch shards: the manifest, rank shares, the folder's pixels, damage, and exact restarts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_reddino.synthetic.smear import synthetic_smear
from training.__main__ import main
from training.configs import load_config
from training.data.loader import _decoded, build_loader, stream_from_config
from training.data.patches import tile_patches
from training.data.shards import PatchShards, ShardError, epoch_share

SIZE = 64


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> list[tuple[Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("smears")
    found = []
    for seed in range(3):
        path = folder / f"smear{seed}.png"
        image = synthetic_smear(shape=(256, 320), seed=seed).image
        iio.imwrite(path, image)
        found.append((path, image))
    return found


@pytest.fixture(scope="module")
def written(smears, tmp_path_factory) -> tuple[Path, Path]:
    """The same smears through ``training patches``: shards (5 patches each) and a PNG folder."""
    out = tmp_path_factory.mktemp("patches")
    folder = str(smears[0][0].parent)
    assert main(["patches", folder, "--out", str(out / "shards"), "--size", str(SIZE),
                 "--shard-size", "5"]) == 0  # fmt: skip
    assert main(["patches", folder, "--out", str(out / "png"), "--size", str(SIZE),
                 "--format", "png"]) == 0  # fmt: skip
    return out / "shards", out / "png"


def _stream(shards: Path, rank: int = 0, world_size: int = 1, seed: int = 0, *extra: str):
    cfg = load_config("tiny_cpu", [f"data.shards=[{shards}]", "data.synthetic=false",
                                   "data.batch_size_per_gpu=3", *extra])  # fmt: skip
    return stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size, seed=seed,
                              rank=rank, world_size=world_size, start_step=0)  # fmt: skip


def test_patches_writes_shards_and_a_manifest_that_describes_them(smears, written):
    shards_dir, _ = written
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    expected = [(path, y, x, tile) for path, image in smears
                for y, x, tile in tile_patches(image, SIZE)]  # fmt: skip
    assert manifest["count"] == len(expected) >= 20
    assert manifest["sample_shape"] == [SIZE, SIZE, 3] and manifest["kind"] == "tiles"
    counts = [s["count"] for s in manifest["shards"]]
    assert counts[:-1] == [5] * (len(counts) - 1) and sum(counts) == len(expected)
    for entry in manifest["shards"]:
        data = (shards_dir / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert [s["path"] for s in manifest["sources"]] == [str(p) for p, _ in smears]
    assert [s["count"] for s in manifest["sources"]] == [
        sum(p == path for p, *_ in expected) for path, _ in smears]  # fmt: skip
    shards = PatchShards([shards_dir])
    keys = [(Path(s["path"]), *key) for s in manifest["sources"] for key in s["keys"]]
    for index, ((path, y, x, tile), key) in enumerate(zip(expected, keys, strict=True)):
        assert key == (path, y, x)
        np.testing.assert_array_equal(shards[index], tile)


def test_shard_samples_are_the_folder_loaders_pixels(written):
    shards_dir, png_dir = written
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    shards = PatchShards([shards_dir])
    pngs = sorted(png_dir.glob("*.png"))
    assert len(pngs) == len(shards)
    for index, source in enumerate(manifest["sources"]):
        for k, (y, x) in enumerate(source["keys"]):
            png = png_dir / f"{index:05d}_{Path(source['path']).stem}_{y}_{x}.png"
            np.testing.assert_array_equal(_decoded(str(png)), shards[source["first"] + k])


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_shares_are_disjoint_and_cover_the_samples(world_size):
    counts = [7, 5, 9, 3]  # 24 samples in shards of uneven size
    seen_by_rank: dict[int, set] = {r: set() for r in range(world_size)}
    for epoch in range(3):
        shares = [epoch_share(counts, seed=1, epoch=epoch, rank=r, world_size=world_size)
                  for r in range(world_size)]  # fmt: skip
        assert all(len(s) == 24 // world_size for s in shares)
        assert sorted(np.concatenate(shares).tolist()) == list(range(24))
        for r, share in enumerate(shares):
            seen_by_rank[r] |= set(share.tolist())
    assert all(len(seen) > 24 // world_size for seen in seen_by_rank.values())  # shares move
    # 25 samples over 4 ranks: 24 read per epoch, and the one left out changes with the epoch
    left_out = [set(range(25)) - set(np.concatenate(
        [epoch_share([25], seed=0, epoch=e, rank=r, world_size=4) for r in range(4)]).tolist())
        for e in range(4)]  # fmt: skip
    assert all(len(s) == 1 for s in left_out) and len(set.union(*left_out)) > 1


def test_each_rank_streams_only_its_share(written):
    shards_dir, _ = written
    world_size = 2
    for rank in range(world_size):
        stream = _stream(shards_dir, rank, world_size)
        share = epoch_share(stream.shards.counts, seed=0, epoch=0, rank=rank,
                            world_size=world_size)  # fmt: skip
        steps = len(share) // stream.batch_size
        read = [stream.shard_index(step * stream.global_batch + rank * 3 + i)
                for step in range(steps) for i in range(3)]  # fmt: skip
        assert read == share[: steps * 3].tolist()  # the share, in its order
        for step in range(2):
            stream.batch(step)
        share_files = {stream.shards.shard_of(int(i)) for i in share}
        assert set(stream.shards._open) <= share_files  # no other shard was even opened
        assert len(share_files) < len(stream.shards.counts)


def test_batches_are_the_same_after_a_restart_and_in_workers(written):
    shards_dir, _ = written
    first, again = _stream(shards_dir), _stream(shards_dir)
    per_epoch = len(first.shards) // first.batch_size
    for step in (0, per_epoch, per_epoch + 1):  # both sides of an epoch boundary
        assert torch.equal(first.batch(step)["global_crops"], again.batch(step)["global_crops"])
    order = [first.shard_index(i) for i in range(len(first.shards))]
    assert sorted(order) == list(range(len(first.shards)))  # an epoch reads every sample once
    assert order != [_stream(shards_dir, seed=1).shard_index(i) for i in range(len(order))]
    loader = build_loader(_stream(shards_dir), num_workers=2)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == 3:
            break
    for step, batch in enumerate(batches):
        assert torch.equal(batch["global_crops"], first.batch(step)["global_crops"])


def test_damaged_or_missing_shards_are_clear_errors(written, tmp_path):
    import shutil

    shards_dir, png_dir = written
    bad = tmp_path / "bad"
    shutil.copytree(shards_dir, bad)
    shard = bad / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0xFF  # same size, one pixel changed: only the sha256 sees it
    shard.write_bytes(bytes(data))
    shards = PatchShards([bad])
    assert shards[0].shape == (SIZE, SIZE, 3)  # shard 0 is intact
    with pytest.raises(ShardError, match=r"shard-00001\.npy is damaged: sha256"):
        shards[7]
    assert PatchShards([bad], verify=False)[7].shape == (SIZE, SIZE, 3)
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(ShardError, match=r"shard-00001\.npy is damaged: .* bytes"):
        PatchShards([bad])
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r"shard .*shard-00001\.npy .* missing"):
        _stream(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ShardError, match="not a readable shard manifest"):
        PatchShards([bad])
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        PatchShards([png_dir])
    cfg = load_config("tiny_cpu", [f"data.patch_dirs=[{shards_dir}]"])
    with pytest.raises(ValueError, match=r"holds patch shards: give data\.shards"):
        stream_from_config(cfg.data, cfg.mask, patch_size=14, seed=0, rank=0, world_size=1,
                           start_step=0)  # fmt: skip


def test_resume_from_shards_is_bit_exact(written, tmp_path):
    from training.train.distributed import DistEnv
    from training.train.logging import read_log
    from training.train.loop import Trainer

    shards_dir, _ = written

    def run(out: Path, stop: int) -> None:
        cfg = load_config("tiny_cpu", [f"run.output_dir={out}", f"run.stop_after={stop}",
                                       f"data.shards=[{shards_dir}]", "data.synthetic=false",
                                       "data.batch_size_per_gpu=8", "run.checkpoint_every=100"])
        Trainer(cfg, DistEnv()).fit()

    assert len(PatchShards([shards_dir])) < 7 * 8  # the steps below cross into the 2nd epoch
    run(tmp_path / "resumed", 3)
    run(tmp_path / "resumed", 8)  # resumes at step 3
    run(tmp_path / "unbroken", 8)
    resumed = read_log(tmp_path / "resumed" / "log.jsonl")
    assert [r["step"] for r in resumed if r.get("event") == "resume"] == [2]
    logs = [{r["step"]: r["total_loss"] for r in read_log(tmp_path / name / "log.jsonl")
             if "total_loss" in r} for name in ("resumed", "unbroken")]  # fmt: skip
    assert [logs[0][s] for s in range(3, 8)] == [logs[1][s] for s in range(3, 8)]
