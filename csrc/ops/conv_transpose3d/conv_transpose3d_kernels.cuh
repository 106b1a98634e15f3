// conv_transpose3d CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator):
// the gathers around the shared GEMM (csrc/common/gemm_kernels.cuh). col2vol writes each
// output element once, summing its taps in a fixed order (conv_transpose3d_index.h);
// vol2col fills the columns of grad_output. No atomics: deterministic. `index_t` is int32_t
// when every index fits (chosen at launch, conv_transpose3d_launch.h), int64_t otherwise.
#pragma once

#include <ATen/OpMathType.h>

#include "common/cuda_compat.h"
#include "ops/conv_transpose3d/conv_transpose3d_index.h"

namespace pyseg::conv_transpose3d {

// Output of one image, all groups: y[c, od, oh, ow] = bias[c] + taps of group c / opg's columns.
template <typename scalar_t, typename index_t>
__global__ void col2vol_kernel(const scalar_t* __restrict__ cols, const scalar_t* __restrict__ bias,
                               scalar_t* __restrict__ y, Geometry<index_t> g, index_t group_cols,
                               index_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t out_volume = g.out[0] * g.out[1] * g.out[2];
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    const index_t ow = e % g.out[2], oh = (e / g.out[2]) % g.out[1];
    const index_t od = (e / (g.out[2] * g.out[1])) % g.out[0];
    const index_t c = e / out_volume;
    const index_t grp = c / g.out_per_group, co = c - grp * g.out_per_group;
    acc_t v = col2vol_sum<acc_t>(cols + grp * group_cols, g, co, od, oh, ow);
    if (bias != nullptr) v += static_cast<acc_t>(bias[c]);
    y[e] = static_cast<scalar_t>(v);
  }
}

// Columns of one image, all groups: cols[grp][row][i] from grad_output's planes of group grp.
template <typename scalar_t, typename index_t>
__global__ void vol2col_kernel(const scalar_t* __restrict__ volume, scalar_t* __restrict__ cols,
                               Geometry<index_t> g, index_t rows, index_t numel) {
  const index_t in_volume = g.in[0] * g.in[1] * g.in[2];
  const index_t out_volume = g.out[0] * g.out[1] * g.out[2];
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    const index_t i = e % in_volume, row = (e / in_volume) % rows, grp = e / (in_volume * rows);
    cols[e] = vol2col_value(volume + grp * g.out_per_group * out_volume, g, row, i);
  }
}

}  // namespace pyseg::conv_transpose3d
