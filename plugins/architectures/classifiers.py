"""The two image classifiers of "Deep Learning with Python" (2nd ed.), used with the
class-activation-map interpreters."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pyseg_plugins.architectures._common import Rescale, SameConv2d, check_common, keras_same_pad


class SmallConvNet(nn.Module):
    """The book's cats-vs-dogs convnet (ch. 8): Rescaling, five 3x3 'valid' convs with
    32, 64, 128, 256, 256 channels and ReLU, a 2x2 max pool after each of the first four,
    flatten, and a dense layer. With ``num_classes=1`` (one logit, the book's sigmoid is in
    the loss) at 180x180 it has the book's 991,041 parameters.

    Args:
        num_classes: outputs of the dense layer (1 = binary, logit).
        in_channels: input channels.
        input_size: the (square) input size the dense layer is sized for (180 in the
            book); other sizes raise in ``forward``.
        rescale: input multiplier (the book's 1/255 for raw pixels; default 1.0 because
            pyseg's datasets give [0, 1] images).
    """

    def __init__(self, num_classes: int = 1, in_channels: int = 3, input_size: int = 180,
                 rescale: float = 1.0) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        self.rescale = Rescale(rescale)
        layers: list[nn.Module] = []
        cin, size = in_channels, input_size
        for i, c in enumerate((32, 64, 128, 256, 256)):
            layers += [nn.Conv2d(cin, c, 3), nn.ReLU(inplace=True)]
            size -= 2
            if i < 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            cin = c
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for this network")
        self.features = nn.Sequential(*layers)
        self.input_size = input_size
        self.classifier = nn.Linear(cin * size * size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"SmallConvNet was built for {self.input_size}x{self.input_size} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]} (pass input_size=...)"
            )
        # NCHW flatten order (Keras flattens NHWC: only matters when porting dense weights).
        return self.classifier(self.features(self.rescale(x)).flatten(1))


class SeparableConv2d(nn.Sequential):
    """Keras ``SeparableConv2D(cout, 3, padding="same", use_bias=False)``: a depthwise 3x3
    then a pointwise 1x1, no biases."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class _SameMaxPool(nn.Module):
    """Keras ``MaxPooling2D(3, strides=2, padding="same")`` (extra pad at bottom/right)."""

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = keras_same_pad(x.shape[-2], 3, 2)
        left, right = keras_same_pad(x.shape[-1], 3, 2)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, 3, 2)


class _XceptionBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(),
            SeparableConv2d(cin, cout),
            nn.BatchNorm2d(cout), nn.ReLU(),
            SeparableConv2d(cout, cout),
            _SameMaxPool(),
        )
        self.residual = SameConv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.residual(x)


class MiniXception(nn.Module):
    """The book's Xception-like classifier (ch. 9): Rescaling, a 5x5 conv (32, valid, no
    bias), five blocks (sizes 32, 64, 128, 256, 512) of BN-ReLU-SeparableConv twice, a
    3x3 stride-2 max pool and a strided 1x1 projection of the block input added as a
    residual, then global average pooling, dropout and a dense layer. Works for any input
    of at least 5x5. With ``num_classes=1`` it has 718,849 trainable parameters plus 3,008
    batch-norm running statistics: the book's 721,857 in total.

    Args:
        num_classes: outputs (1 = binary, logit). in_channels: input channels.
        dropout: before the dense layer (0.5 in the book).
        rescale: input multiplier (see :class:`SmallConvNet`).
    """

    def __init__(self, num_classes: int = 1, in_channels: int = 3, dropout: float = 0.5,
                 rescale: float = 1.0) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        self.rescale = Rescale(rescale)
        self.stem = nn.Conv2d(in_channels, 32, 5, bias=False)
        blocks, cin = [], 32
        for size in (32, 64, 128, 256, 512):
            blocks.append(_XceptionBlock(cin, size))
            cin = size
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.stem(self.rescale(x)))
        return self.classifier(self.dropout(h.mean(dim=(-2, -1))))
