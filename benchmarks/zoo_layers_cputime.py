"""Per-layer CPU time (thread_time, 1 thread) of the zoo's transposed-conv layers: pyseg vs torch.
python benchmarks/zoo_layers_cputime.py [R] [network-substring] [stride]

CPU time (time.thread_time) with one intra-op thread, so a busy machine disturbs it less than
wall time (no SMT on the machines here); a rough check between full `pyseg bench` runs. The
two sides' calls alternate (R pairs, best of each), so a drift in the machine's speed moves
both. `stride` keeps only the layers of that stride (1: the implicit-GEMM layers)."""
import sys
import time

import torch
import torch.nn.functional as F

from pyseg.bench import models as M
from pyseg.ops import conv_transpose2d

torch.set_num_threads(1)
R = int(sys.argv[1]) if len(sys.argv) > 1 else 5
want = sys.argv[2] if len(sys.argv) > 2 else ""
stride = int(sys.argv[3]) if len(sys.argv) > 3 else None
layers = M.conv_transpose_layers(M.model_setups())
def timeit(fa, fb):
    fa(); fb(); best_a = best_b = 1e9
    for _ in range(R):
        t0 = time.thread_time(); fa(); best_a = min(best_a, time.thread_time() - t0)
        t0 = time.thread_time(); fb(); best_b = min(best_b, time.thread_time() - t0)
    return best_a, best_b
for L, nets in layers.items():
    if want not in ",".join(nets): continue
    if stride is not None and L.stride[0] != stride: continue
    torch.manual_seed(0)
    kh, kw = L.kernel_size
    w = torch.randn(L.input_shape[1], L.out_channels // L.groups, kh, kw)
    b = torch.randn(L.out_channels) if L.bias else None
    kwa = dict(stride=L.stride, padding=L.padding, output_padding=L.output_padding, groups=L.groups, dilation=L.dilation)
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(L.input_shape).contiguous(memory_format=fmt)
        for bwd in (False, True):
            def run(fn):
                if not bwd:
                    return lambda: fn(x, w, b, **kwa)
                xx = x.clone().requires_grad_(); ww = w.clone().requires_grad_()
                bb = b.clone().requires_grad_() if b is not None else None
                def f():
                    y = fn(xx, ww, bb, **kwa); y.backward(torch.ones_like(y))
                return f
            with torch.set_grad_enabled(bwd):
                a, r = timeit(run(conv_transpose2d), run(F.conv_transpose2d))
            out.append(f"{'nhwc' if fmt is torch.channels_last else 'nchw'} {'f+b' if bwd else 'fwd'} {a*1e3:7.2f}/{r*1e3:7.2f}={a/r:.2f}")
    print(f"{L.input_shape!s:18s}->{L.out_channels:4d} k{kh}x{kw} s{L.stride[0]} p{L.padding[0]} {nets}: " + " | ".join(out), flush=True)
