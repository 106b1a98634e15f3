// Host-side helpers for sizing launches; used by every <op>_launch.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <c10/util/Exception.h>

#include "common/cuda_compat.h"

namespace pyseg {

constexpr int kThreadsPerBlock = 256;

// A 1-D grid for `n` items handled by a grid-stride loop. The launcher caps the number of
// blocks: the CUDA launcher at the hardware limit, the emulator at a handful so that the
// grid-stride path is exercised by small tests too.
template <class Launcher>
dim3 grid_for(const Launcher& launch, int64_t n, int threads = kThreadsPerBlock) {
  int64_t blocks = (n + threads - 1) / threads;
  blocks = std::max<int64_t>(1, std::min<int64_t>(blocks, launch.max_blocks()));
  return dim3(static_cast<unsigned>(blocks));
}

// Whether a kernel launched as `grid` x `block` over offsets below `largest` can use 32-bit
// index arithmetic: every offset, and a grid-stride index one step past the end, must fit
// in int32. The launcher may force the int64 kernels (the emulator does, to test them).
template <class Launcher>
bool fits_int32(const Launcher& launch, dim3 grid, dim3 block, int64_t largest) {
  const int64_t threads = int64_t{grid.x} * grid.y * grid.z * block.x * block.y * block.z;
  return !launch.force_int64() && largest + threads <= std::numeric_limits<int32_t>::max();
}

// A one-element int64 tensor on `like`'s device holding INT64_MAX: kernels lower it to the
// smallest position at which they met bad input (see report_error_position).
inline at::Tensor new_error_slot(const at::Tensor& like) {
  return at::full({1}, std::numeric_limits<int64_t>::max(),
                  like.options().dtype(at::kLong));
}

// Reads the slot back; -1 if nothing was reported. This waits for the stream, so an op calls
// it once, after its last launch (never between kernels): the op's kernels are queued back
// to back and the only stall is the final check that turns bad input into an exception.
inline int64_t read_error_slot(const at::Tensor& slot) {
  int64_t pos = slot.item<int64_t>();
  return pos == std::numeric_limits<int64_t>::max() ? -1 : pos;
}

// The op's final check of its error slot: the smallest reported position, or -1. Under CUDA
// graph capture the host cannot read device memory, so it queues trap_on_error_kernel
// instead (bad input then fails the graph's replay without a message) and returns -1.
template <class Launcher>
int64_t final_error_check(const Launcher& launch, const at::Tensor& slot) {
  if (launch.capturing()) {
    launch(trap_on_error_kernel<int64_t>, dim3(1), dim3(1), 0, slot.const_data_ptr<int64_t>());
    return -1;
  }
  return read_error_slot(slot);
}

}  // namespace pyseg
