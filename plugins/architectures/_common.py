"""Helpers shared by the built-in architectures."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """A ``(channels, channels, k, k)`` transposed-convolution weight that performs bilinear
    upsampling channel by channel (zero between channels), as in FCN's ``surgery.interp``."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight.float()


def keras_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Keras/TensorFlow ``padding="same"``: the output has
    ``ceil(size / stride)`` elements and the odd extra pad goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``padding="same"`` semantics for any stride: asymmetric
    padding (extra pixel at the bottom/right) computed from the input size, so that a
    stride-2 layer samples the same pixels as the Keras layer. Parameters as ``nn.Conv2d``
    (``padding`` is not accepted)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, bias: bool = True, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         bias=bias, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = keras_same_pad(x.shape[-2], kh, sh)
        left, right = keras_same_pad(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class Rescale(nn.Module):
    """Multiplies the input by a constant (Keras ``Rescaling``); identity when 1."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return x if self.scale == 1.0 else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (width multipliers)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(channels * width))


def check_common(num_classes: int, in_channels: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
