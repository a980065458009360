"""DINO, iBOT and KoLeo loss terms against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from training.data.masking import sample_masks
from training.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from training.losses.ibot import masks_weight_from_masks

LN2 = math.log(2.0)
LN4_3 = math.log(4.0 / 3.0)  # -log(0.75): cross-entropy of target [1, 0] vs softmax([ln 3, 0])


def test_dino_loss_two_global_views_by_hand():
    uniform = torch.tensor([[0.0, 0.0]])  # log_softmax = [-ln 2, -ln 2]
    three_to_one = torch.tensor([[math.log(3.0), 0.0]])  # softmax = [0.75, 0.25]
    teacher = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])]
    loss = DINOLoss(student_temp=1.0)([uniform, three_to_one], teacher)
    # pairs: (teacher 0, student 1) = -ln 0.75 ; (teacher 1, student 0) = ln 2
    assert loss.item() == pytest.approx((LN4_3 + LN2) / 2)


def test_dino_loss_with_a_local_crop_and_temperature():
    uniform = torch.tensor([[0.0, 0.0]])
    three_to_one = torch.tensor([[math.log(3.0), 0.0]])
    local = torch.tensor([[0.0, 0.0]])
    teacher = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])]
    loss = DINOLoss(student_temp=1.0)([uniform, three_to_one, local], teacher)
    # + (teacher 0, local) = ln 2 ; (teacher 1, local) = ln 2 ; mean over 4 pairs
    assert loss.item() == pytest.approx((LN4_3 + LN2 + LN2 + LN2) / 4)
    # Temperature divides the student logits: 2*ln3 / 2 is the same as ln 3 at T=1.
    sharper = DINOLoss(student_temp=2.0)([uniform, 2 * three_to_one], teacher)
    assert sharper.item() == pytest.approx((LN4_3 + LN2) / 2)


def test_dino_loss_rejects_bad_views():
    with pytest.raises(ValueError, match="no \\(student, teacher\\) pair"):
        DINOLoss()([torch.zeros(1, 2)], [torch.ones(1, 2) / 2])
    with pytest.raises(ValueError, match="shape"):
        DINOLoss()([torch.zeros(1, 2), torch.zeros(1, 3)], [torch.ones(1, 2) / 2])


def test_ibot_weights_each_image_equally():
    # Image A: one masked token; image B: three masked tokens.
    masks = torch.tensor([[True, False, False, False], [True, True, True, False]])
    weights = masks_weight_from_masks(masks)
    torch.testing.assert_close(weights, torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3]))
    uniform, three_to_one = [0.0, 0.0], [math.log(3.0), 0.0]
    student = torch.tensor([uniform, three_to_one, three_to_one, uniform])
    teacher = torch.tensor([[1.0, 0.0]] * 4)
    loss_fn = iBOTPatchLoss(student_temp=1.0)
    image_a, image_b = LN2, (2 * LN4_3 + LN2) / 3
    loss = loss_fn.forward_masked(student, teacher, weights)
    assert loss.item() == pytest.approx((image_a + image_b) / 2)
    # A plain mean over tokens would let image B dominate: the weighting must differ from it.
    assert loss.item() != pytest.approx((LN2 + 2 * LN4_3 + LN2) / 4)
    # DINOv2 divides by the whole batch: two more unmasked images halve the value.
    whole_batch = loss_fn.forward_masked(student, teacher, weights, n_images=4)
    assert whole_batch.item() == pytest.approx((image_a + image_b) / 4)
    # Padded buffers: rows past n_masked_patches are ignored.
    padded = loss_fn.forward_masked(
        torch.cat([student, torch.randn(2, 2)]),
        torch.cat([teacher, torch.full((2, 2), 0.5)]),
        torch.cat([weights, torch.ones(2)]),
        n_masked_patches=4,
    )
    assert padded.item() == pytest.approx(loss.item())


def test_ibot_full_grid_form_matches_masked_form():
    batch = sample_masks(4, grid=(4, 4), generator=0)
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 16, 5, generator=generator)
    teacher = torch.softmax(torch.randn(4, 16, 5, generator=generator), dim=-1)
    loss_fn = iBOTPatchLoss()
    full = loss_fn(student, teacher, batch.masks)
    masked = loss_fn.forward_masked(
        student.flatten(0, 1)[batch.mask_indices],
        teacher.flatten(0, 1)[batch.mask_indices],
        batch.masks_weight,
        n_images=4,
    )
    assert full.item() == pytest.approx(masked.item())
    with pytest.raises(ValueError, match="token weights"):
        loss_fn.forward_masked(student[0], teacher[0], torch.ones(3))


def test_koleo_four_points_by_hand():
    # Directions at 0, 90, 45 and 180 degrees (unnormalized on purpose).
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    chord_45 = 2 * math.sin(math.pi / 8)  # nearest neighbor of the first three points
    expected = -(3 * math.log(chord_45) + math.log(math.sqrt(2.0))) / 4
    assert KoLeoLoss()(features).item() == pytest.approx(expected, abs=1e-6)


def test_koleo_gradient_pushes_nearest_points_apart():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]], requires_grad=True)
    KoLeoLoss()(features).backward()
    stepped = features.detach() - 0.1 * features.grad
    before = torch.nn.functional.normalize(features.detach(), dim=1)
    after = torch.nn.functional.normalize(stepped, dim=1)
    assert (after[0] - after[1]).norm() > (before[0] - before[1]).norm()
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.ones(1, 3))
