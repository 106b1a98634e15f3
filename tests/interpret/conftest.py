"""Fixtures for the interpreter tests."""

from __future__ import annotations

import pytest
import torch
from interp_models import GapNet
from pyseg_plugins.interpreters import pyseg_interpreters


@pytest.fixture(scope="session")
def interpreters():
    return {spec.name: spec for spec in pyseg_interpreters()}


@pytest.fixture
def gap_net():
    torch.manual_seed(0)
    return GapNet()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 32, 32, generator=g)
