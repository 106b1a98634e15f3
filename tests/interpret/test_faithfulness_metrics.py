"""Faithfulness metrics on models whose evidence is known: the map that is the true evidence
must beat a random map and the inverted map on deletion, insertion and ROAD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pyseg.interpret.metrics import (
    auc,
    confidence,
    deletion,
    faithfulness,
    gaussian_blur,
    insertion,
    noisy_linear_impute,
    road,
)

R = (slice(8, 20), slice(10, 22))  # the evidence: a 12 x 12 block


def _classifier() -> nn.Module:
    """logit 0 = 8 * (mean of all channels over R) - 4, logit 1 = 0."""
    lin = nn.Linear(3 * 32 * 32, 2)
    w = torch.zeros(3, 32, 32)
    w[:, R[0], R[1]] = 8.0 / (3 * 144)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = w.flatten()
        lin.bias.copy_(torch.tensor([-4.0, 0.0]))
    return nn.Sequential(nn.Flatten(), lin)


def _segmenter() -> nn.Module:
    """Per-pixel logits: class 1 = channel mean, class 0 = 0.5."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1] = 1.0 / 3
        conv.bias.copy_(torch.tensor([0.5, 0.0]))
    return conv


def _images(n: int = 2) -> torch.Tensor:
    x = torch.zeros(n, 3, 32, 32)
    x[:, :, R[0], R[1]] = 1.0
    return x


def _maps(n: int = 2) -> dict[str, torch.Tensor]:
    true = _images(n).mean(1)  # the model's evidence: its weights times the input
    g = torch.Generator().manual_seed(0)
    return {"true": true, "random": torch.rand(n, 32, 32, generator=g), "inverted": -true}


CASES = {
    "classifier": (_classifier, 0),
    "segmentation": (_segmenter, (1, torch.zeros(32, 32, dtype=torch.bool).index_put_(
        (torch.arange(8, 20)[:, None], torch.arange(10, 22)[None]), torch.tensor(True)))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_true_evidence_wins(case):
    make, target = CASES[case]
    model, x, maps = make(), _images(), _maps()
    dele = {k: deletion(model, x, m, target, steps=16)[1] for k, m in maps.items()}
    ins = {k: insertion(model, x, m, target, steps=16)[1] for k, m in maps.items()}
    rd = {k: road(model, x, m, target, percentiles=(10, 30, 50, 70, 90))["road"]
          for k, m in maps.items()}
    for other in ("random", "inverted"):
        assert (dele["true"] < dele[other]).all(), (case, dele)
        assert (ins["true"] > ins[other]).all(), (case, ins)
        assert (rd["true"] > rd[other]).all(), (case, rd)
    # the ranking is not marginal: deletion of the evidence first kills the score
    assert (dele["true"] < 0.5 * dele["inverted"]).all()


def test_curve_endpoints_and_area():
    model, x, maps = _classifier(), _images(1), _maps(1)

    def p(t):
        with torch.no_grad():
            return torch.softmax(model(t), 1)[:, 0]

    curve, area = deletion(model, x, maps["true"], 0, steps=8)
    torch.testing.assert_close(curve[:, 0], p(x))
    torch.testing.assert_close(curve[:, -1], p(torch.zeros_like(x)))
    torch.testing.assert_close(area, auc(curve))
    curve, _ = insertion(model, x, maps["true"], 0, steps=8)
    torch.testing.assert_close(curve[:, 0], p(gaussian_blur(x)))
    torch.testing.assert_close(curve[:, -1], p(x))
    # trapezoid: a straight line from 1 to 0 has area 1/2; Petsiuk's formula
    line = torch.linspace(1, 0, 11)
    torch.testing.assert_close(auc(line), torch.tensor(0.5))
    arr = torch.rand(9)
    torch.testing.assert_close(auc(arr), (arr.sum() - arr[0] / 2 - arr[-1] / 2) / 8)


def test_blur_is_gaussian():
    """Against torchvision's Gaussian blur (reflect padding, same kernel)."""
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(gaussian_blur(x, 11, 5.0), tv_blur(x, [11, 11], [5.0, 5.0]),
                               atol=1e-6, rtol=1e-5)


def test_imputation_matches_road_reference():
    """noise=0: the same linear system as pytorch-grad-cam's NoisyLinearImputer (scipy)."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 16, 18, generator=g)
    removed = torch.rand(1, 16, 18, generator=g) < 0.6
    removed[0, :5, :5] = True  # a corner block: border pixels have fewer neighbours
    ours = noisy_linear_impute(img, removed, noise=0.0)
    ref = NoisyLinearImputer(noise=0.0)(img[0], (~removed[0]).float())
    torch.testing.assert_close(ours[0], ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[0][:, ~removed[0]], img[0][:, ~removed[0]])
    # noise: seeded, only on the removed pixels, of the requested size
    a = noisy_linear_impute(img, removed, 0.1, torch.Generator().manual_seed(1))
    b = noisy_linear_impute(img, removed, 0.1, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    d = (a - ours)[0][:, removed[0]]
    assert abs(d.std().item() - 0.1) < 0.02
    with pytest.raises(ValueError, match="every pixel"):
        noisy_linear_impute(img, torch.ones(1, 16, 18, dtype=torch.bool))


def test_confidence_and_errors():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(confidence(logits, torch.tensor([0, 1])),
                               torch.softmax(logits, 1).diagonal())
    torch.testing.assert_close(confidence(logits, torch.tensor([0, 1]), score="logit"),
                               torch.tensor([2.0, 1.0]))
    seg = torch.randn(1, 3, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True
    torch.testing.assert_close(confidence(seg, torch.tensor([2]), mask),
                               seg[0, 2][mask[0]].sum()[None])
    want = torch.softmax(seg, 1)[0, 2][mask[0]].mean()[None]
    torch.testing.assert_close(confidence(seg, torch.tensor([2]), mask, "probability"), want)
    with pytest.raises(ValueError, match="score"):
        confidence(logits, torch.tensor([0, 1]), score="prob")
    model, x = _classifier(), _images(1)
    with pytest.raises(ValueError, match="saliency"):
        deletion(model, x, torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match="percentiles"):
        road(model, x, torch.rand(1, 32, 32), percentiles=(100,))


def test_faithfulness_summary():
    model, x, maps = _classifier(), _images(1), _maps(1)
    obj = _images(1)[:, 0] > 0
    out = faithfulness(model, x, maps["true"], 0, steps=8, object_mask=obj)
    assert set(out) == {"deletion", "insertion", "road", "morf", "lerf", "pointing"}
    assert out["pointing"].tolist() == [1.0]
    assert np.isfinite(torch.stack(list(out.values())).numpy()).all()
