"""deform_conv2d against torchvision.ops.deform_conv2d and F.conv2d, on every backend."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import pyseg
import pyseg.nn
from pyseg.ops import deform_conv2d


def _out(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def _case(n, c, o, h, w, kh, kw, groups=1, og=1, stride=(1, 1), pad=(0, 0), dil=(1, 1),
          mask=True, bias=True, dtype=torch.float64, device="cpu", scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ho, wo = _out(h, kh, stride[0], pad[0], dil[0]), _out(w, kw, stride[1], pad[1], dil[1])
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    wt = torch.randn(o, c // groups, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(o, generator=g, dtype=dtype) if bias else None
    off = scale * torch.randn(n, 2 * og * kh * kw, ho, wo, generator=g, dtype=dtype)
    m = torch.rand(n, og * kh * kw, ho, wo, generator=g, dtype=dtype) if mask else None
    to = lambda t: None if t is None else t.to(device)
    return dict(input=to(x), offset=to(off), weight=to(wt), bias=to(b), stride=stride,
                padding=pad, dilation=dil, mask=to(m))


CASES = [
    # n, c, o, h, w, kh, kw, groups, og, stride, pad, dil, mask, bias
    (2, 4, 6, 7, 8, 3, 3, 1, 1, (1, 1), (1, 1), (1, 1), True, True),
    (3, 6, 4, 9, 7, 3, 2, 2, 3, (2, 1), (1, 0), (1, 2), False, True),
    (1, 4, 4, 6, 5, 2, 3, 1, 2, (1, 2), (0, 1), (2, 1), True, False),
    (1, 8, 4, 5, 5, 1, 1, 4, 2, (1, 1), (0, 0), (1, 1), False, False),
]



def _compare(backend, case, dtype=torch.float64, grads=True, atol=1e-10, rtol=1e-9):
    n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs = case
    args = _case(n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs, dtype=dtype,
                 device=backend.device)
    ref_args = {k: (v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
                for k, v in args.items()}
    ours = {k: (v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
            for k, v in args.items()}
    expected = torchvision.ops.deform_conv2d(**ref_args)
    actual = deform_conv2d(**ours)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)
    if not grads:
        return
    g = torch.randn_like(expected)
    expected.backward(g)
    actual.backward(g)
    for k, v in ours.items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(v.grad, ref_args[k].grad, atol=atol, rtol=rtol,
                                       msg=lambda m, k=k: f"grad of {k}: {m}")


def _is_cpu(backend):
    return backend.name == "cpu"


@pytest.mark.parametrize("case", CASES)
def test_matches_torchvision(backend, case):
    _compare(backend, case)


@pytest.mark.parametrize("batch", [1, 3, 33])
def test_batches_cpu_float32(batch):
    case = (batch, 6, 8, 9, 10, 3, 3, 2, 3, (1, 1), (1, 1), (1, 1), True, True)
    _compare(type("B", (), {"device": torch.device("cpu")})(), case, dtype=torch.float32,
             atol=1e-4, rtol=1e-4)


def test_multi_tile_cpu():
    # Many tiles per image (tile size depends on C * K): chunks that share images.
    case = (2, 64, 8, 40, 41, 3, 3, 1, 1, (1, 1), (1, 1), (1, 1), True, True)
    _compare(type("B", (), {"device": torch.device("cpu")})(), case, dtype=torch.float64)


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_zero_offset_is_conv2d(backend, mask, dtype):
    n, c, o, h, w = (2, 4, 6, 6, 7) if backend.emulated else (3, 8, 6, 11, 12)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype).to(backend.device)
    wt = torch.randn(o, c // 2, 3, 3, generator=gen, dtype=dtype).to(backend.device)
    b = torch.randn(o, generator=gen, dtype=dtype).to(backend.device)
    ho, wo = _out(h, 3, 2, 1, 1), _out(w, 3, 2, 1, 1)
    off = torch.zeros(n, 2 * 9, ho, wo, dtype=dtype, device=backend.device)
    m = torch.ones(n, 9, ho, wo, dtype=dtype, device=backend.device) if mask else None
    actual = deform_conv2d(x, off, wt, b, stride=2, padding=1, mask=m)
    expected = F.conv2d(x, wt, b, stride=2, padding=1, groups=2)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(actual, expected, **tol)


def test_zero_offset_at_integer_positions_reads_one_pixel():
    # Integer offsets: each tap reads exactly one pixel (weights 1, 0, 0, 0), so a shifted
    # conv2d is reproduced exactly; a non-finite neighbour must not leak in via 0 * inf.
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    wt = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    off = torch.ones(1, 18, 4, 4, dtype=torch.float64)  # shift every tap by (+1, +1)
    actual = deform_conv2d(x, off, wt)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:], wt)
    torch.testing.assert_close(actual, expected, atol=1e-12, rtol=1e-12)


def test_gradcheck(backend):
    if backend.emulated:
        shape = (1, 2, 2, 4, 4, 2, 2, 1, 1, (1, 1), (1, 0), (1, 1), True, True)
    else:
        shape = (2, 4, 2, 5, 5, 3, 2, 2, 2, (1, 2), (1, 1), (1, 1), True, True)
    n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs = shape
    args = _case(n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs, device=backend.device,
                 scale=0.7)
    names = ["input", "offset", "weight", "bias", "mask"]
    tensors = [args[k].requires_grad_() for k in names]

    def fn(x, off, wt, b, m):
        return deform_conv2d(x, off, wt, b, stride=s, padding=p, dilation=d, mask=m)

    assert torch.autograd.gradcheck(fn, tensors, fast_mode=backend.emulated)


def test_opcheck_and_compile():
    args = _case(2, 4, 4, 5, 6, 3, 3, 2, 2, (1, 1), (1, 1), (1, 1), True, True,
                 dtype=torch.float32)
    for t in args.values():
        if isinstance(t, torch.Tensor):
            t.requires_grad_()
    op_args = (args["input"], args["weight"], args["offset"], args["mask"], args["bias"],
               1, 1, 1, 1, 1, 1, 2, 2, True)
    torch.library.opcheck(torch.ops.pyseg.deform_conv2d, op_args)

    def f(x, off, w, b, m):
        return deform_conv2d(x, off, w, b, padding=1, mask=m)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    ins = [args[k] for k in ("input", "offset", "weight", "bias", "mask")]
    out = compiled(*ins)
    torch.testing.assert_close(out, f(*ins))
    out.sum().backward()


def test_empty_batch_and_layouts(backend):
    args = _case(0, 4, 4, 5, 5, 3, 3, device=backend.device)
    out = deform_conv2d(**args)
    assert out.shape == (0, 4, 3, 3)
    # non-contiguous and channels_last inputs give the contiguous result
    args = _case(2, 4, 4, 5, 5, 3, 3, device=backend.device)
    expected = deform_conv2d(**args)
    args["input"] = args["input"].contiguous(memory_format=torch.channels_last)
    args["offset"] = args["offset"].transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(deform_conv2d(**args), expected)


def test_bad_inputs(backend):
    args = _case(1, 4, 4, 5, 5, 3, 3, device=backend.device)
    with pytest.raises(RuntimeError, match="offset.shape\\[1\\] is not valid"):
        deform_conv2d(**{**args, "offset": torch.cat([args["offset"], args["offset"][:, :9]], 1)})
    with pytest.raises(RuntimeError, match="multiple of 2 \\* weight.size"):
        deform_conv2d(**{**args, "offset": args["offset"][:, :5]})
    with pytest.raises(RuntimeError, match="mask.shape\\[1\\] is not valid"):
        deform_conv2d(**{**args, "mask": args["mask"][:, :4]})
    with pytest.raises(RuntimeError, match="offset output dims"):
        deform_conv2d(**{**args, "offset": args["offset"][:, :, :2]})
    with pytest.raises(RuntimeError, match="invalid batch size of offset"):
        deform_conv2d(**{**args, "offset": torch.cat([args["offset"]] * 2)})
    with pytest.raises(RuntimeError, match="stride_h"):
        deform_conv2d(**{**args, "stride": 0})
    with pytest.raises(RuntimeError, match="bias"):
        deform_conv2d(**{**args, "bias": args["bias"][:2]})
    with pytest.raises(RuntimeError, match="dtype"):
        deform_conv2d(**{**args, "weight": args["weight"].float()})


def test_modules_match_torchvision():
    torch.manual_seed(0)
    ours = pyseg.nn.DeformConv2d(4, 6, (3, 2), stride=1, padding=1, dilation=1, groups=2)
    ref = torchvision.ops.DeformConv2d(4, 6, (3, 2), stride=1, padding=1, dilation=1, groups=2)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 6, 6)
    off = torch.randn(2, 12, 6, 7)
    torch.testing.assert_close(ours(x, off), ref(x, off), atol=1e-5, rtol=1e-5)
    assert repr(ours).replace("DeformConv2d", "") == repr(ref).replace("DeformConv2d", "")


@pytest.mark.parametrize("cls", [pyseg.nn.DeformConv2dPack, pyseg.nn.ModulatedDeformConv2dPack])
def test_pack_modules_start_as_conv(cls):
    torch.manual_seed(0)
    m = cls(4, 6, 3, padding=1, deform_groups=2)
    x = torch.randn(2, 4, 7, 7)
    scale = 0.5 if cls is pyseg.nn.ModulatedDeformConv2dPack else 1.0
    conv = F.conv2d(x, m.weight, None, padding=1) * scale + m.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(m(x), conv, atol=1e-5, rtol=1e-5)
    m(x).sum().backward()
    assert m.conv_offset.weight.grad is not None
    assert m.conv_offset.weight.grad.abs().sum() > 0


def test_deterministic_input_gradient(backend):
    # Under torch.use_deterministic_algorithms the CUDA input gradient uses the plane-owning
    # kernel instead of the atomic scatter; both must agree with torchvision.
    case = (2, 4, 3, 5, 5, 3, 3, 1, 2, (1, 1), (1, 1), (1, 1), True, True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _compare(backend, case)
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(backend, dtype):
    args = _case(2, 4, 4, 5, 5, 3, 3, og=2, pad=(1, 1), device=backend.device, dtype=torch.float64,
                 scale=1.0)
    expected = deform_conv2d(**args)
    low = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    for v in low.values():
        if isinstance(v, torch.Tensor):
            v.requires_grad_()
    actual = deform_conv2d(**low)
    assert actual.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 1e-1
    torch.testing.assert_close(actual.double(), expected, atol=tol * expected.abs().max().item(),
                               rtol=tol)
    actual.sum().backward()
    assert low["input"].grad.dtype == dtype and torch.isfinite(low["offset"].grad).all()


def test_backward_repeatable_cpu():
    args = _case(1, 16, 8, 20, 21, 3, 3, og=2, pad=(1, 1), dtype=torch.float32)
    grads = []
    for _ in range(2):
        ins = {k: (v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
               for k, v in args.items()}
        deform_conv2d(**ins).square().sum().backward()
        grads.append([ins[k].grad for k in ("input", "offset", "weight", "mask")])
    for a, b in zip(*grads):
        assert torch.equal(a, b)



def test_cpu_backward_independent_of_thread_count():
    # Many tiles per image (64 channels x 9 taps), so that chunks share images: every
    # gradient must round the same way on 1, 2 and 3 threads (the chunk count is fixed).
    args = _case(2, 64, 8, 40, 41, 3, 3, og=2, pad=(1, 1), dtype=torch.float32)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            ins = {k: (v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
                   for k, v in args.items()}
            out = deform_conv2d(**ins)
            out.square().sum().backward()
            grads.append([out] + [ins[k].grad for k in ("input", "offset", "weight", "mask")])
    finally:
        torch.set_num_threads(threads)
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            assert torch.equal(a, b)

# Edge tiles of the CUDA path's tiled GEMM (64 x 64 outputs, 16-deep k slices, see
# csrc/common/gemm_kernels.cuh): M, N and K are not multiples of the tile, and with two
# groups every problem of the batched launch starts mid-tensor.
GEMM_EDGE_CASES = [
    # n, c, o, h, w, kh, kw, groups, og, stride, pad, dil, mask, bias
    # M = 5, N = 2 * 63 columns (two n tiles, the second partial), K = 27
    (2, 3, 5, 9, 11, 3, 3, 1, 1, (1, 1), (0, 0), (1, 1), True, True),
    # groups = 2: M = 5 per group, K = 3 * 9 = 27 per group; grad_input's M = 27
    (2, 6, 10, 7, 9, 3, 3, 2, 3, (1, 1), (1, 1), (1, 1), True, True),
    # K = 8 * 9 = 72: grad_input's M spans two m tiles; odd output plane 5 x 4
    (1, 8, 3, 5, 4, 3, 3, 1, 2, (1, 1), (1, 1), (1, 1), False, True),
]


def _integer_case(case, seed):
    """Integer data and offsets: every product and partial sum is exact in float64."""
    n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs = case
    g = torch.Generator().manual_seed(seed)
    ho, wo = _out(h, kh, s[0], p[0], d[0]), _out(w, kw, s[1], p[1], d[1])
    ints = lambda lo, hi, *shape: torch.randint(lo, hi, shape, generator=g).double()
    return dict(input=ints(-4, 5, n, c, h, w), offset=ints(-2, 3, n, 2 * og * kh * kw, ho, wo),
                weight=ints(-3, 4, o, c // gr, kh, kw), bias=ints(-5, 6, o) if bs else None,
                mask=ints(0, 3, n, og * kh * kw, ho, wo) if mk else None,
                stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("case", GEMM_EDGE_CASES)
def test_gemm_edge_tiles_float64(backend, case):
    _compare(backend, case)


@pytest.mark.parametrize("case", GEMM_EDGE_CASES)
def test_gemm_exact_on_integers(backend, case):
    # With integer inputs, weights, masks and whole-pixel offsets every sample is one pixel
    # (or zero) and every sum is exact, so any correct summation order gives torchvision's
    # numbers bit for bit.
    args = _integer_case(case, seed=3)
    ours = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
            for k, v in args.items()}
    ref = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
           for k, v in args.items()}
    expected = torchvision.ops.deform_conv2d(**ref)
    actual = deform_conv2d(**ours)
    assert torch.equal(actual, expected)
    g = torch.randint(-3, 4, expected.shape, generator=torch.Generator().manual_seed(4)).double()
    expected.backward(g)
    actual.backward(g)
    for k in ("input", "weight", "bias", "mask"):
        if ours[k] is not None:
            assert torch.equal(ours[k].grad, ref[k].grad), k


def test_gemm_runs_every_tile_with_one_block(emu_backend):
    # One block per launch: the GEMM's grid-stride loop over its tiles (problems, m tiles,
    # n tiles) must still cover every output exactly once (a cap of one is legal for any launcher).
    backend = emu_backend
    from pyseg import _emu

    previous = _emu.max_blocks()
    _emu.set_max_blocks(1)
    try:
        _compare(backend, GEMM_EDGE_CASES[1])
        _compare(backend, GEMM_EDGE_CASES[2])
    finally:
        _emu.set_max_blocks(previous)


def test_gemm_is_the_tiled_kernel(emu_backend):
    # The only kernel of this op with __syncthreads is the GEMM: for double (staged through
    # registers, double-buffered) one barrier per 8-deep k slice of each 128 x 64 tile plus
    # five for C's way out through shared memory (before and after writing each of its two
    # 64-row passes, and one before the next tile's staging); counting them shows each
    # product went through it.
    backend = emu_backend
    from pyseg import _emu

    n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs = GEMM_EDGE_CASES[1]
    args = _case(n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs, device=backend.device)
    for k in ("input", "offset", "weight", "bias", "mask"):
        args[k].requires_grad_()
    P = _out(h, kh, s[0], p[0], d[0]) * _out(w, kw, s[1], p[1], d[1])
    M, N, K = o // gr, n * P, c // gr * kh * kw  # forward, per group

    def barriers(m, nn, k):
        return gr * -(-m // 128) * -(-nn // 64) * (-(-k // 8) + 5)

    _emu.reset_stats()
    out = deform_conv2d(**args)
    assert _emu.stats()["barriers"] == barriers(M, N, K)
    _emu.reset_stats()
    out.backward(torch.ones_like(out))
    # grad of the columns (M = K_fwd, N, K = M_fwd), grad_weight (M_fwd, K_fwd, sum over N)
    assert _emu.stats()["barriers"] == barriers(K, N, M) + barriers(M, K, N)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gemm_edge_tiles_low_precision(backend, dtype):
    # float16 / bfloat16 operands, float32 accumulation: against the float32 result.
    n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs = GEMM_EDGE_CASES[1]
    args = _case(n, c, o, h, w, kh, kw, gr, og, s, p, d, mk, bs, dtype=torch.float32,
                 device=backend.device, scale=1.0)
    low = {k: (v.to(dtype).requires_grad_() if isinstance(v, torch.Tensor) else v)
           for k, v in args.items()}
    # The reference sees exactly the rounded inputs, so only the kernel's own rounding counts.
    ref = {k: (v.detach().float().requires_grad_() if isinstance(v, torch.Tensor) else v)
           for k, v in low.items()}
    expected = torchvision.ops.deform_conv2d(**ref)
    actual = deform_conv2d(**low)
    assert actual.dtype == dtype
    eps = 2e-3 if dtype == torch.float16 else 1.6e-2
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual.float(), expected, atol=2 * eps * scale, rtol=2 * eps)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5))
    expected.backward(g)
    actual.backward(g.to(dtype))
    for k in ("weight", "input", "bias"):
        r = ref[k].grad
        torch.testing.assert_close(low[k].grad.float(), r, atol=4 * eps * r.abs().max().item(),
                                   rtol=4 * eps, msg=lambda m, k=k: f"grad of {k}: {m}")


# --- Non-finite pixels (issue 15 item 4) and the CPU capability variants --------------------


def test_inf_at_pixel_zero_stays_local_issue_case():
    # Out-of-image corners used to read x[0] with weight 0: 0 * inf = NaN in 5 outputs.
    x = torch.randn(1, 1, 5, 5)
    x[0, 0, 0, 0] = float("inf")
    offset, weight = torch.zeros(1, 18, 3, 3), torch.ones(1, 1, 3, 3)
    out = deform_conv2d(x, offset, weight)
    assert out.isnan().sum() == 0
    ref = torchvision.ops.deform_conv2d(x, offset, weight)
    torch.testing.assert_close(out, ref, equal_nan=True)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_corners_and_borders_match_torchvision(value):
    args = _case(2, 3, 4, 6, 7, 3, 3, pad=(1, 1), dtype=torch.float64, scale=1.5, seed=5)
    x = args["input"]
    for y, xx in [(0, 0), (0, 6), (5, 0), (5, 6), (2, 0), (0, 3)]:
        x[0, 1, y, xx] = value
    x[1, 0, 0, 0] = value
    # Integer offsets put samples exactly on pixels and on the image border too.
    args["offset"][:, :, ::2] = args["offset"][:, :, ::2].round()
    ours = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
            for k, v in args.items()}
    ref_args = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
                for k, v in args.items()}
    out = deform_conv2d(**ours)
    ref = torchvision.ops.deform_conv2d(**ref_args)
    torch.testing.assert_close(out, ref, equal_nan=True)
    assert out.isnan().sum() == ref.isnan().sum()
    grad = torch.randn_like(ref)
    names = ["input", "weight"]
    got = torch.autograd.grad(out, [ours[n] for n in names], grad)
    expected = torch.autograd.grad(ref, [ref_args[n] for n in names], grad)
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, equal_nan=True, msg=name)


@pytest.mark.parametrize("case", CASES)
def test_cpu_capability_variants(cpu_capability, case):
    # Every variant this CPU runs against torchvision, forward and backward, float64.
    from tests.conftest import Backend

    _compare(Backend("cpu", torch.device("cpu")), case)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", [
    # n, c, h, w, kh, kw, groups, og, stride, pad, dil, mask. The loops run over channels:
    # 37 channels are two full 16-wide (four 8-wide) vectors and a 5-channel tail; 24
    # channels in 2 weight groups and 3 offset groups are cut into runs of 8 and 4.
    (2, 37, 7, 9, 3, 3, 1, 1, (1, 1), (1, 1), (1, 1), True),
    (1, 24, 6, 7, 3, 2, 2, 3, (2, 1), (1, 0), (1, 2), True),
    (1, 20, 5, 6, 2, 2, 1, 2, (1, 1), (0, 0), (1, 1), False),
])
def test_variants_bitwise_equal_to_baseline(cpu_capability, case, dtype):
    # The vector variants load 8 or 16 channels of a corner at once; each lane must round
    # exactly like the baseline's, the backward's sums over channels must use the same lanes
    # and tree, and an Inf or NaN in the image must reach the output only through the
    # corners that use it. A one-hot weight (output channel o of a group reads its column
    # row o) makes the GEMMs exact in every variant (their FMAs round differently), so the
    # output is the columns themselves, and grad_input, grad_offset and grad_mask come from
    # exact column gradients: all bitwise. grad_weight sums over pixels in the GEMM: close.
    from tests.ops.conftest import using_capability

    n, c, h, w, kh, kw, gr, og, s, p, d, mk = case
    rows = c // gr * kh * kw
    args = _case(n, c, gr * rows, h, w, kh, kw, gr, og, s, p, d, mk, False, dtype=dtype,
                 seed=3)
    args["weight"] = torch.eye(rows, dtype=dtype).repeat(gr, 1).reshape(gr * rows, c // gr, kh, kw)
    args["input"][0, 1, 0, 0] = float("inf")
    args["input"][-1, 0, h // 2, w - 1] = float("nan")

    def run():
        ours = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
                for k, v in args.items()}
        out = deform_conv2d(**ours)
        names = [k for k in ("input", "offset", "mask", "weight") if ours[k] is not None]
        grad = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
        return [out, *torch.autograd.grad(out, [ours[k] for k in names], grad)]

    with using_capability("default"):
        expected = run()
    got = run()
    assert expected[0].isfinite().sum() > expected[0].numel() // 2
    for g, e in zip(got[:-1], expected[:-1]):
        torch.testing.assert_close(g, e, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got[-1], expected[-1], equal_nan=True)
