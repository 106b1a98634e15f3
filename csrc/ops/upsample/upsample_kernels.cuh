// upsample2d / bed_of_nails CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the
// emulator).
//
// One kernel serves every mode and both directions: a thread per destination element sums
// its separable taps, read from per-axis CSR tables built on the host (upsample.h) in the
// op-math type. Forward tables hold the taps of each output index; backward tables the
// outputs that read each input index (a contiguous range per axis), so the backward is a
// gather: each grad_input element is written by exactly one thread, no atomics, and the
// result does not depend on scheduling.
//
// Elements are addressed as [group, row, col, c]: NCHW is groups = N * C with c-extent 1,
// channels_last is groups = N with c-extent C (consecutive threads read consecutive
// channels: coalesced).
#pragma once

#include "common/cuda_compat.h"

namespace pyseg::upsample {

template <typename T>
struct AxisTable {
  const int64_t* offsets;  // taps of destination index j: [offsets[j], offsets[j + 1])
  const int64_t* index;    // source index of each tap
  const T* weight;         // weight of each tap
};

struct KernelGeometry {
  int64_t C;  // innermost extent (1 for NCHW)
  int64_t src_h, src_w, dst_h, dst_w;
};

template <typename scalar_t, typename T>
__global__ void resample_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                AxisTable<T> th, AxisTable<T> tw, KernelGeometry g,
                                int64_t numel) {
  PYSEG_KERNEL_LOOP(e, numel) {
    const int64_t c = e % g.C;
    const int64_t ow = (e / g.C) % g.dst_w;
    const int64_t oh = (e / (g.C * g.dst_w)) % g.dst_h;
    const int64_t grp = e / (g.C * g.dst_w * g.dst_h);
    const scalar_t* base = src + grp * g.src_h * g.src_w * g.C + c;
    const int64_t b0 = tw.offsets[ow], b1 = tw.offsets[ow + 1];
    T acc = 0;
    for (int64_t a = th.offsets[oh]; a < th.offsets[oh + 1]; ++a) {
      const scalar_t* row = base + th.index[a] * g.src_w * g.C;
      T line = 0;
      for (int64_t b = b0; b < b1; ++b)
        line += tw.weight[b] * static_cast<T>(row[tw.index[b] * g.C]);
      acc += th.weight[a] * line;
    }
    dst[e] = static_cast<scalar_t>(acc);
  }
}

}  // namespace pyseg::upsample
