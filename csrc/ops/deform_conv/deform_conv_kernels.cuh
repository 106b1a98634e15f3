// deform_conv2d CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator).
//
// Columns are laid out as torchvision's: row c * K + k (channel, tap), column b * P + p (image
// of the chunk, output pixel), so a weight group's rows multiply its weight slice directly.
// Sampling follows torchvision: a sample at (y, x) is zero if y <= -1, y >= H, x <= -1 or
// x >= W, corners outside the image count as zero; the offset gradient uses the coordinate
// weights of the in-image corners. All arithmetic is in at::opmath_type (float for half and
// bfloat16). `index_t` is the type of every index: int32_t when all offsets and sizes fit
// (chosen at launch, deform_conv_launch.h: index_bound), so that the divisions that locate
// an element are 32-bit, int64_t otherwise.
#pragma once

#include <ATen/OpMathType.h>

#include "common/cuda_compat.h"

namespace pyseg::deform_conv {

template <typename index_t>
struct KernelGeometry {
  index_t channels, in_h, in_w, out_h, out_w, kernel_h, kernel_w;
  index_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  index_t offset_groups;
  index_t chunk;  // images in this launch
  bool use_mask;
};

template <typename acc_t, typename index_t>
struct Corners {
  index_t pos[4];  // (y0,x0) (y0,x1) (y1,x0) (y1,x1) in the plane (valid corners only)
  bool valid[4];
  acc_t w[4];      // bilinear weights, zero when the corner is outside or the sample cut off
  acc_t ly, lx;
};

template <typename acc_t, typename index_t>
__device__ __forceinline__ Corners<acc_t, index_t> corners(acc_t y, acc_t x, index_t H,
                                                            index_t W) {
  Corners<acc_t, index_t> c;
  // Floor only near the image, so the integer conversion is always defined.
  const bool near_y = y > acc_t(-2) && y < acc_t(H + 1);
  const bool near_x = x > acc_t(-2) && x < acc_t(W + 1);
  const index_t y0 = near_y ? static_cast<index_t>(floor(y)) : -4;
  const index_t x0 = near_x ? static_cast<index_t>(floor(x)) : -4;
  const bool vy0 = y0 >= 0 && y0 < H, vy1 = y0 + 1 >= 0 && y0 + 1 < H;
  const bool vx0 = x0 >= 0 && x0 < W, vx1 = x0 + 1 >= 0 && x0 + 1 < W;
  c.valid[0] = vy0 && vx0;
  c.valid[1] = vy0 && vx1;
  c.valid[2] = vy1 && vx0;
  c.valid[3] = vy1 && vx1;
  c.pos[0] = y0 * W + x0;
  c.pos[1] = c.pos[0] + 1;
  c.pos[2] = c.pos[0] + W;
  c.pos[3] = c.pos[2] + 1;
  c.ly = near_y ? y - static_cast<acc_t>(y0) : acc_t(0);
  c.lx = near_x ? x - static_cast<acc_t>(x0) : acc_t(0);
  const bool inside = y > acc_t(-1) && y < acc_t(H) && x > acc_t(-1) && x < acc_t(W);
  const acc_t hy = acc_t(1) - c.ly, hx = acc_t(1) - c.lx;
  const acc_t w[4] = {hy * hx, hy * c.lx, c.ly * hx, c.ly * c.lx};
  for (int i = 0; i < 4; ++i) c.w[i] = inside && c.valid[i] ? w[i] : acc_t(0);
  return c;
}

// Sampling position of tap k at output pixel p of image b, offset group g.
template <typename scalar_t, typename acc_t, typename index_t>
__device__ __forceinline__ void sample_at(const KernelGeometry<index_t>& g,
                                          const scalar_t* offset, const scalar_t* mask,
                                          index_t b, index_t grp, index_t k, index_t p, acc_t& y,
                                          acc_t& x, acc_t& m) {
  const index_t K = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w;
  const index_t i = k / g.kernel_w, j = k % g.kernel_w, oy = p / g.out_w, ox = p % g.out_w;
  const scalar_t* off = offset + ((b * g.offset_groups + grp) * K + k) * 2 * P;
  y = static_cast<acc_t>(oy * g.stride_h - g.pad_h + i * g.dil_h) + static_cast<acc_t>(off[p]);
  x = static_cast<acc_t>(ox * g.stride_w - g.pad_w + j * g.dil_w) +
      static_cast<acc_t>(off[P + p]);
  m = g.use_mask ? static_cast<acc_t>(mask[((b * g.offset_groups + grp) * K + k) * P + p])
                 : acc_t(1);
}

// cols[(c * K + k), b * P + p] = mask * bilinear(input[b, c], position); one thread per
// (channel, image, pixel), looping over the taps.
template <typename scalar_t, typename index_t>
__global__ void im2col_kernel(const scalar_t* __restrict__ input,
                              const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, scalar_t* __restrict__ cols,
                              KernelGeometry<index_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t K = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const index_t n = g.channels * g.chunk * P;
  const index_t cpg = g.channels / g.offset_groups;
  PYSEG_KERNEL_LOOP_T(index_t, idx, n) {
    const index_t p = idx % P, b = (idx / P) % g.chunk, c = idx / (P * g.chunk);
    const scalar_t* plane = input + (b * g.channels + c) * HW;
    for (index_t k = 0; k < K; ++k) {
      acc_t y, x, m;
      sample_at(g, offset, mask, b, c / cpg, k, p, y, x, m);
      const Corners<acc_t, index_t> q = corners(y, x, g.in_h, g.in_w);
      acc_t v = 0;
      for (int i = 0; i < 4; ++i)
        if (q.w[i] != acc_t(0)) v += q.w[i] * static_cast<acc_t>(plane[q.pos[i]]);
      cols[(c * K + k) * (g.chunk * P) + b * P + p] = static_cast<scalar_t>(m * v);
    }
  }
}

// Input gradient, scattered with atomics: one thread per column element.
template <typename scalar_t, typename index_t>
__global__ void col2im_atomic_kernel(const scalar_t* __restrict__ gcols,
                                     const scalar_t* __restrict__ offset,
                                     const scalar_t* __restrict__ mask,
                                     scalar_t* __restrict__ grad_input, KernelGeometry<index_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t K = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const index_t cols_w = g.chunk * P, n = g.channels * K * cols_w;
  const index_t cpg = g.channels / g.offset_groups;
  PYSEG_KERNEL_LOOP_T(index_t, idx, n) {
    const index_t col = idx % cols_w, row = idx / cols_w;
    const index_t p = col % P, b = col / P, k = row % K, c = row / K;
    acc_t y, x, m;
    sample_at(g, offset, mask, b, c / cpg, k, p, y, x, m);
    const Corners<acc_t, index_t> q = corners(y, x, g.in_h, g.in_w);
    const acc_t gm = m * static_cast<acc_t>(gcols[idx]);
    scalar_t* plane = grad_input + (b * g.channels + c) * HW;
    for (int i = 0; i < 4; ++i)
      if (q.w[i] != acc_t(0)) atomic_add(plane, q.pos[i], HW, static_cast<scalar_t>(q.w[i] * gm));
  }
}

// Deterministic input gradient: one thread owns a whole (image, channel) plane and adds the
// contributions of its columns in a fixed order (used under
// torch.use_deterministic_algorithms(True)).
template <typename scalar_t, typename index_t>
__global__ void col2im_plane_kernel(const scalar_t* __restrict__ gcols,
                                    const scalar_t* __restrict__ offset,
                                    const scalar_t* __restrict__ mask,
                                    scalar_t* __restrict__ grad_input, KernelGeometry<index_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t K = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const index_t cols_w = g.chunk * P;
  const index_t cpg = g.channels / g.offset_groups;
  PYSEG_KERNEL_LOOP_T(index_t, plane_idx, g.chunk * g.channels) {
    const index_t b = plane_idx / g.channels, c = plane_idx % g.channels;
    scalar_t* plane = grad_input + plane_idx * HW;
    for (index_t k = 0; k < K; ++k) {
      for (index_t p = 0; p < P; ++p) {
        acc_t y, x, m;
        sample_at(g, offset, mask, b, c / cpg, k, p, y, x, m);
        const Corners<acc_t, index_t> q = corners(y, x, g.in_h, g.in_w);
        const acc_t gm = m * static_cast<acc_t>(gcols[(c * K + k) * cols_w + b * P + p]);
        for (int i = 0; i < 4; ++i)
          if (q.w[i] != acc_t(0))
            plane[q.pos[i]] = static_cast<scalar_t>(static_cast<acc_t>(plane[q.pos[i]]) +
                                                    q.w[i] * gm);
      }
    }
  }
}

// Offset and mask gradients: one thread per (image, offset group, tap, pixel) sums over the
// group's channels; it owns its two offset entries and its mask entry (no atomics).
template <typename scalar_t, typename index_t>
__global__ void coord_grad_kernel(const scalar_t* __restrict__ gcols,
                                  const scalar_t* __restrict__ input,
                                  const scalar_t* __restrict__ offset,
                                  const scalar_t* __restrict__ mask,
                                  scalar_t* __restrict__ grad_offset,
                                  scalar_t* __restrict__ grad_mask, KernelGeometry<index_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t K = g.kernel_h * g.kernel_w, P = g.out_h * g.out_w, HW = g.in_h * g.in_w;
  const index_t cols_w = g.chunk * P, n = g.chunk * g.offset_groups * K * P;
  const index_t cpg = g.channels / g.offset_groups;
  PYSEG_KERNEL_LOOP_T(index_t, idx, n) {
    const index_t p = idx % P, k = (idx / P) % K, grp = (idx / (P * K)) % g.offset_groups;
    const index_t b = idx / (P * K * g.offset_groups);
    acc_t y, x, m;
    sample_at(g, offset, mask, b, grp, k, p, y, x, m);
    const Corners<acc_t, index_t> q = corners(y, x, g.in_h, g.in_w);
    acc_t gy = 0, gx = 0, gmask = 0;
    for (index_t c = grp * cpg; c < (grp + 1) * cpg; ++c) {
      const scalar_t* plane = input + (b * g.channels + c) * HW;
      acc_t v[4];
      for (int i = 0; i < 4; ++i) v[i] = q.valid[i] ? static_cast<acc_t>(plane[q.pos[i]]) : acc_t(0);
      const acc_t gv = static_cast<acc_t>(gcols[(c * K + k) * cols_w + b * P + p]);
      gy += m * (q.lx * (v[3] - v[1]) + (acc_t(1) - q.lx) * (v[2] - v[0])) * gv;
      gx += m * (q.ly * (v[3] - v[2]) + (acc_t(1) - q.ly) * (v[1] - v[0])) * gv;
      gmask += gv * (q.w[0] * v[0] + q.w[1] * v[1] + q.w[2] * v[2] + q.w[3] * v[3]);
    }
    scalar_t* go = grad_offset + ((b * g.offset_groups + grp) * K + k) * 2 * P;
    go[p] = static_cast<scalar_t>(gy);
    go[P + p] = static_cast<scalar_t>(gx);
    if (g.use_mask) grad_mask[((b * g.offset_groups + grp) * K + k) * P + p] = static_cast<scalar_t>(gmask);
  }
}

}  // namespace pyseg::deform_conv
