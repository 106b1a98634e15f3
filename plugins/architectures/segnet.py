"""SegNet (Badrinarayanan, Kendall and Cipolla, TPAMI 2017)."""

from __future__ import annotations

from pyseg_plugins.architectures import _pretrained as pre
from pyseg_plugins.architectures._common import check_common
from pyseg_plugins.architectures._vgg import VGG16_STAGES, VGGEncoder, conv_bn_relu
from torch import Tensor, nn

import pyseg.nn as pnn


class SegNet(pre.PretrainedEncoderMixin, nn.Module):
    """VGG16 encoder (13 conv + BN + ReLU, five 2x2 max pools that keep their indices) and a
    mirrored decoder: each decoder stage max-unpools with the indices of its encoder stage
    (pyseg's ``MaxUnpool2d``), then applies 3x3 conv + BN + ReLU layers; the last decoder
    stage ends in a 3x3 convolution to ``num_classes`` (logits). Unpooling restores each
    pool's exact input size, so any input of at least 32x32 comes back at its own size.

    Args:
        num_classes: output channels. in_channels: input channels.
        width: channel multiplier (1.0 = the paper's VGG16 widths).
        batch_norm: batch norm after every convolution (the paper's choice).
        encoder_weights: a torchvision state_dict file matching ``batch_norm``: VGG16-BN
            (``vgg16_bn-6c64b313.pth``) with batch norm, VGG16 (``vgg16-397923af.pth``)
            without; or ``"torchvision"`` for that file in torch.hub's cache (never
            downloaded). Fills the 13 encoder convolutions (and batch norms). Needs
            ``width=1.0`` and ``in_channels=3``.
        freeze_encoder: freeze the encoder (the decoder stays trainable).
        input_norm: ``"imagenet"`` (ImageNet mean/std on [0, 1] RGB, what the pretrained
            weights expect) or ``"none"``; default: imagenet with ``encoder_weights``.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 batch_norm: bool = True, encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if encoder_weights is not None:
            pre.check_vgg16_options(width, in_channels)
        self.input_norm, self.normalize = pre.input_normalization(input_norm, encoder_weights,
                                                                  in_channels)
        self.encoder = VGGEncoder(in_channels, width, batch_norm)
        self.unpool = pnn.MaxUnpool2d(2, 2)
        channels = self.encoder.channels
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(VGG16_STAGES))):
            n = len(VGG16_STAGES[i])
            layers: list[nn.Module] = []
            for j in range(n):
                last = j == n - 1
                if last and i == 0:
                    layers.append(nn.Conv2d(channels[0], num_classes, 3, padding=1))
                else:
                    cout = channels[i - 1] if last else channels[i]
                    layers += conv_bn_relu(channels[i], cout, batch_norm)
            self.decoder.append(nn.Sequential(*layers))
        if encoder_weights is not None:
            state, source = pre.resolve_vgg16(encoder_weights, batch_norm)
            pre.fill_vgg16(pre.vgg16_targets(pre.vgg16_encoder_convs(self.encoder), batch_norm),
                           state, source, batch_norm)
        if freeze_encoder:
            self.set_encoder_frozen(True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: Tensor) -> Tensor:
        h, skips = self.encoder(self.normalize(x))
        for stage, (idx, size) in zip(self.decoder, reversed(skips)):
            h = stage(self.unpool(h, idx, output_size=size))
        return h
