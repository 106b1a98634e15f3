"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015) and its 3-D form (Cicek et al., MICCAI
2016): ``unet`` with ``dims=3``."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from pyseg_plugins.architectures import _pretrained as pre
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
        x = pre.pad_to_multiple(x, 2**self.depth)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], dim=1))
        return self.head(x)[..., :h, :w]


class DoubleConv3d(nn.Sequential):
    """Two (3x3x3 conv [+ BN] + ReLU), the 3-D :class:`DoubleConv`."""

    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c_in in (cin, cout):
            layers += [nn.Conv3d(c_in, cout, 3, padding=1, bias=not batch_norm),
                       *([nn.BatchNorm3d(cout)] if batch_norm else []), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet3d(nn.Module):
    """3-D U-Net (Cicek et al., MICCAI 2016) on volumes ``(N, C, D, H, W)``: :class:`UNet`
    with 3x3x3 convolutions (torch's ``Conv3d`` / ``BatchNorm3d``), 2x2x2 max pooling and
    pyseg's 3-D operators on the way up. Padded convolutions; volumes whose sides are not
    multiples of ``2**depth`` are zero-padded at the far end of each axis and the output
    cropped back, so every size works.

    Args:
        num_classes: output channels. in_channels: input channels.
        base_channels: channels of the first level (32 in the paper); doubled per level.
        depth: number of 2x downsamplings (3 in the paper).
        batch_norm: batch norm after every convolution (as in the paper).
        upsample: ``"transpose"`` (2x2x2 stride-2 :class:`pyseg.nn.ConvTranspose3d`, the
            paper) or ``"unpool"`` (:class:`pyseg.nn.MaxUnpool3d` with the encoder's
            pooling indices, SegNet-style, then a 1x1x1 conv that halves the channels).

    Raises:
        ValueError: a bad ``depth``, ``base_channels`` or ``upsample``.

    Example::

        >>> from pyseg_plugins.architectures.unet import UNet3d
        >>> net = UNet3d(num_classes=3, in_channels=1, base_channels=4, depth=2)
        >>> net(torch.randn(1, 1, 6, 9, 8)).shape
        torch.Size([1, 3, 6, 9, 8])
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 1, base_channels: int = 32,
                 depth: int = 3, batch_norm: bool = True, upsample: str = "transpose") -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if upsample not in ("transpose", "unpool"):
            raise ValueError(f"upsample must be 'transpose' or 'unpool' for dims=3, got {upsample!r}")
        self.depth = depth
        self.upsample = upsample
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for level in range(depth):
            self.down.append(DoubleConv3d(cin, chans[level], batch_norm))
            cin = chans[level]
        self.bottleneck = DoubleConv3d(cin, chans[depth], batch_norm)
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        self.unpool = pnn.MaxUnpool3d(2)
        for level in reversed(range(depth)):
            c_hi, c = chans[level + 1], chans[level]
            up: nn.Module = (pnn.ConvTranspose3d(c_hi, c, 2, stride=2) if upsample == "transpose"
                             else nn.Conv3d(c_hi, c, 1))
            self.ups.append(up)
            self.up_convs.append(DoubleConv3d(2 * c, c, batch_norm))
        self.head = nn.Conv3d(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"UNet3d expects (N, C, D, H, W) volumes, got shape {list(x.shape)}")
        d, h, w = x.shape[-3:]
        m = 2**self.depth
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m, 0, (-d) % m))
        skips, indices = [], []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x, idx = F.max_pool3d(x, 2, return_indices=True)
            indices.append(idx)
        x = self.bottleneck(x)
        for up, conv, skip, idx in zip(self.ups, self.up_convs, reversed(skips), reversed(indices)):
            if self.upsample == "transpose":
                x = up(x)
            else:  # halve the channels, then put each value back where the pool found it
                x = self.unpool(up(x), idx, output_size=skip.shape[-3:])
            x = conv(torch.cat([skip, x], dim=1))
        return self.head(x)[..., :d, :h, :w]


class TimmUNet(pre.PretrainedEncoderMixin, nn.Module):
    """U-Net decoder on a timm feature extractor (``encoder="timm:NAME"``).

    The encoder is ``timm.create_model(NAME, features_only=True, pretrained=False)``; its
    feature maps (e.g. strides 2, 4, 8, 16, 32 for a ResNet) are the skips. From the deepest
    one up, each level upsamples to the next feature's stride (pyseg's ``ConvTranspose2d``,
    or ``Upsample`` + 1x1 conv), concatenates that feature and applies two 3x3 convs with
    the feature's channels; a last upsampling to the input resolution, two 3x3 convs and a
    1x1 score layer give the logits. Inputs are zero-padded (after normalization) to a
    multiple of the deepest stride and the output cropped back, so every size works.

    Args:
        num_classes: output channels. in_channels: input channels.
        encoder: ``"timm:NAME"``, any timm model that supports ``features_only``.
        encoder_weights: a file with that timm model's state_dict (``.pth``/``.bin`` saved
            by ``torch.save``, or ``.safetensors``, as timm's hub files are); the
            classifier head in it is not used. Every tensor of the feature extractor must
            be there with its shape.
        freeze_encoder: freeze the timm encoder (its batch norms keep their statistics).
        batch_norm: batch norm in the decoder's convolutions.
        upsample: ``"transpose"`` or ``"bilinear"``, as :class:`UNet`.
        input_norm: ``"imagenet"`` (mean/std on [0, 1] RGB, what ImageNet weights expect)
            or ``"none"``; default: imagenet with ``encoder_weights``, none without.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, encoder: str = "timm:resnet34",
                 encoder_weights=None, freeze_encoder: bool = False, batch_norm: bool = True,
                 upsample: str = "transpose", input_norm: str | None = None) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"upsample must be 'transpose' or 'bilinear', got {upsample!r}")
        self.input_norm, self.normalize = pre.input_normalization(input_norm, encoder_weights,
                                                                  in_channels)
        self.encoder = pre.timm_features(encoder, in_channels)
        chans = list(self.encoder.feature_info.channels())
        strides = [1, *self.encoder.feature_info.reduction()]
        if any(b % a or b < a for a, b in itertools.pairwise(strides)):
            raise ValueError(f"encoder {encoder!r}: feature strides {strides[1:]} must each "
                             "be a multiple of the one before")
        self.stride = strides[-1]

        def up(cin: int, cout: int, factor: int) -> nn.Module:
            if factor == 1:
                return nn.Conv2d(cin, cout, 1)
            if upsample == "transpose":
                return pnn.ConvTranspose2d(cin, cout, factor, stride=factor)
            return nn.Sequential(pnn.Upsample(scale_factor=factor, mode="bilinear",
                                              align_corners=False), nn.Conv2d(cin, cout, 1))

        # Level i joins feature i (stride strides[i + 1]) with the upsampled deeper map.
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        c_hi = chans[-1]
        for i in reversed(range(len(chans) - 1)):
            self.ups.append(up(c_hi, chans[i], strides[i + 2] // strides[i + 1]))
            self.up_convs.append(DoubleConv(2 * chans[i], chans[i], batch_norm))
            c_hi = chans[i]
        c_out = max(16, c_hi // 2)
        self.final_up = up(c_hi, c_out, strides[1])
        self.final_conv = DoubleConv(c_out, c_out, batch_norm)
        self.head = nn.Conv2d(c_out, num_classes, 1)
        if encoder_weights is not None:
            pre.load_timm(self.encoder, encoder_weights, encoder)
        if freeze_encoder:
            self.set_encoder_frozen(True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pre.pad_to_multiple(self.normalize(x), self.stride)
        feats = self.encoder(x)
        y = feats[-1]
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(feats[:-1])):
            y = conv(torch.cat([skip, up(y)], dim=1))
        y = self.final_conv(self.final_up(y))
        return self.head(y)[..., :h, :w]


def create_unet(num_classes: int = 3, in_channels: int = 3, base_channels: int | None = None,
                depth: int | None = None, batch_norm: bool = True, upsample: str = "transpose",
                deformable: bool | str = False, deform_levels: int = 1,
                encoder: str | None = None, encoder_weights=None, freeze_encoder: bool = False,
                input_norm: str | None = None, dims: int = 2) -> nn.Module:
    """The ``unet`` architecture: :class:`UNet` (its own encoder, ``base_channels`` 64 and
    ``depth`` 4 by default), or with ``encoder="timm:NAME"`` a :class:`TimmUNet`, whose
    encoder may take pretrained weights (``encoder_weights``), be frozen
    (``freeze_encoder``) and normalize its input (``input_norm``). ``dims=3`` gives the 3-D
    U-Net for volumes, :class:`UNet3d` (``base_channels`` 32 and ``depth`` 3 by default;
    ``upsample`` ``"transpose"`` or ``"unpool"``; no deformable or timm options).

    Raises:
        ValueError: pretrained options without a timm encoder, or options of the plain
            U-Net's encoder (``base_channels``, ``depth``, ``deformable``) with one, or
            2-D-only options with ``dims=3``, or ``dims`` other than 2 and 3.
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    if dims == 3:
        two_d_only = [name for name, v in (("deformable", deformable or None),
                                            ("encoder", encoder),
                                            ("encoder_weights", encoder_weights),
                                            ("freeze_encoder", freeze_encoder or None),
                                            ("input_norm", input_norm)) if v is not None]
        if two_d_only:
            raise ValueError(f"dims=3 has no {', '.join(two_d_only)} (2-D U-Net options)")
        return UNet3d(num_classes, in_channels, 32 if base_channels is None else base_channels,
                      3 if depth is None else depth, batch_norm, upsample)
    if encoder is None:
        if encoder_weights is not None or freeze_encoder or input_norm not in (None, "none"):
            raise ValueError("unet's own encoder takes no pretrained weights: pass "
                             "encoder='timm:NAME' (e.g. 'timm:resnet34') for encoder_weights, "
                             "freeze_encoder or input_norm")
        return UNet(num_classes, in_channels, 64 if base_channels is None else base_channels,
                    4 if depth is None else depth, batch_norm, upsample, deformable,
                    deform_levels)
    given = [name for name, v in (("base_channels", base_channels), ("depth", depth),
                                  ("deformable", deformable or None)) if v is not None]
    if given:
        raise ValueError(f"with encoder={encoder!r} the encoder sets the levels and widths: "
                         f"leave out {', '.join(given)}")
    return TimmUNet(num_classes, in_channels, encoder, encoder_weights, freeze_encoder,
                    batch_norm, upsample, input_norm)
