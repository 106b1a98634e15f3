"""Output sizes computed in int64 with overflow detection (issue 15 item 7), and the fake
kernels agreeing with the real ones on every input, valid or not.

Each agreement case calls ``torch.ops.<ns>.<op>`` once on real CPU tensors and once on fake
tensors (``FakeTensorMode``, what ``torch.compile`` traces with): both must raise the same
exception type, or both return a tensor of the same shape, strides and dtype.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import pyseg.ops
from pyseg.ops import _library

BIG = 2**62
NAMESPACES = _library.NAMESPACES


def _outcome(fn, args):
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001 -- the type is what must agree
        return ("raises", type(e))
    return ("returns", tuple(out.shape), out.stride(), out.dtype)


def _agree(ns: str, name: str, *args):
    fn = getattr(getattr(torch.ops, ns), name)
    real = _outcome(fn, args)
    with FakeTensorMode() as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        fake = _outcome(fn, fake_args)
    assert real == fake, f"{name}{[getattr(a, 'shape', a) for a in args]}"
    return real


def _x(*shape, channels_last=False):
    x = torch.randn(*shape)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --- bed_of_nails ---------------------------------------------------------------------------

def test_bed_of_nails_huge_scale_names_the_argument():
    with pytest.raises(ValueError, match="scale_factor"):
        pyseg.ops.bed_of_nails(torch.randn(1, 1, 4, 4), 2**62)
    with pytest.raises(ValueError, match="scale_factor"):
        pyseg.ops.bed_of_nails(torch.randn(1, 1, 4, 4), (3, 2**62))
    with pytest.raises(ValueError, match="scale_factor"):  # beyond int64 itself
        pyseg.ops.bed_of_nails(torch.randn(1, 1, 4, 4), 2**64)
    # The same through torch.compile's tracing (fake tensors).
    with FakeTensorMode() as mode, pytest.raises(ValueError, match="scale_factor"):
        pyseg.ops.bed_of_nails(mode.from_tensor(torch.randn(1, 1, 4, 4)), 2**62)


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("scale", [[1, 1], [2, 3], [BIG, 1], [1, BIG], [2**61, 2**61],
                                   [2**31, 2**31], [2**40, 2**30], [0, 1], [-1, 2], [2**62, 8]])
@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (0, 3, 4, 4), (2, 3, 5, 7)])
def test_bed_of_nails_fake_agrees_with_real(ns, scale, shape):
    outcome = _agree(ns, "bed_of_nails", _x(*shape), scale)
    if max(scale) >= 2**30 and shape[0]:
        assert outcome[0] == "raises" and outcome[1] is ValueError


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("scale", [[2, 2], [3, 1], [0, 1], [BIG, 1]])
def test_bed_of_nails_backward_fake_agrees_with_real(ns, scale):
    _agree(ns, "bed_of_nails_backward", _x(2, 3, 6, 4), scale)


def test_bed_of_nails_compiles_and_matches():
    x = torch.randn(2, 3, 4, 5)
    compiled = torch.compile(lambda t: pyseg.ops.bed_of_nails(t, (2, 3)), backend="eager",
                             fullgraph=True)
    torch.testing.assert_close(compiled(x), pyseg.ops.bed_of_nails(x, (2, 3)))


# --- interpolate ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, argument", [
    ({"scale_factor": 1e30}, "scale_factor"),
    ({"scale_factor": float(2**62)}, "scale_factor"),
    ({"scale_factor": (2.0, float("inf"))}, "scale_factor"),
    ({"scale_factor": float("nan")}, "scale_factor"),
    ({"size": (2**62, 2**62)}, "size"),
    ({"size": (2**63, 4)}, "size"),
])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolate_huge_output_names_the_argument(kwargs, argument, mode):
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=argument):
        pyseg.ops.interpolate(x, mode=mode, **kwargs)
    # torch refuses these too (with a message that names no argument).
    with pytest.raises((RuntimeError, ValueError, OverflowError, TypeError)):
        F.interpolate(x, mode=mode, **kwargs)


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("size", [[8, 8], [3, 5], [BIG, BIG], [2**32, 2**32], [0, 4], [-2, 4],
                                  [2**62, 1]])
@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (0, 2, 4, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("mode", ["nearest", "bicubic", "area"])
def test_upsample2d_fake_agrees_with_real(ns, size, shape, mode):
    if shape[0] and size[0] * size[1] > 2**40 and size[0] * size[1] * shape[1] < 2**63:
        pytest.skip("a real output this large cannot be allocated")
    _agree(ns, "upsample2d", _x(*shape, channels_last=shape[0] == 2), size, mode, False,
           None, None)


# --- max_unpool2d ---------------------------------------------------------------------------

def _pooled(n=1, c=2, h=4, w=4):
    return F.max_pool2d(torch.randn(n, c, 2 * h, 2 * w), 2, return_indices=True)


def test_max_unpool2d_huge_output_names_the_argument():
    pooled, idx = _pooled()
    with pytest.raises(ValueError, match="stride"):
        pyseg.ops.max_unpool2d(pooled, idx, 2, stride=2**62)
    with pytest.raises(ValueError, match="kernel_size"):
        pyseg.ops.max_unpool2d(pooled, idx, 2**63 - 1)
    with pytest.raises(ValueError, match="output_size"):
        torch.ops.pyseg.max_unpool2d(pooled, idx, [2**62, 4])


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("size", [[8, 8], [9, 8], [BIG, 4], [2**32, 2**32], [-1, 8]])
def test_max_unpool2d_fake_agrees_with_real(ns, size):
    pooled, idx = _pooled()
    _agree(ns, "max_unpool2d", pooled, idx, size)
    _agree(ns, "max_unpool2d", pooled.contiguous(memory_format=torch.channels_last),
           idx.contiguous(memory_format=torch.channels_last), size)


# --- conv_transpose2d -----------------------------------------------------------------------

@pytest.mark.parametrize("args, argument", [
    ({"stride": 2**62}, "stride"),
    ({"stride": (1, 2**63)}, "stride"),
    ({"dilation": 2**62}, "dilation"),
    ({"stride": 2**40, "padding": 0}, "stride"),
])
def test_conv_transpose2d_huge_output_names_the_argument(args, argument):
    x, w = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match=argument):
        pyseg.ops.conv_transpose2d(x, w, **args)


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("stride, padding, dilation, output_padding", [
    ([1, 1], [0, 0], [1, 1], [0, 0]),
    ([2, 3], [1, 0], [1, 2], [1, 0]),
    ([BIG, 1], [0, 0], [1, 1], [0, 0]),
    ([1, 1], [0, 0], [BIG, 1], [0, 0]),
    ([2**31, 2**31], [0, 0], [1, 1], [0, 0]),
    ([1, 1], [BIG, 0], [1, 1], [0, 0]),       # output too small
    ([1, 1], [2**63 - 1, 0], [1, 1], [0, 0]),  # 2 * padding overflows
    ([0, 1], [0, 0], [1, 1], [0, 0]),
    ([2**63 - 1, 1], [0, 0], [1, 1], [2**63 - 2, 0]),
])
def test_conv_transpose2d_fake_agrees_with_real(ns, stride, padding, dilation, output_padding):
    x, w, b = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3), torch.randn(3)
    _agree(ns, "conv_transpose2d", x, w, b, stride, padding, output_padding, 1, dilation)


# --- deform_conv2d --------------------------------------------------------------------------

@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("pad, dil, stride", [
    (1, 1, 1), (0, 1, 2), (BIG, 1, 1), (2**61, 1, 1), (0, BIG, 1), (2**63 - 1, 1, 1),
    (0, 1, 2**62),
])
def test_deform_conv2d_fake_agrees_with_real(ns, pad, dil, stride):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    out = (5 + 2 * min(pad, 1) - 3) // stride + 1 if dil == 1 and pad <= 1 else 3
    offset, mask = torch.zeros(1, 18, out, out), torch.ones(1, 9, out, out)
    outcome = _agree(ns, "deform_conv2d", x, w, offset, mask, torch.zeros(3), stride, stride,
                     pad, pad, dil, dil, 1, 1, True)
    if pad >= BIG or dil >= BIG:
        assert outcome == ("raises", ValueError)


def test_deform_conv2d_huge_padding_names_the_argument():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="padding"):
        pyseg.ops.deform_conv2d(x, torch.zeros(1, 18, 3, 3), w, padding=2**62)
    with pytest.raises(ValueError, match="padding"):
        pyseg.ops.deform_conv2d(x, torch.zeros(1, 18, 3, 3), w, padding=2**63)
