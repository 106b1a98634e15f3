"""The memory-bound ops (interpolate, max_unpool2d, bed_of_nails) against torch, NCHW and
channels_last, next to what writing their output costs at all.

Every call of these ops writes a fresh output tensor. On the machines this project runs on,
the first touch of fresh pages costs more than the arithmetic: this script times, for each
case's output size, ``torch.empty(shape).fill_(1)`` (a fresh tensor, what every op call pays)
and ``buffer.fill_(1)`` into an existing tensor (no page faults), and prints both as GB/s
beside the op times. An op whose time is close to the fresh fill is bound by page faults, and
so is torch's. Ours and torch's run in the same process, alternately, with
``torch.utils.benchmark``.

    python benchmarks/bench_memory_bound.py [--min-run-time 0.5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import pyseg.ops
from pyseg.bench import header, machine_facts

CL = torch.channels_last


def _bed_of_nails_reference(x: torch.Tensor, s: int) -> torch.Tensor:
    n, c, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=CL) and not x.is_contiguous()
    out = torch.empty(n, c, h * s, w * s, dtype=x.dtype,
                      memory_format=CL if channels_last else torch.contiguous_format).zero_()
    out[..., ::s, ::s] = x
    return out


def _cases(channels_last: bool):
    def fmt(t):
        return t.contiguous(memory_format=CL) if channels_last else t

    g = torch.Generator().manual_seed(0)
    x = fmt(torch.randn(8, 64, 128, 128, generator=g))
    for mode in ("nearest", "bilinear", "bicubic"):
        kw = {"scale_factor": 2, "mode": mode}
        if mode != "nearest":
            kw["align_corners"] = False
        yield (f"interpolate {mode} x2", lambda kw=kw: pyseg.ops.interpolate(x, **kw),
               lambda kw=kw: F.interpolate(x, **kw))
    pooled, idx = F.max_pool2d(torch.randn(8, 64, 128, 128, generator=g), 2,
                               return_indices=True)
    pooled, idx = fmt(pooled), fmt(idx)
    yield ("max_unpool2d (8,64,64,64)->128", lambda: pyseg.ops.max_unpool2d(pooled, idx, 2),
           lambda: F.max_unpool2d(pooled, idx, 2))
    small = fmt(torch.randn(8, 64, 64, 64, generator=g))
    yield ("bed_of_nails (8,64,64,64) x2", lambda: pyseg.ops.bed_of_nails(small, 2),
           lambda: _bed_of_nails_reference(small, 2))


def _median(fn, threads: int, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(header(machine_facts(args.threads)))
    print("times in ms (median); fill GB/s = output bytes / time of filling a fresh tensor "
          "(first touch) or an existing one")
    print(f"{'case':<34} {'layout':<13} {'pyseg':>8} {'torch':>8} {'ratio':>6} "
          f"{'fresh fill':>10} {'GB/s':>6} {'old fill':>9} {'GB/s':>6}")
    for channels_last in (False, True):
        for name, ours, ref in _cases(channels_last):
            out = ref()
            nbytes = out.numel() * out.element_size()
            shape, dtype = out.shape, out.dtype
            t_ours = _median(ours, args.threads, args.min_run_time)
            t_ref = _median(ref, args.threads, args.min_run_time)
            t_fresh = _median(lambda shape=shape, dtype=dtype: torch.empty(shape, dtype=dtype)
                              .fill_(1), args.threads, args.min_run_time)
            t_old = _median(lambda out=out: out.fill_(1), args.threads, args.min_run_time)
            layout = "channels_last" if channels_last else "NCHW"
            print(f"{name:<34} {layout:<13} {t_ours * 1e3:8.2f} {t_ref * 1e3:8.2f} "
                  f"{t_ours / t_ref:6.2f} {t_fresh * 1e3:10.2f} {nbytes / t_fresh / 1e9:6.1f} "
                  f"{t_old * 1e3:9.2f} {nbytes / t_old / 1e9:6.1f}")
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
