"""Small configurations of every built-in architecture, and their torch.nn twins."""

from __future__ import annotations

import copy

import torch
from torch import nn

import pyseg

# key -> (architecture, keyword arguments, input size). Small, so each export and forward
# takes a fraction of a second.
CONFIGS: dict[str, tuple[str, dict, int]] = {
    "pets-encdec": ("pets-encdec", {}, 40),
    "fcn32s": ("fcn32s", {"width": 1 / 16}, 40),
    "fcn16s": ("fcn16s", {"width": 1 / 16}, 40),
    "fcn8s": ("fcn8s", {"width": 1 / 16}, 40),
    "deconvnet": ("deconvnet", {"width": 1 / 16}, 40),
    "segnet": ("segnet", {"width": 1 / 16}, 40),
    "unet": ("unet", {"base_channels": 4, "depth": 3}, 40),
    "unet-bilinear": ("unet", {"base_channels": 4, "depth": 3, "upsample": "bilinear"}, 40),
    "unet-deform": ("unet", {"base_channels": 4, "depth": 2, "deformable": True,
                             "deform_levels": 2}, 40),
    "unet-deform-v1": ("unet", {"base_channels": 4, "depth": 2, "deformable": "v1"}, 40),
    "small-convnet": ("small-convnet", {"input_size": 96}, 96),
    "mini-xception": ("mini-xception", {}, 96),
}


def build(key: str, seed: int = 0) -> tuple[nn.Module, int]:
    """The model of ``key`` (3 classes, random weights from ``seed``), and its input size.

    The offset predictors of the deformable layers start at zero; they get random weights
    here so that the samples move off the grid."""
    name, kwargs, size = CONFIGS[key]
    torch.manual_seed(seed)
    model = pyseg.create_model(name, num_classes=3, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, pyseg.nn.DeformConv2dPack):
                m.conv_offset.weight.normal_(0, 0.3)
                m.conv_offset.bias.normal_(0, 0.5)
    return model, size


def torch_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each pyseg.nn module that has a torch.nn counterpart
    replaced by it (same weights). Deformable convolutions have none and stay."""
    twin = copy.deepcopy(model)
    for parent in list(twin.modules()):
        for name, child in parent.named_children():
            if isinstance(child, pyseg.nn.ConvTranspose2d):
                child.__class__ = nn.ConvTranspose2d  # a subclass: same attributes and state
            elif isinstance(child, pyseg.nn.MaxUnpool2d):
                setattr(parent, name, nn.MaxUnpool2d(child.kernel_size, child.stride,
                                                     child.padding))
            elif isinstance(child, pyseg.nn.Upsample):
                setattr(parent, name, nn.Upsample(child.size, child.scale_factor, child.mode,
                                                  child.align_corners,
                                                  child.recompute_scale_factor))
    return twin
