"""RISE against its definition, and on a linear toy model whose expected map is known."""

from __future__ import annotations

import pytest
import torch
from pyseg_plugins.interpreters.rise import rise, rise_masks
from torch import nn


def _linear_model(weight: torch.Tensor) -> nn.Module:
    """logit 0 = sum(weight * x) over a (1, H, W) input, logit 1 = 0."""
    h, w = weight.shape
    lin = nn.Linear(h * w, 2, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = weight.flatten()
    return nn.Sequential(nn.Flatten(), lin)


def test_masks():
    g = torch.Generator().manual_seed(0)
    m = rise_masks(400, 20, 24, 5, 0.3, g)
    assert m.shape == (400, 20, 24)
    assert m.min() >= 0 and m.max() <= 1
    assert abs(m.mean().item() - 0.3) < 0.03  # bilinear interpolation keeps the mean
    again = rise_masks(400, 20, 24, 5, 0.3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(m, again)
    with pytest.raises(ValueError, match="p must"):
        rise_masks(4, 8, 8, 2, 0.0, g)


def test_matches_definition():
    """S(x) = 1/(S p) sum_i score(I * M_i) M_i(x), with the same seeded masks."""
    torch.manual_seed(0)
    weight = torch.randn(12, 12)
    model = _linear_model(weight)
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    got = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, batch_size=7,
               score="logit", normalize=False)
    masks = rise_masks(50, 12, 12, 3, 0.4, torch.Generator().manual_seed(5))
    scores = torch.einsum("nhw,shw->ns", x[:, 0] * weight, masks)  # the model by hand
    expected = torch.einsum("ns,shw->nhw", scores, masks) / (50 * 0.4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # batching does not change the result; the seed does
    other = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, batch_size=64,
                 score="logit", normalize=False)
    torch.testing.assert_close(got, other)
    assert not torch.allclose(got, rise(model, x, target=0, num_samples=50, grid=3, p=0.4,
                                        seed=6, score="logit", normalize=False))
    # probability score: the softmax of the two logits, by hand
    prob = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, normalize=False)
    expected = torch.einsum("ns,shw->nhw", torch.sigmoid(scores), masks) / (50 * 0.4)
    torch.testing.assert_close(prob, expected, atol=1e-5, rtol=1e-4)


def test_known_expectation():
    """Linear score a . (I * M) on a white image: E[S(x)] = p sum(a) + cov(M(x), a . M) / p.
    Far from the evidence the covariance vanishes: S = p sum(a); on the evidence it is more."""
    a = torch.zeros(32, 32)
    a[:8, :8] = 1.0 / 64
    model = _linear_model(a)
    x = torch.ones(1, 1, 32, 32)
    s = rise(model, x, target=0, num_samples=3000, grid=4, p=0.5, seed=0, score="logit",
             normalize=False, batch_size=500)[0]
    far = s[20:, 20:].mean()  # more than one cell (8 px) + shift away from the evidence
    assert abs(far.item() - 0.5) < 0.03, far
    assert s[:8, :8].mean() > far + 0.05
    heat = rise(model, x, target=0, num_samples=3000, grid=4, p=0.5, seed=0, score="logit",
                batch_size=500)[0]
    peak = int(heat.argmax())
    assert peak // 32 < 8 and peak % 32 < 8
