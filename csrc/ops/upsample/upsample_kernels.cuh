// upsample2d / bed_of_nails CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the
// emulator).
//
// One kernel serves every mode and both directions: a thread per destination element sums
// its separable taps, read from per-axis CSR tables in the op-math type. Forward tables hold
// the taps of each output index; backward tables the outputs that read each input index (a
// contiguous range per axis), so the backward is a gather: each grad_input element is
// written by exactly one thread, no atomics, and the result does not depend on scheduling.
//
// The tables are built on the device by the table kernels below (no host-to-device copy, so
// nothing waits for the host and the op can be captured in a CUDA graph). They compute what
// upsample.h's host tables hold (the same formulas in the same type and order; nvcc may
// contract multiply-adds).
//
// Elements are addressed as [group, row, col, c]: NCHW is groups = N * C with c-extent 1,
// channels_last is groups = N with c-extent C (consecutive threads read consecutive
// channels: coalesced). `index_t` is int32_t when every offset fits (chosen at launch,
// upsample_launch.h) and int64_t otherwise.
#pragma once

#include <cmath>

#include "common/cuda_compat.h"

namespace pyseg::upsample {

template <typename T, typename index_t>
struct AxisTable {
  const index_t* offsets;  // taps of destination index j: [offsets[j], offsets[j + 1])
  const index_t* index;    // source index of each tap
  const T* weight;         // weight of each tap
};

template <typename index_t>
struct KernelGeometry {
  index_t C;  // innermost extent (1 for NCHW)
  index_t dst_h, dst_w;
  index_t src_row;    // src_w * C: distance between source rows
  index_t src_group;  // src_h * src_w * C: distance between source groups
};

template <typename scalar_t, typename T, typename index_t>
__global__ void resample_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                AxisTable<T, index_t> th, AxisTable<T, index_t> tw,
                                KernelGeometry<index_t> g, index_t numel) {
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    // One decomposition per element (32-bit divisions in the int32 kernel); the tap loops
    // below only add.
    index_t q = e / g.C;
    const index_t c = e - q * g.C;
    index_t r = q / g.dst_w;
    const index_t ow = q - r * g.dst_w;
    const index_t grp = r / g.dst_h;
    const index_t oh = r - grp * g.dst_h;
    const scalar_t* base = src + grp * g.src_group + c;
    const index_t b0 = tw.offsets[ow], b1 = tw.offsets[ow + 1];
    T acc = 0;
    for (index_t a = th.offsets[oh]; a < th.offsets[oh + 1]; ++a) {
      const scalar_t* row = base + th.index[a] * g.src_row;
      T line = 0;
      for (index_t b = b0; b < b1; ++b)
        line += tw.weight[b] * static_cast<T>(row[tw.index[b] * g.C]);
      acc += th.weight[a] * line;
    }
    dst[e] = static_cast<scalar_t>(acc);
  }
}

// ---- per-axis tables, built on the device ------------------------------------------------

enum class TapMode : int { Nearest, Bilinear, Bicubic };

// How output index o of one axis samples the input (upsample.h's forward_table). `ratio` is
// area_pixel_compute_scale and `nearest_scale` nearest_idx's float scale, computed on the
// host (scalars passed by value).
template <typename T>
struct TapRule {
  TapMode mode;
  int64_t in, out;
  bool align_corners;
  T ratio;
  float nearest_scale;
};

template <typename T>
__device__ __forceinline__ int taps_of(TapMode mode) {
  return mode == TapMode::Nearest ? 1 : mode == TapMode::Bilinear ? 2 : 4;
}

// The taps of output o: ATen's nearest_idx, area_pixel_compute_source_index,
// guard_index_and_lambda and cubic coefficients, written as upsample.h writes them.
template <typename T>
__device__ void output_taps(const TapRule<T>& r, int64_t o, int64_t* idx, T* w) {
  const int64_t in = r.in;
  if (r.mode == TapMode::Nearest) {
    int64_t i;
    if (r.out == in) i = o;
    else if (r.out == 2 * in) i = o >> 1;
    else {
      i = static_cast<int64_t>(floorf(o * r.nearest_scale));
      i = i < in - 1 ? i : in - 1;
    }
    idx[0] = i;
    w[0] = T(1);
    return;
  }
  const bool cubic = r.mode == TapMode::Bicubic;
  if (!cubic && r.out == in) {  // ATen copies when the axis keeps its size
    idx[0] = idx[1] = o;
    w[0] = T(1);
    w[1] = T(0);
    return;
  }
  T real;
  if (r.align_corners) {
    real = r.ratio * o;
  } else {
    real = r.ratio * (o + static_cast<T>(0.5)) - static_cast<T>(0.5);
    if (!cubic && real < static_cast<T>(0)) real = T(0);
  }
  int64_t i0 = static_cast<int64_t>(floorf(real));  // floorf as in ATen, also for double
  i0 = i0 < in - 1 ? i0 : in - 1;
  T lambda = real - static_cast<T>(i0);
  lambda = lambda > static_cast<T>(0) ? lambda : static_cast<T>(0);
  lambda = lambda < static_cast<T>(1) ? lambda : static_cast<T>(1);
  if (!cubic) {
    idx[0] = i0;
    idx[1] = i0 + (i0 < in - 1 ? 1 : 0);
    w[0] = T(1) - lambda;
    w[1] = lambda;
    return;
  }
  const T A = -0.75;
  const T x1 = lambda, x2 = T(1.0) - lambda;
  auto conv1 = [A](T x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
  auto conv2 = [A](T x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
  w[0] = conv2(x1 + T(1.0));
  w[1] = conv1(x1);
  w[2] = conv1(x2);
  w[3] = conv2(x2 + T(1.0));
  for (int k = 0; k < 4; ++k) {
    const int64_t i = i0 + k - 1;  // neighbours outside the input read the border
    idx[k] = i < 0 ? 0 : (i > in - 1 ? in - 1 : i);
  }
}

// Forward table: out + 1 offsets (o * taps), out * taps taps.
template <typename T, typename index_t>
__global__ void forward_table_kernel(TapRule<T> r, index_t* __restrict__ offsets,
                                     index_t* __restrict__ index, T* __restrict__ weight) {
  const int taps = taps_of<T>(r.mode);
  PYSEG_KERNEL_LOOP(o, r.out + 1) {
    offsets[o] = static_cast<index_t>(o * taps);
    if (o == r.out) continue;
    int64_t idx[4];
    T w[4];
    output_taps(r, o, idx, w);
    for (int k = 0; k < taps; ++k) {
      index[o * taps + k] = static_cast<index_t>(idx[k]);
      weight[o * taps + k] = w[k];
    }
  }
}

// Backward table from a forward table `f` of `out` entries over `in` inputs (upsample.h's
// transpose): input i is read by the outputs whose taps [first, last] contain i, a
// contiguous range because taps are monotone in the output. One thread per input: it finds
// its range and its offset (the taps below i of every output) in one pass over the outputs,
// then sums the weights of each output's taps equal to i in tap order, as the host does.
// Holds at most out * taps entries in all.
template <typename T, typename index_t>
__global__ void transpose_table_kernel(AxisTable<T, index_t> f, int64_t out, int64_t in,
                                       index_t* __restrict__ offsets, index_t* __restrict__ index,
                                       T* __restrict__ weight) {
  PYSEG_KERNEL_LOOP(i, in + 1) {
    int64_t offset = 0, lo = out, hi = -1;
    for (int64_t o = 0; o < out; ++o) {
      const int64_t first = f.index[f.offsets[o]], last = f.index[f.offsets[o + 1] - 1];
      const int64_t below = i - first;  // taps of o below i
      const int64_t count = last - first + 1;
      offset += below < 0 ? 0 : (below < count ? below : count);
      if (first <= i && i <= last) {
        lo = lo < o ? lo : o;
        hi = o;
      }
    }
    offsets[i] = static_cast<index_t>(offset);
    if (i == in) continue;
    for (int64_t o = lo; o <= hi; ++o) {
      T sum = T(0);
      for (index_t k = f.offsets[o]; k < f.offsets[o + 1]; ++k)
        if (f.index[k] == i) sum += f.weight[k];
      index[offset + (o - lo)] = static_cast<index_t>(o);
      weight[offset + (o - lo)] = sum;
    }
  }
}

// bed_of_nails along one axis. Forward (`in` inputs, in * s outputs): output o takes input
// o / s when o % s == 0, so offsets[o] = ceil(o / s) and tap i is input i. Backward: input i
// receives output i * s.
template <typename T, typename index_t>
__global__ void nails_table_kernel(int64_t in, int64_t s, bool backward,
                                   index_t* __restrict__ offsets, index_t* __restrict__ index,
                                   T* __restrict__ weight) {
  const int64_t entries = backward ? in : in * s;
  PYSEG_KERNEL_LOOP(j, entries + 1) {
    offsets[j] = static_cast<index_t>(backward ? j : (j + s - 1) / s);
    if (j < in) {
      index[j] = static_cast<index_t>(backward ? j * s : j);
      weight[j] = T(1);
    }
  }
}

}  // namespace pyseg::upsample
