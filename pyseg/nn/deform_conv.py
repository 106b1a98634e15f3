"""Deformable convolution modules: ``DeformConv2d`` (torchvision's drop-in) and the
``DeformConv2dPack`` / ``ModulatedDeformConv2dPack`` modules that predict their own offsets
(and mask), as known from mmcv."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import init

from pyseg.ops._library import pair
from pyseg.ops.deform_conv import deform_conv2d

__all__ = ["DeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2dPack"]


class DeformConv2d(nn.Module):
    """Drop-in for :class:`torchvision.ops.DeformConv2d`: same arguments, parameters
    (``weight``, ``bias``) and ``state_dict`` keys; ``forward(input, offset, mask=None)``.

    ``offset`` is ``(N, 2 * offset_groups * kH * kW, H_out, W_out)`` (a ``(dy, dx)`` pair per
    kernel tap), ``mask`` (v2) ``(N, offset_groups * kH * kW, H_out, W_out)``; see
    :func:`pyseg.ops.deform_conv2d`. Raises ``ValueError`` when ``in_channels`` or
    ``out_channels`` is not divisible by ``groups``.

    Example: with zero offsets it is a plain convolution::

        >>> m = pyseg.nn.DeformConv2d(2, 4, 3, padding=1)
        >>> x = torch.randn(1, 2, 8, 8)
        >>> y = m(x, torch.zeros(1, 2 * 3 * 3, 8, 8))
        >>> y.shape
        torch.Size([1, 4, 8, 8])
        >>> torch.allclose(y, torch.nn.functional.conv2d(x, m.weight, m.bias, padding=1),
        ...                atol=1e-5)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.groups = groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight and uniform bias, as torchvision (and nn.Conv2d) do."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :func:`pyseg.ops.deform_conv2d`."""
        return deform_conv2d(
            input, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )

    def __repr__(self) -> str:
        s = (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}"
        )
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        s += f", groups={self.groups}" if self.groups != 1 else ""
        s += ", bias=False" if self.bias is None else ""
        return s + ")"


class DeformConv2dPack(DeformConv2d):
    """Deformable convolution v1 that predicts its offsets from the input with a regular
    convolution (``conv_offset``, same kernel, stride, padding and dilation) initialised to
    zero, so training starts from a plain convolution. ``forward(input)``.

    Takes the arguments of :class:`DeformConv2d` and ``deform_groups`` (offset groups).

    Example: untrained, it equals the convolution with its weight::

        >>> m = pyseg.nn.DeformConv2dPack(3, 8, 3, padding=1)
        >>> x = torch.randn(2, 3, 16, 16)
        >>> m.conv_offset(x).shape      # (dy, dx) for each of the 9 taps, per pixel
        torch.Size([2, 18, 16, 16])
        >>> torch.allclose(m(x), torch.nn.functional.conv2d(x, m.weight, m.bias, padding=1),
        ...                atol=1e-5)
        True
    """

    def __init__(self, *args: Any, deform_groups: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deform_groups = deform_groups
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(
            self.in_channels, self._offset_channels(deform_groups * kh * kw), self.kernel_size,
            stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True,
        )
        self.init_offset()

    @staticmethod
    def _offset_channels(samples: int) -> int:
        return 2 * samples

    def init_offset(self) -> None:
        """Zero the offset predictor: offsets start at 0 (and a mask at sigmoid(0) = 0.5)."""
        nn.init.zeros_(self.conv_offset.weight)
        if self.conv_offset.bias is not None:  # always: built with bias=True
            nn.init.zeros_(self.conv_offset.bias)

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        offset = self.conv_offset(input)
        return super().forward(input, offset)


class ModulatedDeformConv2dPack(DeformConv2dPack):
    """Deformable convolution v2: ``conv_offset`` predicts offsets and a mask logit per
    sample (the mask is its sigmoid, 0.5 at initialisation). ``forward(input)``.

    Example: untrained, every sample is weighted by the mask's 0.5::

        >>> m = pyseg.nn.ModulatedDeformConv2dPack(3, 8, 3, padding=1, bias=False)
        >>> x = torch.randn(2, 3, 16, 16)
        >>> m.conv_offset(x).shape      # 18 offsets and 9 mask logits per pixel
        torch.Size([2, 27, 16, 16])
        >>> torch.allclose(m(x), 0.5 * torch.nn.functional.conv2d(x, m.weight, padding=1),
        ...                atol=1e-5)
        True
    """

    @staticmethod
    def _offset_channels(samples: int) -> int:
        return 3 * samples

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        out = self.conv_offset(input)
        n_off = 2 * self.deform_groups * self.kernel_size[0] * self.kernel_size[1]
        offset, mask = out[:, :n_off], torch.sigmoid(out[:, n_off:])
        return DeformConv2d.forward(self, input, offset, mask)
