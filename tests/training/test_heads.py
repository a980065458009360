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
