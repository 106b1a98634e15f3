"""Unpooling modules."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pyseg.ops import max_unpool1d, max_unpool2d, max_unpool3d
from pyseg.ops._library import pair
from pyseg.ops.max_unpool import _ntuple

__all__ = ["MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d"]


class MaxUnpool2d(nn.Module):
    """Drop-in for :class:`torch.nn.MaxUnpool2d` backed by :func:`pyseg.ops.max_unpool2d`.

    Args:
        kernel_size: size of the max pooling window.
        stride: stride of the max pooling window (default: ``kernel_size``).
        padding: padding that was added to the pooling input.

    Example::

        >>> pool = torch.nn.MaxPool2d(2, return_indices=True)
        >>> unpool = pyseg.nn.MaxUnpool2d(2)
        >>> y, idx = pool(torch.randn(1, 3, 8, 8))
        >>> unpool(y, idx).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride if stride is not None else kernel_size, "stride")
        self.padding = pair(padding, "padding")

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return max_unpool2d(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool1d(nn.Module):
    """Drop-in for :class:`torch.nn.MaxUnpool1d` backed by :func:`pyseg.ops.max_unpool1d`.

    Args:
        kernel_size: size of the max pooling window.
        stride: stride of the max pooling window (default: ``kernel_size``).
        padding: padding that was added to the pooling input.

    ``forward(input, indices, output_size=None)`` returns the unpooled ``(N, C, L_out)``
    tensor and raises what :func:`pyseg.ops.max_unpool1d` raises.

    Example::

        >>> pool = torch.nn.MaxPool1d(2, return_indices=True)
        >>> y, idx = pool(torch.randn(1, 3, 8))
        >>> pyseg.nn.MaxUnpool1d(2)(y, idx).shape
        torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, "kernel_size", 1)
        self.stride = _ntuple(stride if stride is not None else kernel_size, "stride", 1)
        self.padding = _ntuple(padding, "padding", 1)

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return max_unpool1d(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool3d(nn.Module):
    """Drop-in for :class:`torch.nn.MaxUnpool3d` backed by :func:`pyseg.ops.max_unpool3d`.

    Args:
        kernel_size: size of the max pooling window (an int or 3 ints).
        stride: stride of the max pooling window (default: ``kernel_size``).
        padding: padding that was added to the pooling input.

    ``forward(input, indices, output_size=None)`` returns the unpooled
    ``(N, C, D_out, H_out, W_out)`` tensor (channels_last_3d in, channels_last_3d out) and
    raises what :func:`pyseg.ops.max_unpool3d` raises.

    Example::

        >>> pool = torch.nn.MaxPool3d(2, return_indices=True)
        >>> y, idx = pool(torch.randn(1, 3, 4, 6, 8))
        >>> pyseg.nn.MaxUnpool3d(2)(y, idx).shape
        torch.Size([1, 3, 4, 6, 8])
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, "kernel_size", 3)
        self.stride = _ntuple(stride if stride is not None else kernel_size, "stride", 3)
        self.padding = _ntuple(padding, "padding", 3)

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return max_unpool3d(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
