"""``torch.nn``-style modules backed by pyseg's operators: same constructor arguments,
parameter names and ``state_dict`` keys as the torch / torchvision modules they replace."""

from pyseg.nn.deform_conv import DeformConv2d, DeformConv2dPack, ModulatedDeformConv2dPack
from pyseg.nn.unpool import MaxUnpool2d

__all__ = ["DeformConv2d", "DeformConv2dPack", "MaxUnpool2d", "ModulatedDeformConv2dPack"]
