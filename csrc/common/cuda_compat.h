// What every <op>_kernels.cuh includes first. Under nvcc it is the CUDA runtime; under the
// emulator (PYSEG_EMULATOR) it is csrc/emu/cuda_shim.h, which maps __global__, __shared__,
// threadIdx, __syncthreads, atomics and warp shuffles onto CPU code. Kernels written against
// this header compile unchanged in both places.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>

#if defined(PYSEG_EMULATOR)
#include "emu/cuda_shim.h"
#elif defined(__CUDACC__)
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#else
#error "cuda_compat.h is for kernel code: compile it with nvcc or with PYSEG_EMULATOR"
#endif

#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>

#include "common/macros.h"

// Dynamic shared memory as a typed pointer: `PYSEG_DYNAMIC_SHARED(float, buf);`
#if defined(PYSEG_EMULATOR)
#define PYSEG_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::pyseg::emu::dynamic_shared_memory())
#else
#define PYSEG_DYNAMIC_SHARED(T, name)                      \
  extern __shared__ unsigned char pyseg_dynamic_smem_[];   \
  T* name = reinterpret_cast<T*>(pyseg_dynamic_smem_)
#endif

// Grid-stride loop over [0, n) with 64-bit indices.
#define PYSEG_KERNEL_LOOP(i, n)                                                          \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Grid-stride loop over [0, n) with indices of type `index_t`. With int32_t the launch must
// guarantee n + (threads in the grid) <= INT32_MAX, so that the last step cannot overflow
// (pyseg::fits_int32 in common/launch_utils.h).
#define PYSEG_KERNEL_LOOP_T(index_t, i, n)                                                  \
  for (index_t i = static_cast<index_t>(blockIdx.x) * static_cast<index_t>(blockDim.x) +   \
                   static_cast<index_t>(threadIdx.x);                                       \
       i < (n); i += static_cast<index_t>(blockDim.x) * static_cast<index_t>(gridDim.x))

namespace pyseg {

// atomicAdd for every dtype the kernels use; half and bfloat16 go through the native
// 16-bit atomics (sm_70 / sm_80 and newer).
template <typename T>
__device__ inline void atomic_add(T* address, T value) {
#if defined(PYSEG_EMULATOR)
  atomicAdd(address, value);
#else
  if constexpr (std::is_same_v<T, c10::Half>) {
    atomicAdd(reinterpret_cast<__half*>(address), static_cast<__half>(value));
  } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(address), static_cast<__nv_bfloat16>(value));
  } else {
    atomicAdd(address, value);
  }
#endif
}

// Records the smallest offending position in *error_pos (initialised to INT64_MAX), so the
// host can name a deterministic culprit after the kernel without a device-side assert.
__device__ inline void report_error_position(int64_t* error_pos, int64_t pos) {
  atomicMin(reinterpret_cast<unsigned long long*>(error_pos),
            static_cast<unsigned long long>(pos));
}

// The end-of-op check of an error slot when the host cannot read it (CUDA graph capture):
// one thread traps if any position was reported, which aborts the graph's launch with
// cudaErrorLaunchFailure instead of naming the culprit. (A template, so that every
// translation unit can define it.)
template <typename T = int64_t>
__global__ void trap_on_error_kernel(const T* __restrict__ error_pos) {
  if (*error_pos != std::numeric_limits<T>::max()) {
#if defined(PYSEG_EMULATOR)
    throw std::runtime_error("device-side trap: an error slot holds a reported position");
#else
    __trap();
#endif
  }
}

}  // namespace pyseg
