"""Every built-in architecture: output shapes at several input sizes, gradients, state_dict
round trips, parameter counts, torch.compile, and routing of upsampling/unpooling through
pyseg's operators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import pyseg

# Small configurations so every test runs in a fraction of a second on a CPU.
SMALL = {
    "pets-encdec": {},
    "fcn32s": {"width": 1 / 16},
    "fcn16s": {"width": 1 / 16},
    "fcn8s": {"width": 1 / 16},
    "deconvnet": {"width": 1 / 16},
    "segnet": {"width": 1 / 16},
    "unet": {"base_channels": 4, "depth": 3},
    "unet-bilinear": {"base_channels": 4, "depth": 3, "upsample": "bilinear"},
    "unet-deform": {"base_channels": 4, "depth": 2, "deformable": True, "deform_levels": 2},
    "unet-deform-v1": {"base_channels": 4, "depth": 2, "deformable": "v1"},
}
SEGMENTATION = sorted(SMALL)
SIZES = [(32, 32), (37, 50), (64, 41)]


def build(key: str, num_classes: int = 3, in_channels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return pyseg.create_model(key.split("-")[0] if key.startswith("unet") else key,
                              num_classes=num_classes, in_channels=in_channels, **SMALL[key])


def expected_size(key: str, h: int, w: int) -> tuple[int, int]:
    if key == "pets-encdec":  # three Keras 'same' stride-2 convs and three 2x transposed convs
        return 8 * math.ceil(h / 8), 8 * math.ceil(w / 8)
    return h, w


def test_every_builtin_architecture_is_tested():
    names = set(pyseg.list_architectures())
    tested = {k.split("-")[0] if k.startswith("unet") else k for k in SMALL}
    assert names >= tested | {"small-convnet", "mini-xception"}


@pytest.mark.parametrize("key", SEGMENTATION)
def test_segmentation_shapes(key):
    model = build(key, num_classes=4, in_channels=2).eval()
    with torch.no_grad():
        for h, w in SIZES:
            out = model(torch.rand(2, 2, h, w))
            assert out.shape == (2, 4, *expected_size(key, h, w)), (h, w)
            assert torch.isfinite(out).all()


def test_pets_keeps_200x200():
    model = pyseg.create_model("pets-encdec", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 200, 200)).shape == (1, 3, 200, 200)


@pytest.mark.parametrize("name", ["fcn8s", "deconvnet", "segnet", "unet"])
def test_batch_one_and_odd_sizes(name):
    model = pyseg.create_model(name, num_classes=2, **SMALL[name]).eval()
    with torch.no_grad():
        for h, w in [(33, 35), (47, 32)]:
            assert model(torch.rand(1, 3, h, w)).shape == (1, 2, h, w)


@pytest.mark.parametrize("name", ["deconvnet", "segnet"])
def test_too_small_input_is_a_clear_error(name):
    model = pyseg.create_model(name, **SMALL[name]).eval()
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.rand(1, 3, 16, 16))


def frozen_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("key", SEGMENTATION)
def test_gradient_reaches_every_parameter(key):
    model = build(key).train()
    x = torch.rand(2, 3, 40, 40)
    out = model(x)
    target = torch.randint(0, 3, (2, *out.shape[-2:]))
    F.cross_entropy(out, target).backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # Only FCN's final bilinear upsampling is frozen (the paper's choice).
    expected = {"fcn32s": {"upscore.weight"}, "fcn16s": {"upscore16.weight"},
                "fcn8s": {"upscore8.weight"}}.get(key, set())
    assert frozen_names(model) == expected


def test_fcn_final_upsampling_can_learn():
    model = pyseg.create_model("fcn8s", width=1 / 16, learn_final_upsample=True)
    assert frozen_names(model) == set()


@pytest.mark.parametrize("key", SEGMENTATION + ["small-convnet", "mini-xception"])
def test_state_dict_round_trip(key):
    if key in ("small-convnet", "mini-xception"):
        kwargs = {"input_size": 96} if key == "small-convnet" else {}
        torch.manual_seed(0)
        a = pyseg.create_model(key, num_classes=2, **kwargs).eval()
        torch.manual_seed(1)
        b = pyseg.create_model(key, num_classes=2, **kwargs).eval()
        x = torch.rand(2, 3, 96, 96)
    else:
        a, b = build(key, seed=0).eval(), build(key, seed=1).eval()
        x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        if key not in ("fcn32s", "fcn16s", "fcn8s"):  # FCN skip scores start at zero
            assert not torch.equal(a(x), b(x))
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(x), b(x))
    assert a.state_dict().keys() == b.state_dict().keys()


# ----------------------------------------------------------------------------- classifiers


def test_small_convnet():
    model = pyseg.create_model("small-convnet", num_classes=1).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 180, 180)).shape == (2, 1)
    with pytest.raises(ValueError, match="180x180"):
        model(torch.rand(1, 3, 64, 64))
    small = pyseg.create_model("small-convnet", num_classes=5, input_size=96)
    assert small(torch.rand(3, 3, 96, 96)).shape == (3, 5)


@pytest.mark.parametrize("size", [180, 64, 37])
def test_mini_xception_shapes(size):
    model = pyseg.create_model("mini-xception", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 2)


@pytest.mark.parametrize("name", ["small-convnet", "mini-xception"])
def test_classifier_gradients(name):
    kwargs = {"input_size": 96} if name == "small-convnet" else {}
    model = pyseg.create_model(name, num_classes=3, **kwargs).train()
    F.cross_entropy(model(torch.rand(2, 3, 96, 96)), torch.tensor([0, 2])).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


# ----------------------------------------------------------------------------- counts


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_book_parameter_counts():
    # The Keras summaries in "Deep Learning with Python" (2nd ed.): 2,880,643 (ch. 9 pets
    # segmentation model, num_classes=3), 991,041 (ch. 8 convnet, one sigmoid unit) and
    # 721,857 total for the ch. 9 Xception-like model, of which 3,008 are the batch-norm
    # moving mean/variance (non-trainable in Keras, buffers here).
    assert n_params(pyseg.create_model("pets-encdec", num_classes=3)) == 2_880_643
    assert n_params(pyseg.create_model("small-convnet", num_classes=1)) == 991_041
    xc = pyseg.create_model("mini-xception", num_classes=1)
    stats = sum(b.numel() for n, b in xc.named_buffers() if n.endswith(("running_mean",
                                                                         "running_var")))
    assert stats == 3_008
    assert n_params(xc) + stats == 721_857


def test_rescale_has_no_parameters_and_scales():
    a = pyseg.create_model("pets-encdec")
    b = pyseg.create_model("pets-encdec", rescale=1 / 255)
    assert n_params(a) == n_params(b)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(b(x * 255), a(x), rtol=1e-4, atol=1e-5)


def test_full_width_backbones_match_torchvision_vgg16():
    """At width 1 the backbones are VGG16 (counts from torchvision's own definitions)."""
    tv = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        vgg = tv.vgg16()
        vgg_bn = tv.vgg16_bn()
        fcn = pyseg.create_model("fcn32s", num_classes=21)
        segnet = pyseg.create_model("segnet", num_classes=21)
    # FCN: VGG16's conv layers + fc6/fc7 convolutionalized (same counts as the dense ones).
    vgg_fc67 = n_params(vgg.features) + n_params(vgg.classifier[0]) + n_params(vgg.classifier[3])
    fcn_body = n_params(fcn.to_pool3) + n_params(fcn.to_pool4) + n_params(fcn.to_pool5)
    assert fcn_body + n_params(fcn.fc) == vgg_fc67
    # SegNet's encoder is VGG16-BN's feature extractor (SegNet drops the conv biases
    # only when followed by BN; torchvision keeps them: 13 convs' biases differ).
    conv_biases = sum(m.out_channels for m in vgg_bn.features if isinstance(m, torch.nn.Conv2d))
    assert n_params(segnet.encoder) == n_params(vgg_bn.features) - conv_biases


# ----------------------------------------------------------------------------- Keras alignment


def test_pets_same_padding_matches_keras_alignment():
    from pyseg_plugins.architectures._common import SameConv2d
    from pyseg_plugins.architectures.pets import _SameConvTranspose2x

    # Keras 'same', stride 2, even size: pad 0 before, 1 after, so output j reads input
    # rows 2j..2j+2 and a centre tap picks x[2j+1] (torch's padding=1 would pick x[2j]).
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1
        x = torch.arange(16.0).reshape(1, 1, 4, 4)
        torch.testing.assert_close(conv(x), x[..., 1::2, 1::2])
    # Keras Conv2DTranspose 'same' stride 2: output o = 2i + k, cropped at the end, so a
    # single input pixel yields the kernel's top-left 2x2 block.
    up = _SameConvTranspose2x(1, 1)
    with torch.no_grad():
        up.conv.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))
        up.conv.bias.zero_()
        torch.testing.assert_close(up(torch.ones(1, 1, 1, 1)),
                                   torch.tensor([[[[0.0, 1.0], [3.0, 4.0]]]]))


def test_fcn_bilinear_init_is_bilinear_interpolation():
    from pyseg_plugins.architectures._common import bilinear_kernel

    # A 4x4 stride-2 kernel on a ramp reproduces the ramp in the interior (bilinear).
    w = bilinear_kernel(1, 4)
    x = torch.arange(6.0).repeat(6, 1)[None, None]
    y = F.conv_transpose2d(x, w, stride=2)[..., 1:-1, 1:-1]
    torch.testing.assert_close(y[0, 0, 3, 2:-2], torch.arange(0.75, 4.5, 0.5)[: y.shape[-1] - 4])


# ----------------------------------------------------------------------------- operators


def test_missing_operator_fails_loudly(monkeypatch):
    monkeypatch.delattr(pyseg.nn, "ConvTranspose2d", raising=False)
    with pytest.raises(AttributeError, match="ConvTranspose2d"):
        pyseg.create_model("pets-encdec")


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.pyseg: list[str] = []
        self.forbidden: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if func.namespace == "pyseg":
            self.pyseg.append(name)
        elif ("upsample" in name or "unpool" in name or "deform" in name
              or (func.overloadpacket is torch.ops.aten.convolution and args[6])):
            self.forbidden.append(name)
        return func(*args, **(kwargs or {}))


def routed_modules(model) -> int:
    kinds = tuple(getattr(pyseg.nn, n) for n in ("ConvTranspose2d", "MaxUnpool2d", "Upsample",
                                                   "DeformConv2dPack", "ModulatedDeformConv2dPack")
                  if hasattr(pyseg.nn, n))
    return sum(isinstance(m, kinds) for m in model.modules())


# The pyseg.nn modules each model is built from.
USES = {
    "pets-encdec": ("ConvTranspose2d",),
    "fcn32s": ("ConvTranspose2d",), "fcn16s": ("ConvTranspose2d",), "fcn8s": ("ConvTranspose2d",),
    "deconvnet": ("ConvTranspose2d", "MaxUnpool2d"),
    "segnet": ("MaxUnpool2d",),
    "unet": ("ConvTranspose2d",),
    "unet-bilinear": ("Upsample",),
    "unet-deform": ("ConvTranspose2d", "ModulatedDeformConv2dPack"),
    "unet-deform-v1": ("ConvTranspose2d", "DeformConv2dPack"),
}


@pytest.mark.parametrize("key", SEGMENTATION)
def test_upsampling_goes_through_pyseg_ops(key, require_pyseg_ops):
    require_pyseg_ops(*USES[key])
    model = build(key).train()
    log = OpLog()
    with log:
        # batch 2: DeconvNet's fc6/fc7 batch norm sees a 1x1 map at this size
        out = model(torch.rand(2, 3, 40, 40))
        out.sum().backward()
    assert log.forbidden == [], log.forbidden
    for name in USES[key]:
        assert any(type(m) is getattr(pyseg.nn, name) for m in model.modules()), name
    # Each unpool/upsampling module runs at least once in the forward pass (the shared
    # unpool module of SegNet/DeconvNet runs once per stage).
    assert len([n for n in log.pyseg if "backward" not in n]) >= routed_modules(model)


@pytest.mark.slow
def test_torch_compile_smoke():
    model = pyseg.create_model("unet", num_classes=2, base_channels=4, depth=2).eval()
    x = torch.rand(1, 3, 24, 20)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", ["fcn32s", "fcn16s", "fcn8s", "unet", "segnet", "deconvnet"])
def test_output_matches_any_input_size(key):
    """Shapes only (meta tensors): every size from the smallest supported up to 100."""
    smallest = 32 if key in ("segnet", "deconvnet") else 1
    with torch.device("meta"):
        model = build(key).eval()
        for h in range(smallest, 101, 7):
            for w in (smallest, h, 101 - h + smallest):
                out = model(torch.empty(1, 3, h, w))
                assert out.shape == (1, 3, h, w), (h, w)
