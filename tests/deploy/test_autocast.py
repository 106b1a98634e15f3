"""Autocast: each op runs in the dtype torch (or torchvision) picks for the op it stands in
for, on CPU (bfloat16) and, through the emulated CUDA kernels, with the CUDA rules
(float16); every built-in network runs forward, backward and a training step under
``torch.autocast("cpu", dtype=torch.bfloat16)``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from tests.conftest import _need_emulator
from tests.deploy.models import CONFIGS, build, torch_twin

ops = pyseg.ops


def has_kernel(qualified: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key)


# pyseg op -> the aten op torch registers (or does not register) an autocast rule for.
COUNTERPARTS = {
    "conv_transpose2d": "aten::conv_transpose2d.input",
    "max_unpool2d": "aten::max_unpool2d",
    "upsample2d": "aten::upsample_bilinear2d",
}


@pytest.mark.parametrize("key", ["AutocastCPU", "AutocastCUDA"])
@pytest.mark.parametrize("name", sorted(COUNTERPARTS))
def test_autocast_kernels_where_torch_has_them(name, key):
    assert has_kernel(f"pyseg::{name}", key) == has_kernel(COUNTERPARTS[name], key)


def test_deform_conv2d_autocast_kernels():
    # torchvision registers deform_conv2d's rule for CUDA; pyseg applies it on CPU as well.
    pytest.importorskip("torchvision")
    assert has_kernel("torchvision::deform_conv2d", "AutocastCUDA")
    assert has_kernel("pyseg::deform_conv2d", "AutocastCUDA")
    assert has_kernel("pyseg::deform_conv2d", "AutocastCPU")
    assert not has_kernel("pyseg::bed_of_nails", "AutocastCPU")


def _unpool_inputs(dtype=torch.float32):
    pooled, idx = F.max_pool2d(torch.randn(2, 3, 8, 10), 2, return_indices=True)
    return pooled.to(dtype), idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cpu_output_dtypes_follow_torch(dtype):
    x = torch.randn(2, 4, 6, 7, dtype=dtype)
    w = torch.randn(4, 3, 3, 3, dtype=dtype)
    pooled, idx = _unpool_inputs(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pairs = [
            (ops.conv_transpose2d(x, w, stride=2), F.conv_transpose2d(x, w, stride=2)),
            (ops.max_unpool2d(pooled, idx, 2), F.max_unpool2d(pooled, idx, 2)),
        ]
        for mode in ("nearest", "bilinear", "bicubic"):
            pairs.append((ops.interpolate(x, scale_factor=2, mode=mode),
                          F.interpolate(x, scale_factor=2, mode=mode)))
        nails = ops.bed_of_nails(x, 2)
        offset = torch.randn(2, 18, 4, 5, dtype=dtype)
        deform = ops.deform_conv2d(x, offset, torch.randn(5, 4, 3, 3, dtype=dtype))
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype
        torch.testing.assert_close(ours.double(), theirs.double(), rtol=2e-2, atol=2e-2)
    assert nails.dtype == dtype
    assert deform.dtype == dtype  # float32 inside, cast back to the input's dtype


def test_mixed_dtypes_are_cast_consistently():
    x = torch.randn(2, 4, 6, 7, dtype=torch.bfloat16)
    w, b = torch.randn(4, 3, 3, 3), torch.randn(3)
    with pytest.raises(RuntimeError):
        ops.conv_transpose2d(x, w, b)  # outside autocast a mix is an error, as in torch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.conv_transpose2d(x, w, b)
        ref = F.conv_transpose2d(x, w, b)
        offset = torch.randn(2, 18, 4, 5)
        mask = torch.rand(2, 9, 4, 5, dtype=torch.bfloat16)
        deform = ops.deform_conv2d(x, offset, torch.randn(5, 4, 3, 3), torch.randn(5),
                                   mask=mask)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    assert deform.dtype == torch.bfloat16


def test_deform_conv2d_runs_in_float32():
    x = torch.randn(1, 4, 7, 7).bfloat16()
    offset = (torch.randn(1, 18, 5, 5) * 2).bfloat16()
    weight = torch.randn(6, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.deform_conv2d(x, offset, weight)
    # The same float32 computation on the cast inputs, then rounded once to bfloat16.
    expected = ops.deform_conv2d(x.float(), offset.float(), weight).bfloat16()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_emulated_cuda_rules():
    """The emulated CUDA kernels follow the CUDA column: upsampling in float32, unpooling in
    the input's dtype, transposed convolution in float16, deform conv float32 cast back."""
    _need_emulator()
    x = torch.randn(1, 4, 6, 7)
    w = torch.randn(4, 3, 3, 3)
    pooled, idx = _unpool_inputs(torch.float16)
    offset = torch.randn(1, 18, 4, 5)
    with torch.autocast("cpu", dtype=torch.float16), ops.emulated():
        convt = ops.conv_transpose2d(x, w, stride=2)
        unpool = ops.max_unpool2d(pooled, idx, 2)
        up = ops.interpolate(x.half(), scale_factor=2, mode="bilinear")
        deform = ops.deform_conv2d(x.half(), offset, torch.randn(5, 4, 3, 3))
    assert convt.dtype == torch.float16
    assert unpool.dtype == torch.float16
    assert up.dtype == torch.float32
    assert deform.dtype == torch.float16
    torch.testing.assert_close(convt.float(), F.conv_transpose2d(x, w, stride=2),
                               rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(up, F.interpolate(x.half().float(), scale_factor=2,
                                                 mode="bilinear"), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ networks


def _output_dtypes(model, x):
    """The dtype of every module's output, in call order."""
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(
        (type(m).__name__, o.dtype if isinstance(o, torch.Tensor) else None)))
        for m in model.modules()]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [d for _, d in dtypes]


def _rel_error(out, ref) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_network_bf16_forward_matches_torch_twin_and_float32(key):
    model, size = build(key)
    model.eval()
    twin = torch_twin(model).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            twin_out = twin(x)
            assert _output_dtypes(model, x) == _output_dtypes(twin, x)
    assert out.dtype == twin_out.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: a few 2^-8 relative errors through the network.
    assert _rel_error(out, ref) < 3e-2
    assert _rel_error(out, twin_out) < 3e-2


def _gradients(model, x, amp: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    target = torch.randint(0, 3, out.shape[:1] + out.shape[2:],
                           generator=torch.Generator().manual_seed(2))
    F.cross_entropy(out.float(), target).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    return torch.cat([g.flatten() for g in grads]).double()


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_network_bf16_backward_matches_float32(key):
    # Eval mode: with batch statistics of two images (train mode) the networks' many batch
    # norms amplify bfloat16 rounding so much that torch's own modules give gradients
    # unrelated to float32's; the training step below covers train mode.
    model, size = build(key)
    model.eval()
    twin = torch_twin(model).eval()
    x = torch.rand(2, 3, size, size)
    ours = _gradients(model, x, amp=True)
    cosine = F.cosine_similarity(ours, _gradients(model, x, amp=False), dim=0).item()
    assert cosine > 0.99, f"{key}: bf16 gradient direction off ({cosine:.4f})"
    cosine = F.cosine_similarity(ours, _gradients(twin, x, amp=True), dim=0).item()
    assert cosine > 0.999, f"{key}: bf16 gradients differ from torch's modules ({cosine:.5f})"


def test_training_steps_under_bf16_autocast():
    model, _ = build("unet")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.manual_seed(3)
    x = torch.rand(4, 3, 32, 32)
    target = (x.mean(1) > 0.5).long()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.8 * losses[0], losses


def test_torch_compile_under_autocast():
    model, _ = build("unet-bilinear")
    model.eval()
    x = torch.rand(1, 3, 24, 24)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager = model(x)
        out = compiled(x)
    assert out.dtype == eager.dtype == torch.bfloat16
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
