"""pyseg.ops.bed_of_nails: values at the top-left of each cell, zeros elsewhere."""

from __future__ import annotations

import pytest
import torch

from pyseg.ops import bed_of_nails


def _reference(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * sh, w * sw, dtype=x.dtype, device=x.device)
    out[:, :, ::sh, ::sw] = x
    return out


@pytest.mark.parametrize("scale", [1, 2, 3, (2, 3), (1, 4)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_values_and_gradient(backend, scale, channels_last, dtype):
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).to(dtype).to(backend.device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = bed_of_nails(x, scale)
    assert torch.equal(y, _reference(x.detach(), sh, sw))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    g = torch.randn(y.shape, dtype=torch.float64).to(dtype).contiguous(memory_format=fmt)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.equal(gx, g[:, :, ::sh, ::sw])
    assert gx.is_contiguous(memory_format=fmt)


def test_gradcheck(backend):
    x = torch.randn(1, 2, 3, 2, dtype=torch.float64, device=backend.device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: bed_of_nails(t, (2, 3)), (x,))
    if not backend.emulated:
        assert torch.autograd.gradgradcheck(lambda t: bed_of_nails(t, 2), (x,))


def test_non_contiguous_empty_and_batch_one(backend):
    base = torch.randn(3, 2, 6, 8, device=backend.device)
    for x in (base[:, :, ::2, 1:], base.transpose(2, 3), base[1:2]):
        assert torch.equal(bed_of_nails(x, 2), _reference(x, 2, 2))
    empty = torch.zeros(0, 3, 4, 5, device=backend.device, requires_grad=True)
    y = bed_of_nails(empty, 2)
    assert y.shape == (0, 3, 8, 10)
    (g,) = torch.autograd.grad(y.sum(), empty)
    assert g.shape == empty.shape


def test_bad_arguments():
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        bed_of_nails(x, 0)
    with pytest.raises(TypeError, match="scale_factor"):
        bed_of_nails(x, 1.5)
    with pytest.raises(ValueError, match="scale_factor"):
        bed_of_nails(x, (1, 2, 3))
    with pytest.raises(ValueError, match="4-D"):
        bed_of_nails(x[0], 2)
    with pytest.raises(TypeError, match="input must be a Tensor"):
        bed_of_nails([1.0], 2)
    with pytest.raises(RuntimeError, match="not a multiple of scale_factor"):
        torch.ops.pyseg.bed_of_nails_backward(torch.randn(1, 2, 5, 4), [2, 2])
    with pytest.raises(RuntimeError, match="floating point"):
        torch.ops.pyseg.bed_of_nails(x.long(), [2, 2])


def test_opcheck():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyseg.bed_of_nails, (x, [2, 3]))
    torch.library.opcheck(torch.ops.pyseg.bed_of_nails, (x.contiguous(memory_format=torch.channels_last), [2, 2]))
    torch.library.opcheck(torch.ops.pyseg.bed_of_nails_backward, (torch.randn(2, 3, 8, 15, dtype=torch.float64), [2, 3]))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def f(x):
        return bed_of_nails(x, 2) * 3

    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(out, f(x))
    (g,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(g, torch.full_like(x, 3.0))
