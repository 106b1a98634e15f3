"""A build records the torch it was compiled against; another torch minor release is a clear
ImportError at ``import pyseg``, not a crash."""

from __future__ import annotations

import pytest
import torch

import pyseg
from pyseg._loader import check_torch_version


def test_build_records_the_running_torch():
    assert pyseg.info()["torch_built_with"].split(".")[:2] == torch.__version__.split(".")[:2]


@pytest.mark.parametrize("running", ["2.14.1", "2.14.0+cpu", "2.14.3+cu130"])
def test_same_minor_release_is_accepted(running):
    check_torch_version("2.14.1+cu130", running)


@pytest.mark.parametrize("running", ["2.13.1", "2.15.0", "3.14.1"])
def test_other_minor_release_is_refused(running):
    with pytest.raises(ImportError, match=r"built against torch 2\.14\.1.*torch 2\.14\.x"):
        check_torch_version("2.14.1", running)
