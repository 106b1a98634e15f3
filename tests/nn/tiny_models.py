"""Small networks named by import path in the ``pyseg bench --model`` tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Decoder(nn.Module):
    """One module of each convertible kind plus a functional upsampling and one call pyseg
    does not take (a Lanczos interpolation)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = nn.Conv2d(8, classes, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.deconv(self.conv(x).relu())
        z = F.interpolate(self.head(self.dropout(self.up(y))), size=x.shape[-2:],
                          mode="bilinear")
        side = F.interpolate(z, scale_factor=0.5, mode="lanczos", antialias=True)
        return {"out": z, "side": side}


def decoder(classes: int = 3) -> nn.Module:
    return Decoder(classes)


def not_a_module() -> int:
    return 3
