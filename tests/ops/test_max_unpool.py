"""max_unpool2d against torch.nn.functional.max_unpool2d, on every backend."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import max_unpool2d


def pooled(shape, kernel, stride=None, padding=0, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    y, idx = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    return y.to(device), idx.to(device)


CASES = [
    # (input shape, kernel, stride, padding)
    ((2, 3, 8, 8), 2, None, 0),
    ((1, 4, 9, 7), 3, 2, 1),  # overlapping windows: duplicate indices
    ((3, 2, 10, 6), (2, 3), (2, 1), 0),
    ((2, 5, 7, 7), 3, 3, 1),
    ((4, 6, 6), 2, None, 0),  # unbatched
    ((1, 1, 1, 1), 1, None, 0),
]


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_matches_torch(backend, shape, kernel, stride, padding, dtype):
    y, idx = pooled(shape, kernel, stride, padding, dtype, backend.device)
    ours = max_unpool2d(y, idx, kernel, stride, padding)
    ref = F.max_unpool2d(y.cpu(), idx.cpu(), kernel, stride, padding)
    # Duplicate indices come from one input element picked by two windows: same value.
    torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=0)


@pytest.mark.parametrize("output_size", [(9, 9), [1, 2, 9, 8], torch.Size([8, 9])])
def test_output_size(backend, output_size):
    y, idx = pooled((1, 2, 9, 9), 2, device=backend.device)
    ours = max_unpool2d(y, idx, 2, output_size=output_size)
    ref = F.max_unpool2d(y.cpu(), idx.cpu(), 2, output_size=output_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=0)


@pytest.mark.parametrize("output_size,message", [
    ((12, 8), "invalid output_size"),
    ((1, 2, 3), "2 or 4 elements"),
])
def test_bad_output_size_like_torch(output_size, message):
    y, idx = pooled((1, 2, 8, 8), 2)
    with pytest.raises(ValueError, match=message):
        F.max_unpool2d(y, idx, 2, output_size=output_size)
    with pytest.raises(ValueError, match=message):
        max_unpool2d(y, idx, 2, output_size=output_size)


def test_channels_last(backend):
    y, idx = pooled((2, 19, 6, 6), 2, device=backend.device)
    y_cl = y.contiguous(memory_format=torch.channels_last)
    ours = max_unpool2d(y_cl, idx, 2)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    ref = F.max_unpool2d(y.cpu(), idx.cpu(), 2)
    torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=0)
    # indices in the other memory format than the input
    ours2 = max_unpool2d(y, idx.contiguous(memory_format=torch.channels_last), 2)
    torch.testing.assert_close(ours2.cpu(), ref, rtol=0, atol=0)


def test_non_contiguous(backend):
    y, idx = pooled((2, 6, 8, 8), 2, device=backend.device)
    ys, ids = y[:, ::2], idx[:, ::2]
    assert not ys.is_contiguous()
    torch.testing.assert_close(
        max_unpool2d(ys, ids, 2).cpu(), F.max_unpool2d(ys.cpu(), ids.cpu(), 2), rtol=0, atol=0
    )


def test_duplicates_highest_position_wins(backend):
    # Two inputs of one plane name cell 5; the later one (position 3) must win, every time.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], device=backend.device)
    idx = torch.tensor([[[[5, 0], [7, 5]]]], device=backend.device)
    out = max_unpool2d(x, idx, 2)
    expected = torch.zeros(1, 1, 4, 4)
    expected.view(-1)[0] = 2.0
    expected.view(-1)[7] = 3.0
    expected.view(-1)[5] = 4.0
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)
    cl = max_unpool2d(
        x.expand(1, 3, 2, 2).contiguous(memory_format=torch.channels_last),
        idx.expand(1, 3, 2, 2).contiguous(memory_format=torch.channels_last), 2,
    )
    torch.testing.assert_close(cl.cpu(), expected.expand(1, 3, 4, 4), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [16, -1, 2**31 + 3, -(2**40)])
def test_invalid_index_raises_and_names_it(backend, bad):
    y, idx = pooled((2, 3, 4, 4), 2, device=backend.device)
    idx = idx.clone()
    idx[1, 2, 1, 0] = bad
    with pytest.raises(RuntimeError, match=rf"invalid max index: {bad} .*\[1, 2, 1, 0\]"):
        max_unpool2d(y, idx, 2)
    # the backward kernel validates too
    grad = torch.ones(2, 3, 4, 4, device=backend.device)
    with pytest.raises(RuntimeError, match=rf"invalid max index: {bad}"):
        torch.ops.pyseg.max_unpool2d_backward(grad.cpu(), idx.cpu())


def test_bad_arguments():
    y, idx = pooled((2, 3, 4, 4), 2)
    with pytest.raises(RuntimeError, match="should be type int64"):
        max_unpool2d(y, idx.int(), 2)
    with pytest.raises(RuntimeError, match="same as that of the input"):
        max_unpool2d(y, idx[:, :2], 2)
    with pytest.raises(RuntimeError, match="3d or 4d"):
        max_unpool2d(y[0, 0], idx[0, 0], 2)
    with pytest.raises(RuntimeError, match="non-zero size"):
        max_unpool2d(torch.randn(2, 0, 2, 2), torch.zeros(2, 0, 2, 2, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        max_unpool2d(y, idx, "2")
    with pytest.raises(ValueError, match="stride"):
        max_unpool2d(y, idx, 2, stride=(1, 2, 3))
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        max_unpool2d(y.long(), idx, 2)


def test_empty_batch_and_empty_output(backend):
    y = torch.randn(0, 3, 2, 2, device=backend.device)
    idx = torch.zeros(0, 3, 2, 2, dtype=torch.long, device=backend.device)
    assert max_unpool2d(y, idx, 2).shape == F.max_unpool2d(y.cpu(), idx.cpu(), 2).shape
    y, idx = pooled((2, 3, 4, 4), 2, device=backend.device)
    out = torch.ops.pyseg.max_unpool2d(y.cpu(), idx.cpu(), [0, 0])
    assert out.shape == torch.ops.aten.max_unpool2d(y.cpu(), idx.cpu(), [0, 0]).shape


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradient_matches_torch(backend, channels_last):
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    y1 = y.detach().to(backend.device).requires_grad_()
    max_unpool2d(y1, idx.to(backend.device), 3, 2, 1, output_size=(7, 9)).backward(g.to(backend.device))
    y2 = y.detach().clone().requires_grad_()
    F.max_unpool2d(y2, idx, 3, 2, 1, output_size=(7, 9)).backward(g)
    torch.testing.assert_close(y1.grad.cpu(), y2.grad, rtol=0, atol=0)


def test_gradcheck(backend):
    # unique indices (non-overlapping pooling) so the op is a true linear map
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    y = y.to(backend.device).requires_grad_()
    idx = idx.to(backend.device)
    assert torch.autograd.gradcheck(lambda t: max_unpool2d(t, idx, 2), (y,))
    assert torch.autograd.gradgradcheck(lambda t: max_unpool2d(t, idx, 2), (y,))


def test_opcheck():
    y, idx = pooled((2, 3, 6, 6), 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg.max_unpool2d, (y.requires_grad_(), idx, [6, 6]))
    g = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg.max_unpool2d_backward, (g, idx))


@pytest.mark.emu
def test_opcheck_emulated(emu):
    y, idx = pooled((1, 2, 4, 4), 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg_emu.max_unpool2d, (y.requires_grad_(), idx, [4, 4]))


def test_torch_compile_fullgraph():
    unpool = pyseg.nn.MaxUnpool2d(2)

    def f(x):
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        return unpool(y * 2, idx).relu()

    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), f(x))


def test_module_drop_in():
    ours, ref = pyseg.nn.MaxUnpool2d(3, 2, 1), torch.nn.MaxUnpool2d(3, 2, 1)
    assert (ours.kernel_size, ours.stride, ours.padding) == (ref.kernel_size, ref.stride, ref.padding)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(1, 2, 9, 9)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    torch.testing.assert_close(ours(y, idx, output_size=x.shape), ref(y, idx, output_size=x.shape))
    assert "kernel_size=(3, 3)" in repr(ours)
