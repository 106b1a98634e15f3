// Host-side helpers for sizing launches; used by every <op>_launch.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <c10/util/Exception.h>

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

// A one-element int64 tensor on `like`'s device holding INT64_MAX: kernels lower it to the
// smallest position at which they met bad input (see report_error_position).
inline at::Tensor new_error_slot(const at::Tensor& like) {
  return at::full({1}, std::numeric_limits<int64_t>::max(),
                  like.options().dtype(at::kLong));
}

// Reads the slot back (synchronizes with the device); -1 if nothing was reported.
inline int64_t read_error_slot(const at::Tensor& slot) {
  int64_t pos = slot.item<int64_t>();
  return pos == std::numeric_limits<int64_t>::max() ? -1 : pos;
}

}  // namespace pyseg
