"""max_unpool1d / max_unpool3d against torch.nn.functional.max_unpool1d / 3d, on every
backend (CPU kernels and the emulated CUDA kernels in several thread orders)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import max_unpool1d, max_unpool3d


def pooled3d(shape, kernel, stride=None, padding=0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return F.max_pool3d(x, kernel, stride, padding, return_indices=True)


def pooled1d(shape, kernel, stride=None, padding=0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return F.max_pool1d(x, kernel, stride, padding, return_indices=True)


CASES_3D = [
    # (input shape, kernel, stride, padding)
    ((2, 3, 4, 6, 8), 2, None, 0),
    ((1, 2, 5, 7, 5), 3, 2, 1),  # overlapping windows: duplicate indices
    ((2, 2, 6, 4, 9), (2, 1, 3), (2, 1, 2), 0),
    ((1, 3, 7, 7, 7), 3, 3, 1),
    ((3, 4, 4, 4), 2, None, 0),  # unbatched
    ((1, 1, 1, 1, 1), 1, None, 0),
]

CASES_1D = [
    ((2, 3, 8), 2, None, 0),
    ((1, 4, 9), 3, 2, 1),
    ((3, 2, 10), 3, 1, 0),
    ((4, 7), 2, None, 0),  # unbatched
    ((1, 1, 1), 1, None, 0),
]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES_3D)
@pytest.mark.parametrize("dtype", DTYPES)
def test_3d_matches_torch(backend, shape, kernel, stride, padding, dtype):
    y, idx = pooled3d(shape, kernel, stride, padding, dtype)
    ours = max_unpool3d(y, idx, kernel, stride, padding)
    ref = F.max_unpool3d(y, idx, kernel, stride, padding)
    # Duplicate indices come from one input element picked by two windows: same value.
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES_1D)
@pytest.mark.parametrize("dtype", DTYPES)
def test_1d_matches_torch(backend, shape, kernel, stride, padding, dtype):
    y, idx = pooled1d(shape, kernel, stride, padding, dtype)
    ours = max_unpool1d(y, idx, kernel, stride, padding)
    ref = F.max_unpool1d(y, idx, kernel, stride, padding)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("output_size", [(5, 9, 9), [1, 2, 5, 9, 9], torch.Size([5, 9, 9])])
def test_3d_output_size(backend, output_size):
    y, idx = pooled3d((1, 2, 5, 9, 9), 2)
    ours = max_unpool3d(y, idx, 2, output_size=output_size)
    ref = F.max_unpool3d(y, idx, 2, output_size=output_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("output_size", [(9,), [1, 2, 9], torch.Size([9])])
def test_1d_output_size(backend, output_size):
    y, idx = pooled1d((1, 2, 9), 2)
    ours = max_unpool1d(y, idx, 2, output_size=output_size)
    ref = F.max_unpool1d(y, idx, 2, output_size=output_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("fn,ref_fn,pool,output_size,message", [
    (max_unpool3d, F.max_unpool3d, pooled3d, (12, 8, 8), "invalid output_size"),
    (max_unpool3d, F.max_unpool3d, pooled3d, (1, 2), "3 or 5 elements"),
    (max_unpool1d, F.max_unpool1d, pooled1d, (12,), "invalid output_size"),
    (max_unpool1d, F.max_unpool1d, pooled1d, (1, 2), "1 or 3 elements"),
])
def test_bad_output_size_like_torch(fn, ref_fn, pool, output_size, message):
    y, idx = pool((1, 2, 8, 8, 8) if fn is max_unpool3d else (1, 2, 8), 2)
    with pytest.raises(ValueError, match=message):
        ref_fn(y, idx, 2, output_size=output_size)
    with pytest.raises(ValueError, match=message):
        fn(y, idx, 2, output_size=output_size)


def test_3d_channels_last(backend):
    y, idx = pooled3d((2, 19, 4, 6, 6), 2)
    y_cl = y.contiguous(memory_format=torch.channels_last_3d)
    ours = max_unpool3d(y_cl, idx, 2)
    assert ours.is_contiguous(memory_format=torch.channels_last_3d)
    ref = F.max_unpool3d(y, idx, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    # indices in the other memory format than the input
    ours2 = max_unpool3d(y, idx.contiguous(memory_format=torch.channels_last_3d), 2)
    torch.testing.assert_close(ours2, ref, rtol=0, atol=0)


def test_non_contiguous(backend):
    y, idx = pooled3d((2, 6, 4, 8, 8), 2)
    ys, ids = y[:, ::2], idx[:, ::2]
    assert not ys.is_contiguous()
    torch.testing.assert_close(max_unpool3d(ys, ids, 2), F.max_unpool3d(ys, ids, 2), rtol=0, atol=0)
    y1, idx1 = pooled1d((2, 6, 8), 2)
    torch.testing.assert_close(
        max_unpool1d(y1[:, ::2], idx1[:, ::2], 2), F.max_unpool1d(y1[:, ::2], idx1[:, ::2], 2),
        rtol=0, atol=0,
    )


def test_3d_duplicates_highest_position_wins(backend):
    # Three inputs of one volume name cell 5; the last one (position 7) must win, every time.
    x = torch.arange(1.0, 9.0).reshape(1, 1, 2, 2, 2)
    idx = torch.tensor([5, 0, 7, 5, 1, 2, 3, 5]).reshape(1, 1, 2, 2, 2)
    out = max_unpool3d(x, idx, 2)
    expected = torch.zeros(1, 1, 4, 4, 4)
    flat = expected.view(-1)
    flat[0], flat[7], flat[1], flat[2], flat[3], flat[5] = 2.0, 3.0, 5.0, 6.0, 7.0, 8.0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    cl = max_unpool3d(
        x.expand(1, 3, 2, 2, 2).contiguous(memory_format=torch.channels_last_3d),
        idx.expand(1, 3, 2, 2, 2).contiguous(memory_format=torch.channels_last_3d), 2,
    )
    torch.testing.assert_close(cl, expected.expand(1, 3, 4, 4, 4), rtol=0, atol=0)


def test_1d_duplicates_highest_position_wins(backend):
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    idx = torch.tensor([[[4, 0, 4]]])
    torch.testing.assert_close(
        max_unpool1d(x, idx, 2), torch.tensor([[[2.0, 0.0, 0.0, 0.0, 3.0, 0.0]]]), rtol=0, atol=0
    )


@pytest.mark.parametrize("bad", [512, -1, 2**31 + 3, -(2**40)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_3d_invalid_index_raises_and_names_it(backend, bad, channels_last):
    y, idx = pooled3d((2, 3, 8, 8, 8), 2)
    idx = idx.clone()
    idx[1, 2, 3, 1, 0] = bad
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last_3d)
        idx = idx.contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(RuntimeError, match=rf"invalid max index: {bad} \(output volumes are of "
                                           rf"size 8x8x8\).*\[1, 2, 3, 1, 0\]"):
        max_unpool3d(y, idx, 2, output_size=(8, 8, 8))
    # the backward kernel validates too
    grad = torch.ones(2, 3, 8, 8, 8)
    with pytest.raises(RuntimeError, match=rf"invalid max index: {bad}"):
        pyseg.ops._library.op("max_unpool3d_backward")(grad, idx)


def test_1d_invalid_index(backend):
    y, idx = pooled1d((2, 3, 8), 2)
    idx = idx.clone()
    idx[1, 2, 3] = 8
    with pytest.raises(RuntimeError, match=r"invalid max index: 8 \(output volumes are of size 8x1\)"):
        max_unpool1d(y, idx, 2)


def test_3d_bad_arguments_like_torch():
    y, idx = pooled3d((2, 3, 4, 4, 4), 2)
    cases = [
        ((y, idx.int(), 2), {}, "should be type int64"),
        ((y, idx[:, :2], 2), {}, "same as that of the input"),
        ((y[0, 0], idx[0, 0], 2), {}, "should be a 4d or 5d Tensor"),
        ((torch.randn(2, 0, 2, 2, 2), torch.zeros(2, 0, 2, 2, 2, dtype=torch.long), 2), {},
         "non-zero size for non-batch dimensions"),
        ((y, idx, 2), {"stride": 0}, "strides should be greater than zero"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(RuntimeError, match=message):
            F.max_unpool3d(*args, **kwargs)
        with pytest.raises(RuntimeError, match=message):
            max_unpool3d(*args, **kwargs)
    with pytest.raises(TypeError, match="kernel_size"):
        max_unpool3d(y, idx, "2")
    with pytest.raises(ValueError, match="stride"):
        max_unpool3d(y, idx, 2, stride=(1, 2))
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        max_unpool3d(y.long(), idx, 2)
    with pytest.raises(RuntimeError, match="exactly three elements"):
        torch.ops.pyseg.max_unpool3d(y, idx, [4, 4])


def test_1d_bad_arguments_like_torch():
    y, idx = pooled1d((2, 3, 8), 2)
    for args, message in [((y, idx.int(), 2), "should be type int64"),
                          ((y[..., None], idx[..., None], 2), "3d or 4d")]:
        with pytest.raises(RuntimeError, match=message):
            F.max_unpool1d(*args)
        with pytest.raises(RuntimeError, match=message):
            max_unpool1d(*args)


def test_empty(backend):
    y = torch.randn(0, 3, 2, 2, 2)
    idx = torch.zeros(0, 3, 2, 2, 2, dtype=torch.long)
    assert max_unpool3d(y, idx, 2).shape == F.max_unpool3d(y, idx, 2).shape == (0, 3, 4, 4, 4)
    y, idx = pooled3d((2, 3, 4, 4, 4), 2)
    out = pyseg.ops._library.op("max_unpool3d")(y, idx, [0, 0, 0])
    assert out.shape == torch.ops.aten.max_unpool3d(y, idx, [0, 0, 0], [2, 2, 2], [0, 0, 0]).shape
    y1 = torch.randn(0, 3, 2)
    assert max_unpool1d(y1, torch.zeros(0, 3, 2, dtype=torch.long), 2).shape == (0, 3, 4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_3d_gradient_matches_torch(backend, channels_last):
    x = torch.randn(2, 5, 5, 7, 9, dtype=torch.float64)
    y, idx = F.max_pool3d(x, 3, 2, 1, return_indices=True)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last_3d)
    g = torch.randn(2, 5, 5, 7, 9, dtype=torch.float64)
    y1 = y.detach().requires_grad_()
    max_unpool3d(y1, idx, 3, 2, 1, output_size=(5, 7, 9)).backward(g)
    y2 = y.detach().clone().requires_grad_()
    F.max_unpool3d(y2, idx, 3, 2, 1, output_size=(5, 7, 9)).backward(g)
    torch.testing.assert_close(y1.grad, y2.grad, rtol=0, atol=0)


def test_1d_gradient_matches_torch(backend):
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    y, idx = F.max_pool1d(x, 3, 2, 1, return_indices=True)
    g = torch.randn(2, 5, 9, dtype=torch.float64)
    y1, y2 = y.detach().requires_grad_(), y.detach().clone().requires_grad_()
    max_unpool1d(y1, idx, 3, 2, 1, output_size=(9,)).backward(g)
    F.max_unpool1d(y2, idx, 3, 2, 1, output_size=(9,)).backward(g)
    torch.testing.assert_close(y1.grad, y2.grad, rtol=0, atol=0)


def test_gradcheck(backend):
    # unique indices (non-overlapping pooling) so the ops are true linear maps
    y, idx = F.max_pool3d(torch.randn(2, 2, 4, 4, 6, dtype=torch.float64), 2, return_indices=True)
    y = y.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: max_unpool3d(t, idx, 2), (y,))
    assert torch.autograd.gradgradcheck(lambda t: max_unpool3d(t, idx, 2), (y,))
    y1, idx1 = F.max_pool1d(torch.randn(2, 3, 8, dtype=torch.float64), 2, return_indices=True)
    y1 = y1.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: max_unpool1d(t, idx1, 2), (y1,))


def test_opcheck():
    y, idx = pooled3d((2, 3, 4, 4, 4), 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg.max_unpool3d, (y.requires_grad_(), idx, [4, 4, 4]))
    g = torch.randn(2, 3, 4, 4, 4, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg.max_unpool3d_backward, (g, idx))


@pytest.mark.emu
def test_opcheck_emulated(emu):
    y, idx = pooled3d((1, 2, 4, 4, 4), 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg_emu.max_unpool3d, (y.requires_grad_(), idx, [4, 4, 4]))


def test_torch_compile_fullgraph():
    unpool3, unpool1 = pyseg.nn.MaxUnpool3d(2), pyseg.nn.MaxUnpool1d(2)

    def f(x, v):
        y, idx = F.max_pool3d(x, 2, return_indices=True)
        z, jdx = F.max_pool1d(v, 2, return_indices=True)
        return unpool3(y * 2, idx).relu(), unpool1(z * 2, jdx)

    x, v = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 8)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(x, v), f(x, v)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ours_cls,ref_cls,shape,pool", [
    (pyseg.nn.MaxUnpool3d, torch.nn.MaxUnpool3d, (1, 2, 7, 9, 9), F.max_pool3d),
    (pyseg.nn.MaxUnpool1d, torch.nn.MaxUnpool1d, (1, 2, 9), F.max_pool1d),
])
def test_module_drop_in(ours_cls, ref_cls, shape, pool):
    ours, ref = ours_cls(3, 2, 1), ref_cls(3, 2, 1)
    assert (ours.kernel_size, ours.stride, ours.padding) == (ref.kernel_size, ref.stride, ref.padding)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(shape)
    y, idx = pool(x, 3, 2, 1, return_indices=True)
    torch.testing.assert_close(ours(y, idx, output_size=x.shape), ref(y, idx, output_size=x.shape))
    assert "kernel_size=" in repr(ours)


def _opinfo_samples(name, variant, dtype, requires_grad=False):
    from torch.testing._internal.common_methods_invocations import op_db

    (info,) = [o for o in op_db if o.name == name and o.variant_test_name == variant]
    return list(info.sample_inputs("cpu", dtype, requires_grad=requires_grad))


OPINFO = [("nn.functional.max_unpool1d", max_unpool1d, F.max_unpool1d),
          ("nn.functional.max_unpool3d", max_unpool3d, F.max_unpool3d)]


@pytest.mark.parametrize("name,ours,ref", OPINFO)
@pytest.mark.parametrize("variant", ["", "grad"])
def test_opinfo_samples(name, ours, ref, variant):
    """Every CPU sample of torch's OpInfo entries: forward in float32 and float64, and
    (float64) the gradient, against torch. The samples' overlapping windows give duplicate
    indices of one value, so forward values agree exactly."""
    count = 0
    for dtype in (torch.float32, torch.float64):
        for s in _opinfo_samples(name, variant, dtype):
            torch.testing.assert_close(ours(s.input, *s.args, **s.kwargs),
                                       ref(s.input, *s.args, **s.kwargs), rtol=0, atol=0)
            count += 1
    for s in _opinfo_samples(name, variant, torch.float64, requires_grad=True):
        a = s.input.detach().requires_grad_()
        b = s.input.detach().requires_grad_()
        out_a, out_b = ours(a, *s.args, **s.kwargs), ref(b, *s.args, **s.kwargs)
        g = torch.randn_like(out_b)
        (ga,) = torch.autograd.grad(out_a, a, g)
        (gb,) = torch.autograd.grad(out_b, b, g)
        torch.testing.assert_close(ga, gb, rtol=0, atol=0)
        count += 1
    assert count > 0
