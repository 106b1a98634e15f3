"""The ``>>>`` examples in the docstrings of the public modules run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

import pyseg

MODULES = [
    "pyseg.ops.conv_transpose", "pyseg.ops.deform_conv", "pyseg.ops.max_unpool",
    "pyseg.ops.upsample", "pyseg.nn.conv", "pyseg.nn.convert", "pyseg.nn.deform_conv",
    "pyseg.nn.unpool", "pyseg.nn.upsample", "pyseg.info", "pyseg.hookspecs",
    "pyseg.registry", "pyseg.registry.specs", "pyseg.registry.loading", "pyseg.registry.kwargs",
    "pyseg.routing", "pyseg.palette",
    "pyseg.engine.metrics", "pyseg.engine.checkpoint", "pyseg.engine.devices",
    "pyseg.engine.models", "pyseg.engine.trainer",
    "pyseg.interpret.core", "pyseg.interpret.metrics", "pyseg.interpret.pointing",
    "pyseg.interpret.overlay",
    "pyseg.bench", "pyseg.bench.harness", "pyseg.bench.report", "pyseg.bench.trust",
    "pyseg.bench.emu_profile", "pyseg.bench.models", "pyseg.bench.user_model",
    "pyseg.data", "pyseg.data.synthetic", "pyseg.data.oxford", "pyseg.data.folder",
    "pyseg.data.files", "pyseg.data.patch_hiding",
    "pyseg.ops.grid_sample", "pyseg.nn.spatial_transformer", "pyseg_plugins.architectures.stn",
    "pyseg.ops.conv_transpose_nd",
]


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    # As ``python -m doctest`` would: the module's own names, plus the usual imports.
    globs = {**vars(module), "torch": torch, "pyseg": pyseg, "nn": torch.nn,
             "F": torch.nn.functional}
    return [t for t in doctest.DocTestFinder().find(module, globs=globs) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = _examples(name)
    assert tests, f"{name} has no docstring example"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed"


def test_the_op_and_module_docstrings_have_examples():
    # Every public op and nn module shows its use (issue: a small example in each docstring).
    missing = [f"pyseg.ops.{n}" for n in pyseg.ops.__all__ if n != "emulated"
               and ">>>" not in (getattr(pyseg.ops, n).__doc__ or "")]
    # ConversionReport is what convert(report=True) returns: convert's example shows it.
    missing += [f"pyseg.nn.{n}" for n in pyseg.nn.__all__ if n != "ConversionReport"
                and ">>>" not in (getattr(pyseg.nn, n).__doc__ or "")]
    assert not missing, f"docstrings without an example: {missing}"
