"""The CAM family against pytorch-grad-cam (package ``grad-cam``) on the same models and layers.

The models use out-of-place ReLUs: pytorch-grad-cam keeps the target layer's output as it is
(a view), which an in-place ReLU right after the layer would rewrite; pyseg copies it.

pytorch-grad-cam scales each layer's map by ``1 / (max + 1e-7)``, pyseg by ``1 / max`` (scale
invariant): the two differ by ~1e-7 / max where several layers are averaged. The head of the
models is scaled by ``gain`` so that the raw maps are far above that epsilon (Score-CAM keeps
gain 1: its softmax over scores would saturate). Likewise Grad-CAM++ adds 1e-6 to the
denominator of its coefficients ``g^2 / (2 g^2 + sum(A) g^3)``: a larger gain there.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from pyseg_plugins.interpreters.cam_family import eigen_projection
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputTarget,
    SemanticSegmentationTarget,
)
from torch import nn


class Classifier(nn.Module):
    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        )
        self.fc = nn.Linear(12, 4)
        with torch.no_grad():
            self.fc.weight.mul_(gain)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class SegNet(nn.Module):
    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                 nn.Conv2d(12, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
        with torch.no_grad():
            self.dec[3].weight.mul_(gain)

    def forward(self, x):
        return self.dec(self.enc(x))


GAIN = {"scorecam": 1.0, "gradcam++": 1e5}
REFERENCE = {
    "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "layercam": pgc.LayerCAM,
    "hirescam": pgc.HiResCAM, "xgradcam": pgc.XGradCAM, "eigencam": pgc.EigenCAM,
    "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM,
}
# Layers at input resolution, at half resolution, and both (maps combined).
CLS_LAYERS = [["features.3"], ["features.6"], ["features.3", "features.6"]]
SEG_LAYERS = [["enc.4"], ["dec.2"], ["enc.4", "dec.2"]]


def _sign_fixed_projection(batch: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's own projection with pyseg's documented sign rule applied."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    proj = get_2d_projection(batch)
    energy = np.nan_to_num(batch).sum(1)
    energy = energy - energy.mean(axis=(1, 2), keepdims=True)
    flip = (proj * energy).sum(axis=(1, 2)) < 0
    return np.where(flip[:, None, None], -proj, proj).astype(np.float32)


def _reference(method, model, layers, images, targets, monkeypatch):
    if method == "eigencam":
        monkeypatch.setattr("pytorch_grad_cam.eigen_cam.get_2d_projection",
                            _sign_fixed_projection)
    mods = [model.get_submodule(n) for n in layers]
    with REFERENCE[method](model=model, target_layers=mods) as ref:
        if method == "ablationcam":
            ref.batch_size = 5  # several batches per image, a partial last one
        out = ref(input_tensor=images, targets=targets)
    return torch.from_numpy(out)


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", lambda it, *a, **k: it)


@pytest.mark.parametrize("layers", CLS_LAYERS, ids="+".join)
@pytest.mark.parametrize("method", list(REFERENCE))
def test_classifier_matches_grad_cam(interpreters, method, layers, monkeypatch):
    torch.manual_seed(0)
    model = Classifier(gain=GAIN.get(method, 1e3))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [2, 1]
    want = _reference(method, model, layers, images,
                      [ClassifierOutputTarget(t) for t in targets], monkeypatch)
    opts = {"batch_size": 5} if method in ("scorecam", "ablationcam") else {}
    got = interpreters[method](model, images, target=torch.tensor(targets), layer=layers, **opts)
    assert got.shape == want.shape == (2, 32, 32)
    assert want.amax() > 0.99  # not a degenerate all-zero comparison
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("layers", SEG_LAYERS, ids="+".join)
@pytest.mark.parametrize("method", list(REFERENCE))
def test_segmentation_matches_grad_cam(interpreters, method, layers, monkeypatch):
    torch.manual_seed(0)
    model = SegNet(gain=GAIN.get(method, 1e3))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:20, 8:28] = True
    want = _reference(method, model, layers, images,
                      [SemanticSegmentationTarget(1, mask.float().numpy())] * 2, monkeypatch)
    opts = {"batch_size": 7} if method in ("scorecam", "ablationcam") else {}
    got = interpreters[method](model, images, target=(1, mask), layer=layers, **opts)
    assert want.amax() > 0.99
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_eigen_projection_is_grad_cams_up_to_sign():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    a = torch.rand(3, 6, 5, 7, generator=torch.Generator().manual_seed(0))
    ours = eigen_projection(a)
    ref = torch.from_numpy(get_2d_projection(a.numpy()))
    for o, r in zip(ours, ref):
        sign = 1.0 if (o * r).sum() >= 0 else -1.0
        torch.testing.assert_close(o, sign * r, atol=1e-5, rtol=1e-4)
    # the sign rule: the map correlates with where the features fire
    energy = a.sum(1) - a.sum(1).mean((1, 2), keepdim=True)
    assert ((ours * energy).sum((1, 2)) >= 0).all()
