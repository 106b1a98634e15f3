// grid_sample CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator).
//
// Forward: a thread per output point (image n, point p) computes its taps once
// (grid_sample_math.h) and writes every channel.
//
// Backward, deterministic on the GPU: grad_grid is a gather (the point's thread sums over
// its channels and taps and writes its own entry). grad_input is a scatter, accumulated in
// 64-bit fixed point: every contribution w * grad is rounded to an integer multiple of
// 2^-s (one rounding per contribution, the same on every run) and added with an integer
// atomicAdd. Integer addition is associative, so the sum and the final conversion back to
// floating point do not depend on the order in which threads arrive. The scale 2^s is
// chosen on the device from max |grad_output| and the number of contributions one input
// element can receive, so the sum cannot overflow 2^62 (see fixed_point_scale); the
// resolution is then 2^-(61 - ceil(log2(points * taps))) * max |grad_output|, finer than
// float32's rounding of the largest terms for any grid under 2^37 points.
#pragma once

#include <cmath>

#include "common/cuda_compat.h"
#include "ops/grid_sample/grid_sample_math.h"

namespace pyseg::grid_sample {

template <int D, typename scalar_t, typename T>
__global__ void forward_kernel(const scalar_t* __restrict__ input,
                               const scalar_t* __restrict__ grid, scalar_t* __restrict__ output,
                               Geometry<D> g, int64_t total) {
  PYSEG_KERNEL_LOOP(e, total) {
    const int64_t n = e / g.points, p = e - n * g.points;
    const Taps<D, T> t = point_taps<D, T>(g, grid, n, p);
    const scalar_t* in_n = input + n * g.in_stride_n;
    scalar_t* out_np = output + n * g.out_stride_n + p * g.out_stride_p;
    for (int64_t c = 0; c < g.channels; ++c)
      out_np[c * g.out_stride_c] = static_cast<scalar_t>(sample<D, T>(t, g, in_n + c * g.in_stride_c));
  }
}

// 2^s such that `terms` contributions of magnitude <= amax sum to less than 2^62 after
// rounding; 0 when amax is not finite (the result is then NaN, see finalize_kernel).
template <typename T>
__device__ inline double fixed_point_scale(T amax, int64_t terms) {
  const double a = static_cast<double>(amax);
  if (!is_finite(a)) return 0;
  if (a == 0) return 1;
  int e_amax = 0;
  frexp(a, &e_amax);  // a < 2^e_amax
  int e_terms = 0;
  while ((int64_t{1} << e_terms) < terms) ++e_terms;
  return ldexp(1.0, 61 - e_amax - e_terms);
}

// `grad_output` is viewed through g's out strides, `input` is contiguous NC(D)HW,
// `accumulator` is (N, C, plane) int64 zeros, grad_grid (N, points, D) contiguous.
template <int D, typename scalar_t, typename T>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_output,
                                const scalar_t* __restrict__ input,
                                const scalar_t* __restrict__ grid,
                                unsigned long long* __restrict__ accumulator,
                                scalar_t* __restrict__ grad_grid, const T* __restrict__ amax,
                                Geometry<D> g, int64_t plane, int64_t total, bool need_input,
                                bool need_grid) {
  int taps = g.mode == Mode::Nearest ? 1 : (g.mode == Mode::Bilinear ? 2 : 4);
  int64_t terms = g.points;
  for (int a = 0; a < D; ++a) terms *= taps;
  const double scale = need_input ? fixed_point_scale(*amax, terms) : 0.0;
  PYSEG_KERNEL_LOOP(e, total) {
    const int64_t n = e / g.points, p = e - n * g.points;
    const Taps<D, T> t = point_taps<D, T>(g, grid, n, p);
    unsigned long long* acc_n = need_input ? accumulator + n * g.channels * plane : nullptr;
    T grad[3];
    backward_point<D, T>(t, g, input + n * g.in_stride_n,
                         grad_output + n * g.out_stride_n + p * g.out_stride_p,
                         need_input && scale != 0, need_grid, grad,
                         [&](int64_t c, int64_t off, T v) {
                           const auto q = static_cast<long long>(
                               nearbyint(static_cast<double>(v) * scale));
                           atomicAdd(acc_n + c * plane + off, static_cast<unsigned long long>(q));
                         });
    if (need_grid)
      for (int a = 0; a < D; ++a) grad_grid[e * D + a] = static_cast<scalar_t>(grad[a]);
  }
}

// grad_input[n, c, s] = accumulator[n, c, s] / 2^s, written through grad_input's strides
// (viewed as (N, C, plane)). `index_t` is int32_t when every offset fits (chosen at launch,
// grid_sample_launch.h: the divisions that locate an element are then 32-bit), else int64_t.
template <int D, typename scalar_t, typename T, typename index_t>
__global__ void finalize_kernel(const long long* __restrict__ accumulator,
                                scalar_t* __restrict__ grad_input, const T* __restrict__ amax,
                                Geometry<D> g, index_t channels, index_t plane, index_t stride_n,
                                index_t stride_c, index_t stride_s, index_t total) {
  int taps = g.mode == Mode::Nearest ? 1 : (g.mode == Mode::Bilinear ? 2 : 4);
  int64_t terms = g.points;
  for (int a = 0; a < D; ++a) terms *= taps;
  const double scale = fixed_point_scale(*amax, terms);
  PYSEG_KERNEL_LOOP_T(index_t, e, total) {
    const index_t s = e % plane, nc = e / plane;
    const index_t c = nc % channels, n = nc / channels;
    const double v = scale != 0 ? static_cast<double>(accumulator[e]) / scale : NAN;
    grad_input[n * stride_n + c * stride_c + s * stride_s] = static_cast<scalar_t>(v);
  }
}

}  // namespace pyseg::grid_sample
