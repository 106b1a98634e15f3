"""pyseg's CPU GEMM (csrc/common/gemm.h) and the capability dispatch.

Every variant the machine supports is compared with float64 ``torch.mm`` on odd shapes,
strides/transposes, accumulation and prepacked operands; results must not depend on the
thread count.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import pyseg
from pyseg import _loader
from tests.ops.conftest import supported_capabilities, using_capability

C = _loader._C
SIZES = [1, 7, 13, 31, 64, 65, 200]


def reference(a, b):
    return torch.mm(a.double(), b.double())


def gemm(a, b, out=None, accumulate=False, pack=""):
    if out is None:
        out = torch.full((a.shape[0], b.shape[1]), float("nan"), dtype=a.dtype)
    C._gemm(a, b, out, accumulate, pack)
    return out


def tol(dtype, k):
    if dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 1e-5 * k}
    return {"rtol": 1e-12, "atol": 1e-12 * k}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_odd_shapes(cpu_capability, dtype):
    g = torch.Generator().manual_seed(0)
    for m in SIZES:
        for n in SIZES:
            for k in (1, 13, 65, 300):  # 300 > the k block (256)
                a = torch.randn(m, k, generator=g, dtype=dtype)
                b = torch.randn(k, n, generator=g, dtype=dtype)
                got = gemm(a, b)
                torch.testing.assert_close(got.double(), reference(a, b), **tol(dtype, k),
                                           msg=f"{cpu_capability} {m}x{n}x{k}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pack", ["", "a", "b"])
def test_transposes_strides_accumulate(cpu_capability, dtype, pack):
    g = torch.Generator().manual_seed(1)
    m, n, k = 37, 45, 70
    a_t = torch.randn(k, m, generator=g, dtype=dtype).t()  # A^T: column-major A
    b_t = torch.randn(n, k, generator=g, dtype=dtype).t()
    a_s = torch.randn(m, 2 * k, generator=g, dtype=dtype)[:, ::2]  # column stride 2
    b_s = torch.randn(k, n + 9, generator=g, dtype=dtype)[:, 3 : 3 + n]  # row stride n + 9
    for a in (a_t, a_s):
        for b in (b_t, b_s):
            torch.testing.assert_close(gemm(a, b, pack=pack).double(), reference(a, b), **tol(dtype, k))
    # C with a row stride larger than its width, and C += A @ B.
    base = torch.randn(m, n + 5, generator=g, dtype=dtype)
    out = base.clone()[:, :n]
    gemm(a_t, b_s, out=out, accumulate=True, pack=pack)
    torch.testing.assert_close(out.double(), base[:, :n].double() + reference(a_t, b_s), **tol(dtype, k))



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_few_rows_round_like_many(cpu_capability, dtype):
    # Up to 4 rows of A stream B instead of packing it (a matrix-vector product is bound by
    # reading B); every element must still be bitwise what the packed path gives, which is
    # the same element of a product with many rows. k = 600 spans three k blocks, n = 1100
    # gives a partial vector at the edge and more than one column chunk.
    g = torch.Generator().manual_seed(4)
    k, n = 600, 1100
    a_many = torch.randn(20, k, generator=g, dtype=dtype)
    b = torch.randn(k, n, generator=g, dtype=dtype)
    many = gemm(a_many, b)
    base = torch.randn(20, n, generator=g, dtype=dtype)
    many_acc = base.clone()
    gemm(a_many, b, out=many_acc, accumulate=True)
    a_t = a_many.t().contiguous().t()  # column-major A: strided reads of its rows
    for m in (1, 2, 3, 4, 5):
        for a in (a_many[:m], a_t[:m]):
            assert torch.equal(gemm(a, b), many[:m]), (m, a.stride())
            out = base[:m].clone()
            gemm(a, b, out=out, accumulate=True)
            assert torch.equal(out, many_acc[:m]), m
    torch.testing.assert_close(many.double(), reference(a_many, b), **tol(dtype, k))

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_tiles_and_aliasing_rows_round_like_full_tiles(cpu_capability, dtype):
    # Each element of C is one FMA chain over k in order, whatever tile computes it: an edge
    # tile (its own micro-kernel for the rows and vectors it has) and a full tile must agree
    # bitwise, and so must A read in place, A packed because its rows are 4 KB apart (1024
    # floats or 512 doubles: they would share one L1 set), and A prepacked.
    g = torch.Generator().manual_seed(5)
    k = 300  # two k blocks
    a = torch.randn(40, k, generator=g, dtype=dtype)
    b = torch.randn(k, 70, generator=g, dtype=dtype)
    full = gemm(a, b)
    for m in range(1, 30):  # every row count of an edge tile, for MR up to 14
        assert torch.equal(gemm(a[:m], b), full[:m]), m
    for n in range(1, 70):  # every column count of one and two vectors
        assert torch.equal(gemm(a, b[:, :n].contiguous()), full[:, :n]), n
    for row in (4096 // a.element_size(), 8192 // a.element_size(), k + 7):  # elements
        strided = torch.zeros(a.shape[0], row, dtype=dtype)[:, :k]
        strided.copy_(a)
        for pack in ("", "a"):
            assert torch.equal(gemm(strided, b, pack=pack), full), (row, pack)
    torch.testing.assert_close(full.double(), reference(a, b), **tol(dtype, k))


def test_empty_and_k0():
    a, b = torch.randn(5, 0), torch.randn(0, 6)
    out = torch.full((5, 6), 3.0)
    C._gemm(a, b, out, False, "")
    assert out.eq(0).all()
    out.fill_(3.0)
    C._gemm(a, b, out, True, "")
    assert out.eq(3).all()
    C._gemm(torch.randn(0, 4), torch.randn(4, 6), torch.empty(0, 6), False, "")


def test_bad_arguments():
    with pytest.raises(RuntimeError, match="sizes do not match"):
        C._gemm(torch.randn(3, 4), torch.randn(5, 6), torch.empty(3, 6), False, "")
    with pytest.raises(RuntimeError, match="one dtype"):
        C._gemm(torch.randn(3, 4), torch.randn(4, 6).double(), torch.empty(3, 6), False, "")


def test_variants_agree_with_default():
    # Same inputs through every variant: close to the baseline (FMA rounding differs).
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(129, 300, generator=g), torch.randn(300, 77, generator=g)
    with using_capability("default"):
        base = gemm(a, b)
    for cap in supported_capabilities():
        with using_capability(cap):
            torch.testing.assert_close(gemm(a, b), base, rtol=1e-5, atol=1e-4)


def test_deterministic_across_threads(cpu_capability):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(300, 700, generator=g), torch.randn(700, 260, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gemm(a, b)
        torch.set_num_threads(max(2, threads))
        many = gemm(a, b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


def test_info_reports_capability():
    facts = pyseg.info()
    assert facts["cpu_capability"] in facts["cpu_capabilities_compiled"]
    assert "default" in facts["cpu_capabilities_compiled"]
    order = ["default", "avx2", "avx512"]
    assert order.index(facts["cpu_capability"]) <= order.index(facts["cpu_capability_supported"])


def _info_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import pyseg, json; print(json.dumps(pyseg.info()))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)


def test_environment_forces_lower_capability():
    import json

    res = _info_with({"PYSEG_CPU_CAPABILITY": "default"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["cpu_capability"] == "default"
    bad = _info_with({"PYSEG_CPU_CAPABILITY": "avx9000"})
    assert bad.returncode != 0
    assert "PYSEG_CPU_CAPABILITY must be one of default, avx2, avx512" in bad.stderr


def _offsets_with_runs(g, k, span):
    """k offsets into [0, span): runs of consecutive values (1 to 300 long, some longer than
    the k block) separated by jumps, like a conv's per-tap shifts."""
    out = []
    while len(out) < k:
        run = int(torch.randint(1, 300, (1,), generator=g))
        start = int(torch.randint(0, span - run, (1,), generator=g))
        out.extend(range(start, start + run))
    return torch.tensor(out[:k], dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pack", ["", "a", "b"])
def test_gathered_operands(cpu_capability, dtype, pack):
    # Implicit-GEMM operands (a conv's input read through per-tap offsets): A with column
    # offsets (read in place run by run, or packed), B with row offsets (gathered when packed),
    # against torch.mm of the same matrices materialized with index_select.
    g = torch.Generator().manual_seed(7)
    for m, n, k in [(1, 5, 3), (13, 31, 300), (29, 64, 513), (200, 17, 700)]:
        a_stride, b_stride = 700, 3
        a = torch.randn(m * a_stride + 700, generator=g, dtype=dtype)
        b = torch.randn(2000 + n * b_stride, generator=g, dtype=dtype)
        ao = _offsets_with_runs(g, k, 700)
        bo = _offsets_with_runs(g, k, 2000)
        a_mat = a[torch.arange(m)[:, None] * a_stride + ao[None, :]]
        b_mat = b[bo[:, None] + torch.arange(n)[None, :] * b_stride]
        out = torch.full((m, n), float("nan"), dtype=dtype)
        C._gemm_gathered(a, m, a_stride, ao, b, bo, n, b_stride, out, pack)
        torch.testing.assert_close(out.double(), reference(a_mat, b_mat), **tol(dtype, k),
                                   msg=f"{cpu_capability} {m}x{n}x{k} pack={pack!r}")


def test_gathered_offsets_checked():
    a, b = torch.zeros(10), torch.zeros(10)
    out = torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match="a offset out of range"):
        C._gemm_gathered(a, 2, 5, torch.tensor([0, 9]), b, torch.tensor([0, 1]), 2, 1, out)
    with pytest.raises(RuntimeError, match="b offset out of range"):
        C._gemm_gathered(a, 2, 5, torch.tensor([0, 1]), b, torch.tensor([0, 9]), 2, 1, out)
