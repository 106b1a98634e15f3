"""DeconvNet (Noh, Hong and Han, "Learning Deconvolution Network for Semantic
Segmentation", ICCV 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from pyseg_plugins.architectures import _pretrained as pre
from pyseg_plugins.architectures._common import check_common, scaled
from pyseg_plugins.architectures._vgg import VGG16_STAGES, VGGEncoder
from torch import Tensor, nn

import pyseg.nn as pnn


def _deconv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [pnn.ConvTranspose2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class DeconvNet(pre.PretrainedEncoderMixin, nn.Module):
    """VGG16 encoder (with batch norm) -> fc6 (7x7 conv) -> fc7 (1x1) -> a mirrored
    deconvolution network: a 7x7 transposed convolution undoes fc6, then per stage a
    max-unpool with the indices stored by the matching pool and 3x3 transposed
    convolutions (+ BN + ReLU), and a 1x1 score layer.

    At the paper's 224x224 input pool5 is 7x7 and fc6 maps it to 1x1. For any input size
    the network keeps that meaning: pool5 maps smaller than 7 are zero-padded (at the
    bottom/right; they follow a ReLU so zero is neutral) and cropped back after the fc6
    transposed convolution; unpooling restores each pool's exact input size, so the
    output always matches the input size. Inputs must be at least 32x32. Below 256x256 the
    fc6/fc7 maps are 1x1, so training (batch norm statistics) needs batches of 2 or more.

    Args:
        num_classes: output channels. in_channels: input channels.
        width: channel multiplier (1.0 = the paper's VGG16 and 4096-wide fc6/fc7).
        dropout: after fc6 and fc7 (0 disables).
        encoder_weights: a torchvision VGG16-BN state_dict file (``vgg16_bn-6c64b313.pth``:
            the encoder has batch norm), or ``"torchvision"`` for that file in torch.hub's
            cache (never downloaded). Fills the 13 convolutions and their batch norms, and
            fc6/fc7's weights from the classifier's first two linear layers reshaped to 7x7
            and 1x1 convolutions; their biases are not used, since here a batch norm
            follows fc6 and fc7 and its shift takes the place of a bias. Needs
            ``width=1.0`` and ``in_channels=3``.
        freeze_encoder: freeze the VGG16 encoder (fc6/fc7 and the decoder stay trainable).
        input_norm: ``"imagenet"`` (ImageNet mean/std on [0, 1] RGB, what the pretrained
            weights expect) or ``"none"``; default: imagenet with ``encoder_weights``.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: float = 1.0,
                 dropout: float = 0.5, encoder_weights=None, freeze_encoder: bool = False,
                 input_norm: str | None = None) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        if encoder_weights is not None:
            pre.check_vgg16_options(width, in_channels)
        self.input_norm, self.normalize = pre.input_normalization(input_norm, encoder_weights,
                                                                  in_channels)
        self.encoder = VGGEncoder(in_channels, width)
        c5 = self.encoder.channels[-1]
        fc = scaled(4096, width)
        self.fc = nn.Sequential(
            nn.Conv2d(c5, fc, 7, bias=False), nn.BatchNorm2d(fc), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(fc, fc, 1, bias=False), nn.BatchNorm2d(fc), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.fc6_deconv = nn.Sequential(
            pnn.ConvTranspose2d(fc, c5, 7, bias=False), nn.BatchNorm2d(c5), nn.ReLU(inplace=True)
        )
        self.unpool = pnn.MaxUnpool2d(2, 2)
        # Decoder stages mirror the encoder: stage 5 first; the last deconv of each stage
        # maps to the channels of the stage below (as in the paper's deconv5_3 -> 512 ...).
        self.decoder = nn.ModuleList()
        channels = self.encoder.channels
        for i in reversed(range(len(VGG16_STAGES))):
            n = len(VGG16_STAGES[i])
            cout_last = channels[i - 1] if i > 0 else channels[0]
            layers: list[nn.Module] = []
            for j in range(n):
                cout = cout_last if j == n - 1 else channels[i]
                layers += _deconv_bn_relu(channels[i], cout)
            self.decoder.append(nn.Sequential(*layers))
        self.score = nn.Conv2d(channels[0], num_classes, 1)
        if encoder_weights is not None:
            state, source = pre.resolve_vgg16(encoder_weights, batch_norm=True)
            targets = pre.vgg16_targets(pre.vgg16_encoder_convs(self.encoder), batch_norm=True)
            targets += [(self.fc[0].weight, "classifier.0.weight", True),
                        (self.fc[4].weight, "classifier.3.weight", True)]
            pre.fill_vgg16(targets, state, source, batch_norm=True)
        if freeze_encoder:
            self.set_encoder_frozen(True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: Tensor) -> Tensor:
        h, skips = self.encoder(self.normalize(x))
        ph, pw = h.shape[-2:]
        if ph < 7 or pw < 7:
            h = F.pad(h, (0, max(0, 7 - pw), 0, max(0, 7 - ph)))
        h = self.fc6_deconv(self.fc(h))[..., :ph, :pw]
        for stage, (idx, size) in zip(self.decoder, reversed(skips)):
            h = stage(self.unpool(h, idx, output_size=size))
        return self.score(h)
