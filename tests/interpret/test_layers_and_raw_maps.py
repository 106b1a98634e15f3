"""Lists of layers and raw (``normalize=False``) maps, for every method."""

from __future__ import annotations

import pytest
import torch
from interp_models import GapNet
from pyseg_plugins.interpreters.excitation_backprop import excitation_backprop, excitation_masses

from pyseg.interpret import InterpretError, combine_layer_maps, minmax_normalize, upsample_to

LAYER_METHODS = ["cam", "gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam",
                 "scorecam", "ablationcam", "excitation-backprop"]
OPTS = {"rise": {"num_samples": 64}, "hide-and-seek": {"num_samples": 64}}


@pytest.mark.parametrize("method", [*LAYER_METHODS, "rise", "hide-and-seek"])
def test_raw_map_is_the_unscaled_map(interpreters, gap_net, images, method):
    opts = OPTS.get(method, {})
    raw = interpreters[method](gap_net, images, target=1, normalize=False, **opts)
    heat = interpreters[method](gap_net, images, target=1, **opts)
    assert raw.shape == heat.shape == (3, 32, 32)
    assert not torch.allclose(raw.amax((1, 2)), torch.ones(3))  # really not scaled
    torch.testing.assert_close(minmax_normalize(raw), heat, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", LAYER_METHODS)
def test_one_layer_list_is_the_layer(interpreters, gap_net, images, method):
    one = interpreters[method](gap_net, images, target=2, layer="features.4")
    listed = interpreters[method](gap_net, images, target=2, layer=["features.4"])
    torch.testing.assert_close(one, listed)
    with pytest.raises(InterpretError, match="empty"):
        interpreters[method](gap_net, images, layer=[])


def test_two_layers_combined_as_documented(gap_net, images):
    """Excitation backprop at two layers: per-layer maps min-max scaled at their own size,
    upsampled, averaged, scaled again (the rule of pytorch-grad-cam, tested against it for the
    CAM family in test_against_grad_cam.py)."""
    names = ["features.0", "features.4"]
    got = excitation_backprop(gap_net, images, target=0, layer=names)
    per = [excitation_masses(gap_net, images, 0, layer=n)[n.replace(".", "_")].sum(1)
           for n in names]
    want = minmax_normalize(torch.stack(
        [upsample_to(minmax_normalize(m), (32, 32)) for m in per]).mean(0))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(combine_layer_maps(per, images), want)
    raw = excitation_backprop(gap_net, images, target=0, layer=names, normalize=False)
    torch.testing.assert_close(raw, torch.stack([upsample_to(m, (32, 32)) for m in per]).mean(0))


def test_cam_restricted_to_layer_list(interpreters, images):
    torch.manual_seed(0)
    model = GapNet()
    a = interpreters["cam"](model, images, layer=["features.3", "features.4"])
    torch.testing.assert_close(a, interpreters["cam"](model, images))
    with pytest.raises(InterpretError, match="features.3"):
        interpreters["cam"](model, images, layer=["features.3"])
