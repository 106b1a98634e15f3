"""Convolution modules."""

from __future__ import annotations

from torch import Tensor, nn

from pyseg.ops.conv_transpose import conv_transpose2d
from pyseg.ops.conv_transpose_nd import conv_transpose1d, conv_transpose3d

__all__ = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


class ConvTranspose2d(nn.ConvTranspose2d):
    """Drop-in for :class:`torch.nn.ConvTranspose2d` backed by
    :func:`pyseg.ops.conv_transpose2d`.

    Same constructor, parameters (``weight`` of shape ``(in_channels, out_channels / groups,
    kH, kW)``, optional ``bias``), initialization and ``state_dict`` keys as torch's module
    (it subclasses it, so checkpoints load either way); only the computation differs.
    ``forward(input, output_size=None)`` accepts ``output_size`` like torch's and derives
    the ``output_padding`` from it.

    Example::

        >>> up = pyseg.nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        >>> up(torch.randn(1, 16, 10, 10)).shape
        torch.Size([1, 8, 20, 20])
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        # torch types these attributes for every conv module (padding may be a str for
        # Conv2d); its own ConvTranspose2d.forward ignores the same mismatch.
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            2, self.dilation,  # type: ignore[arg-type]
        )
        return conv_transpose2d(
            input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation,  # type: ignore[arg-type]
        )


class ConvTranspose1d(nn.ConvTranspose1d):
    """Drop-in for :class:`torch.nn.ConvTranspose1d` backed by
    :func:`pyseg.ops.conv_transpose1d` (pyseg's 2-D kernels on a unit height).

    Same constructor, parameters (``weight`` ``(in_channels, out_channels / groups, k)``,
    optional ``bias``), initialization and ``state_dict`` keys as torch's module (it
    subclasses it). ``forward(input, output_size=None)`` derives ``output_padding`` from
    ``output_size`` like torch's; a ``padding_mode`` other than ``"zeros"`` raises
    ``ValueError``.

    Example::

        >>> up = pyseg.nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)
        >>> up(torch.randn(1, 16, 10)).shape
        torch.Size([1, 8, 20])
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose1d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            1, self.dilation,  # type: ignore[arg-type]
        )
        return conv_transpose1d(
            input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation,  # type: ignore[arg-type]
        )


class ConvTranspose3d(nn.ConvTranspose3d):
    """Drop-in for :class:`torch.nn.ConvTranspose3d` backed by
    :func:`pyseg.ops.conv_transpose3d`.

    Same constructor, parameters (``weight`` ``(in_channels, out_channels / groups, kD, kH,
    kW)``, optional ``bias``), initialization and ``state_dict`` keys as torch's module (it
    subclasses it). ``forward(input, output_size=None)`` derives ``output_padding`` from
    ``output_size`` like torch's; a ``padding_mode`` other than ``"zeros"`` raises
    ``ValueError``.

    Example::

        >>> up = pyseg.nn.ConvTranspose3d(4, 2, 2, stride=2)
        >>> up(torch.randn(1, 4, 3, 5, 6)).shape
        torch.Size([1, 2, 6, 10, 12])
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose3d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            3, self.dilation,  # type: ignore[arg-type]
        )
        return conv_transpose3d(
            input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation,  # type: ignore[arg-type]
        )
