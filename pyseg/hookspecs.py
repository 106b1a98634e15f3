"""Hook specifications: what a pyseg plugin may provide.

A plugin is a module (or object) with functions named after these hooks and marked with
``@pyseg.hookimpl``. Each hook returns a list of specs (see :mod:`pyseg.registry`)::

    import pyseg

    @pyseg.hookimpl
    def pyseg_architectures():
        return [pyseg.Architecture("my-net", build_my_net, summary="my network")]
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("pyseg")
hookimpl = pluggy.HookimplMarker("pyseg")


@hookspec
def pyseg_architectures() -> list:
    """Return a list of :class:`pyseg.registry.Architecture` the plugin provides."""


@hookspec
def pyseg_interpreters() -> list:
    """Return a list of :class:`pyseg.registry.Interpreter` the plugin provides."""


@hookspec
def pyseg_datasets() -> list:
    """Return a list of :class:`pyseg.registry.Dataset` the plugin provides."""


@hookspec
def pyseg_benchmarks() -> list:
    """Return a list of :class:`pyseg.registry.BenchmarkCase` the plugin provides."""
