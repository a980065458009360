"""Teacher centering: Sinkhorn-Knopp and EMA against hand-computed values, and across 2 ranks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.losses.centering import EMACenter, make_centering, sinkhorn_knopp


def test_sinkhorn_one_iteration_matches_hand_computation():
    # exp(logits) = [[3, 1], [1, 1]]; worked through one SK iteration on paper.
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    probs = sinkhorn_knopp(logits, temp=1.0, n_iters=1)
    expected = torch.tensor([[0.6, 0.4], [1 / 3, 2 / 3]])
    torch.testing.assert_close(probs, expected)


def test_sinkhorn_rows_are_distributions_and_prototypes_are_balanced():
    # A collapsing teacher: every sample prefers prototype 0.
    logits = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    logits[:, 0] += 2.0
    probs = sinkhorn_knopp(logits, temp=0.5, n_iters=3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(12))
    assert (probs >= 0).all()
    # Softmax gives prototype 0 most of the mass; SK moves it towards N / K = 3 each.
    softmax_mass = torch.softmax(logits / 0.5, dim=1).sum(dim=0)
    sk_mass = probs.sum(dim=0)
    assert softmax_mass[0] > 9
    assert (sk_mass - 3).abs().max() < 0.5
    converged = sinkhorn_knopp(logits, temp=0.5, n_iters=200).sum(dim=0)
    torch.testing.assert_close(converged, torch.full((4,), 3.0), atol=1e-3, rtol=0)


def test_sinkhorn_is_stable_for_large_logits():
    logits = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]])
    probs = sinkhorn_knopp(logits, temp=0.04)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs, torch.eye(2))


def test_sinkhorn_masked_variant_ignores_padding_rows():
    generator = torch.Generator().manual_seed(1)
    valid = torch.randn(5, 6, generator=generator)
    padded = torch.cat([valid, torch.randn(3, 6, generator=generator)])
    probs = sinkhorn_knopp(padded, temp=0.1, n_masked_patches=torch.tensor([5]))
    torch.testing.assert_close(probs[:5], sinkhorn_knopp(valid, temp=0.1))
    assert (probs[5:] == 0).all()
    with pytest.raises(ValueError, match="n_masked_patches"):
        sinkhorn_knopp(padded, temp=0.1, n_masked_patches=9)


def test_ema_center_softmax_and_update_by_hand():
    center = EMACenter(dim=2, momentum=0.9)
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    # Zero center: plain softmax(logits / T).
    torch.testing.assert_close(center.center(logits, temp=1.0), torch.softmax(logits, dim=1))
    center.update(logits)  # batch mean [2, 0] -> center 0.1 * [2, 0]
    torch.testing.assert_close(center.center_vector, torch.tensor([[0.2, 0.0]]))
    expected = torch.softmax((logits - torch.tensor([0.2, 0.0])) / 0.5, dim=1)
    torch.testing.assert_close(center(logits, 0.5), expected)
    assert "center_vector" in center.state_dict()  # saved with checkpoints


def test_make_centering_common_interface():
    logits = torch.randn(4, 3)
    for kind in ("ema", "sinkhorn_knopp"):
        centering = make_centering(kind, dim=3)
        probs = centering(logits, 0.1)
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
        centering.update(logits)
    with pytest.raises(ValueError, match="unknown centering"):
        make_centering("batchnorm", dim=3)
    with pytest.raises(ValueError, match="temperature"):
        sinkhorn_knopp(logits, temp=0.0)


def _sk_on_rank(rank: int, world_size: int, init_file: str, logits, queue) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        shard = logits.chunk(world_size)[rank]
        probs = sinkhorn_knopp(shard, temp=0.2, n_iters=3)
        ema = EMACenter(dim=logits.shape[1], momentum=0.5)
        ema.update(shard)
        # iBOT: each rank pads its masked tokens to 4 rows but holds 2 (rank 0) or 3 (rank 1).
        masked = sinkhorn_knopp(shard, temp=0.2, n_masked_patches=torch.tensor([2 + rank]))
        # numpy travels by value; a tensor would need this process alive until it is read.
        queue.put((rank, probs.numpy(), ema.center_vector.numpy(), masked.numpy()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes import torch: ~10 s idle, ~40 s on a busy machine
def test_sinkhorn_and_ema_agree_between_one_and_two_ranks(tmp_path):
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(2)) * 2
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_sk_on_rank, args=(r, 2, str(tmp_path / "init"), logits, queue))
        for r in range(2)
    ]
    for process in processes:
        process.start()
    results = {}
    for _ in processes:
        rank, *outputs = queue.get(timeout=120)
        results[rank] = [torch.from_numpy(array) for array in outputs]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    distributed_probs = torch.cat([results[0][0], results[1][0]])
    torch.testing.assert_close(distributed_probs, sinkhorn_knopp(logits, temp=0.2, n_iters=3))
    single = EMACenter(dim=5, momentum=0.5)
    single.update(logits)
    torch.testing.assert_close(results[0][1], single.center_vector)
    torch.testing.assert_close(results[1][1], single.center_vector)
    # The masked variant over both ranks equals SK on the 2 + 3 valid tokens in one process.
    expected = sinkhorn_knopp(torch.cat([logits[:2], logits[4:7]]), temp=0.2)
    torch.testing.assert_close(torch.cat([results[0][2][:2], results[1][2][:3]]), expected)
    assert (results[0][2][2:] == 0).all() and (results[1][2][3:] == 0).all()
