"""The built-in cases of the 1-D / 3-D ops, the N-d interpolate modes and grid_sample: each
op has a forward and a forward + backward case, and every one of them passes the harness's
check against torch (values and gradients) before it would be timed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyseg import bench

LABELS = ("max_unpool1d", "max_unpool3d", "conv_transpose1d", "conv_transpose3d",
          "interpolate_nd", "grid_sample")


def _cases():
    from pyseg_plugins.benchmarks import pyseg_benchmarks

    return [c for c in pyseg_benchmarks() if c.label in LABELS]


def test_each_op_has_forward_and_backward_cases():
    cases = _cases()
    assert len({c.name for c in cases}) == len(cases)
    for label in LABELS:
        mine = [c for c in cases if c.label == label]
        assert {c.backward for c in mine} == {False, True}, label
        assert all(c.requires is not None and not c.quick for c in mine), label
    modes = {c.sub_label.split()[0] for c in cases if c.label == "interpolate_nd"}
    assert modes == {"nearest-exact", "linear", "trilinear", "area", "bilinear-aa",
                     "bicubic-aa"}
    grid = {(c.sub_label.split()[0], c.sub_label.count(",")) for c in cases
            if c.label == "grid_sample"}
    assert grid == {("bilinear", 3), ("nearest", 3), ("bicubic", 3), ("bilinear", 4),
                    ("nearest", 4)}  # 4-D and 5-D inputs


def test_references_are_torchs():
    refs = {c.label: c.reference for c in _cases()}
    assert refs == {"max_unpool1d": F.max_unpool1d, "max_unpool3d": F.max_unpool3d,
                    "conv_transpose1d": F.conv_transpose1d,
                    "conv_transpose3d": F.conv_transpose3d,
                    "interpolate_nd": F.interpolate, "grid_sample": F.grid_sample}


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_case_agrees_with_torch(case):
    result = bench.run_case(case, "cpu", torch.float32, min_run_time=1e-3, memory=False)
    assert result.status == "ok", result.reason
    assert result.max_rel_diff is not None and result.max_rel_diff <= 1e-4
