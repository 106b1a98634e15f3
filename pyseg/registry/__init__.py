"""The plugin registry: architectures, interpreters, datasets and benchmark cases, by name.

CONTRACT (stable; other modules code against it):

* ``list_architectures(task=None)``, ``list_interpreters(task=None)``,
  ``list_datasets(task=None)``, ``list_benchmarks(label=None)`` return the sorted NAMES
  (like timm's and torchvision's ``list_models``);
* ``get_architecture(name)``, ``get_interpreter(name)``, ``get_dataset(name)``,
  ``get_benchmark(name)`` return the spec, or raise :class:`UnknownNameError` (a
  ``KeyError``) that lists the valid names;
* ``create_model(name, num_classes=3, in_channels=3, **kwargs)`` builds a model.

The parts, one file each:

* :mod:`pyseg.registry.specs`: the spec classes plugins return (:class:`Architecture`,
  :class:`Interpreter`, :class:`DatasetSpec`, :class:`BenchmarkCase`) and :class:`PluginInfo`;
* :mod:`pyseg.registry.loading`: the PluginManager, where plugins come from, isolation,
  strict mode, :func:`reload`, :func:`plugins`, :func:`plugin_failures`;
* :mod:`pyseg.registry.kwargs`: the keyword check of :func:`create_model`;
* this module: look-up by name.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from torch import nn

from pyseg.registry.kwargs import check_kwargs
from pyseg.registry.loading import (
    ENTRY_POINT_GROUP,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    ENV_STRICT,
    PluginError,
    PluginFailure,
    PluginWarning,
    get_plugin_manager,
    loaded,
    plugin_failures,
    plugins,
    reload,
)
from pyseg.registry.specs import (
    DATASET_OPTIONS,
    Architecture,
    BenchmarkCase,
    DatasetSpec,
    Interpreter,
    PluginInfo,
    Spec,
)

__all__ = [
    "DATASET_OPTIONS",
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "ENV_STRICT",
    "Architecture",
    "BenchmarkCase",
    "DatasetSpec",
    "Interpreter",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "PluginWarning",
    "Spec",
    "UnknownNameError",
    "create_model",
    "get_architecture",
    "get_benchmark",
    "get_dataset",
    "get_interpreter",
    "get_plugin_manager",
    "list_architectures",
    "list_benchmarks",
    "list_datasets",
    "list_interpreters",
    "plugin_failures",
    "plugins",
    "reload",
]

_S = TypeVar("_S", Architecture, Interpreter, DatasetSpec, BenchmarkCase)


class UnknownNameError(KeyError):
    """No spec of this kind has that name. A ``KeyError`` whose message is readable.

    Raised by the ``get_*`` functions with one argument, the message, which lists the valid
    names (and the closest one, if any).

    Example::

        >>> from pyseg.registry import UnknownNameError
        >>> try:
        ...     pyseg.get_dataset("no-such-set")
        ... except UnknownNameError as e:
        ...     print(str(e).split(".")[0])
        unknown dataset 'no-such-set'
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _specs(cls: type[_S]) -> dict[str, _S]:
    specs: dict[str, _S] = loaded().specs[cls]
    return specs


def _names(cls: type[_S], task: str | None = None) -> list[str]:
    specs = _specs(cls)
    return sorted(name for name, spec in specs.items()
                  if task is None or task in getattr(spec, "tasks", ()))


def _lookup(cls: type[_S], name: str) -> _S:
    specs = _specs(cls)
    if isinstance(name, str) and name in specs:
        return specs[name]
    valid = sorted(specs)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"unknown {cls.KIND} {name!r}.{hint} Valid {cls.KIND}s: {', '.join(valid) or '(none)'}"
    )


def list_architectures(task: str | None = None) -> list[str]:
    """The names of every registered architecture, sorted; ``task`` keeps those of one task
    (``"segmentation"`` or ``"classification"``).

    Example::

        >>> "unet" in pyseg.list_architectures(task="segmentation")
        True
        >>> "unet" in pyseg.list_architectures(task="classification")
        False
    """
    return _names(Architecture, task)


def get_architecture(name: str) -> Architecture:
    """The :class:`Architecture` called ``name``.

    Raises :class:`UnknownNameError` (a ``KeyError``), which lists the valid names, for any
    other name.

    Example::

        >>> sorted(pyseg.get_architecture("unet").tasks)
        ['segmentation']
        >>> try:
        ...     pyseg.get_architecture("unet2")
        ... except KeyError as e:
        ...     print(e.args[0].split(" Valid")[0])
        unknown architecture 'unet2'. Did you mean 'unet'?
    """
    return _lookup(Architecture, name)


def create_model(name: str, num_classes: int = 3, in_channels: int = 3,
                 **kwargs: Any) -> nn.Module:
    """Build the model ``name`` for ``num_classes`` outputs and ``in_channels`` inputs.

    ``kwargs`` override the architecture's ``default_kwargs`` and go to its ``fn``.

    Raises:
        UnknownNameError: (a ``KeyError``) no such architecture; the message lists them.
        TypeError: a keyword the architecture does not accept (named in the message).

    Example::

        >>> model = pyseg.create_model("unet", num_classes=3, base_channels=4, depth=2)
        >>> model(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
        >>> pyseg.create_model("unet", bogus=1)
        Traceback (most recent call last):
        ...
        TypeError: architecture 'unet' got an unexpected keyword argument 'bogus'; ...
    """
    arch = get_architecture(name)
    options = {**arch.default_kwargs, **kwargs}
    check_kwargs(arch, options)
    return arch.fn(num_classes=num_classes, in_channels=in_channels, **options)


def list_interpreters(task: str | None = None) -> list[str]:
    """The names of every registered interpreter, sorted; ``task`` (None: all) keeps those
    that support models of that task.

    Example::

        >>> "gradcam" in pyseg.list_interpreters(task="segmentation")
        True
    """
    return _names(Interpreter, task)


def get_interpreter(name: str) -> Interpreter:
    """The :class:`Interpreter` called ``name`` (callable as ``interp(model, images)``).

    Raises :class:`UnknownNameError` for an unknown name.

    Example: a Grad-CAM map per image, in ``[0, 1]``::

        >>> model = pyseg.create_model("unet", num_classes=3, base_channels=4, depth=2)
        >>> maps = pyseg.get_interpreter("gradcam")(model, torch.rand(2, 3, 32, 32), target=0)
        >>> maps.shape, bool(maps.min() >= 0), bool(maps.max() <= 1)
        (torch.Size([2, 32, 32]), True, True)
    """
    return _lookup(Interpreter, name)


def list_datasets(task: str | None = None) -> list[str]:
    """The names of every registered dataset, sorted; ``task`` (None: all) keeps those that
    provide it.

    Example::

        >>> "synthetic-pets" in pyseg.list_datasets(task="segmentation")
        True
    """
    return _names(DatasetSpec, task)


def get_dataset(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` called ``name``.

    Raises :class:`UnknownNameError` (a ``KeyError``) for an unknown name.

    Example::

        >>> spec = pyseg.get_dataset("synthetic-pets")
        >>> "segmentation" in spec.tasks
        True
    """
    return _lookup(DatasetSpec, name)


def list_benchmarks(label: str | None = None) -> list[str]:
    """The names of every registered benchmark case, sorted; ``label`` (None: all) keeps
    the cases of one op (:attr:`BenchmarkCase.label`).

    Example::

        >>> names = pyseg.list_benchmarks()
        >>> names == sorted(names) and len(names) > 0
        True
    """
    specs = _specs(BenchmarkCase)
    return sorted(n for n, case in specs.items() if label is None or case.label == label)


def get_benchmark(name: str) -> BenchmarkCase:
    """The :class:`BenchmarkCase` called ``name``.

    Raises :class:`UnknownNameError` (a ``KeyError``) for an unknown name.

    Example::

        >>> name = pyseg.list_benchmarks()[0]
        >>> pyseg.get_benchmark(name).name == name
        True
    """
    return _lookup(BenchmarkCase, name)
