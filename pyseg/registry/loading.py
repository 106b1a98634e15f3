"""Loading plugins: the one pluggy PluginManager, plugin isolation and the loaded state.

Where plugins come from, in this order (the first plugin to claim a name keeps it):

1. the built-in plugins, the modules named in ``pyseg_plugins.BUILTIN``;
2. third-party plugins, from the entry-point group ``pyseg`` of every installed
   distribution (off when ``PYSEG_DISABLE_PLUGIN_AUTOLOAD=1``), loaded one by one with
   pluggy's ``load_setuptools_entrypoints(group, name)``;
3. modules named in ``PYSEG_PLUGINS=mod1,mod2`` (``pyseg --plugin mod`` appends to it),
   looked up in the current directory first, as ``python -m`` would: the ``pyseg`` console
   script does not have the current directory on ``sys.path``, so it is put there for the
   import of these modules only.

Plugins are loaded lazily, on the first call that needs them; :func:`reload` forgets them
and reads the environment again.

Isolation: every plugin is imported, registered and asked for its specs inside its own
``try`` that catches every exception but ``KeyboardInterrupt`` (a plugin that calls
``sys.exit()`` is a broken plugin, not a request to end pyseg). A plugin that fails to
import, whose hook raises or returns something other than a list of the right spec class,
that implements a hook pyseg does not have (pluggy's ``check_pending()``), or that claims a
name another plugin already has, is left out *as a whole* (none of its specs are
registered, so a plugin is never half-loaded) and reported: a :class:`PluginWarning` is
issued and :func:`plugin_failures` lists it with the error. All other plugins keep working.
With ``PYSEG_STRICT_PLUGINS=1`` the failures raise :class:`PluginError` instead (CI and the
test suite use it for the built-ins).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from pyseg import hookspecs
from pyseg._version import __version__
from pyseg.registry.specs import SPEC_CLASSES, PluginInfo, Spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "ENV_STRICT",
    "PluginError",
    "PluginFailure",
    "PluginWarning",
    "get_plugin_manager",
    "loaded",
    "plugin_failures",
    "plugins",
    "reload",
]

ENTRY_POINT_GROUP = "pyseg"
# The name pyseg is installed under (the import name stays pyseg).
DISTRIBUTION = "torch-pyseg"
ENV_PLUGINS = "PYSEG_PLUGINS"
ENV_DISABLE_AUTOLOAD = "PYSEG_DISABLE_PLUGIN_AUTOLOAD"
ENV_STRICT = "PYSEG_STRICT_PLUGINS"

_T = TypeVar("_T")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was left out: which one (``plugin``), from where (``source``: ``"builtin"``,
    ``"entrypoint"`` or ``"env"``, as :attr:`PluginInfo.source`), and why (``error``, one line; the full ``traceback``
    beside it). ``distribution`` and ``version`` name the installed package it came from,
    when known. ``str()`` gives the line that is warned.

    Example::

        >>> from pyseg.registry import PluginFailure
        >>> print(PluginFailure("demo", "env", "ImportError: no module named demo"))
        plugin 'demo' (env) was not loaded: ImportError: no module named demo
    """

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
    """Raised for plugin failures when ``PYSEG_STRICT_PLUGINS=1``.

    ``failures`` (a sequence of :class:`PluginFailure`) is kept as the attribute of that
    name; the message lists them one a line.

    Example::

        >>> from pyseg.registry import PluginError, PluginFailure
        >>> print(PluginError([PluginFailure("demo", "env", "boom")]))
        1 pyseg plugin(s) failed to load:
          - plugin 'demo' (env) was not loaded: boom
    """

    def __init__(self, failures: Sequence[PluginFailure]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(f"{len(self.failures)} pyseg plugin(s) failed to load:\n{lines}")


class PluginWarning(UserWarning):
    """Issued (once per load) for each plugin that was left out.

    Example: turn them into errors while testing a plugin::

        >>> import warnings
        >>> from pyseg.registry import PluginWarning
        >>> issubclass(PluginWarning, UserWarning)
        True
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", PluginWarning)
        ...     names = pyseg.list_architectures()
    """


class _PluginLoadError(Exception):
    """Internal: one plugin's problem, already phrased for the user."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _guarded(what: str, call: Callable[[], _T]) -> _T:
    """Run one step of a plugin (its import, registration or a hook); any exception but
    ``KeyboardInterrupt`` (``SystemExit`` and ``GeneratorExit`` included) becomes a
    :class:`_PluginLoadError`: ``what`` followed by the exception."""
    try:
        return call()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # nothing a plugin raises may end pyseg
        raise _PluginLoadError(f"{what}{type(e).__name__}: {e}") from e


def _import_from_cwd(module: str) -> ModuleType:
    """Import a ``PYSEG_PLUGINS`` module with the current directory first on ``sys.path``
    (as ``python -m`` has it), and only for this import."""
    cwd = os.getcwd()
    if any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        return importlib.import_module(module)
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module)
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


class _LoadedPlugins:
    """The loaded state: the PluginManager, the specs by class and name, the failures."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("pyseg")
        self.pm.add_hookspecs(hookspecs)
        self.specs: dict[type[Spec], dict[str, Any]] = {cls: {} for cls in SPEC_CLASSES}
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []

    def load_all(self) -> None:
        self._load_builtins()
        if not _env_flag(ENV_DISABLE_AUTOLOAD):
            self._load_entry_points()
        self._load_env_modules()

    # -- the three sources -----------------------------------------------------------
    def _load_builtins(self) -> None:
        try:
            builtin = _guarded("built-in plugins unavailable: ",
                               lambda: importlib.import_module("pyseg_plugins").BUILTIN)
        except _PluginLoadError as e:
            self._fail(PluginInfo("pyseg_plugins", "pyseg_plugins", "builtin", DISTRIBUTION,
                                  __version__), e)
            return
        for module in builtin:
            info = PluginInfo(module, module, "builtin", DISTRIBUTION, __version__)
            self._add_module(info, functools.partial(importlib.import_module, module))

    def _load_entry_points(self) -> None:
        # entry_points() lists a distribution once even when it is visible twice on sys.path.
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            info = PluginInfo(ep.name, ep.value, "entrypoint",
                              dist.metadata["Name"] if dist else None,
                              dist.version if dist else None)
            taken = self.pm.get_plugin(ep.name)
            if taken is not None:
                owner = getattr(taken, "__name__", type(taken).__name__)
                self._fail(info, _PluginLoadError(
                    f"entry point name {ep.name!r} is already taken by plugin {owner!r}"))
                continue
            try:
                _guarded("could not be loaded: ", functools.partial(
                    self.pm.load_setuptools_entrypoints, ENTRY_POINT_GROUP, ep.name))
            except _PluginLoadError as e:
                self._fail(info, e)
                continue
            plugin = self.pm.get_plugin(ep.name)
            if plugin is None:  # pm.set_blocked(name): skipped by pluggy
                continue
            for loaded_plugin, distinfo in self.pm.list_plugin_distinfo():
                if loaded_plugin is plugin:
                    info = dataclasses.replace(info, distribution=distinfo.project_name,
                                               version=distinfo.version)
            self._collect_or_drop(plugin, info)

    def _load_env_modules(self) -> None:
        names = [m.strip() for m in os.environ.get(ENV_PLUGINS, "").split(",") if m.strip()]
        for module in dict.fromkeys(names):
            self._add_module(PluginInfo(module, module, "env"),
                             functools.partial(_import_from_cwd, module))

    # -- one plugin ------------------------------------------------------------------
    def _add_module(self, info: PluginInfo, load: Callable[[], object]) -> None:
        """Import (via ``load``), register and collect one plugin; record any failure."""
        try:
            plugin = _guarded("import failed: ", load)
            if self.pm.is_registered(plugin):
                return  # the same module named twice (e.g. entry point and PYSEG_PLUGINS)
            _guarded("could not be registered: ", lambda: self.pm.register(plugin, name=info.name))
        except _PluginLoadError as e:
            self._fail(info, e)
            return
        self._collect_or_drop(plugin, info)

    def _collect_or_drop(self, plugin: object, info: PluginInfo) -> None:
        """Keep all of a registered plugin's specs, or unregister it and record why."""
        try:
            self._check_hook_names()
            collected = self._collect(plugin, info)
        except _PluginLoadError as e:
            self.pm.unregister(plugin)
            self._fail(info, e)
            return
        for cls, specs in collected.items():
            self.specs[cls].update(specs)
        self.plugins.append(info)

    def _check_hook_names(self) -> None:
        """pluggy's ``check_pending()``: the plugin just registered implements only hooks
        pyseg has (those registered before it passed already)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            hooks = ", ".join(cls.HOOK for cls in SPEC_CLASSES)
            raise _PluginLoadError(f"{e}; pyseg's hooks are: {hooks}") from e

    def _collect(self, plugin: object, info: PluginInfo) -> dict[type[Spec], dict[str, Spec]]:
        """Call each of ``plugin``'s hooks and validate what they return."""
        collected: dict[type[Spec], dict[str, Spec]] = {}
        for cls in SPEC_CLASSES:
            found: dict[str, Spec] = {}
            for impl in getattr(self.pm.hook, cls.HOOK).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                result = _guarded(f"{cls.HOOK}() raised ", impl.function)
                for spec in _checked_list(result, cls):
                    if spec.name in found:
                        raise _PluginLoadError(
                            f"{cls.HOOK}() returned two {cls.KIND}s named {spec.name!r}")
                    owner = self.specs[cls].get(spec.name)
                    if owner is not None:
                        by = owner.plugin.describe() if owner.plugin else "another plugin"
                        raise _PluginLoadError(
                            f"{cls.KIND} name {spec.name!r} is already taken by {by}")
                    found[spec.name] = dataclasses.replace(spec, plugin=info)
            collected[cls] = found
        return collected

    def _fail(self, info: PluginInfo, error: _PluginLoadError) -> None:
        cause = error.__cause__ or error
        self.failures.append(PluginFailure(
            info.name, info.source, str(error), info.distribution, info.version,
            "".join(traceback.format_exception(cause)),
        ))


def _checked_list(result: object, cls: type[Spec]) -> list[Spec]:
    """What a hook returned, if it is a list (or tuple) of ``cls``; None means nothing."""
    if result is None:
        return []
    if not isinstance(result, (list, tuple)):
        raise _PluginLoadError(
            f"{cls.HOOK}() must return a list of pyseg.{cls.__name__}, "
            f"got {type(result).__name__}")
    for item in result:
        if not isinstance(item, cls):
            raise _PluginLoadError(
                f"{cls.HOOK}() must return a list of pyseg.{cls.__name__}, "
                f"but an item is a {type(item).__name__}")
    return list(result)


_lock = threading.RLock()
_loaded: _LoadedPlugins | None = None
_loading = False


def loaded() -> _LoadedPlugins:
    """The loaded plugins, loading them on first use (raises :class:`PluginError` in
    strict mode when any failed; warns :class:`PluginWarning` for each failure otherwise).
    No arguments; the same object until :func:`reload`.

    Example::

        >>> from pyseg.registry import loaded
        >>> state = loaded()
        >>> state is loaded(), state.pm is pyseg.registry.get_plugin_manager()
        (True, True)
    """
    global _loaded, _loading
    with _lock:
        if _loaded is not None:
            return _loaded
        if _loading:  # a plugin asked the registry for something while being imported
            raise RuntimeError("the pyseg registry was used while its plugins were loading")
        _loading = True
        try:
            state = _LoadedPlugins()
            state.load_all()
        finally:
            _loading = False
        if state.failures and _env_flag(ENV_STRICT):
            raise PluginError(state.failures)
        _loaded = state
        for failure in state.failures:
            warnings.warn(str(failure), PluginWarning, stacklevel=4)
        return state


def reload() -> None:
    """Forget every loaded plugin; the next registry call loads them again, reading
    ``PYSEG_PLUGINS``, ``PYSEG_DISABLE_PLUGIN_AUTOLOAD``, ``PYSEG_STRICT_PLUGINS`` and the
    installed entry points afresh. Takes no arguments, returns None.

    Example::

        >>> from pyseg import registry
        >>> registry.reload()
        >>> "unet" in registry.list_architectures()     # loaded again on first use
        True
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            for _name, plugin in list(_loaded.pm.list_name_plugin()):
                _loaded.pm.unregister(plugin)
        _loaded = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy PluginManager holding every plugin that loaded successfully (loading them
    on first use; raises :class:`PluginError` in strict mode when any failed).

    Example::

        >>> from pyseg.registry import get_plugin_manager
        >>> pm = get_plugin_manager()
        >>> pm.project_name
        'pyseg'
    """
    return loaded().pm


def plugins() -> list[PluginInfo]:
    """The plugins that loaded, in load order, as :class:`PluginInfo` (no arguments).

    Example::

        >>> from pyseg.registry import plugins
        >>> infos = plugins()
        >>> len(infos) > 0 and all(info.name for info in infos)
        True
    """
    return list(loaded().plugins)


def plugin_failures() -> list[PluginFailure]:
    """The plugins that were left out, as :class:`PluginFailure` records with their errors
    (no arguments; empty when every plugin loaded).

    Example::

        >>> from pyseg.registry import plugin_failures
        >>> plugin_failures()
        []
    """
    return list(loaded().failures)
