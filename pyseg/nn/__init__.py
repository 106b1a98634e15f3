"""``torch.nn``-style modules backed by pyseg's operators: same constructor arguments,
parameter names and ``state_dict`` keys as the torch / torchvision modules they replace.
:func:`convert` puts them into an existing network."""

from pyseg.nn.conv import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from pyseg.nn.convert import ConversionReport, convert
from pyseg.nn.deform_conv import DeformConv2d, DeformConv2dPack, ModulatedDeformConv2dPack
from pyseg.nn.spatial_transformer import SpatialTransformer
from pyseg.nn.unpool import MaxUnpool1d, MaxUnpool2d, MaxUnpool3d
from pyseg.nn.upsample import Upsample

__all__ = [
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "ConversionReport",
    "DeformConv2d",
    "DeformConv2dPack",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "ModulatedDeformConv2dPack",
    "SpatialTransformer",
    "Upsample",
    "convert",
]
