// max_unpool2d CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator).
//
// Forward is a scatter in which several inputs may name one output cell. To make the result
// deterministic, the input with the highest position in its plane wins (the same rule as
// the CPU kernel, which walks each plane in order): a first pass claims cells with
// atomicMax on an int32 owner table, a second pass lets only the owner write.
// Backward is a gather: grad_input[i] = grad_output[indices[i]] (no atomics).
//
// Elements are addressed by their offset in memory; the template flag says whether that
// memory is NCHW (planes contiguous) or channels_last (NHWC).
#pragma once

#include "common/cuda_compat.h"

namespace pyseg::max_unpool {

struct Geometry {
  int64_t channels;
  int64_t in_plane;   // H_in * W_in
  int64_t out_plane;  // H_out * W_out
};

// Decomposes the memory offset of an input element into (plane = n * C + c, position in
// the plane) and returns the memory offset of output cell `cell` in the same plane.
template <bool kChannelsLast>
__device__ __forceinline__ int64_t locate(const Geometry& g, int64_t e, int64_t& plane,
                                          int64_t& pos, int64_t cell) {
  if (kChannelsLast) {
    const int64_t c = e % g.channels;
    const int64_t n = e / (g.channels * g.in_plane);
    pos = (e / g.channels) % g.in_plane;
    plane = n * g.channels + c;
    return (n * g.out_plane + cell) * g.channels + c;
  }
  plane = e / g.in_plane;
  pos = e % g.in_plane;
  return plane * g.out_plane + cell;
}

template <bool kChannelsLast>
__global__ void claim_kernel(const int64_t* __restrict__ indices, int32_t* __restrict__ owner,
                             int64_t* __restrict__ error_pos, Geometry g, int64_t numel) {
  PYSEG_KERNEL_LOOP(e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) {
      report_error_position(error_pos, e);
      continue;
    }
    int64_t plane, pos;
    locate<kChannelsLast>(g, e, plane, pos, cell);
    atomicMax(owner + plane * g.out_plane + cell, static_cast<int32_t>(pos));
  }
}

template <typename scalar_t, bool kChannelsLast>
__global__ void write_kernel(const scalar_t* __restrict__ input,
                             const int64_t* __restrict__ indices,
                             const int32_t* __restrict__ owner, scalar_t* __restrict__ output,
                             Geometry g, int64_t numel) {
  PYSEG_KERNEL_LOOP(e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) continue;
    int64_t plane, pos;
    const int64_t out = locate<kChannelsLast>(g, e, plane, pos, cell);
    if (owner[plane * g.out_plane + cell] == static_cast<int32_t>(pos)) output[out] = input[e];
  }
}

template <typename scalar_t, bool kChannelsLast>
__global__ void gather_kernel(const scalar_t* __restrict__ grad_output,
                              const int64_t* __restrict__ indices,
                              scalar_t* __restrict__ grad_input, int64_t* __restrict__ error_pos,
                              Geometry g, int64_t numel) {
  PYSEG_KERNEL_LOOP(e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) {
      report_error_position(error_pos, e);
      grad_input[e] = scalar_t(0);
      continue;
    }
    int64_t plane, pos;
    grad_input[e] = grad_output[locate<kChannelsLast>(g, e, plane, pos, cell)];
  }
}

}  // namespace pyseg::max_unpool
