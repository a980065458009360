"""DINO head: shapes, unit-norm prototypes, cosine logits and last-layer freezing."""

from __future__ import annotations

import torch

from training.models.heads import DINOHead, cancel_last_layer_gradients


def _head(**kw) -> DINOHead:
    torch.manual_seed(0)
    return DINOHead(in_dim=16, out_dim=32, hidden_dim=24, bottleneck_dim=8, **kw)


def test_shapes_for_cls_and_patch_tokens():
    head = _head()
    assert head(torch.randn(5, 16)).shape == (5, 32)
    assert head(torch.randn(2, 7, 16)).shape == (2, 7, 32)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 24), (24, 24), (24, 8)]
    single = DINOHead(16, 32, bottleneck_dim=8, nlayers=1)
    assert isinstance(single.mlp, torch.nn.Linear) and single(torch.randn(3, 16)).shape == (3, 32)


def test_prototypes_are_unit_vectors_and_logits_are_cosines():
    head = _head()
    prototypes = head.last_layer.weight  # recomputed from g * v / |v| by the parametrization
    torch.testing.assert_close(prototypes.norm(dim=1), torch.ones(32))
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad
    logits = head(torch.randn(64, 16) * 100)
    assert logits.abs().max() <= 1.0 + 1e-5
    assert _head(norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad


def test_last_layer_frozen_until_the_given_step():
    head = _head()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    for step in range(2):
        optimizer.zero_grad()
        prototypes_before = head.last_layer.weight.detach().clone()
        mlp_before = head.mlp[0].weight.detach().clone()
        head(torch.randn(8, 16)).logsumexp(dim=1).mean().backward()
        cancel_last_layer_gradients(head, step, freeze_until=1)
        optimizer.step()
        prototypes_moved = not torch.equal(head.last_layer.weight, prototypes_before)
        assert prototypes_moved == (step >= 1)
        assert not torch.equal(head.mlp[0].weight, mlp_before)


def test_batchnorm_head_uses_batch_statistics_in_teacher_and_per_token_kind():
    """use_bn: the teacher normalizes with its batch's statistics (its running buffers are never
    EMA-updated), and a shared head normalizes CLS and patch tokens separately."""
    from training.configs import HeadConfig, ModelConfig
    from training.models.student_teacher import StudentTeacher

    torch.manual_seed(0)
    model_cfg = ModelConfig(embed_dim=32, depth=1, num_heads=2, layerscale_init=None)
    head_cfg = HeadConfig(out_dim=16, hidden_dim=24, bottleneck_dim=8, use_bn=True)
    models = StudentTeacher(model_cfg, head_cfg, img_size=28).train()
    teacher = models.teacher
    norms = [m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and all(m.training for m in norms)
    assert not teacher.backbone.training  # the rest of the teacher stays in eval mode
    crops = torch.randn(6, 3, 28, 28)
    masks = torch.zeros(6, 4, dtype=torch.bool)
    masks[:, :2] = True
    with torch.no_grad():
        out = teacher(crops, masks, mask_inputs=False)
        tokens = teacher.tokens(crops)
        alone_cls = teacher.dino_head(tokens[:, 0])
        alone_patches = teacher.dino_head(tokens[:, 1:][masks])
        # batch statistics: the same crop gets another output in another batch
        other = teacher(torch.cat([crops[:1], torch.randn(5, 3, 28, 28)]), masks,
                        mask_inputs=False)
    torch.testing.assert_close(out.global_cls_logits, alone_cls)
    torch.testing.assert_close(out.masked_patch_logits, alone_patches)
    assert not torch.allclose(out.global_cls_logits[0], other.global_cls_logits[0])
