"""The plugin registry: one pluggy PluginManager and the spec classes plugins return.

CONTRACT (stable; other modules code against it):

* Spec classes (frozen dataclasses): ``Architecture``, ``Interpreter``, ``Dataset``,
  ``BenchmarkCase`` -- each with ``name`` (unique within its kind), a callable, ``summary``.
* ``list_architectures()``, ``create_model(name, num_classes=3, in_channels=3, **kwargs)``,
  ``get_architecture(name)``, ``list_interpreters()``, ``get_interpreter(name)``,
  ``list_datasets()``, ``get_dataset(name)``, ``list_benchmarks()``.

The loading machinery (built-ins, entry points, PYSEG_PLUGINS, isolation of broken plugins)
is being completed in issue 7; the functions above keep their signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """A model family. ``factory(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    ``task`` is ``"segmentation"`` (output ``(N, num_classes, H, W)`` at input resolution)
    or ``"classification"`` (output ``(N, num_classes)``).
    """

    name: str
    factory: Callable[..., Any]
    task: str = "segmentation"
    summary: str = ""
    default_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Interpreter:
    """An explanation method.

    ``fn(model, images, target=None, **options) -> Tensor[N, H, W]`` in [0, 1] at input
    resolution. ``tasks`` lists the model tasks it supports.
    """

    name: str
    fn: Callable[..., Any]
    summary: str = ""
    tasks: Sequence[str] = ("classification", "segmentation")

    def __call__(self, model, images, target=None, **options):
        return self.fn(model, images, target=target, **options)


@dataclass(frozen=True)
class Dataset:
    """A dataset. ``factory(root=None, split="train", img_size=..., **kwargs)`` returns a
    ``torch.utils.data.Dataset`` of ``(image float[3, H, W] in [0, 1], target)`` where the
    target is ``long[H, W]`` (segmentation) or a class index (classification)."""

    name: str
    factory: Callable[..., Any]
    task: str = "segmentation"
    summary: str = ""
    class_names: Sequence[str] = ()


@dataclass(frozen=True)
class BenchmarkCase:
    """A benchmark: ``ours`` and ``reference`` are callables taking the inputs made by
    ``make_inputs(device, dtype)``; ``label`` groups cases (the op), ``sub_label`` names the
    shape/parameters.

    ``make_inputs`` returns a tuple (positional arguments), a dict (keyword arguments) or a
    single value. ``backward=True`` times forward + backward (the gradient of every
    floating-point input tensor) instead of the forward alone. The harness is
    :mod:`pyseg.bench`, which checks once that ``ours`` and ``reference`` agree before timing.

    Optional fields:

    * ``requires(device, dtype) -> str | None``: a reason the case cannot run there
      (e.g. ``"unavailable (pyseg.ops.foo missing)"``), or None when it can.
    * ``rtol``: tolerance of the agreement check, relative to the largest magnitude of the
      reference's result (None: a default per dtype).
    * ``quick``: part of the small set run by ``pyseg bench --quick``.
    * ``sweep`` / ``size``: cases sharing a ``sweep`` name form a size sweep; ``size`` (e.g.
      output elements) is their x-axis in the plot.
    """

    name: str
    label: str
    sub_label: str
    make_inputs: Callable[..., Any]
    ours: Callable[..., Any]
    reference: Callable[..., Any]
    backward: bool = False
    summary: str = ""
    requires: Callable[..., str | None] | None = None
    rtol: float | None = None
    quick: bool = False
    sweep: str = ""
    size: int = 0
