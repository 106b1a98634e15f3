// The resampling kernel of upsample / interpolate and bed_of_nails on the CPU
// (upsample_cpu_kernel.cpp, compiled once per CPU capability; see common/cpu_capability.h),
// called through stubs by upsample_cpu.cpp.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <array>
#include <cstdint>

#include "common/cpu_capability.h"
#include "ops/upsample/upsample.h"

namespace pyseg::upsample {

// dst[g, od, oh, ow, c] = the separable resampling of src[g, ., ., ., c] by the depth, row and
// column tables t[0], t[1], t[2] (t[0] unused when src_dhw[0] == dst_dhw[0] == 1), for
// `groups` groups of C contiguous channels (NCHW: groups = N * C, C = 1; channels_last:
// groups = N). src and dst are contiguous in that layout; the arithmetic is in the op-math
// type T.
template <typename scalar_t>
using ResampleFn = void (*)(const scalar_t* src, scalar_t* dst, int64_t groups, int64_t C,
                            const int64_t* src_dhw, const int64_t* dst_dhw,
                            const std::array<Table<at::opmath_type<scalar_t>>, 3>& t);

extern cpu::CpuStub<ResampleFn<float>> resample_f32_stub;
extern cpu::CpuStub<ResampleFn<double>> resample_f64_stub;
extern cpu::CpuStub<ResampleFn<at::Half>> resample_f16_stub;
extern cpu::CpuStub<ResampleFn<at::BFloat16>> resample_bf16_stub;

template <typename scalar_t>
auto& resample_stub() {
  if constexpr (std::is_same_v<scalar_t, float>) return resample_f32_stub;
  else if constexpr (std::is_same_v<scalar_t, double>) return resample_f64_stub;
  else if constexpr (std::is_same_v<scalar_t, at::Half>) return resample_f16_stub;
  else return resample_bf16_stub;
}

}  // namespace pyseg::upsample
