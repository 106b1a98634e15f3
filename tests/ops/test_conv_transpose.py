"""pyseg.ops.conv_transpose2d / pyseg.nn.ConvTranspose2d / pyseg.ops.conv2d_matrix against
torch's F.conv_transpose2d and F.conv2d, on every backend (cpu, emulated CUDA, cuda)."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F

import pyseg
from pyseg.ops import conv2d_matrix, conv_transpose2d
from pyseg.ops import conv_transpose as conv_transpose_module

# (N, C_in, C_out, H, W, kernel, stride, padding, output_padding, groups, dilation, bias)
CASES = [
    (2, 4, 6, 5, 6, 3, 2, 1, 1, 2, 1, True),
    (1, 3, 3, 4, 7, 3, 1, 0, 0, 1, 1, True),
    (2, 4, 4, 5, 5, 3, 3, 2, 1, 1, 2, False),
    (2, 2, 2, 3, 3, 1, 2, 0, 1, 1, 1, True),  # stride > kernel: phases with no taps
    (2, 6, 3, 6, 5, (2, 3), (2, 1), (0, 1), (1, 0), 3, (1, 2), True),
    (1, 3, 5, 5, 6, 4, 2, 1, 0, 1, 1, False),
    (2, 3, 2, 7, 5, (3, 1), (1, 3), (1, 0), (0, 2), 1, (2, 1), True),
    (1, 4, 4, 3, 4, 5, 2, 2, 1, 4, 3, True),  # depthwise, dilation > stride
    (3, 2, 3, 1, 1, 3, 2, 0, 0, 1, 1, True),  # 1x1 input
    (1, 2, 3, 6, 4, 2, 4, 3, 3, 1, 1, True),  # large output_padding
    (2, 4, 2, 4, 5, 3, (2, 3), 1, (1, 2), 2, 1, False),
]


def _case_ids(case):
    n, ci, co, h, w, k, s, p, op, g, d, b = case
    return f"n{n}-c{ci}x{co}-{h}x{w}-k{k}-s{s}-p{p}-op{op}-g{g}-d{d}-{'b' if b else 'nb'}"


def _make(case, device, dtype=torch.float64, seed=0):
    n, ci, co, h, w, k, s, p, op, g, d, has_bias = case
    gen = torch.Generator().manual_seed(seed)
    k = (k, k) if isinstance(k, int) else k
    x = torch.randn(n, ci, h, w, generator=gen, dtype=dtype).to(device)
    weight = torch.randn(ci, co // g, *k, generator=gen, dtype=dtype).to(device)
    bias = torch.randn(co, generator=gen, dtype=dtype).to(device) if has_bias else None
    kwargs = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    return x, weight, bias, kwargs


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_values_and_gradients(backend, case):
    x, weight, bias, kw = _make(case, backend.device)
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    ref = F.conv_transpose2d(x, weight, bias, **kw)
    out = conv_transpose2d(x, weight, bias, **kw)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    expected = torch.autograd.grad(ref, leaves, grad)
    got = torch.autograd.grad(out, leaves, grad)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[7]], ids=_case_ids)
def test_gradcheck(backend, case):
    x, weight, bias, kw = _make(case, backend.device)
    inputs = tuple(t.requires_grad_() for t in (x, weight, bias) if t is not None)

    def fn(*args):
        return conv_transpose2d(*args, **kw)

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def test_partial_gradients(backend):
    # Only some inputs need a gradient: the masked parts are skipped, the rest still right.
    x, weight, bias, kw = _make(CASES[0], backend.device)
    weight.requires_grad_()
    out = conv_transpose2d(x, weight, bias, **kw)
    (gw,) = torch.autograd.grad(out.sum(), weight)
    (ew,) = torch.autograd.grad(F.conv_transpose2d(x, weight, bias, **kw).sum(), weight)
    torch.testing.assert_close(gw, ew)


def test_unbatched(backend):
    x, weight, bias, kw = _make(CASES[0], backend.device)
    out = conv_transpose2d(x[0], weight, bias, **kw)
    ref = F.conv_transpose2d(x[0], weight, bias, **kw)
    assert out.shape == ref.shape and out.dim() == 3
    torch.testing.assert_close(out, ref)


def test_channels_last_and_noncontiguous(backend):
    x, weight, bias, kw = _make(CASES[0], backend.device)
    ref = F.conv_transpose2d(x, weight, bias, **kw)
    xcl = x.contiguous(memory_format=torch.channels_last)
    out = conv_transpose2d(xcl, weight, bias, **kw)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref)
    # A strided view (every other column of a wider tensor) and a transposed weight view.
    wide = torch.randn(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    wt = weight.transpose(2, 3).contiguous().transpose(2, 3)
    out = conv_transpose2d(wide[..., ::2], wt, bias, **kw)
    torch.testing.assert_close(out, ref)
    # Gradients come back in the input's layout and agree with torch's.
    xcl = xcl.detach().requires_grad_()
    (g,) = torch.autograd.grad(conv_transpose2d(xcl, weight, bias, **kw).sum(), xcl)
    (e,) = torch.autograd.grad(F.conv_transpose2d(xcl, weight, bias, **kw).sum(), xcl)
    torch.testing.assert_close(g, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(backend, dtype):
    x, weight, bias, kw = _make(CASES[0], backend.device)
    ref = F.conv_transpose2d(x, weight, bias, **kw)  # float64
    x, weight, bias = (t.to(dtype) for t in (x, weight, bias))
    out = conv_transpose2d(x, weight, bias, **kw)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol * 5)
    x.requires_grad_()
    weight.requires_grad_()
    gx, gw = torch.autograd.grad(conv_transpose2d(x, weight, bias, **kw).sum(), (x, weight))
    assert gx.dtype == dtype and gw.dtype == dtype


def test_empty_batch(backend):
    x, weight, bias, kw = _make(CASES[0], backend.device)
    x = x[:0].requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    out = conv_transpose2d(x, weight, bias, **kw)
    ref = F.conv_transpose2d(x, weight, bias, **kw)
    assert out.shape == ref.shape
    gx, gw, gb = torch.autograd.grad(out.sum(), (x, weight, bias))
    assert gx.shape == x.shape
    assert torch.equal(gw, torch.zeros_like(gw)) and torch.equal(gb, torch.zeros_like(gb))


def test_deterministic_backward(backend):
    x, weight, bias, kw = _make(CASES[1], backend.device, dtype=torch.float32)
    x.requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    grad = torch.randn(conv_transpose2d(x, weight, bias, **kw).shape, device=x.device)
    first = torch.autograd.grad(conv_transpose2d(x, weight, bias, **kw), (x, weight, bias), grad)
    second = torch.autograd.grad(conv_transpose2d(x, weight, bias, **kw), (x, weight, bias), grad)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


BAD = [
    dict(input=torch.randn(2, 4, 5), weight=torch.randn(4, 3, 3, 3)),
    dict(input=torch.randn(4, 5), weight=torch.randn(4, 3, 3, 3)),
    dict(input=torch.randn(1, 2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3)),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(5, 3, 3, 3)),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), groups=3),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), bias=torch.randn(4)),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), bias=torch.randn(3, 1)),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), stride=2,
         output_padding=2),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), output_padding=1),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), stride=0),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), padding=-1),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), output_padding=-1),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), groups=0),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3), stride=(1, 2, 3)),
    dict(input=torch.randn(2, 4, 5, 5, dtype=torch.float64), weight=torch.randn(4, 3, 3, 3)),
    dict(input=torch.randn(2, 4, 0, 5), weight=torch.randn(4, 3, 3, 3)),
    dict(input=torch.randn(2, 4, 5, 5), weight=torch.randn(4, 3, 3, 3),
         bias=torch.randn(3, dtype=torch.float64)),
]


@pytest.mark.parametrize("kwargs", BAD, ids=range(len(BAD)))
def test_errors_match_torch(backend, kwargs):
    kwargs = {k: (v.to(backend.device) if isinstance(v, torch.Tensor) else v)
              for k, v in kwargs.items()}
    with pytest.raises(RuntimeError) as expected:
        F.conv_transpose2d(**kwargs)
    with pytest.raises(RuntimeError) as got:
        conv_transpose2d(**kwargs)
    assert str(got.value).splitlines()[0] == str(expected.value).splitlines()[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dilation=0), "dilation should be greater than zero"),
        (dict(padding=5), "Output size is too small"),
    ],
)
def test_errors_torch_leaves_to_onednn(backend, kwargs, message):
    # torch's message here comes from oneDNN; ours is the one of its native path.
    x = torch.randn(2, 4, 5, 5, device=backend.device)
    w = torch.randn(4, 3, 3, 3, device=backend.device)
    with pytest.raises(RuntimeError, match=message):
        conv_transpose2d(x, w, **kwargs)


def test_opcheck():
    x, weight, bias, _kw = _make(CASES[0], "cpu")
    x.requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    args = (x, weight, bias, [2, 2], [1, 1], [1, 1], 2, [1, 1])
    torch.library.opcheck(torch.ops.pyseg.conv_transpose2d, args)
    xcl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.pyseg.conv_transpose2d, (xcl, *args[1:]))
    out = F.conv_transpose2d(x, weight, bias, 2, 1, 1, 2)
    torch.library.opcheck(
        torch.ops.pyseg.conv_transpose2d_backward,
        (torch.randn_like(out), x.detach(), weight.detach(), [2, 2], [1, 1], [1, 1], 2, [1, 1],
         [True, False, True]),
    )


def test_opcheck_emulated(emu):
    x, weight, bias, _kw = _make(CASES[3], "cpu")
    args = (x.requires_grad_(), weight.requires_grad_(), bias, [2, 2], [0, 0], [1, 1], 1, [1, 1])
    torch.library.opcheck(torch.ops.pyseg_emu.conv_transpose2d, args)


def test_torch_compile_fullgraph():
    x, weight, bias, kw = _make(CASES[0], "cpu", dtype=torch.float32)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def fn(x, weight, bias):
        return conv_transpose2d(x, weight, bias, **kw).relu()

    x.requires_grad_()
    out = fn(x, weight, bias)
    torch.testing.assert_close(out, F.conv_transpose2d(x, weight, bias, **kw).relu())
    (g,) = torch.autograd.grad(out.sum(), x)
    (e,) = torch.autograd.grad(F.conv_transpose2d(x, weight, bias, **kw).relu().sum(), x)
    torch.testing.assert_close(g, e)


def test_module_is_a_drop_in(backend):
    torch.manual_seed(3)
    ours = pyseg.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    torch.manual_seed(3)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)  # same initialization
    ours.load_state_dict(theirs.state_dict())
    ours.to(backend.device)
    theirs.to(backend.device)
    x = torch.randn(2, 4, 5, 6, device=backend.device)
    torch.testing.assert_close(ours(x), theirs(x))
    # output_size picks the output_padding, as in torch.
    for size in ([9, 11], [2, 6, 10, 12]):
        torch.testing.assert_close(ours(x, output_size=size), theirs(x, output_size=size))
    no_bias = pyseg.nn.ConvTranspose2d(4, 2, 2, bias=False)
    assert no_bias.bias is None and list(no_bias.state_dict()) == ["weight"]
    assert repr(ours) == repr(theirs)


# --- conv2d_matrix: the dense matrix view ------------------------------------------------

MATRIX_CASES = [
    # (C_out, C_in, H, W, kernel, stride, padding, dilation)
    (1, 1, 2, 2, 2, 1, 0, 1),
    (2, 3, 5, 4, 3, 1, 1, 1),
    (3, 2, 6, 7, 3, 2, 1, 1),
    (2, 2, 7, 6, (2, 3), (2, 1), (0, 1), (2, 1)),
]


@pytest.mark.parametrize("case", MATRIX_CASES)
def test_conv2d_matrix_is_conv2d_and_its_transpose_is_conv_transpose2d(backend, case):
    c_out, c_in, h, w, k, s, p, d = case
    k = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(c_out, c_in, *k, generator=gen, dtype=torch.float64)
    x = torch.randn(c_in, h, w, generator=gen, dtype=torch.float64)
    C = conv2d_matrix(weight, (c_in, h, w), stride=s, padding=p, dilation=d)
    y = F.conv2d(x[None], weight, stride=s, padding=p, dilation=d)[0]
    torch.testing.assert_close(C @ x.flatten(), y.flatten())
    # The transposed convolution with the same weight is C^T, once output_padding restores
    # the rows/columns that the forward stride dropped.
    sh, sw = (s, s) if isinstance(s, int) else s
    ph, pw = (p, p) if isinstance(p, int) else p
    dh, dw = (d, d) if isinstance(d, int) else d
    base_h = (y.shape[-2] - 1) * sh - 2 * ph + dh * (k[0] - 1) + 1
    base_w = (y.shape[-1] - 1) * sw - 2 * pw + dw * (k[1] - 1) + 1
    op = (h - base_h, w - base_w)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    out = conv_transpose2d(g[None].to(backend.device), weight.to(backend.device), stride=s,
                           padding=p, output_padding=op, dilation=d)[0]
    torch.testing.assert_close(out.cpu().flatten(), C.T @ g.flatten())


def test_conv2d_matrix_worked_example():
    # The 2x2 example worked by hand: [[0, 1], [2, 3]] transposed-convolved with the kernel
    # [[0, 1], [2, 3]] spreads each input value times the kernel over a 3x3 output:
    # out[i + a, j + b] += x[i, j] * k[a, b].
    x = [[0, 1], [2, 3]]
    expected = [[0] * 3 for _ in range(3)]
    for i in range(2):
        for j in range(2):
            for a in range(2):
                for b in range(2):
                    expected[i + a][j + b] += x[i][j] * x[a][b]
    assert expected == [[0, 0, 1], [0, 4, 6], [4, 12, 9]]
    k = torch.tensor(x, dtype=torch.float32)[None, None]
    C = conv2d_matrix(k, (3, 3))
    assert torch.equal((C.T @ k.flatten()).reshape(3, 3), torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(conv_transpose2d(k, k)[0, 0], torch.tensor(expected, dtype=torch.float32))


def test_docstring_examples():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    globs = {"torch": torch, "pyseg": pyseg}
    tests = finder.find(conv_transpose_module, globs=globs)
    tests += finder.find(pyseg.nn.ConvTranspose2d, "ConvTranspose2d", globs=globs)
    ran = 0
    for t in tests:
        ran += len(t.examples)
        runner.run(t)
    assert ran >= 4
    assert runner.failures == 0


# --- CPU: the GEMM-based kernels, their capability variants and layouts -------------------


# The CPU's scatter form (forward_scatter): inputs much smaller than the kernel's reach, and
# layers of 16 or more phases with few multiply-adds each (FCN's upsampling).
SCATTER_CASES = [
    (2, 4, 6, 2, 1, 5, 2, 1, 1, 2, 2, True),
    (3, 5, 2, 1, 1, 7, 1, 0, 0, 1, 1, False),
    (1, 2, 3, 1, 2, (4, 6), (1, 3), (0, 2), (0, 1), 1, (1, 2), True),
    (2, 3, 3, 5, 5, 64, 32, 0, 0, 1, 1, False),  # fcn32s: 32 x 32 phases
    (1, 4, 6, 3, 4, (9, 12), (4, 6), (2, 3), (1, 5), 2, 1, True),  # 24 phases, padded
    (1, 2, 3, 3, 3, (8, 5), (4, 4), (1, 0), (0, 1), 1, (1, 2), True),  # dilated columns
]


# The CPU's disjoint form (forward_disjoint): every output reads at most one tap per axis
# ((kernel - 1) * dilation < stride), so the layer is one GEMM over all taps.
DISJOINT_CASES = [
    (2, 4, 6, 5, 6, 2, 2, 0, 0, 1, 1, True),  # U-Net's 2x2 stride 2
    (2, 4, 6, 5, 6, 2, 2, 1, 1, 2, 1, True),  # padded: border taps fall outside
    (1, 3, 4, 4, 3, 2, 3, 0, 2, 1, 1, True),  # stride > kernel: outputs no tap reaches
    (2, 2, 4, 3, 4, 2, 3, 1, 0, 2, 2, False),  # dilated, (k - 1) * d = 2 < 3
    (1, 3, 3, 5, 4, (1, 2), (1, 2), 0, 0, 1, 1, True),  # stride 1 along h
    (2, 6, 6, 4, 5, (3, 2), (3, 2), (1, 0), (2, 1), 3, 1, True),
    (4, 8, 8, 20, 24, 2, 2, 0, 0, 1, 1, True),  # several tiles, NCHW tiles within images
]


# The CPU's implicit form (forward_implicit): stride 1 on both axes, the GEMM reading a
# zero-bordered copy of the input through per-tap offsets.
IMPLICIT_CASES = [
    (2, 5, 4, 9, 7, 3, 1, 1, 0, 1, 1, True),
    (1, 4, 6, 10, 9, 3, 1, 3, 0, 2, 1, True),  # padding > kernel - 1: input rows cropped
    (2, 3, 4, 6, 8, (3, 2), 1, (2, 0), 0, 1, (2, 3), False),  # dilated, asymmetric
    (1, 4, 4, 5, 6, 3, 1, 1, (1, 1), 4, 2, True),  # output_padding < dilation, depthwise
    (2, 6, 3, 40, 33, 3, 1, 1, 0, 3, 1, True),  # several row blocks per image
    (1, 2, 3, 2, 2, (1, 5), 1, (0, 2), 0, 1, 1, True),  # kernel wider than the output: phase form
    (1, 2, 3, 2, 2, (1, 5), 1, 0, 0, 1, (1, 2), True),  # dilated 1x5 on a 2x2 input
]


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhwc-weight", "nchw-weight"])
@pytest.mark.parametrize("case", CASES + SCATTER_CASES + DISJOINT_CASES + IMPLICIT_CASES, ids=_case_ids)
def test_cpu_capability_variants(cpu_capability, layout, case):
    # Every variant this CPU runs, both layouts, against float64 torch (forward and backward);
    # "-weight": the weight channels_last too (as after model.to(memory_format=...)), which
    # the kernels read as stored.
    x, weight, bias, kw = _make(case, "cpu")
    if layout.startswith("nhwc"):
        x = x.contiguous(memory_format=torch.channels_last)
    if layout.endswith("-weight"):
        weight = weight.contiguous(memory_format=torch.channels_last)
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    ref = F.conv_transpose2d(x, weight, bias, **kw)
    out = conv_transpose2d(x, weight, bias, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    cl = torch.channels_last
    assert out.is_contiguous(memory_format=cl) == ref.is_contiguous(memory_format=cl)
    grad = torch.randn_like(ref)
    for e, g in zip(torch.autograd.grad(ref, leaves, grad), torch.autograd.grad(out, leaves, grad)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


# The transposed-conv layers of the built-in networks (pets-encdec at 200x200, DeconvNet at
# 128x128, U-Net base 16 depth 3 at 64x64; benchmarks/zoo_conv_transpose.py lists them), at
# batch 1 (or 2, so tiles cross images) and with channels cut where that keeps the tiling.
# (N, C_in, C_out, H, W, kernel, stride, padding, output_padding, groups, dilation, bias)
ZOO = [
    (1, 256, 256, 25, 25, 3, 1, 1, 0, 1, 1, True),   # pets decoder k3 s1
    (1, 64, 64, 25, 25, 3, 2, 0, 0, 1, 1, True),     # pets 2x up (k3 s2, cropped by the net)
    (2, 32, 32, 50, 50, 3, 2, 0, 0, 1, 1, True),
    (2, 512, 512, 4, 4, 3, 1, 1, 0, 1, 1, False),    # deconvnet 512-ch k3 at 4x4
    (2, 96, 96, 8, 8, 3, 1, 1, 0, 1, 1, False),
    (2, 256, 32, 1, 1, 7, 1, 0, 0, 1, 1, False),     # deconvnet fc6-deconv 7x7 from 1x1
    (8, 64, 32, 8, 8, 2, 2, 0, 0, 1, 1, True),       # U-Net k2 s2
    (8, 16, 16, 32, 32, 2, 2, 0, 0, 1, 1, True),
    # FCN's upsampling (scatter form forward); channels_last column rows of 3 x 1024 and
    # 4 x 256 taps, multiples of 4 KB (padded in the backward).
    (2, 3, 3, 12, 12, 32, 16, 0, 0, 1, 1, False),    # fcn16s k32 s16
    (1, 4, 4, 6, 6, 16, 8, 0, 0, 1, 1, False),
    (2, 3, 3, 5, 5, 64, 32, 0, 0, 1, 1, False),      # fcn32s k64 s32
]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", ZOO, ids=_case_ids)
def test_zoo_layer_shapes(layout, case):
    x, weight, bias, kw = _make(case, "cpu", dtype=torch.float32)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    leaves = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    xd, wd = ref_leaves[0], ref_leaves[1]
    bd = ref_leaves[2] if bias is not None else None
    ref = F.conv_transpose2d(xd, wd, bd, **kw)
    out = conv_transpose2d(x, weight, bias, **kw)
    scale = case[1] * 9 ** 0.5 * 1e-6  # float32 rounding of a C_in x taps sum
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=scale)
    grad = torch.randn(ref.shape, dtype=torch.float64)
    expected = torch.autograd.grad(ref, ref_leaves, grad)
    got = torch.autograd.grad(out, leaves, grad.float())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-3 * e.abs().max().item())



@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_cpu_bias_gradient_of_cancelling_terms_is_exact(layout):
    # A bias followed by batch norm gets a gradient whose terms cancel (true value ~0): the
    # float32 result must be the exact sum rounded once, not a float sum's rounding residue.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 50, 50, generator=g)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(3, 4, 3, 3, generator=g)
    bias = torch.zeros(4, requires_grad=True)
    y = conv_transpose2d(x, weight, bias, stride=2)
    gy = torch.randn(y.shape, generator=g)
    gy = gy - gy.double().mean((0, 2, 3), keepdim=True).float()  # per channel: sums near zero
    (got,) = torch.autograd.grad(y, bias, gy.contiguous(memory_format=torch.channels_last)
                                 if layout == "nhwc" else gy)
    exact = gy.double().sum((0, 2, 3))  # float32 terms summed in float64: exact to ~1e-16
    assert (got.double() - exact).abs().max() <= 1e-6 * exact.abs().max() + 1e-30

@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", [ZOO[6], IMPLICIT_CASES[4], (2, 16, 24, 50, 50, 3, 1, 1, 0, 1, 1, True)],
                         ids=_case_ids)
def test_cpu_backward_independent_of_thread_count(layout, case):
    # Bitwise the same on 1, 2, 3 threads: U-Net's k2 s2 (disjoint form) and stride-1 layers
    # (implicit forms; the last one's grad_weight sums several fixed pixel chunks).
    x, weight, bias, kw = _make(case, "cpu", dtype=torch.float32)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
            out = conv_transpose2d(*leaves, **kw)
            results.append((out, *torch.autograd.grad(out, leaves, torch.ones_like(out))))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_huge_stride_costs_what_the_output_costs():
    # Issue 15 item 6: the work followed stride_h * stride_w (26 s here at stride 300000).
    import time

    x, w = torch.randn(1, 1, 1, 1), torch.randn(1, 1, 1, 1)
    for stride in (300000, 10**9):
        start = time.perf_counter()
        out = conv_transpose2d(x, w, stride=stride)
        assert time.perf_counter() - start < 0.5
        torch.testing.assert_close(out, F.conv_transpose2d(x, w, stride=stride))
    # Many phases, most of them without taps, forward and backward.
    x = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    out = conv_transpose2d(x, w, stride=(1000, 7), output_padding=(5, 0))
    ref = F.conv_transpose2d(x, w, stride=(1000, 7), output_padding=(5, 0))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), (x, w)),
                               torch.autograd.grad(ref.sum(), (x, w)))


def test_cpu_gemm_env_aten_matches():
    # PYSEG_GEMM=aten routes the kernels' GEMMs through at::mm (for comparison): same values.
    import os
    import subprocess
    import sys

    code = (
        "import torch, pyseg, torch.nn.functional as F\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(2, 8, 5, 6, generator=g, dtype=torch.float64)\n"
        "w = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)\n"
        "for fmt in (torch.contiguous_format, torch.channels_last):\n"
        "    xx = x.contiguous(memory_format=fmt).requires_grad_()\n"
        "    out = pyseg.ops.conv_transpose2d(xx, w, stride=2, padding=1)\n"
        "    ref = F.conv_transpose2d(xx, w, stride=2, padding=1)\n"
        "    torch.testing.assert_close(out, ref)\n"
        "    torch.testing.assert_close(torch.autograd.grad(out.sum(), xx),"
        " torch.autograd.grad(ref.sum(), xx))\n"
        "print(pyseg.info()['gemm'])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYSEG_GEMM": "aten"}, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "aten"


def test_strided_channels_last_weight_in_a_half_type_cpu():
    # A strided channels_last view of a bfloat16 weight is not channels_last-contiguous, but
    # its float32 conversion is: grad_weight's layout and the kernels' k order must both be
    # decided on the weight as passed (they once disagreed and grad_weight was scrambled).
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5).bfloat16().contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 6, 3, 3).bfloat16().contiguous(memory_format=torch.channels_last)[:, ::2]
    assert not w.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 3, 7, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    gx, gw, _ = torch.ops.pyseg.conv_transpose2d_backward(
        g, x, w, [1, 1], [0, 0], [0, 0], 1, [1, 1], [True, True, False])
    xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
    gxr, gwr = torch.autograd.grad(F.conv_transpose2d(xr, wr), (xr, wr), g.double())
    torch.testing.assert_close(gw.double(), gwr, atol=0.2, rtol=0.02)
    torch.testing.assert_close(gx.double(), gxr, atol=0.2, rtol=0.02)
