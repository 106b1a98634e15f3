"""The Oxford Pets encoder-decoder of "Deep Learning with Python" (2nd ed., ch. 9)."""

from __future__ import annotations

from pyseg_plugins.architectures._common import Rescale, SameConv2d, check_common
from torch import Tensor, nn

import pyseg.nn as pnn


class _SameConvTranspose2x(nn.Module):
    """Keras ``Conv2DTranspose(c, 3, strides=2, padding="same")``: output exactly 2x the
    input, aligned like Keras (TensorFlow crops the surplus row/column at the *end*).

    ``ConvTranspose2d(k=3, s=2, padding=1, output_padding=1)`` has the right shape too but
    crops one row/column at the start, shifting the output by one pixel relative to Keras;
    so we run the transposed convolution unpadded (2n+1 outputs) and drop the last one.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = pnn.ConvTranspose2d(in_channels, out_channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.conv(x)[..., : 2 * h, : 2 * w]


class PetsEncoderDecoder(nn.Module):
    """The book's ``get_model(img_size, num_classes)``, layer by layer.

    Encoder: 3x3 convolutions with ReLU, channels 64 (stride 2), 64, 128 (stride 2), 128,
    256 (stride 2), 256, Keras ``padding="same"`` (asymmetric for stride 2, see
    :class:`SameConv2d`). Decoder: 3x3 transposed convolutions with ReLU, 256, 256
    (stride 2), 128, 128 (stride 2), 64, 64 (stride 2), then a 3x3 convolution to
    ``num_classes``. Outputs logits (the book's softmax belongs in the loss). Input sizes
    divisible by 8 come back at the same size (200x200 -> 200x200); other sizes come back
    at ``8 * ceil(size / 8)``, as in Keras.

    With ``num_classes=3`` the model has 2,880,643 parameters, the book's count.

    Args:
        num_classes: output channels.
        in_channels: input channels (3 in the book).
        rescale: the input is multiplied by this first (the book's ``Rescaling(1/255)``).
            pyseg's datasets give images in [0, 1], hence the default 1.0; pass
            ``rescale=1/255`` for raw 0..255 pixels. Has no parameters either way.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, rescale: float = 1.0) -> None:
        super().__init__()
        check_common(num_classes, in_channels)
        self.rescale = Rescale(rescale)
        enc = []
        cin = in_channels
        for cout, stride in ((64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
            enc += [SameConv2d(cin, cout, 3, stride=stride), nn.ReLU(inplace=True)]
            cin = cout
        self.encoder = nn.Sequential(*enc)
        dec = []
        for cout, stride in ((256, 1), (256, 2), (128, 1), (128, 2), (64, 1), (64, 2)):
            if stride == 1:
                # 'same' with stride 1 is symmetric: padding=1 matches Keras exactly.
                layer = pnn.ConvTranspose2d(cin, cout, 3, stride=1, padding=1)
            else:
                layer = _SameConvTranspose2x(cin, cout)
            dec += [layer, nn.ReLU(inplace=True)]
            cin = cout
        self.decoder = nn.Sequential(*dec)
        self.classifier = SameConv2d(cin, num_classes, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.decoder(self.encoder(self.rescale(x))))
