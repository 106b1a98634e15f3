"""ACoL on a hand-built toy whose answer is known: branch A sees one blob, branch B (after the
erasing) another; the fused map must cover both, branch A's CAM only the first."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from interp_models import GapNet
from torch import nn

from pyseg.interpret import InterpretError
from pyseg.interpret.acol import ACoL, acol_loss, acol_maps

P = (slice(2, 6), slice(2, 6))
Q = (slice(10, 14), slice(9, 13))


def _pass_through(branch: nn.Sequential, order: tuple[int, int]) -> None:
    """conv3x3 -> ReLU -> conv3x3 -> ReLU -> conv1x1 that copies channel order[k] to class k."""
    with torch.no_grad():
        for conv in (branch[0], branch[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(2):
                conv.weight[c, c, 1, 1] = 1.0
        branch[4].weight.zero_()
        branch[4].bias.zero_()
        for k, c in enumerate(order):
            branch[4].weight[k, c, 0, 0] = 1.0


@pytest.fixture
def toy():
    model = ACoL(nn.Identity(), channels=2, num_classes=2, threshold=0.6, hidden=2)
    _pass_through(model.branch_a, (0, 1))
    _pass_through(model.branch_b, (1, 0))
    x = torch.zeros(1, 2, 16, 16)
    x[0, 0][P] = 1.0
    x[0, 1][Q] = 0.8
    return model.eval(), x


def test_erasing_and_branches(toy):
    model, x = toy
    a, b, erased = model.class_maps(x)
    assert a.mean((2, 3)).argmax(1).tolist() == [0]
    want = torch.zeros(1, 16, 16, dtype=torch.bool)
    want[0][P] = True
    assert torch.equal(erased, want)  # A_0 scaled to [0, 1] exceeds 0.6 exactly on P
    torch.testing.assert_close(b, model.branch_b(x * (~erased)[:, None]))
    torch.testing.assert_close(model(x), (a.mean((2, 3)) + b.mean((2, 3))) / 2)


def test_fused_map_covers_both_regions(toy):
    model, x = toy
    fused = acol_maps(model, x, target=0)[0]
    cam = acol_maps(model, x, target=0, branch="a")[0]
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[P] = True
    other = torch.zeros(16, 16, dtype=torch.bool)
    other[Q] = True
    assert (fused[region] > 0.5).all() and (fused[other] > 0.5).all()
    assert (cam[region] > 0.5).all() and (cam[other] < 0.5).all()
    assert (fused[~(region | other)] < 0.5).all()


def test_training_outputs_and_loss(toy):
    model, x = toy
    model.train()
    labels = torch.tensor([1])
    la, lb = model(x, labels)
    _, _, erased = model.class_maps(x, labels)  # erased for the label (class 1: Q)
    assert erased[0][Q].all() and not erased[0][P].any()
    torch.testing.assert_close(acol_loss((la, lb), labels),
                               F.cross_entropy(la, labels) + F.cross_entropy(lb, labels))


def test_errors(interpreters, images):
    assert interpreters["acol"].tasks == {"classification"}
    with pytest.raises(InterpretError, match="ACoL"):
        interpreters["acol"](GapNet(), images)
    with pytest.raises(ValueError, match="threshold"):
        ACoL(nn.Identity(), 2, 2, threshold=1.5)
    model = ACoL(nn.Conv2d(3, 4, 3, padding=1), 4, 3)
    with pytest.raises(InterpretError, match="out of range"):
        acol_maps(model, images, target=5)
    with pytest.raises(ValueError, match="branch"):
        acol_maps(model, images, branch="c")
    maps = interpreters["acol"](model, images)
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
