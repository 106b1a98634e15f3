"""pyseg: fast, correct upsampling and deformable kernels for PyTorch, classic
segmentation networks and explanation tools.

The operators live in :mod:`pyseg.ops` (functions) and :mod:`pyseg.nn` (modules);
``pyseg.info()`` reports how this copy was built. Architectures, interpreters, datasets
and benchmark cases come from plugins (:mod:`pyseg.registry`): ``pyseg.create_model``,
``pyseg.get_interpreter`` and friends.
"""

from pyseg._version import __version__
from pyseg import _loader  # noqa: F401  (loads pyseg._C and registers torch.ops.pyseg)
from pyseg import ops, nn
from pyseg.info import info
from pyseg.hookspecs import hookimpl
from pyseg.registry import (
    Architecture,
    BenchmarkCase,
    Dataset,
    Interpreter,
    create_model,
    get_architecture,
    get_benchmark,
    get_dataset,
    get_interpreter,
    list_architectures,
    list_benchmarks,
    list_datasets,
    list_interpreters,
)

__all__ = [
    "Architecture",
    "BenchmarkCase",
    "Dataset",
    "Interpreter",
    "__version__",
    "create_model",
    "get_architecture",
    "get_benchmark",
    "get_dataset",
    "get_interpreter",
    "hookimpl",
    "info",
    "list_architectures",
    "list_benchmarks",
    "list_datasets",
    "list_interpreters",
    "nn",
    "ops",
]
