// The vectorized float / double CPU kernels of grid_sample (grid_sample_cpu_kernel.cpp,
// compiled once per CPU capability; see common/cpu_capability.h), called through stubs by
// grid_sample_cpu.cpp, which checks the arguments, allocates and reduces.
#pragma once

#include <cstdint>

#include "common/cpu_capability.h"
#include "ops/grid_sample/grid_sample_math.h"

namespace pyseg::grid_sample {

// Forward over a batch: input (N, C, spatial) with the strides in `g`, grid viewed as
// (N, points, D), output viewed as (N, C, points), any strides.
template <int D, typename T>
struct ForwardArgs {
  const T* input;
  const T* grid;
  T* output;
  Geometry<D> g;
  int64_t batch;
};

// Backward over a batch. grad_input is accumulated, for image n and chunk k, into the block
// `grad_input + (n * chunks + k) * block_stride`, addressed with the input's per-image
// strides (the input is contiguous in its memory format, and so are the blocks); the blocks
// start zeroed. grad_grid is (N, points, D), contiguous.
template <int D, typename T>
struct BackwardArgs {
  const T* grad_output;  // viewed as (N, C, points) with g.out_stride_*
  const T* input;
  const T* grid;
  T* grad_input;
  int64_t chunks;
  int64_t block_stride;
  T* grad_grid;
  Geometry<D> g;
  int64_t batch;
  bool need_input, need_grid;
};

template <int D, typename T>
using ForwardFn = void (*)(const ForwardArgs<D, T>&);
template <int D, typename T>
using BackwardFn = void (*)(const BackwardArgs<D, T>&);

extern cpu::CpuStub<ForwardFn<2, float>> forward_2d_f32_stub;
extern cpu::CpuStub<ForwardFn<2, double>> forward_2d_f64_stub;
extern cpu::CpuStub<ForwardFn<3, float>> forward_3d_f32_stub;
extern cpu::CpuStub<ForwardFn<3, double>> forward_3d_f64_stub;
extern cpu::CpuStub<BackwardFn<2, float>> backward_2d_f32_stub;
extern cpu::CpuStub<BackwardFn<2, double>> backward_2d_f64_stub;
extern cpu::CpuStub<BackwardFn<3, float>> backward_3d_f32_stub;
extern cpu::CpuStub<BackwardFn<3, double>> backward_3d_f64_stub;

template <int D, typename T>
auto& forward_stub() {
  if constexpr (D == 2 && sizeof(T) == 4) return forward_2d_f32_stub;
  else if constexpr (D == 2) return forward_2d_f64_stub;
  else if constexpr (sizeof(T) == 4) return forward_3d_f32_stub;
  else return forward_3d_f64_stub;
}

template <int D, typename T>
auto& backward_stub() {
  if constexpr (D == 2 && sizeof(T) == 4) return backward_2d_f32_stub;
  else if constexpr (D == 2) return backward_2d_f64_stub;
  else if constexpr (sizeof(T) == 4) return backward_3d_f32_stub;
  else return backward_3d_f64_stub;
}

}  // namespace pyseg::grid_sample
