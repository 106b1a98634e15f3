"""pyseg.nn.convert + pyseg.kernels() on torchvision's segmentation networks (random weights):
outputs and gradients against the unconverted network, and the dispatch count (see
tests/nn/networks.py for the references and tolerances; the float64 comparison, costly
with these backbones, is in test_convert_smp.py and test_convert.py)."""

from __future__ import annotations

import pytest
import torchvision.models.segmentation as tvs

from tests.nn.networks import check_network

NETWORKS = {
    "fcn_resnet50": lambda: tvs.fcn_resnet50(weights=None, weights_backbone=None,
                                             num_classes=3),
    "deeplabv3_mobilenet_v3_large": lambda: tvs.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3),
    "lraspp_mobilenet_v3_large": lambda: tvs.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_network(name):
    # Every upsampling of these networks is an F.interpolate call: nothing to convert, the
    # mode routes them all.
    check_network(NETWORKS[name], converted_modules=[])

