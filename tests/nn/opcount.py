"""Counting the operators that actually ran, below autograd: the evidence that a call went
to pyseg's kernel (``pyseg::*``) or to torch's (``aten::upsample_*``...)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# The ATen ops pyseg's kernels stand in for (what torch's functions end up calling).
TORCH_OPS = ("aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::upsample_bicubic2d",
             "aten::_upsample_nearest_exact2d", "aten::convolution", "aten::max_unpool2d",
             "torchvision::deform_conv2d")


class OpCount(TorchDispatchMode):
    """``counts[name]``: calls of each dispatched operator (overload names dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        self.counts[func._schema.name] += 1
        return func(*args, **(kwargs or {}))

    def pyseg(self) -> Counter[str]:
        """The calls of pyseg's operators (forward and backward)."""
        return Counter({k: v for k, v in self.counts.items() if k.startswith("pyseg::")})

    def upsampling(self) -> int:
        """Calls of torch's own upsampling kernels (forward and backward)."""
        return sum(v for k, v in self.counts.items() 
                   if k.startswith(("aten::upsample_", "aten::_upsample_")))


def tensors_close(ours: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float = 0.0) -> None:
    """``|ours - ref| <= rtol * max|ref| + atol`` everywhere, with a message giving the worst."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    diff = (ours.detach().double() - ref.detach().double()).abs().max().item() \
        if ref.numel() else 0.0
    bound = rtol * (ref.detach().double().abs().max().item() if ref.numel() else 0.0) + atol
    assert diff <= bound, f"max |ours - ref| = {diff:.3g} > {bound:.3g}"
