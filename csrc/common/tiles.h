// Tiling helpers shared by the CPU transposed convolutions (2-D and 3-D): the sub-pixel
// phases of one axis, how many rows a tile gets, and how tiles are run.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cpu_capability.h"

namespace pyseg::cpu {

// Partial grad_weight sums per group (fixed, so the reduction order never depends on threads).
constexpr int64_t kWeightChunks = 8;
// Fewest GEMM columns (pixels / voxels) a tile gets when it can: narrower GEMMs waste the
// micro-kernel.
constexpr int64_t kMinColumns = 256;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The taps of one output phase along one axis.
struct AxisPhase {
  int64_t phase = 0;         // first output index
  std::vector<int64_t> k;    // kernel index of each tap
  std::vector<int64_t> off;  // input index = phase-local output index + off
  int64_t count = 0;         // outputs in this phase
};

// The phases that hold outputs: min(stride, out) of them. Output o = phase + stride * j reads
// tap k from input j + off iff o + pad - k * dil is a multiple of stride.
inline std::vector<AxisPhase> axis_phases(int64_t stride, int64_t pad, int64_t dil,
                                          int64_t kernel, int64_t out) {
  std::vector<AxisPhase> phases(std::min(stride, out));
  for (int64_t ph = 0; ph < (int64_t)phases.size(); ++ph) {
    AxisPhase& a = phases[ph];
    a.phase = ph;
    a.count = (out - ph + stride - 1) / stride;
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t t = ph + pad - k * dil;
      if (((t % stride) + stride) % stride != 0) continue;  // floor modulo: t may be negative
      a.k.push_back(k);
      a.off.push_back(t >= 0 ? t / stride : -((-t) / stride));
    }
  }
  return phases;
}

// Rows per tile for `total_rows` rows of `row_cols` GEMM columns with K-long columns, and
// `other_tasks` independent tasks besides (groups, phases): the column matrix takes about
// half the L2 but never fewer than kMinColumns columns, then tiles are split until every
// thread has work (if they stay at least a quarter of kMinColumns wide). other_tasks = 0
// keeps the tiles independent of the thread count (the backward's grad_weight chunks follow
// the tiles).
inline int64_t rows_per_tile(int64_t total_rows, int64_t row_cols, int64_t K, int64_t elem,
                             int64_t other_tasks) {
  const int64_t by_cache = l2_cache_bytes() / 2 / std::max<int64_t>(1, K * elem);
  const int64_t cols = std::max(kMinColumns, by_cache);
  int64_t rows = std::clamp<int64_t>(ceil_div(cols, row_cols), 1, total_rows);
  const int64_t want = 2 * at::get_num_threads();
  while (other_tasks > 0 && other_tasks * ceil_div(total_rows, rows) < want && rows > 1 &&
         (rows / 2) * row_cols >= kMinColumns / 4)
    rows = ceil_div(rows, 2);
  return rows;
}

// Runs tasks [0, n) in parallel when there are enough of them; else one by one, each GEMM
// then parallel inside.
template <typename F>
void run_tasks(int64_t n, const F& f) {
  if (n >= at::get_num_threads()) {
    at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) f(t);
    });
  } else {
    for (int64_t t = 0; t < n; ++t) f(t);
  }
}

}  // namespace pyseg::cpu
