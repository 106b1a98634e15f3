"""pyseg's operators as functions, with the signatures of their torch / torchvision
counterparts. Each is backed by ``torch.ops.pyseg.<name>`` (CPU and CUDA kernels) with
autograd and a fake kernel for ``torch.compile``."""

from pyseg.ops._library import emulated
from pyseg.ops.deform_conv import deform_conv2d
from pyseg.ops.max_unpool import max_unpool2d

__all__ = ["deform_conv2d", "emulated", "max_unpool2d"]
