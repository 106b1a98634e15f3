// max_unpool2d CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator).
//
// Forward is a scatter in which several inputs may name one output cell. To make the result
// deterministic, the input with the highest position in its plane wins (the same rule as
// the CPU kernel, which walks each plane in order): a first pass claims cells with
// atomicMax on an int32 owner table, a second pass lets only the owner write.
// Backward is a gather: grad_input[i] = grad_output[indices[i]] (no atomics).
//
// Elements are addressed by their offset in memory; the template flag says whether that
// memory is NCHW (planes contiguous) or channels_last (NHWC). `index_t` is int32_t when every
// offset of input and output fits (chosen at launch, max_unpool_launch.h: the divisions that
// locate an element are then 32-bit) and int64_t otherwise.
#pragma once

#include "common/cuda_compat.h"

namespace pyseg::max_unpool {

template <typename index_t>
struct Geometry {
  index_t channels;
  index_t in_plane;   // H_in * W_in
  index_t out_plane;  // H_out * W_out
};

// Decomposes the memory offset of an input element into (plane = n * C + c, position in
// the plane) and returns the memory offset of output cell `cell` in the same plane.
template <bool kChannelsLast, typename index_t>
__device__ __forceinline__ index_t locate(const Geometry<index_t>& g, index_t e, index_t& plane,
                                          index_t& pos, index_t cell) {
  if (kChannelsLast) {
    const index_t q = e / g.channels;  // n * in_plane + pos
    const index_t c = e - q * g.channels;
    const index_t n = q / g.in_plane;
    pos = q - n * g.in_plane;
    plane = n * g.channels + c;
    return (n * g.out_plane + cell) * g.channels + c;
  }
  plane = e / g.in_plane;
  pos = e - plane * g.in_plane;
  return plane * g.out_plane + cell;
}

template <bool kChannelsLast, typename index_t>
__global__ void claim_kernel(const int64_t* __restrict__ indices, int32_t* __restrict__ owner,
                             int64_t* __restrict__ error_pos, Geometry<index_t> g, index_t numel) {
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) {
      report_error_position(error_pos, e);
      continue;
    }
    index_t plane, pos;
    locate<kChannelsLast>(g, e, plane, pos, static_cast<index_t>(cell));
    atomicMax(owner + plane * g.out_plane + cell, static_cast<int32_t>(pos));
  }
}

template <typename scalar_t, bool kChannelsLast, typename index_t>
__global__ void write_kernel(const scalar_t* __restrict__ input,
                             const int64_t* __restrict__ indices,
                             const int32_t* __restrict__ owner, scalar_t* __restrict__ output,
                             Geometry<index_t> g, index_t numel) {
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) continue;
    index_t plane, pos;
    const index_t out = locate<kChannelsLast>(g, e, plane, pos, static_cast<index_t>(cell));
    if (owner[plane * g.out_plane + cell] == static_cast<int32_t>(pos)) output[out] = input[e];
  }
}

template <typename scalar_t, bool kChannelsLast, typename index_t>
__global__ void gather_kernel(const scalar_t* __restrict__ grad_output,
                              const int64_t* __restrict__ indices,
                              scalar_t* __restrict__ grad_input, int64_t* __restrict__ error_pos,
                              Geometry<index_t> g, index_t numel) {
  PYSEG_KERNEL_LOOP_T(index_t, e, numel) {
    const int64_t cell = indices[e];
    if (cell < 0 || cell >= g.out_plane) {
      report_error_position(error_pos, e);
      grad_input[e] = scalar_t(0);
      continue;
    }
    index_t plane, pos;
    grad_input[e] = grad_output[locate<kChannelsLast>(g, e, plane, pos, static_cast<index_t>(cell))];
  }
}

}  // namespace pyseg::max_unpool
