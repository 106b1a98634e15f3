"""The spec classes that plugins return from their hooks, and where a plugin came from.

Every spec is a frozen, hashable dataclass with a ``name`` (unique within its kind), a
one-line ``summary`` and, once the registry has accepted it, the ``plugin`` that provided it
(filled in by the registry; not part of equality or the repr).
:class:`Architecture`, :class:`Interpreter` and :class:`DatasetSpec` have one callable,
``fn``, and say what they support in ``tasks``; :class:`BenchmarkCase` has two callables
named by their role, ``ours`` and ``reference``.

The fields after ``name`` and ``fn`` are keyword-only, so that a positional argument can
never land in the wrong field. The constructors check their arguments and normalise them:
``tasks`` accepts a string or any iterable of strings and is stored as a ``frozenset``;
``class_names`` and ``options`` are stored as tuples; ``default_kwargs`` as a private copy
typed as a read-only ``Mapping`` and left out of the hash, so specs go into sets and dict
keys.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "DATASET_OPTIONS",
    "Architecture",
    "BenchmarkCase",
    "DatasetSpec",
    "Interpreter",
    "PluginInfo",
    "Spec",
]

SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"

# The options a dataset's ``fn`` may declare (DatasetSpec.options), passed by the CLI:
# ``seed`` the run's seed, ``length`` the number of samples (--train-samples/--val-samples).
DATASET_OPTIONS = ("seed", "length")


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from.

    ``source`` is ``"builtin"``, ``"entrypoint"`` or ``"env"`` (``PYSEG_PLUGINS`` /
    ``--plugin``). ``distribution``/``version`` name the installed distribution that
    provides it (the built-ins belong to ``pyseg``; plugins named by module may have none).
    ``name`` is the plugin's name in the plugin manager, ``module`` the module it was
    imported from. Every spec a plugin returns carries its ``PluginInfo`` as ``spec.plugin``.

    Example::

        >>> from pyseg.registry import PluginInfo
        >>> PluginInfo("demo", "demo_plugin", "env").describe()
        'demo_plugin'
        >>> PluginInfo("demo", "demo_plugin", "entrypoint", "demo-dist", "1.0").describe()
        'demo-dist 1.0 (demo_plugin)'
        >>> pyseg.get_architecture("unet").plugin.source
        'builtin'
    """

    name: str
    module: str
    source: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """``"dist version (module)"`` or just the module when no distribution is known."""
        if self.distribution:
            return f"{self.distribution} {self.version or '?'} ({self.module})"
        return self.module


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a {kind} needs a non-empty name, got {name!r}")


def _check_callable(kind: str, name: str, attr: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{kind} {name!r}: {attr} must be callable, got {type(value).__name__}")


def _as_tasks(kind: str, name: str, tasks: object) -> frozenset[str]:
    items = [tasks] if isinstance(tasks, str) else tasks
    if not isinstance(items, Collection):
        raise TypeError(f"{kind} {name!r}: tasks must be a string or a collection of strings, "
                        f"got {type(tasks).__name__}")
    result = frozenset(items)
    if not result or not all(isinstance(t, str) and t for t in result):
        raise ValueError(f"{kind} {name!r}: tasks must be one or more non-empty strings, "
                         f"got {tasks!r}")
    return result


@dataclass(frozen=True)
class Architecture:
    """A model family: ``fn(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    ``tasks`` is ``{"segmentation"}`` (output ``(N, num_classes, H, W)`` at input resolution)
    or ``{"classification"}`` (output ``(N, num_classes)``). ``input_size`` is the square
    input size a network built for one size (a classifier with a dense head) is built for
    by default; such an ``fn`` takes ``input_size=``. It is None for fully convolutional
    networks. ``default_kwargs`` go to ``fn`` unless the caller overrides them. ``name`` is
    what users type (``pyseg.create_model(name)``, ``--arch``), ``summary`` the line
    ``pyseg list`` shows; ``plugin`` (:class:`PluginInfo`) is filled in by the registry.

    Raises ``ValueError`` (or ``TypeError``) for an invalid name, a non-callable ``fn``, an
    unknown task or a bad ``input_size``.

    Example (a plugin's ``pyseg_architectures()`` hook returns a list of these)::

        >>> spec = pyseg.Architecture("tiny", lambda num_classes=3, in_channels=3:
        ...                           torch.nn.Conv2d(in_channels, num_classes, 1),
        ...                           summary="a 1x1 convolution")
        >>> sorted(spec.tasks)
        ['segmentation']
        >>> spec.fn(num_classes=2)
        Conv2d(3, 2, kernel_size=(1, 1), stride=(1, 1))
    """

    KIND: ClassVar[str] = "architecture"
    HOOK: ClassVar[str] = "pyseg_architectures"

    name: str
    fn: Callable[..., nn.Module]
    _: KW_ONLY
    summary: str = ""
    tasks: Collection[str] = frozenset({SEGMENTATION})
    input_size: int | None = None
    default_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    plugin: PluginInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.KIND, self.name)
        _check_callable(self.KIND, self.name, "fn", self.fn)
        object.__setattr__(self, "tasks", _as_tasks(self.KIND, self.name, self.tasks))
        size = self.input_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 1):
            raise ValueError(f"architecture {self.name!r}: input_size must be a positive int "
                             f"or None, got {size!r}")
        if not isinstance(self.default_kwargs, Mapping):
            raise TypeError(f"architecture {self.name!r}: default_kwargs must be a mapping, "
                            f"got {type(self.default_kwargs).__name__}")
        # A private copy: typed read-only, left out of the hash (values may be unhashable).
        object.__setattr__(self, "default_kwargs", dict(self.default_kwargs))


@dataclass(frozen=True)
class Interpreter:
    """An explanation method.

    ``fn(model, images, target=None, **options) -> Tensor[N, H, W]`` in [0, 1] at input
    resolution; calling the spec calls ``fn``. ``tasks`` are the model tasks it supports;
    ``takes_layer`` says whether it accepts the ``layer=`` option (the module, or its dotted
    name, to read feature maps at). ``name`` is what users type (``--method``), ``summary``
    the line ``pyseg list`` shows; ``plugin`` (:class:`PluginInfo`) is filled in by the
    registry. Raises ``ValueError`` / ``TypeError`` for an empty name, a non-callable ``fn``
    or an unknown task.

    Example: the brightness of the image as its own "explanation"::

        >>> spec = pyseg.Interpreter("brightness", lambda model, images, target=None:
        ...                          images.mean(1), summary="mean over channels")
        >>> spec(torch.nn.Identity(), torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 4, 4])
    """

    KIND: ClassVar[str] = "interpreter"
    HOOK: ClassVar[str] = "pyseg_interpreters"

    name: str
    fn: Callable[..., Tensor]
    _: KW_ONLY
    summary: str = ""
    tasks: Collection[str] = frozenset({CLASSIFICATION, SEGMENTATION})
    takes_layer: bool = False
    plugin: PluginInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.KIND, self.name)
        _check_callable(self.KIND, self.name, "fn", self.fn)
        object.__setattr__(self, "tasks", _as_tasks(self.KIND, self.name, self.tasks))

    def __call__(self, model: nn.Module, images: Tensor, target: Any = None,
                 **options: Any) -> Tensor:
        return self.fn(model, images, target=target, **options)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: ``fn(root=None, split="train", img_size=..., task=..., **options)`` returns
    a ``torch.utils.data.Dataset`` of ``(image float[3, H, W] in [0, 1], target)`` where the
    target is ``long[H, W]`` (segmentation) or a class index (classification).

    ``tasks`` are the ``task=`` values ``fn`` supports; ``class_names`` name the segmentation
    classes; ``options`` are the optional keywords of :data:`DATASET_OPTIONS` that ``fn``
    takes (``"seed"``, ``"length"``), which the CLI then passes. ``name`` is what users type
    after ``--data``, ``summary`` the line ``pyseg list`` shows; ``plugin``
    (:class:`PluginInfo`) is filled in by the registry. Raises ``ValueError`` for an empty
    name, an unknown task or an unknown option, ``TypeError`` for a non-callable ``fn``.

    Example::

        >>> from pyseg.data import synthetic_pets
        >>> spec = pyseg.DatasetSpec("pets", synthetic_pets, options=("seed", "length"))
        >>> image, mask = spec.fn(split="val", img_size=32, task="segmentation", length=2)[0]
        >>> image.shape, mask.shape
        (torch.Size([3, 32, 32]), torch.Size([32, 32]))
        >>> pyseg.DatasetSpec("pets", synthetic_pets, options=("colour",))
        Traceback (most recent call last):
        ...
        ValueError: dataset 'pets': unknown option(s) ['colour']; known: seed, length
    """

    KIND: ClassVar[str] = "dataset"
    HOOK: ClassVar[str] = "pyseg_datasets"

    name: str
    fn: Callable[..., Dataset[Any]]
    _: KW_ONLY
    summary: str = ""
    tasks: Collection[str] = frozenset({SEGMENTATION})
    class_names: Sequence[str] = ()
    options: Sequence[str] = ()
    plugin: PluginInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.KIND, self.name)
        _check_callable(self.KIND, self.name, "fn", self.fn)
        object.__setattr__(self, "tasks", _as_tasks(self.KIND, self.name, self.tasks))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        options = tuple(self.options)
        unknown = [o for o in options if o not in DATASET_OPTIONS]
        if unknown:
            raise ValueError(f"dataset {self.name!r}: unknown option(s) {unknown}; "
                             f"known: {', '.join(DATASET_OPTIONS)}")
        object.__setattr__(self, "options", options)


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
    * ``summary``: one line for ``pyseg list``; ``plugin`` (:class:`PluginInfo`) is filled
      in by the registry.

    Raises ``ValueError`` for an empty ``name``, ``TypeError`` for a non-callable
    ``make_inputs``, ``ours``, ``reference`` or ``requires``.

    Example: ``torch.add`` against Python's ``+``::

        >>> case = pyseg.BenchmarkCase("add", "add", "4x4",
        ...                            make_inputs=lambda device, dtype: (
        ...                                torch.ones(4, 4, device=device, dtype=dtype),) * 2,
        ...                            ours=torch.add, reference=lambda a, b: a + b, quick=True)
        >>> a, b = case.make_inputs("cpu", torch.float32)
        >>> torch.equal(case.ours(a, b), case.reference(a, b))
        True
    """

    KIND: ClassVar[str] = "benchmark"
    HOOK: ClassVar[str] = "pyseg_benchmarks"

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
    plugin: PluginInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.KIND, self.name)
        for attr in ("make_inputs", "ours", "reference"):
            _check_callable(self.KIND, self.name, attr, getattr(self, attr))
        if self.requires is not None:
            _check_callable(self.KIND, self.name, "requires", self.requires)


Spec = Architecture | Interpreter | DatasetSpec | BenchmarkCase
SPEC_CLASSES: tuple[type[Architecture], type[Interpreter], type[DatasetSpec],
                    type[BenchmarkCase]] = (Architecture, Interpreter, DatasetSpec, BenchmarkCase)
