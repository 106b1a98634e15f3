"""pyseg: fast, correct upsampling and deformable kernels for PyTorch, classic
segmentation networks and explanation tools.

The operators live in :mod:`pyseg.ops` (functions) and :mod:`pyseg.nn` (modules); any
network gets them with ``pyseg.nn.convert(model)`` (modules) and ``with pyseg.kernels():``
(functional calls, :mod:`pyseg.routing`);
``pyseg.info()`` reports how this copy was built. Architectures, interpreters, datasets
and benchmark cases come from plugins (:mod:`pyseg.registry`): ``pyseg.list_architectures()``
and the other ``list_*`` give the names, ``pyseg.get_architecture(name)`` and the other
``get_*`` the specs, ``pyseg.create_model(name, ...)`` a model.
"""

from pyseg._version import __version__  # noqa: I001  (order matters: _C before ops)
from pyseg import _loader  # noqa: F401  (loads pyseg._C and registers torch.ops.pyseg)
from pyseg import ops, nn
from pyseg.info import info
from pyseg.routing import kernels
from pyseg.hookspecs import hookimpl
from pyseg.registry import (
    Architecture,
    BenchmarkCase,
    DatasetSpec,
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
    "DatasetSpec",
    "Interpreter",
    "__version__",
    "create_model",
    "get_architecture",
    "get_benchmark",
    "get_dataset",
    "get_interpreter",
    "hookimpl",
    "info",
    "kernels",
    "list_architectures",
    "list_benchmarks",
    "list_datasets",
    "list_interpreters",
    "nn",
    "ops",
]
