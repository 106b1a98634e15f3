"""Unpooling modules."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from pyseg.ops import max_unpool2d
from pyseg.ops._library import pair

__all__ = ["MaxUnpool2d"]


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
