"""pyseg: fast, correct upsampling and deformable kernels for PyTorch, classic
segmentation networks and explanation tools.

The operators live in :mod:`pyseg.ops` (functions) and :mod:`pyseg.nn` (modules);
``pyseg.info()`` reports how this copy was built.
"""

from pyseg._version import __version__
from pyseg import _loader  # noqa: F401  (loads pyseg._C and registers torch.ops.pyseg)
from pyseg import ops, nn
from pyseg.info import info

__all__ = ["__version__", "info", "nn", "ops"]
