"""pyseg's operators as functions, with the signatures of their torch / torchvision
counterparts. Each is backed by ``torch.ops.pyseg.<name>`` (CPU and CUDA kernels) with
autograd, a fake kernel for ``torch.compile``, autocast rules (pyseg/ops/_autocast.py) and
an ONNX translation (pyseg/ops/_onnx.py)."""

from pyseg.ops._autocast import register_autocast_rules
from pyseg.ops._library import NAMESPACES, emulated
from pyseg.ops.conv_transpose import conv2d_matrix, conv_transpose2d
from pyseg.ops.conv_transpose_nd import conv_transpose1d, conv_transpose3d
from pyseg.ops.deform_conv import deform_conv2d
from pyseg.ops.grid_sample import affine_grid, grid_sample
from pyseg.ops.max_unpool import max_unpool1d, max_unpool2d, max_unpool3d
from pyseg.ops.upsample import bed_of_nails, interpolate

register_autocast_rules(NAMESPACES)

__all__ = [
    "affine_grid",
    "bed_of_nails",
    "conv2d_matrix",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "deform_conv2d",
    "emulated",
    "grid_sample",
    "interpolate",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
]
