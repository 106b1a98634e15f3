"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyseg_plugins.architectures._common import check_common
from torch import Tensor, nn

import pyseg.nn as pnn


class DoubleConv(nn.Sequential):
    """Two (3x3 conv [+ BN] + ReLU); ``deform`` swaps the convolutions for pyseg's
    deformable ones (``"v1"``: DeformConv2dPack, ``"v2"``: ModulatedDeformConv2dPack)."""

    def __init__(self, cin: int, cout: int, batch_norm: bool, deform: str | None = None) -> None:
        layers: list[nn.Module] = []
        for c_in in (cin, cout):
            if deform is None:
                conv = nn.Conv2d(c_in, cout, 3, padding=1, bias=not batch_norm)
            else:
                cls = pnn.DeformConv2dPack if deform == "v1" else pnn.ModulatedDeformConv2dPack
                conv = cls(c_in, cout, 3, padding=1, bias=not batch_norm)
            layers += [conv, *([nn.BatchNorm2d(cout)] if batch_norm else []),
                       nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net: ``depth`` levels of two 3x3 conv (+BN) + ReLU and a 2x2 max pool, a
    bottleneck, then per level an upsampling that halves the channels, concatenation with
    the encoder's features at that level, and two 3x3 convs; a 1x1 conv gives the logits.

    Differences from the paper, on purpose: the convolutions are padded (``padding=1``) so
    the output has the input's size instead of a smaller valid region, and inputs whose
    sides are not multiples of ``2**depth`` are zero-padded at the bottom/right up to the
    next multiple and the output is cropped back, so every size works and every skip
    concatenation lines up exactly.

    Args:
        num_classes: output channels. in_channels: input channels.
        base_channels: channels of the first level (64 in the paper); doubled per level.
        depth: number of 2x downsamplings (4 in the paper).
        batch_norm: batch norm after every convolution (not in the paper; default on).
        upsample: ``"transpose"`` (2x2 stride-2 transposed conv, the paper) or
            ``"bilinear"`` (2x bilinear upsampling + 1x1 conv).
        deformable: ``False``; ``True`` or ``"v2"`` for modulated deformable convolutions
            (DCNv2), ``"v1"`` for plain ones, in the ``deform_levels`` deepest levels
            (the bottleneck counts as one).
        deform_levels: how many of the deepest levels use deformable convolutions.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, base_channels: int = 64,
                 depth: int = 4, batch_norm: bool = True, upsample: str = "transpose",
                 deformable: bool | str = False, deform_levels: int = 1) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}")
        if deformable is True:
            deform = "v2"
        elif deformable is False or deformable is None:
            deform = None
        elif deformable in ("v1", "v2"):
            deform = deformable
        else:
            raise ValueError(f"deformable must be False, True, 'v1' or 'v2', got {deformable!r}")
        if deform is not None and not 1 <= deform_levels <= depth + 1:
            raise ValueError(f"deform_levels must be in [1, {depth + 1}], got {deform_levels}")
        self.depth = depth
        chans = [base_channels * 2**i for i in range(depth + 1)]

        def level_deform(level: int) -> str | None:
            return deform if deform is not None and level > depth - deform_levels else None

        self.down = nn.ModuleList()
        cin = in_channels
        for level in range(depth):
            self.down.append(DoubleConv(cin, chans[level], batch_norm, level_deform(level)))
            cin = chans[level]
        self.bottleneck = DoubleConv(cin, chans[depth], batch_norm, level_deform(depth))
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for level in reversed(range(depth)):
            c_hi, c = chans[level + 1], chans[level]
            if upsample == "transpose":
                up: nn.Module = pnn.ConvTranspose2d(c_hi, c, 2, stride=2)
            else:
                up = nn.Sequential(
                    pnn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(c_hi, c, 1),
                )
            self.ups.append(up)
            self.up_convs.append(DoubleConv(2 * c, c, batch_norm))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], dim=1))
        return self.head(x)[..., :h, :w]
