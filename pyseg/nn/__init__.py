"""``torch.nn``-style modules backed by pyseg's operators: same constructor arguments,
parameter names and ``state_dict`` keys as the torch / torchvision modules they replace."""

from pyseg.nn.unpool import MaxUnpool2d
from pyseg.nn.upsample import Upsample

__all__ = ["MaxUnpool2d", "Upsample"]
