// upsample, upsample2d and bed_of_nails CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the
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
// Elements are addressed as [group, plane, row, col, c]: NC(D)HW is groups = N * C with
// c-extent 1, channels_last(_3d) is groups = N with c-extent C (consecutive threads read consecutive
// channels: coalesced). `index_t` is int32_t when every offset fits (chosen at launch,
// upsample_launch.h) and int64_t otherwise.
#pragma once

#include <cmath>

#include "common/cuda_compat.h"
#include "ops/upsample/upsample_taps.h"

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
  index_t dst_d, dst_h, dst_w;
  index_t src_row;    // src_w * C: distance between source rows
  index_t src_plane;  // src_h * src_w * C: distance between source depth planes
  index_t src_group;  // src_d * src_h * src_w * C: distance between source groups
};

// The (H, W) taps of one destination pixel over one source plane.
template <typename scalar_t, typename T, typename index_t>
__device__ __forceinline__ T plane_taps(const scalar_t* plane, const AxisTable<T, index_t>& th,
                                        const AxisTable<T, index_t>& tw, index_t oh, index_t b0,
                                        index_t b1, index_t src_row, index_t C) {
  T acc = 0;
  for (index_t a = th.offsets[oh]; a < th.offsets[oh + 1]; ++a) {
    const scalar_t* row = plane + th.index[a] * src_row;
    T line = 0;
    for (index_t b = b0; b < b1; ++b) line += tw.weight[b] * static_cast<T>(row[tw.index[b] * C]);
    acc += th.weight[a] * line;
  }
  return acc;
}

// `Depth` false: the depth axis is an identity of extent 1 (3-D and 4-D inputs, upsample2d,
// bed_of_nails) and `td` is not read.
template <bool Depth, typename scalar_t, typename T, typename index_t>
__global__ void resample_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                                AxisTable<T, index_t> td, AxisTable<T, index_t> th,
                                AxisTable<T, index_t> tw, KernelGeometry<index_t> g,
                                index_t numel) {
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    // One decomposition per element (32-bit divisions in the int32 kernel); the tap loops
    // below only add.
    index_t q = e / g.C;
    const index_t c = e - q * g.C;
    index_t r = q / g.dst_w;
    const index_t ow = q - r * g.dst_w;
    index_t p = r / g.dst_h;
    const index_t oh = r - p * g.dst_h;
    const index_t b0 = tw.offsets[ow], b1 = tw.offsets[ow + 1];
    if constexpr (Depth) {
      const index_t grp = p / g.dst_d;
      const index_t od = p - grp * g.dst_d;
      const scalar_t* base = src + grp * g.src_group + c;
      T acc = 0;
      for (index_t a = td.offsets[od]; a < td.offsets[od + 1]; ++a)
        acc += td.weight[a] *
               plane_taps(base + td.index[a] * g.src_plane, th, tw, oh, b0, b1, g.src_row, g.C);
      dst[e] = static_cast<scalar_t>(acc);
    } else {
      dst[e] = static_cast<scalar_t>(
          plane_taps(src + p * g.src_group + c, th, tw, oh, b0, b1, g.src_row, g.C));
    }
  }
}

// ---- per-axis tables, built on the device ------------------------------------------------

// Forward table of one axis: out + 1 offsets (o * taps), out * taps taps (upsample_taps.h,
// the formulas of the host tables).
template <typename T, typename index_t>
__global__ void forward_table_kernel(TapRule<T> r, index_t* __restrict__ offsets,
                                     index_t* __restrict__ index, T* __restrict__ weight) {
  PYSEG_KERNEL_LOOP(o, r.out + 1) {
    offsets[o] = static_cast<index_t>(o * r.taps);
    if (o < r.out) output_taps(r, o, index + o * r.taps, weight + o * r.taps);
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
