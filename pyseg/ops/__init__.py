"""pyseg's operators as functions, with the signatures of their torch / torchvision
counterparts. Each is backed by ``torch.ops.pyseg.<name>`` (CPU and CUDA kernels) with
autograd and a fake kernel for ``torch.compile``."""

from pyseg.ops._library import emulated
from pyseg.ops.conv_transpose import conv2d_matrix, conv_transpose2d
from pyseg.ops.deform_conv import deform_conv2d
from pyseg.ops.max_unpool import max_unpool2d
from pyseg.ops.upsample import bed_of_nails, interpolate

__all__ = [
    "bed_of_nails",
    "conv2d_matrix",
    "conv_transpose2d",
    "deform_conv2d",
    "emulated",
    "interpolate",
    "max_unpool2d",
]
