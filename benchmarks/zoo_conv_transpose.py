"""pyseg.ops.conv_transpose2d vs F.conv_transpose2d (oneDNN) on every transposed-conv layer
shape of the built-in networks, forward and forward+backward, NCHW and channels_last.

The shapes are found by building the networks (pets-encdec at (4,3,200,200), deconvnet at
(2,3,128,128), U-Net base 16 depth 3 at (8,3,64,64)) and hooking their ConvTranspose2d
modules (pyseg.bench.models.conv_transpose_layers). Both sides run in one process on the
same tensors (torch.utils.benchmark); outputs are checked equal first. GFLOP/s counts
2 * N * C_in * H * W * C_out/groups * kH * kW per forward (x3 for forward+backward); "% peak"
is against the FMA peak measured in the same run (benchmarks/gemm_peak.py).

    python benchmarks/zoo_conv_transpose.py [--threads 2] [--min-run-time 0.5] [--capability avx2]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from gemm_peak import peak
from torch.utils import benchmark

import pyseg
from pyseg import _loader
from pyseg.bench.models import BUILTIN_SETUPS, conv_transpose_layers
from pyseg.bench.report import cpu_model

# pets-encdec at (4,3,200,200), deconvnet at (2,3,128,128), U-Net base 16 depth 3 at (8,3,64,64).
SETUPS = [BUILTIN_SETUPS["pets-encdec"][0], BUILTIN_SETUPS["deconvnet"][0],
          BUILTIN_SETUPS["unet"][0]]


def layer_shapes():
    """(network, input shape, weight shape, stride, padding, output_padding, dilation, groups,
    has_bias) of every ConvTranspose2d call, without repeats."""
    out = []
    for layer, networks in conv_transpose_layers(SETUPS).items():
        kh, kw = layer.kernel_size
        weight_shape = (layer.input_shape[1], layer.out_channels // layer.groups, kh, kw)
        out.append((networks[0], layer.input_shape, weight_shape, layer.stride, layer.padding,
                    layer.output_padding, layer.dilation, layer.groups, layer.bias))
    return out


def timed(stmt: str, env: dict, min_run_time: float) -> float:
    return benchmark.Timer(stmt, globals=env, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--capability", default=None)
    parser.add_argument("--layouts", default="nchw,nhwc")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.capability:
        _loader._C._set_cpu_capability(args.capability)
    print(f"CPU {cpu_model()}; pyseg capability {pyseg.info()['cpu_capability']}; torch "
          f"{torch.__version__} capability {torch.backends.cpu.get_cpu_capability()}; threads "
          f"{args.threads}; load average {os.getloadavg()[0]:.2f}")
    p = peak()
    print(f"measured FMA peak: {p:.0f} GFLOP/s")
    print("| network | input -> C_out, k, s | layout | pass | torch (ms) | pyseg (ms) | "
          "pyseg/torch | torch % peak | pyseg % peak |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for net, xs, ws, s, pad, op, dil, groups, has_bias in layer_shapes():
        torch.manual_seed(0)
        x = torch.randn(xs)
        w = torch.randn(ws) * 0.05
        b = torch.randn(ws[1] * groups) if has_bias else None
        flops = 2.0 * xs[0] * xs[1] * xs[2] * xs[3] * ws[1] * ws[2] * ws[3]
        label = f"{tuple(xs)} -> {ws[1] * groups}, k{ws[2]}, s{s[0]}"
        for layout in args.layouts.split(","):
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            xl = x.contiguous(memory_format=fmt)
            kw = {"stride": s, "padding": pad, "output_padding": op, "groups": groups,
                  "dilation": dil}
            ref = F.conv_transpose2d(xl, w, b, **kw)
            got = pyseg.ops.conv_transpose2d(xl, w, b, **kw)
            torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
            g = torch.randn_like(ref)
            xg, wg = xl.clone().requires_grad_(), w.clone().requires_grad_()
            env = {"F": F, "pyseg": pyseg, "x": xl, "w": w, "b": b, "kw": kw, "xg": xg, "wg": wg,
                   "g": g}
            rows = [
                ("forward", "F.conv_transpose2d(x, w, b, **kw)",
                 "pyseg.ops.conv_transpose2d(x, w, b, **kw)", flops),
                ("fwd+bwd", "F.conv_transpose2d(xg, wg, b, **kw).backward(g)",
                 "pyseg.ops.conv_transpose2d(xg, wg, b, **kw).backward(g)", 3 * flops),
            ]
            for pass_, ref_stmt, our_stmt, fl in rows:
                t_ref = timed(ref_stmt, env, args.min_run_time)
                t_ours = timed(our_stmt, env, args.min_run_time)
                print(f"| {net} | {label} | {layout} | {pass_} | {t_ref * 1e3:.2f} | "
                      f"{t_ours * 1e3:.2f} | {t_ours / t_ref:.2f} | "
                      f"{100 * fl / t_ref / 1e9 / p:.0f}% | {100 * fl / t_ours / 1e9 / p:.0f}% |",
                      flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
