"""``torch.nn``-style modules backed by pyseg's operators: same constructor arguments,
parameter names and ``state_dict`` keys as the torch / torchvision modules they replace."""

from pyseg.nn.conv import ConvTranspose2d
from pyseg.nn.unpool import MaxUnpool2d

__all__ = ["ConvTranspose2d", "MaxUnpool2d"]
