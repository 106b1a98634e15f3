"""Fixtures for the architecture tests.

TEMPORARY SHIM: the models are built on pyseg's operator modules (``pyseg.nn.ConvTranspose2d``,
``Upsample``, ``DeformConv2dPack``, ``ModulatedDeformConv2dPack``). Until those land, the
autouse fixture below stands in torch/torchvision modules for the *missing* ones only, so
the shape/gradient/state-dict tests can run; tests that check the routing through
``torch.ops.pyseg`` request ``real_pyseg_ops`` and skip while any stand-in is active.
Once every name in ``OPS`` exists in ``pyseg.nn``, the shim does nothing and can be
deleted together with ``_shims``.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import pyseg
from pyseg import registry

OPS = ("ConvTranspose2d", "MaxUnpool2d", "Upsample", "DeformConv2dPack",
       "ModulatedDeformConv2dPack")


def _shims() -> dict:
    import torchvision

    class DeformConv2dPack(nn.Module):
        """mmcv-style stand-in on torchvision.ops.deform_conv2d (tests only)."""

        modulated = False

        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                     dilation=1, groups=1, deform_groups=1, bias=True):
            super().__init__()
            k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
            self.stride, self.padding, self.dilation = stride, padding, dilation
            self.weight = nn.Parameter(torch.randn(out_channels, in_channels // groups, k, k) * 0.1)
            self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
            n = (3 if self.modulated else 2) * deform_groups * k * k
            self.conv_offset = nn.Conv2d(in_channels, n, k, stride, padding, dilation)
            self.n_offset = 2 * deform_groups * k * k

        def forward(self, x):
            o = self.conv_offset(x)
            offset, mask = o[:, : self.n_offset], None
            if self.modulated:
                mask = torch.sigmoid(o[:, self.n_offset:])
            return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, self.stride,
                                                 self.padding, self.dilation, mask)

    class ModulatedDeformConv2dPack(DeformConv2dPack):
        modulated = True

    return {"ConvTranspose2d": nn.ConvTranspose2d, "MaxUnpool2d": nn.MaxUnpool2d,
            "Upsample": nn.Upsample, "DeformConv2dPack": DeformConv2dPack,
            "ModulatedDeformConv2dPack": ModulatedDeformConv2dPack}


MISSING = [name for name in OPS if not hasattr(pyseg.nn, name)]


@pytest.fixture(autouse=True)
def _stand_in_for_missing_ops(monkeypatch):
    if MISSING:
        shims = _shims()
        for name in MISSING:
            monkeypatch.setattr(pyseg.nn, name, shims[name], raising=False)
    yield


@pytest.fixture
def require_pyseg_ops():
    """``require_pyseg_ops(*names)`` skips the test while any of those ``pyseg.nn`` modules
    is a test stand-in (fails instead with ``PYSEG_REQUIRE_ALL_OPS=1``)."""

    def require(*names: str) -> None:
        missing = [n for n in names if n in MISSING]
        if missing:
            if os.environ.get("PYSEG_REQUIRE_ALL_OPS") == "1":
                pytest.fail(f"pyseg.nn lacks {', '.join(missing)}")
            pytest.skip(f"pyseg.nn lacks {', '.join(missing)} (test stand-ins active)")

    return require


@pytest.fixture(scope="session", autouse=True)
def _strict_builtins():
    """The built-in plugins must load without a single failure."""
    old = os.environ.get("PYSEG_STRICT_PLUGINS")
    os.environ["PYSEG_STRICT_PLUGINS"] = "1"
    registry.reload()
    try:
        registry.plugins()
    finally:
        if old is None:
            del os.environ["PYSEG_STRICT_PLUGINS"]
        else:
            os.environ["PYSEG_STRICT_PLUGINS"] = old
    yield
