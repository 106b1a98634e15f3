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


def _linear_case():
    """A linear model, two images, and the seeded masks and scores of rise(num_samples=50,
    grid=3, p=0.4, seed=5) computed by hand."""
    torch.manual_seed(0)
    weight = torch.randn(12, 12)
    model = _linear_model(weight)
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    masks = rise_masks(50, 12, 12, 3, 0.4, torch.Generator().manual_seed(5))
    scores = torch.einsum("nhw,shw->ns", x[:, 0] * weight, masks)  # the model by hand
    return model, x, masks, scores


def test_matches_definition():
    """normalization="p": S(x) = 1/(S p) sum_i score(I * M_i) M_i(x), the same seeded masks."""
    model, x, masks, scores = _linear_case()
    got = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, batch_size=7,
               score="logit", normalization="p", normalize=False)
    expected = torch.einsum("ns,shw->nhw", scores, masks) / (50 * 0.4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # batching does not change the result; the seed does
    other = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, batch_size=64,
                 score="logit", normalization="p", normalize=False)
    torch.testing.assert_close(got, other)
    assert not torch.allclose(got, rise(model, x, target=0, num_samples=50, grid=3, p=0.4,
                                        seed=6, score="logit", normalization="p",
                                        normalize=False))
    # probability score: the softmax of the two logits, by hand
    prob = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, normalization="p",
                normalize=False)
    expected = torch.einsum("ns,shw->nhw", torch.sigmoid(scores), masks) / (50 * 0.4)
    torch.testing.assert_close(prob, expected, atol=1e-5, rtol=1e-4)


def test_matches_definition_mask_sum():
    """Default normalization: S(x) = sum_i score(I * M_i) M_i(x) / sum_i M_i(x)."""
    model, x, masks, scores = _linear_case()
    got = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, batch_size=7,
               score="logit", normalize=False)
    expected = torch.einsum("ns,shw->nhw", scores, masks) / masks.sum(0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # the two normalizations differ by the factor S p / sum_i M_i(x) per pixel
    by_p = rise(model, x, target=0, num_samples=50, grid=3, p=0.4, seed=5, score="logit",
                normalization="p", normalize=False)
    torch.testing.assert_close(got, by_p * (50 * 0.4) / masks.sum(0), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="normalization"):
        rise(model, x, target=0, num_samples=4, normalization="mean")


class _Constant(nn.Module):
    """Logits (c, 0) whatever the input."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.stack([torch.full((len(x),), self.c), torch.zeros(len(x))], 1)


def test_input_independent_score_gives_a_constant_map():
    """A score that ignores the input carries no evidence anywhere: the mask-sum map is that
    score at every pixel. Divided by S p instead, it is the score times each pixel's mask sum
    / (S p), which with 128 masks varies by several percent and peaks at one pixel."""
    model = _Constant(2.0)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    raw = rise(model, x, target=0, num_samples=128, grid=8, p=0.5, score="logit",
               normalize=False)
    torch.testing.assert_close(raw, torch.full_like(raw, 2.0))
    by_p = rise(model, x, target=0, num_samples=128, grid=8, p=0.5, score="logit",
                normalization="p", normalize=False)
    masks = rise_masks(128, 32, 32, 8, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(by_p[0], 2.0 * masks.sum(0) / 64, atol=1e-5, rtol=1e-5)
    assert by_p.max() - by_p.min() > 0.1


def test_mask_sum_finds_small_evidence_under_a_large_base_score():
    """Score = 5 + a small linear term on an 8x8 patch at a different place in each image, 128
    masks: with the per-pixel mask sum the map peaks on each patch; the input-independent 5
    no longer draws a peak of its own (with normalization="p" it adds 5 x (mask sum / (S p)
    - 1), the same map for every image)."""
    a = torch.zeros(32, 32)
    for (r, c) in ((2, 2), (20, 18)):
        a[r:r + 8, c:c + 8] = 0.05
    lin = nn.Linear(32 * 32, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = a.flatten()
        lin.bias.copy_(torch.tensor([5.0, 0.0]))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.zeros(2, 1, 32, 32)
    x[0, 0, 2:10, 2:10] = 1.0  # image 0 shows the first patch, image 1 the second
    x[1, 0, 20:28, 18:26] = 1.0
    heat = rise(model, x, target=0, num_samples=128, grid=4, p=0.5, score="logit",
                batch_size=128)
    for i, (r, c) in enumerate(((2, 2), (20, 18))):
        peak = int(heat[i].argmax())
        assert r <= peak // 32 < r + 8 and c <= peak % 32 < c + 8, (i, divmod(peak, 32))


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
