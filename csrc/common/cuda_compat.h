// What every <op>_kernels.cuh includes first. Under nvcc it is the CUDA runtime; under the
// emulator (PYSEG_EMULATOR) it is csrc/emu/cuda_shim.h, which maps __global__, __shared__,
// threadIdx, __syncthreads, atomics and warp shuffles onto CPU code. Kernels written against
// this header compile unchanged in both places, tensor-core fragments (nvcuda::wmma) included.
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
#include <mma.h>  // nvcuda::wmma (the emulator's is csrc/emu/wmma_shim.h)
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

// atomicAdd for every dtype the kernels use. float / double / integers are native. A scalar
// half / bfloat16 atomicAdd compiles, on sm_80 and sm_90 alike, to a compare-and-swap loop on
// the enclosing 32-bit word (the hardware adds 16-bit floats only in pairs): use the indexed
// form below where the neighbour is known.
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

namespace detail {

// The 32-bit pair type of a 16-bit float and how to build one. Under the emulator these are
// the shim's __half2 / __nv_bfloat162 (csrc/emu/cuda_shim.h), whose atomicAdd rounds each
// half of the word separately, as the hardware's packed add does.
template <typename T>
struct Packed16 {};
template <>
struct Packed16<c10::Half> {
  using type = __half2;
  static __device__ __forceinline__ type make(c10::Half lo, c10::Half hi) {
#if defined(PYSEG_EMULATOR)
    return type{lo, hi};
#else
    return __halves2half2(static_cast<__half>(lo), static_cast<__half>(hi));
#endif
  }
};
template <>
struct Packed16<c10::BFloat16> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ type make(c10::BFloat16 lo, c10::BFloat16 hi) {
#if defined(PYSEG_EMULATOR)
    return type{lo, hi};
#else
    return __halves2bfloat162(static_cast<__nv_bfloat16>(lo), static_cast<__nv_bfloat16>(hi));
#endif
  }
};

}  // namespace detail

// The packed add of a 32-bit word that is known to be in global memory: a single
// fire-and-forget RED instruction where the hardware has one (f16x2: sm_60+, bf16x2: sm_90+).
// atomicAdd on a generic pointer would add a branch to a CAS loop for shared-memory
// addresses, and cuda_bf16.h's __nv_bfloat162 atomicAdd below sm_90 is a CAS loop.
template <typename Pair>
__device__ __forceinline__ void red_add_global(Pair* word, Pair value) {
#if defined(PYSEG_EMULATOR)
  atomicAdd(word, value);
#else
  unsigned bits;
  memcpy(&bits, &value, sizeof(bits));
  if constexpr (std::is_same_v<Pair, __half2>) {
    asm volatile("red.relaxed.gpu.global.add.noftz.f16x2 [%0], %1;" ::"l"(word), "r"(bits)
                 : "memory");
  } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.relaxed.gpu.global.add.noftz.bf16x2 [%0], %1;" ::"l"(word), "r"(bits)
                 : "memory");
#else
    atomicAdd(word, value);  // sm_80: a CAS loop on the word (no native bf16 atomic add)
#endif
  }
#endif
}

// base[index] += value, atomically, for a global buffer of `numel` elements. half and
// bfloat16 add a packed pair to the aligned 32-bit word holding base[index] and its
// neighbour, with -0.0 for the neighbour (x + -0.0 == x for every x, -0.0 included, so the
// neighbour is unchanged even while other threads update it). What the SASS shows
// (benchmarks/cuda_static.py, RESULTS.md): half on sm_80 / sm_90 and bfloat16 on sm_90 are one
// RED.E.ADD.F16x2 / .BF16x2 instruction; bfloat16 on sm_80 has no native 16-bit add, its
// pair add is a 32-bit CAS loop (like the scalar form). The neighbour must lie in the same
// buffer (two allocations never share a 32-bit word); at the buffer's ends, when it does
// not, the scalar form above is used.
template <typename T>
__device__ inline void atomic_add(T* base, int64_t index, int64_t numel, T value) {
  if constexpr (std::is_same_v<T, c10::Half> || std::is_same_v<T, c10::BFloat16>) {
    T* address = base + index;
    const bool low = reinterpret_cast<uintptr_t>(address) % 4 == 0;
    const int64_t neighbour = low ? index + 1 : index - 1;
    if (neighbour >= 0 && neighbour < numel) {
      using Pack = detail::Packed16<T>;
      const T zero(0x8000, T::from_bits());  // -0.0
      red_add_global(reinterpret_cast<typename Pack::type*>(low ? address : address - 1),
                     low ? Pack::make(value, zero) : Pack::make(zero, value));
      return;
    }
  }
  atomic_add(base + index, value);
}

// cp.async (sm_80+): a 4-byte global -> shared copy that bypasses registers, zero-filled when
// `valid` is false (src-size 0: nothing is read). Older archs copy through a register; the
// emulator copies at issue, which is a valid schedule of the asynchronous copy (the data is
// only read after cp_async_wait and a barrier).
__device__ __forceinline__ void cp_async_4(void* shared_dst, const void* global_src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(global_src),
               "r"(valid ? 4 : 0));
#else
  *static_cast<float*>(shared_dst) = valid ? *static_cast<const float*>(global_src) : 0.0f;
#endif
}

// Closes the group of cp.async copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
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
