"""pyseg.nn.convert + pyseg.kernels() on segmentation_models_pytorch's Unet and FPN
(``encoder_weights=None``): outputs and gradients against the unconverted network, and the
dispatch count (see tests/nn/networks.py for the references and tolerances)."""

from __future__ import annotations

import pytest

from tests.nn.networks import check_float64, check_network

smp = pytest.importorskip("segmentation_models_pytorch")

NETWORKS = {
    "unet": (lambda: smp.Unet("resnet18", encoder_weights=None, classes=3), []),
    # FPN's segmentation head upsamples with an nn.Upsample module: converted.
    "fpn": (lambda: smp.FPN("resnet18", encoder_weights=None, classes=3),
            ["segmentation_head.1"]),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_network(name):
    factory, converted_modules = NETWORKS[name]
    check_network(factory, converted_modules)


@pytest.mark.parametrize("name", NETWORKS)
def test_float64(name):
    check_float64(NETWORKS[name][0], 32)
