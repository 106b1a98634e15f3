"""Built-in benchmark cases: every pyseg op against its torch / torchvision counterpart.

For each op: the shapes named in its kernel issue, a size sweep (batch 1, growing spatial
size, so the plot shows how cost grows), and a tiny set for ``pyseg bench --quick``; each
forward and forward + backward. A case whose pyseg op is not in this build reports
``unavailable (pyseg.ops.<op> missing)`` and is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from pyseg.bench import pyseg_op, requires_pyseg_op
from pyseg.bench.models import ConvTransposeLayer
from pyseg.hookspecs import hookimpl
from pyseg.registry import BenchmarkCase

CL = torch.channels_last


def _both(name: str, label: str, sub_label: str, make_inputs: Callable[..., Any],
          ours: Callable[..., Any], reference: Callable[..., Any], *,
          requires: Callable[..., str | None], summary: str, quick: bool = False,
          sweep: str = "", size: int = 0, rtol: float | None = None) -> Iterator[BenchmarkCase]:
    """The forward case and the forward + backward case of one shape."""
    for backward in (False, True):
        yield BenchmarkCase(
            name=f"{name}+bwd" if backward else name, label=label, sub_label=sub_label,
            make_inputs=make_inputs, ours=ours, reference=reference, backward=backward,
            summary=summary, requires=requires, rtol=rtol, quick=quick, sweep=sweep, size=size,
        )


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def _shape(*s: int) -> str:
    return "(" + ",".join(map(str, s)) + ")"


def _requires_all(*checks: Callable[..., str | None]) -> Callable[..., str | None]:
    def requires(device: Any, dtype: Any) -> str | None:
        for check in checks:
            reason = check(device, dtype)
            if reason:
                return reason
        return None

    return requires


def _requires_torchvision(device: Any = None, dtype: Any = None) -> str | None:
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:
        return "unavailable (torchvision, the reference, is not installed)"
    return None


# --- max_unpool2d ------------------------------------------------------------------------

def _unpool_inputs(n: int, c: int, h: int, w: int, channels_last: bool) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        # Real pooling indices: max_pool2d of an input twice the size.
        pooled, indices = F.max_pool2d(_randn(n, c, 2 * h, 2 * w, seed=0), 2,
                                       return_indices=True)
        pooled, indices = pooled.to(device=device, dtype=dtype), indices.to(device)
        if channels_last:
            pooled, indices = pooled.contiguous(memory_format=CL), indices.contiguous(
                memory_format=CL)
        return (pooled, indices, 2)

    return make


def _max_unpool2d_cases() -> Iterator[BenchmarkCase]:
    label = "max_unpool2d"
    kw = dict(requires=requires_pyseg_op(label),
              summary="pyseg.ops.max_unpool2d vs torch.nn.functional.max_unpool2d")
    ours, ref = pyseg_op(label), F.max_unpool2d

    def shape(n: int, c: int, h: int, w: int, cl: bool, **extra: Any) -> Iterator[BenchmarkCase]:
        fmt = " channels_last" if cl else ""
        yield from _both(f"{label}/{n}x{c}x{h}x{w}{'-cl' if cl else ''}", label,
                         f"{_shape(n, c, h, w)}->{2 * h}x{2 * w}{fmt}",
                         _unpool_inputs(n, c, h, w, cl), ours, ref, **kw, **extra)

    for cl in (False, True):
        yield from shape(8, 64, 64, 64, cl)
    for s in (16, 32, 64, 128):
        yield from shape(1, 64, s, s, False, sweep=label, size=64 * 4 * s * s)
    yield from shape(2, 8, 16, 16, False, quick=True)


# --- conv_transpose2d --------------------------------------------------------------------

def _conv_t_inputs(n: int, cin: int, h: int, w: int, cout: int, stride: int,
                   channels_last: bool = False) -> Callable[..., Any]:
    output_padding = 1 if stride == 2 else 0

    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        x = _randn(n, cin, h, w, seed=0)
        weight = _randn(cin, cout, 3, 3, seed=1, scale=1 / math.sqrt(cin * 9))
        bias = _randn(cout, seed=2)
        x, weight, bias = (t.to(device=device, dtype=dtype) for t in (x, weight, bias))
        if channels_last:
            x = x.contiguous(memory_format=CL)
        return (x, weight, bias, stride, 1, output_padding)

    return make


def _conv_transpose2d_cases() -> Iterator[BenchmarkCase]:
    label = "conv_transpose2d"
    kw = dict(requires=requires_pyseg_op(label),
              summary="pyseg.ops.conv_transpose2d vs torch.nn.functional.conv_transpose2d")
    ours, ref = pyseg_op(label), F.conv_transpose2d

    def shape(n: int, cin: int, h: int, w: int, cout: int, stride: int, tag: str = "",
              **extra: Any) -> Iterator[BenchmarkCase]:
        op = ",op1" if stride == 2 else ""
        ho, wo = (h * 2, w * 2) if stride == 2 else (h, w)
        yield from _both(
            f"{label}/{n}x{cin}x{h}x{w}-{cout}-s{stride}{tag and '-' + tag}", label,
            f"{_shape(n, cin, h, w)}->{cout}ch k3,s{stride},p1{op} ->{ho}x{wo}"
            f"{tag and ' ' + tag}",
            _conv_t_inputs(n, cin, h, w, cout, stride), ours, ref, **kw, **extra)

    yield from shape(8, 128, 64, 64, 64, 2)
    # The Oxford Pets encoder-decoder's transposed convolutions at 200x200 input.
    yield from shape(8, 256, 25, 25, 256, 1, "pets")
    yield from shape(8, 256, 25, 25, 256, 2, "pets")
    yield from shape(8, 128, 50, 50, 128, 2, "pets")
    yield from shape(8, 64, 100, 100, 64, 2, "pets")
    for s in (16, 32, 64, 128):
        yield from shape(1, 64, s, s, 64, 2, sweep=label, size=64 * 4 * s * s)
    yield from shape(2, 16, 16, 16, 16, 2, quick=True)
    yield from _zoo_conv_transpose2d_cases(ours, ref, kw)


# Every transposed-convolution call the built-in networks make at the input sizes of
# `pyseg bench --models` (pyseg.bench.models.BUILTIN_SETUPS), with the networks making it.
# Found with pyseg.bench.models.conv_transpose_layers (the networks run on the meta
# device); tests/bench/test_models.py checks that this list is still what they make.
def _layer(shape: tuple[int, int, int, int], cout: int, k: int, s: int, p: int, op: int,
           bias: bool) -> ConvTransposeLayer:
    return ConvTransposeLayer(shape, cout, (k, k), (s, s), (p, p), (op, op), 1, (1, 1), bias)


ZOO_CONV_TRANSPOSE_LAYERS: tuple[tuple[ConvTransposeLayer, tuple[str, ...]], ...] = (
    (_layer((4, 256, 25, 25), 256, 3, 1, 1, 0, True), ("pets-encdec",)),
    (_layer((4, 256, 25, 25), 256, 3, 2, 0, 0, True), ("pets-encdec",)),
    (_layer((4, 256, 50, 50), 128, 3, 1, 1, 0, True), ("pets-encdec",)),
    (_layer((4, 128, 50, 50), 128, 3, 2, 0, 0, True), ("pets-encdec",)),
    (_layer((4, 128, 100, 100), 64, 3, 1, 1, 0, True), ("pets-encdec",)),
    (_layer((4, 64, 100, 100), 64, 3, 2, 0, 0, True), ("pets-encdec",)),
    (_layer((2, 4096, 1, 1), 512, 7, 1, 0, 0, False), ("deconvnet",)),
    (_layer((2, 512, 8, 8), 512, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 512, 16, 16), 512, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 512, 16, 16), 256, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 256, 32, 32), 256, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 256, 32, 32), 128, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 128, 64, 64), 128, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 128, 64, 64), 64, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((2, 64, 128, 128), 64, 3, 1, 1, 0, False), ("deconvnet",)),
    (_layer((8, 128, 8, 8), 64, 2, 2, 0, 0, True), ("unet", "unet-dcn")),
    (_layer((8, 64, 16, 16), 32, 2, 2, 0, 0, True), ("unet", "unet-dcn")),
    (_layer((8, 32, 32, 32), 16, 2, 2, 0, 0, True), ("unet", "unet-dcn")),
    (_layer((2, 3, 5, 5), 3, 4, 2, 0, 0, False), ("fcn8s", "fcn16s")),
    (_layer((2, 3, 12, 12), 3, 4, 2, 0, 0, False), ("fcn8s",)),
    (_layer((2, 3, 26, 26), 3, 16, 8, 0, 0, False), ("fcn8s",)),
    (_layer((2, 3, 12, 12), 3, 32, 16, 0, 0, False), ("fcn16s",)),
    (_layer((2, 3, 5, 5), 3, 64, 32, 0, 0, False), ("fcn32s",)),
)


def zoo_case_name(layer: ConvTransposeLayer, channels_last: bool = False) -> str:
    n, cin, h, w = layer.input_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = (layer.kernel_size, layer.stride, layer.padding,
                                              layer.output_padding)
    return (f"conv_transpose2d/zoo-{n}x{cin}x{h}x{w}-{layer.out_channels}-k{kh}x{kw}-s{sh}x{sw}"
            f"-p{ph}x{pw}-op{oh}x{ow}{'' if layer.bias else '-nobias'}"
            f"{'-cl' if channels_last else ''}")


def _zoo_inputs(layer: ConvTransposeLayer, channels_last: bool) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        cin = layer.input_shape[1]
        kh, kw = layer.kernel_size
        x = _randn(*layer.input_shape, seed=0)
        weight = _randn(cin, layer.out_channels // layer.groups, kh, kw, seed=1,
                        scale=1 / math.sqrt(cin * kh * kw))
        bias = _randn(layer.out_channels, seed=2) if layer.bias else None
        x, weight = x.to(device=device, dtype=dtype), weight.to(device=device, dtype=dtype)
        if bias is not None:
            bias = bias.to(device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=CL)
        return (x, weight, bias, layer.stride, layer.padding, layer.output_padding,
                layer.groups, layer.dilation)

    return make


def _zoo_conv_transpose2d_cases(ours: Callable[..., Any], ref: Callable[..., Any],
                                kw: dict) -> Iterator[BenchmarkCase]:
    for layer, networks in ZOO_CONV_TRANSPOSE_LAYERS:
        n, cin, h, w = layer.input_shape
        k, s, p, op = (layer.kernel_size[0], layer.stride[0], layer.padding[0],
                       layer.output_padding[0])
        for cl in (False, True):
            sub_label = (f"{_shape(n, cin, h, w)}->{layer.out_channels}ch k{k},s{s},p{p}"
                         f"{f',op{op}' if op else ''}{'' if layer.bias else ',nobias'}"
                         f"{' channels_last' if cl else ''} [{'/'.join(networks)}]")
            yield from _both(zoo_case_name(layer, cl), "conv_transpose2d", sub_label,
                             _zoo_inputs(layer, cl), ours, ref, **kw)


# --- interpolate -------------------------------------------------------------------------

def _interp_inputs(n: int, c: int, h: int, w: int, mode: str,
                   channels_last: bool) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> dict:
        x = _randn(n, c, h, w, seed=0).to(device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=CL)
        kwargs: dict[str, Any] = {"input": x, "scale_factor": 2, "mode": mode}
        if mode != "nearest":
            kwargs["align_corners"] = False
        return kwargs

    return make


def _interpolate_cases() -> Iterator[BenchmarkCase]:
    label = "interpolate"
    kw = dict(requires=requires_pyseg_op(label),
              summary="pyseg.ops.interpolate vs torch.nn.functional.interpolate")
    ours, ref = pyseg_op(label), F.interpolate

    def shape(n: int, c: int, h: int, w: int, mode: str, cl: bool,
              **extra: Any) -> Iterator[BenchmarkCase]:
        fmt = " channels_last" if cl else ""
        yield from _both(f"{label}/{mode}-{n}x{c}x{h}x{w}{'-cl' if cl else ''}", label,
                         f"{mode} {_shape(n, c, h, w)} x2{fmt}",
                         _interp_inputs(n, c, h, w, mode, cl), ours, ref, **kw, **extra)

    for mode in ("bilinear", "bicubic"):
        for cl in (False, True):
            yield from shape(8, 64, 128, 128, mode, cl)
    yield from shape(8, 64, 128, 128, "nearest", False)
    for mode in ("bilinear", "bicubic"):
        for s in (32, 64, 128, 256):
            yield from shape(1, 64, s, s, mode, False, sweep=f"{label} {mode}",
                             size=64 * 4 * s * s)
        yield from shape(2, 8, 32, 32, mode, False, quick=True)
    yield from _interpolate_nd_cases(label, ours, ref, kw)


def _interp_nd_inputs(shape: tuple[int, ...], kwargs: dict[str, Any],
                      channels_last: bool) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> dict:
        x = _randn(*shape, seed=0).to(device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=CL if x.dim() == 4 else torch.channels_last_3d)
        return {"input": x, **kwargs}

    return make


def _interpolate_nd_cases(label: str, ours: Any, ref: Any, kw: dict) -> Iterator[BenchmarkCase]:
    """The modes and ranks beyond 4-D nearest / bilinear / bicubic (the N-d operator)."""

    def case(shape: tuple[int, ...], mode: str, scale: float, cl: bool = False,
             antialias: bool = False, **extra: Any) -> Iterator[BenchmarkCase]:
        kwargs: dict[str, Any] = {"scale_factor": scale, "mode": mode}
        if mode in ("linear", "bilinear", "bicubic", "trilinear"):
            kwargs["align_corners"] = False
        if antialias:
            kwargs["antialias"] = True
        tag = f"{mode}{'-aa' if antialias else ''}"
        dims = "x".join(map(str, shape))
        yield from _both(f"{label}/{tag}-{dims}-s{scale:g}{'-cl' if cl else ''}", label,
                         f"{tag} {_shape(*shape)} x{scale:g}{' channels_last' if cl else ''}",
                         _interp_nd_inputs(shape, kwargs, cl), ours, ref, **kw, **extra)

    big4 = (8, 64, 128, 128)
    yield from case(big4, "nearest-exact", 2)
    yield from case(big4, "area", 0.5)
    yield from case(big4, "area", 0.5, cl=True)
    for mode in ("bilinear", "bicubic"):
        yield from case(big4, mode, 0.5, antialias=True)
        yield from case(big4, mode, 0.5, cl=True, antialias=True)
        yield from case(big4, mode, 0.3, antialias=True)
    yield from case((8, 64, 4096), "linear", 2)
    yield from case((8, 64, 4096), "nearest", 2)
    big5 = (2, 32, 32, 64, 64)
    for mode in ("trilinear", "nearest"):
        yield from case(big5, mode, 2)
    yield from case(big5, "trilinear", 2, cl=True)
    yield from case(big5, "area", 0.5)
    yield from case((2, 8, 32, 32), "bilinear", 0.5, antialias=True, quick=True)
    yield from case((1, 4, 8, 16, 16), "trilinear", 2, quick=True)


# --- the 1-D / 3-D ops, the N-d interpolate modes, grid_sample ---------------------------
# One moderate shape per op and mode (a few ms per call here), so that the whole set runs,
# forward and forward + backward, in about a minute: `pyseg bench max_unpool1d max_unpool3d
# conv_transpose1d conv_transpose3d interpolate_nd grid_sample --backward`.

def _unpool_nd_inputs(shape: tuple[int, ...]) -> Callable[..., Any]:
    pool = {3: F.max_pool1d, 5: F.max_pool3d}[len(shape)]

    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        # Real pooling indices: max pooling of an input twice the size.
        n, c, *spatial = shape
        pooled, indices = pool(_randn(n, c, *[2 * s for s in spatial], seed=0), 2,
                               return_indices=True)
        return (pooled.to(device=device, dtype=dtype), indices.to(device), 2)

    return make


def _max_unpool_nd_cases() -> Iterator[BenchmarkCase]:
    for label, shape in (("max_unpool1d", (4, 64, 2048)), ("max_unpool3d", (2, 16, 16, 32, 32))):
        out = "x".join(str(2 * s) for s in shape[2:])
        yield from _both(f"{label}/{'x'.join(map(str, shape))}", label,
                         f"{_shape(*shape)}->{out}", _unpool_nd_inputs(shape), pyseg_op(label),
                         getattr(F, label), requires=requires_pyseg_op(label),
                         summary=f"pyseg.ops.{label} vs torch.nn.functional.{label}")


def _conv_t_nd_inputs(shape: tuple[int, ...], cout: int, k: int) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        cin, spatial = shape[1], shape[2:]
        x = _randn(*shape, seed=0)
        weight = _randn(cin, cout, *[k] * len(spatial), seed=1,
                        scale=1 / math.sqrt(cin * k ** len(spatial)))
        bias = _randn(cout, seed=2)
        x, weight, bias = (t.to(device=device, dtype=dtype) for t in (x, weight, bias))
        return (x, weight, bias, 2, 1, 1)  # stride 2, padding 1, output_padding 1: x2

    return make


def _conv_transpose_nd_cases() -> Iterator[BenchmarkCase]:
    for label, shape, cout in (("conv_transpose1d", (8, 64, 1024), 64),
                               ("conv_transpose3d", (2, 32, 8, 16, 16), 32)):
        out = "x".join(str(2 * s) for s in shape[2:])
        yield from _both(f"{label}/{'x'.join(map(str, shape))}-{cout}-k3s2", label,
                         f"{_shape(*shape)}->{cout}ch k3,s2,p1,op1 ->{out}",
                         _conv_t_nd_inputs(shape, cout, 3), pyseg_op(label), getattr(F, label),
                         requires=requires_pyseg_op(label),
                         summary=f"pyseg.ops.{label} vs torch.nn.functional.{label}")


def _interpolate_mode_cases() -> Iterator[BenchmarkCase]:
    """Each mode of the N-d operator once, at a moderate size (label interpolate_nd; the
    interpolate label has the large shapes)."""
    label = "interpolate_nd"
    kw = dict(requires=requires_pyseg_op("interpolate"),
              summary="pyseg.ops.interpolate (modes and ranks beyond 4-D nearest / bilinear / "
                      "bicubic) vs torch.nn.functional.interpolate")
    calls: tuple[tuple[tuple[int, ...], str, float, bool], ...] = (
        ((4, 32, 64, 64), "nearest-exact", 2, False),
        ((8, 64, 2048), "linear", 2, False),
        ((2, 16, 16, 32, 32), "trilinear", 2, False),
        ((4, 32, 128, 128), "area", 0.5, False),
        ((4, 32, 128, 128), "bilinear", 0.5, True),
        ((4, 32, 128, 128), "bicubic", 0.5, True),
    )
    for shape, mode, scale, antialias in calls:
        kwargs: dict[str, Any] = {"scale_factor": scale, "mode": mode}
        if mode in ("linear", "bilinear", "bicubic", "trilinear"):
            kwargs["align_corners"] = False
        if antialias:
            kwargs["antialias"] = True
        tag = f"{mode}{'-aa' if antialias else ''}"
        yield from _both(f"{label}/{tag}-{'x'.join(map(str, shape))}-s{scale:g}", label,
                         f"{tag} {_shape(*shape)} x{scale:g}",
                         _interp_nd_inputs(shape, kwargs, False), pyseg_op("interpolate"),
                         F.interpolate, **kw)


def _grid_sample_inputs(shape: tuple[int, ...], out: tuple[int, ...], mode: str
                        ) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> dict:
        x = _randn(*shape, seed=0)
        # Points over the image and a little beyond it (the padding is read there).
        grid = torch.rand(shape[0], *out, len(out),
                          generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1
        return {"input": x.to(device=device, dtype=dtype),
                "grid": grid.to(device=device, dtype=dtype), "mode": mode,
                "padding_mode": "zeros", "align_corners": False}

    return make


def _grid_sample_cases() -> Iterator[BenchmarkCase]:
    label = "grid_sample"
    kw = dict(requires=requires_pyseg_op(label),
              summary="pyseg.ops.grid_sample vs torch.nn.functional.grid_sample")
    calls = [((4, 32, 64, 64), (64, 64), mode) for mode in ("bilinear", "nearest", "bicubic")]
    calls += [((2, 16, 16, 32, 32), (16, 32, 32), mode) for mode in ("bilinear", "nearest")]
    for shape, out, mode in calls:
        yield from _both(f"{label}/{mode}-{'x'.join(map(str, shape))}", label,
                         f"{mode} {_shape(*shape)} grid {'x'.join(map(str, out))}",
                         _grid_sample_inputs(shape, out, mode), pyseg_op(label), F.grid_sample,
                         **kw)


# --- deform_conv2d -----------------------------------------------------------------------

def _deform_inputs(n: int, cin: int, h: int, w: int, cout: int) -> Callable[..., Any]:
    def make(device: torch.device, dtype: torch.dtype) -> dict:
        x = _randn(n, cin, h, w, seed=0)
        # Offsets of a few pixels: some samples fall between pixels, some outside the image.
        offset = _randn(n, 2 * 9, h, w, seed=1, scale=2.0)
        mask = torch.sigmoid(_randn(n, 9, h, w, seed=2))
        weight = _randn(cout, cin, 3, 3, seed=3, scale=1 / math.sqrt(cin * 9))
        bias = _randn(cout, seed=4)
        x, offset, mask, weight, bias = (
            t.to(device=device, dtype=dtype) for t in (x, offset, mask, weight, bias))
        return {"input": x, "offset": offset, "weight": weight, "bias": bias,
                "padding": (1, 1), "mask": mask}

    return make


def _tv_deform_conv2d(*args: Any, **kwargs: Any) -> Any:
    import torchvision.ops

    return torchvision.ops.deform_conv2d(*args, **kwargs)


def _deform_conv2d_cases() -> Iterator[BenchmarkCase]:
    label = "deform_conv2d"
    kw = dict(requires=_requires_all(requires_pyseg_op(label), _requires_torchvision),
              summary="pyseg.ops.deform_conv2d vs torchvision.ops.deform_conv2d")
    ours = pyseg_op(label)

    def shape(n: int, cin: int, h: int, w: int, cout: int, **extra: Any) -> Iterator[BenchmarkCase]:
        yield from _both(f"{label}/{n}x{cin}x{h}x{w}-{cout}", label,
                         f"{_shape(n, cin, h, w)}->{cout}ch 3x3 p1 mask",
                         _deform_inputs(n, cin, h, w, cout), ours, _tv_deform_conv2d,
                         **kw, **extra)

    yield from shape(4, 64, 64, 64, 64)
    yield from shape(4, 256, 64, 64, 256)
    # Batch 1 (the 64x64 case is the last point of the sweep).
    for s in (16, 32, 64):
        yield from shape(1, 64, s, s, 64, sweep=label, size=64 * s * s)
    yield from shape(1, 8, 12, 12, 8, quick=True)


@hookimpl
def pyseg_benchmarks() -> list[BenchmarkCase]:
    """Every built-in case (see the module docstring)."""
    return [
        *_max_unpool2d_cases(),
        *_conv_transpose2d_cases(),
        *_interpolate_cases(),
        *_deform_conv2d_cases(),
        *_max_unpool_nd_cases(),
        *_conv_transpose_nd_cases(),
        *_interpolate_mode_cases(),
        *_grid_sample_cases(),
    ]
