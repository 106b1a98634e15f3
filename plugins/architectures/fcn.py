"""Fully convolutional networks (Long, Shelhamer and Darrell, CVPR 2015 / TPAMI 2017).

The layout follows the reference Caffe models (voc-fcn32s/16s/8s): a VGG16 backbone whose
first convolution pads by 100 and whose pools round up (``ceil_mode``), so that fc6 (a 7x7
convolution) produces an output for any input size; fc6/fc7 convolutionalized; 1x1 score
layers; upsampling by transposed convolutions initialized to bilinear interpolation; skip
fusion by addition; and crops at the reference offsets (5 and 9 for the pool4/pool3
scores, 19/27/31 for the final 32x/16x/8x output) that align the output with the input
pixel for pixel, for any input size.

As in the paper, the 2x upsamplings inside the net are learned and the final one is fixed
to bilinear interpolation (its weight has ``requires_grad=False``; pass
``learn_final_upsample=True`` to train it); the skip score layers start at zero so a
fresh FCN-16s/8s computes what its coarser parent computes.

``width`` multiplies every backbone channel count (VGG16 and fc6/fc7 widths at 1.0, the
paper's; e.g. 0.125 trains on a CPU). No ImageNet weights are bundled, but
``encoder_weights`` loads torchvision's VGG16 file: the 13 convolutions from its
``features`` and fc6/fc7 from its classifier's first two linear layers reshaped into the
7x7 and 1x1 convolutions (4096x25088 -> 4096x512x7x7, 4096x4096 -> 4096x4096x1x1), which is
how the paper convolutionalized VGG16. The score and upsampling layers start as above.

With ``encoder="timm:NAME"`` the factories (``fcn32s``/``fcn16s``/``fcn8s``) build a
:class:`TimmFCN` instead: the same head on a timm feature extractor.
"""

from __future__ import annotations

import itertools

from pyseg_plugins.architectures import _pretrained as pre
from pyseg_plugins.architectures._common import bilinear_kernel, check_common, scaled
from torch import Tensor, nn

import pyseg.nn as pnn

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class _FCNBase(pre.PretrainedEncoderMixin, nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float,
                 learn_final_upsample: bool, encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if encoder_weights is not None:
            pre.check_vgg16_options(width, in_channels)
        self.input_norm, self.normalize = pre.input_normalization(input_norm, encoder_weights,
                                                                  in_channels)
        self.num_classes = num_classes
        # VGG16 split into the stages whose outputs feed the skips.
        stages: list[list[nn.Module]] = [[]]
        cin, first = in_channels, True
        for v in VGG16:
            if v == "M":
                stages[-1].append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                stages.append([])
                continue
            c = scaled(v, width)
            stages[-1] += [nn.Conv2d(cin, c, 3, padding=100 if first else 1),
                           nn.ReLU(inplace=True)]
            cin, first = c, False
        stages.pop()  # the empty list after the last pool
        self.to_pool3 = nn.Sequential(*stages[0], *stages[1], *stages[2])
        self.to_pool4 = nn.Sequential(*stages[3])
        self.to_pool5 = nn.Sequential(*stages[4])
        fc = scaled(4096, width)
        self.fc = nn.Sequential(
            nn.Conv2d(cin, fc, 7), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
        )
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self._pool3_channels = scaled(256, width)
        self._pool4_channels = scaled(512, width)
        self._learn_final = learn_final_upsample
        if encoder_weights is not None:
            self._load_vgg16(encoder_weights)
        if freeze_encoder:
            self.set_encoder_frozen(True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.to_pool3, self.to_pool4, self.to_pool5]

    def _load_vgg16(self, encoder_weights) -> None:
        state, source = pre.resolve_vgg16(encoder_weights, batch_norm=False)
        convs = [pair for m in self.encoder_modules() for pair in pre.vgg16_encoder_convs(m)]
        fc6, fc7 = self.fc[0], self.fc[3]
        pre.fill_vgg16(pre.vgg16_targets(convs, batch_norm=False) + [
            (fc6.weight, "classifier.0.weight", True), (fc6.bias, "classifier.0.bias", False),
            (fc7.weight, "classifier.3.weight", True), (fc7.bias, "classifier.3.bias", False),
        ], state, source, batch_norm=False)

    def _upsample(self, kernel_size: int, stride: int, learnable: bool = True) -> nn.Module:
        layer = pnn.ConvTranspose2d(self.num_classes, self.num_classes, kernel_size,
                                    stride=stride, bias=False)
        layer.weight.data.copy_(bilinear_kernel(self.num_classes, kernel_size))
        layer.weight.requires_grad_(learnable)
        return layer

    def _skip_score(self, channels: int) -> nn.Conv2d:
        score = nn.Conv2d(channels, self.num_classes, 1)
        nn.init.zeros_(score.weight)
        nn.init.zeros_(score.bias)
        return score

    @staticmethod
    def _crop(x: Tensor, offset: int, like_h: int, like_w: int) -> Tensor:
        return x[..., offset: offset + like_h, offset: offset + like_w]


class FCN32s(_FCNBase):
    """FCN-32s: VGG16 + fc6/fc7 + score, one 32x bilinear transposed convolution.

    Args:
        num_classes: output channels. in_channels: input channels.
        width: backbone channel multiplier (1.0 = the paper). dropout: after fc6 and fc7.
        learn_final_upsample: train the final upsampling (fixed bilinear by default).
        encoder_weights: a torchvision VGG16 state_dict file (``vgg16-397923af.pth``), or
            ``"torchvision"`` for that file in torch.hub's cache (never downloaded); fills
            the 13 convolutions and fc6/fc7. Needs ``width=1.0`` and ``in_channels=3``.
        freeze_encoder: freeze the 13 VGG16 convolutions (fc6/fc7 stay trainable).
        input_norm: ``"imagenet"`` (subtract ImageNet's mean, divide by its std: what the
            pretrained weights expect of [0, 1] RGB input) or ``"none"``; default: imagenet
            with ``encoder_weights``, none without.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.5, learn_final_upsample: bool = False,
                 encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__(num_classes, in_channels, width, dropout, learn_final_upsample,
                         encoder_weights, freeze_encoder, input_norm)
        self.upscore = self._upsample(64, 32, learn_final_upsample)

    def forward(self, x: Tensor) -> Tensor:
        h = self.to_pool5(self.to_pool4(self.to_pool3(self.normalize(x))))
        h = self.upscore(self.score_fr(self.fc(h)))
        return self._crop(h, 19, x.shape[-2], x.shape[-1])


class FCN16s(_FCNBase):
    """FCN-16s: FCN-32s's scores upsampled 2x (learned), plus pool4 scores, then 16x.

    Arguments as :class:`FCN32s`.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.5, learn_final_upsample: bool = False,
                 encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__(num_classes, in_channels, width, dropout, learn_final_upsample,
                         encoder_weights, freeze_encoder, input_norm)
        self.score_pool4 = self._skip_score(self._pool4_channels)
        self.upscore2 = self._upsample(4, 2)
        self.upscore16 = self._upsample(32, 16, learn_final_upsample)

    def forward(self, x: Tensor) -> Tensor:
        pool4 = self.to_pool4(self.to_pool3(self.normalize(x)))
        up2 = self.upscore2(self.score_fr(self.fc(self.to_pool5(pool4))))
        h = up2 + self._crop(self.score_pool4(pool4), 5, up2.shape[-2], up2.shape[-1])
        return self._crop(self.upscore16(h), 27, x.shape[-2], x.shape[-1])


class FCN8s(_FCNBase):
    """FCN-8s: FCN-16s's fused scores upsampled 2x again, plus pool3 scores, then 8x.

    Arguments as :class:`FCN32s`.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.5, learn_final_upsample: bool = False,
                 encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__(num_classes, in_channels, width, dropout, learn_final_upsample,
                         encoder_weights, freeze_encoder, input_norm)
        self.score_pool4 = self._skip_score(self._pool4_channels)
        self.score_pool3 = self._skip_score(self._pool3_channels)
        self.upscore2 = self._upsample(4, 2)
        self.upscore_pool4 = self._upsample(4, 2)
        self.upscore8 = self._upsample(16, 8, learn_final_upsample)

    def forward(self, x: Tensor) -> Tensor:
        pool3 = self.to_pool3(self.normalize(x))
        pool4 = self.to_pool4(pool3)
        up2 = self.upscore2(self.score_fr(self.fc(self.to_pool5(pool4))))
        h = up2 + self._crop(self.score_pool4(pool4), 5, up2.shape[-2], up2.shape[-1])
        up4 = self.upscore_pool4(h)
        h = up4 + self._crop(self.score_pool3(pool3), 9, up4.shape[-2], up4.shape[-1])
        return self._crop(self.upscore8(h), 31, x.shape[-2], x.shape[-1])


class TimmFCN(pre.PretrainedEncoderMixin, nn.Module):
    """The FCN head on a timm feature extractor (``encoder="timm:NAME"``).

    1x1 score layers on the deepest feature map (FCN-32s) and, with ``skips`` 1 or 2, on the
    one or two maps before it (FCN-16s/8s, strides 16 and 8 for a ResNet), fused by addition
    after learned 2x upsamplings (pyseg's ``ConvTranspose2d``, initialized to bilinear);
    the skip scores start at zero, as in FCN. A fixed bilinear upsampling (pyseg's
    ``Upsample``) returns to the input size. Inputs are zero-padded (after normalization)
    to a multiple of the deepest stride and the output cropped back.

    Args:
        num_classes: output channels. in_channels: input channels.
        encoder: ``"timm:NAME"``. skips: 0 (32s), 1 (16s) or 2 (8s).
        encoder_weights, freeze_encoder, input_norm: as :class:`pyseg_plugins.
            architectures.unet.TimmUNet`.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3,
                 encoder: str = "timm:resnet34", skips: int = 2, encoder_weights=None,
                 freeze_encoder: bool = False, input_norm: str | None = None) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        self.input_norm, self.normalize = pre.input_normalization(input_norm, encoder_weights,
                                                                  in_channels)
        self.encoder = pre.timm_features(encoder, in_channels)
        chans = list(self.encoder.feature_info.channels())
        strides = list(self.encoder.feature_info.reduction())
        if skips not in (0, 1, 2) or skips >= len(chans):
            raise ValueError(f"skips must be 0, 1 or 2 (and fewer than the encoder's "
                             f"{len(chans)} feature maps), got {skips}")
        used = list(range(len(chans) - 1 - skips, len(chans)))  # feature maps, shallow first
        for a, b in itertools.pairwise(used):
            if strides[b] != 2 * strides[a]:
                raise ValueError(f"encoder {encoder!r}: the FCN skips need feature strides "
                                 f"that double, got {[strides[i] for i in used]}")
        self.skips = skips
        self.stride = strides[-1]
        self.scores = nn.ModuleList(nn.Conv2d(chans[i], num_classes, 1) for i in used)
        for score in list(self.scores)[:-1]:  # the skips: zero, so they start as a no-op
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        self.ups = nn.ModuleList()
        for _ in range(skips):
            up = pnn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1,
                                     bias=False)
            up.weight.data.copy_(bilinear_kernel(num_classes, 4))
            self.ups.append(up)
        self.final_up = pnn.Upsample(scale_factor=strides[used[0]], mode="bilinear",
                                     align_corners=False)
        if encoder_weights is not None:
            pre.load_timm(self.encoder, encoder_weights, encoder)
        if freeze_encoder:
            self.set_encoder_frozen(True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = pre.pad_to_multiple(self.normalize(x), self.stride)
        feats = self.encoder(x)[-1 - self.skips:]
        y = self.scores[-1](feats[-1])
        for up, score, feat in zip(self.ups, reversed(self.scores[:-1]), reversed(feats[:-1])):
            y = up(y) + score(feat)
        return self.final_up(y)[..., :h, :w]


def _create_fcn(cls: type, skips: int, encoder: str | None, **kwargs) -> nn.Module:
    if encoder is None:
        return cls(**kwargs)
    defaults = dict(width=1.0, dropout=0.5, learn_final_upsample=False)
    given = [k for k, v in defaults.items() if kwargs.pop(k) != v]
    if given:
        raise ValueError(f"with encoder={encoder!r} the VGG16 options do not apply: leave "
                         f"out {', '.join(given)}")
    return TimmFCN(encoder=encoder, skips=skips, **kwargs)


def create_fcn32s(num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                  dropout: float = 0.5, learn_final_upsample: bool = False,
                  encoder_weights=None, freeze_encoder: bool = False,
                  input_norm: str | None = None, encoder: str | None = None) -> nn.Module:
    """The ``fcn32s`` architecture: :class:`FCN32s`, or :class:`TimmFCN` (no skips) with
    ``encoder="timm:NAME"``. Arguments as those classes."""
    return _create_fcn(FCN32s, 0, encoder, **{k: v for k, v in locals().items()
                                              if k != "encoder"})


def create_fcn16s(num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                  dropout: float = 0.5, learn_final_upsample: bool = False,
                  encoder_weights=None, freeze_encoder: bool = False,
                  input_norm: str | None = None, encoder: str | None = None) -> nn.Module:
    """The ``fcn16s`` architecture: :class:`FCN16s`, or :class:`TimmFCN` (one skip) with
    ``encoder="timm:NAME"``. Arguments as those classes."""
    return _create_fcn(FCN16s, 1, encoder, **{k: v for k, v in locals().items()
                                              if k != "encoder"})


def create_fcn8s(num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.5, learn_final_upsample: bool = False,
                 encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None, encoder: str | None = None) -> nn.Module:
    """The ``fcn8s`` architecture: :class:`FCN8s`, or :class:`TimmFCN` (two skips) with
    ``encoder="timm:NAME"``. Arguments as those classes."""
    return _create_fcn(FCN8s, 2, encoder, **{k: v for k, v in locals().items()
                                             if k != "encoder"})
