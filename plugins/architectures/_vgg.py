"""A VGG16 encoder with batch norm that keeps its max-pooling indices and pre-pool sizes,
for the unpooling decoders of DeconvNet and SegNet."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pyseg_plugins.architectures._common import scaled

# Convolutions per stage and their channels (VGG16).
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def conv_bn_relu(cin: int, cout: int, batch_norm: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm),
            *([nn.BatchNorm2d(cout)] if batch_norm else []), nn.ReLU(inplace=True)]


class VGGEncoder(nn.Module):
    """Five VGG16 stages (3x3 conv + BN + ReLU); each ends with a 2x2 max pool that returns
    its indices. ``forward`` returns the pooled output and, per stage, (indices, size of the
    pool's input) for the unpooling decoder (sizes make odd inputs round-trip exactly)."""

    def __init__(self, in_channels: int, width: float, batch_norm: bool = True) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = in_channels
        self.channels: list[int] = []
        for stage in VGG16_STAGES:
            layers: list[nn.Module] = []
            for c in stage:
                c = scaled(c, width)
                layers += conv_bn_relu(cin, c, batch_norm)
                cin = c
            self.stages.append(nn.Sequential(*layers))
            self.channels.append(cin)

    def forward(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, tuple[int, int]]]]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            size = (x.shape[-2], x.shape[-1])
            if min(size) < 2:
                raise ValueError(
                    f"input too small: a stage output is {size[0]}x{size[1]}, and the 2x2 "
                    "max pool needs at least 2x2 (use inputs of at least 32x32)"
                )
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            skips.append((idx, size))
        return x, skips
