"""Every interpreter on every built-in architecture (segmentation networks and classifiers)."""

from __future__ import annotations

import pytest
import torch
from pyseg_plugins.interpreters.excitation_backprop import excitation_masses
from torch import nn

import pyseg
from pyseg.interpret import InterpretError

ARCHS = pyseg.list_architectures()
# The smallest input each architecture accepts cheaply (small-convnet is built for 180x180).
SIZE = {"small-convnet": 180}
GAP_LINEAR = {"mini-xception", "stn"}  # the built-ins that end in global average pooling + linear
# (stn: a spatial transformer in front of mini-xception)
# ACoL (acol) erases by the arg-max class's map and takes an optional label input: torch.fx
# traces no such model for excitation backprop, which says so (its own `acol` map is tested in
# test_acol.py and test_acol_training.py).
NO_EXCITATION = {"acol"}
# The VGG-based networks at 1/16 width: same layers, a fraction of the time.
NARROW = {name: {"width": 1 / 16} for name in ("fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet")}


def _model_and_images(name: str):
    arch = pyseg.get_architecture(name)
    segmentation = "segmentation" in arch.tasks
    torch.manual_seed(0)
    model = pyseg.create_model(name, num_classes=3 if segmentation else 2,
                               **NARROW.get(name, {})).eval()
    size = SIZE.get(name, 64)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    # Segmentation target: class 1 over the whole image (an untrained net may predict
    # class 1 nowhere, and the default mask would then be empty).
    target = (1, torch.ones(2, size, size, dtype=torch.bool)) if segmentation else None
    return model, images, target


def test_the_list_is_complete():
    assert {"unet", "segnet", "deconvnet", "fcn8s", "small-convnet", "mini-xception"} <= set(ARCHS)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "excitation-backprop", "cam", "eigencam"])
def test_method_on_builtin(name, method):
    model, images, target = _model_and_images(name)
    interp = pyseg.get_interpreter(method)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if method == "cam" and name not in GAP_LINEAR:
        with pytest.raises(InterpretError, match="gradcam"):
            interp(model, images, target=target)
        return
    if method == "excitation-backprop" and name in NO_EXCITATION:
        with pytest.raises(InterpretError, match="torch.fx"):
            interp(model, images, target=target)
        return
    maps = interp(model, images, target=target)
    assert maps.shape == (2, *images.shape[-2:])
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# stn's first convolution (in module order) is its localization network's, which the class
# score reaches only through the affine parameters (grid_sample's grid), not through the
# activations that excitation backprop follows.
@pytest.mark.parametrize("name", sorted(set(ARCHS) - NO_EXCITATION - {"stn"}))
def test_excitation_mass_reaches_the_first_conv(name):
    """Down to the first convolution the winning probability passes every layer type of the
    zoo (max pooling with indices, max unpooling, transposed convs, skip concatenations,
    padding, upsampling) and is conserved. (At the output layer an output unit that no input
    excites positively keeps its share: there the sum may drop below one.)"""
    model, images, target = _model_and_images(name)
    first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    masses = list(excitation_masses(model, images, target, layer=first).values())
    below_output, p = masses[1].flatten(1).sum(1), masses[-1]
    assert (p >= 0).all()
    assert (below_output > 0.5).all() and (below_output <= 1 + 1e-5).all()
    torch.testing.assert_close(p.flatten(1).sum(1), below_output, atol=1e-4, rtol=1e-4)
