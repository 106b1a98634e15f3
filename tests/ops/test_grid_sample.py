"""grid_sample / affine_grid against torch.nn.functional, on every backend."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pyseg.ops import affine_grid, grid_sample
from tests.ops.conftest import using_capability

MODES = ["bilinear", "nearest", "bicubic"]
PADDINGS = ["zeros", "border", "reflection"]


def make_grid(shape, dtype=torch.float64, seed=0, spread=1.3):
    """Random points in [-spread, spread], plus points exactly on -1, 0, 1 and +-2."""
    g = torch.Generator().manual_seed(seed)
    grid = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * spread
    flat = grid.view(-1)
    special = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 1.0 / 3, -1.0, 1.0], dtype=torch.float64)
    k = min(flat.numel(), special.numel())
    flat[:k] = special[:k]
    return grid.to(dtype)


def make_input(shape, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


CASES_2D = [
    # (input shape, grid shape)
    ((2, 3, 5, 7), (2, 4, 6, 2)),
    ((1, 1, 1, 1), (1, 3, 2, 2)),  # a single pixel
    ((1, 2, 1, 6), (1, 5, 1, 2)),  # one row
    ((3, 4, 8, 3), (3, 2, 9, 2)),
]
CASES_3D = [
    ((2, 2, 3, 4, 5), (2, 3, 2, 4, 3)),
    ((1, 3, 1, 2, 1), (1, 2, 2, 2, 3)),
]


def close(ours, ref, dtype):
    tol = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-5, 2e-5)}[dtype]
    torch.testing.assert_close(ours, ref, rtol=tol[0], atol=tol[1])


@pytest.mark.parametrize("shape,gshape", CASES_2D)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_2d_matches_torch(sweep_backend, shape, gshape, mode, padding_mode, align_corners, dtype):
    x, grid = make_input(shape, dtype), make_grid(gshape, dtype)
    ours = grid_sample(x, grid, mode, padding_mode, align_corners)
    ref = F.grid_sample(x, grid, mode, padding_mode, align_corners)
    close(ours, ref, dtype)


@pytest.mark.parametrize("shape,gshape", CASES_3D)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_3d_matches_torch(sweep_backend, shape, gshape, mode, padding_mode, align_corners, dtype):
    x, grid = make_input(shape, dtype), make_grid(gshape, dtype)
    ours = grid_sample(x, grid, mode, padding_mode, align_corners)
    ref = F.grid_sample(x, grid, mode, padding_mode, align_corners)
    close(ours, ref, dtype)


def _grads(fn, x, grid, go, *args):
    x = x.clone().requires_grad_()
    grid = grid.clone().requires_grad_()
    out = fn(x, grid, *args)
    gx, gg = torch.autograd.grad(out, (x, grid), go)
    return out, gx, gg


# Every (case, mode) pair torch accepts: bicubic is 4-D only.
BACKWARD_CASES = [(shape, gshape, mode) for shape, gshape in CASES_2D[:3] + CASES_3D
                  for mode in MODES if not (mode == "bicubic" and len(shape) == 5)]


@pytest.mark.parametrize("shape,gshape,mode", BACKWARD_CASES)
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_backward_matches_torch(sweep_backend, shape, gshape, mode, padding_mode, align_corners):
    dtype = torch.float64
    x, grid = make_input(shape, dtype), make_grid(gshape, dtype)
    go = make_input((shape[0], shape[1], *gshape[1:-1]), dtype, seed=5)
    _, gx, gg = _grads(grid_sample, x, grid, go, mode, padding_mode, align_corners)
    _, rx, rg = _grads(F.grid_sample, x, grid, go, mode, padding_mode, align_corners)
    # The emulated CUDA backward accumulates grad_input in fixed point (2^-40 of the
    # largest gradient, or finer, here).
    atol = 1e-9 if sweep_backend.emulated else 1e-10
    torch.testing.assert_close(gx, rx, rtol=1e-10, atol=atol)
    torch.testing.assert_close(gg, rg, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_gradcheck_2d(sweep_backend, mode, padding_mode, align_corners):
    x = make_input((1, 2, 4, 5)).requires_grad_()
    # Away from the kinks of floor / padding, where finite differences are meaningless.
    grid = make_grid((1, 3, 2, 2), seed=3, spread=0.9)
    grid = (grid * 50).round() / 50 + 0.0037
    grid.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: grid_sample(a, b, mode, padding_mode, align_corners), (x, grid),
        atol=1e-6 if sweep_backend.emulated else 1e-7,
    )


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_gradcheck_3d(sweep_backend, mode, padding_mode):
    x = make_input((1, 2, 3, 2, 3)).requires_grad_()
    grid = make_grid((1, 2, 2, 2, 3), seed=4, spread=0.9)
    grid = ((grid * 50).round() / 50 + 0.0037).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: grid_sample(a, b, mode, padding_mode, False), (x, grid),
        atol=1e-6 if sweep_backend.emulated else 1e-7,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(backend, dtype):
    x, grid = make_input((2, 3, 6, 5)), make_grid((2, 4, 4, 2))
    ours = grid_sample(x.to(dtype), grid.to(dtype), "bilinear", "border", False)
    ref = F.grid_sample(x.to(dtype).double(), grid.to(dtype).double(), "bilinear", "border", False)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.double(), ref, rtol=1e-2, atol=2e-2)
    x16, g16 = x.to(dtype).requires_grad_(), grid.to(dtype).requires_grad_()
    grid_sample(x16, g16).sum().backward()
    xr, gr = x.to(dtype).double().requires_grad_(), grid.to(dtype).double().requires_grad_()
    F.grid_sample(xr, gr, align_corners=False).sum().backward()
    torch.testing.assert_close(x16.grad.double(), xr.grad, rtol=2e-2, atol=5e-2)


def test_channels_last_and_non_contiguous(backend):
    x = make_input((2, 3, 6, 5)).to(memory_format=torch.channels_last)
    grid = make_grid((2, 5, 7, 2))
    out = grid_sample(x, grid, "bicubic", "reflection", True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    close(out, F.grid_sample(x, grid, "bicubic", "reflection", True), torch.float64)
    x3 = make_input((2, 3, 4, 6, 5)).to(memory_format=torch.channels_last_3d)
    out3 = grid_sample(x3, make_grid((2, 2, 3, 4, 3)))
    assert out3.is_contiguous(memory_format=torch.channels_last_3d)
    # Non-contiguous views of input, grid and grad_output.
    xs = make_input((2, 3, 12, 5))[:, :, ::2]
    gs = make_grid((2, 4, 7, 4))[..., ::2]
    go = make_input((2, 3, 7, 4), seed=9).transpose(2, 3)
    _, gx, gg = _grads(grid_sample, xs, gs, go, "bilinear", "zeros", False)
    _, rx, rg = _grads(F.grid_sample, xs, gs, go, "bilinear", "zeros", False)
    torch.testing.assert_close(gx, rx, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(gg, rg, rtol=1e-10, atol=1e-10)
    xc = x.clone().requires_grad_()
    grid_sample(xc, grid).sum().backward()
    assert xc.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape,gshape", [
    ((0, 3, 4, 5), (0, 2, 2, 2)),
    ((2, 0, 4, 5), (2, 2, 2, 2)),
    ((2, 3, 4, 5), (2, 0, 3, 2)),
    ((2, 3, 4, 5, 6), (2, 2, 0, 3, 3)),
])
def test_empty(backend, shape, gshape):
    x = make_input(shape).requires_grad_()
    grid = make_grid(gshape).requires_grad_()
    out = grid_sample(x, grid)
    ref = F.grid_sample(x, grid, align_corners=False)
    assert out.shape == ref.shape
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.all(x.grad == 0)
    assert grid.grad.shape == grid.shape


def test_determinism(backend):
    # Many points landing on few pixels: the scatter order matters for float32 sums.
    x = make_input((2, 3, 4, 4), torch.float32)
    grid = make_grid((2, 96, 96, 2), torch.float32, spread=1.1)
    go = make_input((2, 3, 96, 96), torch.float32, seed=2)
    threads = torch.get_num_threads()
    results = []
    for n in ([1, 2, 1] if backend.name == "cpu" else [threads, threads]):
        torch.set_num_threads(n)
        try:
            results.append(_grads(grid_sample, x, grid, go, "bicubic", "border", False))
        finally:
            torch.set_num_threads(threads)
    for r in results[1:]:
        for a, b in zip(results[0], r, strict=True):
            assert torch.equal(a, b)


@pytest.mark.emu
def test_emulated_determinism_across_thread_orders(emu):
    from pyseg.ops import _library

    x = make_input((1, 2, 3, 3), torch.float32)
    grid = make_grid((1, 40, 40, 2), torch.float32)
    go = make_input((1, 2, 40, 40), torch.float32, seed=2)
    previous = emu.thread_order()
    grads = []
    try:
        for order in ("forward", "reverse", "interleaved"):
            emu.set_thread_order(order, 11)
            with _library.emulated():
                grads.append(_grads(grid_sample, x, grid, go, "bilinear", "zeros", True)[1])
    finally:
        emu.set_thread_order(previous)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_points_outside_and_on_borders(backend):
    x = make_input((1, 2, 3, 4))
    pts = torch.tensor([-1.0, 1.0, -1 - 1e-12, 1 + 1e-12, -3.0, 3.0, 7.5, -9.25, 1e6, -1e6],
                       dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(pts, pts, indexing="ij"), -1).unsqueeze(0)
    for mode, padding, align in itertools.product(MODES, PADDINGS, [False, True]):
        ours = grid_sample(x, grid, mode, padding, align)
        ref = F.grid_sample(x, grid, mode, padding, align)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10,
                                   msg=f"{mode} {padding} {align}")


def test_non_finite_and_huge_points(backend):
    # torch's CPU kernel gives NaN or unspecified values here; pyseg follows ATen's CUDA rule
    # (safe_downgrade_to_int_range): such a point lies outside the input.
    x = make_input((1, 2, 3, 4))
    pts = torch.tensor([float("inf"), -float("inf"), 1e30, -1e30, float("nan")],
                       dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(pts, pts, indexing="ij"), -1).unsqueeze(0)
    for mode, align in itertools.product(MODES, [False, True]):
        out = grid_sample(x, grid, mode, "zeros", align)
        assert torch.equal(out, torch.zeros_like(out)), mode
        if mode != "bicubic":  # bicubic weights of an infinite coordinate are NaN (as in ATen)
            for padding in ("border", "reflection"):
                assert torch.isfinite(grid_sample(x, grid, mode, padding, align)).all()


BAD = [
    (lambda: (make_input((2, 3, 4, 5)), make_grid((1, 2, 2, 2))), "same batch size"),
    (lambda: (make_input((2, 3, 4, 5)), make_grid((2, 2, 2, 3))), "size 2 in last dimension"),
    (lambda: (make_input((2, 3, 0, 5)), make_grid((2, 2, 2, 2))), "non-empty spatial"),
    (lambda: (make_input((2, 3, 4, 5)), make_grid((2, 1, 2, 2, 2))), "4D or 5D"),
    (lambda: (make_input((3, 4, 5)), make_grid((3, 2, 2))), "4D or 5D"),
    (lambda: (make_input((2, 3, 4, 5)), make_grid((2, 2, 2, 2), torch.float32)), "same dtype"),
    (lambda: (make_input((2, 3, 4, 5)).int(), make_grid((2, 2, 2, 2)).int()), "floating point"),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_inputs(backend, make, message):
    x, grid = make()
    with pytest.raises(RuntimeError, match=message):
        grid_sample(x, grid)


def test_bad_modes_like_torch():
    x, grid = make_input((1, 1, 2, 2)), make_grid((1, 2, 2, 2))
    for kwargs in ({"mode": "linear"}, {"padding_mode": "wrap"}):
        with pytest.raises(ValueError) as ours:
            grid_sample(x, grid, **kwargs)
        with pytest.raises(ValueError) as ref:
            F.grid_sample(x, grid, align_corners=False, **kwargs)
        assert str(ours.value) == str(ref.value)
    x5, g5 = make_input((1, 1, 2, 2, 2)), make_grid((1, 2, 2, 2, 3))
    with pytest.raises(RuntimeError, match="bicubic interpolation only supports 4D input"):
        grid_sample(x5, g5, "bicubic")
    with pytest.raises(RuntimeError, match="bicubic interpolation only supports 4D input"):
        F.grid_sample(x5, g5, "bicubic", align_corners=False)


def test_defaults_do_not_warn(recwarn):
    grid_sample(make_input((1, 1, 2, 2)), make_grid((1, 2, 2, 2)))
    affine_grid(torch.eye(2, 3, dtype=torch.float64)[None], (1, 1, 3, 3))
    assert len(recwarn) == 0


def test_opcheck(backend):
    ns = torch.ops.pyseg_emu if backend.emulated else torch.ops.pyseg
    x, grid = make_input((2, 3, 4, 5)).requires_grad_(), make_grid((2, 3, 2, 2)).requires_grad_()
    torch.library.opcheck(ns.grid_sample, (x, grid, 2, 2, False))
    x3, g3 = make_input((1, 2, 3, 4, 2)).requires_grad_(), make_grid((1, 2, 2, 3, 3)).requires_grad_()
    torch.library.opcheck(ns.grid_sample, (x3, g3, 0, 1, True))
    go = make_input((2, 3, 3, 2))
    torch.library.opcheck(ns.grid_sample_backward, (go, x, grid, 0, 0, False, [True, False]))


def test_compile_fullgraph():
    x, grid = make_input((2, 3, 6, 5)), make_grid((2, 4, 3, 2))
    fn = torch.compile(lambda a, b: grid_sample(a, b, "bilinear", "border", True), fullgraph=True)
    torch.testing.assert_close(fn(x, grid), F.grid_sample(x, grid, "bilinear", "border", True))


def test_autocast_runs_in_float32():
    x, grid = make_input((1, 2, 4, 4), torch.float32), make_grid((1, 3, 3, 2), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = grid_sample(x.bfloat16(), grid)
    assert out.dtype == torch.float32


# ---- OpInfo samples ---------------------------------------------------------------------


def _op_db_samples():
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except ImportError as e:  # pragma: no cover - torch's test internals are optional
        pytest.skip(f"torch's OpInfo database is unavailable: {e}")
    names = ("nn.functional.grid_sample", "grid_sampler_2d", "grid_sampler_3d")
    for info in op_db:
        if info.name in names:
            for dtype in (torch.float32, torch.float64):
                for s in info.sample_inputs("cpu", dtype):
                    yield info, s


MODE_NAMES = {v: k for k, v in {"bilinear": 0, "nearest": 1, "bicubic": 2}.items()}
PADDING_NAMES = {v: k for k, v in {"zeros": 0, "border": 1, "reflection": 2}.items()}


def test_op_db_samples():
    count = 0
    for info, s in _op_db_samples():
        if info.name == "nn.functional.grid_sample":
            args = (s.input, s.args[0])
            kwargs = dict(s.kwargs)
        else:  # torch's integer codes: (grid, mode, padding_mode, align_corners)
            grid, mode, padding, align = s.args
            args = (s.input, grid)
            kwargs = {"mode": MODE_NAMES[mode], "padding_mode": PADDING_NAMES[padding],
                      "align_corners": align}
        ref = info.op(s.input, *s.args, **s.kwargs)
        ours = grid_sample(*args, **kwargs)
        tol = 1e-10 if s.input.dtype == torch.float64 else 2e-5
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol, msg=f"{info.name} {s}")
        count += 1
    # 30 + 18 + 30 samples per dtype on torch 2.14.
    assert count >= 100, count


# ---- affine_grid ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(2, 3, 5, 7), (1, 1, 1, 4), (3, 2, 4, 1), (2, 1, 3, 4, 5),
                                  (1, 2, 1, 1, 3)])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_grid_bitwise_equal_to_torch(size, align_corners, dtype, recwarn):
    d = len(size) - 2
    theta = make_input((size[0], d, d + 1), dtype, seed=3)
    ours = affine_grid(theta, size, align_corners)
    ref = F.affine_grid(theta, size, align_corners)
    assert ours.shape == ref.shape
    assert torch.equal(ours, ref)


def test_affine_grid_gradcheck():
    theta = make_input((2, 2, 3), seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: affine_grid(t, (2, 1, 3, 4)), (theta,))
    theta3 = make_input((1, 3, 4), seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: affine_grid(t, (1, 1, 2, 3, 2), True), (theta3,))


@pytest.mark.parametrize("theta,size,error", [
    (torch.zeros(2, 2, 3, dtype=torch.int32), (2, 1, 3, 3), ValueError),
    (torch.zeros(2, 2, 4), (2, 1, 3, 3), ValueError),
    (torch.zeros(2, 2, 3), (2, 1, 3, 3, 3), ValueError),
    (torch.zeros(2, 2, 3), (2, 3, 4), NotImplementedError),
    (torch.zeros(2, 2, 3), (2, 1, 0, 3), ValueError),
])
def test_affine_grid_errors_like_torch(theta, size, error):
    with pytest.raises(error) as ref:
        F.affine_grid(theta, size, align_corners=False)
    with pytest.raises(error) as ours:
        affine_grid(theta, size)
    assert str(ours.value) == str(ref.value)



@pytest.mark.parametrize("mode,padding_mode", [("bilinear", "zeros"), ("nearest", "border"),
                                               ("bicubic", "reflection")])
def test_onnx_export_runs_in_onnxruntime(mode, padding_mode):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import warnings

    class Sample(torch.nn.Module):
        def forward(self, x, grid):
            return grid_sample(x, grid, mode, padding_mode, True)

    x = make_input((2, 3, 5, 6), torch.float32)
    grid = make_grid((2, 4, 3, 2), torch.float32, spread=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(Sample().eval(), (x, grid), dynamo=True).model_proto
    assert "GridSample" in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), (x, grid), strict=True)}
    got = torch.from_numpy(session.run(None, feeds)[0])
    torch.testing.assert_close(got, grid_sample(x, grid, mode, padding_mode, True),
                               rtol=1e-5, atol=1e-5)


# ---- CPU capability variants (the vectorized float / double kernels) --------------------

# Odd sizes (partial vectors of points), channel counts below, at and past a vector, grids
# reaching outside the input; each case in both memory formats.
CAPABILITY_CASES = [
    ((2, 3, 9, 11), (2, 7, 13, 2)),
    ((1, 19, 6, 5), (1, 5, 37, 2)),
    ((1, 1, 7, 4), (1, 3, 70, 2)),
    ((2, 2, 4, 5, 6), (2, 3, 5, 7, 3)),
    ((1, 17, 3, 4, 5), (1, 2, 3, 9, 3)),
]


def _channels_last(t):
    return t.to(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)


def _all_grads(x, grid, go, mode, padding, align):
    """(output, grad_input, grad_grid) of pyseg's kernels for the active capability."""
    return _grads(grid_sample, x, grid, go, mode, padding, align)


@pytest.mark.parametrize("shape,gshape", CAPABILITY_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_capability_variants_match_torch_and_default(cpu_capability, shape, gshape,
                                                     channels_last, dtype):
    x, grid = make_input(shape, dtype), make_grid(gshape, dtype, spread=1.2)
    go = make_input((shape[0], shape[1], *gshape[1:-1]), dtype, seed=6)
    if channels_last:
        x, go = _channels_last(x), _channels_last(go)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}[dtype]
    modes = MODES if len(shape) == 4 else ["bilinear", "nearest"]
    for mode, padding, align in itertools.product(modes, PADDINGS, [False, True]):
        msg = f"{cpu_capability} {mode} {padding} {align}"
        ours = _all_grads(x, grid, go, mode, padding, align)
        ref = _grads(F.grid_sample, x, grid, go, mode, padding, align)
        with using_capability("default"):
            base = _all_grads(x, grid, go, mode, padding, align)
        for a, r, b in zip(ours, ref, base, strict=True):
            torch.testing.assert_close(a, r, rtol=tol, atol=tol, msg=msg)
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=msg)
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        if channels_last:
            assert ours[0].is_contiguous(memory_format=fmt) and ours[1].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels_last", [False, True])
def test_capability_variants_deterministic(cpu_capability, channels_last):
    # 9216 points: two grad_input chunks per image, bitwise equal with 1 and 2 threads.
    x = make_input((2, 5, 4, 4), torch.float32)
    grid = make_grid((2, 96, 96, 2), torch.float32, spread=1.1)
    go = make_input((2, 5, 96, 96), torch.float32, seed=2)
    if channels_last:
        x, go = _channels_last(x), _channels_last(go)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(_grads(grid_sample, x, grid, go, "bilinear", "zeros", False))
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        for a, b in zip(results[0], r, strict=True):
            assert torch.equal(a, b)
    ref = _grads(F.grid_sample, x.double(), grid.double(), go.double(), "bilinear", "zeros",
                 False)
    for a, r in zip(results[0], ref, strict=True):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-3)


def test_non_finite_input_outside_the_taps(cpu_capability):
    # A tap outside the input reads zero even where the plane's first element is inf / NaN
    # (ATen's masked gather): only the taps a point really reads can make it non-finite.
    x = make_input((1, 2, 4, 5), torch.float32)
    x[0, 0, 0, 0] = float("inf")
    x[0, 1, 0, 0] = float("nan")
    grid = make_grid((1, 6, 9, 2), torch.float32, spread=2.5)
    for mode in MODES:
        for layout in (x, _channels_last(x)):
            ours = grid_sample(layout, grid, mode, "zeros", False)
            ref = F.grid_sample(layout, grid, mode, "zeros", False)
            torch.testing.assert_close(ours, ref, rtol=2e-5, atol=2e-5, equal_nan=True,
                                       msg=mode)
