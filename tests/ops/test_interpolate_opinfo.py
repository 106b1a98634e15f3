"""Every CPU sample of torch's own OpInfo entries for interpolation
(torch.testing._internal.common_methods_invocations.op_db) run through pyseg.ops.interpolate
and compared with the torch op: values in float32 and float64, gradients in float64."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pyseg.ops import interpolate
from pyseg.ops._library import op

common_methods_invocations = pytest.importorskip(
    "torch.testing._internal.common_methods_invocations"
)

_VARIANTS = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")


def _upsample_bilinear_aa(input: torch.Tensor, output_size: Any = None, align_corners: bool = False,
                          scale_factors: Any = None, scales_h: float | None = None,
                          scales_w: float | None = None) -> torch.Tensor:
    if output_size is not None and (scales_h is not None or scales_w is not None):
        # The overload with a size and per-axis scales, which interpolate cannot express: the
        # operator itself (a scale <= 0 counts as absent, as in ATen's compute_scales_value).
        out: torch.Tensor = op("upsample")(input, list(output_size), "bilinear", align_corners,
                                           True, [scales_h or 0.0, scales_w or 0.0])
        return out
    return interpolate(input, size=output_size, scale_factor=scale_factors, mode="bilinear",
                       align_corners=align_corners, antialias=True)


def _upsample_bilinear(input: torch.Tensor, size: Any = None, scale_factor: Any = None) -> torch.Tensor:
    # torch.nn.functional.upsample_bilinear: interpolate with align_corners=True
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def _upsample_nearest(input: torch.Tensor, size: Any = None, scale_factor: Any = None) -> torch.Tensor:
    return interpolate(input, size, scale_factor, mode="nearest")


_OURS: dict[str, Callable[..., torch.Tensor]] = {
    "nn.functional.interpolate": interpolate,
    "nn.functional.upsample_bilinear": _upsample_bilinear,
    "nn.functional.upsample_nearest": _upsample_nearest,
    "_upsample_bilinear2d_aa": _upsample_bilinear_aa,
}


def _entries():
    out = []
    for info in common_methods_invocations.op_db:
        if info.name not in _OURS:
            continue
        if info.name == "nn.functional.interpolate" and info.variant_test_name not in _VARIANTS:
            continue
        out.append(info)
    return out


ENTRIES = _entries()


def test_every_entry_is_present():
    names = {(e.name, e.variant_test_name) for e in ENTRIES}
    expected = {("nn.functional.interpolate", v) for v in _VARIANTS}
    expected |= {(n, "") for n in _OURS if n != "nn.functional.interpolate"}
    assert names == expected


def _compare(info, dtype: torch.dtype, gradients: bool) -> tuple[int, list[str]]:
    ours = _OURS[info.name]
    passed, failures = 0, []
    samples = list(info.sample_inputs("cpu", dtype, requires_grad=gradients))
    assert samples
    for i, sample in enumerate(samples):
        try:
            ref = info.op(sample.input, *sample.args, **sample.kwargs)
            out = ours(sample.input, *sample.args, **sample.kwargs)
            tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out, ref, **tol)
            if gradients:
                g = torch.randn(ref.shape, dtype=dtype, generator=torch.Generator().manual_seed(i))
                (gr,) = torch.autograd.grad(ref, sample.input, g)
                (go,) = torch.autograd.grad(out, sample.input, g)
                torch.testing.assert_close(go, gr, **tol)
        except Exception as e:  # noqa: BLE001 (collected: every failing sample is reported)
            failures.append(f"sample {i} {tuple(sample.input.shape)} {sample.args} "
                            f"{sample.kwargs}: {type(e).__name__}: {str(e)[:200]}")
        else:
            passed += 1
    return passed, failures


@pytest.mark.parametrize("check", ["float32", "float64", "float64-grad"])
@pytest.mark.parametrize("info", ENTRIES, ids=lambda e: f"{e.name}.{e.variant_test_name}".rstrip("."))
def test_opinfo_samples_match_torch(info, check):
    dtype = torch.float32 if check == "float32" else torch.float64
    passed, failures = _compare(info, dtype, gradients=check.endswith("grad"))
    print(f"{info.name} {info.variant_test_name} {check}: {passed} passed, "
          f"{len(failures)} failed")
    assert not failures, "\n".join(failures)
