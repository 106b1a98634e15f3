"""Interpreters on toy models whose right answer is known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from interp_models import GapNet, PixelSegNet, QuadrantNet
from pyseg_plugins.interpreters.excitation_backprop import excitation_masses
from torch import nn

from pyseg.interpret import InterpretError, default_layer, minmax_normalize, upsample_to

CAM_FAMILY = ["layercam", "hirescam", "xgradcam", "eigencam", "scorecam", "ablationcam"]
METHODS = ["cam", "gradcam", "gradcam++", "hide-and-seek", "excitation-backprop", "rise",
           *CAM_FAMILY]
NO_LAYER = ("hide-and-seek", "rise")
# Sampling methods run with fewer samples where the test is not about their accuracy.
FAST = {"rise": {"num_samples": 64}, "hide-and-seek": {"num_samples": 64}}


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def test_registered(interpreters):
    assert set(METHODS) <= set(interpreters)
    assert interpreters["cam"].tasks == {"classification"}


@pytest.mark.parametrize("method", METHODS)
def test_contract(interpreters, gap_net, images, method):
    maps = interpreters[method](gap_net, images, **FAST.get(method, {}))
    assert maps.shape == (3, 32, 32)
    assert maps.device == images.device and maps.dtype == images.dtype
    assert maps.min() >= 0 and maps.max() <= 1
    # per-image min-max normalization: each map spans [0, 1]
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(3))
    assert torch.allclose(maps.flatten(1).amin(1), torch.zeros(3))
    assert _hooks(gap_net) == 0


def test_default_layer_is_rectified_last_conv(gap_net, images):
    assert default_layer(gap_net, images) is gap_net.features[4]


def test_default_layer_plain_convnet():
    """small-convnet: the ReLU of its last convolution (not the dense classifier)."""
    import pyseg

    net = pyseg.create_model("small-convnet", num_classes=2, input_size=96).eval()
    x = torch.rand(1, 3, 96, 96)
    assert default_layer(net, x) is net.features[13]


def test_default_layer_residual_main_path():
    """mini-xception: each block adds a strided 1x1 projection of its input, the last
    convolution executed; the default is the rectified features of the last block's main path
    (``blocks.4.body.4``), and below that block's when these are a single pixel."""
    import pyseg

    net = pyseg.create_model("mini-xception", num_classes=2).eval()
    layer = default_layer(net, torch.rand(1, 3, 64, 64))
    assert layer is net.blocks[4].body[4] and layer is not net.blocks[4].residual
    # 20 px: 16 after the stem, then 8, 4, 2, 1: the last block's features are one pixel.
    assert default_layer(net, torch.rand(1, 3, 20, 20)) is net.blocks[3].body[4]


def test_default_layer_unrectified_falls_back_to_last_conv():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)).eval()
    assert default_layer(net, torch.rand(1, 3, 8, 8)) is net[2]


def _closed_form_cam(model: GapNet, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        f = model.features(x)  # rectified last feature maps (N, C, h, w)
        w = model.fc.weight[classes]  # (N, C)
        m = torch.relu((w[:, :, None, None] * f).sum(1))
    return minmax_normalize(upsample_to(m, x.shape[-2:]))


def test_cam_closed_form(interpreters, gap_net, images):
    with torch.no_grad():
        pred = gap_net(images).argmax(1)
    got = interpreters["cam"](gap_net, images)
    torch.testing.assert_close(got, _closed_form_cam(gap_net, images, pred))
    # explicit per-image targets
    t = torch.tensor([4, 0, 2])
    got = interpreters["cam"](gap_net, images, target=t)
    torch.testing.assert_close(got, _closed_form_cam(gap_net, images, t))
    got1 = interpreters["cam"](gap_net, images, target=1)
    torch.testing.assert_close(got1, _closed_form_cam(gap_net, images, torch.tensor([1, 1, 1])))


def test_gradcam_equals_cam_on_gap_linear(interpreters, gap_net, images):
    for target in (None, 3):
        cam = interpreters["cam"](gap_net, images, target=target)
        grad = interpreters["gradcam"](gap_net, images, target=target)
        torch.testing.assert_close(grad, cam, atol=1e-5, rtol=1e-4)


def test_cam_on_class_maps_without_linear(interpreters, images):
    """mini-Xception style: last conv has one channel per class, then global pooling."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    got = interpreters["cam"](model, images, target=2)
    with torch.no_grad():
        maps = model[:3](images)[:, 2]
    torch.testing.assert_close(got, minmax_normalize(torch.relu(maps)))


def test_cam_rejects_other_shapes(interpreters, images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 32 * 32, 2))
    with pytest.raises(InterpretError, match="gradcam"):
        interpreters["cam"](model, images)
    with pytest.raises(InterpretError, match="gradcam"):
        interpreters["cam"](PixelSegNet(), images)
    assert _hooks(model) == 0


def test_layer_option(interpreters, gap_net, images):
    by_module = interpreters["gradcam"](gap_net, images, layer=gap_net.features[3])
    by_name = interpreters["gradcam"](gap_net, images, target_layer="features.3")
    torch.testing.assert_close(by_module, by_name)
    default = interpreters["gradcam"](gap_net, images)
    assert not torch.allclose(by_module, default)  # pre-ReLU maps differ
    with pytest.raises(InterpretError, match="not found"):
        interpreters["gradcam"](gap_net, images, layer="features.99")
    with pytest.raises(InterpretError, match="either"):
        interpreters["gradcam"](gap_net, images, layer="fc", target_layer="fc")
    with pytest.raises(InterpretError, match=r"\(N, C, H, W\)"):
        interpreters["gradcam"](gap_net, images, layer="fc")
    with pytest.raises(TypeError, match="unexpected option"):
        interpreters["gradcam"](gap_net, images, lyer="fc")


@pytest.mark.parametrize("method", [m for m in METHODS if m != "rise"])  # RISE: test_rise.py
def test_quadrant(interpreters, images, method):
    """A model that only looks at the top-left quadrant: most heat must be there."""
    torch.manual_seed(0)
    model = QuadrantNet(32)
    # hidden pixels become 0 (this model's "nothing"); enough masks to beat sampling noise
    opts = {"fill": 0.0, "num_samples": 1024} if method == "hide-and-seek" else {}
    maps = interpreters[method](model, images, target=0, **opts)
    inside = maps[:, :16, :16].sum((1, 2))
    total = maps.sum((1, 2))
    assert (inside / total > 0.75).all(), (inside / total).tolist()
    # and the hottest pixel is in the quadrant (or on its receptive-field border)
    flat = maps.flatten(1).argmax(1)
    rows, cols = flat // 32, flat % 32
    assert (rows < 18).all() and (cols < 18).all()


# ---------------------------------------------------------------------------------------------
# Model left as found
# ---------------------------------------------------------------------------------------------


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", METHODS)
def test_model_restored_after_exception(interpreters, images, method):
    torch.manual_seed(0)
    model = GapNet()
    model.train()
    model.features[1].eval()  # a mixed mode must come back exactly
    grads = []
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
        grads.append(p.grad)
    modes = [m.training for m in model.modules()]
    with pytest.raises(InterpretError, match="out of range"):
        interpreters[method](model, images, target=17)
    assert _hooks(model) == 0
    assert [m.training for m in model.modules()] == modes
    for p, g in zip(model.parameters(), grads):
        assert p.grad is g and (g == 7).all()
    # an exception raised inside the model's forward, after the hooks went on
    model.fc = nn.Sequential(Boom())
    opts = FAST.get(method, {}) if method in NO_LAYER else {"layer": "features.4"}
    with pytest.raises((RuntimeError, InterpretError), match="boom"):
        interpreters[method](model, images, target=0, **opts)
    assert _hooks(model) == 0
    assert [m.training for m in model.modules()][: len(modes) - 1] == modes[:-1]


@pytest.mark.parametrize("method", METHODS)
def test_model_restored_after_success(interpreters, images, method):
    torch.manual_seed(0)
    model = GapNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    interpreters[method](model, images, **FAST.get(method, {}))
    assert _hooks(model) == 0
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_works_under_no_grad_and_frozen_params(interpreters, gap_net, images):
    for p in gap_net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        a = interpreters["gradcam"](gap_net, images)
    for p in gap_net.parameters():
        p.requires_grad_(True)
    torch.testing.assert_close(a, interpreters["gradcam"](gap_net, images))


# ---------------------------------------------------------------------------------------------
# Excitation backprop
# ---------------------------------------------------------------------------------------------


def test_excitation_nonnegative_and_conserves_mass(gap_net, images):
    gap_net.fc.bias.data.zero_()
    masses = excitation_masses(gap_net, images, layer="features.0")
    names = list(masses)
    assert names[0] == "fc" and names[-1] == "features_0"
    assert len(names) >= 7  # fc, flatten, pool, relu, conv, maxpool, relu, conv
    for name, p in masses.items():
        assert (p >= 0).all(), name
        torch.testing.assert_close(p.flatten(1).sum(1), torch.ones(3), msg=name)


def test_excitation_conserves_mass_through_residual_and_cat():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            # No bias here: a unit switched on by its bias alone (all its excitatory inputs
            # zero) has no child to pass probability to; that loss is part of the method.
            self.b = nn.Conv2d(4, 2, 1, bias=False)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            s = F.relu(self.stem(x))
            r = F.relu(self.a(s)) + s
            c = torch.cat([r, F.relu(self.b(s))], 1)
            return self.fc(F.adaptive_avg_pool2d(c, 1).flatten(1))

    torch.manual_seed(0)
    model = Res()
    x = torch.rand(2, 3, 16, 16)
    masses = excitation_masses(model, x, target=1, layer="stem")
    stem = masses["stem"]
    assert (stem >= 0).all()
    torch.testing.assert_close(stem.flatten(1).sum(1), torch.ones(2), atol=1e-4, rtol=1e-4)


def test_excitation_segmentation_mask():
    """Per-pixel model: all probability stays inside the target mask."""
    torch.manual_seed(0)
    model = PixelSegNet()
    x = torch.rand(1, 3, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 10:14] = True
    masses = excitation_masses(model, x, target=(1, mask), layer="body.1")
    p = masses["body_1"].sum(1)[0]
    assert p[~mask].abs().max() == 0
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))


def test_excitation_contrastive(interpreters, gap_net, images):
    plain = interpreters["excitation-backprop"](gap_net, images, target=0)
    con = interpreters["excitation-backprop"](gap_net, images, target=0, contrastive=True)
    assert con.shape == plain.shape and (con >= 0).all() and (con <= 1).all()
    assert not torch.allclose(plain, con)
    masses = excitation_masses(gap_net, images, target=0, contrastive=True)
    # target and dual each carry unit mass: their difference sums to ~0
    last = next(reversed(masses.values()))
    assert last.flatten(1).sum(1).abs().max() < 1e-4


def test_excitation_unsupported_layer_named(interpreters, images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LocalResponseNorm(2), nn.ReLU(),
                          nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    with pytest.raises(InterpretError, match=r"'1' \(LocalResponseNorm\)"):
        interpreters["excitation-backprop"](model, images, layer="0")
    assert _hooks(model) == 0


# ---------------------------------------------------------------------------------------------
# Segmentation targets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [m for m in METHODS if m != "cam"])
def test_segmentation_targets(interpreters, images, method):
    torch.manual_seed(0)
    model = PixelSegNet()
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:8, :8] = True
    fast = FAST.get(method, {})
    a = interpreters[method](model, images, target=(2, mask), **fast)
    b = interpreters[method](model, images, target={"class": 2, "mask": mask.expand(3, 32, 32)},
                             **fast)
    torch.testing.assert_close(a, b)
    assert a.shape == (3, 32, 32)
    c = interpreters[method](model, images, **fast)  # default: most-predicted class and pixels
    assert c.shape == (3, 32, 32) and c.min() >= 0 and c.max() <= 1
    with pytest.raises(InterpretError, match="mask"):
        interpreters[method](model, images, target=(2, torch.ones(5, 5, dtype=torch.bool)),
                             **fast)


def test_hide_and_seek_seeded(interpreters, gap_net, images):
    hs = interpreters["hide-and-seek"]
    a = hs(gap_net, images, num_samples=32, batch_size=7, seed=3)
    b = hs(gap_net, images, num_samples=32, batch_size=64, seed=3)
    c = hs(gap_net, images, num_samples=32, seed=4)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_hide_and_seek_matches_definition(interpreters, images):
    """Brute force on a 2x2 grid: importance = mean score visible - mean score hidden."""
    torch.manual_seed(0)
    model = QuadrantNet(32)
    x = images[:1]
    got = interpreters["hide-and-seek"](model, x, target=0, grid_size=16, num_samples=64,
                                        fill=0.0, seed=0)
    from pyseg.data.patch_hiding import patch_grid_masks
    cells, pixels = patch_grid_masks(64, 32, 32, 16, 0.5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = torch.stack([model(x * (~h).float())[0, 0] for h in pixels])
    imp = torch.empty(4)
    for k in range(4):
        hid = cells.flatten(1)[:, k]
        imp[k] = scores[~hid].mean() - scores[hid].mean()
    expected = minmax_normalize(upsample_to(imp.clamp_min(0).view(1, 2, 2), (32, 32)))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    signed = interpreters["hide-and-seek"](model, x, target=0, grid_size=16, num_samples=64,
                                           fill=0.0, seed=0, positive_only=False)
    expected = minmax_normalize(upsample_to(imp.view(1, 2, 2), (32, 32)))
    torch.testing.assert_close(signed, expected, atol=1e-5, rtol=1e-4)


class _ShapePool(nn.Module):
    """Parameter-free, branches on the input shape (plain torch.fx tracing fails on it)."""

    def forward(self, x):
        if x.shape[-1] % 2:
            x = F.pad(x, (0, 1, 0, 1))
        return F.max_pool2d(x, 2)


def test_excitation_custom_leaf_rules(interpreters, images):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), _ShapePool(),
                          nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2, bias=False))
    # The tracer runs the model's Python on the real images, so the shape branch is followed.
    traced = excitation_masses(model, images, layer="0")["_0"]
    torch.testing.assert_close(traced.flatten(1).sum(1), torch.ones(3), atol=1e-4, rtol=1e-4)
    # Kept whole (a leaf), the module needs a rule, and the error says how to give one.
    with pytest.raises(InterpretError, match=r"'2' \(_ShapePool\).*rules="):
        excitation_masses(model, images, layer="0", leaf_modules=(model[2],))
    masses = excitation_masses(model, images, layer="0", leaf_modules=(model[2],),
                               rules={_ShapePool: "winner"})
    p = masses["_0"]
    assert (p >= 0).all()
    torch.testing.assert_close(p.flatten(1).sum(1), torch.ones(3), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p, traced)  # max pooling with or without the pad: same winners
    assert _hooks(model) == 0
