// The index arithmetic of conv_transpose3d's CUDA kernels (and of the CPU's scatter form, for
// inputs much smaller than the kernel; the other CPU forms are conv_transpose3d_cpu.cpp's)
// (plain functions, PYSEG_INLINE: host and device).
//
// Columns: for one image and one group, a (C_out/groups * kD * kH * kW) x (D * H * W) matrix,
// column i (an input position) row (co, kd, kh, kw): weight[ci, co, kd, kh, kw] summed over the
// group's input channels ci times input[ci, i] -- one GEMM, W_g^T X_g. The transposed
// convolution then is col2vol: output (co, od, oh, ow) sums the rows of co at the taps with
// od = id * stride - pad + kd * dil (per axis). Computed as a gather, each output element
// sums its own taps in a fixed order: deterministic, no atomics. vol2col is its adjoint (a
// regular 3-D convolution's im2col of grad_output), for grad_input and grad_weight.
//
// `index_t` is the type of every index expression: int64_t on the CPU and for large CUDA
// launches, int32_t for CUDA launches whose sizes all fit (conv_transpose3d_launch.h:
// index_bound), so that the divisions locating an element are 32-bit.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace pyseg::conv_transpose3d {

template <typename index_t = int64_t>
struct Geometry {
  index_t in[3], out[3], kernel[3], stride[3], pad[3], dil[3];
  index_t out_per_group;
};

// Sum over the taps of output element (co, o[0], o[1], o[2]) of one image and group.
template <typename acc_t, typename scalar_t, typename index_t>
PYSEG_INLINE acc_t col2vol_sum(const scalar_t* cols, const Geometry<index_t>& g, index_t co,
                               index_t od, index_t oh, index_t ow) {
  const index_t in_volume = g.in[0] * g.in[1] * g.in[2];
  acc_t sum = acc_t(0);
  for (index_t kd = 0; kd < g.kernel[0]; ++kd) {
    const index_t td = od + g.pad[0] - kd * g.dil[0];
    if (td < 0) break;  // decreases with kd
    if (td % g.stride[0] != 0 || td / g.stride[0] >= g.in[0]) continue;
    const index_t id = td / g.stride[0];
    for (index_t kh = 0; kh < g.kernel[1]; ++kh) {
      const index_t th = oh + g.pad[1] - kh * g.dil[1];
      if (th < 0) break;
      if (th % g.stride[1] != 0 || th / g.stride[1] >= g.in[1]) continue;
      const index_t ih = th / g.stride[1];
      for (index_t kw = 0; kw < g.kernel[2]; ++kw) {
        const index_t tw = ow + g.pad[2] - kw * g.dil[2];
        if (tw < 0) break;
        if (tw % g.stride[2] != 0 || tw / g.stride[2] >= g.in[2]) continue;
        const index_t iw = tw / g.stride[2];
        const index_t row = ((co * g.kernel[0] + kd) * g.kernel[1] + kh) * g.kernel[2] + kw;
        sum += static_cast<acc_t>(cols[row * in_volume + (id * g.in[1] + ih) * g.in[2] + iw]);
      }
    }
  }
  return sum;
}

// Column entry (row, i) of vol2col: grad_output (one image, one group: C_out/groups planes)
// at the output position that input position i reaches through tap `row`, 0 outside.
template <typename scalar_t, typename index_t>
PYSEG_INLINE scalar_t vol2col_value(const scalar_t* volume, const Geometry<index_t>& g,
                                    index_t row, index_t i) {
  const index_t iw = i % g.in[2], ih = (i / g.in[2]) % g.in[1], id = i / (g.in[2] * g.in[1]);
  const index_t kw = row % g.kernel[2], kh = (row / g.kernel[2]) % g.kernel[1];
  const index_t kd = (row / (g.kernel[2] * g.kernel[1])) % g.kernel[0];
  const index_t co = row / (g.kernel[2] * g.kernel[1] * g.kernel[0]);
  const index_t od = id * g.stride[0] - g.pad[0] + kd * g.dil[0];
  const index_t oh = ih * g.stride[1] - g.pad[1] + kh * g.dil[1];
  const index_t ow = iw * g.stride[2] - g.pad[2] + kw * g.dil[2];
  if (od < 0 || od >= g.out[0] || oh < 0 || oh >= g.out[1] || ow < 0 || ow >= g.out[2])
    return scalar_t(0);
  return volume[((co * g.out[0] + od) * g.out[1] + oh) * g.out[2] + ow];
}

}  // namespace pyseg::conv_transpose3d
