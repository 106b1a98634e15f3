"""Convolution modules."""

from __future__ import annotations

from torch import Tensor, nn

from pyseg.ops.conv_transpose import conv_transpose2d

__all__ = ["ConvTranspose2d"]


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
