"""pyseg.ops.conv_transpose1d / conv_transpose3d and pyseg.nn.ConvTranspose1d / 3d against
torch's F.conv_transpose1d / 3d, on every backend (CPU kernels, emulated CUDA kernels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import conv_transpose1d, conv_transpose3d

# (N, C_in, C_out, (D, H, W), kernel, stride, padding, output_padding, groups, dilation, bias)
CASES_3D = [
    (2, 4, 6, (3, 4, 5), 3, 2, 1, 1, 2, 1, True),
    (1, 3, 3, (2, 3, 4), 3, 1, 0, 0, 1, 1, True),
    (2, 4, 4, (3, 3, 3), 3, 3, 2, 1, 1, 2, False),
    (2, 2, 2, (2, 2, 3), 1, 2, 0, 1, 1, 1, True),  # stride > kernel: outputs with no taps
    (1, 6, 3, (3, 4, 3), (2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 0, 2), 3, (1, 2, 1), True),
    (1, 4, 4, (2, 3, 3), 3, 2, 2, 1, 4, 3, True),  # depthwise, dilation > stride
    (3, 2, 3, (1, 1, 1), 3, 2, 0, 0, 1, 1, True),  # 1x1x1 input
    (1, 3, 2, (4, 4, 4), 2, 2, 0, 0, 1, 1, True),  # the U-Net's up-convolution
]

# (N, C_in, C_out, L, kernel, stride, padding, output_padding, groups, dilation, bias)
CASES_1D = [
    (2, 4, 6, 7, 3, 2, 1, 1, 2, 1, True),
    (1, 3, 3, 5, 4, 1, 0, 0, 1, 1, False),
    (2, 4, 4, 6, 3, 3, 2, 1, 1, 2, True),
    (1, 4, 4, 9, 5, 2, 2, 1, 4, 3, True),
]


def _make3d(case, dtype=torch.float64, seed=0):
    n, ci, co, size, k, s, p, op, g, d, has_bias = case
    gen = torch.Generator().manual_seed(seed)
    k = (k,) * 3 if isinstance(k, int) else k
    x = torch.randn(n, ci, *size, generator=gen, dtype=torch.float64).to(dtype)
    weight = torch.randn(ci, co // g, *k, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(co, generator=gen, dtype=torch.float64).to(dtype) if has_bias else None
    return x, weight, bias, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def _make1d(case, dtype=torch.float64, seed=0):
    n, ci, co, length, k, s, p, op, g, d, has_bias = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ci, length, generator=gen, dtype=torch.float64).to(dtype)
    weight = torch.randn(ci, co // g, k, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(co, generator=gen, dtype=torch.float64).to(dtype) if has_bias else None
    return x, weight, bias, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def _check_values_and_gradients(ours, ref, x, weight, bias, kw, tol):
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    expected = ref(x, weight, bias, **kw)
    out = ours(x, weight, bias, **kw)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    grad = torch.randn_like(expected)
    for e, g in zip(torch.autograd.grad(expected, leaves, grad), torch.autograd.grad(out, leaves, grad)):
        torch.testing.assert_close(g, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES_3D)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_3d_values_and_gradients(backend, case, dtype, tol):
    x, weight, bias, kw = _make3d(case, dtype)
    _check_values_and_gradients(conv_transpose3d, F.conv_transpose3d, x, weight, bias, kw, tol)


@pytest.mark.parametrize("case", CASES_1D)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_1d_values_and_gradients(backend, case, dtype, tol):
    x, weight, bias, kw = _make1d(case, dtype)
    _check_values_and_gradients(conv_transpose1d, F.conv_transpose1d, x, weight, bias, kw, tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_3d_half_types_accumulate_in_float32(backend, dtype):
    x, weight, bias, kw = _make3d(CASES_3D[0], dtype)
    out = conv_transpose3d(x, weight, bias, **kw)
    assert out.dtype == dtype
    # float32 sums of the same (rounded) operands, rounded once: at most one rounding apart
    ref = F.conv_transpose3d(x.float(), weight.float(), bias.float(), **kw)
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    x.requires_grad_()
    (gx,) = torch.autograd.grad(conv_transpose3d(x, weight, bias, **kw).sum(), x)
    xf = x.detach().float().requires_grad_()
    (ex,) = torch.autograd.grad(F.conv_transpose3d(xf, weight.float(), bias.float(), **kw).sum(), xf)
    assert gx.dtype == dtype
    torch.testing.assert_close(gx.float(), ex, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("case", [CASES_3D[0], CASES_3D[4]])
def test_3d_gradcheck(backend, case):
    x, weight, bias, kw = _make3d(case)
    inputs = tuple(t.requires_grad_() for t in (x, weight, bias) if t is not None)
    assert torch.autograd.gradcheck(lambda *a: conv_transpose3d(*a, **kw), inputs, fast_mode=True)


def test_1d_gradcheck(backend):
    x, weight, bias, kw = _make1d(CASES_1D[0])
    inputs = tuple(t.requires_grad_() for t in (x, weight, bias))
    assert torch.autograd.gradcheck(lambda *a: conv_transpose1d(*a, **kw), inputs, fast_mode=True)


def test_3d_partial_gradients(backend):
    x, weight, bias, kw = _make3d(CASES_3D[0])
    weight.requires_grad_()
    (gw,) = torch.autograd.grad(conv_transpose3d(x, weight, bias, **kw).sum(), weight)
    (ew,) = torch.autograd.grad(F.conv_transpose3d(x, weight, bias, **kw).sum(), weight)
    torch.testing.assert_close(gw, ew, rtol=1e-10, atol=1e-10)


def test_3d_deterministic(backend):
    x, weight, bias, kw = _make3d(CASES_3D[0], torch.float32)
    leaves = [t.requires_grad_() for t in (x, weight, bias)]
    runs = []
    for _ in range(2):
        out = conv_transpose3d(x, weight, bias, **kw)
        runs.append([out, *torch.autograd.grad(out, leaves, torch.ones_like(out))])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_3d_unbatched_channels_last_non_contiguous(backend):
    x, weight, bias, kw = _make3d(CASES_3D[1])
    ref = F.conv_transpose3d(x, weight, bias, **kw)
    torch.testing.assert_close(conv_transpose3d(x[0], weight, bias, **kw), ref[0])
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = conv_transpose3d(x_cl, weight, bias, **kw)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, ref)
    wide = torch.randn(2, 3, 2, 3, 8, dtype=torch.float64)[..., ::2]
    assert not wide.is_contiguous()
    torch.testing.assert_close(conv_transpose3d(wide, weight, bias, **kw),
                               F.conv_transpose3d(wide, weight, bias, **kw))
    x1 = torch.randn(2, 3, 10, dtype=torch.float64)[..., ::2]
    w1 = torch.randn(3, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(conv_transpose1d(x1, w1, stride=2), F.conv_transpose1d(x1, w1, stride=2))
    torch.testing.assert_close(conv_transpose1d(x1[0], w1), F.conv_transpose1d(x1[0], w1))


# Shapes large enough for several tiles and grad_weight chunks in the CPU kernels, one per
# forward form: phase (k3 s2, k3 s1), disjoint (k2 s2, k1 s3 with outputs no tap reaches, groups)
# and scatter (an input much smaller than the kernel's reach).
CASES_3D_TILED = [
    (2, 6, 4, (5, 12, 20), 3, 2, 1, 1, 1, 1, True),
    (1, 4, 5, (6, 14, 17), 3, 1, 1, 0, 1, 1, True),
    (2, 6, 4, (6, 10, 18), 2, 2, 0, 0, 2, 1, True),
    (2, 4, 4, (4, 9, 11), 1, 3, 0, 2, 1, 1, False),
    (2, 3, 2, (1, 2, 1), 5, 3, 0, 0, 1, 1, True),
]


@pytest.mark.parametrize("case", CASES_3D + CASES_3D_TILED)
def test_3d_channels_last_values_and_gradients(backend, case):
    """channels_last_3d in, channels_last_3d out (output and grad_input), the values torch's."""
    x, weight, bias, kw = _make3d(case)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    out, ref = conv_transpose3d(x, weight, bias, **kw), F.conv_transpose3d(x, weight, bias, **kw)
    # A 1x1x1 input is both layouts at once (the output then follows torch's default, NCDHW).
    strict = not x.is_contiguous()
    assert out.is_contiguous(memory_format=torch.channels_last_3d) or not strict
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref).contiguous(memory_format=torch.channels_last_3d)
    ours = torch.autograd.grad(out, leaves, grad)
    assert ours[0].is_contiguous(memory_format=torch.channels_last_3d) or not strict
    for g, e in zip(ours, torch.autograd.grad(ref, leaves, grad)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES_3D_TILED)
def test_3d_tiled_values_and_gradients(backend, case):
    x, weight, bias, kw = _make3d(case)
    _check_values_and_gradients(conv_transpose3d, F.conv_transpose3d, x, weight, bias, kw, 1e-10)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("case", CASES_3D_TILED[:3])
def test_3d_cpu_independent_of_thread_count(case, layout):
    """The same bits with 1, 2 and 3 threads: output, grad_input, grad_weight, grad_bias."""
    x, weight, bias, kw = _make3d(case, torch.float32)
    x = x.contiguous(memory_format=layout)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
            out = conv_transpose3d(*leaves, **kw)
            grad = torch.linspace(-1, 1, out.numel()).view(out.shape)
            results.append((out, *torch.autograd.grad(out, leaves, grad)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_empty_batch(backend):
    x = torch.randn(0, 4, 3, 3, 3, requires_grad=True)
    w = torch.randn(4, 2, 2, 2, 2, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    out = conv_transpose3d(x, w, b)
    assert out.shape == F.conv_transpose3d(x, w, b).shape == (0, 2, 4, 4, 4)
    gx, gw, gb = torch.autograd.grad(out.sum(), (x, w, b))
    assert gx.shape == x.shape and torch.count_nonzero(gw) == 0 and torch.count_nonzero(gb) == 0
    assert conv_transpose1d(torch.randn(0, 4, 3), torch.randn(4, 2, 2)).shape == (0, 2, 4)


def test_3d_bad_arguments_like_torch():
    x, w = torch.randn(2, 4, 3, 3, 3), torch.randn(4, 2, 2, 2, 2)
    cases = [
        ((x[0, 0], w), {}, "Expected 4D \\(unbatched\\) or 5D \\(batched\\) input"),
        ((x, w), {"stride": (1, 2)}, "list of 3 values to match the convolution dimensions"),
        ((x, w), {"stride": 0}, "non-positive stride is not supported"),
        ((x, w), {"padding": -1}, "negative padding is not supported"),
        ((x, w), {"output_padding": -1}, "negative output_padding is not supported"),
        ((x, w), {"groups": 0}, "non-positive groups is not supported"),
        ((x, w), {"groups": 3}, "expected weight to be divisible by 3"),
        ((x[:, :3], w), {}, "to have 4 channels, but got 3 channels instead"),
        ((x, w, torch.randn(3)), {}, "expected bias to be 1-dimensional with 2 elements"),
        ((x, w), {"output_padding": 1}, "output padding must be smaller than either stride"),
        ((x, w.double()), {}, "Input type \\(torch.FloatTensor\\) and weight type"),
        ((x, w, torch.randn(2).double()), {}, "Input type \\(torch.FloatTensor\\) and bias type"),
        ((torch.randn(2, 4, 0, 3, 3), w), {}, "Only zero batch or zero channel inputs"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(RuntimeError, match=message):
            F.conv_transpose3d(*args, **kwargs)
        with pytest.raises(RuntimeError, match=message):
            conv_transpose3d(*args, **kwargs)
    # torch's oneDNN words for these say nothing; ours name the problem
    with pytest.raises(RuntimeError, match="Output size is too small"):
        conv_transpose3d(x, w, padding=3)
    with pytest.raises(RuntimeError, match="kernel size should be greater than zero"):
        conv_transpose3d(x, torch.randn(4, 2, 0, 2, 2))
    with pytest.raises(RuntimeError, match="non-empty 5D weight"):
        conv_transpose3d(x, torch.randn(4, 0, 2, 2, 2))
    with pytest.raises(RuntimeError, match="5-dimensional weight"):
        conv_transpose3d(x, w[0])
    with pytest.raises(TypeError, match="stride"):
        conv_transpose3d(x, w, stride="2")
    with pytest.raises(TypeError, match="weight must be a Tensor"):
        conv_transpose3d(x, [1.0])
    with pytest.raises(ValueError, match="int64"):
        conv_transpose3d(x, w, stride=2**63)


def test_1d_bad_arguments_like_torch():
    x, w = torch.randn(2, 4, 5), torch.randn(4, 2, 3)
    cases = [
        ((x, w), {"stride": (1, 2)}, "list of 1 values to match the convolution dimensions"),
        ((x[:, :2], w), {}, "to have 4 channels, but got 2 channels instead"),
        ((x, w), {"output_padding": 1}, "output padding must be smaller than either stride"),
        ((x, w), {"stride": 0}, "non-positive stride is not supported"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(RuntimeError, match=message):
            F.conv_transpose1d(*args, **kwargs)
        with pytest.raises(RuntimeError, match=message):
            conv_transpose1d(*args, **kwargs)
    with pytest.raises(RuntimeError, match="3-dimensional weight"):
        conv_transpose1d(x, w[..., None])
    with pytest.raises(RuntimeError, match="2D \\(unbatched\\) or 3D \\(batched\\) input"):
        conv_transpose1d(x[..., None], w)


def test_opcheck():
    x, weight, bias, kw = _make3d(CASES_3D[0])
    args = [[kw["stride"]] * 3, [kw["padding"]] * 3, [kw["output_padding"]] * 3, kw["groups"],
            [kw["dilation"]] * 3]
    torch.library.opcheck(
        torch.ops.pyseg.conv_transpose3d,
        (x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), *args),
    )
    out = F.conv_transpose3d(x, weight, bias, **kw)
    torch.library.opcheck(
        torch.ops.pyseg.conv_transpose3d_backward,
        (torch.randn_like(out), x.detach(), weight.detach(), *args, [True, True, True]),
    )


@pytest.mark.emu
def test_opcheck_emulated(emu):
    x, weight, bias, _ = _make3d(CASES_3D[6])
    args = [[2, 2, 2], [0, 0, 0], [0, 0, 0], 1, [1, 1, 1]]
    torch.library.opcheck(
        torch.ops.pyseg_emu.conv_transpose3d,
        (x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), *args),
    )


def test_torch_compile_fullgraph():
    up3, up1 = pyseg.nn.ConvTranspose3d(3, 2, 2, stride=2), pyseg.nn.ConvTranspose1d(3, 2, 3)

    def f(x, v):
        return up3(x).relu(), up1(v).tanh()

    x, v = torch.randn(2, 3, 2, 3, 4), torch.randn(2, 3, 7)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(x, v), f(x, v)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ours_cls,ref_cls,shape", [
    (pyseg.nn.ConvTranspose3d, torch.nn.ConvTranspose3d, (2, 4, 3, 4, 5)),
    (pyseg.nn.ConvTranspose1d, torch.nn.ConvTranspose1d, (2, 4, 7)),
])
def test_module_drop_in(ours_cls, ref_cls, shape):
    torch.manual_seed(0)
    ref = ref_cls(4, 6, 3, stride=2, padding=1, groups=2, dilation=1).double()
    ours = ours_cls(4, 6, 3, stride=2, padding=1, groups=2, dilation=1).double()
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert all(a.shape == b.shape for a, b in zip(ours.parameters(), ref.parameters()))
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    out_size = [2 * s for s in shape[2:]]
    torch.testing.assert_close(ours(x, output_size=out_size), ref(x, output_size=out_size))
    torch.testing.assert_close(ours(x), ref(x))
    bad = ours_cls(4, 6, 3, padding_mode="zeros")
    bad.padding_mode = "reflect"
    with pytest.raises(ValueError, match="zeros"):
        bad(x)


def _opinfo_samples(name, dtype, requires_grad=False):
    from torch.testing._internal.common_methods_invocations import op_db

    (info,) = [o for o in op_db if o.name == name and o.variant_test_name == ""]
    return list(info.sample_inputs("cpu", dtype, requires_grad=requires_grad))


@pytest.mark.parametrize("name,ours,ref", [
    ("nn.functional.conv_transpose1d", conv_transpose1d, F.conv_transpose1d),
    ("nn.functional.conv_transpose3d", conv_transpose3d, F.conv_transpose3d),
])
def test_opinfo_samples(name, ours, ref):
    """Every CPU sample of torch's OpInfo entry: forward in float32 and float64, gradients
    of every tensor argument in float64, against torch."""
    count = 0
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        for s in _opinfo_samples(name, dtype):
            torch.testing.assert_close(ours(s.input, *s.args, **s.kwargs),
                                       ref(s.input, *s.args, **s.kwargs), rtol=tol, atol=tol)
            count += 1
    for s in _opinfo_samples(name, torch.float64, requires_grad=True):
        leaves = [t for t in (s.input, *s.args) if isinstance(t, torch.Tensor)]
        out_a, out_b = ours(s.input, *s.args, **s.kwargs), ref(s.input, *s.args, **s.kwargs)
        g = torch.randn_like(out_b)
        for ga, gb in zip(torch.autograd.grad(out_a, leaves, g), torch.autograd.grad(out_b, leaves, g)):
            torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-10)
        count += 1
    assert count > 0


def test_docstring_examples():
    import doctest

    from pyseg.ops import conv_transpose_nd

    globs = {"torch": torch, "pyseg": pyseg}
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in doctest.DocTestFinder().find(conv_transpose_nd, globs=globs) if t.examples]
    assert len(tests) == 2
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


def test_onnx_export_runs_in_onnxruntime():
    """ConvTranspose3d and MaxUnpool3d (and the 1-D ops) export to standard ONNX operators
    (pyseg/ops/_onnx.py) and onnxruntime computes what torch computes."""
    import warnings

    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up3 = pyseg.nn.ConvTranspose3d(3, 2, 3, stride=2, padding=1, output_padding=1)
            self.unpool3 = pyseg.nn.MaxUnpool3d(2)
            self.up1 = pyseg.nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1)
            self.unpool1 = pyseg.nn.MaxUnpool1d(2)

        def forward(self, x, v):
            y, idx = F.max_pool3d(x, 2, return_indices=True)
            z, jdx = F.max_pool1d(v, 2, return_indices=True)
            return self.up3(x), self.unpool3(y, idx), self.up1(v), self.unpool1(z, jdx)

    net = Net().eval()
    x, v = torch.randn(2, 3, 4, 6, 4), torch.randn(2, 3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(net, (x, v), dynamo=True, verbose=False).model_proto
    kinds = {n.op_type for n in proto.graph.node}
    assert {"ConvTranspose", "MaxUnpool"} <= kinds
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), (x, v))}
    got = [torch.from_numpy(o) for o in session.run(None, feeds)]
    with torch.no_grad():
        expected = net(x, v)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_autocast_dtypes_like_torch():
    """Under CPU autocast the 3-D ops compute in the dtypes torch's do (pyseg/ops/_autocast.py)."""
    x, w = torch.randn(1, 4, 2, 3, 3), torch.randn(4, 2, 2, 2, 2)
    y, idx = F.max_pool3d(torch.randn(1, 2, 4, 4, 4), 2, return_indices=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv_transpose3d(x, w).dtype == F.conv_transpose3d(x, w).dtype == torch.bfloat16
        assert conv_transpose1d(x[:, :, 0, 0], w[:, :, 0, 0]).dtype == F.conv_transpose1d(
            x[:, :, 0, 0], w[:, :, 0, 0]).dtype
        yb = y.bfloat16()
        assert (pyseg.ops.max_unpool3d(yb, idx, 2).dtype == F.max_unpool3d(yb, idx, 2).dtype
                == torch.float32)
