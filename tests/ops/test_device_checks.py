"""Mixed-device inputs and degenerate weights are refused (issue 15 item 8).

A CPU tensor mixed with a ``meta`` one makes the dispatcher pick the Meta (fake) kernel,
which used to hand back an uninitialized CPU tensor. Every op, forward and backward, through
the Python wrappers and through ``torch.ops`` directly, must raise a clear error naming the
argument instead. All-``meta`` inputs keep working (shape inference).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg.ops
from pyseg.ops import _library

NAMESPACES = _library.NAMESPACES


def _unpool_args(device_input="cpu", device_indices="cpu"):
    pooled, idx = F.max_pool2d(torch.randn(1, 2, 8, 8), 2, return_indices=True)
    return pooled.to(device_input), idx.to(device_indices)


def _conv_t_args():
    return torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3), torch.randn(3)


def _deform_args():
    return {"input": torch.randn(1, 2, 5, 5), "offset": torch.zeros(1, 18, 3, 3),
            "weight": torch.randn(3, 2, 3, 3), "bias": torch.randn(3),
            "mask": torch.ones(1, 9, 3, 3)}


@pytest.mark.parametrize("meta", ["input", "indices"])
def test_max_unpool2d_mixed_devices(meta):
    pooled, idx = _unpool_args("meta" if meta == "input" else "cpu",
                               "meta" if meta == "indices" else "cpu")
    with pytest.raises(RuntimeError, match="indices on (meta|cpu)"):
        pyseg.ops.max_unpool2d(pooled, idx, 2)
    for ns in NAMESPACES:
        with pytest.raises(RuntimeError, match="indices"):
            getattr(torch.ops, ns).max_unpool2d(pooled, idx, [8, 8])
        grad = torch.randn(1, 2, 8, 8, device="cpu" if meta == "indices" else "meta")
        with pytest.raises(RuntimeError, match="indices"):
            getattr(torch.ops, ns).max_unpool2d_backward(grad, idx)


@pytest.mark.parametrize("meta", ["weight", "bias", "input"])
def test_conv_transpose2d_mixed_devices(meta):
    x, w, b = _conv_t_args()
    args = {"input": x, "weight": w, "bias": b}
    args[meta] = args[meta].to("meta")
    other = "input" if meta != "input" else "weight"
    with pytest.raises(RuntimeError, match=f"({meta}|{other}) on"):
        pyseg.ops.conv_transpose2d(args["input"], args["weight"], args["bias"])
    for ns in NAMESPACES:
        with pytest.raises(RuntimeError, match=" on "):
            getattr(torch.ops, ns).conv_transpose2d(
                args["input"], args["weight"], args["bias"], [1, 1], [0, 0], [0, 0], 1, [1, 1])
        grad = torch.randn(1, 3, 6, 6, device="meta" if meta == "input" else "cpu")
        if meta != "bias":
            with pytest.raises(RuntimeError, match=" on "):
                getattr(torch.ops, ns).conv_transpose2d_backward(
                    grad, args["input"], args["weight"], [1, 1], [0, 0], [0, 0], 1, [1, 1],
                    [True, True, True])


@pytest.mark.parametrize("meta", ["offset", "weight", "bias", "mask", "input"])
def test_deform_conv2d_mixed_devices(meta):
    args = _deform_args()
    args[meta] = args[meta].to("meta")
    with pytest.raises(RuntimeError, match=" on (meta|cpu)"):
        pyseg.ops.deform_conv2d(**args)
    a = args
    for ns in NAMESPACES:
        with pytest.raises(RuntimeError, match=" on "):
            getattr(torch.ops, ns).deform_conv2d(
                a["input"], a["weight"], a["offset"], a["mask"], a["bias"], 1, 1, 0, 0, 1, 1,
                1, 1, True)
        grad = torch.randn(1, 3, 3, 3)
        with pytest.raises(RuntimeError, match=" on "):
            getattr(torch.ops, ns)._deform_conv2d_backward(
                grad, a["input"], a["weight"], a["offset"], a["mask"], a["bias"], 1, 1, 0, 0,
                1, 1, 1, 1, True)


def test_all_meta_inputs_still_infer_shapes():
    pooled, idx = _unpool_args("meta", "meta")
    assert pyseg.ops.max_unpool2d(pooled, idx, 2).shape == (1, 2, 8, 8)
    x, w, b = (t.to("meta") for t in _conv_t_args())
    out = pyseg.ops.conv_transpose2d(x, w, b, stride=2)
    assert out.device.type == "meta" and out.shape == (1, 3, 9, 9)
    args = {k: v.to("meta") for k, v in _deform_args().items()}
    assert pyseg.ops.deform_conv2d(**args).shape == (1, 3, 3, 3)
    x = torch.randn(1, 2, 4, 4, device="meta")
    assert pyseg.ops.interpolate(x, scale_factor=2, mode="bilinear").shape == (1, 2, 8, 8)
    assert pyseg.ops.bed_of_nails(x, 3).shape == (1, 2, 12, 12)


# --- degenerate conv_transpose2d weights, refused as torch refuses them ----------------------

def _torch_error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.type, str(info.value)


@pytest.mark.parametrize("weight_shape", [(2, 3, 0, 3), (2, 3, 3, 0), (2, 0, 3, 3),
                                          (2, 0, 0, 3)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv_transpose2d_degenerate_weight_like_torch(weight_shape, with_bias):
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(*weight_shape)
    b = torch.randn(weight_shape[1]) if with_bias else None
    expected_type, expected_message = _torch_error(lambda: F.conv_transpose2d(x, w, b))
    for ns in NAMESPACES:
        with _library_namespace(ns), pytest.raises(expected_type) as info:
            pyseg.ops.conv_transpose2d(x, w, b)
        assert str(info.value).splitlines()[0] == expected_message.splitlines()[0]
    # The fake kernel refuses them too.
    with pytest.raises(expected_type):
        pyseg.ops.conv_transpose2d(x.to("meta"), w.to("meta"), None if b is None else b.to("meta"))


def _library_namespace(ns):
    import contextlib

    return _library.emulated() if ns == "pyseg_emu" else contextlib.nullcontext()
