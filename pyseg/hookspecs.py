"""Hook specifications: what a pyseg plugin may provide.

A plugin is a module (or object) with functions named after these hooks and marked with
``@pyseg.hookimpl``. Each hook returns a list of specs (see :mod:`pyseg.registry`)::

    import pyseg

    @pyseg.hookimpl
    def pyseg_architectures():
        return [pyseg.Architecture("my-net", build_my_net, summary="my network")]

The hooks take no arguments and are called once per plugin when the registry loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the registry imports this module: the spec classes only for typing
    from pyseg.registry.specs import Architecture, BenchmarkCase, DatasetSpec, Interpreter

hookspec = pluggy.HookspecMarker("pyseg")
hookimpl = pluggy.HookimplMarker("pyseg")


@hookspec
def pyseg_architectures() -> list[Architecture]:
    """Return a list of :class:`pyseg.registry.Architecture` the plugin provides (no arguments).

    Example: what every loaded plugin's ``pyseg_architectures`` returned, flattened::

        >>> hook = pyseg.registry.get_plugin_manager().hook.pyseg_architectures
        >>> names = [spec.name for specs in hook() for spec in specs]
        >>> "unet" in names
        True
    """


@hookspec
def pyseg_interpreters() -> list[Interpreter]:
    """Return a list of :class:`pyseg.registry.Interpreter` the plugin provides (no arguments).

    Example: what every loaded plugin's ``pyseg_interpreters`` returned, flattened::

        >>> hook = pyseg.registry.get_plugin_manager().hook.pyseg_interpreters
        >>> names = [spec.name for specs in hook() for spec in specs]
        >>> "gradcam" in names
        True
    """


@hookspec
def pyseg_datasets() -> list[DatasetSpec]:
    """Return a list of :class:`pyseg.registry.DatasetSpec` the plugin provides (no arguments).

    Example: what every loaded plugin's ``pyseg_datasets`` returned, flattened::

        >>> hook = pyseg.registry.get_plugin_manager().hook.pyseg_datasets
        >>> names = [spec.name for specs in hook() for spec in specs]
        >>> "synthetic-pets" in names
        True
    """


@hookspec
def pyseg_benchmarks() -> list[BenchmarkCase]:
    """Return a list of :class:`pyseg.registry.BenchmarkCase` the plugin provides (no arguments).

    Example: what every loaded plugin's ``pyseg_benchmarks`` returned, flattened::

        >>> hook = pyseg.registry.get_plugin_manager().hook.pyseg_benchmarks
        >>> names = [spec.name for specs in hook() for spec in specs]
        >>> len(names) > 0
        True
    """
