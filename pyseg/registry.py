"""The plugin registry: one pluggy PluginManager and the spec classes plugins return.

CONTRACT (stable; other modules code against it):

* Spec classes (frozen dataclasses): ``Architecture``, ``Interpreter``, ``Dataset``,
  ``BenchmarkCase`` -- each with ``name`` (unique within its kind), a callable, ``summary``.
* ``list_architectures()``, ``create_model(name, num_classes=3, in_channels=3, **kwargs)``,
  ``get_architecture(name)``, ``list_interpreters()``, ``get_interpreter(name)``,
  ``list_datasets()``, ``get_dataset(name)``, ``list_benchmarks()``.

``list_*`` return the spec objects sorted by name (``[s.name for s in list_...()]`` for the
names); ``get_*`` return one spec or raise :class:`UnknownNameError` (a ``KeyError``) that
lists the valid names.

Where plugins come from, in this order (the first plugin to claim a name keeps it):

1. the built-in plugins, the modules named in ``pyseg_plugins.BUILTIN``;
2. third-party plugins, from the entry-point group ``pyseg`` of every installed
   distribution (off when ``PYSEG_DISABLE_PLUGIN_AUTOLOAD=1``);
3. modules named in ``PYSEG_PLUGINS=mod1,mod2`` (``pyseg --plugin mod`` appends to it).

Plugins are loaded lazily, on the first call that needs them; :func:`reload` forgets
them and reads the environment again.

Isolation: every plugin is imported, registered and asked for its specs inside its own
``try``. A plugin that fails to import, whose hook raises or returns something other than
a list of the right spec class, that uses an unknown ``pyseg_*`` hook name, or that claims
a name another plugin already has, is left out *as a whole* (none of its specs are
registered, so a plugin is never half-loaded) and reported: a :class:`PluginWarning` is
issued and :func:`plugin_failures` lists it with the error. All other plugins keep working.
With ``PYSEG_STRICT_PLUGINS=1`` the failures raise :class:`PluginError` instead (CI and the
test suite use it for the built-ins).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import inspect
import os
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pyseg import hookspecs

__all__ = [
    "Architecture",
    "BenchmarkCase",
    "Dataset",
    "Interpreter",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "PluginWarning",
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

ENTRY_POINT_GROUP = "pyseg"
ENV_PLUGINS = "PYSEG_PLUGINS"
ENV_DISABLE_AUTOLOAD = "PYSEG_DISABLE_PLUGIN_AUTOLOAD"
ENV_STRICT = "PYSEG_STRICT_PLUGINS"


# --------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from.

    ``source`` is ``"builtin"``, ``"entrypoint"`` or ``"env"`` (``PYSEG_PLUGINS`` /
    ``--plugin``). ``distribution``/``version`` name the installed distribution that
    provides it (the built-ins belong to ``pyseg``; plugins named by module may have none).
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


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was left out: which one (``plugin``), from where, and why (``error``)."""

    plugin: str
    source: str
    error: str
    distribution: str | None = None
    version: str | None = None
    traceback: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        where = f" [{self.distribution} {self.version or '?'}]" if self.distribution else ""
        return f"plugin {self.plugin!r} ({self.source}{where}) was not loaded: {self.error}"


class PluginError(RuntimeError):
    """Raised for plugin failures when ``PYSEG_STRICT_PLUGINS=1``."""

    def __init__(self, failures: Sequence[PluginFailure]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(f"{len(self.failures)} pyseg plugin(s) failed to load:\n{lines}")


class PluginWarning(UserWarning):
    """Issued (once per load) for each plugin that was left out."""


class UnknownNameError(KeyError):
    """No spec of this kind has that name. A ``KeyError`` whose message is readable."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- specs


_PLUGIN_FIELD = dict(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Architecture:
    """A model family. ``factory(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    ``task`` is ``"segmentation"`` (output ``(N, num_classes, H, W)`` at input resolution)
    or ``"classification"`` (output ``(N, num_classes)``). ``default_kwargs`` are passed to
    the factory unless the caller overrides them. ``plugin`` is filled in by the registry.
    """

    name: str
    factory: Callable[..., Any]
    task: str = "segmentation"
    summary: str = ""
    default_kwargs: dict = field(default_factory=dict)
    plugin: PluginInfo | None = field(**_PLUGIN_FIELD)


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
    plugin: PluginInfo | None = field(**_PLUGIN_FIELD)

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
    plugin: PluginInfo | None = field(**_PLUGIN_FIELD)


@dataclass(frozen=True)
class BenchmarkCase:
    """A benchmark: ``ours`` and ``reference`` are callables taking the inputs made by
    ``make_inputs(device, dtype)``; ``label`` groups cases (the op), ``sub_label`` names the
    shape/parameters."""

    name: str
    label: str
    sub_label: str
    make_inputs: Callable[..., Any]
    ours: Callable[..., Any]
    reference: Callable[..., Any]
    backward: bool = False
    summary: str = ""
    plugin: PluginInfo | None = field(**_PLUGIN_FIELD)


# hook name -> (spec class, kind used in messages)
KINDS: dict[str, tuple[type, str]] = {
    "pyseg_architectures": (Architecture, "architecture"),
    "pyseg_interpreters": (Interpreter, "interpreter"),
    "pyseg_datasets": (Dataset, "dataset"),
    "pyseg_benchmarks": (BenchmarkCase, "benchmark"),
}


# --------------------------------------------------------------------------- loading


class _PluginLoadError(Exception):
    """Internal: one plugin's problem, already phrased for the user."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _describe_exception(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class _Registry:
    """The loaded state: the PluginManager, the specs by kind and name, the failures."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("pyseg")
        self.pm.add_hookspecs(hookspecs)
        self.specs: dict[str, dict[str, Any]] = {hook: {} for hook in KINDS}
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []

    # -- one plugin ------------------------------------------------------------------
    def _add(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        """Import (via ``load``), register and collect one plugin; record any failure."""
        try:
            plugin = load()
        except (Exception, SystemExit) as e:  # a broken plugin must not break pyseg
            self._fail(info, f"import failed: {_describe_exception(e)}", e)
            return
        if self.pm.is_registered(plugin):
            return  # the same module named twice (e.g. entry point and PYSEG_PLUGINS)
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as e:  # noqa: BLE001
            self._fail(info, f"could not be registered: {_describe_exception(e)}", e)
            return
        try:
            collected = self._collect(plugin, info)
        except _PluginLoadError as e:
            self.pm.unregister(plugin)
            self._fail(info, str(e), e.__cause__ or e)
            return
        for hook, specs in collected.items():
            self.specs[hook].update(specs)
        self.plugins.append(info)

    def _collect(self, plugin: Any, info: PluginInfo) -> dict[str, dict[str, Any]]:
        """Call each of ``plugin``'s hooks and validate what they return."""
        for attr in dir(plugin):
            if attr.startswith("pyseg_") and attr not in KINDS:
                if self.pm.parse_hookimpl_opts(plugin, attr) is not None:
                    raise _PluginLoadError(
                        f"unknown hook {attr!r}; pyseg hooks are: {', '.join(KINDS)}"
                    )
        collected: dict[str, dict[str, Any]] = {}
        for hook, (cls, kind) in KINDS.items():
            impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is plugin]
            found: dict[str, Any] = {}
            for impl in impls:
                try:
                    result = impl.function()
                except Exception as e:
                    raise _PluginLoadError(f"{hook}() raised {_describe_exception(e)}") from e
                for spec in self._validate(result, hook, cls):
                    if spec.name in found:
                        raise _PluginLoadError(
                            f"{hook}() returned two {kind}s named {spec.name!r}"
                        )
                    owner = self.specs[hook].get(spec.name)
                    if owner is not None:
                        by = owner.plugin.describe() if owner.plugin else "another plugin"
                        raise _PluginLoadError(
                            f"{kind} name {spec.name!r} is already taken by {by}"
                        )
                    found[spec.name] = dataclasses.replace(spec, plugin=info)
            collected[hook] = found
        return collected

    @staticmethod
    def _validate(result: Any, hook: str, cls: type) -> list:
        if result is None:
            return []
        if not isinstance(result, (list, tuple)):
            raise _PluginLoadError(
                f"{hook}() must return a list of pyseg.{cls.__name__}, "
                f"got {type(result).__name__}"
            )
        for item in result:
            if not isinstance(item, cls):
                raise _PluginLoadError(
                    f"{hook}() must return a list of pyseg.{cls.__name__}, "
                    f"but an item is a {type(item).__name__}"
                )
            if not isinstance(item.name, str) or not item.name.strip():
                raise _PluginLoadError(f"{hook}() returned a {cls.__name__} with an empty name")
        return list(result)

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None) -> None:
        tb = "".join(traceback.format_exception(exc)) if exc is not None else ""
        self.failures.append(
            PluginFailure(info.name, info.source, error, info.distribution, info.version, tb)
        )

    # -- all plugins -----------------------------------------------------------------
    def load_all(self) -> None:
        self._load_builtins()
        if not _env_flag(ENV_DISABLE_AUTOLOAD):
            self._load_entry_points()
        self._load_env_modules()

    def _load_builtins(self) -> None:
        from pyseg import __version__

        try:
            builtin = importlib.import_module("pyseg_plugins").BUILTIN
        except Exception as e:  # noqa: BLE001
            info = PluginInfo("pyseg_plugins", "pyseg_plugins", "builtin", "pyseg", __version__)
            self._fail(info, f"built-in plugins unavailable: {_describe_exception(e)}", e)
            return
        for module in builtin:
            info = PluginInfo(module, module, "builtin", "pyseg", __version__)
            self._add(info, lambda m=module: importlib.import_module(m))

    def _load_entry_points(self) -> None:
        seen: set[tuple[str, str]] = set()
        for dist in importlib.metadata.distributions():
            dist_name = dist.metadata["Name"] or "?"
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP:
                    continue
                key = (dist_name.lower(), ep.name)
                if key in seen:  # one distribution visible twice on sys.path
                    continue
                seen.add(key)
                info = PluginInfo(ep.name, ep.value, "entrypoint", dist_name, dist.version)
                self._add(info, ep.load)

    def _load_env_modules(self) -> None:
        names = [m.strip() for m in os.environ.get(ENV_PLUGINS, "").split(",") if m.strip()]
        for module in dict.fromkeys(names):
            info = PluginInfo(module, module, "env")
            self._add(info, lambda m=module: importlib.import_module(m))


_lock = threading.RLock()
_registry: _Registry | None = None


def _get() -> _Registry:
    global _registry
    with _lock:
        if _registry is None:
            registry = _Registry()
            registry.load_all()
            if registry.failures and _env_flag(ENV_STRICT):
                raise PluginError(registry.failures)
            _registry = registry
            for failure in registry.failures:
                warnings.warn(str(failure), PluginWarning, stacklevel=4)
        return _registry


def reload() -> None:
    """Forget every loaded plugin; the next registry call loads them again, reading
    ``PYSEG_PLUGINS``, ``PYSEG_DISABLE_PLUGIN_AUTOLOAD``, ``PYSEG_STRICT_PLUGINS`` and the
    installed entry points afresh."""
    global _registry
    with _lock:
        if _registry is not None:
            for _name, plugin in list(_registry.pm.list_name_plugin()):
                _registry.pm.unregister(plugin)
        _registry = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy PluginManager holding every plugin that loaded successfully."""
    return _get().pm


def plugins() -> list[PluginInfo]:
    """The plugins that loaded, in load order."""
    return list(_get().plugins)


def plugin_failures() -> list[PluginFailure]:
    """The plugins that were left out, with their errors."""
    return list(_get().failures)


# --------------------------------------------------------------------------- lookup


def _list(hook: str, task: str | None = None) -> list:
    specs = sorted(_get().specs[hook].values(), key=lambda s: s.name)
    if task is not None:
        specs = [s for s in specs if task in (getattr(s, "tasks", None) or (s.task,))]
    return specs


def _lookup(hook: str, name: str) -> Any:
    specs = _get().specs[hook]
    try:
        return specs[name]
    except (KeyError, TypeError):
        pass
    kind = KINDS[hook][1]
    valid = sorted(specs)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid) or '(none)'}"
    )


def list_architectures(task: str | None = None) -> list[Architecture]:
    """Every registered :class:`Architecture`, sorted by name; ``task`` filters
    (``"segmentation"`` or ``"classification"``)."""
    return _list("pyseg_architectures", task)


def get_architecture(name: str) -> Architecture:
    """The :class:`Architecture` called ``name`` (:class:`UnknownNameError` lists the
    valid names otherwise)."""
    return _lookup("pyseg_architectures", name)


def create_model(name: str, num_classes: int = 3, in_channels: int = 3, **kwargs: Any):
    """Build the model ``name`` for ``num_classes`` outputs and ``in_channels`` inputs.

    ``kwargs`` override the architecture's ``default_kwargs`` and go to its factory.

    Raises:
        UnknownNameError: (a ``KeyError``) no such architecture; the message lists them.
        TypeError: a keyword the architecture does not accept (named in the message).

    Example::

        >>> model = pyseg.create_model("unet", num_classes=3, base_channels=16)
    """
    arch = get_architecture(name)
    options = {**arch.default_kwargs, **kwargs}
    _check_kwargs(arch, options)
    return arch.factory(num_classes=num_classes, in_channels=in_channels, **options)


def _check_kwargs(arch: Architecture, options: dict) -> None:
    try:
        params = inspect.signature(arch.factory).parameters
    except (TypeError, ValueError):  # not introspectable: let the factory complain
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        n for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and n not in ("num_classes", "in_channels")
    ]
    for key in options:
        if key not in accepted:
            raise TypeError(
                f"architecture {arch.name!r} got an unexpected keyword argument {key!r}; "
                f"it accepts: {', '.join(accepted) or '(no options)'}"
            )


def list_interpreters(task: str | None = None) -> list[Interpreter]:
    """Every registered :class:`Interpreter`, sorted by name; ``task`` keeps those that
    support models of that task."""
    return _list("pyseg_interpreters", task)


def get_interpreter(name: str) -> Interpreter:
    """The :class:`Interpreter` called ``name`` (callable as ``interp(model, images)``)."""
    return _lookup("pyseg_interpreters", name)


def list_datasets(task: str | None = None) -> list[Dataset]:
    """Every registered :class:`Dataset`, sorted by name."""
    return _list("pyseg_datasets", task)


def get_dataset(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``."""
    return _lookup("pyseg_datasets", name)


def list_benchmarks(label: str | None = None) -> list[BenchmarkCase]:
    """Every registered :class:`BenchmarkCase`, sorted by name; ``label`` keeps one op's."""
    cases = _list("pyseg_benchmarks")
    return [c for c in cases if label is None or c.label == label]


def get_benchmark(name: str) -> BenchmarkCase:
    """The :class:`BenchmarkCase` called ``name``."""
    return _lookup("pyseg_benchmarks", name)


def _iter_specs() -> Iterable[tuple[str, Any]]:
    """(kind, spec) for every registered spec, kinds in hook order, names sorted."""
    for hook, (_cls, kind) in KINDS.items():
        for spec in _list(hook):
            yield kind, spec
