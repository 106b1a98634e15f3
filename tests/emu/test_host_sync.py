"""No op stalls the stream mid-op: the emulator counts what the launch code does on the host
with device memory (``_emu.host_sync_counts``, see csrc/emu/emu_launcher.h).

On a GPU a host read of a device value (``.item()``) between two kernels waits for the first
one, and a host-to-device copy of a pageable tensor waits too; both also make the op
impossible to capture in a CUDA graph. The emulator sees every aten op the launch code
calls while an emulated op runs: ``_local_scalar_dense`` is a host read ("mid-op" when a
launch of the same op follows it), ``to`` / ``_to_copy`` a transfer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.emu

ops = torch.ops.pyseg_emu


@pytest.fixture
def counts(emu):
    emu.host_sync_counts(reset=True)

    def read():
        return emu.host_sync_counts(reset=True)

    return read


def test_counter_sees_a_read_between_launches(emu, counts):
    # The checker itself: the same two launches with the host read after them / between them.
    x = torch.randn(1000, dtype=torch.float64)
    partial, _ = emu.selftest("sum_then_read", x, 64, 2)
    torch.testing.assert_close(partial.sum(), x.sum())
    assert counts() == {"ops": 1, "host_reads": 1, "host_reads_mid_op": 0, "transfers": 0}
    emu.selftest("read_between_launches", x, 64, 2)
    assert counts() == {"ops": 1, "host_reads": 1, "host_reads_mid_op": 1, "transfers": 0}


def _unpool_inputs():
    x = torch.randn(2, 3, 8, 8)
    return F.max_pool2d(x, 2, return_indices=True)


def test_max_unpool_reads_its_error_slot_once_at_the_end(counts):
    y, idx = _unpool_inputs()
    out = ops.max_unpool2d(y, idx, [8, 8])
    torch.testing.assert_close(out, F.max_unpool2d(y, idx, 2), rtol=0, atol=0)
    # One check of the error slot, after the last kernel.
    assert counts() == {"ops": 1, "host_reads": 1, "host_reads_mid_op": 0, "transfers": 0}
    grad = ops.max_unpool2d_backward(torch.randn(2, 3, 8, 8), idx)
    assert grad.shape == y.shape
    assert counts() == {"ops": 1, "host_reads": 1, "host_reads_mid_op": 0, "transfers": 0}


def test_max_unpool_bad_index_still_raises_after_the_kernels(counts):
    y, idx = _unpool_inputs()
    idx = idx.clone()
    idx[1, 2, 3, 1] = 64  # one past the plane
    with pytest.raises(RuntimeError, match=r"invalid max index: 64 .*\[1, 2, 3, 1\]"):
        ops.max_unpool2d(y, idx, [8, 8])
    assert counts()["host_reads_mid_op"] == 0


def _every_op():
    """(name, thunk) for every emulated op, forward and backward, on small inputs."""
    x = torch.randn(2, 3, 5, 6)
    y, idx = _unpool_inputs()
    w = torch.randn(3, 4, 3, 3)
    cases = [
        ("max_unpool2d", lambda: ops.max_unpool2d(y, idx, [8, 8])),
        ("max_unpool2d_backward", lambda: ops.max_unpool2d_backward(torch.randn(2, 3, 8, 8), idx)),
        ("bed_of_nails", lambda: ops.bed_of_nails(x, [2, 3])),
        ("bed_of_nails_backward", lambda: ops.bed_of_nails_backward(torch.randn(2, 3, 10, 18), [2, 3])),
        ("conv_transpose2d", lambda: ops.conv_transpose2d(x, w, None, [2, 2], [1, 1], [1, 1], 1, [1, 1])),
        ("conv_transpose2d_backward", lambda: ops.conv_transpose2d_backward(
            torch.randn(2, 4, 10, 12), x, w, [2, 2], [1, 1], [1, 1], 1, [1, 1], [True, True, True])),
    ]
    for mode in ("nearest", "bilinear", "bicubic"):
        for align in ([False] if mode == "nearest" else [False, True]):
            cases.append((f"upsample2d {mode} {align}",
                          lambda m=mode, a=align: ops.upsample2d(x, [9, 4], m, a, None, None)))
            cases.append((f"upsample2d_backward {mode} {align}",
                          lambda m=mode, a=align: ops.upsample2d_backward(
                              torch.randn(2, 3, 9, 4), [2, 3, 5, 6], m, a, None, None)))
    dw = torch.randn(4, 3, 3, 3)
    offset = torch.randn(2, 18, 5, 6)
    mask = torch.rand(2, 9, 5, 6)
    bias = torch.randn(4)
    args = (1, 1, 1, 1, 1, 1, 1, 1, True)
    cases.append(("deform_conv2d", lambda: ops.deform_conv2d(x, dw, offset, mask, bias, *args)))
    cases.append(("_deform_conv2d_backward", lambda: ops._deform_conv2d_backward(
        torch.randn(2, 4, 5, 6), x, dw, offset, mask, bias, *args)))
    return cases


@pytest.mark.parametrize("name,run", _every_op(), ids=[c[0] for c in _every_op()])
def test_no_op_reads_device_memory_mid_op_or_copies_from_the_host(counts, name, run):
    run()
    c = counts()
    assert c["ops"] == 1
    assert c["host_reads_mid_op"] == 0, f"{name} waits for the device between its kernels"
    assert c["transfers"] == 0, f"{name} copies tensors between host and device"
    # Only max_unpool2d has a final check (its error slot); nothing else reads at all.
    assert c["host_reads"] == (1 if name.startswith("max_unpool2d") else 0)


@pytest.fixture
def capture(emu):
    emu.set_pretend_capture(True)
    yield
    emu.set_pretend_capture(False)


def test_max_unpool_under_graph_capture_traps_instead_of_reading(emu, counts, capture):
    y, idx = _unpool_inputs()
    out = ops.max_unpool2d(y, idx, [8, 8])
    torch.testing.assert_close(out, F.max_unpool2d(y, idx, 2), rtol=0, atol=0)
    ops.max_unpool2d_backward(torch.randn(2, 3, 8, 8), idx)
    c = counts()
    assert c["host_reads"] == 0 and c["ops"] == 2
    bad = idx.clone()
    bad[0, 1, 2, 3] = -1
    with pytest.raises(RuntimeError, match="device-side trap"):
        ops.max_unpool2d(y, bad, [8, 8])
    with pytest.raises(RuntimeError, match="device-side trap"):
        ops.max_unpool2d_backward(torch.randn(2, 3, 8, 8), bad)
